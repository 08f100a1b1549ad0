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
    for preset in ("smoke", "mini", "mini-long", "full"):
        load_config(T2VidConfig, CONFIGS / f"{preset}.yaml")
    with pytest.raises(ConfigError):
        load_config(T2VidConfig, CONFIGS / "mini.yaml", overrides=["corpus.real_share=1.5"])


def test_wilson_upper_by_hand() -> None:
    # 0 of n: (z^2 / n) / (1 + z^2 / n); for n = 100, z = 1.96: 0.0370
    assert wilson_upper(0, 100) == pytest.approx(0.0370, abs=1e-4)
    assert wilson_upper(50, 100) == pytest.approx(0.5961, abs=1e-4)


def test_smoke_preset_end_to_end(tmp_path: Path, font_path: str) -> None:
    written = run_reproduction(PAPER, preset="smoke", out_dir=tmp_path, command="pytest smoke")
    assert sorted(p.name for p, _ in written) == ["diversity.json", "synthesis.json", "training.json"]
    training = {r["id"]: r["metrics"] for r in json.loads((tmp_path / "training.json").read_text())["rows"]}
    assert sorted(training) == ["T1", "T2", "T3", "all_real", "real_15", "real_15_t2vid"]
    # smoke sizes: 14 real, round(14 x 0.15) = 2, plus round(2 x 0.5) = 1 T2Vid sample
    assert [training[r]["n_train"]["mean"] for r in ("all_real", "real_15", "real_15_t2vid")] == [14, 2, 3]
    t1 = training["T1"]["accuracy"]["mean"]
    assert t1 == training["real_15_t2vid"]["accuracy"]["mean"] - training["real_15"]["accuracy"]["mean"]
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


def test_mini_long_preregistration_is_in_the_config() -> None:
    text = (CONFIGS / "mini-long.yaml").read_text()
    assert "PRE-REGISTERED" in text and all(f"T{i}" in text for i in (1, 2, 3))
    cfg = load_config(T2VidConfig, CONFIGS / "mini-long.yaml").train_mini
    assert (cfg.n_real, cfg.real_share, cfg.t2vid_ratio) == (200, 0.15, 0.5)


@pytest.mark.slow
def test_mini_long_one_row_one_seed(tmp_path: Path, font_path: str) -> None:
    """The 15 % row at mini-long sizes, one seed (about a minute on 2 shared cores)."""
    from paperzoo_t2vid.minitrain import run_row, training_sets, write_eval_set

    cfg = load_config(T2VidConfig, CONFIGS / "mini-long.yaml").train_mini
    sets = training_sets(0, cfg, tmp_path / "data")
    assert [len(sets[r]) for r in ("all_real", "real_15", "real_15_t2vid")] == [200, 30, 45]
    metrics = run_row(
        "real_15", 0, cfg, sets, tmp_path / "data", write_eval_set(cfg.n_eval, 1000, cfg, tmp_path / "e")
    )
    assert metrics["n_train"] == 30 and metrics["steps"] == 16  # ceil(30 / 8) x 4 epochs
    assert 0.0 <= metrics["accuracy"] <= 100.0
