"""``paperzoo-flashsloth``: train a stage, answer a question about an image, convert a released checkpoint, and
print the token/FLOP arithmetic of a variant.

    paperzoo-flashsloth train --config configs/full_stage2.yaml --set paths.data_json=... --set paths.image_folder=...
    paperzoo-flashsloth generate --model DIR --image cat.png --question "What is in the picture?"
    paperzoo-flashsloth convert SRC_DIR DST_DIR [--dtype float16]
    paperzoo-flashsloth tokens [--variant flashsloth|hd|uncompressed|...]

``paperzoo reproduce flashsloth --preset smoke|mini`` runs the tables (see the README).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paperzoo_flashsloth import __version__
from paperzoo_shared.errors import UserError, add_debug_flag, run_cli


def _local_folder(path: str, what: str) -> str:
    """A local model folder, or a one-line error (``from_pretrained`` would try the hub and fail on the network)."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{what} {path!r} is not a local folder (nothing is downloaded; check the path)")
    if not (folder / "config.json").is_file():
        raise UserError(f"{what} {path!r} has no config.json: not a transformers model folder")
    return path


def _resolve(path: str) -> str:
    """A config-relative path (``configs/...``) resolved against the package's data folder when needed."""
    if not path or Path(path).exists():
        return path
    from paperzoo_flashsloth.paper import PAPER

    candidate = PAPER.data_root() / path
    return str(candidate) if candidate.exists() else path


