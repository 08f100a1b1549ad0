"""PSNR/SSIM against hand computations, an independent scipy reimplementation of BasicSR 1.4.2, and skimage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from paperzoo_shared.metrics import psnr, psnr_torch, rgb_to_y, ssim, ssim_torch

# ---------------------------------------------------------------------------------------------------------
# Independent reference, written from the description of BasicSR 1.4.2 (not from the code under test):
# to_y_channel scales to [0, 1] in float32, bgr2ycbcr takes a float64 dot product, adds 16, divides by 255
# and stores float32, then multiplies by 255 in float32. SSIM uses a hand-built 11x11 Gaussian window
# (sigma 1.5) applied with scipy.ndimage.correlate and keeps the valid region.


def reference_y(img: np.ndarray, rgb: bool = True) -> np.ndarray:
    r_w, g_w, b_w = 65.481, 128.553, 24.966
    x = img.astype(np.float32) / np.float32(255)
    r, g, b = (x[..., 0], x[..., 1], x[..., 2]) if rgb else (x[..., 2], x[..., 1], x[..., 0])
    y = r.astype(np.float64) * r_w + g.astype(np.float64) * g_w + b.astype(np.float64) * b_w + 16.0
    return ((y / 255.0).astype(np.float32) * np.float32(255)).astype(np.float64)


def reference_window() -> np.ndarray:
    offsets = np.arange(11) - 5
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    g /= g.sum()
    return np.outer(g, g)


def reference_ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = reference_window()

    def local_mean(z: np.ndarray) -> np.ndarray:
        return ndimage.correlate(z, w, mode="constant")[5:-5, 5:-5]  # valid region: border mode irrelevant

    mx, my = local_mean(x), local_mean(y)
    vx = local_mean(x * x) - mx * mx
    vy = local_mean(y * y) - my * my
    cxy = local_mean(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def reference_metrics(a: np.ndarray, b: np.ndarray, crop: int, y_channel: bool, rgb: bool = True):
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    if y_channel:
        a, b = reference_y(a, rgb)[..., None], reference_y(b, rgb)[..., None]
    a, b = a.astype(np.float64), b.astype(np.float64)
    mse = np.mean((a - b) ** 2)
    p = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    s = np.mean([reference_ssim_map(a[..., c], b[..., c]).mean() for c in range(a.shape[2])])
    return p, s


@pytest.fixture(scope="module")
def image_pair() -> tuple[np.ndarray, np.ndarray]:
    """A smooth uint8 RGB image and a noisy, slightly shifted version of it."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:36, 0:40]
    base = np.stack([120 + 80 * np.sin(xx / 5.0), 100 + 60 * np.cos(yy / 4.0), 30 + 4 * xx], axis=-1)
    a = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).round().astype(np.uint8)
    b = np.clip(base + 3 + rng.normal(0, 12, base.shape), 0, 255).round().astype(np.uint8)
    return a, b


def test_identity_gives_inf_psnr_and_unit_ssim(image_pair):
    a, _ = image_pair
    for y_channel in (False, True):
        assert psnr(a, a.copy(), crop_border=2, test_y_channel=y_channel) == math.inf
        assert ssim(a, a.copy(), crop_border=2, test_y_channel=y_channel) == pytest.approx(1.0, abs=1e-12)


def test_y_coefficients_on_pure_colours():
    # BT.601: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in [0, 255]
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], np.uint8)
    expected = [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0]
    y = rgb_to_y(pixels, "rgb")
    assert y.shape == (1, 5) and y.dtype == np.float64
    np.testing.assert_allclose(y[0], expected, atol=2e-5)  # float32 intermediate, as in BasicSR
    np.testing.assert_allclose(
        rgb_to_y(pixels, "bgr")[0], [16 + 24.966, 16 + 128.553, 16 + 65.481, 235, 16], atol=2e-5
    )
    # float input in [0, 255] gives the same values as uint8
    np.testing.assert_array_equal(rgb_to_y(pixels.astype(np.float64), "rgb"), y)
    # the float32 rounding points are BasicSR's, reproduced by the independent reference bit for bit
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, (8, 9, 3))
    np.testing.assert_array_equal(rgb_to_y(img, "rgb"), reference_y(img, rgb=True))
    np.testing.assert_array_equal(rgb_to_y(img, "bgr"), reference_y(img, rgb=False))


