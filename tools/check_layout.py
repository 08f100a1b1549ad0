"""Checks that every package follows the layout of shared/design/ARCHITECTURE.md and is covered by CI.

For each packages/<name>/: pyproject.toml (distribution paperzoo-<name>, a paperzoo-shared range, a
`test` extra, the paperzoo.papers entry point), README.md, CHANGELOG.md, paper/tables.yaml (valid
schema), configs/, src/paperzoo_<name>/, tests/; and the package is listed in the root import-linter
contracts. Prints every problem and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def check_package(directory: Path, contracts: dict) -> list[str]:
    name = directory.name
    module = f"paperzoo_{name}"
    problems = []
    for required in ("README.md", "CHANGELOG.md", "paper/tables.yaml", "configs", f"src/{module}", "tests"):
        if not (directory / required).exists():
            problems.append(f"packages/{name}: missing {required}")
    project = tomllib.loads((directory / "pyproject.toml").read_text()).get("project", {})
    distribution = f"paperzoo-{name.replace('_', '-')}"
    if project.get("name") != distribution:
        problems.append(
            f"packages/{name}/pyproject.toml: name must be {distribution!r}, is {project.get('name')!r}"
        )
    shared = [d for d in project.get("dependencies", []) if d.replace("_", "-").startswith("paperzoo-shared")]
    if not shared or not any(op in shared[0] for op in (">=", "~=")):
        problems.append(
            f"packages/{name}/pyproject.toml: depend on paperzoo-shared with a range, e.g. >=0.2,<0.3"
        )
    init = directory / "src" / module / "__init__.py"
    if init.is_file() and project.get("version"):
        declared = re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.MULTILINE)
        if declared and declared.group(1) != project["version"]:
            problems.append(
                f"packages/{name}: __version__ {declared.group(1)!r} in src/{module}/__init__.py differs from "
                f"the pyproject version {project['version']!r}"
            )
    if "test" not in project.get("optional-dependencies", {}):
        problems.append(f"packages/{name}/pyproject.toml: add a `test` extra")
    entry_points = project.get("entry-points", {}).get("paperzoo.papers", {})
    if name not in entry_points:
        problems.append(
            f'packages/{name}/pyproject.toml: register [project.entry-points."paperzoo.papers"] {name} = ...'
        )
    if module not in contracts["root_packages"]:
        problems.append(f"root pyproject.toml: add {module} to [tool.importlinter] root_packages")
    for contract in contracts["contracts"]:
        listed = contract.get("modules", contract.get("forbidden_modules", []))
        if module not in listed:
            problems.append(
                f"root pyproject.toml: add {module} to the import-linter contract {contract['name']!r}"
            )
    if (directory / "paper/tables.yaml").is_file():
        from paperzoo_shared.repro import TablesError, load_tables

        try:
            load_tables(directory / "paper/tables.yaml")
        except TablesError as error:
            problems.append(str(error))
    return problems


def main() -> int:
    root_config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = root_config["tool"]["importlinter"]
    problems = []
    for required in (
        "shared/CHANGELOG.md",
        "shared/README.md",
        "README.md",
        ".ci/run",
        ".github/workflows/ci.yml",
    ):
        if not (ROOT / required).exists():
            problems.append(f"missing {required}")
    packages = (
        sorted(p for p in (ROOT / "packages").iterdir() if p.is_dir()) if (ROOT / "packages").is_dir() else []
    )
    for directory in packages:
        if not (directory / "pyproject.toml").is_file():
            problems.append(f"packages/{directory.name}: no pyproject.toml")
            continue
        problems += check_package(directory, contracts)
    for problem in problems:
        print(problem)
    print(f"layout: {len(packages)} packages checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
