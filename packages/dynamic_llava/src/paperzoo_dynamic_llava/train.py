"""Training through transformers' ``Trainer`` (official ``DynamicLLaVATrainer`` + ``CustomCallback``).

* four optimizer groups, predictors (lr 2e-4, no decay) and the rest (lr 5e-6), each split by weight decay;
* the Gumbel temperature decays exponentially from 1.0 to 0.1 over the optimizer steps (set before each step);
* the vision tower is frozen; the projector is trainable as in the official code (``freeze_projector`` for the
  paper's wording);
* DeepSpeed ZeRO-3 through ``TrainingArguments(deepspeed="configs/deepspeed/zero3.json")`` (the official
  repository's ``scripts/zero3.json`` is missing: it is git-ignored).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration, gumbel_tau_at

PREDICTOR_KEY = "score_predictor"
"""Parameters whose name contains this belong to the predictors (the official code matches "predictor")."""


class GumbelTauCallback(TrainerCallback):
    """Sets ``model.gumbel_tau`` = tau0 * (tau_end / tau0) ** (step / max_steps) before every optimizer step."""

    def __init__(self, model: torch.nn.Module, start: float, end: float):
        self.model, self.start, self.end = model, start, end

    def on_step_begin(self, args, state, control, **kwargs):
        self.model.gumbel_tau = gumbel_tau_at(state.global_step, state.max_steps, self.start, self.end)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            logs["gumbel_tau"] = round(float(self.model.gumbel_tau), 4)


def predictor_param_groups(
    model: torch.nn.Module, *, lr: float, predictor_lr: float, weight_decay: float, predictor_weight_decay: float,
    decay_names: set[str],
) -> list[dict[str, Any]]:  # fmt: skip
    """The official four groups: (predictor | rest) x (decay | no decay); frozen parameters are left out."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((PREDICTOR_KEY in name, name in decay_names), []).append(p)
    out = []
    for (is_pred, decays), params in sorted(groups.items()):
        out.append({
            "params": params,
            "lr": predictor_lr if is_pred else lr,
            "weight_decay": (predictor_weight_decay if is_pred else weight_decay) if decays else 0.0,
        })  # fmt: skip
    return out


class DynamicLlavaTrainer(Trainer):
    """``Trainer`` with the predictor learning rate and the Gumbel temperature schedule."""

    def __init__(self, *args: Any, predictor_lr: float = 2e-4, predictor_weight_decay: float = 0.0,
                 gumbel_start_tau: float = 1.0, gumbel_end_tau: float = 0.1, **kwargs: Any):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.predictor_lr, self.predictor_weight_decay = predictor_lr, predictor_weight_decay
        self.add_callback(GumbelTauCallback(self.model, gumbel_start_tau, gumbel_end_tau))

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = predictor_param_groups(
                opt_model, lr=self.args.learning_rate, predictor_lr=self.predictor_lr,
                weight_decay=self.args.weight_decay, predictor_weight_decay=self.predictor_weight_decay,
                decay_names=set(self.get_decay_parameter_names(opt_model)),
            )  # fmt: skip
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer


def freeze_for_dynamic_training(
    model: DynamicLlavaForConditionalGeneration,
    *,
    freeze_vision_tower: bool = True,
    freeze_projector: bool = False,
) -> None:
    """The official trainable set: everything but the vision tower (and the projector if asked)."""
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze_vision_tower:
        model.model.vision_tower.requires_grad_(False)
    if freeze_projector:
        model.model.multi_modal_projector.requires_grad_(False)


def training_arguments(output_dir: str | Path, **overrides: Any) -> TrainingArguments:
    """TrainingArguments with the recipe's defaults (cosine, warmup 3 %, no saving, no reporting, the Trainer's
    own tqdm progress bar with ETA: the miniature trains for minutes)."""
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,  # a float < 1 is a ratio of the total steps (transformers 5)
        "weight_decay": 0.0,
        "save_strategy": "no",
        "report_to": [],
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "logging_steps": 10,
        "disable_tqdm": False,
        "use_cpu": not torch.cuda.is_available(),
    }
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


DEEPSPEED_AUTO_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


