"""MATLAB-compatible bicubic resize (notes 5.2 item 2). Goldens come from hand computation of MATLAB's
``imresize`` algorithm and from Pillow's independent bicubic implementation (same kernel, a = -0.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from paperzoo_dckd.data import (
    bicubic_downsample,
    cubic_kernel,
    imresize,
    mod_crop,
    resize_weights,
    to_uint8_matlab,
)


def test_cubic_kernel_hand_values():
    # Keys with a = -0.5: 1 at 0, 0 at the integers, known values at 0.5 and 1.5.
    assert cubic_kernel(np.array([0.0]))[0] == 1.0
    assert np.allclose(cubic_kernel(np.array([1.0, 2.0, -1.0, 2.5])), 0.0)
    assert cubic_kernel(np.array([0.5]))[0] == pytest.approx(0.5625)
    assert cubic_kernel(np.array([1.5]))[0] == pytest.approx(-0.0625)


def test_halving_matches_hand_computed_matlab_weights():
    # imresize(1:8, 0.5): output 1 sits at u = 1.5; antialiased kernel 0.5*cubic(0.5*d), width 8, 10 taps at
    # 1-based indices -3..6, mirrored to 4 3 2 1 1 2 3 4 5 6. Weights computed by hand (then normalised by 2).
    x = np.arange(1, 9, dtype=np.float64)
    hand = np.array(
        [0, -0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375, 0]
    )
    hand = hand / hand.sum()
    taps = np.array([4, 3, 2, 1, 1, 2, 3, 4, 5, 6]) - 1
    expected_first = float((hand * x[taps]).sum())
    out = imresize(x[:, None], 0.5)[:, 0]
    assert out.shape == (4,)
    assert out[0] == pytest.approx(expected_first, abs=1e-12)
    assert out[0] == pytest.approx(1.44921875, abs=1e-12)
    # By the mirror symmetry of the ramp 1..8 the last output is 9 - first.
    assert out[-1] == pytest.approx(9 - expected_first, abs=1e-12)


@pytest.mark.parametrize(
    "in_size,scale,expected", [(7, 0.5, 4), (9, 1 / 3, 3), (10, 1 / 3, 4), (5, 2, 10), (5, 3, 15)]
)
def test_output_size_is_ceil(in_size, scale, expected):
    img = np.zeros((in_size, in_size + 1, 3))
    out = imresize(img, scale)
    assert out.shape == (expected, math.ceil((in_size + 1) * scale), 3)


def test_antialiasing_on_downscale_only():
    # Downscaling: the kernel is stretched (width 4/scale, 2 + 4/scale taps); upscaling: plain 4-tap cubic.
    down = resize_weights(32, 16, 0.5, antialias=True)
    plain = resize_weights(32, 16, 0.5, antialias=False)
    assert np.count_nonzero(down[8]) > np.count_nonzero(plain[8])
    assert np.allclose(down.sum(1), 1) and np.allclose(plain.sum(1), 1)
    assert np.allclose(resize_weights(16, 32, 2.0, True), resize_weights(16, 32, 2.0, False))
    # A pattern above the new Nyquist frequency (period 3 px) is strongly attenuated with antialiasing and
    # aliased at almost full amplitude without it.
    pattern = np.cos(2 * np.pi * np.arange(96) / 3)[:, None]
    aa = imresize(pattern, 0.5)[6:-6, 0]
    no_aa = imresize(pattern, 0.5, antialias=False)[6:-6, 0]
    assert np.ptp(aa) < 0.3 * np.ptp(no_aa)


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0, 0.25])
def test_linear_ramp_reproduced_in_the_interior(scale):
    # Cubic convolution reproduces linear functions; away from the mirrored borders the output of a ramp
    # is the ramp evaluated at the output pixel centres u = i / scale + (1 - 1 / scale) / 2 (1-based).
    n = 64
    ramp = np.arange(1, n + 1, dtype=np.float64)
    img = np.stack([ramp[:, None] + 0 * ramp[None, :], 3 * ramp[None, :] + 0 * ramp[:, None]], axis=-1)
    out = imresize(img, scale)
    m = out.shape[0]
    centres = np.arange(1, m + 1) / scale + 0.5 * (1 - 1 / scale)
    margin = int(math.ceil(6 * max(1.0, scale)))
    inner = slice(margin, m - margin)
    assert np.allclose(out[inner, 10, 0], centres[inner], atol=1e-9)
    assert np.allclose(out[10, inner, 1], 3 * centres[inner], atol=1e-9)


def test_constant_image_preserved_everywhere():
    img = np.full((13, 17, 3), 0.3)
    for scale in (0.5, 1 / 3, 2, 4):
        assert np.allclose(imresize(img, scale), 0.3)


def test_matches_pillow_bicubic_in_the_interior():
    # Pillow's BICUBIC (a = -0.5, antialiased support when shrinking) is an independent implementation; it
    # treats borders differently (truncation, not mirroring), so only the interior is compared.
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    img = rng.random((40, 48)).astype(np.float32)
    for scale in (0.5, 2.0):
        ours = imresize(img.astype(np.float64), scale)
        size = (math.ceil(48 * scale), math.ceil(40 * scale))
        pil = np.asarray(Image.fromarray(img, mode="F").resize(size, Image.BICUBIC), dtype=np.float64)
        margin = int(6 * max(1, scale))
        assert np.abs(ours[margin:-margin, margin:-margin] - pil[margin:-margin, margin:-margin]).max() < 1e-5


def test_uint8_rounding_is_half_away_from_zero():
    assert to_uint8_matlab(np.array([0.5, 1.5, 2.5, 254.5, 255.7, -3.0])).tolist() == [1, 2, 3, 255, 255, 0]


def test_bicubic_downsample_mod_crops_and_rounds():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    lr = bicubic_downsample(hr, 2)
    assert lr.shape == (10, 15, 3) and lr.dtype == np.uint8
    expected = to_uint8_matlab(imresize(mod_crop(hr, 2).astype(np.float64), 0.5))
    assert np.array_equal(lr, expected)
    with pytest.raises(ValueError, match="uint8"):
        bicubic_downsample(hr.astype(np.float32), 2)
