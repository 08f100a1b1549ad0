"""The fine-tuning recipe: a transformers image-text model on the package's multi-image JSON, through
``transformers.Trainer`` (notes §2.4).

* A sample is the MiniCPM-V multi-image record the pipeline writes (``synthesize``, ``videos``, ``mix``):
  ``{"image": {"<image_00>": path, ...}, "conversations": [user, assistant, ...]}``. Its frames become the
  images of the first user turn, in the order of their placeholders (:func:`frames_to_images`), as the
  official Idefics3 collator does (all frames as ``{"type": "image"}`` items first, then the text with the
  ``<image_xx>`` tags removed).
* Labels (:func:`encode_example`): ``label_mode="official"`` is the official Idefics3 collator (labels =
  input ids, pad and image tokens -100: **the prompt text is trained too**); ``"answer"`` trains only the
  assistant turns (each answer and its end-of-utterance token), the common SFT choice.
* Models: Idefics3 natively (``Idefics3ForConditionalGeneration`` + ``AutoProcessor(do_image_splitting=
  False)``, 169 tokens per frame); ``tiny-idefics3`` (random, offline, :mod:`paperzoo_t2vid.tiny`);
  MiniCPM-V-2.5 through its remote code from a **local** folder (:func:`load_model`, documented, not tested:
  its processor and chat() live in the checkpoint's own Python files).
* ``Trainer`` does the optimisation: AdamW (``adam_beta2``), cosine schedule with warm-up ratio, gradient
  accumulation, bf16, gradient checkpointing, DeepSpeed through ``deepspeed=`` a ZeRO JSON from
  ``configs/deepspeed/`` (DeepSpeed itself is imported by transformers only when that is set), LoRA through
  ``peft`` (``lora.enabled``; the ``train`` extra).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperzoo_shared.data import safe_join
from paperzoo_shared.errors import UserError

PLACEHOLDER = re.compile(r"<image_\d+>\n?")
LABEL_MODES = ("official", "answer")
MODEL_KINDS = ("tiny-idefics3", "idefics3", "minicpm_v")


@dataclass
class LoraSettings:
    """LoRA through peft (the official scripts default to off: full fine-tuning of vision and LLM)."""

    enabled: bool = False
    r: int = 8
    alpha: int = 8
    dropout: float = 0.1
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Idefics3's official LoRA targets; MiniCPM-V's are r 64, alpha 64, dropout 0.05 on q/k/v."""

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ValueError(f"lora.r and lora.alpha must be >= 1, got {self.r} and {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module")


