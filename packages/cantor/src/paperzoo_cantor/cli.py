"""``paperzoo-cantor``: run Cantor and its baselines on ScienceQA / MathVista, score, view traces.

    paperzoo-cantor eval --benchmark scienceqa --data-root DATA/scienceqa --backend openai \\
        --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2-VL-7B-Instruct --method cantor --out runs/sqa
    paperzoo-cantor score runs/sqa
    paperzoo-cantor view runs/sqa                     # HTML page per problem under runs/sqa/traces/
    paperzoo-cantor split decision.json [--mode fixed] # the released parser on a decision
    paperzoo-cantor fixtures OUT --benchmark mathvista  # format-exact fixture data (seeded)
    paperzoo-cantor serve-scripted --port 8011          # the scripted model behind a local test server

A run folder can be reused: a killed run resumes from its records and response cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from paperzoo_cantor import __version__
from paperzoo_cantor.configuration import BACKENDS, BENCHMARKS, EXTRACTORS, METHODS
from paperzoo_shared.config import apply_overrides, from_dict, read_yaml_with_bases
from paperzoo_shared.errors import UserError, add_debug_flag, run_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperzoo-cantor", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"paperzoo-cantor {__version__}")
    add_debug_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = commands.add_parser("eval", help="run a method on a benchmark and score it (resumable)")
    ev.add_argument("--config", type=Path, help="YAML with EvalConfig fields (flags below override it)")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. backend.timeout=30",
    )
    ev.add_argument("--benchmark", choices=BENCHMARKS)
    ev.add_argument(
        "--data-root", help="ScienceQA: data/scienceqa of the release; MathVista: its data/ folder"
    )
    ev.add_argument("--method", choices=METHODS, help="cantor (default), direct or cot")
    ev.add_argument(
        "--backend", choices=BACKENDS, help="openai (default), transformers, callable or scripted"
    )
    ev.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    ev.add_argument(
        "--model", help="model name (openai), checkpoint folder (transformers) or module:function"
    )
    ev.add_argument("--api-key-env", help="environment variable with the API key (default OPENAI_API_KEY)")
    ev.add_argument(
        "--expert-backend", choices=[*BACKENDS, "same"], help="model of the expert calls (default: same)"
    )
    ev.add_argument("--expert-base-url", help="server of the expert model")
    ev.add_argument("--expert-model", help="expert model name / checkpoint")
    ev.add_argument("--expert-api-key-env", help="environment variable with the expert server's API key")
    ev.add_argument("--out", type=Path, required=True, help="run folder (records, cache, scores)")
    ev.add_argument("--limit", type=int, help="only the first N problems")
    ev.add_argument(
        "--image-only", action="store_true", default=None, help="ScienceQA: the IMG subset (Table 2)"
    )
    ev.add_argument("--captions", help="captions JSON (GPT-3.5 rows: caption as visual context)")
    ev.add_argument(
        "--no-images",
        action="store_true",
        default=None,
        help="decision/synthesis/baselines without the image",
    )
    ev.add_argument("--split-mode", choices=["official", "fixed"], help="sub-task filter (default official)")
    ev.add_argument("--extractor", choices=EXTRACTORS, help="MathVista answer extraction (default llm)")
    ev.add_argument("--concurrency", type=int, help="calls in flight (default 8)")
    ev.add_argument("--item-concurrency", type=int, help="problems in flight (default 8)")
    ev.add_argument("--timeout", type=float, help="seconds per call (default 120)")
    ev.add_argument("--retries", type=int, help="retries of a timed-out/transient call (default 2)")
    ev.add_argument("--rate-limit", type=float, help="call starts per second (default: no limit)")
    ev.add_argument("--seed", type=int, help="seed of ScienceQA's random fallback")
    ev.add_argument(
        "--retry-failed", action="store_true", default=None, help="rerun recorded problems that failed"
    )
    ev.add_argument("--no-progress", action="store_true")

    sc = commands.add_parser("score", help="print the scores of a run folder (from its records)")
    sc.add_argument("run", type=Path)
    sc.add_argument("--json", action="store_true")

    vi = commands.add_parser("view", help="write one HTML page per problem (and an index) for a run folder")
    vi.add_argument("run", type=Path)
    vi.add_argument("--out", type=Path, help="default: RUN/traces")

    sp = commands.add_parser(
        "split", help="apply the released split_task/summary to a decision (text or decision.json)"
    )
    sp.add_argument("decision", type=Path)
    sp.add_argument("--mode", choices=["official", "fixed"], default="official")

    fx = commands.add_parser("fixtures", help="write format-exact fixture data (seeded, synthetic questions)")
    fx.add_argument("out", type=Path)
    fx.add_argument("--benchmark", choices=BENCHMARKS, required=True)
    fx.add_argument("-n", type=int, default=12)
    fx.add_argument("--seed", type=int, default=0)

    sv = commands.add_parser(
        "serve-scripted", help="serve the scripted model on 127.0.0.1 (OpenAI-compatible)"
    )
    sv.add_argument("--port", type=int, default=8011)
    sv.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    return parser


_FLAG_KEYS = {
    "benchmark": "benchmark", "data_root": "data_root", "method": "method", "backend": "backend.kind",
    "base_url": "backend.base_url", "model": "backend.model", "api_key_env": "backend.api_key_env",
    "limit": "limit", "image_only": "image_only", "captions": "captions", "split_mode": "cantor.split_mode",
    "extractor": "extractor", "concurrency": "backend.concurrency", "item_concurrency": "item_concurrency",
    "timeout": "backend.timeout", "retries": "backend.retries", "rate_limit": "backend.rate_limit",
    "seed": "seed", "retry_failed": "retry_failed", "expert_backend": "expert_backend.kind",
    "expert_base_url": "expert_backend.base_url", "expert_model": "expert_backend.model",
    "expert_api_key_env": "expert_backend.api_key_env",
}  # fmt: skip


def eval_config(args: argparse.Namespace) -> Any:
    from paperzoo_cantor.configuration import EvalConfig

    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if args.config is not None:
        data, sources = read_yaml_with_bases(args.config)
    overrides = [
        f"{key}={json.dumps(getattr(args, flag))}"
        for flag, key in _FLAG_KEYS.items()
        if getattr(args, flag) is not None
    ]
    if args.no_images:
        overrides.append("cantor.images=false")
    data = apply_overrides(data, sources, [*overrides, *args.set])
    return from_dict(EvalConfig, data, sources=sources)


def _print_scores(summary: dict[str, Any]) -> None:
    print(f"{summary['method']} on {summary['benchmark']}: {summary['recorded']}/{summary['problems']} problems, "
          f"status {summary['status']}")  # fmt: skip
    for reading, scores in summary["scores"].items():
        if reading == "unreadable":
            print(f"  unreadable answers: {scores}")
            continue
        print(f"  {reading}: " + "  ".join(f"{k} {v:.2f}" for k, v in scores.items()))


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "eval":
        from paperzoo_cantor.evaluate import run_eval

        cfg = eval_config(args)
        summary = run_eval(cfg, args.out, progress=not args.no_progress)
        _print_scores(summary)
        run = summary["run"]
        print(f"  {run['new_items']} new problems in {run['wall_s']:.1f} s, {run['calls']} calls, "
              f"{run['cache_hits']} cache hits, failed calls {run['failed_calls']}; records in {args.out}")  # fmt: skip
        return 0
    if args.command == "score":
        from paperzoo_cantor.configuration import EvalConfig
        from paperzoo_cantor.evaluate import RECORDS, load_items, read_records, score_records

        config_path = args.run / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"not a run folder (no config.json): {args.run}")
        cfg = from_dict(EvalConfig, json.loads(config_path.read_text()))
        items = load_items(cfg)
        records = read_records(args.run / RECORDS)
        summary = {"benchmark": cfg.benchmark, "method": cfg.method, "problems": len(items),
                   "recorded": len(records), "status": {},
                   "scores": score_records(cfg.benchmark, items, [records[i.pid] for i in items if i.pid in records])}  # fmt: skip
        for record in records.values():
            summary["status"][record["status"]] = summary["status"].get(record["status"], 0) + 1
        print(json.dumps(summary, indent=2)) if args.json else _print_scores(summary)
        return 0
    if args.command == "view":
        from paperzoo_cantor.trace_html import write_pages

        print(write_pages(args.run, args.out))
        return 0
    if args.command == "split":
        from paperzoo_cantor.modeling_cantor import split_task, summary

        text = args.decision.read_text(encoding="utf-8")
        record: dict[str, Any] = {}
        if args.decision.suffix == ".json":
            try:
                record = json.loads(text)
                text = record["decision"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise UserError(
                    f"{args.decision}: not a decision.json with a 'decision' field ({error})"
                ) from error
        tasks = split_task(text, args.mode)
        out = {"sub-tasks": tasks}
        if "sub-answers" in record:
            out["supplementary_information"] = summary(
                text if text.endswith("\n") else text + "\n", tasks, record["sub-answers"]
            )
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    if args.command == "fixtures":
        from paperzoo_cantor.fixtures import write_mathvista, write_scienceqa

        writer = write_scienceqa if args.benchmark == "scienceqa" else write_mathvista
        print(writer(args.out, n=args.n, seed=args.seed))
        return 0
    if args.command == "serve-scripted":
        from paperzoo_cantor.scripted import ScriptedServer

        with ScriptedServer(port=args.port, latency=args.latency) as server:
            print(f"serving the scripted model at {server.base_url} (Ctrl-C stops)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-cantor", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
