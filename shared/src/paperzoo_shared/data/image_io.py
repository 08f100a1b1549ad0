"""Image reading and writing through OpenCV with an explicit channel order.

OpenCV stores colour images as BGR, almost every model expects RGB, and mixing them up is silent. Both
functions therefore take ``channel_order`` as a required keyword argument.

Conventions:

* Arrays are HWC. Grayscale files give ``(H, W, 3)`` (replicated) or ``(H, W, 1)``.
* An alpha channel is dropped (the colour channels are returned as stored, not composited).
* 16-bit files are read exactly with ``dtype=np.uint16`` or scaled to ``[0, 1]`` with a float dtype;
  asking for ``np.uint8`` raises instead of silently dropping precision.
* Decoding uses ``IMREAD_ANYDEPTH | IMREAD_ANYCOLOR``, so OpenCV applies a JPEG's EXIF orientation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import DTypeLike

from paperzoo_shared.data.errors import DataError, require_file

ChannelOrder = Literal["rgb", "bgr"]

_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def _check_channel_order(channel_order: str) -> None:
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")


def read_image(
    path: str | Path,
    *,
    channel_order: ChannelOrder,
    grayscale_to_rgb: bool = True,
    dtype: DTypeLike = np.uint8,
) -> np.ndarray:
    """Read an image file into an HWC array.

    Args:
        path: any format OpenCV decodes (PNG, JPEG, BMP, TIFF, WebP, ...).
        channel_order: ``"rgb"`` or ``"bgr"``; required so that the order is always explicit.
        grayscale_to_rgb: replicate a single-channel image to 3 channels; otherwise return ``(H, W, 1)``.
        dtype: ``np.uint8`` (8-bit files), ``np.uint16`` (16-bit files), or ``np.float32``/``np.float64``
            (any bit depth, scaled to ``[0, 1]`` by the file's maximum value 255 or 65535).

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: the file cannot be decoded, or its bit depth does not match an integer ``dtype``.
    """
    _check_channel_order(channel_order)
    dtype = np.dtype(dtype)
    if dtype not in [np.dtype(d) for d in _SUPPORTED_DTYPES]:
        raise ValueError(f"dtype must be one of uint8, uint16, float32, float64; got {dtype}.")
    path = require_file(path, "image")
    buffer = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    img = cv2.imdecode(buffer, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if buffer.size else None
    if img is None:
        raise DataError(
            f"could not decode image file {path}: it is empty, truncated or not an image format OpenCV "
            "reads; re-create or re-download it."
        )
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(
            f"image file {path} has {img.dtype} pixels; only 8- and 16-bit images are supported. "
            "Convert it to an 8- or 16-bit PNG."
        )
    if dtype.kind == "u" and img.dtype != dtype:
        bits = 8 * img.dtype.itemsize
        raise DataError(
            f"image file {path} is {bits}-bit but dtype={dtype} was requested; pass dtype=np.{img.dtype} "
            "to read it exactly or dtype=np.float32 to scale it to [0, 1]."
        )

    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        if grayscale_to_rgb:
            img = np.repeat(img, 3, axis=2)
    elif channel_order == "rgb":
        img = img[:, :, 2::-1]  # BGR -> RGB; the slice also drops an alpha channel if present
    else:
        img = img[:, :, :3]

    if dtype.kind == "f":
        return img.astype(dtype) / dtype.type(np.iinfo(img.dtype).max)
    return np.ascontiguousarray(img)


def write_image(path: str | Path, img: np.ndarray, *, channel_order: ChannelOrder) -> Path:
    """Write an HWC (or HW) ``uint8``/``uint16`` image, creating parent directories.

    Args:
        path: destination; the extension chooses the format (``.png`` is lossless, ``.jpg`` is not;
            16-bit needs PNG or TIFF).
        img: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` array.
        channel_order: the order of ``img``'s channels, ``"rgb"`` or ``"bgr"``.

    Returns:
        The path written.
    """
    _check_channel_order(channel_order)
    path = Path(path)
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"write_image({path}) needs uint8 or uint16 pixels, got {img.dtype}; convert first, e.g. "
            "np.clip(x * 255, 0, 255).round().astype(np.uint8) for [0, 1] floats."
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(
            f"write_image({path}) needs an (H, W), (H, W, 1) or (H, W, 3) array, got {img.shape}."
        )
    if img.ndim == 3 and channel_order == "rgb":
        img = img[:, :, ::-1]
    try:
        ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(img))
    except cv2.error as err:
        raise DataError(
            f"cannot encode image file {path}: OpenCV has no encoder for {path.suffix!r} with "
            f"{img.dtype} pixels; use .png."
        ) from err
    if not ok:
        raise DataError(f"OpenCV failed to encode image file {path}; use a .png path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded.tofile(path)
    return path