@dataclass
class TrainConfig:
    """A fine-tuning run (``paperzoo-t2vid train``; the ``train:`` section of a preset)."""

    model: str = "tiny-idefics3"
    """tiny-idefics3 | idefics3 | minicpm_v."""
    model_path: str = ""
    """Local folder of the base model (idefics3, minicpm_v); never downloaded."""
    output_dir: str = "t2vid-train"
    label_mode: str = "official"
    """official (the Idefics3 collator: prompt text trained, pad and image tokens masked) | answer."""
    max_frames: int = 0
    """Cap on frames per sample, taken evenly with the 24-frame sampler (0: all, as the paper for synthetic
    samples)."""
    epochs: float = 1.0
    max_steps: int = -1
    """> 0 overrides ``epochs``."""
    per_device_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    learning_rate: float = 5e-6
    weight_decay: float = 0.01
    adam_beta2: float = 0.999
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    deepspeed: str = ""
    """Path of a DeepSpeed JSON (``configs/deepspeed/zero3.json`` or ``zero3_offload.json``); needs deepspeed."""
    use_cpu: bool = True
    seed: int = 0
    logging_steps: int = 10
    save: bool = False
    """Save the final model and processor to ``output_dir`` (``save_only_model``)."""
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"train.model {self.model!r} is not one of {', '.join(MODEL_KINDS)}")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"train.label_mode {self.label_mode!r} is not one of {', '.join(LABEL_MODES)}")
        if self.per_device_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("train.per_device_batch_size and gradient_accumulation_steps must be >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"train.learning_rate must be positive, got {self.learning_rate}")
        if self.max_frames < 0:
            raise ValueError(f"train.max_frames must be >= 0, got {self.max_frames}")
        if self.max_steps <= 0 and not self.epochs > 0:
            raise ValueError("train.epochs must be positive when max_steps is not set")


# ----------------------------------------------------------------------------------------------------
# the multi-image record as chat messages
# ----------------------------------------------------------------------------------------------------


def frames_to_images(
    record: Mapping[str, Any], root: str | Path = ".", source: str | Path = "training JSON"
) -> tuple[list[Path], list[dict]]:
    """The frame paths of ``record`` in placeholder order and its turns with the placeholders removed.

    Frames are taken in the order their ``<image_xx>`` tags appear in the first user turn (which is how the
    writer numbers them); each path is joined to ``root`` with ``safe_join``. A tag without a path, a path
    without a tag, or tags outside the first turn are errors naming the tag.
    """
    images = record.get("image")
    turns = record.get("conversations")
    if not isinstance(images, Mapping) or not isinstance(turns, list) or not turns:
        raise UserError("a multi-image record needs an 'image' mapping and a non-empty 'conversations' list")
    first = str(turns[0].get("content", ""))
    tags = re.findall(r"<image_\d+>", first)
    for tag in tags:
        if tag not in images:
            raise UserError(f"placeholder {tag} of the first turn has no entry in 'image'")
    unused = sorted(set(images) - set(tags))
    if unused:
        raise UserError(f"'image' entry {unused[0]} has no placeholder in the first user turn")
    for turn in turns[1:]:
        if PLACEHOLDER.search(str(turn.get("content", ""))):
            raise UserError("image placeholders are only allowed in the first user turn")
    paths = [safe_join(root, images[tag], source=source, entry=tag) for tag in tags]
    cleaned = [{"role": t["role"], "content": PLACEHOLDER.sub("", str(t["content"])).strip()} for t in turns]
    return paths, cleaned


def chat_messages(turns: Sequence[Mapping[str, str]], n_images: int) -> list[dict[str, Any]]:
    """Idefics3 chat messages: the ``n_images`` frames first in the first user turn, then its text."""
    messages = []
    for i, turn in enumerate(turns):
        content: list[dict[str, str]] = [{"type": "image"}] * n_images if i == 0 else []
        content = [dict(c) for c in content] + [{"type": "text", "text": turn["content"]}]
        messages.append({"role": turn["role"], "content": content})
    return messages


def pick_frames(paths: Sequence[Path], max_frames: int) -> list[Path]:
    """All frames, or ``max_frames`` of them by the middle-of-segment sampler (``get_seq_frames``)."""
    if max_frames <= 0 or len(paths) <= max_frames:
        return list(paths)
    from paperzoo_t2vid.modeling_t2vid import seq_frames

    return [paths[i] for i in seq_frames(len(paths), max_frames)]


def load_frames(paths: Sequence[Path]) -> list[Any]:
    from PIL import Image

    frames = []
    for path in paths:
        with Image.open(path) as image:
            frames.append(image.convert("RGB"))
    return frames


def encode_example(
    processor: Any,
    record: Mapping[str, Any],
    root: str | Path = ".",
    *,
    label_mode: str = "official",
    max_frames: int = 0,
    image_token_id: int | None = None,
) -> dict[str, Any]:
    """Token ids, labels and pixel tensors of one multi-image record.

    ``official``: labels = input ids, with pad and image tokens set to -100 (the Idefics3 fine-tune
    collator). ``answer``: -100 everywhere except the tokens of each assistant turn after its
    ``Assistant:`` prefix, found by encoding the conversation up to that turn with the generation prompt.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode {label_mode!r} is not one of {', '.join(LABEL_MODES)}")
    paths, turns = frames_to_images(record, root)
    paths = pick_frames(paths, max_frames)
    images = load_frames(paths)
    messages = chat_messages(turns, len(images))

    def encode(msgs: list[dict[str, Any]], generation: bool) -> dict[str, Any]:
        text = processor.apply_chat_template(msgs, add_generation_prompt=generation, tokenize=False)
        return processor(text=[text], images=[images] if images else None, return_tensors="pt")

    inputs = encode(messages, False)
    ids = inputs["input_ids"][0].tolist()
    tokenizer = processor.tokenizer
    if image_token_id is None:
        image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if label_mode == "official":
        labels = [-100 if t in (tokenizer.pad_token_id, image_token_id) else t for t in ids]
    else:
        labels = [-100] * len(ids)
        for k, turn in enumerate(messages):
            if turn["role"] != "assistant":
                continue
            prefix = encode(messages[:k], True)["input_ids"][0].tolist()
            start, end = len(prefix), len(encode(messages[: k + 1], False)["input_ids"][0])
            if ids[:start] != prefix:
                raise UserError(
                    "the chat template does not render a turn's prompt as a prefix of the full text"
                )
            labels[start:end] = ids[start:end]
    example: dict[str, Any] = {"input_ids": ids, "labels": labels}
    for key in ("pixel_values", "pixel_attention_mask"):
        if key in inputs:
            example[key] = inputs[key][0]
    return example


@dataclass
class Collator:
    """Text through ``transformers.DataCollatorForSeq2Seq``: ids padded with the tokenizer's pad token, an
    attention mask of ones over each sample's tokens, labels padded with -100, on the tokenizer's padding
    side (right for training: the tiny tokenizer's default, set by :func:`load_model` for Idefics3). Frames
    by hand (``DataCollatorForSeq2Seq`` cannot pad a frame axis): each sample's frames padded to the
    batch's largest frame count with all-zero images (Idefics3 drops all-zero images before the vision
    encoder) and a zero pixel mask."""

    tokenizer: Any

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch
        from transformers import DataCollatorForSeq2Seq

        text = DataCollatorForSeq2Seq(self.tokenizer, padding="longest", label_pad_token_id=-100)
        batch: dict[str, Any] = dict(
            text([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
        )
        if all("pixel_values" in e for e in examples):
            frames = max(e["pixel_values"].shape[0] for e in examples)
            shape = examples[0]["pixel_values"].shape[1:]
            pixels = torch.zeros((len(examples), frames, *shape), dtype=examples[0]["pixel_values"].dtype)
            pmask = torch.zeros((len(examples), frames, *shape[1:]), dtype=torch.long)
            for i, e in enumerate(examples):
                n = e["pixel_values"].shape[0]
                pixels[i, :n] = e["pixel_values"]
                if "pixel_attention_mask" in e:
                    pmask[i, :n] = e["pixel_attention_mask"]
                else:
                    pmask[i, :n] = 1
            batch["pixel_values"] = pixels
            batch["pixel_attention_mask"] = pmask
        return batch


# ----------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------


def load_model(cfg: TrainConfig, words: Sequence[str] = ()) -> tuple[Any, Any]:
    """The base model and its processor.

    * ``tiny-idefics3``: random, offline (``words`` is its vocabulary).
    * ``idefics3``: ``Idefics3ForConditionalGeneration`` and ``AutoProcessor(do_image_splitting=False)``
      from the local folder ``model_path`` (e.g. a download of HuggingFaceM4/Idefics3-8B-Llama3).
    * ``minicpm_v``: ``AutoModel`` / ``AutoTokenizer`` with ``trust_remote_code`` from the local folder
      ``model_path`` (openbmb/MiniCPM-Llama3-V-2_5). Its remote code has its own processor and slicing
      (``max_slice_nums 1`` in the paper), so :func:`encode_example` does not apply to it; this loader is the
      documented entry point, not a tested recipe.
    """
    if cfg.model == "tiny-idefics3":
        from paperzoo_t2vid.tiny import build_tiny_idefics3

        return build_tiny_idefics3(words, seed=cfg.seed)
    if not cfg.model_path or not Path(cfg.model_path).is_dir():
        raise UserError(
            f"train.model_path must be a local model folder for {cfg.model}, got {cfg.model_path!r}"
        )
    import torch

    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    if cfg.model == "idefics3":
        from transformers import AutoProcessor, Idefics3ForConditionalGeneration

        processor = AutoProcessor.from_pretrained(
            cfg.model_path, do_image_splitting=False, local_files_only=True
        )
        processor.tokenizer.padding_side = "right"  # the Collator pads on this side for training
        model = Idefics3ForConditionalGeneration.from_pretrained(
            cfg.model_path, dtype=dtype, local_files_only=True
        )
        return model, processor
    from transformers import AutoModel, AutoTokenizer  # pragma: no cover - needs the remote-code checkpoint

    model = AutoModel.from_pretrained(  # pragma: no cover
        cfg.model_path, trust_remote_code=True, dtype=dtype, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(  # pragma: no cover
        cfg.model_path, trust_remote_code=True, local_files_only=True
    )
    return model, tokenizer  # pragma: no cover


def wrap_lora(model: Any, lora: LoraSettings) -> Any:
    """``peft.get_peft_model`` with the named target modules (only those get adapters)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise UserError("LoRA needs peft: pip install 'paperzoo-t2vid[train]'") from err
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules)
    )
    return get_peft_model(model, config)


