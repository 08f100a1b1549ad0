"""Exceptions raised by :mod:`paperzoo_shared.data`.

Every message names the offending file and says how to fix the problem.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file is unreadable, corrupt or inconsistent with its format."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file does not exist; catchable as both :class:`DataError` and :class:`FileNotFoundError`."""


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a :class:`Path`, raising :class:`DataFileNotFoundError` when it is not a file.

    ``what`` names the kind of file in the message, e.g. ``"image"`` or ``"VOC annotation"``.
    """
    path = Path(path)
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "does not exist"
        raise DataFileNotFoundError(
            f"{what} file {path} {reason}; check the path (and the dataset root it was built from)."
        )
    return path