def validate_deepspeed_config(path: str | Path) -> dict[str, Any]:
    """Checks a DeepSpeed JSON for the Trainer integration without importing deepspeed: ZeRO stage 3,
    batch sizes and precision left to the Trainer ("auto"), weights gathered in 16 bit on save."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"DeepSpeed config not found: {path}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    zero = cfg.get("zero_optimization")
    if not isinstance(zero, dict) or zero.get("stage") != 3:
        raise ValueError(f"{path}: zero_optimization.stage must be 3 (ZeRO-3)")
    for key in DEEPSPEED_AUTO_KEYS:
        if cfg.get(key) != "auto":
            raise ValueError(f'{path}: {key} must be "auto" so the Trainer\'s arguments decide it')
    for precision in ("fp16", "bf16"):
        if cfg.get(precision, {}).get("enabled") != "auto":
            raise ValueError(f'{path}: {precision}.enabled must be "auto" (set by --bf16/--fp16)')
    if zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
        raise ValueError(
            f"{path}: stage3_gather_16bit_weights_on_model_save must be true to save a usable model"
        )
    return cfg


def resolve_deepspeed_path(cfg: Any, config_path: str | Path, overrides: list[str]) -> None:
    """Makes ``cfg.train.deepspeed`` absolute: a relative path written in the config file is relative to that
    file's folder (so the shipped configs work from any directory and from the wheel), one given as a
    ``train.deepspeed=...`` override is relative to the working directory."""
    path = cfg.train.deepspeed
    if path and not Path(path).is_absolute():
        given = any(item.split("=", 1)[0].strip() == "train.deepspeed" for item in overrides)
        cfg.train.deepspeed = str((Path.cwd() if given else Path(config_path).resolve().parent) / path)


def run_training(cfg: Any, *, tiny: bool = False, seed: int = 0) -> Path:
    """Dynamic-LLaVA training from a dense LLaVA (``FullTrainConfig``); ``tiny`` swaps in a random tiny LLaVA
    and synthetic shape questions (the 2-process CPU smoke test). Returns the saved checkpoint directory."""
    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration

    recipe = cfg.train
    out = Path(cfg.output_dir)
    if recipe.deepspeed:  # before the model loads (minutes at 7B)
        validate_deepspeed_config(recipe.deepspeed)
    if tiny:
        model, dataset, collator, pad_id = _tiny_setup(cfg, seed)
    else:
        model, dataset, collator, pad_id = _real_setup(cfg)
    freeze_for_dynamic_training(model, freeze_vision_tower=recipe.freeze_vision_tower,
                                freeze_projector=recipe.freeze_projector)  # fmt: skip
    args = training_arguments(
        out / "trainer", per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay, warmup_steps=recipe.warmup_ratio, lr_scheduler_type=recipe.lr_scheduler_type,
        num_train_epochs=recipe.num_train_epochs, max_steps=recipe.max_steps, bf16=recipe.bf16,
        gradient_checkpointing=recipe.gradient_checkpointing, logging_steps=recipe.logging_steps, seed=recipe.seed,
        deepspeed=recipe.deepspeed, ddp_find_unused_parameters=True, ddp_backend=None if torch.cuda.is_available() else "gloo",
    )  # fmt: skip
    trainer = DynamicLlavaTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=collator,
        predictor_lr=recipe.predictor_lr, predictor_weight_decay=recipe.predictor_weight_decay,
        gumbel_start_tau=recipe.gumbel_start_tau, gumbel_end_tau=recipe.gumbel_end_tau,
    )  # fmt: skip
    trainer.train()
    trainer.save_model(str(out / "final"))
    if trainer.is_world_process_zero():
        log = out / "final" / "log_history.json"
        log.write_text(json.dumps(trainer.state.log_history, indent=1))
    assert isinstance(model, DynamicLlavaForConditionalGeneration)
    return out / "final"


def _tiny_setup(cfg: Any, seed: int) -> tuple[Any, Any, Any, int]:
    from paperzoo_dynamic_llava.configuration import TinyModelConfig
    from paperzoo_dynamic_llava.data import ExampleDataset, TrainCollator, WordPromptBuilder, build_examples
    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
    from paperzoo_dynamic_llava.presets import tiny_llava_config
    from paperzoo_shared.data.synthetic.qa import (
        QAConfig,
        build_word_tokenizer,
        generate_qa_dataset,
        to_transformers_tokenizer,
    )

    tok = to_transformers_tokenizer(build_word_tokenizer())
    tiny = TinyModelConfig(image_size=32, patch_size=8, vision_hidden=16, vision_heads=2, text_hidden=32,
                           text_layers=3, text_heads=2, text_intermediate=64)  # fmt: skip
    torch.manual_seed(seed)
    config = tiny_llava_config(tiny, vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
                               sparse=cfg.sparse_config)  # fmt: skip
    model = DynamicLlavaForConditionalGeneration(config)
    samples = generate_qa_dataset(8, seed=seed, cfg=QAConfig(image_size=32, questions_per_image=1))
    examples = build_examples(samples, WordPromptBuilder(tok, 16), image_size=32, describe=True)
    return model, ExampleDataset(examples), TrainCollator(tok.pad_token_id), tok.pad_token_id


def _real_setup(cfg: Any) -> tuple[Any, Any, Any, int]:
    from transformers import AutoConfig, AutoTokenizer

    from paperzoo_dynamic_llava.data import LlavaConversationDataset, collate_conversations
    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration

    for key in ("model_path", "data_path", "image_folder"):
        if not getattr(cfg, key):
            raise ValueError(f"{key} is empty: pass --set {key}=<local path> (see configs/full/*.yaml)")
    dtype = torch.bfloat16 if cfg.train.bf16 else torch.float32
    raw = AutoConfig.from_pretrained(cfg.model_path)
    if getattr(raw, "sparse_config", None) is not None:
        model = DynamicLlavaForConditionalGeneration.from_pretrained(cfg.model_path, dtype=dtype)
    else:
        model = DynamicLlavaForConditionalGeneration.from_dense_llava(
            cfg.model_path, cfg.sparse_config, dtype=dtype
        )
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    dataset = LlavaConversationDataset(
        cfg.data_path, cfg.image_folder, tokenizer, n_image_tokens=model.num_image_tokens,
        image_size=model.config.vision_config.image_size, image_token_id=model.image_token_id,
        model_max_length=cfg.train.model_max_length,
    )  # fmt: skip
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return model, dataset, functools.partial(collate_conversations, pad_id=pad), pad


class PatchLabelPretrainer(torch.nn.Module):
    """The miniature's stand-in for CLIP pretraining: the vision tower learns per-patch shape and colour
    classes through linear heads on its LLaVA feature layer, so LLaVA training starts from a tower whose
    patch features mean something (LLaVA-1.5 starts from a pretrained CLIP). Trained with the Trainer too."""

    def __init__(self, tower: torch.nn.Module, feature_layer: int, n_shapes: int, n_colours: int):
        super().__init__()
        hidden = tower.config.hidden_size
        self.tower, self.feature_layer = tower, feature_layer
        self.shape_head = torch.nn.Linear(hidden, n_shapes + 1)
        self.colour_head = torch.nn.Linear(hidden, n_colours + 1)

    def forward(self, pixel_values: torch.Tensor, shape_labels: torch.Tensor, colour_labels: torch.Tensor):
        h = self.tower(pixel_values, output_hidden_states=True).hidden_states[self.feature_layer][:, 1:]
        ce = torch.nn.functional.cross_entropy
        loss = ce(self.shape_head(h).flatten(0, 1), shape_labels.flatten()) + ce(
            self.colour_head(h).flatten(0, 1), colour_labels.flatten()
        )
        return {"loss": loss}


class PatchLabelDataset(torch.utils.data.Dataset):
    """Images with per-patch labels (see :func:`paperzoo_dynamic_llava.data.patch_labels`)."""

    def __init__(self, items: list[tuple[torch.Tensor, Any, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pixels, shapes, colours = self.items[i]
        return {
            "pixel_values": pixels,
            "shape_labels": torch.as_tensor(shapes),
            "colour_labels": torch.as_tensor(colours),
        }
