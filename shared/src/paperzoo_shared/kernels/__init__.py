"""Kernel dispatch: per op a readable PyTorch reference and optional accelerated backends (Triton, ...).

An op is declared once with its reference; backends register beside it with an availability check and a
per-call ``supports`` check (dtype, device, shape limits)::

    roi_pool = KernelOp("roi_pool", reference=roi_pool_reference)
    roi_pool.register_backend(
        "triton",
        load="paperzoo_huwsod.kernels.roi_pool_triton:roi_pool",   # imported lazily, on first use
        is_available=cuda_triton_available,
        supports=lambda features, boxes: (features.is_cuda, "features must be on a CUDA device"),
    )
    out = roi_pool(features, boxes)

Selection, first match wins:

1. a :func:`use` context (tests), per op or for all ops;
2. ``PAPERZOO_KERNELS_<OP>`` (op name upper-cased), e.g. ``PAPERZOO_KERNELS_ROI_POOL=torch``;
3. ``PAPERZOO_KERNELS`` = ``auto`` (default) | ``torch`` | a backend name such as ``triton``.

``auto`` tries the backends in registration order and silently falls back to the reference when one
is unavailable or rejects the inputs (the reason is logged once per op and reason). A backend may also
name an ``auto_select`` check that only ``auto`` applies: the Triton backends run CPU tensors through
Triton's interpreter when named explicitly (tests), but ``auto`` picks them on CUDA only. Naming a backend
explicitly makes a backend that cannot run an error: a test or benchmark that asks for Triton must not
quietly measure PyTorch.

Kernels shipped here (each a :class:`KernelOp` or a primitive a paper package registers on its own op):

* :mod:`paperzoo_shared.kernels.roi_loop_pool`: binned max pooling with an excluded hole (ROILoopPool's
  box / frame / context regions), forward and backward in Triton; huwsod registers it on its op;
* :mod:`paperzoo_shared.kernels.gated_decode_attention`: one-query decode attention over ragged per-sample
  KV caches with grouped-query heads, in one pass or split-K (flash-decoding).

Not built: a fused FlashSloth spatial attention pooling (window scores, in-window softmax, weighted sum).
Its cost is the scorer MLP's first ``dim x dim`` linear layer (729 x 1152 x 1152 multiply-adds, about 1 GFLOP
per image at SigLIP's width), already a cuBLAS GEMM that a Triton kernel would have to re-implement to fuse;
the part a kernel could fuse (a softmax over 9 logits and the weighted sum) reads the 729 x 1152 features once
more, about 1.7 MB in bf16 or a few microseconds of memory traffic per image, beside milliseconds of vision
tower and LLM prefill. This is an estimate, not a GPU measurement (none was lent).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ENV_VAR = "PAPERZOO_KERNELS"
REFERENCE = "torch"
AUTO = "auto"

_registry: dict[str, KernelOp] = {}
_forced: list[tuple[str | None, str]] = []  # stack of (op name or None for all ops, backend name)


class KernelUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run this call."""


def _always_supported(*args: Any, **kwargs: Any) -> tuple[bool, str]:
    return True, ""


@dataclass
class Backend:
    name: str
    load: str | Callable[..., Any]
    """The implementation, or ``module:attr`` imported on first use (so Triton is never imported early)."""
    is_available: Callable[[], bool]
    supports: Callable[..., tuple[bool, str]] = _always_supported
    auto_select: Callable[..., tuple[bool, str]] = _always_supported
    """Checked by ``auto`` only, after ``supports`` (e.g. "CUDA tensors only": the interpreter is for tests)."""
    _impl: Callable[..., Any] | None = field(default=None, repr=False)

    def implementation(self) -> Callable[..., Any]:
        if self._impl is None:
            if callable(self.load):
                self._impl = self.load
            else:
                module_name, _, attr = self.load.partition(":")
                self._impl = getattr(importlib.import_module(module_name), attr)
        return self._impl


