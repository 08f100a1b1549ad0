"""``paperzoo-t2vid train`` and ``evaluate`` end to end: tiny Idefics3 trained, saved, reloaded, scored on a
Video-MME-layout folder; the training table of the smoke preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_t2vid.cli import main
from paperzoo_t2vid.minitrain import MiniTrainConfig, real_samples, t2vid_samples, write_eval_set


def test_cli_train_save_then_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], font_path: str
) -> None:
    cfg = MiniTrainConfig(frames=2)
    records = real_samples(4, 0, cfg, tmp_path / "data") + t2vid_samples(2, 0, cfg, tmp_path / "data")
    (tmp_path / "train.json").write_text(json.dumps(records))
    out = tmp_path / "model"
    argv = ["train", str(tmp_path / "train.json"), "--root", str(tmp_path / "data"),
            "--set", "train.max_steps=3", "--set", "train.per_device_batch_size=2",
            "--set", "train.gradient_accumulation_steps=1", "--set", "train.learning_rate=0.01",
            "--set", "train.logging_steps=1", "--set", "train.save=true", "--set", f"train.output_dir={out}"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == 6 and summary["saved"] == str(out)
    assert (out / "config.json").is_file()
    root = write_eval_set(3, 1, cfg, tmp_path / "eval")
    assert main(["evaluate", str(root), "--model", str(out), "--max-new-tokens", "2",
                 "--out", str(tmp_path / "scores.json")]) == 0  # fmt: skip
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 3
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert len(saved["responses"]) == 3


def test_cli_train_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.json").write_text(json.dumps([{"image": {}, "conversations": []}]))
    assert main(["train", str(tmp_path / "train.json"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("paperzoo-t2vid: error: a multi-image record needs")
    assert main(["train", str(tmp_path / "train.json"), "--root", str(tmp_path),
                 "--set", "train.model=llava"]) == 2  # fmt: skip
    assert "train.model 'llava' is not one of" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--model", str(tmp_path / "none")]) == 2
    assert "is not a local model folder" in capsys.readouterr().err
