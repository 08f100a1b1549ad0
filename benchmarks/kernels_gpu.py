"""The Triton kernels of paperzoo_shared.kernels against their PyTorch paths and stock alternatives.

Measures, side by side on one card and in one run (never asserting speed; every timing is the median of
``--repeats`` runs after a warm-up, CUDA events on a GPU):

* **ROILoopPool** (huwsod): ``triton`` vs huwsod's ``vectorized`` torch path (what ``auto`` used before),
  forward and forward + backward, at the paper's sizes by default: 4,000 proposals x 3 regions, 7 x 7 bins,
  3 MRRP branch maps of 512 channels at stride 8 of a 512 x 640 image; torchvision's ``roi_pool`` over the
  same 3 x 4,000 rectangles (box, box, outer box: plain RoIPool, no holes) as the stock yardstick; the
  largest |triton - vectorized| difference. The readable reference only on ``--reference-max-boxes`` boxes.
* **decode attention** over a ragged gated KV cache at batch 8 with LLaVA-1.5-7B shapes (32 heads, MHA,
  head dim 128, fp16 and bf16): Triton on a packed cache (memory = the kept tokens) and on the padded
  buffer; the reference (masked SDPA over the buffer padded to the longest sample); dense SDPA with every
  sample at the mean length (the same total number of tokens) as the target's yardstick; peak memory above
  the inputs; a grouped-query case (8 key/value heads); batch 1 with a long cache, one pass vs split-K.

    python benchmarks/kernels_gpu.py --out kernels_gpu.json        # a few minutes on one H100
    TRITON_INTERPRET=1 python benchmarks/kernels_gpu.py --tiny      # CPU check of the script (interpreter)

Targets (issue 12), reported as ratios: ROILoopPool triton >= 5x faster than vectorized; ragged decode
<= 1.3x dense SDPA's time, memory proportional to the kept tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from paperzoo_shared.kernels import MIN_TRITON, triton_interpreting, triton_version
from paperzoo_shared.kernels.gated_decode_attention import (
    choose_num_splits,
    gated_decode_attention_reference,
    gated_decode_attention_triton,
)


def sdpa_takes_enable_gqa() -> bool:
    """``scaled_dot_product_attention(enable_gqa=...)`` exists from torch 2.5 on."""
    q = torch.zeros(1, 2, 1, 4)
    kv = torch.zeros(1, 1, 1, 4)
    try:
        torch.nn.functional.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
    except TypeError:
        return False
    return True


def timed_ms(device: torch.device, fn, repeats: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def peak_mib(device: torch.device, fn) -> float | None:
    """Peak CUDA memory allocated during ``fn()`` above what was allocated before it (None on the CPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def guarded(section: dict[str, Any], key: str, fn) -> None:
    """Records ``fn()`` under ``key``, or the error (one failing measurement must not lose the others)."""
    try:
        section[key] = fn()
    except Exception as error:  # recorded in the JSON; the run goes on
        section[key] = {"error": f"{type(error).__name__}: {error}"}


def triton_runs(device: torch.device) -> tuple[bool, str]:
    version = triton_version()
    if version is None or version < MIN_TRITON:
        return False, f"skipped: Triton {'.'.join(map(str, MIN_TRITON))} or newer is needed, found {version}"
    if device.type == "cuda" or triton_interpreting():
        return True, ""
    return False, "skipped: Triton needs CUDA, or TRITON_INTERPRET=1 on the CPU"


# ---------------------------------------------------------------------------------------------- ROI pool


def make_rois(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(args.roi_maps, args.roi_channels, args.roi_height, args.roi_width, generator=g)
    image_w, image_h = args.roi_width * 8.0, args.roi_height * 8.0
    wh = torch.rand(args.roi_boxes, 2, generator=g) * torch.tensor([image_w, image_h]) * 0.6 + 16
    xy = torch.rand(args.roi_boxes, 2, generator=g) * (torch.tensor([image_w, image_h]) - wh).clamp(min=1)
    maps = torch.randint(0, args.roi_maps, (args.roi_boxes, 1), generator=g).float()
    rois = torch.cat([maps, xy, xy + wh], dim=1)
    return feats.to(device), rois.to(device)


def bench_roi(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from paperzoo_huwsod.ops import (
        loop_pool_geometry,
        roi_loop_pool_reference,
        roi_loop_pool_triton,
        roi_loop_pool_vectorized,
    )

    feats, rois = make_rois(args, device)
    call = lambda fn, f=feats, r=rois: fn(f, r, 0.125, args.pooled, 1.8)  # noqa: E731
    result: dict[str, Any] = {
        "sizes": {"maps": args.roi_maps, "channels": args.roi_channels, "height": args.roi_height,
                  "width": args.roi_width, "boxes": args.roi_boxes, "pooled": args.pooled},
    }  # fmt: skip

    def backward_ms(fn):
        leaf = feats.clone().requires_grad_()

        def step():
            out = fn(leaf, rois, 0.125, args.pooled, 1.8)
            torch.autograd.grad(sum(t.sum() for t in out), leaf)

        return timed_ms(device, step, args.repeats)

    with torch.no_grad():
        guarded(
            result,
            "vectorized_forward_ms",
            lambda: timed_ms(device, lambda: call(roi_loop_pool_vectorized), args.repeats),
        )
    guarded(result, "vectorized_forward_backward_ms", lambda: backward_ms(roi_loop_pool_vectorized))
    ok, why = triton_runs(device)
    if ok:
        with torch.no_grad():
            guarded(
                result,
                "triton_forward_ms",
                lambda: timed_ms(device, lambda: call(roi_loop_pool_triton), args.repeats),
            )
        guarded(result, "triton_forward_backward_ms", lambda: backward_ms(roi_loop_pool_triton))

        def difference():
            with torch.no_grad():
                a, b = call(roi_loop_pool_vectorized), call(roi_loop_pool_triton)
            return max(float((x - y).abs().max()) for x, y in zip(a, b))

        guarded(result, "max_abs_difference_triton_vs_vectorized", difference)
        for key in ("forward", "forward_backward"):
            t, v = result.get(f"triton_{key}_ms"), result.get(f"vectorized_{key}_ms")
            if isinstance(t, float) and isinstance(v, float) and t > 0:
                result[f"speedup_{key}_triton_over_vectorized"] = v / t
    else:
        result["triton"] = why

    def torchvision_ms():
        from torchvision.ops import roi_pool

        geometry = loop_pool_geometry(rois, 0.125, args.roi_height, args.roi_width, 1.8)
        # the same rectangles in pixels (box, box, outer box), plain RoIPool without holes
        boxes = torch.cat([rois[:, 1:], rois[:, 1:], geometry["outer"].to(rois) / 0.125])
        stacked = torch.cat([rois[:, :1].repeat(3, 1), boxes], dim=1)
        with torch.no_grad():
            return timed_ms(device, lambda: roi_pool(feats, stacked, args.pooled, 0.125), args.repeats)

    guarded(result, "torchvision_roi_pool_3x_forward_ms", torchvision_ms)
    if args.roi_boxes <= args.reference_max_boxes:
        with torch.no_grad():
            guarded(
                result,
                "reference_forward_ms",
                lambda: timed_ms(device, lambda: call(roi_loop_pool_reference), 1),
            )
    return result


# ---------------------------------------------------------------------------------------------- decode


def ragged_lengths(batch: int, mean: int, seed: int = 0) -> torch.Tensor:
    """Per-sample kept lengths spread over [0.25, 1.75] x mean (what gating leaves), rescaled to total
    exactly ``batch * mean`` tokens so that the dense yardstick sees the same number of tokens."""
    g = torch.Generator().manual_seed(seed)
    raw = 0.25 + 1.5 * torch.rand(batch, generator=g)
    lengths = (raw / raw.sum() * batch * mean).round().long().clamp(min=1)
    lengths[-1] += batch * mean - int(lengths.sum())
    return lengths


def bench_decode_case(args, device, dtype, batch, heads, kv_heads, mean, d=128) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    lengths = ragged_lengths(batch, mean).to(device)
    longest, total = int(lengths.max()), int(lengths.sum())
    q = torch.randn(batch, heads, d, generator=g).to(device, dtype)
    packed_k = torch.randn(total, kv_heads, d, generator=g).to(device, dtype)
    packed_v = torch.randn(total, kv_heads, d, generator=g).to(device, dtype)
    starts = torch.cumsum(lengths, 0) - lengths
    padded_k = torch.zeros(batch, kv_heads, longest, d, dtype=dtype, device=device)
    padded_v = torch.zeros_like(padded_k)
    for b in range(batch):
        n, s = int(lengths[b]), int(starts[b])
        padded_k[b, :, :n] = packed_k[s : s + n].transpose(0, 1)
        padded_v[b, :, :n] = packed_v[s : s + n].transpose(0, 1)
    dense_k = torch.randn(batch, kv_heads, mean, d, generator=g).to(device, dtype)  # same total, all = mean
    dense_v = torch.randn_like(dense_k)
    gqa = heads != kv_heads
    if gqa and not sdpa_takes_enable_gqa():  # torch < 2.5: the stock path repeats the key/value heads
        dense_k, dense_v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (dense_k, dense_v))
        gqa = False
    element = torch.finfo(dtype).bits // 8
    result: dict[str, Any] = {
        "dtype": str(dtype).removeprefix("torch."), "batch": batch, "heads": heads, "kv_heads": kv_heads,
        "head_dim": d, "lengths": lengths.tolist(), "total_tokens": total,
        "cache_mib_packed": 2 * total * kv_heads * d * element / 2**20,
        "cache_mib_padded_to_longest": 2 * batch * longest * kv_heads * d * element / 2**20,
    }  # fmt: skip
    calls = {
        "reference_masked_sdpa": lambda: gated_decode_attention_reference(
            q, padded_k, padded_v, lengths, max_length=longest
        ),
        "dense_sdpa_same_total": lambda: torch.nn.functional.scaled_dot_product_attention(
            q[:, :, None], dense_k, dense_v, **({"enable_gqa": True} if gqa else {})
        ),
    }
    ok, why = triton_runs(device)
    if ok:
        calls["triton_packed"] = lambda: gated_decode_attention_triton(
            q, packed_k, packed_v, lengths, starts=starts, max_length=longest
        )
        calls["triton_padded"] = lambda: gated_decode_attention_triton(
            q, padded_k, padded_v, lengths, max_length=longest
        )
    else:
        result["triton"] = why
    with torch.no_grad():
        for name, fn in calls.items():
            guarded(result, f"{name}_ms", lambda f=fn: timed_ms(device, f, args.repeats))
            guarded(result, f"{name}_peak_mib_above_inputs", lambda f=fn: peak_mib(device, f))
        if ok:
            guarded(result, "max_abs_difference_triton_vs_reference", lambda: float(
                (calls["triton_packed"]().float() - calls["reference_masked_sdpa"]().float()).abs().max()))  # fmt: skip
    t, dense = result.get("triton_packed_ms"), result.get("dense_sdpa_same_total_ms")
    if isinstance(t, float) and isinstance(dense, float) and dense > 0:
        result["ratio_triton_packed_over_dense_sdpa"] = t / dense
    return result


def bench_split(args, device, dtype, length, heads=32, d=128) -> dict[str, Any]:
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([length], device=device)
    q = torch.randn(1, heads, d, generator=g).to(device, dtype)
    k = torch.randn(1, heads, length, d, generator=g).to(device, dtype)
    v = torch.randn_like(k)
    result: dict[str, Any] = {
        "batch": 1,
        "heads": heads,
        "length": length,
        "auto_splits": choose_num_splits(1, heads, length),
    }
    ok, why = triton_runs(device)
    with torch.no_grad():
        guarded(result, "reference_masked_sdpa_ms", lambda: timed_ms(
            device, lambda: gated_decode_attention_reference(q, k, v, lengths, max_length=length), args.repeats))  # fmt: skip
        if not ok:
            result["triton"] = why
            return result
        for name, splits in (("one_pass", 1), ("split_k_auto", None)):
            guarded(result, f"triton_{name}_ms", lambda s=splits: timed_ms(
                device, lambda: gated_decode_attention_triton(q, k, v, lengths, max_length=length, num_splits=s),
                args.repeats))  # fmt: skip
    return result


# ---------------------------------------------------------------------------------------------- main


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})",
        "python": platform.python_version(), "torch": torch.__version__,
        "triton_interpreter": triton_interpreting(),
    }  # fmt: skip
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    try:
        root = Path(__file__).resolve().parents[1]

        def git(*a: str) -> str:
            return subprocess.run(
                ["git", "-C", str(root), *a], capture_output=True, text=True, check=True
            ).stdout

        info["commit"] = git("rev-parse", "HEAD").strip()
        info["dirty"] = bool(
            git("status", "--porcelain", "--", "shared/src", "benchmarks/kernels_gpu.py").strip()
        )
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = info["dirty"] = None
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("kernels_gpu.json"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU check of the script)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--roi-maps", type=int, default=3)
    parser.add_argument("--roi-channels", type=int, default=512)
    parser.add_argument("--roi-height", type=int, default=64)
    parser.add_argument("--roi-width", type=int, default=80)
    parser.add_argument("--roi-boxes", type=int, default=4000)
    parser.add_argument("--pooled", type=int, default=7)
    parser.add_argument("--reference-max-boxes", type=int, default=50)
    parser.add_argument("--decode-batch", type=int, default=8)
    parser.add_argument("--decode-mean", type=int, default=1024, help="mean kept tokens per sample")
    parser.add_argument("--split-length", type=int, default=16384, help="batch-1 cache length for split-K")
    parser.add_argument("--sections", default="roi,decode,split")
    args = parser.parse_args(argv)
    if args.tiny:
        args.repeats = min(args.repeats, 2)
        args.roi_maps, args.roi_channels, args.roi_height, args.roi_width = 2, 8, 8, 10
        args.roi_boxes, args.pooled = 6, 3
        args.decode_batch, args.decode_mean, args.split_length = 3, 40, 600
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    start = time.perf_counter()
    sections = set(args.sections.split(","))
    heads, kv_heads, d = (32, 32, 128) if not args.tiny else (4, 4, 24)
    result: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                              "machine": machine(device), "tiny": args.tiny}  # fmt: skip
    if "roi" in sections:
        guarded(result, "roi_loop_pool", lambda: bench_roi(args, device))
    if "decode" in sections:
        decode: dict[str, Any] = {}
        for dtype in (torch.float16, torch.bfloat16):
            name = f"mha_{str(dtype).removeprefix('torch.')}"
            guarded(
                decode,
                name,
                lambda t=dtype: bench_decode_case(
                    args, device, t, args.decode_batch, heads, kv_heads, args.decode_mean, d
                ),
            )
        guarded(decode, "gqa_float16", lambda: bench_decode_case(
            args, device, torch.float16, args.decode_batch, heads, max(1, kv_heads // 4), args.decode_mean, d))  # fmt: skip
        result["decode_attention"] = decode
    if "split" in sections:
        guarded(
            result, "split_k", lambda: bench_split(args, device, torch.float16, args.split_length, heads, d)
        )
    roi = result.get("roi_loop_pool", {})
    mha = result.get("decode_attention", {}).get("mha_float16", {})
    result["targets"] = {
        "roi_speedup_forward_backward_triton_over_vectorized (>= 5)": roi.get("speedup_forward_backward_triton_over_vectorized"),
        "decode_ratio_triton_packed_over_dense_sdpa (<= 1.3)": mha.get("ratio_triton_packed_over_dense_sdpa"),
        "decode_cache_mib_packed_vs_padded": [mha.get("cache_mib_packed"), mha.get("cache_mib_padded_to_longest")],
    }  # fmt: skip
    result["wall_time_s"] = time.perf_counter() - start
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("machine", "targets", "wall_time_s")}, indent=2))
    return result


if __name__ == "__main__":
    main()
