"""VEGA's post-training recipe on a transformers multimodal model, through transformers' ``Trainer``.

Paper (Sec. 4; our notes Sec. 2.4): VEGA-Base fine-tunes Qwen-VL-Chat on a **multi-task** mixture (IITC and
ITA) at **multiple scales** (IITC contexts of 4k and 8k tokens, ITA with 3 and 5 pictures). Here:

* a :class:`TrainingMixture` names the release files (any of ``IITC_4k/8k_train``, ``ITA_3/5picture_*``),
  each with a weight (its share of the examples; the paper's ratios are not public to us);
* each example is one user turn (the interleaved query, built by the same prompt builder as evaluation) and
  one assistant turn (the reference answer); only the answer tokens (and the end-of-turn token) are trained;
* the model's own Processor expands the image placeholders; a model in the Qwen2-VL family takes the
  interleaved images natively;
* ``Trainer`` does the rest: AdamW, cosine schedule with warm-up, gradient accumulation, DeepSpeed
  (``deepspeed=`` a ZeRO JSON from ``configs/deepspeed/``) and LoRA through ``peft`` (``lora_r > 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paperzoo_vega.adapters import chat_messages, load_images
from paperzoo_vega.data import VegaSample


@dataclass(frozen=True)
class TrainArgs:
    """Optimisation settings, passed to ``transformers.TrainingArguments``."""

    output_dir: str = "vega-train"
    max_steps: int = 300
    per_device_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    seed: int = 0
    bf16: bool = False
    deepspeed: str | None = None
    """Path of a DeepSpeed JSON (e.g. ``configs/deepspeed/zero2.json``); needs the ``train`` extra."""
    lora_r: int = 0
    """LoRA rank through peft (0: full fine-tuning, as VEGA-Base)."""
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    logging_steps: int = 50
    use_cpu: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.per_device_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("max_steps, per_device_batch_size and gradient_accumulation_steps must be >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


def encode_example(processor: Any, sample: VegaSample, style: str = "official") -> dict[str, Any]:
    """Token ids, labels (-100 on the prompt) and image tensors of one training example."""
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(
        chat_messages(sample, style), add_generation_prompt=True, tokenize=False
    )
    images = load_images(sample)
    inputs = processor(text=[prompt], images=images or None, return_tensors="pt")
    prompt_ids = inputs["input_ids"][0].tolist()
    answer_ids = tokenizer(sample.answer + " <|im_end|>", add_special_tokens=False)["input_ids"]
    example = {
        "input_ids": prompt_ids + answer_ids,
        "labels": [-100] * len(prompt_ids) + answer_ids,
    }
    if "mm_token_type_ids" in inputs:  # transformers >= 5: which tokens are image tokens (for M-RoPE)
        example["mm_token_type_ids"] = inputs["mm_token_type_ids"][0].tolist() + [0] * len(answer_ids)
    for key in ("pixel_values", "image_grid_thw"):
        if key in inputs:
            example[key] = inputs[key]
    return example


@dataclass
class Collator:
    """Right-pads ids and labels, concatenates image tensors (Qwen2-VL takes the flat patch list)."""

    pad_token_id: int

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), length), -100, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            labels[i, :n] = torch.tensor(e["labels"])
            mask[i, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if all("mm_token_type_ids" in e for e in examples):
            types = torch.zeros((len(examples), length), dtype=torch.long)
            for i, e in enumerate(examples):
                types[i, : len(e["mm_token_type_ids"])] = torch.tensor(e["mm_token_type_ids"])
            batch["mm_token_type_ids"] = types
        for key in ("pixel_values", "image_grid_thw"):
            parts = [e[key] for e in examples if key in e]
            if parts:
                batch[key] = torch.cat(parts)
        return batch


@dataclass
class TrainingMixture:
    """Datasets with weights: each one's share of the training examples (multi-task, multi-scale)."""

    parts: list[tuple[str, Sequence[VegaSample], float]] = field(default_factory=list)

    def add(self, name: str, samples: Sequence[VegaSample], weight: float = 1.0) -> TrainingMixture:
        if weight < 0:
            raise ValueError(f"weight of {name} must be >= 0, got {weight}")
        self.parts.append((name, samples, weight))
        return self

    def draw(self, n: int, seed: int) -> list[VegaSample]:
        """``n`` examples: per part ``round(n * weight / total)`` drawn without replacement (cycling when a
        part is smaller), then shuffled together; seeded."""
        live = [(name, s, w) for name, s, w in self.parts if w > 0 and len(s)]
        if not live:
            raise ValueError("the training mixture is empty")
        total = sum(w for _, _, w in live)
        rng = np.random.default_rng(seed)
        drawn: list[VegaSample] = []
        for _, samples, weight in live:
            want = int(round(n * weight / total))
            order: list[int] = []
            while len(order) < want:
                order.extend(rng.permutation(len(samples)).tolist())
            drawn.extend(samples[i] for i in order[:want])
        return [drawn[i] for i in rng.permutation(len(drawn))]


def train(
    model: Any,
    processor: Any,
    examples: Sequence[VegaSample],
    args: TrainArgs,
    *,
    style: str = "official",
    progress: bool = False,
    cache: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """Fine-tune ``model`` on ``examples`` with ``transformers.Trainer``; returns the trained model.

    ``cache`` (sample key -> encoded example) may be shared between runs that use the same processor and
    prompt style, so a repeated sample is encoded once.
    """
    import torch
    from transformers import Trainer, TrainingArguments

    cache = {} if cache is None else cache  # a mixture repeats samples: encode each once
    for sample in examples:
        if sample.key not in cache:
            cache[sample.key] = encode_example(processor, sample, style)
    encoded = [cache[sample.key] for sample in examples]
    if args.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:
            raise ImportError("LoRA needs peft: pip install 'paperzoo-vega[train]'") from err
        model = get_peft_model(
            model,
            LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, target_modules=list(args.lora_targets)),
        )
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=int(round(args.warmup_ratio * args.max_steps)),
        lr_scheduler_type=args.lr_scheduler,
        seed=args.seed,
        data_seed=args.seed,
        bf16=args.bf16,
        deepspeed=args.deepspeed,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=args.use_cpu,
        disable_tqdm=not progress,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded,
        data_collator=Collator(processor.tokenizer.pad_token_id),
    )
    if not progress:  # with the bar disabled, Trainer prints every log dict; keep the loop quiet
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.train()
    model = trainer.model
    model.eval()
    torch.set_grad_enabled(True)
    return model