def test_psnr_hand_computed():
    a = np.full((6, 7, 3), 100, np.uint8)
    # MSE = 1 -> 10 log10(255^2) = 48.1308 dB; MSE = 4 -> 6.0206 dB less
    assert psnr(a, a + 1, crop_border=0) == pytest.approx(48.130803608679, abs=1e-9)
    assert psnr(a, a + 2, crop_border=0) == pytest.approx(48.130803608679 - 20 * math.log10(2), abs=1e-9)
    # offset 1 in every channel moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255
    expected_y = 10 * math.log10(255.0**2 / (219 / 255) ** 2)
    assert psnr(a, a + 1, crop_border=0, test_y_channel=True) == pytest.approx(expected_y, abs=1e-4)
    # one pixel of 16 off by 10 gray levels in a 4x4 grayscale image: MSE = 100 / 16
    g = np.zeros((4, 4))
    h = g.copy()
    h[1, 2] = 10
    assert psnr(g, h, crop_border=0) == pytest.approx(10 * math.log10(255.0**2 * 16 / 100), abs=1e-9)


def test_crop_border_excludes_border_pixels_and_ssim_is_valid_mode(image_pair):
    a, b = image_pair
    framed = b.copy()
    framed[3:-3, 3:-3] = a[3:-3, 3:-3]  # differs from a only in a 3-pixel frame
    for y_channel in (False, True):
        assert psnr(a, framed, crop_border=3, test_y_channel=y_channel) == math.inf
        assert ssim(a, framed, crop_border=3, test_y_channel=y_channel) == pytest.approx(1.0, abs=1e-12)
        assert psnr(a, framed, crop_border=2, test_y_channel=y_channel) < 60
    # SSIM with crop_border=4 is SSIM of the pre-cropped images: the window never reaches border pixels,
    # and 5 more pixels per side (the valid region) are dropped. A "same"-size filtered map (symmetric
    # padding, no valid crop) averaged over the crop would differ.
    cropped = ssim(a, b, crop_border=4)
    assert cropped == ssim(a[4:-4, 4:-4], b[4:-4, 4:-4], crop_border=0)
    assert cropped == pytest.approx(reference_metrics(a[4:-4, 4:-4], b[4:-4, 4:-4], 0, False)[1], abs=1e-10)
    same_mode = []
    for c in range(3):
        x, y = a[4:-4, 4:-4, c] * 1.0, b[4:-4, 4:-4, c] * 1.0
        padded_x, padded_y = np.pad(x, 5, mode="symmetric"), np.pad(y, 5, mode="symmetric")
        same_mode.append(reference_ssim_map(padded_x, padded_y).mean())
    assert abs(cropped - np.mean(same_mode)) > 1e-3
    # The colour conversion is per pixel, so crop and conversion commute; what matters is that the crop is
    # spatial whatever the layout: CHW input crops H and W, not the channels.
    for metric in (psnr, ssim):
        chw = metric(a.transpose(2, 0, 1), b.transpose(2, 0, 1), crop_border=4, input_order="CHW")
        assert chw == metric(a, b, crop_border=4)


@pytest.mark.parametrize("crop", [0, 4])
@pytest.mark.parametrize("y_channel", [False, True])
@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_matches_independent_reference(image_pair, crop, y_channel, order):
    a, b = image_pair
    expected_psnr, expected_ssim = reference_metrics(a, b, crop, y_channel, rgb=order == "rgb")
    kwargs = {"crop_border": crop, "test_y_channel": y_channel, "channel_order": order}
    assert psnr(a, b, **kwargs) == pytest.approx(expected_psnr, abs=1e-10)
    assert ssim(a, b, **kwargs) == pytest.approx(expected_ssim, abs=1e-10)


def test_grayscale_hw_input(image_pair):
    a, b = image_pair
    ga, gb = a[..., 1], b[..., 1]
    expected_psnr, expected_ssim = reference_metrics(ga[..., None], gb[..., None], 2, False)
    assert psnr(ga, gb, crop_border=2) == pytest.approx(expected_psnr, abs=1e-10)
    assert ssim(ga, gb, crop_border=2) == pytest.approx(expected_ssim, abs=1e-10)


