"""Reading a pickled checkpoint without running its code: tensors and plain containers kept, the rest skipped.

The taming-transformers VQGAN checkpoint (``VQGAN_f16_n1024.ckpt``) is a pytorch-lightning 1.x checkpoint:
beside ``state_dict`` it pickles callback *classes* (``callbacks: {ModelCheckpoint: {...}}``), hyper-parameter
objects (OmegaConf) and loop state. ``torch.load(weights_only=True)`` refuses such a file, and
``weights_only=False`` would import and run whatever the file names, so an untrusted download could execute
code. :func:`restricted_load` uses torch's own zip reader with an unpickler whose ``find_class`` resolves only
an allow-list (torch's tensor rebuild functions and storages, ``OrderedDict`` and a few builtin types); any
other global becomes an inert :class:`Skipped` stand-in, which records the name and arguments and never
imports or calls anything. The state dict comes back complete; the skipped objects are listed.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import torch

ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}
for _name in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"):
    ALLOWED[("torch", f"{_name}Storage")] = getattr(torch, f"{_name}Storage")
for _dtype in (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
):
    ALLOWED[("torch", _dtype)] = getattr(torch, _dtype)


class Skipped:
    """An object (or class) the checkpoint named but that was not allowed: only its name and arguments."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Skipped:
        # pickle's NEWOBJ calls __new__ without __init__: set everything here
        self = super().__new__(cls)
        self.args, self.kwargs, self.state = args, dict(kwargs), None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on a skipped dict subclass
        self.kwargs[key] = value

    def append(self, value: Any) -> None:  # APPENDS on a skipped list subclass
        self.args = (*self.args, value)

    def extend(self, values: Any) -> None:
        self.args = (*self.args, *values)

    def __repr__(self) -> str:
        return f"<skipped {self.qualname}>"


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        qualname = f"{module}.{name}"
        _SKIPPED.add(qualname)
        # a fresh class per name: usable as a dict key (Lightning 1.x keys callbacks by class) and callable
        return type(f"Skipped[{qualname}]", (Skipped,), {"qualname": qualname})


_SKIPPED: set[str] = set()


class _RestrictedPickleModule:
    """What ``torch.load`` needs of a ``pickle_module``: ``Unpickler``, ``load`` and ``__name__``."""

    __name__ = "paperzoo_dckd.safe_pickle"
    Unpickler = _RestrictedUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()


def restricted_load(path: str | Path) -> tuple[Any, list[str]]:
    """(the checkpoint's content with foreign objects as :class:`Skipped`, the sorted skipped names)."""
    _SKIPPED.clear()
    content = torch.load(
        Path(path), map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule
    )
    return content, sorted(_SKIPPED)
