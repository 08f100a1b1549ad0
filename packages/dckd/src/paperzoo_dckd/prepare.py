"""``paperzoo-dckd prepare-div2k``: the DIV2K downloads -> the sub-image folders the full configs read.

BasicSR's ``scripts/data_preparation/extract_subimages.py`` as released (and used by DCKD): HR images are cut
into 480x480 crops every 240 pixels, with ``thresh_size`` 0 (a last crop flush with the border is added when
any pixels would otherwise be left over); the LR images of scale s into (480/s)-pixel crops every 240/s
pixels, at the same positions. Crops are named ``<stem>_s<index>.png`` (index from 1, row by row); the
``x2``/``x3``/``x4`` of DIV2K's LR names is dropped, so HR and LR sub-images pair with ``filename_tmpl: "{}"``.

When no LR folder is given, the LR image of each HR image is made here with the MATLAB-compatible bicubic
(:func:`paperzoo_dckd.data.bicubic_downsample`), which is how DIV2K's ``LR_bicubic`` images were made.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paperzoo_dckd.data import bicubic_downsample, list_images
from paperzoo_shared.data.errors import DataError
from paperzoo_shared.data.image_io import read_image, write_image

CROP, STEP, THRESH = 480, 240, 0
"""BasicSR's released HR settings (LR: divided by the scale)."""


def crop_starts(length: int, crop: int, step: int, thresh: int = THRESH) -> list[int]:
    """Start offsets along one axis (BasicSR ``extract_subimages.worker``)."""
    if length < crop:
        raise DataError(f"image side {length} is smaller than the crop size {crop}")
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def sub_images(img: np.ndarray, crop: int, step: int, thresh: int = THRESH) -> list[np.ndarray]:
    """Every crop of ``img`` (HWC), row by row: index i of the list is sub-image ``s{i + 1:03d}``."""
    h, w = img.shape[:2]
    return [
        img[y : y + crop, x : x + crop]
        for y in crop_starts(h, crop, step, thresh)
        for x in crop_starts(w, crop, step, thresh)
    ]


def _lr_name(stem: str, scale: int) -> str:
    return stem[: -len(f"x{scale}")] if stem.endswith(f"x{scale}") else stem


def prepare_div2k(
    hr_dir: str | Path,
    out_dir: str | Path,
    scales: Sequence[int] = (2, 3, 4),
    lr_dirs: dict[int, Path] | None = None,
    crop: int = CROP,
    step: int = STEP,
) -> dict[str, int]:
    """Writes ``out/DIV2K_train_HR_sub`` and ``out/DIV2K_train_LR/X{s}_sub``; returns the file counts.

    ``lr_dirs[s]`` is DIV2K's ``DIV2K_train_LR_bicubic/X{s}`` folder (names ``0001x2.png``); a scale without
    one gets its LR images from the MATLAB-compatible bicubic of the HR image.
    """
    out_dir = Path(out_dir)
    hr_files = list_images(hr_dir)
    lr_files = {s: {_lr_name(p.stem, s): p for p in list_images(d)} for s, d in (lr_dirs or {}).items()}
    for scale in scales:
        if crop % scale or step % scale:
            raise DataError(f"crop {crop} and step {step} must be multiples of the scale {scale}")
    counts = {"hr": 0, **{f"x{s}": 0 for s in scales}}
    show = sys.stderr.isatty()
    for path in tqdm(hr_files, desc="DIV2K sub-images", disable=not show):
        hr = read_image(path, channel_order="rgb")
        for index, piece in enumerate(sub_images(hr, crop, step), 1):
            write_image(
                out_dir / "DIV2K_train_HR_sub" / f"{path.stem}_s{index:03d}.png", piece, channel_order="rgb"
            )
            counts["hr"] += 1
        for scale in scales:
            if scale in lr_files:
                if path.stem not in lr_files[scale]:
                    raise DataError(f"no LR x{scale} image for {path} in {lr_dirs[scale]}")
                lr = read_image(lr_files[scale][path.stem], channel_order="rgb")
            else:
                lr = bicubic_downsample(hr, scale)
            pieces = sub_images(lr, crop // scale, step // scale)
            for index, piece in enumerate(pieces, 1):
                name = f"{path.stem}_s{index:03d}.png"
                write_image(out_dir / "DIV2K_train_LR" / f"X{scale}_sub" / name, piece, channel_order="rgb")
                counts[f"x{scale}"] += 1
    return counts
