"""Lightning training: each network trains, a killed run resumes bit for bit, 2-process CPU DDP (gloo)."""

from __future__ import annotations

import json

import pytest
import torch
from paperzoo_csfiqa.configuration import ExperimentConfig
from paperzoo_csfiqa.data import build_synthetic, split_indices
from paperzoo_csfiqa.reproduce import load_experiment  # noqa: F401  (import check)
from paperzoo_csfiqa.train import select, train_run

from paperzoo_shared.config import load_config
from paperzoo_shared.lightning_resume import KillAtStep, SimulatedKill, assert_same_tensors
from paperzoo_shared.registry import get_paper


def smoke_config(*overrides: str) -> ExperimentConfig:
    path = get_paper("csfiqa").data_root() / "configs" / "smoke.yaml"
    return load_config(ExperimentConfig, path, overrides=list(overrides))


@pytest.fixture(scope="module")
def data():
    dataset = build_synthetic(["astronaut", "camera", "brick"], 48)
    return dataset, split_indices(dataset.refs(), 0, 0.67, 0.5)


@pytest.mark.parametrize("method", ["csfiqa", "cnn", "vit"])
def test_each_network_trains_and_records_history(method, data, tmp_path):
    dataset, split = data
    config = smoke_config("train.epochs=2", "train.batch_size=5")
    result = train_run(config, method, 0, dataset, split, tmp_path / method)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert set(result["history"][0]) == {"epoch", "val", "test"}
    assert (tmp_path / method / "final.pt").is_file()
    # a second call with the same fingerprint returns the stored result without training
    stored = json.loads((tmp_path / method / "result.json").read_text())
    assert train_run(config, method, 0, dataset, split, tmp_path / method)["timing"] == stored["timing"]


def test_selection_uses_validation_and_reports_best_on_test_separately():
    history = [
        {"epoch": 1, "val": {"srcc": 0.5}, "test": {"srcc": 0.9, "plcc": 0.8, "plcc4": 0.8}},
        {"epoch": 2, "val": {"srcc": 0.7}, "test": {"srcc": 0.6, "plcc": 0.5, "plcc4": 0.55}},
    ]
    chosen = select(history, "val")
    assert chosen["srcc"] == 0.6 and chosen["epoch"] == 2 and chosen["srcc_sot"] == 0.9
    assert select(history, "test")["srcc"] == 0.9


def test_killed_run_resumes_bit_for_bit(data, tmp_path):
    dataset, split = data
    config = smoke_config("train.epochs=3", "train.batch_size=5")
    full = train_run(config, "csfiqa", 1, dataset, split, tmp_path / "full")
    steps_per_epoch = len(split["train"]) * config.train.train_crops // 5
    with pytest.raises(SimulatedKill):
        train_run(
            config,
            "csfiqa",
            1,
            dataset,
            split,
            tmp_path / "resumed",
            callbacks=[KillAtStep(2 * steps_per_epoch)],
        )
    assert not (tmp_path / "resumed" / "result.json").exists()
    resumed = train_run(config, "csfiqa", 1, dataset, split, tmp_path / "resumed")
    assert resumed["history"] == full["history"]
    assert_same_tensors(
        torch.load(tmp_path / "full" / "final.pt", weights_only=True),
        torch.load(tmp_path / "resumed" / "final.pt", weights_only=True),
        "final weights",
    )


def test_ddp_two_cpu_processes_gloo(data, tmp_path):
    dataset, split = data
    config = smoke_config(
        "train.epochs=1", "train.batch_size=4", "train.strategy=ddp_spawn", "train.devices=2"
    )
    result = train_run(config, "csfiqa", 0, dataset, split, tmp_path / "ddp")
    assert [h["epoch"] for h in result["history"]] == [1]
    assert (tmp_path / "ddp" / "final.pt").is_file()


def test_correlation_metrics_agree_with_scipy():
    """SRCC/PLCC as the package reports them, against scipy.stats (notes Sec. 5.2 item 9)."""
    import numpy as np
    from paperzoo_csfiqa.train import correlation_metrics
    from scipy import stats

    rng = np.random.default_rng(0)
    pred = rng.uniform(-3, 3, 60)
    mos = 4 / (1 + np.exp(-2 * pred)) + rng.normal(0, 0.1, 60)  # monotone but saturating
    got = correlation_metrics(pred, mos)
    assert got["srcc"] == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)
    assert got["plcc"] == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-12)
    assert got["plcc4"] > got["plcc"]  # the logistic fit undoes the saturation
    # a constant prediction has no defined correlation; the report carries 0 rather than NaN
    assert correlation_metrics(np.zeros(5), np.arange(5.0)) == {"srcc": 0.0, "plcc": 0.0, "plcc4": 0.0}
