"""The package CLI, the registry entry and the smoke reproduction."""

from __future__ import annotations

import json

import pytest
from paperzoo_vita.cli import main
from paperzoo_vita.configuration import ExperimentConfig
from paperzoo_vita.paper import PAPER

from paperzoo_shared.config import load_config
from paperzoo_shared.repro import run_reproduction


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_tokens_command(capsys):
    assert main(["tokens", "--image-size", "800x600", "--audio-seconds", "2", "--video-seconds", "7"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["image"] == {"grid": [4, 3], "tiles": 13, "tokens": 3328}
    assert out["audio"] == {"fbank_frames": 198, "tokens": 24}
    assert out["video"]["frames"] == 7 and out["video"]["tokens"] == 1792


def test_errors_are_one_line(capsys, tmp_path):
    assert main(["tokens"]) == 2
    assert "give --image-size" in capsys.readouterr().err
    (tmp_path / "d.json").write_text("{")
    assert main(["check-data", str(tmp_path / "d.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["smoke", "mini", "mini-long", "full"])
def test_shipped_configs_load(preset):
    cfg = load_config(ExperimentConfig, PAPER.data_root() / "configs" / f"{preset}.yaml")
    assert cfg.model.real_size == (preset == "full")


def test_smoke_reproduction(tmp_path):
    ((json_path, markdown),) = run_reproduction(
        PAPER, preset="smoke", table_id="interaction", out_dir=tmp_path, command="pytest",
        overrides=["train.steps=2", "data.num_eval=3"],
    )  # fmt: skip
    rows = json.loads(json_path.read_text())["rows"]
    assert [r["id"] for r in rows] == ["tiny_vita"]
    metrics = rows[0]["metrics"]
    assert 0 <= metrics["state_accuracy"]["mean"] <= 100 and metrics["loss_first"]["mean"] > 0
    assert "tone stands in" in markdown