def test_skimage_gaussian_ssim_agrees(image_pair):
    from skimage.metrics import structural_similarity

    a, b = image_pair
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ours = ssim(a64, b64, crop_border=0)
    theirs = structural_similarity(
        a64,
        b64,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
    # skimage truncates its separable Gaussian at 3.5 sigma -> radius 5 -> the same 11x11 window, and
    # averages the map after cropping (win_size - 1) // 2 = 5 pixels: the same valid region. The only
    # difference is floating-point rounding (separable 1-D passes vs cv2.filter2D); observed ~1e-16.
    assert ours == pytest.approx(theirs, abs=1e-10)


def test_skimage_default_ssim_differs(image_pair):
    from skimage.metrics import structural_similarity

    a, b = image_pair
    ours = ssim(a, b, crop_border=0)
    # defaults: 7x7 uniform window and sample covariance (N - 1 normalisation)
    default = structural_similarity(a, b, data_range=255, channel_axis=-1)
    assert abs(ours - default) > 1e-3


def _nchw(img: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float64) / 255.0).permute(2, 0, 1)[None].to(dtype)


def test_torch_variants_match_numpy(image_pair):
    a, b = image_pair
    batch_a = torch.cat([_nchw(a, torch.float64), _nchw(b, torch.float64)])
    batch_b = torch.cat([_nchw(b, torch.float64), _nchw(a[::-1].copy(), torch.float64)])
    pairs = [(a, b), (b, a[::-1].copy())]
    for y_channel in (False, True):
        p = psnr_torch(batch_a, batch_b, crop_border=3, test_y_channel=y_channel)
        s = ssim_torch(batch_a, batch_b, crop_border=3, test_y_channel=y_channel)
        assert p.shape == s.shape == (2,) and p.dtype == s.dtype == torch.float64
        for i, (x, y) in enumerate(pairs):
            # torch PSNR = 10 log10(1 / (MSE + 1e-8)) on [0, 1] images; the numpy PSNR gives that MSE
            mse01 = 10 ** (-psnr(x, y, crop_border=3, test_y_channel=y_channel) / 10)
            assert p[i].item() == pytest.approx(-10 * math.log10(mse01 + 1e-8), abs=1e-6)
            assert s[i].item() == pytest.approx(ssim(x, y, crop_border=3, test_y_channel=y_channel), abs=1e-6)
    # float32 input, as BasicSR validation feeds it, stays within float32 precision of the float64 result
    p32 = psnr_torch(_nchw(a, torch.float32), _nchw(b, torch.float32), crop_border=3, test_y_channel=True)
    s32 = ssim_torch(_nchw(a, torch.float32), _nchw(b, torch.float32), crop_border=3, test_y_channel=True)
    assert p32.item() == pytest.approx(psnr(a, b, crop_border=3, test_y_channel=True), abs=1e-3)
    assert s32.item() == pytest.approx(ssim(a, b, crop_border=3, test_y_channel=True), abs=1e-5)
    # identical images: 10 log10(1 / 1e-8) = 80 dB, not inf
    assert psnr_torch(batch_a, batch_a.clone(), crop_border=0).tolist() == pytest.approx([80.0, 80.0])


def test_bgr_order_reverses_the_weights(image_pair):
    a, b = image_pair
    rgb_value = psnr(a, b, crop_border=0, test_y_channel=True, channel_order="rgb")
    assert (
        psnr(a[..., ::-1], b[..., ::-1], crop_border=0, test_y_channel=True, channel_order="bgr") == rgb_value
    )
    ta, tb = _nchw(a, torch.float64), _nchw(b, torch.float64)
    flipped = psnr_torch(ta.flip(1), tb.flip(1), crop_border=0, test_y_channel=True, channel_order="bgr")
    assert flipped.item() == pytest.approx(
        psnr_torch(ta, tb, crop_border=0, test_y_channel=True).item(), abs=1e-12
    )


def test_errors():
    a = np.zeros((20, 20, 3))
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(20, 21, 3\)"):
        psnr(a, np.zeros((20, 21, 3)), crop_border=0)
    with pytest.raises(ValueError, match="channel_order"):
        psnr(a, a, crop_border=0, channel_order="yuv")
    with pytest.raises(ValueError, match="input_order"):
        ssim(a, a, crop_border=0, input_order="NHWC")
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=10)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=-1)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a, a, crop_border=5)
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(np.zeros((4, 4)))
    t = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 15\)"):
        ssim_torch(t, torch.zeros(1, 3, 16, 15), crop_border=0)
    with pytest.raises(ValueError, match="3 channels"):
        psnr_torch(t[:, :1], t[:, :1], crop_border=0, test_y_channel=True)
    with pytest.raises(ValueError, match="channel_order"):
        psnr_torch(t, t, crop_border=0, channel_order="RGB")
    with pytest.raises(ValueError, match="floating-point"):
        psnr_torch(t.to(torch.uint8), t.to(torch.uint8), crop_border=0)
