"""The package CLI."""

from __future__ import annotations

import json

import pytest
from paperzoo_flashsloth.cli import main


def test_tokens_command(capsys):
    assert main(["tokens", "--variant", "hd"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["visual_tokens"] == 414 and out["image_tokens"] == 405


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_convert_reports_a_foreign_checkpoint(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text("{}")
    save_file({"model.layers.0.mlp.fc1.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    assert main(["convert", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "not an official FlashSloth checkpoint" in capsys.readouterr().err


def test_train_needs_paths(capsys):
    assert main(["train", "--config", "configs/full_stage2.yaml"]) == 2
    assert "paths.data_json" in capsys.readouterr().err
