"""PSNR and SSIM with the conventions of BasicSR 1.4.2 (``basicsr/metrics/psnr_ssim.py``).

Image-restoration papers (DCKD and the EDSR/RCAN/SwinIR line) report numbers computed by BasicSR, so these
functions reproduce its conventions exactly, written fresh rather than imported (PyPI ``basicsr==1.4.2``
no longer imports with torchvision >= 0.17):

* numpy inputs are HWC (or CHW with ``input_order="CHW"``, or HW) in the [0, 255] range, uint8 or float;
* ``crop_border`` pixels are removed from every edge *before* the colour conversion and before SSIM's
  Gaussian filtering, so border pixels never enter the filter;
* ``test_y_channel=True`` evaluates on the BT.601 luma Y of YCbCr (:func:`rgb_to_y`), without rounding;
* PSNR is ``10 log10(255^2 / MSE)`` in float64 and ``inf`` when the MSE is exactly 0;
* SSIM filters each channel in float64 with an 11x11 Gaussian (sigma 1.5) through ``cv2.filter2D``, keeps
  the *valid* region ``[5:-5, 5:-5]``, uses C1 = (0.01*255)^2 and C2 = (0.03*255)^2, averages the SSIM map
  and then the channels.

BasicSR works on BGR images read by OpenCV; here the channel order is an explicit argument and defaults to
RGB. The torch variants mirror ``calculate_psnr_pt``/``calculate_ssim_pt``: NCHW tensors in [0, 1], one
value per image, and PSNR ``10 log10(1 / (MSE + 1e-8))``, which is finite (80 dB) for identical images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported inside the torch variants, so the numpy metrics do not load it
    import torch

ChannelOrder = Literal["rgb", "bgr"]
InputOrder = Literal["HWC", "CHW"]

# BT.601 luma weights for [0, 1] RGB input, giving Y in [16, 235] (MATLAB rgb2ycbcr, BasicSR rgb2ycbcr).
_Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

_SSIM_WINDOW_SIZE = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _y_weights(channel_order: str) -> np.ndarray:
    if channel_order == "rgb":
        return np.array(_Y_WEIGHTS_RGB, dtype=np.float64)
    if channel_order == "bgr":
        return np.array(_Y_WEIGHTS_RGB[::-1], dtype=np.float64)
    raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")


def _check_input_order(input_order: str) -> None:
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")


def _check_crop_border(crop_border: int, height: int, width: int, min_size: int) -> None:
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
    if min(height, width) - 2 * crop_border < min_size:
        raise ValueError(
            f"crop_border={crop_border} leaves a {height - 2 * crop_border}x{width - 2 * crop_border} image "
            f"from {height}x{width}; at least {min_size}x{min_size} is needed"
        )


def _to_hwc(img: np.ndarray, input_order: str) -> np.ndarray:
    """BasicSR ``reorder_image``: HW -> HW1, CHW -> HWC, HWC unchanged."""
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an HW, HWC or CHW image, got shape {img.shape}")
    return img.transpose(1, 2, 0) if input_order == "CHW" else img


def _crop(img: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border == 0:
        return img
    return img[crop_border:-crop_border, crop_border:-crop_border, ...]


def _basicsr_y_channel(img: np.ndarray, channel_order: str) -> np.ndarray:
    """BasicSR ``to_y_channel`` on an HWC [0, 255] image, returned as float64 HW1.

    BasicSR scales to [0, 1] in float32, takes the float64 dot product with the luma weights, adds 16,
    stores the result as float32 in [0, 1] and multiplies back by 255 in float32. The float32 roundings are
    kept so that values equal BasicSR's exactly. Images without three channels are passed through the same
    float32 round trip unconverted, as BasicSR does.
    """
    scaled = img.astype(np.float32) / np.float32(255.0)
    if img.shape[2] == 3:
        y = scaled @ _y_weights(channel_order) + _Y_OFFSET
        scaled = (y / 255.0).astype(np.float32)[..., None]
    return (scaled * np.float32(255.0)).astype(np.float64)


def rgb_to_y(img: np.ndarray, channel_order: ChannelOrder = "rgb") -> np.ndarray:
    """Y (luma) of BT.601 YCbCr in [16, 235] for an HWC image in [0, 255] (BasicSR 1.4.2 ``to_y_channel``).

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for RGB (weights reversed for BGR), with no
    rounding. Intermediate values are rounded to float32 exactly where BasicSR rounds them; the result is a
    float64 HxW array (BasicSR returns HxWx1).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {img.shape}")
    return _basicsr_y_channel(img, channel_order)[..., 0]


