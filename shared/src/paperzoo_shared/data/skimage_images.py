"""Natural and texture images that ship inside the scikit-image wheel.

Only files present in ``skimage/data/`` of the wheel are listed, and they are read straight from that
directory with ``skimage.io.imread`` (the reader ``skimage.data`` itself uses), so nothing is ever fetched
over the network (no pooch). Names are the file stems, except ``"chessboard"`` (``chessboard_GRAY.png``).

``phantom.png`` is stored as three identical channels; it is listed as grayscale and returned from its
first channel. RGBA files (``logo``, ``horse``) are not listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

SKIMAGE_RGB_IMAGES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "ihc",
    "retina",
    "color",
)
"""RGB images in the scikit-image wheel (``color`` is the colour wheel test chart)."""

SKIMAGE_GRAY_IMAGES: tuple[str, ...] = (
    "camera",
    "moon",
    "page",
    "text",
    "coins",
    "cell",
    "brick",
    "grass",
    "gravel",
    "clock_motion",
    "microaneurysms",
    "phantom",
    "chessboard",
)
"""Grayscale images in the scikit-image wheel (``brick``, ``grass``, ``gravel`` are textures;
``clock_motion`` has real motion blur)."""

_FILES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "retina": "retina.jpg",
    "color": "color.png",
    "camera": "camera.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
    "coins": "coins.png",
    "cell": "cell.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "clock_motion": "clock_motion.png",
    "microaneurysms": "microaneurysms.png",
    "phantom": "phantom.png",
    "chessboard": "chessboard_GRAY.png",
}


def skimage_image_path(name: str) -> Path:
    """Path of the named image inside the installed scikit-image wheel.

    Raises:
        ValueError: ``name`` is not one of :data:`SKIMAGE_RGB_IMAGES` or :data:`SKIMAGE_GRAY_IMAGES`.
        ImportError: scikit-image is not installed.
        FileNotFoundError: the installed scikit-image does not ship this file.
    """
    if name not in _FILES:
        raise ValueError(
            f"unknown scikit-image image {name!r}; valid names are RGB {', '.join(SKIMAGE_RGB_IMAGES)} "
            f"and grayscale {', '.join(SKIMAGE_GRAY_IMAGES)}."
        )
    try:
        import skimage
    except ImportError as err:
        raise ImportError(
            "the scikit-image images need scikit-image; install it with `pip install paperzoo-shared[images]`."
        ) from err
    path = Path(skimage.__file__).parent / "data" / _FILES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"scikit-image {skimage.__version__} does not ship {path.name} (looked at {path}); "
            "install scikit-image>=0.22 from a wheel."
        )
    return path


def load_skimage_image(
    name: str, *, channel_order: Literal["rgb", "bgr"] = "rgb", as_rgb: bool = True
) -> np.ndarray:
    """Load a scikit-image wheel image as ``uint8`` HWC.

    Args:
        name: one of :data:`SKIMAGE_RGB_IMAGES` or :data:`SKIMAGE_GRAY_IMAGES`.
        channel_order: ``"rgb"`` (scikit-image's order) or ``"bgr"`` (OpenCV's).
        as_rgb: replicate grayscale images to 3 channels; otherwise they are ``(H, W, 1)``.
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")
    path = skimage_image_path(name)
    from skimage.io import imread

    img = np.asarray(imread(path))
    if img.dtype != np.uint8:
        raise TypeError(
            f"{path} decoded to {img.dtype}, expected uint8; this scikit-image build is unsupported."
        )
    if name in SKIMAGE_GRAY_IMAGES:
        img = img[:, :, :1] if img.ndim == 3 else img[:, :, None]
        return np.repeat(img, 3, axis=2) if as_rgb else img
    if channel_order == "bgr":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)
