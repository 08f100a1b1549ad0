"""Runs each package's tests in its own pytest process and ends with a per-package summary.

    python tools/run_tests.py shared dckd huwsod [-- extra pytest args]
    python tools/run_tests.py shared dckd --allow-empty -- -m slow

Exit status is non-zero when any package fails, or collects no tests (unless --allow-empty: a package with
no test of the selected marker, e.g. no `slow` test, then counts as passed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"=+ (?P<body>.*(passed|failed|error|skipped|deselected|no tests ran).*) in [\d.]+s")


def tests_dir(name: str) -> Path:
    return ROOT / ("shared" if name == "shared" else f"packages/{name}") / "tests"


def main(argv: list[str]) -> int:
    names, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    allow_empty = "--allow-empty" in names
    names = [name for name in names if name != "--allow-empty"]
    rows = []
    for name in names:
        directory = tests_dir(name)
        if not directory.is_dir():
            print(f"\n{name}: no tests folder at {directory.relative_to(ROOT)}", flush=True)
            rows.append((name, "MISSING", "no tests folder", 0.0))
            continue
        print(f"\n==== {name} ====", flush=True)
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", str(directory.relative_to(ROOT)), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        summary = ""
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            match = SUMMARY.search(line)
            if match:
                summary = match.group("body").strip()
        code = process.wait()
        seconds = time.perf_counter() - start
        status = "ok" if code == 0 or (code == 5 and allow_empty) else ("NO TESTS" if code == 5 else "FAILED")
        rows.append((name, status, summary or f"pytest exit code {code}", seconds))

    width = max(len(name) for name, *_ in rows) if rows else 7
    print("\n==== summary ====")
    for name, status, summary, seconds in rows:
        print(f"{name:<{width}}  {status:<8}  {seconds:6.1f}s  {summary}")
    failed = [name for name, status, *_ in rows if status != "ok"]
    print(
        f"{len(rows) - len(failed)}/{len(rows)} packages passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