class KernelOp:
    """A dispatching op: call it like the reference function."""

    def __init__(self, name: str, reference: Callable[..., Any]):
        if name in _registry:
            raise ValueError(f"kernel op {name!r} is already registered")
        self.name = name
        self.reference = reference
        self.backends: dict[str, Backend] = {}
        self._logged: set[str] = set()
        _registry[name] = self

    def register_backend(
        self,
        name: str,
        *,
        load: str | Callable[..., Any],
        is_available: Callable[[], bool],
        supports: Callable[..., tuple[bool, str]] = _always_supported,
        auto_select: Callable[..., tuple[bool, str]] = _always_supported,
    ) -> None:
        if name in (REFERENCE, AUTO):
            raise ValueError(f"{name!r} is reserved; choose another backend name")
        if name in self.backends:
            raise ValueError(f"op {self.name!r} already has a backend {name!r}")
        self.backends[name] = Backend(name, load, is_available, supports, auto_select)

    def requested(self) -> str:
        """The backend name this op would use now: from a ``use`` context, then the environment."""
        for op_name, backend in reversed(_forced):
            if op_name in (None, self.name):
                return backend
        per_op = os.environ.get(f"{ENV_VAR}_{self.name.upper()}")
        return (per_op or os.environ.get(ENV_VAR) or AUTO).strip().lower()

    def select(self, *args: Any, **kwargs: Any) -> tuple[str, Callable[..., Any]]:
        """Chooses the implementation for these inputs; returns its name and the callable."""
        requested = self.requested()
        if requested == REFERENCE:
            return REFERENCE, self.reference
        if requested == AUTO:
            for backend in self.backends.values():
                ok, reason = self._usable(backend, args, kwargs)
                if ok:
                    ok, reason = backend.auto_select(*args, **kwargs)
                if ok:
                    return backend.name, backend.implementation()
                self._log_once(f"{backend.name}: {reason}")
            return REFERENCE, self.reference
        if requested not in self.backends:
            valid = ", ".join([AUTO, REFERENCE, *self.backends])
            raise KernelUnavailableError(f"op {self.name!r} has no backend {requested!r}; valid: {valid}")
        backend = self.backends[requested]
        ok, reason = self._usable(backend, args, kwargs)
        if not ok:
            raise KernelUnavailableError(
                f"backend {requested!r} was requested for op {self.name!r} but cannot run: {reason}. "
                f"Set {ENV_VAR}=auto to fall back to the PyTorch reference."
            )
        return backend.name, backend.implementation()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _, implementation = self.select(*args, **kwargs)
        return implementation(*args, **kwargs)

    @staticmethod
    def _usable(backend: Backend, args: tuple, kwargs: dict) -> tuple[bool, str]:
        try:
            if not backend.is_available():
                return False, "not available on this machine"
        except Exception as error:  # an availability probe must never break the reference path
            return False, f"availability check failed: {error}"
        return backend.supports(*args, **kwargs)

    def _log_once(self, message: str) -> None:
        import torch

        if torch.compiler.is_compiling():  # a log call inside a traced region breaks fullgraph compilation
            return
        if message not in self._logged:
            self._logged.add(message)
            logger.info("kernel %s falls back to the PyTorch reference (%s)", self.name, message)


def get_op(name: str) -> KernelOp:
    if name not in _registry:
        raise KeyError(f"no kernel op {name!r}; registered: {', '.join(sorted(_registry)) or 'none'}")
    return _registry[name]


def registered_ops() -> list[str]:
    return sorted(_registry)


@contextlib.contextmanager
def use(backend: str, op: str | None = None) -> Iterator[None]:
    """Forces a backend (``torch``, ``auto`` or a backend name) for one op or all ops, within a block."""
    _forced.append((op, backend.lower()))
    try:
        yield
    finally:
        _forced.pop()


#: The oldest Triton these kernels were run with (in the tests, under the interpreter). Triton 3.0 (torch 2.4's,
#: tried by the floors job) rejects them (closure-defined kernels, its constexpr rules), so an older Triton counts
#: as unavailable: ``auto`` falls back and naming the backend is an error. Lower it only after running the tests.
MIN_TRITON = (3, 8)


def triton_version() -> tuple[int, ...] | None:
    """The installed Triton's (major, minor), read from its distribution metadata (Triton is not imported);
    None when Triton is not installed."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        return None
    for distribution in ("triton", "pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu"):
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        return tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    import triton

    return tuple(int(part) for part in re.findall(r"\d+", triton.__version__)[:2])


def triton_cuda_available() -> bool:
    """True when Triton :data:`MIN_TRITON` or newer is installed and a CUDA device is present (guard on the
    device, not only the import)."""
    version = triton_version()
    if version is None or version < MIN_TRITON:
        return False
    import torch

    return torch.cuda.is_available()


def triton_interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` is set: ``@triton.jit`` kernels then run on CPU tensors (slowly).

    Triton reads the variable when a kernel is *defined*; the kernels of this package are defined on first
    use once per mode, so setting it for a test (``monkeypatch.setenv``) is enough.
    """
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def triton_available() -> bool:
    """``is_available`` of a Triton backend: Triton is installed. Whether it can run *these* tensors (a recent
    enough Triton, CUDA or the CPU under the interpreter) is :func:`triton_supports`'s question, so its error can
    say what to do."""
    return triton_version() is not None


def _tensor_devices(args: tuple, kwargs: dict) -> set[str]:
    import torch

    return {v.device.type for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)}


def triton_supports(*args: Any, **kwargs: Any) -> tuple[bool, str]:
    """``supports`` check of a Triton backend: Triton :data:`MIN_TRITON` or newer, and every tensor argument on
    CUDA, or on the CPU under the interpreter."""
    version = triton_version()
    if version is not None and version < MIN_TRITON:
        found, oldest = ".".join(map(str, version)), ".".join(map(str, MIN_TRITON))
        return False, f"Triton {found} is installed; these kernels need Triton {oldest} or newer"
    devices = _tensor_devices(args, kwargs)
    if devices <= {"cuda"}:
        return True, ""
    if devices == {"cpu"}:
        if triton_interpreting():
            return True, ""
        return False, (
            "Triton kernels need CUDA tensors, got CPU tensors; set TRITON_INTERPRET=1 "
            "to run them on the CPU through Triton's interpreter (slow, for tests)"
        )
    return False, f"tensor arguments are on several device types ({', '.join(sorted(devices))})"


def triton_on_cuda(*args: Any, **kwargs: Any) -> tuple[bool, str]:
    """``auto_select`` check of a Triton backend: ``auto`` picks it for CUDA tensors only."""
    devices = _tensor_devices(args, kwargs)
    if devices <= {"cuda"}:
        return True, ""
    return False, "auto uses Triton on CUDA tensors only (name the backend to run the interpreter on the CPU)"
