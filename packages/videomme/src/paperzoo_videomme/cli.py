"""``paperzoo-videomme``: evaluate a model on Video-MME, score results files, make the synthetic set.

    paperzoo-videomme evaluate --data DIR --model MODEL [--subtitles official] [--frames 8] [--out DIR]
    paperzoo-videomme score RESULTS.json [--rule official --rule lmms_eval] [--durations short,medium,long]
    paperzoo-videomme validate --data DIR [--probe] [--subtitles]
    paperzoo-videomme synthetic OUT [--videos 12] [--seed 0]
    paperzoo-videomme extract "The best answer is C."

MODEL is one of ``tiny-qwen2-vl``, ``tiny-llava-onevision`` (random, offline), ``subtitle-reader`` (a
blind baseline), ``hf:/path/to/checkpoint`` (any local transformers video MLLM), ``openai:NAME@URL``
(an OpenAI-compatible server, e.g. ``openai:Qwen/Qwen2-VL-7B-Instruct@http://127.0.0.1:8000/v1``) or
``callable:package.module:function``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from paperzoo_shared.config import from_dict
from paperzoo_shared.errors import UserError, add_debug_flag, run_cli
from paperzoo_videomme import __version__
from paperzoo_videomme.modeling_videomme import DURATIONS, FRAME_SAMPLERS, PROMPT_STYLES, SUBTITLE_MODES
from paperzoo_videomme.scoring import SCORING_RULES


def parse_model(spec: str) -> dict[str, str]:
    """A ``--model`` string as ModelConfig fields."""
    simple = {"tiny-qwen2-vl": "tiny_qwen2_vl", "tiny-llava-onevision": "tiny_llava_onevision",
              "subtitle-reader": "subtitle_reader"}  # fmt: skip
    if spec.replace("_", "-") in simple:
        return {"kind": simple[spec.replace("_", "-")]}
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hf":
        return {"kind": "transformers", "path": rest}
    if sep and kind == "callable":
        return {"kind": "callable", "path": rest}
    if sep and kind == "openai":
        name, at, url = rest.rpartition("@")
        if not at or not name:
            raise ValueError(
                f"--model openai:NAME@URL, e.g. openai:my-model@http://127.0.0.1:8000/v1; got {spec!r}."
            )
        return {"kind": "openai", "model_name": name, "base_url": url}
    raise ValueError(
        f"unknown --model {spec!r}; use tiny-qwen2-vl, tiny-llava-onevision, subtitle-reader, hf:PATH, "
        "openai:NAME@URL or callable:module:function."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo-videomme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"paperzoo-videomme {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every item problem as it is found")
    add_debug_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = commands.add_parser("evaluate", help="run a model on a dataset in the release layout and score it")
    ev.add_argument("--data", required=True, type=Path, help="folder with videomme/, video/, subtitle/")
    ev.add_argument("--model", required=True, help="see the module help (paperzoo-videomme --help)")
    ev.add_argument("--annotations", type=Path, help="annotation file (default: found under --data)")
    ev.add_argument("--out", type=Path, help="output folder (default: ./videomme-runs/<model>-<setting>)")
    ev.add_argument("--frames", type=int, default=8, help="frames per video (default 8)")
    ev.add_argument("--sampler", default="official", choices=list(FRAME_SAMPLERS), help="frame sampler")
    ev.add_argument("--fps", type=float, default=1.0, help="target fps of --sampler fps")
    ev.add_argument("--max-frames", type=int, default=0, help="cap of --sampler fps (0: none)")
    ev.add_argument("--subtitles", default="none", choices=list(SUBTITLE_MODES), help="subtitle setting")
    ev.add_argument("--prompt", default="official", choices=list(PROMPT_STYLES), help="prompt template")
    ev.add_argument(
        "--rule", action="append", choices=list(SCORING_RULES), help="scoring rule(s); default all"
    )
    ev.add_argument("--durations", default=",".join(DURATIONS), help="comma-separated duration buckets")
    ev.add_argument("--limit-videos", type=int, default=0, help="evaluate only the first N videos")
    ev.add_argument("--workers", type=int, default=0, help="frame-decoding worker processes")
    ev.add_argument("--batch-size", type=int, default=4, help="questions per model call")
    ev.add_argument("--max-new-tokens", type=int, default=16)
    ev.add_argument("--max-side", type=int, default=0, help="shrink frames to this longer side (0: keep)")
    ev.add_argument("--backend", default="auto", choices=["auto", "decord", "opencv"], help="video reader")
    ev.add_argument("--device", default="cpu", help="torch device of hf: models")
    ev.add_argument("--dtype", default="float32", help="torch dtype of hf: models")
    ev.add_argument("--probe", action="store_true", help="open every video before the run")
    ev.add_argument("--overwrite", action="store_true", help="discard earlier responses in --out")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")

    sc = commands.add_parser("score", help="score a results file in the official layout")
    sc.add_argument("results", type=Path)
    sc.add_argument("--rule", action="append", choices=list(SCORING_RULES), help="rule(s); default official")
    sc.add_argument("--durations", default=",".join(DURATIONS))
    sc.add_argument("--sub-categories", action="store_true", help="also print sub-category accuracies")
    sc.add_argument("--task-types", action="store_true", help="also print task-type accuracies")
    sc.add_argument("--json", action="store_true", help="print the scores as JSON")

    va = commands.add_parser("validate", help="load a dataset and list every problem")
    va.add_argument("--data", required=True, type=Path)
    va.add_argument("--annotations", type=Path)
    va.add_argument("--probe", action="store_true", help="also open every video")
    va.add_argument("--subtitles", action="store_true", help="report videos without an .srt")

    sy = commands.add_parser("synthetic", help="write the synthetic stand-in in the release layout")
    sy.add_argument("out", type=Path)
    sy.add_argument("--videos", type=int, default=12)
    sy.add_argument("--seed", type=int, default=0)

    ex = commands.add_parser("extract", help="show what each scoring rule reads from a response")
    ex.add_argument("response")
    for command in commands.choices.values():  # --debug is accepted before or after the command
        add_debug_flag(command)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from paperzoo_videomme.configuration import ModelConfig, ProtocolConfig
    from paperzoo_videomme.data import load_videomme
    from paperzoo_videomme.evaluate import build_model, run_evaluation, summary_line

    durations = [d for d in args.durations.split(",") if d]
    protocol = from_dict(
        ProtocolConfig,
        {
            "frame_sampler": args.sampler,
            "num_frames": args.frames,
            "target_fps": args.fps,
            "max_frames": args.max_frames,
            "subtitles": args.subtitles,
            "prompt_style": args.prompt,
            "decode_backend": args.backend,
            "max_side": args.max_side,
        },
    )
    model_cfg = ModelConfig(
        **parse_model(args.model),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )
    dataset = load_videomme(
        args.data,
        annotations=args.annotations,
        subtitles=args.subtitles != "none",
        durations=durations,
        limit_videos=args.limit_videos or None,
        probe=args.probe,
    )
    print(dataset.summary(), file=sys.stderr)
    model = build_model(model_cfg)
    out = (
        args.out
        or Path("videomme-runs") / f"{model.name.replace('/', '_').replace(':', '_')}-{args.subtitles}"
    )
    rules = tuple(args.rule or SCORING_RULES)
    summary = run_evaluation(
        dataset,
        model,
        protocol,
        out,
        batch_size=args.batch_size,
        num_workers=args.workers,
        rules=rules,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print((out / "report.txt").read_text(), end="")
    for rule in rules:
        print(summary_line(summary, rule))
    print(
        f"{summary.answered_now} questions answered now, {summary.skipped_done} restored from an earlier run, "
        f"{len(summary.errors)} item problems (errors.json); {summary.seconds:.1f} s "
        f"(decode {summary.decode_seconds:.1f} s, model {summary.model_seconds:.1f} s) -> {out}"
    )
    return 0


def _score(args: argparse.Namespace) -> int:
    from paperzoo_videomme.scoring import official_report_text, read_official_results, score_records

    records = read_official_results(args.results)
    durations = [d for d in args.durations.split(",") if d]
    rules = args.rule or ["official"]
    all_scores = {rule: score_records(records, rule, durations=durations) for rule in rules}
    if args.json:
        print(json.dumps(all_scores, indent=1))
        return 0
    for rule, scores in all_scores.items():
        if len(rules) > 1:
            print(f"##### {rule} ({SCORING_RULES[rule].source})")
        print(
            official_report_text(scores, sub_categories=args.sub_categories, task_types=args.task_types),
            end="",
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from paperzoo_videomme.data import load_videomme

    dataset = load_videomme(
        args.data, annotations=args.annotations, probe=args.probe, subtitles=args.subtitles
    )
    for error in dataset.errors:
        print(f"[{error.kind}] {error.message}")
    print(dataset.summary())
    return 1 if any(e.dropped for e in dataset.errors) else 0


def _synthetic(args: argparse.Namespace) -> int:
    from paperzoo_videomme.data import write_synthetic_release

    root = write_synthetic_release(args.out, n_videos=args.videos, seed=args.seed)
    print(f"wrote {args.videos} videos ({3 * args.videos} questions) in the release layout to {root}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from paperzoo_videomme.modeling_videomme import extract_answer

    for rule, spec in SCORING_RULES.items():
        letter = extract_answer(args.response, spec.extractor)
        shown = letter or ("(dropped)" if spec.drop_unparsed else "(wrong)")
        print(f"{rule:<20} {shown}")
    return 0


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    handlers = {"evaluate": _evaluate, "score": _score, "validate": _validate, "synthetic": _synthetic,
                "extract": _extract}  # fmt: skip
    try:
        return handlers[args.command](args)
    except ImportError as error:  # an optional dependency (pyarrow, decord, a model's package) is missing
        raise UserError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    """The ``paperzoo-videomme`` entry point: a known bad input is one line and exit status 2 (``--debug``: the
    traceback)."""
    return run_cli("paperzoo-videomme", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
