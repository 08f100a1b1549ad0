"""Training stages through transformers' ``Trainer`` (DeepSpeed ZeRO-3 JSON configs for the paper's runs).

Stages (FlashSloth Sec. 4.1 and the official scripts):

==========  ===============================================  ======  ===========  ==================
stage       trainable                                        lr      batch        template
==========  ===============================================  ======  ===========  ==================
``I``       projector + spatial attention pooling            1e-3    256          ``plain``
``II``      everything except the vision tower               2e-5    128          ``phi2``
``HD``      everything (HD SFT trains the tower too)         2e-5    128          ``phi2``
``scratch`` everything (the miniature starts from random)    config  config       ``phi2``
==========  ===============================================  ======  ===========  ==================

All stages: one epoch, cosine schedule, 3 % warm-up, no weight decay, fp16, gradient checkpointing, max length
3072, ZeRO-3 (``configs/deepspeed/zero3.json``). The loss is the language-model cross-entropy only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paperzoo_flashsloth.configuration import TrainSpec

STAGES = ("I", "II", "HD", "scratch")


def trainable_prefixes(stage: str) -> tuple[str, ...] | None:
    """Parameter-name prefixes that train in ``stage``; ``None`` means every parameter."""
    if stage == "I":
        return ("projector.", "pooling.")
    if stage == "II":
        return ("projector.", "pooling.", "query_tokens", "embedded_query.", "language_model.")
    if stage in ("HD", "scratch"):
        return None
    raise ValueError(f"unknown training stage {stage!r}; choose from {', '.join(STAGES)}")


def freeze_for_stage(model: nn.Module, stage: str) -> list[str]:
    """Sets ``requires_grad`` for ``stage`` and returns the names of the trainable parameters."""
    prefixes = trainable_prefixes(stage)
    names = []
    for name, param in model.named_parameters():
        train = prefixes is None or name.startswith(prefixes)
        param.requires_grad_(train)
        if train:
            names.append(name)
    if not names:
        raise ValueError(f"stage {stage!r} leaves no trainable parameter in {type(model).__name__}")
    return names


def load_deepspeed_config(path: str | Path) -> dict[str, Any]:
    """Reads and checks a DeepSpeed JSON: it must be valid JSON with a ``zero_optimization`` stage and leave the
    batch sizes and precision to the Trainer (``"auto"``), so one file serves every stage."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ValueError(f"DeepSpeed config {path} not found") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {error}") from error
    zero = config.get("zero_optimization")
    if not isinstance(zero, dict) or zero.get("stage") not in (0, 1, 2, 3):
        raise ValueError(f"DeepSpeed config {path}: 'zero_optimization.stage' must be 0, 1, 2 or 3")
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        if config.get(key) != "auto":
            raise ValueError(f"DeepSpeed config {path}: '{key}' must be \"auto\" (the Trainer sets it)")
    for precision in ("fp16", "bf16"):
        if config.get(precision, {}).get("enabled") != "auto":
            raise ValueError(f"DeepSpeed config {path}: '{precision}.enabled' must be \"auto\"")
    return config


def training_arguments(
    spec: TrainSpec, output_dir: str | Path, *, seed: int, log_every: int = 50, **extra: Any
):
    """transformers ``TrainingArguments`` of one stage (DeepSpeed only when ``spec.deepspeed`` is set)."""
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accumulation,
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        lr_scheduler_type=spec.lr_scheduler,
        max_grad_norm=spec.max_grad_norm,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps,
        fp16=spec.fp16,
        bf16=spec.bf16,
        dataloader_num_workers=spec.num_workers,
        remove_unused_columns=False,  # the collator's keys (pixel_values, question_spans) are model inputs
        save_strategy="no",
        report_to=[],
        logging_steps=log_every,
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
    )
    # transformers 5 folded `warmup_ratio` into `warmup_steps` (a float below 1 is a ratio)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "warmup_ratio" in fields:
        kwargs["warmup_ratio"] = spec.warmup_ratio
    else:
        kwargs["warmup_steps"] = spec.warmup_ratio
    if spec.gradient_checkpointing:  # renamed activation_checkpointing in transformers 5.2x
        name = (
            "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
        )
        kwargs[name] = True
        kwargs[f"{name}_kwargs"] = {"use_reentrant": False}
    if spec.deepspeed:
        load_deepspeed_config(spec.deepspeed)
        kwargs["deepspeed"] = str(spec.deepspeed)
    if not torch.cuda.is_available():
        kwargs["use_cpu"] = True
    kwargs.update(extra)
    return TrainingArguments(**kwargs)


