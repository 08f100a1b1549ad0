"""DUKD's invertible augmentations (notes 5.2 item 3) and the negative-sample degradations (item 4)."""

from __future__ import annotations

import itertools

import pytest
import torch
from paperzoo_dckd.configuration import DegradationConfig
from paperzoo_dckd.modeling_dckd import Degradation, InvertibleAugment, add_gaussian_noise, gaussian_blur2d

ALL_SUBSETS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize(
    "subset", ALL_SUBSETS, ids=lambda s: "".join("IHWT"[i] for i, on in enumerate(s) if on) or "none"
)
def test_inverse_undoes_every_subset_exactly(subset):
    # Dyadic values (k / 256) make 1 - (1 - x) exact in float32, so the round trip must be bit-exact.
    x = torch.randint(0, 256, (2, 3, 6, 6), generator=torch.Generator().manual_seed(0)).float() / 256
    aug = InvertibleAugment()
    ops = torch.tensor([subset, subset])
    y = aug.apply(x, ops)
    assert torch.equal(aug.invert(y, ops), x)
    # 8-bit images (k / 255): equal up to float32 rounding of the colour inversion
    z = torch.randint(0, 256, (1, 3, 6, 6), generator=torch.Generator().manual_seed(1)).float() / 255
    assert torch.allclose(aug.invert(aug.apply(z, ops[:1]), ops[:1]), z, atol=1e-7, rtol=0)


def _dukd_style_undo(aug: InvertibleAugment, y: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
    """DUKD's bug: 'undo' by applying the forward sequence (invert, flip H, flip W, transpose) again."""
    return aug.apply(y, ops)


def test_forward_again_is_not_the_inverse_for_transpose_with_one_flip():
    x = torch.arange(36.0).view(1, 1, 6, 6) / 64  # dyadic: colour inversion is exact
    aug = InvertibleAugment()
    wrong = []
    for subset in ALL_SUBSETS:
        ops = torch.tensor([subset])
        if not torch.equal(_dukd_style_undo(aug, aug.apply(x, ops), ops), x):
            wrong.append(subset)
    # exactly the subsets with the transpose and exactly one of the two flips (colour inversion either way)
    expected = [s for s in ALL_SUBSETS if s[3] and (s[1] != s[2])]
    assert sorted(wrong) == sorted(expected) and len(expected) == 4


def test_ops_are_drawn_per_sample_with_probability():
    aug = InvertibleAugment(prob=0.5)
    ops = aug.sample(4000, torch.Generator().manual_seed(0))
    assert ops.shape == (4000, 4)
    assert torch.allclose(ops.float().mean(0), torch.full((4,), 0.5), atol=0.03)
    x = torch.rand(5, 3, 4, 4)
    mixed = torch.tensor(
        [
            [True, False, False, False],
            [False] * 4,
            [False, True, False, False],
            [False] * 4,
            [False] * 3 + [True],
        ]
    )
    y = aug.apply(x, mixed)
    assert torch.equal(y[1], x[1]) and torch.equal(y[0], 1 - x[0]) and torch.equal(y[2], x[2].flip(-2))
    assert torch.equal(y[4], x[4].transpose(-2, -1))


def _degradation(**kwargs) -> Degradation:
    base = {"gaussian_noise_prob": 0.0, "gaussian_blur_prob": 0.0, "resize_prob": 0.0}
    return Degradation(DegradationConfig(**{**base, **kwargs}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gaussian_noise_prob": 1.0},
        {"gaussian_blur_prob": 1.0},
        {"resize_prob": 1.0},
        {"gaussian_noise_prob": 1.0, "gaussian_blur_prob": 1.0, "resize_prob": 1.0},
    ],
)
def test_degradation_preserves_shape_and_range(kwargs):
    x = torch.rand(3, 3, 17, 23)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        y = _degradation(**kwargs)(x, gen)
        assert y.shape == x.shape
        if kwargs.get("resize_prob"):  # bicubic resizing may overshoot (not clipped in the released code)
            assert y.min() > -0.5 and y.max() < 1.5
            clamped = _degradation(**kwargs, clamp=True)(x, gen)
            assert clamped.min() >= 0.0 and clamped.max() <= 1.0
        else:
            assert y.min() >= 0.0 and y.max() <= 1.0


def test_noise_std_within_released_range():
    x = torch.full((400, 3, 32, 32), 0.5)  # mid-grey: clipping never triggers at sigma <= 30/255
    y = add_gaussian_noise(x, torch.Generator().manual_seed(1), [1.0, 30.0], gray_prob=0.5)
    std = (y - x).flatten(1).std(1) * 255
    assert std.min() > 0.9 and std.max() < 31.0
    # uniform in [1, 30]: mean about 15.5, and both ends are reached
    assert 13.5 < std.mean() < 17.5 and std.min() < 3 and std.max() > 27


def test_grey_noise_is_identical_across_channels_and_colour_noise_is_not():
    x = torch.full((8, 3, 16, 16), 0.5)
    grey = add_gaussian_noise(x, torch.Generator().manual_seed(2), [10.0, 10.0], gray_prob=1.0) - x
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    colour = add_gaussian_noise(x, torch.Generator().manual_seed(2), [10.0, 10.0], gray_prob=0.0) - x
    assert not torch.equal(colour[:, 0], colour[:, 1])
    mixed = (
        add_gaussian_noise(torch.full((2000, 3, 2, 2), 0.5), torch.Generator().manual_seed(3), [5, 5], 0.5)
        - 0.5
    )
    share = (mixed[:, 0] == mixed[:, 1]).all(-1).all(-1).float().mean()
    assert 0.45 < share < 0.55


def test_degradation_is_seeded():
    x = torch.rand(2, 3, 12, 12)
    deg = _degradation(gaussian_noise_prob=1.0, gaussian_blur_prob=0.5, resize_prob=0.5)
    a = deg(x, torch.Generator().manual_seed(7))
    b = deg(x, torch.Generator().manual_seed(7))
    c = deg(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_blur_keeps_constants_and_smooths():
    const = torch.full((1, 3, 9, 9), 0.25)
    assert torch.allclose(gaussian_blur2d(const, (5, 3), (1.0, 0.5)), const, atol=1e-6)
    impulse = torch.zeros(1, 1, 11, 11)
    impulse[0, 0, 5, 5] = 1.0
    out = gaussian_blur2d(impulse, (5, 5), (1.0, 1.0))
    assert out.sum() == pytest.approx(1.0, abs=1e-5) and out[0, 0, 5, 5] < 0.2


def test_degradation_config_validation():
    with pytest.raises(ValueError, match="gaussian_noise_prob"):
        DegradationConfig(gaussian_noise_prob=1.5)
    with pytest.raises(ValueError, match="odd"):
        DegradationConfig(blur_kernel_size=[3, 10])
