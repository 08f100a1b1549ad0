"""Joining paths read from annotation and data files, without leaving the data root.

An annotation file is data, and data can be wrong or hostile: ``../../etc/passwd`` or an absolute path in a
JSON field must not make a loader read outside the dataset. :func:`safe_join` is the one way loaders join
such paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from paperzoo_shared.data.errors import DataError


def safe_join(
    root: str | Path, relative: str | os.PathLike[str], *, source: str | Path, entry: object = None
) -> Path:
    """Return ``root / relative``, raising :class:`DataError` when the result would leave ``root``.

    ``source`` is the file the path was read from and ``entry`` the record in it (an id, a line number), so
    the message says where to fix it. The check is on the path as written (``..`` components, absolute
    paths): symbolic links that the user put inside the root, such as ``JPEGImages -> /mnt/voc/JPEGImages``,
    are the user's choice and are followed. An absolute ``relative`` is refused even when it happens to lie
    inside the root: annotation paths are relative by contract.
    """
    text = os.fspath(relative)
    where = f"{source}" + (f" (entry {entry})" if entry is not None else "")
    if not text:
        raise DataError(f"empty path in {where}; every path must name a file relative to {root}.")
    if "\x00" in text:
        raise DataError(f"path {text!r} in {where} contains a NUL byte.")
    if os.path.isabs(text) or Path(text).drive:
        raise DataError(
            f"path {text!r} in {where} is absolute; paths must be relative to the data root {root}."
        )
    base = Path(os.path.abspath(root))
    joined = Path(os.path.normpath(base / text))
    if joined != base and not joined.is_relative_to(base):
        raise DataError(f"path {text!r} in {where} leaves the data root {base}; refusing to read {joined}.")
    return joined
