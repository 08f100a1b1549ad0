"""Shared fixtures: a tiny WSOD-Shapes dataset and a small config, built once per test session."""

from __future__ import annotations

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
