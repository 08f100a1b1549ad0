"""Training through transformers' ``Trainer`` (notes §1.6): a collator for VITA's batches and a stage runner.

DeepSpeed ZeRO-3 configs and LoRA are not implemented (see the README); ``train_stage`` runs the plain Trainer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paperzoo_vita.configuration import IGNORE_INDEX
from paperzoo_vita.processing_vita import pad_fbanks


@dataclass
class VitaCollator:
    """Right-pads ``input_ids`` (with ``pad_token_id``) and ``labels`` (with -100); concatenates the samples'
    tiles in order and pads their fbanks. A sample is ``{"input_ids", "labels", "pixel_values"?, "fbanks"?}``."""

    pad_token_id: int = 0

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(s["input_ids"]) for s in samples)
        ids = torch.full((len(samples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for row, s in enumerate(samples):
            n = len(s["input_ids"])
            ids[row, :n] = torch.as_tensor(s["input_ids"])
            labels[row, :n] = torch.as_tensor(s["labels"])
            mask[row, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        pixels = [s["pixel_values"] for s in samples if s.get("pixel_values") is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
        fbanks = [f for s in samples for f in (s.get("fbanks") or [])]
        if fbanks:
            batch.update(pad_fbanks(fbanks))
        return batch


def train_stage(model: Any, dataset: Sequence[dict], collator: VitaCollator, steps: int, learning_rate: float,
                batch_size: int, seed: int = 0, output_dir: str | None = None) -> list[float]:  # fmt: skip
    """Runs ``steps`` optimizer steps of transformers' Trainer (AdamW, cosine, warmup 3 %, weight decay 0, as
    the release) on CPU or the available device; returns the logged training losses."""
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=output_dir or tmp,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.03,  # transformers 5: a float below 1 is a ratio (3 %, as the release)
            weight_decay=0.0,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            remove_unused_columns=False,
            seed=seed,
            data_seed=seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=list(dataset), data_collator=collator)
        trainer.train()
        return [h["loss"] for h in trainer.state.log_history if "loss" in h]
