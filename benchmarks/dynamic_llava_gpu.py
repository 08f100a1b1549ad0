"""Dynamic-LLaVA efficiency at the real LLaVA-1.5 size with random fp16 weights (shape-only claims).

Measures, side by side on one card and in one run (never asserting speed), on **left-padded** batches (text
lengths differ per sample):

* prefill latency, dense vs Dynamic-LLaVA (576 -> 115 image tokens after layer 2), batch 1 and 8, CUDA events
  around the whole prefill (vision tower, projector, predictors, decoder, LM head of the last token), after warm-up;
* transformers' own ``LlavaForConditionalGeneration`` prefill on the same weights, and its LLM-only prefill at
  616 vs 155 tokens, as references;
* decoding at batch 8 with the package's gated KV cache (dynamic and static variants; ``--compile``: the static
  step under ``torch.compile``, CUDA graphs on a GPU), decoding **without** KV cache (re-running the pruned
  context), and transformers' dense ``generate`` with its dynamic and static caches as a second baseline. Every
  decoder is warmed up, then timed for ``k`` and for 1 new token: per-step latency = (t_k - t_1) / (k - 1), so
  the prefill cancels. Peak memory above the weights (peak counter reset before the region) and KV bytes.
  The output-text keep decisions are forced per sample at random (probability 1/2, seeded): uneven caches, as
  random predictors would give an arbitrary rate; per-step decode latency at batch 1 too;
* FLOPs: paper Eq. 13 and the counted FLOPs (``torch.utils.flop_counter``) of one prefill;
* the decode memory-bandwidth floor: (decoder weights + mean kept KV) / the card's bandwidth.

Targets reported as ratios: prefill at batch 8 <= 0.5x dense; KV-cache memory above weights <= 0.6x dense; decode
per step at batch 8 with the gated static cache compiled (CUDA graphs) <= 3x the bandwidth floor.

    python benchmarks/dynamic_llava_gpu.py --size 7b --compile --out dynamic_llava_gpu.json   # an H100 or H200
    python benchmarks/dynamic_llava_gpu.py --size tiny                                        # CPU check

Without CUDA the script runs the tiny config on CPU (wall-clock timings, no peak memory) and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from paperzoo_dynamic_llava.configuration import SparseConfig, TinyModelConfig
from paperzoo_dynamic_llava.measure import count_flops, cuda_latency_ms, eq13_prefill_flops, wall_latency_ms
from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
from paperzoo_dynamic_llava.presets import llava15_config, tiny_llava_config

TEXT_TOKENS = (
    40  # LLaVA-1.5 prompt: 576 image tokens + about 40 text tokens = 616 (115 + 40 = 155 after pruning)
)


def build_models(size: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Dynamic-LLaVA with random weights, and transformers' LLaVA sharing the very same tensors."""
    from transformers import LlavaForConditionalGeneration

    if size == "tiny":
        tiny = TinyModelConfig(image_size=32, patch_size=8, vision_hidden=32, vision_heads=2, text_hidden=64,
                               text_layers=4, text_heads=4, text_intermediate=128, max_position_embeddings=2048)  # fmt: skip
        sparse = SparseConfig(d_model=32, nhead=4, dim_feedforward=64)
        config = tiny_llava_config(tiny, vocab_size=64, sparse=sparse)
    else:
        config = llava15_config(size, sparse=SparseConfig())
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = DynamicLlavaForConditionalGeneration(config)
        with torch.device("meta"):
            reference = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    reference.load_state_dict(model.state_dict(), strict=False, assign=True)
    for name, buffer in model.named_buffers():
        owner, _, attr = name.rpartition(".")
        if owner.startswith("model."):
            setattr(reference.get_submodule(owner), attr, buffer)
    left = [n for n, t in [*reference.named_parameters(), *reference.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"reference LLaVA has tensors that were not shared: {left[:3]}")
    return model.eval(), reference.eval()


def guarded(section: dict[str, Any], key: str, fn) -> None:
    """Runs a reference measurement; a failure is recorded in the JSON instead of losing the whole run."""
    try:
        section[key] = fn()
    except Exception as error:
        section[key] = {"error": f"{type(error).__name__}: {error}"}


def make_batch(
    model: Any, batch: int, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``<bos> text <image>*P text`` prompts, left-padded: sample 0 has all TEXT_TOKENS text tokens, the others
    up to a quarter fewer (seeded), so every batch > 1 has padding."""
    g = torch.Generator().manual_seed(seed)
    p = model.num_image_tokens
    vocab = model.config.text_config.vocab_size
    short = [0] + torch.randint(1, TEXT_TOKENS // 4 + 1, (batch - 1,), generator=g).tolist()
    n = TEXT_TOKENS + p
    ids = torch.zeros(batch, n, dtype=torch.long)
    mask = torch.zeros(batch, n, dtype=torch.long)
    for i, cut in enumerate(short):
        text = torch.randint(5, vocab, (TEXT_TOKENS - cut,), generator=g)
        text[text == model.image_token_id] = 5
        seq = torch.cat(
            [text[:1].fill_(1), text[1 : 35 - cut], torch.full((p,), model.image_token_id), text[35 - cut :]]
        )
        ids[i, n - len(seq) :], mask[i, n - len(seq) :] = seq, 1
    size = model.config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, generator=g)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "pixel_values": pixels.to(device, dtype),
    }


# Peak memory bandwidth (GB/s) from NVIDIA's data sheets, matched in order against the device name.
CARD_BANDWIDTH_GBS = (("H200", 4800.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0),
                      ("A100-SXM4-80GB", 2039.0), ("A100 80GB PCIe", 1935.0), ("A100", 1555.0))  # fmt: skip


def card_bandwidth_gbs(name: str) -> float | None:
    return next((gbs for key, gbs in CARD_BANDWIDTH_GBS if key in name), None)


def timer(device: torch.device, repeats: int):
    if device.type == "cuda":
        return lambda fn: cuda_latency_ms(fn, repeats=repeats)
    return lambda fn: wall_latency_ms(fn, repeats=max(repeats // 4, 1))


def peak_above(device: torch.device, fn) -> tuple[Any, float | None]:
    if device.type != "cuda":
        return fn(), None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()  # before the measured region, not just before reading it
    result = fn()
    torch.cuda.synchronize()
    return result, (torch.cuda.max_memory_allocated() - base) / 2**30


def elapsed_ms(device: torch.device, fn) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, (time.perf_counter() - start) * 1e3


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    cuda = torch.cuda.is_available()
    notes = []
    size = args.size
    if not cuda and size != "tiny":
        notes.append(f"no CUDA device: ran the tiny config on CPU instead of {size}, at most 128 new tokens")
        size = "tiny"
        args.decode_tokens = min(args.decode_tokens, 128)
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    torch.manual_seed(0)
    model, reference = build_models(size, device, dtype)
    weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else None
    if args.bandwidth_gbs is None and cuda:
        args.bandwidth_gbs = card_bandwidth_gbs(torch.cuda.get_device_name(0))
    time_ms = timer(device, args.repeats)
    result: dict[str, Any] = {
        "benchmark": "dynamic_llava_gpu",
        "size": size,
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()})",
        "dtype": str(dtype).replace("torch.", ""),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "weights_gib": weights_gib,
        "image_tokens": model.num_image_tokens,
        "text_tokens": TEXT_TOKENS,
        "vision_keep": max(int(model.num_image_tokens * model.sparse.vision_keep_rate), 1),
        "sparse_layer": model.sparse.sparse_layer,
        "bandwidth_gbs": args.bandwidth_gbs,
        "command": "python benchmarks/dynamic_llava_gpu.py " + " ".join(args.argv),
        "notes": notes,
    }
    cfg = model.config.text_config
    n, kept, layers, l = (
        model.num_image_tokens,
        result["vision_keep"],
        cfg.num_hidden_layers,
        model.sparse.sparse_layer,
    )
    flops: dict[str, Any] = {
        "eq13_dense_tflops": eq13_prefill_flops([n] * layers, cfg.hidden_size) / 1e12,
        "eq13_dynamic_tflops": eq13_prefill_flops([n] * l + [kept] * (layers - l), cfg.hidden_size) / 1e12,
    }
    one = make_batch(model, 1, device, dtype)
    with torch.inference_mode():
        for sel in ("dense", "dynamic"):
            flops[f"counted_{sel}_tflops"] = (
                count_flops(lambda s=sel: model(**one, selection=s, execution="prune", last_logits_only=True))
                / 1e12
            )
    result["flops"] = flops

    prefill: dict[str, Any] = {}
    with torch.inference_mode():
        for b in args.batch_sizes:
            batch = make_batch(model, b, device, dtype)
            for sel in ("dense", "dynamic"):
                prefill[f"ours_{sel}_b{b}"] = time_ms(
                    lambda s=sel, x=batch: model(**x, selection=s, execution="prune", last_logits_only=True)
                )
            if not args.skip_reference:
                guarded(
                    prefill,
                    f"transformers_dense_b{b}",
                    lambda x=batch: time_ms(lambda: reference(**x, logits_to_keep=1)),
                )
            prefill[f"ratio_dynamic_over_dense_b{b}"] = (
                prefill[f"ours_dynamic_b{b}"]["median_ms"] / prefill[f"ours_dense_b{b}"]["median_ms"]
            )
        if (
            not args.skip_reference
        ):  # LLM-only bounds: the 616-token prompt vs the 155 tokens kept after pruning
            b = max(args.batch_sizes)
            lm = reference.model.language_model
            for tokens in (n + TEXT_TOKENS, kept + TEXT_TOKENS):
                embeds = torch.randn(b, tokens, cfg.hidden_size, device=device, dtype=dtype) * 0.02
                guarded(
                    prefill,
                    f"transformers_llm_only_b{b}_{tokens}tok",
                    lambda e=embeds: time_ms(lambda: lm(inputs_embeds=e)),
                )
    result["prefill"] = prefill

    decode: dict[str, Any] = {}
    b = max(args.batch_sizes)
    batch = make_batch(model, b, device, dtype, seed=1)
    steps = args.decode_tokens
    text_weights = sum(t.numel() * t.element_size() for t in [*model.language_model.parameters(),
                                                              *model.lm_head.parameters()])  # fmt: skip
    with torch.inference_mode():
        runs: dict[str, Any] = {}
        for sel in ("dense", "dynamic"):
            pattern = (
                "random" if sel == "dynamic" else None
            )  # per-sample random keep decisions: uneven caches
            for kind in ("dynamic", "static"):
                runs[f"ours_{sel}_{kind}_cache"] = lambda k, s=sel, p=pattern, c=kind: model.sparse_generate(
                    **batch, max_new_tokens=k, selection=s, text_keep_pattern=p, cache_kind=c, seed=1)  # fmt: skip
        for name, run in runs.items():
            decode[f"{name}_b{b}"] = measure_decoder(device, run, steps, text_weights, args.bandwidth_gbs)
        if args.compile:  # the static step compiled (CUDA graphs on a GPU); warm-up captures the graphs
            if cuda:
                model.compile_decode(mode="reduce-overhead")
            else:  # a CPU check that the step traces; the eager backend optimises nothing
                model.compile_decode(backend="eager")
                notes.append(
                    "--compile on CPU: backend='eager' (traced, not optimised); its timings mean little"
                )
            for sel in ("dense", "dynamic"):
                name = f"ours_{sel}_static_cache_compiled_b{b}"
                guarded(decode, name, lambda s=sel: measure_decoder(device, runs[f"ours_{s}_static_cache"], steps,
                                                                    text_weights, args.bandwidth_gbs))  # fmt: skip
            model._compiled_decode = None
        k_nocache = min(steps, args.nocache_tokens)
        for sel in ("dense", "dynamic"):  # decoding without KV cache: every step re-runs the pruned context
            decode[f"ours_{sel}_no_cache_b{b}"] = measure_decoder(
                device, lambda k, s=sel: model.sparse_generate(**batch, max_new_tokens=k, selection=s, use_cache=False),
                k_nocache, text_weights, None,
            )  # fmt: skip
        if not args.skip_reference and (cuda or args.reference_generate):
            for impl in ("dynamic", "static"):

                def hf(k, i=impl):
                    return reference.generate(**batch, max_new_tokens=k, min_new_tokens=k, do_sample=False,
                                              cache_implementation=None if i == "dynamic" else "static",
                                              return_dict_in_generate=True, pad_token_id=0)  # fmt: skip

                guarded(decode, f"transformers_dense_{impl}_cache_b{b}",
                        lambda f=hf: measure_decoder(device, f, steps, text_weights, args.bandwidth_gbs))  # fmt: skip
        batch1 = make_batch(model, 1, device, dtype, seed=2)
        k1 = min(steps, args.decode_tokens_b1)
        for sel in ("dense", "dynamic"):
            pattern = "random" if sel == "dynamic" else None
            decode[f"ours_{sel}_static_cache_b1"] = measure_decoder(
                device, lambda k, s=sel, p=pattern: model.sparse_generate(
                    **batch1, max_new_tokens=k, selection=s, text_keep_pattern=p, cache_kind="static"),
                k1, text_weights, args.bandwidth_gbs,
            )  # fmt: skip
    result["decode"] = decode
    dense_kv, dyn_kv = decode[f"ours_dense_dynamic_cache_b{b}"], decode[f"ours_dynamic_dynamic_cache_b{b}"]
    mem_key = "peak_above_weights_gib" if cuda else "kv_cache_gib"
    compiled = decode.get(f"ours_dynamic_static_cache_compiled_b{b}", {})
    result["targets"] = {
        f"prefill_b{b}_dynamic_over_dense": {
            "value": prefill[f"ratio_dynamic_over_dense_b{b}"],
            "target_at_most": 0.5,
        },
        "kv_memory_above_weights_dynamic_over_dense": {
            "value": dyn_kv[mem_key] / dense_kv[mem_key] if dense_kv[mem_key] else None,
            "measured_as": mem_key,
            "target_at_most": 0.6,
        },  # fmt: skip
        f"decode_per_step_b{b}_static_compiled_over_bandwidth_floor": {
            "value": compiled.get("per_step_over_floor") if cuda else None,
            "measured_as": "CUDA graphs (--compile) on a GPU; null without CUDA or --compile",
            "target_at_most": 3.0,
        },
        "eq13_dynamic_over_dense": {"value": flops["eq13_dynamic_tflops"] / flops["eq13_dense_tflops"]},
    }
    for item in result["targets"].values():
        if "target_at_most" in item and item["value"] is not None:
            item["met"] = bool(item["value"] <= item["target_at_most"])
    result["wall_time_s"] = time.perf_counter() - t0
    return result


def _kv_bytes(out: Any) -> tuple[float | None, float | None, list[int] | None]:
    """KV bytes held (valid entries) and allocated, and per-sample cached tokens of the last layer."""
    cache = out.get("cache") if isinstance(out, dict) else getattr(out, "cache", None)
    if cache is None:
        return None, None, None
    if hasattr(cache, "cached_tokens"):  # the gated caches
        return cache.nbytes(), cache.allocated_nbytes(), cache.cached_tokens()[-1].tolist()
    total = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    return total, total, None  # transformers' caches: what they hold is what they allocated


def measure_decoder(device: torch.device, run, steps: int, text_weights: int, bandwidth_gbs: float | None):
    """Warm-up, then ``run(steps)`` and ``run(1)`` timed: per-step latency without the prefill, peak memory of
    the long run above what was allocated before it, KV bytes after it, and the bandwidth floor."""
    run(min(steps, 8))  # warm-up (allocator, kernels, compiled graphs) of both timed regions
    (out, peak), ms = elapsed_ms(device, lambda: peak_above(device, lambda: run(steps)))
    prefilled, ms_one = elapsed_ms(device, lambda: run(1))
    kv, allocated, last_layer = _kv_bytes(out)
    first = _kv_bytes(prefilled)[0]
    per_step = (ms - ms_one) / max(steps - 1, 1)
    row: dict[str, Any] = {
        "new_tokens": steps,
        "total_ms": ms,
        "one_token_ms": ms_one,
        "per_step_ms": per_step,
        "peak_above_weights_gib": peak,
        "kv_cache_gib": None if kv is None else kv / 2**30,
        "kv_cache_allocated_gib": None if allocated is None else allocated / 2**30,
        "cached_tokens_last_layer_per_sample": last_layer,
    }
    if isinstance(out, dict) and out.get("text_keep"):
        keeps = torch.stack(out["text_keep"]).float()  # (steps - 1, B)
        row["output_text_keep_rate"] = keeps.mean().item()
        row["output_text_kept_per_sample"] = keeps.sum(0).long().tolist()
    if kv is not None and bandwidth_gbs:
        floor_ms = (text_weights + (first + kv) / 2) / (bandwidth_gbs * 1e9) * 1e3  # mean KV over the steps
        row["bandwidth_floor_ms"] = floor_ms
        row["per_step_over_floor"] = per_step / floor_ms
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="7b", choices=["7b", "13b", "tiny"])
    parser.add_argument("--out", type=Path, default=Path("dynamic_llava_gpu.json"))
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--decode-tokens", type=int, default=1024, help="generated tokens at the largest batch"
    )
    parser.add_argument(
        "--decode-tokens-b1", type=int, default=128, help="generated tokens for the batch-1 step latency"
    )
    parser.add_argument(
        "--skip-reference", action="store_true", help="skip transformers' own LLaVA reference runs"
    )
    parser.add_argument(
        "--reference-generate", action="store_true", help="also run transformers' generate on CPU"
    )
    parser.add_argument("--nocache-tokens", type=int, default=64, help="generated tokens without KV cache")
    parser.add_argument("--compile", action="store_true", help="also time the static decode step compiled")
    parser.add_argument(
        "--bandwidth-gbs", type=float, default=None,
        help="memory bandwidth (GB/s) for the decode floor (default: the card's, for known cards; none on CPU)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import sys

    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("device", "size", "targets", "wall_time_s")}, indent=2))
    return result


if __name__ == "__main__":
    main()
