"""DCKD: the cost of one training step per method (CPU here; the GPU when one is present).

Writes JSON (default paperzoo-results/benchmarks/dckd_step_cost.json) with milliseconds per optimizer step for Scratch,
Logits, FAKD, DCKD and its ablations on two settings: the mini preset's networks and the paper's SwinIR pair
with a tiny stand-in encoder (CPU) or the full VQGAN f16 encoder (GPU). Never asserts speed.

    python benchmarks/dckd_step_cost.py [--steps 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from paperzoo_dckd.configuration import DCKDConfig
from paperzoo_dckd.modeling_dckd import Distiller
from paperzoo_dckd.models import build_model

METHODS = ["scratch", "logits", "fakd", "dckd", "dckd_no_dcr", "dckd_no_dmm", "dckd_star"]
TINY_ENCODER = dict(
    ch=8,
    num_res_blocks=1,
    attn_resolutions=[],
    resolution=32,
    z_channels=16,
    embed_dim=16,
    n_embed=64,
    norm_groups=4,
)


def settings(device: str) -> dict[str, dict]:
    mini = {
        "teacher": ("edsr", {"num_feat": 32, "num_block": 4, "upscale": 2}),
        "student": ("edsr", {"num_feat": 16, "num_block": 2, "upscale": 2}),
        "encoder": ("vqgan_encoder", TINY_ENCODER),
        "batch": 8,
        "lr_patch": 16,
        "fakd": (["conv_first", 0, 1, "conv_after_body"], ["conv_first", 1, 3, "conv_after_body"]),
    }
    swinir = {
        "teacher": ("swinir_teacher", {"upscale": 2}),
        "student": ("swinir_student", {"upscale": 2}),
        "encoder": ("vqgan_f16_n1024", {}) if device == "cuda" else ("vqgan_encoder", TINY_ENCODER),
        "batch": 16 if device == "cuda" else 1,
        "lr_patch": 48 if device == "cuda" else 16,
        "fakd": (["conv_first", 1, 3, "conv_after_body"], ["conv_first", 2, 5, "conv_after_body"]),
    }
    return {"mini": mini, "swinir_x2": swinir}


def time_method(setting: dict, method: str, steps: int, device: str) -> float:
    torch.manual_seed(0)
    teacher = build_model(*setting["teacher"]).to(device)
    student = build_model(*setting["student"]).to(device)
    encoder = build_model(*setting["encoder"]).to(device)
    config = DCKDConfig(fakd_student_positions=setting["fakd"][0], fakd_teacher_positions=setting["fakd"][1])
    distiller = Distiller(student, teacher, encoder, method, config, 0.999, 0).to(device)
    optimizer = torch.optim.Adam(student.parameters(), 1e-4)
    b, p = setting["batch"], setting["lr_patch"]
    lq, gt = torch.rand(b, 3, p, p, device=device), torch.rand(b, 3, 2 * p, 2 * p, device=device)
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = distiller.training_losses(lq, gt)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        distiller.after_optimizer_step(step + 1)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("paperzoo-results/benchmarks/dckd_step_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "threads": args.threads,
        "ms_per_step": {},
    }
    for name, setting in settings(device).items():
        results["ms_per_step"][name] = {
            m: round(time_method(setting, m, args.steps, device), 1) for m in METHODS
        }
        print(name, results["ms_per_step"][name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
