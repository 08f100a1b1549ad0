"""Worker of test_distributed.py: two CPU processes (gloo) train the tiny model through Trainer (DDP)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_model
from paperzoo_flashsloth.configuration import IGNORE_INDEX, TrainSpec
from paperzoo_flashsloth.data import FlashSlothCollator
from paperzoo_flashsloth.train import train_stage


def main() -> None:
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    items = []
    for k in range(16):
        ids = [10, IMAGE_ID, 11 + k % 5, LEARNABLE_ID, 15, 16 + k % 4, 2]
        labels = [IGNORE_INDEX] * 5 + ids[-2:]
        items.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                      "question_spans": torch.tensor([[2, 3]]), "pixel_values": torch.randn(3, 24, 24, generator=gen)})  # fmt: skip
    model = tiny_model().train()
    logs = train_stage(
        model,
        items,
        FlashSlothCollator(0),
        TrainSpec(stage="II", max_steps=3, batch_size=2),
        out,
        log_every=1,
    )
    rank = int(os.environ["RANK"])
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    (out / f"rank{rank}.json").write_text(json.dumps({"world": int(os.environ["WORLD_SIZE"]), "checksum": checksum,
                                                      "losses": [r["loss"] for r in logs if "loss" in r]}))  # fmt: skip


if __name__ == "__main__":
    main()