def _prepare_pair(
    img: np.ndarray,
    ref: np.ndarray,
    crop_border: int,
    test_y_channel: bool,
    channel_order: str,
    input_order: str,
    min_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder to HWC, crop, optionally convert to Y, cast to float64 (the BasicSR order of steps)."""
    img, ref = np.asarray(img), np.asarray(ref)
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: img {img.shape} vs ref {ref.shape}")
    _check_input_order(input_order)
    _y_weights(channel_order)  # validates channel_order even when test_y_channel is False
    img, ref = _to_hwc(img, input_order), _to_hwc(ref, input_order)
    _check_crop_border(crop_border, img.shape[0], img.shape[1], min_size)
    img, ref = _crop(img, crop_border), _crop(ref, crop_border)
    if test_y_channel:
        return _basicsr_y_channel(img, channel_order), _basicsr_y_channel(ref, channel_order)
    return img.astype(np.float64), ref.astype(np.float64)


def psnr(
    img: np.ndarray,
    ref: np.ndarray,
    *,
    crop_border: int,
    test_y_channel: bool = False,
    channel_order: ChannelOrder = "rgb",
    input_order: InputOrder = "HWC",
) -> float:
    """PSNR in dB of two [0, 255] images (BasicSR 1.4.2 ``calculate_psnr``); ``inf`` for identical inputs."""
    img, ref = _prepare_pair(img, ref, crop_border, test_y_channel, channel_order, input_order, min_size=1)
    mse = np.mean((img - ref) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def _gaussian_window() -> np.ndarray:
    """The 11x11 Gaussian window, sigma 1.5, summing to 1 (``cv2.getGaussianKernel`` outer product)."""
    kernel = cv2.getGaussianKernel(_SSIM_WINDOW_SIZE, _SSIM_SIGMA)
    return np.outer(kernel, kernel.transpose())


def _ssim_single_channel(img: np.ndarray, ref: np.ndarray, window: np.ndarray) -> float:
    """Mean SSIM map of one float64 channel in [0, 255] (BasicSR ``_ssim``), valid region only."""
    pad = _SSIM_WINDOW_SIZE // 2

    def filtered(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[pad:-pad, pad:-pad]

    mu1, mu2 = filtered(img), filtered(ref)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = filtered(img**2) - mu1_sq
    sigma2_sq = filtered(ref**2) - mu2_sq
    sigma12 = filtered(img * ref) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + _SSIM_C1) * (2 * sigma12 + _SSIM_C2)) / (
        (mu1_sq + mu2_sq + _SSIM_C1) * (sigma1_sq + sigma2_sq + _SSIM_C2)
    )
    return float(ssim_map.mean())


def ssim(
    img: np.ndarray,
    ref: np.ndarray,
    *,
    crop_border: int,
    test_y_channel: bool = False,
    channel_order: ChannelOrder = "rgb",
    input_order: InputOrder = "HWC",
) -> float:
    """SSIM of two [0, 255] images (BasicSR 1.4.2 ``calculate_ssim``): per-channel mean SSIM, then averaged.

    Needs at least 11x11 pixels after cropping (the valid region must not be empty).
    """
    img, ref = _prepare_pair(
        img, ref, crop_border, test_y_channel, channel_order, input_order, min_size=_SSIM_WINDOW_SIZE
    )
    window = _gaussian_window()
    per_channel = [
        _ssim_single_channel(np.ascontiguousarray(img[..., c]), np.ascontiguousarray(ref[..., c]), window)
        for c in range(img.shape[2])
    ]
    return float(np.mean(per_channel))


def _prepare_pair_torch(
    img: torch.Tensor,
    ref: torch.Tensor,
    crop_border: int,
    test_y_channel: bool,
    channel_order: str,
    min_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop NCHW [0, 1] tensors, optionally convert to Y in [0, 1], cast to float64 (BasicSR ``*_pt``)."""
    import torch

    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: img {tuple(img.shape)} vs ref {tuple(ref.shape)}")
    if img.ndim != 4:
        raise ValueError(f"expected NCHW tensors, got shape {tuple(img.shape)}")
    if not (img.is_floating_point() and ref.is_floating_point()):
        raise ValueError(f"expected floating-point tensors in [0, 1], got {img.dtype} and {ref.dtype}")
    weights = _y_weights(channel_order)
    _check_crop_border(crop_border, img.shape[2], img.shape[3], min_size)
    if crop_border:
        img = img[:, :, crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[:, :, crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        if img.shape[1] != 3:
            raise ValueError(f"test_y_channel needs 3 channels, got {img.shape[1]}")
        # rgb2ycbcr_pt(y_only=True): float32 weights (torch.tensor's default) cast to the input's dtype.
        weight = torch.tensor(weights.tolist(), dtype=torch.float32).reshape(3, 1).to(img)
        img = ((img.permute(0, 2, 3, 1) @ weight).permute(0, 3, 1, 2) + _Y_OFFSET) / 255.0
        ref = ((ref.permute(0, 2, 3, 1) @ weight).permute(0, 3, 1, 2) + _Y_OFFSET) / 255.0
    return img.to(torch.float64), ref.to(torch.float64)


def psnr_torch(
    img: torch.Tensor,
    ref: torch.Tensor,
    *,
    crop_border: int,
    test_y_channel: bool = False,
    channel_order: ChannelOrder = "rgb",
) -> torch.Tensor:
    """Per-image PSNR (float64, shape [N]) of NCHW tensors in [0, 1] (BasicSR 1.4.2 ``calculate_psnr_pt``).

    ``10 log10(1 / (MSE + 1e-8))``: identical images give 80 dB, not ``inf``.
    """
    import torch

    img, ref = _prepare_pair_torch(img, ref, crop_border, test_y_channel, channel_order, min_size=1)
    mse = torch.mean((img - ref) ** 2, dim=[1, 2, 3])
    return 10.0 * torch.log10(1.0 / (mse + 1e-8))


def ssim_torch(
    img: torch.Tensor,
    ref: torch.Tensor,
    *,
    crop_border: int,
    test_y_channel: bool = False,
    channel_order: ChannelOrder = "rgb",
) -> torch.Tensor:
    """Per-image SSIM (float64, shape [N]) of NCHW tensors in [0, 1] (BasicSR 1.4.2 ``calculate_ssim_pt``).

    The images are scaled to [0, 255] and filtered per channel with the same 11x11 Gaussian window as
    :func:`ssim` (``F.conv2d``, no padding = valid region); the map is averaged over channels and pixels.
    """
    import torch
    import torch.nn.functional as functional

    img, ref = _prepare_pair_torch(
        img, ref, crop_border, test_y_channel, channel_order, min_size=_SSIM_WINDOW_SIZE
    )
    img, ref = img * 255.0, ref * 255.0
    channels = img.shape[1]
    window = torch.from_numpy(_gaussian_window()).to(img)
    window = window.expand(channels, 1, _SSIM_WINDOW_SIZE, _SSIM_WINDOW_SIZE)

    def filtered(x: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(x, window, stride=1, padding=0, groups=channels)

    mu1, mu2 = filtered(img), filtered(ref)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = filtered(img * img) - mu1_sq
    sigma2_sq = filtered(ref * ref) - mu2_sq
    sigma12 = filtered(img * ref) - mu1_mu2
    cs_map = (2 * sigma12 + _SSIM_C2) / (sigma1_sq + sigma2_sq + _SSIM_C2)
    ssim_map = ((2 * mu1_mu2 + _SSIM_C1) / (mu1_sq + mu2_sq + _SSIM_C1)) * cs_map
    return ssim_map.mean(dim=[1, 2, 3])
