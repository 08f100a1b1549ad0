"""Worker of test_distributed.py: two CPU processes (gloo) train the tiny VITA through Trainer (DDP)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from paperzoo_vita.configuration import ExperimentConfig, build_model_config
from paperzoo_vita.modeling_vita import VitaForConditionalGeneration
from paperzoo_vita.processing_vita import VitaImageProcessor
from paperzoo_vita.reproduce import encode_item, synthetic_items
from paperzoo_vita.tokenization import build_tiny_tokenizer
from paperzoo_vita.train import VitaCollator, train_stage


def main() -> None:
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    cfg = ExperimentConfig()
    cfg.data.audio_seconds = 0.5
    tok = build_tiny_tokenizer()
    ids = tok.convert_tokens_to_ids
    model = VitaForConditionalGeneration(
        build_model_config(cfg.model, len(tok), ids("<image>"), ids("<audio>"))
    )
    model.set_stage("finetune", train_audio_adapter=True)
    processor = VitaImageProcessor(cfg.model.image_size, max_dynamic_patch=1)
    items = [
        encode_item(i, tok, processor, model.config.image_seq_length) for i in synthetic_items(cfg, 8, 0)
    ]
    losses = train_stage(
        model, items, VitaCollator(tok.pad_token_id), steps=2, learning_rate=1e-3, batch_size=2
    )
    rank = int(os.environ["RANK"])
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    (out / f"rank{rank}.json").write_text(
        json.dumps({"world": int(os.environ["WORLD_SIZE"]), "checksum": checksum, "losses": losses})
    )


if __name__ == "__main__":
    main()
