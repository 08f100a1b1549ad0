"""FlashSloth efficiency table at real size (3.2B: SigLIP-so400m/384 x 26 blocks + Phi-2) with random fp16 weights.

One GPU, one run, one JSON; it never asserts speed. Rows, side by side on the same card and the same weights:

* ``uncompressed``: every one of the 729 SigLIP patch tokens reaches the LLM, no query tokens, no query module;
* ``flashsloth``: spatial attention pooling (81 tokens) + 9 query tokens refined by the embedded query module;
* ``hd``: global view + 2x2 crops, 5 x 81 = 405 tokens + 9 queries;
* ``hd_uncompressed``: the same 5 views with all 5 x 729 = 3645 patch tokens.

For each: visual tokens, prefill FLOPs (formula and exact ``FlopCounterMode`` count, batch 1), time to first token
(vision + prefill + argmax; CUDA events; median), peak prefill memory above the weights, and cached decoding
throughput, at batch 1 and 8. The variants share one vision tower and one Phi-2 (only the small compression modules
differ), so the comparison is on identical backbone weights. The issue's reference target: time to first token at
batch 8 at most 0.5x the uncompressed model's (``ratios`` in the JSON).

    python benchmarks/flashsloth_gpu.py --out flashsloth_gpu.json          # GPU, under 8 minutes
    python benchmarks/flashsloth_gpu.py --tiny --out /tmp/tiny.json        # CPU, seconds (the package test)

Without CUDA and without ``--tiny`` it runs the tiny configuration and says so in the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

VARIANTS = ("uncompressed", "flashsloth", "hd_uncompressed", "hd")


def tiny_config(variant: str):
    from paperzoo_flashsloth.configuration import ModelSpec, TextSpec, VisionSpec, build_model_config

    spec = ModelSpec(
        vision=VisionSpec(
            hidden_size=16, intermediate_size=32, num_layers=2, num_heads=4, image_size=24, patch_size=4
        ),
        text=TextSpec(
            hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4, partial_rotary_factor=0.5
        ),
        num_query_tokens=3,
        embq_layer=2,
        embq_down_dim=16,
        embq_num_heads=4,
        attn_implementation="sdpa",
    )
    return build_model_config(
        spec, variant=variant, vocab_size=64, image_token_id=5, learnable_token_id=6, query_anchor_token_id=7
    )


def real_config(variant: str, attn: str):
    from paperzoo_flashsloth.configuration import FlashSlothConfig, variant_overrides

    config = FlashSlothConfig(**variant_overrides(variant))
    config.vision_config._attn_implementation = attn
    config.text_config._attn_implementation = attn
    return config


def build_models(tiny: bool, device: torch.device, dtype: torch.dtype, attn: str) -> dict:
    """One model per variant; all share the first model's vision tower and language model."""
    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration

    configs = {v: tiny_config(v) if tiny else real_config(v, attn) for v in VARIANTS}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            base = FlashSlothForConditionalGeneration(configs["flashsloth"])
            models = {"flashsloth": base}
            for variant in VARIANTS:
                if variant != "flashsloth":
                    models[variant] = FlashSlothForConditionalGeneration(
                        configs[variant], vision_tower=base.vision_tower, language_model=base.language_model
                    )
    finally:
        torch.set_default_dtype(previous)
    return {v: m.to(device=device, dtype=dtype).eval() for v, m in models.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("flashsloth_gpu.json"))
    parser.add_argument("--tiny", action="store_true", help="tiny random config (CPU test)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32, help="cached decoding steps for throughput")
    parser.add_argument("--question-tokens", type=int, default=32)
    parser.add_argument("--prefix-tokens", type=int, default=32, help="system prompt + 'USER:' tokens")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="stop starting new rows after this long"
    )
    args = parser.parse_args(argv)

    from paperzoo_flashsloth.evaluate import efficiency_row

    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    notes = []
    tiny = args.tiny
    if device.type != "cuda" and not tiny:
        tiny = True
        notes.append("no CUDA device: ran the tiny configuration instead of the real 3.2B model")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    models = build_models(tiny, device, dtype, args.attn)
    build_s = time.perf_counter() - start
    base = models["flashsloth"]
    weights = sum(p.numel() * p.element_size() for p in base.parameters())
    rows, skipped = {}, []
    for variant in VARIANTS:
        if time.perf_counter() - start > args.budget_s:
            skipped.append(variant)
            continue
        model = models[variant]
        row = efficiency_row(
            model,
            batch_sizes=batch_sizes,
            question_tokens=args.question_tokens,
            prefix_tokens=args.prefix_tokens,
            repeats=args.repeats,
            warmup=args.warmup,
            new_tokens=args.new_tokens,
        )
        row["parameters"] = sum(p.numel() for p in model.parameters())
        rows[variant] = row
        print(
            f"{variant:>16}: {row['visual_tokens']:>5} visual tokens, "
            f"{row['prefill_tflops_exact']:.3f} TFLOPs, "
            + ", ".join(f"TTFT bs{b} {row[f'ttft_ms_bs{b}']:.1f} ms" for b in batch_sizes),
            flush=True,
        )
    ratios = {}
    for fast, slow in (("flashsloth", "uncompressed"), ("hd", "hd_uncompressed")):
        if fast in rows and slow in rows:
            for b in batch_sizes:
                ratios[f"ttft_{fast}_over_{slow}_bs{b}"] = (
                    rows[fast][f"ttft_ms_bs{b}"] / rows[slow][f"ttft_ms_bs{b}"]
                )
            ratios[f"tflops_{fast}_over_{slow}"] = (
                rows[fast]["prefill_tflops_exact"] / rows[slow]["prefill_tflops_exact"]
            )
    import transformers

    result = {
        "benchmark": "flashsloth_gpu",
        "config": "tiny" if tiny else "real (SigLIP-so400m/384 x 26 blocks + Phi-2, 3.2B)",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": args.attn,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
        },
        "weights_gb": weights / 2**30,
        "batch_sizes": list(batch_sizes),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "decode_steps": args.new_tokens,
        "prompt": {"prefix_tokens": args.prefix_tokens, "question_tokens": args.question_tokens, "images": 1},
        "rows": rows,
        "ratios": ratios,
        "skipped_for_time": skipped,
        "build_s": build_s,
        "wall_s": time.perf_counter() - start,
        "command": " ".join(
            ["python", "benchmarks/flashsloth_gpu.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
