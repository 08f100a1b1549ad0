"""The paper registry: each paper package registers one :class:`Paper` under the entry-point group
``paperzoo.papers``, and ``paperzoo list|reproduce|report`` discover whatever is installed.

A package declares, in its pyproject.toml::

    [project.entry-points."paperzoo.papers"]
    dckd = "paperzoo_dckd.paper:PAPER"

and ``paperzoo_dckd/paper.py`` holds a light module (no heavy imports) with::

    PAPER = Paper(
        name="dckd",
        title="Dynamic Contrastive Knowledge Distillation for Efficient Image Restoration",
        package="paperzoo_dckd",
        reproduce="paperzoo_dckd.reproduce:reproduce",
    )

The reproduce callable is imported only when a table is run, so ``paperzoo list`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "paperzoo.papers"
PRESETS = ("smoke", "mini", "mini-long", "full")
# Where a built wheel keeps the package's paper/ and configs/ folders (hatchling force-include);
# in a source checkout they sit beside src/.
INSTALLED_DATA_DIR = "_package_data"


class RegistryError(LookupError):
    """An unknown paper, preset or table; the message lists the valid choices."""


@dataclass(frozen=True)
class Paper:
    """What a paper package registers under the entry-point group ``paperzoo.papers``."""

    name: str
    """Short name used on the command line, e.g. ``dckd``."""
    title: str
    """The paper's title."""
    package: str
    """Import name of the package, e.g. ``paperzoo_dckd``."""
    reproduce: str
    """``module:function`` of the callable that runs one table (see :mod:`paperzoo_shared.repro`)."""

    @property
    def distribution(self) -> str:
        return self.package.replace("_", "-")

    @property
    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def source_root(self) -> Path | None:
        """``packages/<paper>/`` when the package runs from a source checkout (editable install)."""
        module = importlib.import_module(self.package)
        root = Path(module.__file__).resolve().parent.parent.parent
        return root if (root / "paper" / "tables.yaml").is_file() else None

    def data_root(self) -> Path:
        """The folder that holds ``paper/tables.yaml`` and ``configs/``."""
        source = self.source_root()
        if source is not None:
            return source
        module = importlib.import_module(self.package)
        installed = Path(module.__file__).resolve().parent / INSTALLED_DATA_DIR
        if (installed / "paper" / "tables.yaml").is_file():
            return installed
        raise RegistryError(
            f"{self.distribution} has no paper/tables.yaml, neither in a source checkout nor in the wheel "
            f"({installed}); reinstall the package"
        )

    def default_results_dir(self, preset: str) -> Path:
        """``packages/<paper>/results/<preset>`` in a checkout, else ``./paperzoo-results/<paper>/<preset>``."""
        source = self.source_root()
        base = source / "results" if source is not None else Path.cwd() / "paperzoo-results" / self.name
        return base / preset

    def load_reproduce(self) -> Callable[..., Any]:
        module_name, _, attr = self.reproduce.partition(":")
        return getattr(importlib.import_module(module_name), attr)


def discover_papers() -> dict[str, Paper]:
    """All installed paper packages, by name (sorted)."""
    papers = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        paper = entry_point.load()
        if not isinstance(paper, Paper):
            raise RegistryError(
                f"entry point {entry_point.name} = {entry_point.value} in group {ENTRY_POINT_GROUP} "
                f"is a {type(paper).__name__}, not a paperzoo_shared.registry.Paper"
            )
        if paper.name != entry_point.name:
            raise RegistryError(
                f"entry point {entry_point.name!r} points at a Paper named {paper.name!r}; the names must agree"
            )
        papers[paper.name] = paper
    return dict(sorted(papers.items()))


def get_paper(name: str) -> Paper:
    papers = discover_papers()
    if name not in papers:
        installed = ", ".join(papers) if papers else "none"
        raise RegistryError(
            f"unknown paper {name!r}; installed papers: {installed}. "
            f"Install another with `pip install paperzoo-{name.replace('_', '-')}` (see the README)."
        )
    return papers[name]


def check_preset(preset: str, valid: tuple[str, ...] = PRESETS) -> str:
    if preset not in valid:
        raise RegistryError(f"unknown preset {preset!r}; valid presets: {', '.join(valid)}")
    return preset