def _tokenizer_with_learnable(path: str):
    """The Phi-2 tokenizer with ``<learnable>`` (then ``</s>`` as eos) appended, as the official stage 0."""
    from transformers import AutoTokenizer

    from paperzoo_flashsloth.configuration import LEARNABLE_TOKEN

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="right")
    if tokenizer.convert_tokens_to_ids(LEARNABLE_TOKEN) in (None, tokenizer.unk_token_id):
        tokenizer.add_tokens([LEARNABLE_TOKEN], special_tokens=True)
    tokenizer.add_special_tokens({"eos_token": "</s>"})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from transformers import PhiForCausalLM, SiglipVisionModel

    from paperzoo_flashsloth.configuration import (
        LEARNABLE_TOKEN,
        ExperimentConfig,
        FlashSlothConfig,
        check_attn_implementation,
    )
    from paperzoo_flashsloth.data import ChatTemplate, FlashSlothCollator, LlavaJsonDataset
    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration
    from paperzoo_flashsloth.train import train_stage
    from paperzoo_shared.config import load_config

    cfg = load_config(ExperimentConfig, _resolve(args.config), args.overrides)
    paths = cfg.paths
    missing = [k for k in ("data_json", "image_folder", "output_dir") if not getattr(paths, k)]
    if not paths.init_checkpoint and not (paths.phi2 and paths.siglip):
        missing.append("init_checkpoint (or phi2 + siglip)")
    if missing:
        raise UserError(f"set paths.{', paths.'.join(missing)} (e.g. --set paths.data_json=/data/llava.json)")
    attn = check_attn_implementation(
        args.attn_implementation or cfg.model.attn_implementation, "--attn-implementation"
    )
    if paths.init_checkpoint:
        model = FlashSlothForConditionalGeneration.from_pretrained(
            _local_folder(paths.init_checkpoint, "paths.init_checkpoint"), attn_implementation=attn
        )
        tokenizer = _tokenizer_with_learnable(paths.init_checkpoint)
    else:  # stage 0: assemble the model from Phi-2 and SigLIP and add the tokens
        tokenizer = _tokenizer_with_learnable(_local_folder(paths.phi2, "paths.phi2"))
        text = PhiForCausalLM.from_pretrained(paths.phi2, dtype=torch.float32, attn_implementation=attn)
        vision = SiglipVisionModel.from_pretrained(
            _local_folder(paths.siglip, "paths.siglip"), dtype=torch.float32, attn_implementation=attn
        )
        vision.encoder.layers = vision.encoder.layers[
            : cfg.model.vision.num_layers
        ]  # mm_vision_select_layer -2
        vision.config.num_hidden_layers = cfg.model.vision.num_layers
        if getattr(vision, "head", None) is not None:  # the released model has no pooling head
            del vision.head
        vision.use_head = False
        vision.config.vision_use_head = False
        spec = cfg.model
        config = FlashSlothConfig(
            vision_config=vision.config.to_dict(),
            text_config=text.config.to_dict(),
            pool_size=spec.pool_size,
            pooling_dropout=spec.pooling_dropout,
            num_query_tokens=spec.num_query_tokens,
            embq_layer=spec.embq_layer,
            embq_down_dim=spec.embq_down_dim,
            embq_num_heads=spec.embq_num_heads,
            query_anchor_token_id=spec.query_anchor_token_id,
            image_hd=cfg.train.stage == "HD",
            learnable_token_id=tokenizer.convert_tokens_to_ids(LEARNABLE_TOKEN),
        )
        config._attn_implementation = attn
        model = FlashSlothForConditionalGeneration(config, vision_tower=vision, language_model=text)
    model.config.image_hd = cfg.train.stage == "HD" or model.config.image_hd
    template = (
        ChatTemplate.plain() if cfg.template == "plain" else ChatTemplate.phi2(system=cfg.system_prompt)
    )
    dataset = LlavaJsonDataset(
        paths.data_json,
        paths.image_folder,
        tokenizer,
        template,
        image_size=model.config.vision_config.image_size,
        image_token_id=model.config.image_token_id,
        learnable_token_id=model.config.learnable_token_id,
        hd=model.config.image_hd,
        hd_grid=model.config.hd_grid,
        patch_size=model.config.vision_config.patch_size,
        max_length=cfg.train.model_max_length,
    )
    cfg.train.deepspeed = _resolve(cfg.train.deepspeed)
    collator = FlashSlothCollator(tokenizer.pad_token_id)
    train_stage(model, dataset, collator, cfg.train, paths.output_dir, seed=args.seed, log_every=1)
    model.save_pretrained(paths.output_dir)
    tokenizer.save_pretrained(paths.output_dir)
    print(f"saved to {paths.output_dir}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoTokenizer, TextStreamer

    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration
    from paperzoo_flashsloth.processing_flashsloth import FlashSlothProcessor
    from paperzoo_shared.data.image_io import read_image

    folder = _local_folder(args.model, "--model")
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"--image {args.image!r} is not a file")
    model = FlashSlothForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = FlashSlothProcessor.from_model(model, tokenizer)
    inputs = processor(images=[read_image(args.image, channel_order="rgb")], text=[args.question])
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    sampling = (
        {"do_sample": True, "temperature": args.temperature} if args.temperature > 0 else {"do_sample": False}
    )
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if args.stream else None
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=args.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
            streamer=streamer,
            **sampling,
        )
    if streamer is None:
        new = out[0, inputs["input_ids"].shape[1] :]
        print(tokenizer.decode(new, skip_special_tokens=True).strip())
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from paperzoo_flashsloth.convert import CheckpointLayoutError, convert_checkpoint

    dtype = getattr(torch, args.dtype) if args.dtype else None
    try:
        config = convert_checkpoint(args.src, args.dst, dtype=dtype)
    except CheckpointLayoutError as error:
        raise UserError(str(error)) from error
    print(
        f"converted {args.src} -> {args.dst} (image_hd={config.image_hd}, {config.vision_tokens_per_query_block} tokens)"
    )
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    from paperzoo_flashsloth.configuration import FlashSlothConfig, variant_overrides
    from paperzoo_flashsloth.evaluate import formula_prefill_flops, token_counts

    config = FlashSlothConfig(**variant_overrides(args.variant))
    counts = token_counts(config)
    text = config.text_config
    counts["prefill_tflops_formula"] = (
        formula_prefill_flops(counts["visual_tokens"], text.hidden_size, text.num_hidden_layers) / 1e12
    )
    print(json.dumps({"variant": args.variant, **counts}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from paperzoo_flashsloth.configuration import VARIANTS

    parser = argparse.ArgumentParser(prog="paperzoo-flashsloth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"paperzoo-flashsloth {__version__}")
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one stage (I, II, HD) with transformers' Trainer")
    train.add_argument("--config", required=True, help="experiment YAML, e.g. configs/full_stage2.yaml")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--attn-implementation",
        choices=["sdpa", "eager", "flash_attention_2"],
        default=None,
        help="attention of the ViT and the LLM (default: the config's model.attn_implementation; the paper trains "
        "with flash_attention_2, which needs the flash-attn package)",
    )
    train.set_defaults(func=cmd_train)

    gen = sub.add_parser("generate", help="answer a question about an image")
    gen.add_argument("--model", required=True, help="folder written by `train` or `convert`")
    gen.add_argument("--image", required=True)
    gen.add_argument("--question", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument(
        "--temperature", type=float, default=0.0, help="0: greedy; > 0: sampling at this temperature"
    )
    gen.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    gen.set_defaults(func=cmd_generate)

    conv = sub.add_parser("convert", help="convert a released FlashSloth checkpoint folder to this layout")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default=None)
    conv.set_defaults(func=cmd_convert)

    tok = sub.add_parser("tokens", help="visual tokens and formula FLOPs of a real-size variant")
    tok.add_argument("--variant", choices=VARIANTS, default="flashsloth")
    tok.set_defaults(func=cmd_tokens)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-flashsloth", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
