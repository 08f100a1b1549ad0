"""paperzoo-videomme: the Video-MME evaluation protocol (Fu et al., CVPR 2025), reimplemented and tested.

Light on import: nothing here imports torch or transformers.
"""

from __future__ import annotations

__version__ = "0.1.0"

_SHARED_RANGE = (0, 1)  # paperzoo-shared >=0.1,<0.2


def _check_shared() -> None:
    try:
        import paperzoo_shared
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "paperzoo-videomme needs paperzoo-shared>=0.1,<0.2; install both with "
            '`pip install "paperzoo-shared @ git+https://github.com/paperzoo/paperzoo#subdirectory=shared" '
            '"paperzoo-videomme @ git+https://github.com/paperzoo/paperzoo#subdirectory=packages/videomme"`.'
        ) from err
    parts = paperzoo_shared.__version__.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):  # pragma: no cover
        major, minor = -1, -1
    if (major, minor) != _SHARED_RANGE:
        raise ImportError(
            f"paperzoo-videomme {__version__} needs paperzoo-shared>=0.1,<0.2 but found "
            f"{paperzoo_shared.__version__}; run `pip install 'paperzoo-shared>=0.1,<0.2'`."
        )


_check_shared()
