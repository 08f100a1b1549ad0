"""``paperzoo``: list the installed papers, reproduce their tables, regenerate REPRODUCTION.md.

paperzoo list
paperzoo reproduce <paper> [--preset smoke|mini|mini-long|full] [--fresh] [--table ID] [--seeds 0,1,2] [--out DIR] [--set k=v]
paperzoo reproduce --all --preset smoke
paperzoo report [--root DIR] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paperzoo_shared import __version__
from paperzoo_shared.errors import UserError, add_debug_flag, run_cli
from paperzoo_shared.registry import PRESETS, RegistryError, discover_papers, get_paper
from paperzoo_shared.repro import TablesError, generated_files, load_tables, parse_seeds, run_reproduction

NO_PAPERS = (
    "No paper packages are installed yet, so there is nothing to run. "
    "Install one (see README.md), e.g. `pip install -e packages/<paper>`."
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperzoo",
        description="Reproduce the headline tables of the papers in paperzoo.",
    )
    parser.add_argument("--version", action="version", version=f"paperzoo-shared {__version__}")
    add_debug_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="list the installed papers, their tables and presets")

    reproduce = commands.add_parser(
        "reproduce",
        help="run a paper's table(s) at a preset and write results JSON + markdown",
        description="Run a paper's table(s) at a preset. Results go to packages/<paper>/results/<preset>/ "
        "in a source checkout (else ./paperzoo-results/<paper>/<preset>/). A rerun resumes: finished "
        "(row, seed) results are kept in <table>.partial.jsonl.",
    )
    reproduce.add_argument("paper", nargs="?", help="paper name (see `paperzoo list`)")
    reproduce.add_argument("--all", action="store_true", help="every installed paper")
    reproduce.add_argument("--preset", default="smoke", help=f"one of {', '.join(PRESETS)} (default: smoke)")
    reproduce.add_argument("--table", help="one table id (default: every table that runs at the preset)")
    reproduce.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: the table's)")
    reproduce.add_argument("--out", type=Path, help="output folder for <table>.json and <table>.md")
    reproduce.add_argument(
        "--fresh", action="store_true", help="ignore (and delete) the ledger of finished results: start over"
    )
    reproduce.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, repeatable, e.g. --set train.lr=1e-4",
    )

    report = commands.add_parser(
        "report",
        help="regenerate REPRODUCTION.md, results/*/*.md and README results blocks from the committed results",
        description="Regenerate, from the committed results/{full,mini-long,mini}/*.json of every paper installed from this checkout "
        "(editable, under --root): the root "
        "REPRODUCTION.md, each results markdown, and each '<!-- paperzoo:results mini/<table> -->' block of "
        "a package README.",
    )
    report.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: .)")
    report.add_argument("--check", action="store_true", help="exit 1 if REPRODUCTION.md is out of date")
    return parser


def _cmd_list() -> int:
    papers = discover_papers()
    if not papers:
        print(NO_PAPERS)
        return 0
    for name, paper in papers.items():
        print(f"{name}  ({paper.distribution} {paper.version})  {paper.title}")
        try:
            tables = load_tables(paper.data_root() / "paper" / "tables.yaml")
        except (RegistryError, TablesError) as error:
            print(f"    tables: unavailable ({error})")
            continue
        for table in tables.tables:
            print(f"    --table {table.id:<16} presets: {', '.join(table.presets):<18} {table.title}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if args.all == bool(args.paper):
        raise RegistryError("give either a paper name or --all")
    seeds = parse_seeds(args.seeds) if args.seeds else None
    if args.all:
        papers = list(discover_papers().values())
        if not papers:
            print(NO_PAPERS)
            return 0
    else:
        papers = [get_paper(args.paper)]
    for paper in papers:
        for json_path, markdown in run_reproduction(
            paper,
            preset=args.preset,
            table_id=args.table,
            seeds=seeds,
            out_dir=args.out,
            overrides=args.overrides,
            fresh=args.fresh,
        ):
            print(markdown)
            print(f"-> {json_path}\n")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    # Only the papers of this checkout: an editable install from another clone must not leak into it.
    root = args.root.resolve()
    if not (root / "packages").is_dir() or not (root / "shared" / "pyproject.toml").is_file():
        raise UserError(
            f"{root} is not a paperzoo checkout (no packages/ and shared/ there); `paperzoo report` only "
            "regenerates a checkout's files: run it from the repository root or pass --root"
        )
    papers = {
        name: paper
        for name, paper in discover_papers().items()
        if (source := paper.source_root()) is not None and source.resolve().is_relative_to(root)
    }
    if not papers:
        raise UserError(
            f"no paper package is installed from {root} (editable): nothing to report; "
            "run `make install` there first"
        )
    files = generated_files(papers, root)
    stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date; run `paperzoo report` and commit it.", file=sys.stderr)
        if not stale:
            print(f"{len(files)} generated files are up to date.")
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path])
        print(f"wrote {path}")
    print(f"{len(files) - len(stale)} generated files were already up to date.")
    return 0


def _main(argv: list[str]) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "reproduce":
            return _cmd_reproduce(args)
        return _cmd_report(args)
    except (RegistryError, TablesError) as error:
        raise UserError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
