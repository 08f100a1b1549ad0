"""``paperzoo-t2vid``: the T2Vid data pipeline on the command line.

    paperzoo-t2vid synthesize SOURCE.json --format longalpaca|longqlora|conversation --out DIR
        [--model minicpm_v|idefics3] [--font FILE] [--font-size 20] [--tokens-per-frame 115] [--workers N]
    paperzoo-t2vid videos ANNOTATIONS.json --video-root DIR --out DIR [--frames 24] [--rate 1]
    paperzoo-t2vid mix --synthetic S.json --video V1.json --video V2.json --total 30000 [--ratio 0.3333] --out MIX.json
    paperzoo-t2vid diversity --set NAME=FILE ... [--embedder minilm|tfidf|st:PATH] [--plot tsne.png]
    paperzoo-t2vid validate MULTI_IMAGE.json --root DIR
    paperzoo-t2vid embedded OUT.json --kind longalpaca|longqlora [--n 10] [--seed 0]
    paperzoo-t2vid train MULTI_IMAGE.json --root DIR [--config YAML] [--set train.KEY=VALUE ...]
    paperzoo-t2vid evaluate VIDEOMME_ROOT --model DIR [--frames 24] [--max-new-tokens 32] [--out FILE]

Each command prints a JSON summary on stdout; bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from paperzoo_shared.errors import UserError, add_debug_flag, run_cli
from paperzoo_t2vid import __version__
from paperzoo_t2vid.configuration import (
    DEFAULT_FONT,
    FilterConfig,
    RenderConfig,
    SplitConfig,
    SynthesisConfig,
)
from paperzoo_t2vid.modeling_t2vid import FILTER_PRESETS, REFORMATTERS
from paperzoo_t2vid.text import TOKENIZERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperzoo-t2vid",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"paperzoo-t2vid {__version__}")
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synthesize", help="render long-text QA samples into multi-image 'videos'")
    s.add_argument("source", type=Path, help="JSON list or JSON lines of source records")
    s.add_argument("--format", choices=sorted(REFORMATTERS), required=True, help="source layout")
    s.add_argument(
        "--out", type=Path, required=True, help="output folder (frames/, t2vid.json, report.jsonl)"
    )
    s.add_argument("--model", choices=sorted(FILTER_PRESETS), default="minicpm_v", help="filter preset")
    s.add_argument("--font", default=DEFAULT_FONT, help=f"TrueType font (default {DEFAULT_FONT})")
    s.add_argument("--font-size", type=int, default=20)
    s.add_argument("--tokens-per-frame", type=int, default=115)
    s.add_argument("--tokenizer", choices=TOKENIZERS, default="treebank")
    s.add_argument("--token-counter", default="words", help="words | hf:/path/to/tokenizer")
    s.add_argument("--max-frames", type=int, default=0, help="override the frame cap (0: the model's)")
    s.add_argument("--on-overflow", choices=("drop", "keep"), default="drop")
    s.add_argument("--workers", type=int, default=0, help="render processes (0: one per core)")
    s.add_argument("--no-progress", action="store_true")
    add_debug_flag(s)

    v = sub.add_parser("videos", help="real videos: 1 fps frames, 24 middle-of-segment frames, same schema")
    v.add_argument("annotations", type=Path, help="LLaVA-style JSON with 'video' and 'conversations'")
    v.add_argument("--video-root", type=Path, required=True)
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--frames", type=int, default=24)
    v.add_argument("--rate", type=float, default=1.0, help="extraction frames per second")
    v.add_argument("--backend", choices=("auto", "decord", "opencv"), default="auto")
    add_debug_flag(v)

    m = sub.add_parser("mix", help="seeded mix of synthetic and real-video samples")
    m.add_argument("--synthetic", type=Path, required=True)
    m.add_argument("--video", type=Path, action="append", required=True, help="a video source (repeatable)")
    m.add_argument("--total", type=int, required=True)
    m.add_argument("--ratio", type=float, default=1 / 3, help="synthetic share (default 1/3)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", type=Path, required=True)
    add_debug_flag(m)

    d = sub.add_parser("diversity", help="instruction-diversity score per set and a t-SNE plot")
    d.add_argument(
        "--set", action="append", required=True, metavar="NAME=FILE", help="an instruction set (repeatable)"
    )
    d.add_argument("--embedder", default="minilm", help="minilm | tfidf | st:/path")
    d.add_argument(
        "--per-source", type=int, default=5000, help="instructions sampled per set (official: 5000)"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--plot", type=Path, default=None, help="write the t-SNE scatter here (PNG)")
    add_debug_flag(d)

    c = sub.add_parser("validate", help="check a multi-image JSON (schema, placeholders, frame paths)")
    c.add_argument("file", type=Path)
    c.add_argument("--root", type=Path, required=True, help="folder the frame paths are relative to")
    add_debug_flag(c)

    e = sub.add_parser("embedded", help="write seeded stand-in source records (no data set needed)")
    e.add_argument("out", type=Path)
    e.add_argument("--kind", choices=("longalpaca", "longqlora"), required=True)
    e.add_argument("--n", type=int, default=10)
    e.add_argument("--seed", type=int, default=0)
    add_debug_flag(e)

    t = sub.add_parser(
        "train", help="fine-tune an image-text model on a multi-image JSON (transformers Trainer)"
    )
    t.add_argument("data", type=Path, help="multi-image JSON (synthesize / videos / mix output)")
    t.add_argument("--root", type=Path, required=True, help="folder the frame paths are relative to")
    t.add_argument("--config", type=Path, help="a preset YAML with a train: section (e.g. configs/full.yaml)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="train.KEY=VALUE")
    add_debug_flag(t)

    ev = sub.add_parser("evaluate", help="multiple-choice accuracy on a Video-MME-layout folder")
    ev.add_argument("root", type=Path, help="folder with videomme/test.json (or .jsonl/.parquet) and video/")
    ev.add_argument("--model", type=Path, required=True, help="local Idefics3-style model folder")
    ev.add_argument("--frames", type=int, default=24)
    ev.add_argument("--max-new-tokens", type=int, default=32)
    ev.add_argument("--limit", type=int, default=0, help="first N questions only (0: all)")
    ev.add_argument("--out", type=Path, help="write scores and responses as JSON here")
    add_debug_flag(ev)
    return parser


def _print(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _main(argv: list[str]) -> int:
    args = _parser().parse_args([a for a in argv if a != "--debug"])
    from paperzoo_t2vid.data import read_records, write_json

    if args.command == "synthesize":
        from paperzoo_t2vid.synthesize import synthesize

        cfg = SynthesisConfig(
            source_format=args.format,
            split=SplitConfig(tokens_per_frame=args.tokens_per_frame, tokenizer=args.tokenizer),
            render=RenderConfig(font=args.font, font_size=args.font_size, on_overflow=args.on_overflow),
            filter=FilterConfig(
                model=args.model, token_counter=args.token_counter, max_frames=args.max_frames
            ),
            workers=args.workers,
            progress=not args.no_progress,
        )
        result = synthesize(read_records(args.source), cfg, args.out)
        _print(result.summary())
    elif args.command == "videos":
        from paperzoo_t2vid.data import convert_videos

        records, report = convert_videos(
            read_records(args.annotations), args.video_root, args.out, source=args.annotations,
            rate=args.rate, num_frames=args.frames, backend=args.backend,
        )  # fmt: skip
        write_json(args.out / "videos.json", records)
        report.write(args.out / "report.jsonl")
        write_json(args.out / "summary.json", report.summary())
        _print(report.summary())
    elif args.command == "mix":
        from paperzoo_t2vid.modeling_t2vid import mix, mix_counts

        synthetic = read_records(args.synthetic)
        videos = [read_records(p) for p in args.video]
        mixed = mix(synthetic, videos, args.total, args.ratio, args.seed)
        write_json(args.out, mixed)
        n_syn, per_video = mix_counts(args.total, args.ratio, len(videos))
        _print(
            {
                "total": len(mixed),
                "synthetic": n_syn,
                "video": dict(zip(map(str, args.video), per_video, strict=True)),
            }
        )
    elif args.command == "diversity":
        from paperzoo_t2vid.diversity import analyse, first_instruction

        sets = {}
        for spec in args.set:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise UserError(f"--set takes NAME=FILE, got {spec!r}")
            records = read_records(path)
            rng = random.Random(args.seed)
            if len(records) > args.per_source:
                records = rng.sample(records, args.per_source)
            try:
                sets[name] = [first_instruction(r) for r in records]
            except (KeyError, IndexError, TypeError, AttributeError) as error:
                raise UserError(
                    f"{path}: every record needs 'conversations' with a first turn ({error!r})"
                ) from error
        _print(analyse(sets, args.embedder, seed=args.seed, plot=args.plot))
    elif args.command == "validate":
        from paperzoo_t2vid.data import validate_multi_image

        records = read_records(args.file)
        validate_multi_image(records, args.root, source=args.file)
        _print({"records": len(records), "valid": True})
    elif args.command == "embedded":
        from paperzoo_t2vid.embedded import long_documents

        write_json(args.out, long_documents(args.kind, args.n, args.seed))
        _print({"records": args.n, "kind": args.kind, "out": str(args.out)})
    elif args.command == "train":
        _train(args)
    elif args.command == "evaluate":
        _evaluate(args)
    return 0


def _train(args: argparse.Namespace) -> None:
    from paperzoo_shared.config import load_config
    from paperzoo_t2vid.configuration import T2VidConfig
    from paperzoo_t2vid.data import read_records
    from paperzoo_t2vid.evaluate import MCQ_SUFFIX
    from paperzoo_t2vid.tiny import vocabulary
    from paperzoo_t2vid.train import train

    cfg = load_config(T2VidConfig, args.config, overrides=args.overrides).train
    records = read_records(args.data)
    words: list[str] = []
    if cfg.model == "tiny-idefics3":  # a closed vocabulary: every word of the data and the eval prompt
        texts = [str(t.get("content", "")) for r in records for t in r.get("conversations", [])]
        words = vocabulary([*texts, MCQ_SUFFIX, "A B C D"])
    result = train(cfg, records, args.root, words=words)
    _print(
        {
            "examples": result.n_examples,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "saved": cfg.output_dir if cfg.save else None,
        }
    )


def _evaluate(args: argparse.Namespace) -> None:
    from paperzoo_t2vid.data import write_json
    from paperzoo_t2vid.evaluate import evaluate, scores_dict

    if not args.model.is_dir():
        raise UserError(f"--model {args.model} is not a local model folder")
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(args.model, local_files_only=True)
    model = Idefics3ForConditionalGeneration.from_pretrained(args.model, local_files_only=True).eval()
    scores, records = evaluate(
        model,
        processor,
        args.root,
        n_frames=args.frames,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
    )
    summary = dict(scores_dict(scores))
    if args.out:
        write_json(args.out, {**summary, "responses": records})
    _print(summary)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-t2vid", _main, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
