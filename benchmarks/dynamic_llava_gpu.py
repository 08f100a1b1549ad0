"""Dynamic-LLaVA efficiency at the real LLaVA-1.5 size with random fp16 weights (shape-only claims).

Measures, side by side on one card and in one run (never asserting speed):

* prefill latency, dense vs Dynamic-LLaVA (576 -> 115 image tokens after layer 2), batch 1 and 8, CUDA events
  around the whole prefill (vision tower, projector, predictors, decoder, LM head of the last token);
* transformers' own ``LlavaForConditionalGeneration`` prefill and ``generate`` on the same weights, and its
  LLM-only prefill at 616 vs 155 tokens, as references;
* decoding 1K tokens with the KV cache at batch 8: peak memory above the weights (peak counter reset before
  the region) and per-step latency, with the output-text keep rate forced to 50 % (keep, drop, keep, ...;
  random predictors would give an arbitrary rate); per-step decode latency at batch 1;
* FLOPs: paper Eq. 13 and the counted FLOPs (``torch.utils.flop_counter``) of one prefill.

Targets reported as ratios: prefill at batch 8 <= 0.5x dense; KV-cache memory above weights <= 0.6x dense.

    python benchmarks/dynamic_llava_gpu.py --size 7b --out dynamic_llava_gpu.json      # about 5 min on an H100
    python benchmarks/dynamic_llava_gpu.py --size tiny                                  # CPU check of the script

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
    g = torch.Generator().manual_seed(seed)
    p = model.num_image_tokens
    text = torch.randint(5, model.config.text_config.vocab_size, (batch, TEXT_TOKENS), generator=g)
    text[text == model.image_token_id] = 5
    ids = torch.cat(
        [text[:, :1].fill_(1), text[:, 1:35], torch.full((batch, p), model.image_token_id), text[:, 35:]], 1
    )
    size = model.config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype)}  # fmt: skip


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
    with torch.inference_mode():
        for sel, pattern in (("dense", None), ("dynamic", "alternate")):

            def generate(s=sel, p=pattern, k=steps):
                return model.sparse_generate(**batch, max_new_tokens=k, selection=s, text_keep_pattern=p)

            (out, peak), ms = elapsed_ms(device, lambda g=generate: peak_above(device, g))
            cache = out["cache"]
            prefill_ms = prefill.get(f"ours_{sel}_b{b}", {}).get("median_ms", 0.0)
            kept_text = torch.stack(out["text_keep"]).float().mean().item() if out["text_keep"] else None
            decode[f"ours_{sel}_b{b}"] = {
                "new_tokens": int(out["sequences"].shape[1]),
                "peak_above_weights_gib": peak,
                "kv_cache_gib": cache.nbytes() / 2**30,
                "kv_cache_allocated_gib": cache.allocated_nbytes() / 2**30,
                "cached_tokens_per_layer_sample0": cache.cached_tokens()[:, 0].tolist(),
                "output_text_keep_rate": kept_text,
                "total_ms": ms,
                "per_step_ms": (ms - prefill_ms) / max(int(out["sequences"].shape[1]) - 1, 1),
            }
            del out, cache
        if not args.skip_reference and (cuda or args.reference_generate):

            def hf_generate():
                return reference.generate(
                    **batch, max_new_tokens=steps, min_new_tokens=steps, do_sample=False
                )

            def hf_run():
                (out, peak), ms = elapsed_ms(device, lambda: peak_above(device, hf_generate))
                ref_prefill = prefill.get(f"transformers_dense_b{b}", {}).get("median_ms", 0.0)
                new = int(out.shape[1] - batch["input_ids"].shape[1])
                return {
                    "new_tokens": new,
                    "peak_above_weights_gib": peak,
                    "total_ms": ms,
                    "per_step_ms": (ms - ref_prefill) / max(new - 1, 1),
                }

            guarded(decode, f"transformers_generate_b{b}", hf_run)
        batch1 = make_batch(model, 1, device, dtype, seed=2)
        for sel, pattern in (("dense", None), ("dynamic", "alternate")):
            k = min(steps, args.decode_tokens_b1)
            _, ms = elapsed_ms(device, lambda s=sel, p=pattern, k=k: model.sparse_generate(
                **batch1, max_new_tokens=k, selection=s, text_keep_pattern=p))  # fmt: skip
            prefill_ms = prefill.get(f"ours_{sel}_b1", {}).get("median_ms", 0.0)
            decode[f"ours_{sel}_b1_per_step_ms"] = (ms - prefill_ms) / max(k - 1, 1)
    dense_kv, dyn_kv = decode[f"ours_dense_b{b}"], decode[f"ours_dynamic_b{b}"]
    result["decode"] = decode
    mem_key = "peak_above_weights_gib" if cuda else "kv_cache_allocated_gib"
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
        "eq13_dynamic_over_dense": {"value": flops["eq13_dynamic_tflops"] / flops["eq13_dense_tflops"]},
    }
    for item in result["targets"].values():
        if "target_at_most" in item and item["value"] is not None:
            item["met"] = bool(item["value"] <= item["target_at_most"])
    result["wall_time_s"] = time.perf_counter() - t0
    return result


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("device", "size", "targets", "wall_time_s")}, indent=2))
    return result


if __name__ == "__main__":
    main()
