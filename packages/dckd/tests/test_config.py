"""Configs: every preset loads, the full configs build the paper's models, bad keys are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from paperzoo_dckd.configuration import ExperimentConfig
from paperzoo_dckd.models import count_parameters
from paperzoo_dckd.reproduce import config_path
from paperzoo_dckd.train import build_from_config

from paperzoo_shared.config import ConfigError, load_config
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import ReproRequest, load_tables

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VARIANTS = ["swinir_x2", "swinir_x3", "swinir_x4", "rcan_x2", "rcan_x3", "rcan_x4"]


@pytest.mark.parametrize(
    "name", ["smoke.yaml", "mini.yaml", "mini-long.yaml", "full.yaml", *(f"full/{v}.yaml" for v in VARIANTS)]
)
def test_every_config_loads(name):
    config = load_config(ExperimentConfig, CONFIGS / name)
    assert config.methods


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_configs_carry_the_paper_settings_and_build(variant):
    config = load_config(ExperimentConfig, CONFIGS / "full" / f"{variant}.yaml")
    scale = int(variant[-1])
    assert config.variant == variant and config.data.scale == scale
    assert config.train.iterations == 250_000 and config.train.lr == 1e-4 and config.train.ema_decay == 0.999
    assert config.dckd.lambda_dcl == 0.1 and config.dckd.lambda_ce == 0.001 and config.dckd.num_negatives == 5
    assert config.dckd.history_steps == [1000, 2000, 3000] and config.dckd.history_decay == 0.1
    assert config.teacher.checkpoint.name.endswith((f"SwinIR-M_x{scale}.pth", f"RCAN_BIX{scale}.pt"))
    assert config.encoder.checkpoint.name == "VQGAN_f16_n1024.ckpt"
    assert set(config.data.test_sets) == {"Set5", "Set14", "B100", "Urban100"}
    assert all(f"X{scale}" in str(t.lr_dir) for t in config.data.test_sets.values())
    # The models build (weights are not shipped: build without the checkpoint).
    from dataclasses import replace

    teacher = build_from_config(replace(config.teacher, checkpoint=None), scale, "teacher")
    student = build_from_config(replace(config.student, checkpoint=None), scale, "student")
    assert teacher.upscale == scale and student.upscale == scale
    expected = {"swinir": (11.9e6, 1.2e6), "rcan": (15.6e6, 5.2e6)}[variant.split("_")[0]]
    assert abs(count_parameters(teacher) - expected[0]) / expected[0] < 0.03
    assert abs(count_parameters(student) - expected[1]) / expected[1] < 0.1
    with torch.no_grad():
        assert student.eval()(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * scale, 8 * scale)


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {CONFIGS / 'mini.yaml'}\ntrain:\n  iteration: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(ExperimentConfig, bad)
    assert "train.iteration" in str(info.value) and str(bad) in str(info.value)
    with pytest.raises(ConfigError, match="dckd.lambda_dlc"):
        load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["dckd.lambda_dlc=0.2"])


def test_bad_values_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown method 'csd'"):
        load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["methods=[scratch, csd]"])
    with pytest.raises(ConfigError, match="teacher_prob must be a probability"):
        load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["dckd.mipkd.teacher_prob=1.5"])
    with pytest.raises(ConfigError, match="layer_weights needs 5 values"):
        load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["dckd.layer_weights=[1, 1]"])
    # folder data without training folders is a valid evaluation config; training it names the missing key
    from paperzoo_dckd.train import load_train_pairs

    folders = load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["data.source=folders"])
    with pytest.raises(ValueError, match="data.train_hr_dir"):
        load_train_pairs(folders)
    gopro = load_config(
        ExperimentConfig, CONFIGS / "mini.yaml", overrides=["data.source=gopro", "data.scale=1"]
    )
    with pytest.raises(ValueError, match="data.train_dir"):
        load_train_pairs(gopro)
    with pytest.raises(ConfigError, match="scale must be 2, 3 or 4"):
        load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["data.scale=5"])


def test_full_variant_selection(tmp_path):
    paper = get_paper("dckd")
    table = load_tables(paper.data_root() / "paper" / "tables.yaml").table("table2")

    def request(overrides):
        return ReproRequest(paper, table, "full", [0], tmp_path, CONFIGS, overrides)

    assert config_path(request([])) == CONFIGS / "full.yaml"
    assert config_path(request(["variant=rcan_x4"])) == CONFIGS / "full" / "rcan_x4.yaml"
    with pytest.raises(ConfigError, match="valid variants: rcan_x2"):
        config_path(request(["variant=edsr_x2"]))


def test_full_preset_names_missing_data_and_weights(tmp_path):
    import numpy as np
    from paperzoo_dckd.convert import CheckpointError
    from paperzoo_dckd.reproduce import reproduce

    from paperzoo_shared.data.errors import DataError
    from paperzoo_shared.data.image_io import write_image

    paper = get_paper("dckd")
    table = load_tables(paper.data_root() / "paper" / "tables.yaml").table("table2")

    def request(overrides):
        return ReproRequest(
            paper, table, "full", [0], tmp_path, CONFIGS, ["train.accelerator=cpu", *overrides]
        )

    with pytest.raises(DataError, match="DIV2K_train_HR_sub does not exist"):
        reproduce(request([]))
    # with data in the DIV2K/benchmark layouts, the next missing piece is the VQGAN checkpoint
    rng = np.random.default_rng(0)
    write_image(
        tmp_path / "HR" / "0001.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), channel_order="rgb"
    )
    write_image(
        tmp_path / "LR" / "0001x2.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), channel_order="rgb"
    )
    folders = [
        f"data.train_hr_dir={tmp_path / 'HR'}",
        f"data.train_lr_dir={tmp_path / 'LR'}",
        "data.train_filename_tmpl='{}x2'",
    ]
    sets = [
        f"data.test_sets.{name}={{hr_dir: {tmp_path / 'HR'}, lr_dir: {tmp_path / 'LR'}, filename_tmpl: '{{}}x2'}}"
        for name in ("Set5", "Set14", "B100", "Urban100")
    ]
    with pytest.raises(CheckpointError, match="VQGAN_f16_n1024.ckpt does not exist"):
        reproduce(request([*folders, *sets]))


def test_mini_long_is_the_mini_with_more_seeds(tmp_path):
    """mini-long trains exactly what mini trains for every (row, seed), runs every pre-registered row
    (MiPKD included) and has the 26 seeds its header budgets; `--preset mini-long` finds it."""
    from paperzoo_dckd.reproduce import row_fingerprint

    paper = get_paper("dckd")
    table = load_tables(paper.data_root() / "paper" / "tables.yaml").table("table2")
    assert "mini-long" in table.presets and table.seeds["mini-long"] == list(range(26))
    request = ReproRequest(paper, table, "mini-long", table.seeds["mini-long"], tmp_path, CONFIGS, [])
    assert config_path(request) == CONFIGS / "mini-long.yaml"
    mini = load_config(ExperimentConfig, CONFIGS / "mini.yaml")
    long = load_config(ExperimentConfig, CONFIGS / "mini-long.yaml")
    assert long.methods == mini.methods
    assert {"teacher", "scratch", "logits", "mclir", "mipkd", "dckd", "dckd_no_dcr", "dckd_no_dmm"} == set(
        long.methods
    )
    for method in long.methods:
        for seed in (0, 25):
            assert row_fingerprint(long, method, seed) == row_fingerprint(mini, method, seed)
    assert long.parallel_jobs == 2 and not long.fig8b.enabled
