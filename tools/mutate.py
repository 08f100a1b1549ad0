"""Mutation testing of one package's core files with mutmut: ``make mutate PKG=<name>``.

The files come from ``[tool.paperzoo.mutate] paths`` in ``packages/<name>/pyproject.toml`` (paths relative to
the package folder); an optional ``deselect`` list there names tests (pytest node ids) left out of the mutant runs,
for whole-pipeline tests (DDP, smoke presets) that cost minutes per mutant and check nothing the unit tests don't. The package is copied to ``build/mutate/<name>/`` so that mutmut's ``mutants/`` folder and
its config never touch the checkout; mutmut runs the package's default test suite (not ``slow``, not ``gpu``)
against each mutant and this script ends with the surviving mutants, one per line, and their count.

    python tools/mutate.py videomme [--max-children N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def mutate_settings(package: Path) -> dict:
    config = tomllib.loads((package / "pyproject.toml").read_text())
    return config.get("tool", {}).get("paperzoo", {}).get("mutate", {})


def core_paths(package: Path) -> list[str]:
    paths = mutate_settings(package).get("paths")
    if not paths:
        raise SystemExit(
            f"{package / 'pyproject.toml'} has no [tool.paperzoo.mutate] paths = [...]: name the package's "
            "modeling, losses and scorer files there"
        )
    missing = [path for path in paths if not (package / path).is_file()]
    if missing:
        raise SystemExit(f"[tool.paperzoo.mutate] paths that do not exist in {package}: {', '.join(missing)}")
    return list(paths)


def prepare(name: str) -> tuple[Path, list[str]]:
    package = ROOT / "packages" / name
    if not package.is_dir():
        raise SystemExit(f"no package folder packages/{name}")
    paths = core_paths(package)
    work = ROOT / "build" / "mutate" / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "results", "*.egg-info", ".pytest_cache")
    for part in ("src", "tests", "configs", "paper"):
        if (package / part).is_dir():
            shutil.copytree(package / part, work / part, ignore=ignore)
    # the default suite; not --import-mode=importlib (the root's), under which mutmut records no test per mutant
    pytest_args = ["-m", "not gpu and not slow", "-p", "no:cacheprovider"]
    for test in mutate_settings(package).get("deselect", []):
        pytest_args += ["--deselect", test]
    lines = [
        "[mutmut]",
        "paths_to_mutate =",
        *(f"    {path}" for path in paths),
        # the rest of the package (configs, tables, the unmutated modules) beside the mutants
        "also_copy =",
        *(f"    {part}/" for part in ("src", "configs", "paper") if (work / part).is_dir()),
        "tests_dir =",
        "    tests/",
        "pytest_add_cli_args =",
        *(f"    {arg}" for arg in pytest_args),
        "",
    ]
    (work / "setup.cfg").write_text("\n".join(lines))
    return work, paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    work, paths = prepare(args.package)
    mutmut = Path(sys.executable).with_name("mutmut")
    print(f"mutating {', '.join(paths)} of packages/{args.package} in {work.relative_to(ROOT)}", flush=True)
    # the venv's python first on PATH: mutmut starts `python -m pytest`
    env = {**os.environ, "PATH": f"{mutmut.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([str(mutmut), "run", "--max-children", str(args.max_children)], cwd=work, env=env)
    if run.returncode != 0:
        print(f"mutmut run exited with {run.returncode}", file=sys.stderr)
        return run.returncode
    results = subprocess.run(
        [str(mutmut), "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True
    )
    statuses: dict[str, int] = {}
    survivors = []
    for line in results.stdout.splitlines():
        if ":" not in line:
            continue
        mutant, status = (part.strip() for part in line.rsplit(":", 1))
        statuses[status] = statuses.get(status, 0) + 1
        if status == "survived":
            survivors.append(mutant)
    print("\nsurviving mutants (inspect one with `mutmut show <name>` in the folder above):")
    for mutant in survivors:
        print(f"  {mutant}")
    summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    print(f"\n{args.package}: {len(survivors)} survivors of {sum(statuses.values())} mutants ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
