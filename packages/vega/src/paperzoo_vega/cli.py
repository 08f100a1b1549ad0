"""``paperzoo-vega``: read, build, train on, evaluate and score VEGA's IITC and ITA data.

    paperzoo-vega validate IITC_4k_test.json [--images DIR] [--skip-bad]
    paperzoo-vega score responses.jsonl [--task iitc|ita]
    paperzoo-vega build DOCS --images DIR --out DIR [--budget 4096] [--max-images 8] [--ita 3,5] [--seed 0]
    paperzoo-vega synthetic OUT [--documents 20] [--seed 0] [--split test]
    paperzoo-vega evaluate FILE --model MODEL --out DIR [--images DIR] [--prompt official|paper|none]
    paperzoo-vega train --data DIR --mix IITC_4k_train.json=1 --mix ITA_3picture_C_train.json=1 --model MODEL --save DIR

MODEL is ``hf:/path/to/checkpoint`` (a local transformers image-text-to-text model and its processor),
``qwen-vl-chat:/path`` (Qwen-VL-Chat's remote-code ``model.chat``, the official scripts' path),
``openai:NAME@URL`` (an OpenAI-compatible server, e.g. ``openai:Qwen/Qwen2-VL-7B-Instruct@http://127.0.0.1:8000/v1``)
or ``tiny`` (train only: a random tiny Qwen2-VL over the data's words, for CPU trials).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paperzoo_shared.errors import UserError, add_debug_flag, run_cli
from paperzoo_vega import __version__
from paperzoo_vega.modeling_vega import PROMPT_STYLES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperzoo-vega", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"paperzoo-vega {__version__}")
    add_debug_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    va = commands.add_parser("validate", help="read a release file and report every bad record")
    va.add_argument("file", type=Path)
    va.add_argument("--images", type=Path, help="image root (default: the file's folder)")
    va.add_argument("--skip-bad", action="store_true", help="report and skip bad records instead of stopping")
    va.add_argument("--no-image-check", action="store_true", help="do not check that image files exist")

    sc = commands.add_parser(
        "score", help="score an output JSONL (records + 'response') as the official scripts"
    )
    sc.add_argument("file", type=Path)
    sc.add_argument("--task", choices=["iitc", "ita"], help="default: iitc when records have truth_fig_idx")

    bu = commands.add_parser("build", help="build IITC/ITA files from a folder of document JSONs")
    bu.add_argument(
        "documents", type=Path, help="folder of *.json documents (format: paperzoo_vega.construct)"
    )
    bu.add_argument("--images", type=Path, required=True, help="root the figure paths are relative to")
    bu.add_argument("--out", type=Path, required=True)
    bu.add_argument("--budget", type=int, default=4096, help="context tokens (4096 or 8192 in the paper)")
    bu.add_argument("--image-tokens", type=int, default=256, help="tokens counted per image (Qwen-VL: 256)")
    bu.add_argument("--max-images", type=int, default=8)
    bu.add_argument("--min-images", type=int, default=2)
    bu.add_argument("--ita", default="3,5", help="pictures per ITA sample, comma-separated")
    bu.add_argument("--ita-samples", type=int, default=0, help="ITA samples per size (0: one per document)")
    bu.add_argument("--seed", type=int, default=0)
    bu.add_argument("--split", default="train")

    sy = commands.add_parser(
        "synthetic", help="write the seeded synthetic corpus (documents + rendered figures)"
    )
    sy.add_argument("out", type=Path)
    sy.add_argument("--documents", type=int, default=20)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--split", default="test")

    ev = commands.add_parser("evaluate", help="run a model on a release file (resumable) and score it")
    ev.add_argument("file", type=Path)
    ev.add_argument("--model", required=True, help="see MODEL above")
    ev.add_argument(
        "--out", type=Path, required=True, help="run folder (rerun with the same folder to resume)"
    )
    ev.add_argument("--images", type=Path, help="image root (default: the file's folder)")
    ev.add_argument("--prompt", default="official", choices=PROMPT_STYLES)
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--max-new-tokens", type=int, default=512)
    ev.add_argument("--concurrency", type=int, default=4, help="requests in flight (openai models)")
    ev.add_argument("--device", default="cuda")
    ev.add_argument("--dtype", default="bfloat16")
    ev.add_argument("--limit", type=int, help="only the first N samples")
    ev.add_argument("--skip-bad", action="store_true", help="skip bad records (listed) instead of stopping")
    ev.add_argument("--no-progress", action="store_true")

    tr = commands.add_parser("train", help="multi-task post-training through transformers' Trainer")
    tr.add_argument("--data", type=Path, required=True, help="folder of the training JSON files")
    tr.add_argument("--images", type=Path, help="image root (default: --data)")
    tr.add_argument("--mix", action="append", required=True, metavar="FILE=WEIGHT",
                    help="a training file and its weight; repeat for multi-task/multi-scale")  # fmt: skip
    tr.add_argument("--model", required=True, help="hf:PATH or tiny")
    tr.add_argument("--save", type=Path, required=True, help="where to save the model and processor")
    tr.add_argument("--prompt", default="official", choices=PROMPT_STYLES)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--batch-size", type=int, default=1)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--lr", type=float, default=1e-5)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--deepspeed", help="DeepSpeed JSON, e.g. configs/deepspeed/zero2.json")
    tr.add_argument("--lora-r", type=int, default=0, help="LoRA rank through peft (0: full fine-tuning)")
    tr.add_argument("--bf16", action="store_true")
    tr.add_argument("--cpu", action="store_true", help="train on the CPU")
    for sub in (
        va,
        sc,
        bu,
        sy,
        ev,
        tr,
    ):  # --debug is read by run_cli from argv; accept it after the command too
        add_debug_flag(sub)
    return parser


def _dataset(path: Path, images: Path | None, skip_bad: bool, check: bool = True, limit: int | None = None):
    from paperzoo_vega.data import read_vega_jsonl

    data = read_vega_jsonl(path, image_root=images, on_error="skip" if skip_bad else "raise", check_images=check,
                           limit=limit)  # fmt: skip
    for problem in data.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return data


def _adapter(args: argparse.Namespace):
    from paperzoo_vega import adapters

    kind, sep, rest = args.model.partition(":")
    if sep and kind == "hf":
        return adapters.TransformersAdapter.from_pretrained(
            rest, dtype=args.dtype, device=args.device, style=args.prompt, max_new_tokens=args.max_new_tokens
        )
    if sep and kind == "qwen-vl-chat":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(rest, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(
            rest, device_map=args.device, trust_remote_code=True
        ).eval()
        return adapters.QwenVLChatAdapter(model, tokenizer, style=args.prompt)
    if sep and kind == "openai":
        name, at, url = rest.rpartition("@")
        if not at or not name:
            raise UserError(
                f"--model openai:NAME@URL, e.g. openai:my-model@http://127.0.0.1:8000/v1; got {args.model!r}"
            )
        return adapters.OpenAIAdapter(url, name, style=args.prompt, max_tokens=args.max_new_tokens,
                                      concurrency=args.concurrency)  # fmt: skip
    raise UserError(f"unknown --model {args.model!r}; use hf:PATH, qwen-vl-chat:PATH or openai:NAME@URL")


def _train(args: argparse.Namespace) -> int:
    from paperzoo_vega.train import TrainArgs, TrainingMixture, train

    mixture = TrainingMixture()
    for item in args.mix:
        name, eq, weight = item.rpartition("=")
        if not eq:
            name, weight = item, "1"
        try:
            value = float(weight)
        except ValueError:
            raise UserError(f"--mix {item!r}: the weight must be a number (FILE=WEIGHT)") from None
        data = _dataset(args.data / name, args.images or args.data, skip_bad=True)
        mixture.add(name, data.samples, value)
    examples = mixture.draw(args.steps * args.batch_size * args.grad_accum, seed=args.seed)
    if args.model == "tiny":
        from paperzoo_vega.tiny import build_tiny_qwen2_vl, corpus_vocabulary

        samples = [s for _, part, _ in mixture.parts for s in part]
        model, processor = build_tiny_qwen2_vl(corpus_vocabulary(samples), seed=args.seed)
    elif args.model.startswith("hf:"):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = args.model[3:]
        model, processor = (
            AutoModelForImageTextToText.from_pretrained(path),
            AutoProcessor.from_pretrained(path),
        )
    else:
        raise UserError(f"train --model must be hf:PATH or tiny, got {args.model!r}")
    targs = TrainArgs(
        output_dir=str(args.save / "trainer"), max_steps=args.steps, per_device_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, seed=args.seed, bf16=args.bf16,
        deepspeed=args.deepspeed, lora_r=args.lora_r, use_cpu=args.cpu,
    )  # fmt: skip
    model = train(model, processor, examples, targs, style=args.prompt, progress=True)
    if args.lora_r > 0:
        model = model.merge_and_unload()
    model.save_pretrained(args.save)
    processor.save_pretrained(args.save)
    print(f"saved {args.save}")
    return 0


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        data = _dataset(args.file, args.images, args.skip_bad, check=not args.no_image_check)
        print(f"{args.file}: {len(data)} valid {data.task.upper()} records, {len(data.problems)} skipped")
        return 1 if data.problems else 0
    if args.command == "score":
        from paperzoo_vega.scoring import score_output_file

        print(json.dumps(score_output_file(args.file, args.task), indent=2))
        return 0
    if args.command == "build":
        from paperzoo_vega.construct import BuildConfig, build_dataset

        try:
            sizes = tuple(int(n) for n in args.ita.split(",") if n.strip())
        except ValueError:
            raise UserError(f"--ita must be comma-separated integers, got {args.ita!r}") from None
        cfg = BuildConfig(budget=args.budget, image_tokens=args.image_tokens, max_images=args.max_images,
                          min_images=args.min_images, ita_pictures=sizes, ita_samples=args.ita_samples,
                          seed=args.seed)  # fmt: skip
        print(build_dataset(args.documents, args.images, args.out, cfg, split=args.split).summary())
        return 0
    if args.command == "synthetic":
        from paperzoo_vega.synthetic import generate_documents

        docs, images = generate_documents(
            args.out, n_documents=args.documents, seed=args.seed, split=args.split
        )
        print(f"documents: {docs}\nimages: {images}")
        return 0
    if args.command == "evaluate":
        from paperzoo_vega.evaluate import run_evaluation

        data = _dataset(args.file, args.images, args.skip_bad, limit=args.limit)
        summary = run_evaluation(data, _adapter(args), args.out, batch_size=args.batch_size,
                                 progress=not args.no_progress)  # fmt: skip
        print(
            json.dumps(
                {"resumed": summary.resumed, "generated": summary.generated, **summary.scores}, indent=2
            )
        )
        return 0
    if args.command == "train":
        return _train(args)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-vega", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
