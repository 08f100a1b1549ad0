"""Evaluation with BasicSR's conventions: PSNR/SSIM on the Y channel with crop border = scale (SR), on RGB
with crop 0 (GoPro deblurring) or on Y with crop 0 (deraining); the config's ``evaluation`` section chooses.

The metrics are :func:`paperzoo_shared.metrics.image.psnr` / ``ssim`` (BasicSR-exact). The model sees the
whole LR image (SwinIR pads it to its window size internally and crops the output); the output is clamped,
rounded to uint8 (BasicSR ``tensor2img``) and compared with the HR image, which was mod-cropped to
``LR size * scale`` when the pair was loaded (same size, uncropped, for the scale-1 restoration sets).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from paperzoo_dckd.data import PairedImage, to_tensor, to_uint8_image
from paperzoo_shared.metrics.image import psnr, ssim


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """uint8 HWC LR -> uint8 HWC SR."""
    out = model(to_tensor(lr).unsqueeze(0).to(device))
    return to_uint8_image(out[0])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    pairs: Sequence[PairedImage],
    scale: int,
    *,
    device: torch.device | str = "cpu",
    y_channel: bool = True,
    crop_border: int | None = None,
    max_images: int = 0,
) -> dict[str, object]:
    """Mean PSNR and SSIM over ``pairs`` (Y channel, crop = scale by default) and the per-image values.

    ``pairs`` may be a :class:`paperzoo_dckd.data.LazyPairs`: images are then read one at a time.
    """
    was_training = model.training
    model.eval().to(device)
    crop = scale if crop_border is None else crop_border
    per_image = {}
    chosen = pairs[:max_images] if max_images else pairs
    for pair in tqdm(chosen, desc="evaluate", leave=False, disable=not sys.stderr.isatty()):
        sr = super_resolve(model, pair.lr, device)
        if sr.shape != pair.hr.shape:
            raise ValueError(f"{pair.name}: model output {sr.shape} differs from HR {pair.hr.shape}")
        per_image[pair.name] = {
            "psnr": psnr(sr, pair.hr, crop_border=crop, test_y_channel=y_channel),
            "ssim": ssim(sr, pair.hr, crop_border=crop, test_y_channel=y_channel),
        }
    model.train(was_training)
    return {
        "psnr": float(np.mean([v["psnr"] for v in per_image.values()])),
        "ssim": float(np.mean([v["ssim"] for v in per_image.values()])),
        "per_image": per_image,
    }
