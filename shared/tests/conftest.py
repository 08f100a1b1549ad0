"""A fake paper package, installed for a test by putting a src folder with a .dist-info (entry points
included) on sys.path, inside a folder laid out like a paperzoo checkout."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

TABLES = """\
paper: fakepaper
title: A Fake Paper
tables:
  - id: main
    title: Main results
    source: Table 1
    presets: [smoke, mini]
    seeds: {mini: [0, 1, 2]}
    metrics:
      - {id: acc, label: Accuracy, higher_is_better: true, digits: 1}
      - {id: err, label: Error, higher_is_better: false, digits: 3}
    rows:
      - {id: ours_full, label: Ours (paper setting), paper: {acc: 91.5, err: 0.085}, config: configs/full.yaml}
  - id: ablation
    title: Ablation
    presets: [mini]
    metrics: [{id: acc}]
    rows: []
"""

REPRODUCE = """\
import os
from pathlib import Path
from paperzoo_shared.repro import RowResult, TableResult

def reproduce(request):
    counter = Path(os.environ["FAKE_COUNTER"])
    fail_at = os.environ.get("FAKE_FAIL_AT_SEED")
    per_seed = {}
    for seed in request.seeds:
        def compute(seed=seed):
            if fail_at is not None and seed == int(fail_at):
                raise RuntimeError("killed")
            counter.write_text(counter.read_text() + f"{seed}\\n")
            return {"acc": 80.0 + seed, "err": 0.1 * (seed + 1)}
        per_seed[seed] = request.cached("ours", seed, compute, fingerprint={"lr": 0.1})
    rows = [RowResult.from_seed_metrics("ours", "Ours (mini)", per_seed, paper_row="ours_full")]
    return TableResult(rows=rows, config={"lr": 0.1, "preset": request.preset}, notes=["A note."])
"""


@pytest.fixture
def fake_paper(tmp_path, monkeypatch):
    root = tmp_path / "packages" / "fakepaper"
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "pyproject.toml").write_text("")  # tmp_path looks like a checkout
    src = root / "src"
    pkg = src / "paperzoo_fakepaper"
    pkg.mkdir(parents=True)
    (root / "paper").mkdir()
    (root / "configs").mkdir()
    (root / "paper" / "tables.yaml").write_text(TABLES)
    (pkg / "__init__.py").write_text("")
    (pkg / "paper.py").write_text(
        textwrap.dedent(
            """\
            from paperzoo_shared.registry import Paper
            PAPER = Paper(name="fakepaper", title="A Fake Paper", package="paperzoo_fakepaper",
                          reproduce="paperzoo_fakepaper.reproduce:reproduce")
            """
        )
    )
    (pkg / "reproduce.py").write_text(REPRODUCE)
    dist_info = src / "paperzoo_fakepaper-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: paperzoo-fakepaper\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[paperzoo.papers]\nfakepaper = paperzoo_fakepaper.paper:PAPER\n"
    )
    monkeypatch.syspath_prepend(str(src))
    importlib.invalidate_caches()
    counter = tmp_path / "counter.txt"
    counter.write_text("")
    monkeypatch.setenv("FAKE_COUNTER", str(counter))
    yield root
    for name in [m for m in sys.modules if m.startswith("paperzoo_fakepaper")]:
        del sys.modules[name]
