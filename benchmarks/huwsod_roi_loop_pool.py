"""CPU/GPU timing of huwsod's ROILoopPool: the readable reference vs the vectorised backend.

    python benchmarks/huwsod_roi_loop_pool.py --out /tmp/huwsod_roi_loop_pool.json

Writes JSON (never asserts speed). Sizes default to one mini training step: 8 images x 3 MRRP branches of
64 x 16 x 16 features and 50 boxes per image, a 4 x 4 grid.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from paperzoo_huwsod.ops import roi_loop_pool_reference, roi_loop_pool_vectorized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="huwsod_roi_loop_pool.json")
    parser.add_argument("--maps", type=int, default=24)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--boxes", type=int, default=400)
    parser.add_argument("--pooled", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(args.maps, args.channels, args.size, args.size, generator=gen).to(args.device)
    extent = args.size * 8.0
    x1 = torch.rand(args.boxes, generator=gen) * extent * 0.8
    y1 = torch.rand(args.boxes, generator=gen) * extent * 0.8
    w = torch.rand(args.boxes, generator=gen) * extent * 0.5 + 8
    h = torch.rand(args.boxes, generator=gen) * extent * 0.5 + 8
    rois = torch.stack(
        [
            torch.randint(0, args.maps, (args.boxes,), generator=gen).float(),
            x1,
            y1,
            (x1 + w).clamp(max=extent),
            (y1 + h).clamp(max=extent),
        ],
        dim=1,
    ).to(args.device)
    results = {"device": args.device, "args": vars(args), "seconds": {}}
    for name, fn in (("reference", roi_loop_pool_reference), ("vectorized", roi_loop_pool_vectorized)):
        fn(feats, rois, 0.125, args.pooled, 1.8)  # warm-up
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            fn(feats, rois, 0.125, args.pooled, 1.8)
        if args.device == "cuda":
            torch.cuda.synchronize()
        results["seconds"][name] = (time.perf_counter() - start) / args.repeats
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["seconds"]))


if __name__ == "__main__":
    main()
