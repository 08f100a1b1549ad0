"""paperzoo-huwsod: HUWSOD (arXiv 2406.19394) and its WSOD anchors (WSDDN, OICR, MIST-style refinement) in
plain PyTorch and torchvision ops, trained with Lightning and evaluated through paperzoo_shared's metrics.

Importing the package is light: torch is imported only by the submodules that need it.
"""

from __future__ import annotations

__version__ = "0.1.0"

_SHARED_RANGE = ((0, 1), (0, 2))  # paperzoo-shared >=0.1,<0.2


def _check_shared() -> None:
    try:
        import paperzoo_shared
    except ImportError as error:  # pragma: no cover - exercised only in broken installs
        raise ImportError(
            "paperzoo-huwsod needs paperzoo-shared>=0.1,<0.2; install it with "
            '`pip install "paperzoo-shared @ git+https://github.com/paperzoo/paperzoo#subdirectory=shared"`'
        ) from error
    version = getattr(paperzoo_shared, "__version__", "0")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = _SHARED_RANGE
    if not (low <= parts < high):
        raise ImportError(
            f"paperzoo-huwsod {__version__} needs paperzoo-shared>=0.1,<0.2 but {version} is installed; "
            'run `pip install "paperzoo-shared>=0.1,<0.2"` (or the git URL in the README).'
        )


_check_shared()
