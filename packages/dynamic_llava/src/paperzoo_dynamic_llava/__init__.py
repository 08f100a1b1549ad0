"""paperzoo-dynamic-llava: Dynamic-LLaVA, dynamic vision-language context sparsification (ICLR 2025).

Importing the package is light (no torch, no transformers). The method lives in
:mod:`paperzoo_dynamic_llava.modeling_dynamic_llava` (predictors, masked-softmax attention, physical pruning,
the gated KV cache) with its settings in :mod:`paperzoo_dynamic_llava.configuration`; FLOP, latency and
memory measurement in :mod:`paperzoo_dynamic_llava.measure`.
"""

from __future__ import annotations

__version__ = "0.1.0"

_SHARED_RANGE = ((0, 1), (0, 2))  # paperzoo-shared >=0.1,<0.2


def _check_shared() -> None:
    try:
        import paperzoo_shared
    except ImportError as error:  # pragma: no cover - exercised only in broken environments
        raise ImportError(
            "paperzoo-dynamic-llava needs paperzoo-shared>=0.1,<0.2; install it with "
            '`pip install "paperzoo-shared @ git+https://github.com/paperzoo/paperzoo#subdirectory=shared"`'
        ) from error
    version = getattr(paperzoo_shared, "__version__", "0")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = _SHARED_RANGE
    if not (low <= parts < high):
        raise ImportError(
            f"paperzoo-dynamic-llava {__version__} needs paperzoo-shared>=0.1,<0.2 but {version} is installed; "
            'run `pip install "paperzoo-shared>=0.1,<0.2"` (or the git URL of the README)'
        )


_check_shared()
