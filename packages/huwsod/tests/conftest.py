"""Shared fixtures: a tiny WSOD-Shapes dataset and a small config, built once per test session."""

from __future__ import annotations

import os

# Triton decides at @triton.jit time (when paperzoo_shared's kernels are first imported, e.g. by an earlier
# test module) whether a kernel runs in its CPU interpreter; test_roi_loop_pool_kernel.py needs it on, and
# in the full suite its fixture's monkeypatch came too late. On CPU tensors the dispatcher's auto mode never
# picks Triton, so the other tests run as before.
os.environ.setdefault("TRITON_INTERPRET", "1")

import copy
from pathlib import Path

import pytest
import torch
from paperzoo_huwsod.configuration import HUWSODConfig

from paperzoo_shared.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_config() -> HUWSODConfig:
    return load_config(HUWSODConfig, CONFIGS / "smoke.yaml")


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory, smoke_config) -> Path:
    """The generated smoke dataset (VOC folder)."""
    from paperzoo_huwsod.data import dataset_root

    return dataset_root(smoke_config.data, tmp_path_factory.mktemp("data"))


@pytest.fixture
def config(smoke_config) -> HUWSODConfig:
    return copy.deepcopy(smoke_config)