def total_steps(cfg: TrainConfig, n_examples: int, world_size: int = 1) -> int:
    """Optimizer steps of the run: ``max_steps``, else ``ceil(epochs x ceil(n / (batch x world)) / accum)``."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    batches = math.ceil(n_examples / (cfg.per_device_batch_size * world_size))
    return max(1, math.ceil(cfg.epochs * batches / cfg.gradient_accumulation_steps))


def warmup_steps(cfg: TrainConfig, n_examples: int, world_size: int = 1) -> int:
    """``ceil(warmup_ratio x total steps)``, as transformers 4's ``warmup_ratio``."""
    return math.ceil(cfg.warmup_ratio * total_steps(cfg, n_examples, world_size))


def training_arguments(cfg: TrainConfig, n_examples: int) -> Any:
    from transformers import TrainingArguments

    if cfg.deepspeed and not Path(cfg.deepspeed).is_file():
        raise UserError(f"train.deepspeed: no DeepSpeed config at {cfg.deepspeed}")
    extra: dict[str, Any] = {}
    if cfg.gradient_checkpointing:  # the name transformers 4 and 5 both accept (5 warns on it)
        extra["gradient_checkpointing"] = True
    return TrainingArguments(  # warm-up as steps: transformers 5 has no warmup_ratio
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta2=cfg.adam_beta2,
        warmup_steps=warmup_steps(cfg, n_examples),
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,
        deepspeed=cfg.deepspeed or None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        save_only_model=True,
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        use_cpu=cfg.use_cpu,
        disable_tqdm=True,
        **extra,
    )


