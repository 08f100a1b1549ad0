from __future__ import annotations

import subprocess
import sys

import pytest

from paperzoo_shared import kernels
from paperzoo_shared.kernels import KernelOp, KernelUnavailableError, get_op, use

_counter = iter(range(10_000))


def make_op(available=True, accepts=True):
    """A fresh op whose reference doubles and whose 'fast' backend triples (to tell them apart)."""
    op = KernelOp(f"test_op_{next(_counter)}", reference=lambda x: 2 * x)
    op.register_backend(
        "fast",
        load=lambda x: 3 * x,
        is_available=lambda: available,
        supports=lambda x: (accepts, "" if accepts else "x is too large"),
    )
    return op


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith(kernels.ENV_VAR):
            monkeypatch.delenv(name)


def test_auto_prefers_an_available_backend():
    assert make_op()(1) == 3


def test_auto_falls_back_when_unavailable_or_unsupported(caplog):
    caplog.set_level("INFO")
    assert make_op(available=False)(1) == 2
    op = make_op(accepts=False)
    assert op(1) == 2 and op(1) == 2
    assert sum("x is too large" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_environment_selects_globally_and_per_op(monkeypatch):
    op = make_op()
    monkeypatch.setenv("PAPERZOO_KERNELS", "torch")
    assert op(1) == 2
    monkeypatch.setenv(f"PAPERZOO_KERNELS_{op.name.upper()}", "fast")
    assert op(1) == 3  # the per-op variable wins over the global one


def test_explicit_backend_that_cannot_run_raises(monkeypatch):
    op = make_op(available=False)
    monkeypatch.setenv("PAPERZOO_KERNELS", "fast")
    with pytest.raises(KernelUnavailableError, match="cannot run: not available"):
        op(1)
    monkeypatch.setenv("PAPERZOO_KERNELS", "triton")
    with pytest.raises(KernelUnavailableError, match="has no backend 'triton'; valid: auto, torch, fast"):
        op(1)


def test_use_context_overrides_environment_and_nests(monkeypatch):
    op, other = make_op(), make_op()
    monkeypatch.setenv("PAPERZOO_KERNELS", "torch")
    with use("fast"):
        assert op(1) == 3 and other(1) == 3
        with use("torch", op=op.name):
            assert op(1) == 2 and other(1) == 3
        assert op(1) == 3
    assert op(1) == 2


def test_lazy_string_loader_and_registry():
    op = KernelOp(f"test_op_{next(_counter)}", reference=abs)
    op.register_backend("math", load="math:fabs", is_available=lambda: True)
    assert op.select(-2.0)[0] == "math" and op(-2.0) == 2.0
    assert get_op(op.name) is op
    with pytest.raises(ValueError, match="already registered"):
        KernelOp(op.name, reference=abs)
    with pytest.raises(ValueError, match="reserved"):
        op.register_backend("torch", load=abs, is_available=lambda: True)


def test_broken_availability_probe_falls_back():
    op = KernelOp(f"test_op_{next(_counter)}", reference=lambda x: x)

    def probe():
        raise RuntimeError("driver exploded")

    op.register_backend("gpu", load=lambda x: -x, is_available=probe)
    assert op(5) == 5


def test_importing_shared_does_not_import_triton():
    code = "import sys, paperzoo_shared.kernels, paperzoo_shared.registry; print('triton' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_auto_select_applies_to_auto_only(caplog):
    caplog.set_level("INFO")
    op = KernelOp(f"test_op_{next(_counter)}", reference=lambda x: 2 * x)
    op.register_backend("gpu", load=lambda x: 3 * x, is_available=lambda: True,
                        auto_select=lambda x: (x > 10, "small inputs stay on the reference"))  # fmt: skip
    assert op(1) == 2 and op(1) == 2 and op(20) == 60  # auto: the check decides
    assert sum("small inputs" in r.getMessage() for r in caplog.records) == 1  # logged once
    with use("gpu"):
        assert op(1) == 3  # named explicitly: only is_available/supports matter
    with pytest.raises(ValueError, match="already has a backend 'gpu'"):
        op.register_backend("gpu", load=abs, is_available=lambda: True)


def test_triton_device_checks(monkeypatch):
    import torch

    monkeypatch.setattr(kernels, "triton_version", lambda: kernels.MIN_TRITON)  # whatever Triton is installed
    cpu = torch.zeros(2)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ok, reason = kernels.triton_supports(cpu, cpu, 3)
    assert not ok and "need CUDA tensors" in reason and "TRITON_INTERPRET=1" in reason
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.triton_interpreting() and kernels.triton_supports(cpu, scale=cpu) == (True, "")
    assert kernels.triton_on_cuda(cpu)[0] is False  # auto never picks the interpreter
    assert kernels.triton_on_cuda(1, 2.0) == (True, "")  # no tensors: nothing to object to
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not kernels.triton_interpreting()
    meta = torch.zeros(2, device="meta")
    ok, reason = kernels.triton_supports(cpu, meta)
    assert not ok and "several device types (cpu, meta)" in reason


def test_a_triton_older_than_the_tested_one_is_not_used(monkeypatch):
    import torch

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(kernels, "triton_version", lambda: (3, 0))
    ok, reason = kernels.triton_supports(torch.zeros(2))
    assert not ok and reason == "Triton 3.0 is installed; these kernels need Triton 3.8 or newer"
    assert kernels.triton_cuda_available() is False
    monkeypatch.setattr(kernels, "triton_version", lambda: None)
    assert kernels.triton_available() is False and kernels.triton_cuda_available() is False


def test_a_fallback_traces_under_fullgraph_compile():
    """The fallback's log line must not break ``torch.compile(fullgraph=True)`` when the first call is compiled."""
    torch = pytest.importorskip("torch")
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 6):
        pytest.skip("torch < 2.6's dynamo cannot trace the dispatcher's os.environ lookups")
    op = make_op(accepts=False)
    compiled = torch.compile(lambda x: op(x) + 1, fullgraph=True, backend="eager")
    assert torch.equal(compiled(torch.ones(3)), torch.full((3,), 3.0))  # the reference (2x) was traced
