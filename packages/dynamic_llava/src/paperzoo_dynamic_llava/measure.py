"""Efficiency measurement: the paper's FLOP formula, an exact FLOP counter, CUDA-event latency and peak memory.

* :func:`eq13_prefill_flops` is paper Eq. 13 / App. Table 10: per layer 32 B N C^2 + 4 B N^2 C over the image
  tokens only (text tokens, vision tower and LM head excluded; the FFN is counted as 24 N C^2, which
  over-counts LLaMA's SwiGLU, as the authors explain in issue #4). It reproduces the paper's 10.07 -> 2.49
  TFLOPs (7B) and 19.60 -> 4.66 TFLOPs (13B).
* :func:`count_flops` counts what actually runs (``torch.utils.flop_counter.FlopCounterMode``).
* :func:`cuda_latency_ms` times with CUDA events after warm-up; :func:`peak_memory_above` resets the peak
  counter **before** the measured region (the official ``*_time_and_mem.py`` resets it just before reading,
  so its "max memory" is not the run's peak).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch

LLAVA15_SHAPES = {"7b": (32, 4096), "13b": (40, 5120)}  # (decoder layers, hidden size)


def eq13_layer_flops(n_tokens: int, hidden: int, batch: int = 1) -> float:
    """Eq. 13 for one layer: 8NC^2 (Q, K, V, O) + 4N^2C (QK^T and AV) + 24NC^2 (FFN as C <-> 4C)."""
    return 32.0 * batch * n_tokens * hidden**2 + 4.0 * batch * n_tokens**2 * hidden


def eq13_prefill_flops(tokens_per_layer: Sequence[int], hidden: int, batch: int = 1) -> float:
    """Eq. 13 summed over layers, given the number of image tokens each layer processes."""
    return sum(eq13_layer_flops(n, hidden, batch) for n in tokens_per_layer)


def eq13_schedule(
    n_layers: int, n_image_tokens: int = 576, *, keep_rate: float = 1.0, prune_layer: int = 0
) -> list[int]:
    """Image tokens per layer: all of them before ``prune_layer``, then int(N * keep_rate) (Dynamic-LLaVA:
    prune_layer 2, keep 0.2 -> 115; FastV k=3, r=0.75 -> prune_layer 3, keep 0.25 -> 144)."""
    if not 0.0 < keep_rate <= 1.0:  # also rejects nan and inf
        raise ValueError(f"keep_rate {keep_rate}: the share of image tokens kept must lie in (0, 1]")
    if not 0 <= prune_layer < n_layers:
        raise ValueError(
            f"prune_layer {prune_layer}: the model has {n_layers} decoder layers (0 .. {n_layers - 1})"
        )
    kept = max(int(n_image_tokens * keep_rate), 1) if keep_rate < 1.0 else n_image_tokens
    return [n_image_tokens] * prune_layer + [kept] * (n_layers - prune_layer)


def paper_tflops(size: str, *, keep_rate: float = 1.0, prune_layer: int = 0) -> float:
    """Eq. 13 in TFLOPs for LLaVA-1.5-7B/13B with 576 image tokens."""
    layers, hidden = LLAVA15_SHAPES[size]
    return (
        eq13_prefill_flops(eq13_schedule(layers, 576, keep_rate=keep_rate, prune_layer=prune_layer), hidden)
        / 1e12
    )


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of everything ``fn`` runs (matmuls, convolutions, SDPA), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def cuda_latency_ms(fn: Callable[[], Any], *, repeats: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median / mean / min milliseconds of ``fn`` with CUDA events (needs CUDA)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "mean_ms": statistics.fmean(times), "min_ms": min(times)}


def wall_latency_ms(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """The CPU fallback of :func:`cuda_latency_ms` (perf_counter)."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "mean_ms": statistics.fmean(times), "min_ms": min(times)}


def peak_memory_above(fn: Callable[[], Any]) -> dict[str, float]:
    """Peak CUDA memory allocated while ``fn`` runs, above what was allocated before it (the weights and
    inputs), with the peak counter reset before the region."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {
        "base_gib": base / 2**30,
        "peak_gib": peak / 2**30,
        "above_gib": (peak - base) / 2**30,
        "result": result,
    }