@dataclass
class TrainResult:
    model: Any
    processor: Any
    losses: list[float]
    """Training loss of each logging step."""
    n_examples: int


def train(
    cfg: TrainConfig,
    records: Sequence[Mapping[str, Any]],
    root: str | Path = ".",
    *,
    model: Any = None,
    processor: Any = None,
    words: Sequence[str] = (),
) -> TrainResult:
    """Fine-tune on ``records`` (multi-image JSON, frame paths relative to ``root``) with ``Trainer``."""
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    if not records:
        raise UserError("no training records")
    if model is None or processor is None:
        model, processor = load_model(cfg, words)
    if cfg.model == "minicpm_v":  # pragma: no cover - remote code
        raise UserError(
            "MiniCPM-V trains through its own remote-code dataset; see the README (not implemented)"
        )
    image_token_id = getattr(model.config, "image_token_id", None)
    encoded = [
        encode_example(
            processor,
            r,
            root,
            label_mode=cfg.label_mode,
            max_frames=cfg.max_frames,
            image_token_id=image_token_id,
        )
        for r in records
    ]
    if cfg.lora.enabled:
        model = wrap_lora(model, cfg.lora)
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, len(encoded)),
        train_dataset=encoded,
        data_collator=Collator(processor.tokenizer),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    model = trainer.model
    model.eval()
    if cfg.save:
        trainer.save_model(cfg.output_dir)
        processor.save_pretrained(cfg.output_dir)
    return TrainResult(model=model, processor=processor, losses=losses, n_examples=len(encoded))
