"""Maps changed files to the packages whose tests must run (the CI plan job).

    python tools/affected.py --base origin/main          # JSON list of package names, to stdout
    python tools/affected.py --all

Rules: a file under packages/<name>/ selects that package; anything under shared/, the root
configuration (pyproject.toml, Makefile, tools/, .ci/, .github/) or more than 300 changed files selects
every package, plus shared. Paper packages never depend on each other (an import-linter contract), so
there are no other dependents to add. benchmarks/<name>_*.py selects <name>, benchmarks/kernels_*.py shared. A path under packages/ whose
folder is not a package is an error, so a new package cannot silently escape CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING_PREFIXES = ("shared/", "tools/", ".ci/", ".github/")
EVERYTHING_FILES = {"pyproject.toml", "Makefile"}
MAX_FILES = 300


def all_packages() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))


def affected(changed: list[str]) -> list[str]:
    packages = all_packages()
    everything = ["shared", *packages]
    if len(changed) > MAX_FILES:
        return everything
    selected: set[str] = set()
    for path in changed:
        if path in EVERYTHING_FILES or path.startswith(EVERYTHING_PREFIXES):
            return everything
        parts = path.split("/")
        if parts[0] == "packages" and len(parts) > 2:
            if parts[1] not in packages and (ROOT / "packages" / parts[1]).exists():
                raise SystemExit(f"{path}: packages/{parts[1]} has no pyproject.toml; is it a package?")
            if parts[1] in packages:
                selected.add(parts[1])
        elif parts[0] == "benchmarks":
            selected.update(p for p in packages if parts[-1].startswith(f"{p}_"))
            if parts[-1].startswith("kernels_"):  # the shared kernels' benchmark
                selected.add("shared")
    return sorted(selected)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", help="git ref to diff against (merge base)")
    parser.add_argument("--all", action="store_true", help="every package")
    args = parser.parse_args()
    if args.all or not args.base:
        result = ["shared", *all_packages()]
    else:
        diff = subprocess.run(
            ["git", "diff", "--name-only", f"{args.base}...HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        result = affected([line for line in diff.stdout.splitlines() if line])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
