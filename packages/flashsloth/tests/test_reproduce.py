"""The smoke preset runs end to end through paperzoo_shared.repro.run_reproduction."""

from __future__ import annotations

import json

import pytest
from paperzoo_flashsloth.configuration import ExperimentConfig
from paperzoo_flashsloth.paper import PAPER

from paperzoo_shared.config import load_config
from paperzoo_shared.repro import run_reproduction


def test_main_table_smoke(tmp_path):
    written = run_reproduction(PAPER, preset="smoke", table_id="main", out_dir=tmp_path, command="pytest")
    ((json_path, markdown),) = written
    results = json.loads(json_path.read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert list(rows) == ["uncompressed", "avgpool", "no_embq", "flashsloth"]
    tokens = {k: r["metrics"]["visual_tokens"]["mean"] for k, r in rows.items()}
    assert tokens == {
        "uncompressed": 81,
        "avgpool": 11,
        "no_embq": 9,
        "flashsloth": 11,
    }  # 9x9 -> 3x3 (+2 queries)
    for row in rows.values():
        assert 0 <= row["metrics"]["accuracy"]["mean"] <= 100 and row["metrics"]["mflops"]["mean"] > 0
    assert rows["flashsloth"]["metrics"]["mflops"]["mean"] < rows["uncompressed"]["metrics"]["mflops"]["mean"]
    assert rows["flashsloth"]["paper"] == {"accuracy": 61.1, "visual_tokens": 90}
    assert "FlashSloth" in markdown and (tmp_path / "main.md").is_file()
    # a rerun resumes from the ledger without training again
    again = run_reproduction(PAPER, preset="smoke", table_id="main", out_dir=tmp_path, command="pytest")
    assert json.loads(again[0][0].read_text())["rows"][3]["metrics"] == rows["flashsloth"]["metrics"]


@pytest.mark.slow
def test_efficiency_table_smoke(tmp_path):
    ((json_path, _),) = run_reproduction(
        PAPER, preset="smoke", table_id="efficiency", out_dir=tmp_path, command="pytest"
    )
    rows = {row["id"]: row["metrics"] for row in json.loads(json_path.read_text())["rows"]}
    assert {k: v["visual_tokens"]["mean"] for k, v in rows.items()} == {
        "uncompressed": 729, "flashsloth": 90, "hd_uncompressed": 3645, "hd": 414}  # fmt: skip
    assert rows["flashsloth"]["tflops_exact"]["mean"] < rows["uncompressed"]["tflops_exact"]["mean"]


@pytest.mark.parametrize("preset", ["smoke", "mini", "full_stage1", "full_stage2", "full_hd"])
def test_shipped_configs_load(preset):
    cfg = load_config(ExperimentConfig, PAPER.data_root() / "configs" / f"{preset}.yaml")
    if preset.startswith("full"):
        assert (
            cfg.model.vision.num_layers == 26
            and cfg.model.text.hidden_size == 2560
            and cfg.model.embq_layer == 7
        )
        assert cfg.train.deepspeed.endswith("zero3.json") and cfg.train.fp16
        assert cfg.train.learning_rate == (1e-3 if preset == "full_stage1" else 2e-5)
        assert cfg.train.batch_size * cfg.train.grad_accumulation * 8 == (
            256 if preset == "full_stage1" else 128
        )
    else:
        assert cfg.train.stage == "II" and cfg.vision_pretrain.steps > 0
