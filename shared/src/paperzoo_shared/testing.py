"""pytest plugin (auto-loaded through the ``pytest11`` entry point): GPU tests and their policy.

Tests marked ``gpu`` are deselected by default (root pytest config). When selected with ``-m gpu`` on a
machine without CUDA they are skipped, unless ``PAPERZOO_REQUIRE_GPU=1`` is set (GPU runners), where they
fail instead, so a broken GPU runner cannot go green by skipping everything.
"""

from __future__ import annotations

import os

import pytest


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None or cuda_available():
        return
    if os.environ.get("PAPERZOO_REQUIRE_GPU") == "1":
        pytest.fail("PAPERZOO_REQUIRE_GPU=1 but CUDA is not available", pytrace=False)
    pytest.skip("needs a CUDA device")
