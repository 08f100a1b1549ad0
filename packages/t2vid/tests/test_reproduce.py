"""The smoke preset end to end through paperzoo_shared.repro.run_reproduction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_t2vid.configuration import T2VidConfig
from paperzoo_t2vid.paper import PAPER
from paperzoo_t2vid.reproduce import wilson_upper

from paperzoo_shared.config import ConfigError, load_config
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import run_reproduction

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_registered_and_presets_load() -> None:
    assert get_paper("t2vid") == PAPER
    for preset in ("smoke", "mini", "full"):
        load_config(T2VidConfig, CONFIGS / f"{preset}.yaml")
    with pytest.raises(ConfigError):
        load_config(T2VidConfig, CONFIGS / "mini.yaml", overrides=["corpus.real_share=1.5"])


def test_wilson_upper_by_hand() -> None:
    # 0 of n: (z^2 / n) / (1 + z^2 / n); for n = 100, z = 1.96: 0.0370
    assert wilson_upper(0, 100) == pytest.approx(0.0370, abs=1e-4)
    assert wilson_upper(50, 100) == pytest.approx(0.5961, abs=1e-4)


def test_smoke_preset_end_to_end(tmp_path: Path, font_path: str) -> None:
    written = run_reproduction(PAPER, preset="smoke", out_dir=tmp_path, command="pytest smoke")
    assert sorted(p.name for p, _ in written) == ["diversity.json", "synthesis.json"]
    synthesis = {r["id"]: r["metrics"] for r in json.loads((tmp_path / "synthesis.json").read_text())["rows"]}
    assert synthesis["longalpaca_minicpm"]["deterministic"]["mean"] == 1.0
    assert synthesis["longqlora_minicpm"]["overflow_pct"]["mean"] == 0.0
    diversity = {r["id"]: r["metrics"] for r in json.loads((tmp_path / "diversity.json").read_text())["rows"]}
    d2 = diversity["D2"]["diversity"]["mean"]
    assert d2 == pytest.approx(
        diversity["qlora_suffix"]["diversity"]["mean"] - diversity["qlora_raw"]["diversity"]["mean"]
    )
    assert diversity["D2"]["ci_low"]["mean"] <= d2 <= diversity["D2"]["ci_high"]["mean"]
    assert (tmp_path / "tsne_instructions.png").is_file()
    assert "53.0 / 48.4 / 56.8" in (tmp_path / "diversity.md").read_text()
