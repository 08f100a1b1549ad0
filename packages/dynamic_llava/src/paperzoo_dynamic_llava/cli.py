"""``paperzoo-dynamic-llava``: train, convert, generate, flops (and ``paperzoo reproduce dynamic_llava``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paperzoo_shared.errors import UserError, add_debug_flag, run_cli

DTYPES = ("float32", "float16", "bfloat16")


def _package_configs() -> Path:
    from paperzoo_dynamic_llava.paper import PAPER

    return PAPER.data_root() / "configs"


def _cmd_train(args: argparse.Namespace) -> int:
    from paperzoo_dynamic_llava.configuration import FullTrainConfig
    from paperzoo_dynamic_llava.train import resolve_deepspeed_path, run_training
    from paperzoo_shared.config import load_config

    config = args.config or (_package_configs() / "full" / "dynamic_llava_7b.yaml")
    cfg = load_config(FullTrainConfig, config, overrides=args.set)
    resolve_deepspeed_path(cfg, config, args.set)
    out = run_training(cfg, tiny=args.tiny, seed=args.seed)
    print(f"saved {out}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from paperzoo_dynamic_llava.configuration import SparseConfig
    from paperzoo_dynamic_llava.convert import convert_original_checkpoint

    sparse = SparseConfig() if args.dynamic else None
    dtype = None if args.dtype == "source" else getattr(torch, args.dtype)
    out = convert_original_checkpoint(args.src, args.out, vision_tower=args.vision_tower, sparse=sparse,
                                      pad_vocab_to=args.pad_vocab_to, dtype=dtype)  # fmt: skip
    print(f"wrote {out}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoTokenizer

    from paperzoo_dynamic_llava.data import expand_to_square, resize_and_normalize, vicuna_v1_prompt
    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
    from paperzoo_shared.data.image_io import read_image

    if not (args.model / "config.json").is_file():
        raise UserError(
            f"--model {args.model}: no config.json there; pass a local Dynamic-LLaVA checkpoint folder"
        )
    if not args.image.is_file():
        raise UserError(f"--image {args.image}: no such file")
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise UserError(f"--device {args.device}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)  # auto: the checkpoint's dtype
    model = DynamicLlavaForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(device).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    prompt = vicuna_v1_prompt(args.prompt)
    before, _, after = prompt.partition("<image>")
    ids = [tok.bos_token_id, *tok(before, add_special_tokens=False)["input_ids"]]
    ids += [model.image_token_id] * model.num_image_tokens + tok(after, add_special_tokens=False)["input_ids"]
    image = expand_to_square(read_image(args.image, channel_order="rgb"))
    pixels = resize_and_normalize(image, model.config.vision_config.image_size)[None].to(device, model.dtype)
    with torch.no_grad():
        out = model.sparse_generate(torch.tensor([ids], device=device), pixels, max_new_tokens=args.max_new_tokens,
                                    selection=args.selection, eos_token_id=tok.eos_token_id,
                                    use_cache=not args.no_cache)  # fmt: skip
    print(tok.decode(out["sequences"][0].cpu(), skip_special_tokens=True))
    where = f"{str(model.dtype).replace('torch.', '')} on {device}"
    if out["cache"] is not None:
        print(f"KV cache: {out['cache'].nbytes() / 2**20:.1f} MiB ({where})", file=sys.stderr)
    else:
        print(f"decoded without KV cache ({where})", file=sys.stderr)
    return 0


def _cmd_flops(args: argparse.Namespace) -> int:
    from paperzoo_dynamic_llava.measure import LLAVA15_SHAPES, paper_tflops

    if not 0.0 < args.keep_rate <= 1.0:  # nan and inf fail this comparison too
        raise UserError(f"--keep-rate {args.keep_rate}: the share of image tokens kept must lie in (0, 1]")
    layers = min(n for n, _ in LLAVA15_SHAPES.values())
    if not 0 <= args.sparse_layer < layers:
        raise UserError(
            f"--sparse-layer {args.sparse_layer}: must be a decoder layer index in 0 .. {layers - 1} "
            f"(LLaVA-1.5-7B has {LLAVA15_SHAPES['7b'][0]} layers, 13B {LLAVA15_SHAPES['13b'][0]})"
        )
    rows = {
        f"llava15_{size}": {
            "dense": round(paper_tflops(size), 2),
            "dynamic_llava": round(
                paper_tflops(size, keep_rate=args.keep_rate, prune_layer=args.sparse_layer), 2
            ),
            "fastv_k3_r075": round(paper_tflops(size, keep_rate=0.25, prune_layer=3), 2),
        }
        for size in ("7b", "13b")
    }
    print(json.dumps({"eq13_prefill_tflops": rows}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo-dynamic-llava", description=__doc__)
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train", help="Dynamic-LLaVA training through transformers' Trainer (torchrun for several processes)"
    )
    p.add_argument("--config", type=Path, help="YAML (default: configs/full/dynamic_llava_7b.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. train.max_steps=10",
    )
    p.add_argument(
        "--tiny", action="store_true", help="random tiny LLaVA on synthetic shape questions (smoke test)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("convert", help="original-layout LLaVA / Dynamic-LLaVA checkpoint -> llava-hf layout")
    p.add_argument(
        "src", type=Path, help="directory with config.json and weights (liuhaotian/llava-v1.5-7b layout)"
    )
    p.add_argument("out", type=Path)
    p.add_argument(
        "--vision-tower",
        type=Path,
        required=True,
        help="local CLIP vision directory (openai/clip-vit-large-patch14-336)",
    )
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="add new predictors (SparseConfig defaults) to a dense checkpoint",
    )
    p.add_argument("--pad-vocab-to", type=int, default=64)
    p.add_argument(
        "--dtype",
        default="source",
        choices=["source", *DTYPES],
        help="dtype of the written weights (default: the source checkpoint's, fp16 for the released models)",
    )
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "generate", help="answer a question about an image with a local Dynamic-LLaVA checkpoint"
    )
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--selection", default="dynamic", choices=["dynamic", "dense", "random", "fastv"])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument(
        "--no-cache", action="store_true", help="decode by re-running the pruned context (no KV cache)"
    )
    p.add_argument(
        "--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)"
    )
    p.add_argument(
        "--dtype", default="auto", choices=["auto", *DTYPES], help="weights dtype (default: the checkpoint's)"
    )
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("flops", help="paper Eq. 13 prefill TFLOPs of LLaVA-1.5-7B/13B, dense vs sparse")
    p.add_argument("--keep-rate", type=float, default=0.2)
    p.add_argument("--sparse-layer", type=int, default=2)
    p.set_defaults(func=_cmd_flops)
    for command in sub.choices.values():  # --debug is accepted before or after the command
        add_debug_flag(command)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """The ``paperzoo-dynamic-llava`` entry point: a known bad input (a bad flag value, a missing file, a
    malformed config or data file) is one line and exit status 2; ``--debug`` shows the traceback."""
    return run_cli("paperzoo-dynamic-llava", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
