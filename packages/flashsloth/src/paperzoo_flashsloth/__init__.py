"""paperzoo-flashsloth: FlashSloth, lightning multimodal LLMs via embedded visual compression (CVPR 2025).

Importing the package is light (no torch, no transformers). The model lives in
:mod:`paperzoo_flashsloth.modeling_flashsloth`, its configuration in :mod:`paperzoo_flashsloth.configuration`.
"""

from __future__ import annotations

__version__ = "0.1.0"

_SHARED_RANGE = ((0, 1), (0, 2))  # paperzoo-shared >=0.1,<0.2


def _check_shared() -> None:
    try:
        import paperzoo_shared
    except ImportError as error:  # pragma: no cover - only in broken environments
        raise ImportError(
            "paperzoo-flashsloth needs paperzoo-shared>=0.1,<0.2; install it with "
            '`pip install "paperzoo-shared @ git+https://github.com/paperzoo/paperzoo#subdirectory=shared"`'
        ) from error
    version = getattr(paperzoo_shared, "__version__", "0")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = _SHARED_RANGE
    if not (low <= parts < high):
        raise ImportError(
            f"paperzoo-flashsloth {__version__} needs paperzoo-shared>=0.1,<0.2 but {version} is installed; "
            'run `pip install "paperzoo-shared>=0.1,<0.2"` (or the git URL of the README)'
        )


_check_shared()
