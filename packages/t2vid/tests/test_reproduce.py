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
    assert sorted(p.name for p, _ in written) == ["diversity.json", "synthesis.json", "training.json"]
    training = {r["id"]: r["metrics"] for r in json.loads((tmp_path / "training.json").read_text())["rows"]}
    rows = ("all_real", "real_15", "real_15_t2vid", "real_matched")
    assert sorted(training) == ["B0", "C1", "C2", "C3", "C4", *rows]
    # smoke sizes: 14 real, round(14 x 0.15) = 2, plus round(2 x 0.5) = 1 T2Vid sample; matched 2 + 1 real
    assert [training[r]["n_train"]["mean"] for r in rows] == [14, 2, 3, 3]
    assert {training[r]["steps"]["mean"] for r in rows} == {4}  # the same steps in every row
    acc = {r: training[r]["accuracy"]["mean"] for r in rows}
    assert training["C1"]["accuracy"]["mean"] == acc["real_15_t2vid"] - acc["real_matched"]
    assert training["B0"]["accuracy"]["mean"] == acc["all_real"] - 25.0
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


def test_mini_preregistration_is_in_the_config() -> None:
    text = (CONFIGS / "mini.yaml").read_text()
    assert "PRE-REGISTERED" in text and all(f"C{i}" in text for i in (1, 2, 3, 4)) and "B0" in text
    cfg = load_config(T2VidConfig, CONFIGS / "mini.yaml").train_mini
    assert (cfg.n_real, cfg.real_share, cfg.t2vid_ratio, cfg.steps, cfg.n_eval) == (200, 0.15, 0.5, 1000, 96)


def test_training_sets_share_the_small_subset_and_the_eval_set_is_balanced(tmp_path: Path) -> None:
    from paperzoo_t2vid.minitrain import MiniTrainConfig, training_sets, write_eval_set

    cfg = MiniTrainConfig(n_real=20, frames=2)
    sets = training_sets(3, cfg, tmp_path / "data")
    # 20 real, round(20 x 0.15) = 3 of them, + round(3 x 0.5) = 2 T2Vid or 2 further real samples
    assert [len(sets[r]) for r in ("all_real", "real_15", "real_15_t2vid", "real_matched")] == [20, 3, 5, 5]

    def frames(records: list) -> list[tuple[str, ...]]:
        return [tuple(r["image"].values()) for r in records]

    small = set(frames(sets["real_15"]))
    mixed, matched = frames(sets["real_15_t2vid"]), frames(sets["real_matched"])
    assert small < set(frames(sets["all_real"])) and small < set(mixed) and small < set(matched)
    assert sum(f[0].startswith("t2vid/") for f in mixed) == 2 and not any(
        f[0].startswith("t2vid/") for f in matched
    )
    assert set(matched) <= set(frames(sets["all_real"])) and len(set(matched)) == 5
    # the same slots hold the shared subset in both rows (one shuffle for both)
    assert [f in small for f in mixed] == [f in small for f in matched]
    # answers: the letter of the keyword among the fixed options A. apple, B. cloud, C. river, D. stone
    record = sets["real_15_t2vid"][0]
    assert record["conversations"][0]["content"].endswith("A. apple\nB. cloud\nC. river\nD. stone")
    root = write_eval_set(8, 5, cfg, tmp_path / "eval")
    rows = json.loads((root / "videomme" / "test.json").read_text())
    assert sorted(r["answer"] for r in rows) == list("AABBCCDD")


@pytest.mark.slow
def test_mini_one_row_one_seed(tmp_path: Path, font_path: str) -> None:
    """The 15 % row at mini sizes, one seed (about a minute on 2 shared cores)."""
    from paperzoo_t2vid.minitrain import run_row, training_sets, write_eval_set

    cfg = load_config(T2VidConfig, CONFIGS / "mini.yaml").train_mini
    sets = training_sets(0, cfg, tmp_path / "data")
    assert [len(sets[r]) for r in ("all_real", "real_15", "real_15_t2vid", "real_matched")] == [
        200,
        30,
        45,
        45,
    ]
    metrics = run_row(
        "real_15", 0, cfg, sets, tmp_path / "data", write_eval_set(cfg.n_eval, 1000, cfg, tmp_path / "e")
    )
    assert metrics["n_train"] == 30 and metrics["steps"] == 1000
    assert 0.0 <= metrics["accuracy"] <= 100.0 and 25.0 <= metrics["modal_answer_pct"] <= 100.0