class ProgressCallback:
    """Prints ``[label] step i/n loss x`` to stderr at every logging step (the Trainer's own bars are off)."""

    def __new__(cls, label: str):
        from transformers import TrainerCallback

        class _Progress(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs and is_main_process():
                    print(
                        f"[{label}] step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}",
                        file=sys.stderr,
                        flush=True,
                    )

        return _Progress()


def train_stage(
    model: nn.Module,
    train_dataset: torch.utils.data.Dataset,
    collator: Any,
    spec: TrainSpec,
    output_dir: str | Path,
    *,
    seed: int = 0,
    log_every: int = 50,
    callbacks: Sequence[Any] = (),
    progress: str | None = None,
) -> list[dict[str, float]]:
    """Freezes ``model`` for ``spec.stage``, trains it with ``Trainer`` and returns the logged records."""
    from transformers import Trainer

    freeze_for_stage(model, spec.stage)
    args = training_arguments(spec, output_dir, seed=seed, log_every=log_every)
    callbacks = list(callbacks) + ([ProgressCallback(progress)] if progress else [])
    trainer = Trainer(
        model=model, args=args, train_dataset=train_dataset, data_collator=collator, callbacks=callbacks
    )
    trainer.train()
    return [dict(r) for r in trainer.state.log_history]


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------------------------------
# The miniature's stand-in for a pretrained SigLIP
# ----------------------------------------------------------------------------------------------------


def patch_attribute_targets(
    samples: Sequence[Any], image_size: int, patch_size: int
) -> dict[str, torch.Tensor]:
    """Per-patch targets of synthetic scenes: colour, shape and pattern of the object under each patch centre
    (index 0 = background), from the scenes' visible masks. Returns ``[N, P]`` long tensors, one image per row."""
    from paperzoo_shared.data.synthetic.render import COLOUR_NAMES, PATTERNS, SHAPE_CLASSES

    side = image_size // patch_size
    centres = torch.arange(side) * patch_size + patch_size // 2
    seen: dict[int, int] = {}
    rows = {"colour": [], "shape": [], "pattern": []}
    for sample in samples:
        if sample.image_id in seen:
            continue
        seen[sample.image_id] = len(seen)
        height = sample.image.shape[0]
        scale = height / image_size
        ys = (centres.float() * scale).long().clamp(max=height - 1)
        grids = {k: torch.zeros(side, side, dtype=torch.long) for k in rows}
        for obj in sample.objects:
            mask = torch.from_numpy(obj.mask)[ys][:, ys]
            grids["colour"][mask] = COLOUR_NAMES.index(obj.colour) + 1
            grids["shape"][mask] = SHAPE_CLASSES.index(obj.label) + 1
            grids["pattern"][mask] = PATTERNS.index(obj.pattern) + 1
        for k in rows:
            rows[k].append(grids[k].flatten())
    return {k: torch.stack(v) for k, v in rows.items()}


def patch_scale_patterns(samples: Sequence[Any], patch_size: int, amplitude: float) -> None:
    """Paints each patterned object's surface with patch-sized cells, in place (once per image): ``striped``
    alternates rows of ``patch_size`` px, ``checkered`` alternates ``patch_size`` px squares, each cell the object's
    colour +/- ``amplitude``; ``plain`` objects are left as drawn. Render the scenes with ``pattern_amplitude=0``
    first (the shared generator's 2-px patterns then vanish), so the pattern exists only at patch scale."""
    import numpy as np

    done: set[int] = set()
    for sample in samples:
        if sample.image_id in done:
            continue
        done.add(sample.image_id)
        image = sample.image
        h, w = image.shape[:2]
        rows = (np.arange(h) // patch_size)[:, None]
        cols = (np.arange(w) // patch_size)[None, :]
        for obj in sample.objects:
            if obj.pattern == "plain":
                continue
            parity = (rows % 2 == 0) if obj.pattern == "striped" else ((rows + cols) % 2 == 0)
            sign = np.where(parity, 1.0, -1.0)[..., None]
            painted = np.clip(image.astype(np.float32) + amplitude * sign, 0, 255).astype(np.uint8)
            image[obj.mask] = painted[obj.mask]


def pretrain_vision_tower(
    vision_tower: nn.Module,
    images: torch.Tensor,
    targets: dict[str, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> list[float]:
    """Dense supervised pretraining of a tiny SigLIP tower: linear heads on every patch feature predict the
    colour, shape and pattern under it. The miniature has no pretrained encoder to download, so this plays the role
    of the paper's pretrained SigLIP (frozen in stage II). Returns the loss of every step."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    from paperzoo_shared.data.synthetic.render import COLOUR_NAMES, PATTERNS, SHAPE_CLASSES

    dim = vision_tower.config.hidden_size
    sizes = {"colour": 1 + len(COLOUR_NAMES), "shape": 1 + len(SHAPE_CLASSES), "pattern": 1 + len(PATTERNS)}
    heads = nn.ModuleDict({k: nn.Linear(dim, sizes[k]) for k in targets})
    params = list(vision_tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * s / steps))
    )
    vision_tower.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        features = vision_tower(pixel_values=images[idx]).last_hidden_state
        loss = sum(
            nn.functional.cross_entropy(head(features).flatten(0, 1), targets[k][idx].flatten())
            for k, head in heads.items()
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    vision_tower.eval()
    return losses
