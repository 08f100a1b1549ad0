"""pytest plugin (auto-loaded through the ``pytest11`` entry point): GPU tests and their policy, and Triton's
CPU interpreter for the kernel tests.

Tests marked ``gpu`` are deselected by default (root pytest config). When selected with ``-m gpu`` on a
machine without CUDA they are skipped, unless ``PAPERZOO_REQUIRE_GPU=1`` is set (GPU runners), where they
fail instead, so a broken GPU runner cannot go green by skipping everything.

Triton decides at ``@triton.jit`` time (when a kernel module is imported) whether a kernel runs in its CPU
interpreter, so the switch is turned on here, before any test module imports one (a test session that sets
``TRITON_INTERPRET`` itself keeps its value). On CPU tensors the dispatcher's ``auto`` never picks the
interpreter, so tests that do not ask for a kernel run as without it.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels through Triton's CPU interpreter, with no ``PAPERZOO_KERNELS`` choice inherited from the shell."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("PAPERZOO_KERNELS", raising=False)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None or cuda_available():
        return
    if os.environ.get("PAPERZOO_REQUIRE_GPU") == "1":
        pytest.fail("PAPERZOO_REQUIRE_GPU=1 but CUDA is not available", pytrace=False)
    pytest.skip("needs a CUDA device")
