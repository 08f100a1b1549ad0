"""Hand-computed goldens written for the survivors of ``make mutate PKG=dckd`` (README, "Mutation testing").

Every expected number below is worked out by hand in the comments (or with ``math`` from the formula), never
taken from the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from paperzoo_dckd.configuration import DCKDConfig, DegradationConfig
from paperzoo_dckd.losses import (
    contrastive_ratio_loss,
    dmm_cross_entropy,
    fakd_loss,
    feature_distance,
    spatial_affinity,
)
from paperzoo_dckd.modeling_dckd import (
    Degradation,
    Distiller,
    HistorySchedule,
    InvertibleAugment,
    add_gaussian_noise,
    gaussian_blur2d,
    gaussian_kernel1d,
    gradient_diagnostics,
)
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# The history schedule (Eq. 6's update iterations)
# ---------------------------------------------------------------------------------------------------------


def test_update_iterations_include_the_first_and_stop_at_the_last():
    # steps [1, 3], period 2: its 1-2 update every step (1, 2); from it 3 on every 3rd (3, 6, ...).
    schedule = HistorySchedule([1, 3], period=2)
    assert schedule.update_iterations(5) == [1, 2, 3]  # 6 is an update iteration but beyond last = 5
    assert schedule.update_iterations(6) == [1, 2, 3, 6]


# ---------------------------------------------------------------------------------------------------------
# The blur of the degradation module (kornia-style separable Gaussian)
# ---------------------------------------------------------------------------------------------------------


def _gauss(size: int, sigma: float) -> list[float]:
    centre = (size - 1) / 2
    raw = [math.exp(-((i - centre) ** 2) / (2 * sigma**2)) for i in range(size)]
    return [r / sum(raw) for r in raw]


def test_gaussian_kernel_hand_values_in_float64():
    # size 5, sigma 1.5: exp(-x^2 / 4.5) at x = -2..2 is e^-0.8889, e^-0.2222, 1, e^-0.2222, e^-0.8889
    # = 0.411112, 0.800737, 1, 0.800737, 0.411112 (sum 3.423699), i.e. 0.120078, 0.233881, 0.292082, ...
    kernel = gaussian_kernel1d(5, 1.5)
    assert kernel.dtype == torch.float64
    expected = torch.tensor(
        [0.1200783842, 0.2338807566, 0.2920817183, 0.2338807566, 0.1200783842], dtype=torch.float64
    )
    assert torch.allclose(kernel, expected, atol=1e-9, rtol=0)
    assert torch.allclose(kernel, torch.tensor(_gauss(5, 1.5), dtype=torch.float64), atol=1e-14, rtol=0)
    # an even size has no centre tap: x = -1.5, -0.5, 0.5, 1.5, sigma 1 -> e^-1.125, e^-0.125, e^-0.125, e^-1.125
    assert torch.allclose(
        gaussian_kernel1d(4, 1.0), torch.tensor(_gauss(4, 1.0), dtype=torch.float64), atol=1e-14
    )


def test_blur_reflects_at_the_border_along_the_width():
    # kernel sizes (1, 3): no blur along the height; along the width the 3 taps (a, b, a) with sigma 1 are
    # a = e^-0.5 / (1 + 2 e^-0.5), b = 1 / (1 + 2 e^-0.5). Row [1, 2, 3, 4] reflect-padded is [2, 1, 2, 3, 4, 3]:
    # out = [2a + b + 2a, a + 2b + 3a, 2a + 3b + 4a, 3a + 4b + 3a].
    a, b = _gauss(3, 1.0)[0], _gauss(3, 1.0)[1]
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]], dtype=torch.float64)
    out = gaussian_blur2d(x, (1, 3), (1.0, 1.0))
    expected = torch.tensor(
        [[[[4 * a + b, 4 * a + 2 * b, 6 * a + 3 * b, 6 * a + 4 * b]]]], dtype=torch.float64
    )
    assert torch.allclose(out, expected, atol=1e-12, rtol=0)


def test_blur_replicates_when_the_kernel_is_wider_than_the_image():
    # kernel sizes (5, 1) on a 2 x 3 image: half-width 2 is not < height 2, so the height is padded by
    # replication: column [p, q] -> [p, p, p, q, q, q]; out_0 = (k0 + k1 + k2) p + (k3 + k4) q,
    # out_1 = (k0 + k1) p + (k2 + k3 + k4) q. The width (3 > 0) is untouched by the 1-tap kernel.
    k = _gauss(5, 1.0)
    x = torch.tensor([[[[1.0, 5.0, 2.0], [3.0, 0.0, 7.0]]]], dtype=torch.float64)
    out = gaussian_blur2d(x, (5, 1), (1.0, 1.0))
    p, q = x[0, 0, 0], x[0, 0, 1]
    expected = torch.stack(
        [(k[0] + k[1] + k[2]) * p + (k[3] + k[4]) * q, (k[0] + k[1]) * p + (k[2] + k[3] + k[4]) * q]
    )
    assert torch.allclose(out[0, 0], expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# The resize of the degradation module: align_corners=False for bilinear/bicubic (kornia, BasicSR)
# ---------------------------------------------------------------------------------------------------------


def _seed_drawing(mode_index: int) -> int:
    """A generator seed whose first ``torch.randint(3, ...)`` draw is ``mode_index``."""
    for seed in range(100):
        if int(torch.randint(3, (1,), generator=torch.Generator().manual_seed(seed))) == mode_index:
            return seed
    raise AssertionError("no seed found")


def test_resize_uses_half_pixel_centres():
    degradation = Degradation.__new__(Degradation)
    x = torch.tensor([[[[0.0, 1.0]]]])
    # area (index 0), 1 x 2 -> 1 x 4: each output averages the one input pixel it lies in: 0, 0, 1, 1
    area = degradation._resize(x, (1, 4), torch.Generator().manual_seed(_seed_drawing(0)))
    assert torch.allclose(area, torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]]))
    # bilinear (index 1), half-pixel centres: source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped
    # to [0, 1]: 0, 0.25, 0.75, 1 (align_corners=True would give 0, 1/3, 2/3, 1)
    bilinear = degradation._resize(x, (1, 4), torch.Generator().manual_seed(_seed_drawing(1)))
    assert torch.allclose(bilinear, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# DUKD's invertible augmentations: each op on a 2 x 2 image by hand
# ---------------------------------------------------------------------------------------------------------


def test_each_invertible_op_by_hand():
    x = torch.tensor([[[[0.25, 0.5], [0.75, 1.0]]]])  # [[a, b], [c, d]]
    aug = InvertibleAugment()

    def only(index: int) -> torch.Tensor:
        return torch.tensor([[i == index for i in range(4)]])

    assert torch.equal(aug.apply(x, only(0)), torch.tensor([[[[0.75, 0.5], [0.25, 0.0]]]]))  # 1 - x
    assert torch.equal(aug.apply(x, only(1)), torch.tensor([[[[0.75, 1.0], [0.25, 0.5]]]]))  # rows swapped
    assert torch.equal(aug.apply(x, only(2)), torch.tensor([[[[0.5, 0.25], [1.0, 0.75]]]]))  # columns swapped
    assert torch.equal(aug.apply(x, only(3)), torch.tensor([[[[0.25, 0.75], [0.5, 1.0]]]]))  # transposed
    # all four in order: 1 - x = [[.75, .5], [.25, 0]] -> flip H [[.25, 0], [.75, .5]] -> flip W
    # [[0, .25], [.5, .75]] -> transpose [[0, .5], [.25, .75]]
    assert torch.equal(
        aug.apply(x, torch.ones(1, 4, dtype=torch.bool)), torch.tensor([[[[0.0, 0.5], [0.25, 0.75]]]])
    )


def test_transpose_of_a_non_square_image_names_its_size():
    aug = InvertibleAugment()
    with pytest.raises(ValueError, match=r"transpose needs square images, got \(2, 3\)$"):
        aug.apply(torch.zeros(1, 1, 2, 3), torch.tensor([[False, False, False, True]]))


def test_augment_ops_come_from_the_given_generator():
    aug = InvertibleAugment(prob=0.3)
    torch.manual_seed(123)  # the global stream must not matter
    first = aug.sample(6, torch.Generator().manual_seed(5))
    torch.manual_seed(456)
    second = aug.sample(6, torch.Generator().manual_seed(5))
    draws = torch.rand((6, 4), generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and torch.equal(first, draws < 0.3)


# ---------------------------------------------------------------------------------------------------------
# The gradient diagnostics of the README (a one-weight student, by hand)
# ---------------------------------------------------------------------------------------------------------


class _Scale(nn.Module):
    """y = w * x, with a second parameter that the output does not use."""

    def __init__(self, w: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.unused = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x


def test_gradient_diagnostics_by_hand():
    # x = 0.5, y = 1, w = 1, teacher T(x) = 0.5 x = 0.25:
    #   L_rec = |0.5 - 1| = 0.5, dL_rec/dw = sign(0.5 - 1) * x = -0.5;
    #   L_kd = |0.5 - 0.25| = 0.25, dL_kd/dw = +0.5, so the cosine with L_rec's gradient is -1.
    # The unused parameter has no gradient (zero in both vectors).
    distiller = Distiller(_Scale(1.0), _Scale(0.5), None, "logits", DCKDConfig(), ema_decay=0.9)
    result = gradient_diagnostics(distiller, torch.tensor([[[[0.5]]]]), torch.tensor([[[[1.0]]]]))
    assert set(result) == {"rec", "kd"}
    assert result["rec"] == pytest.approx({"value": 0.5, "grad_norm": 0.5, "cos_with_rec": 1.0})
    assert result["kd"] == pytest.approx({"value": 0.25, "grad_norm": 0.5, "cos_with_rec": -1.0})
    # a teacher equal to the student: L_kd = 0 with a zero gradient (sign(0) = 0), whose cosine is reported as 0
    same = Distiller(_Scale(1.0), _Scale(1.0), None, "logits", DCKDConfig(), ema_decay=0.9)
    result = gradient_diagnostics(same, torch.tensor([[[[0.5]]]]), torch.tensor([[[[1.0]]]]))
    assert result["kd"] == pytest.approx({"value": 0.0, "grad_norm": 0.0, "cos_with_rec": 0.0})


# ---------------------------------------------------------------------------------------------------------
# FAKD's spatial affinity: normalised over channels, per position
# ---------------------------------------------------------------------------------------------------------


def test_spatial_affinity_normalises_each_position_over_channels():
    # (1, C=2, 1, 2): position vectors (3, 4) and (1, 0) -> unit vectors (0.6, 0.8) and (1, 0); cosine 0.6.
    f = torch.tensor([[[[3.0, 1.0]], [[4.0, 0.0]]]])
    assert torch.allclose(spatial_affinity(f), torch.tensor([[[1.0, 0.6], [0.6, 1.0]]]), atol=1e-6)


def test_fakd_errors_name_the_counts_and_shapes():
    with pytest.raises(ValueError, match=r"^1 student vs 2 teacher feature maps$"):
        fakd_loss([torch.zeros(1, 2, 3, 3)], [torch.zeros(1, 2, 3, 3)] * 2)
    with pytest.raises(ValueError, match=r"got \(1, 2, 3, 3\) and \(1, 4, 2, 2\)$"):
        fakd_loss([torch.zeros(1, 2, 3, 3)], [torch.zeros(1, 4, 2, 2)])


# ---------------------------------------------------------------------------------------------------------
# The ratio loss's epsilon, the DMM and MCLIR terms: edge cases by hand
# ---------------------------------------------------------------------------------------------------------


def test_ratio_loss_adds_the_released_epsilon_when_the_negatives_equal_the_anchor():
    # every negative equals the anchor: the denominator is 0 + 1e-7; |a - p| = 2e-7, so L = 2e-7 / 1e-7 = 2
    a = torch.zeros(1, 1, 2, 2)
    p = torch.full((1, 1, 2, 2), 2e-7)
    loss = contrastive_ratio_loss([a], [p], [torch.zeros(3, 1, 1, 2, 2)], [1.0])
    assert loss.item() == pytest.approx(2.0, rel=1e-5)


def test_ratio_loss_rejects_negatives_of_another_shape():
    a = torch.zeros(2, 3, 4, 4)
    with pytest.raises(
        ValueError,
        match=r"negatives must be \(N, \*anchor.shape\) = \(N, \(2, 3, 4, 4\)\), got \(5, 2, 1, 4, 4\)",
    ):
        contrastive_ratio_loss([a], [a], [torch.zeros(5, 2, 1, 4, 4)], [1.0])  # right ndim, wrong channels


def test_dmm_shape_error_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"^student and teacher distances differ in shape: \(2, 4\) vs \(2, 5\)$"
    ):
        dmm_cross_entropy(torch.zeros(2, 4), torch.zeros(2, 5))


def test_feature_distance_by_hand_on_one_and_on_every_level():
    # one level: w |f - n| = 0.5 * mean(|1 - 0|, |3 - 1|) = 0.5 * 1.5 = 0.75
    f1, n1 = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])
    assert feature_distance([f1], [n1], [0.5]).item() == pytest.approx(0.75)
    # a weight for every level is allowed: + 2 * mean|4 - 6| = 4, total 4.75
    f2, n2 = torch.tensor([4.0]), torch.tensor([6.0])
    assert feature_distance([f1, f2], [n1, n2], [0.5, 2.0]).item() == pytest.approx(4.75)
    with pytest.raises(ValueError, match=r"^3 weights for 2 feature levels$"):
        feature_distance([f1, f2], [n1, n2], [1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------------------
# The degradation module and the negatives' inputs
# ---------------------------------------------------------------------------------------------------------


def _blur_only(**kwargs) -> Degradation:
    base = {"gaussian_noise_prob": 0.0, "gaussian_blur_prob": 1.0, "resize_prob": 0.0}
    return Degradation(DegradationConfig(**{**base, **kwargs}))


def test_blur_kernel_size_is_drawn_odd_from_the_range():
    # kernel sizes drawn from [3, 3] are 2 * randint(1, 2) + 1 = 3, sigma from [1, 1] is 1: an impulse at the
    # centre of a 5 x 5 image becomes the outer product of the taps (a, b, a) around it
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = _blur_only(blur_kernel_size=(3, 3), blur_sigma=(1.0, 1.0))(x, torch.Generator().manual_seed(0))
    taps = torch.tensor(_gauss(3, 1.0))
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = torch.outer(taps, taps)
    assert torch.allclose(out[0, 0], expected, atol=1e-6)


def test_degradation_draws_only_from_its_generator():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    degradation = Degradation(
        DegradationConfig(gaussian_blur_prob=1.0, resize_prob=1.0, gaussian_noise_prob=1.0)
    )
    torch.manual_seed(10)
    first = degradation(x, torch.Generator().manual_seed(3))
    torch.manual_seed(20)
    second = degradation(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


class _Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x


def _noise_config(clean_negative: bool) -> DCKDConfig:
    degradation = DegradationConfig(gaussian_noise_prob=1.0, gaussian_blur_prob=0.0, resize_prob=0.0)
    return DCKDConfig(num_negatives=3, clean_negative=clean_negative, degradation=degradation)


def test_degraded_inputs_use_the_given_or_the_distillers_generator_only():
    lq = torch.full((1, 3, 4, 4), 0.5)
    d = Distiller(_Identity(), _Identity(), None, "logits", _noise_config(True), seed=4)
    torch.manual_seed(1)
    given = d.degraded_inputs(lq, torch.Generator().manual_seed(9))
    torch.manual_seed(2)
    again = d.degraded_inputs(lq, torch.Generator().manual_seed(9))
    assert torch.equal(given, again)
    # the clean LR first, then N - 1 = 2 copies noised by the degradation module with that generator
    replay = torch.Generator().manual_seed(9)
    expected = [lq] + [d.degradation(lq, replay) for _ in range(2)]
    assert torch.equal(given, torch.stack(expected))
    # without a generator: the distiller's own (seed 4), whatever the global stream
    torch.manual_seed(3)
    own = Distiller(_Identity(), _Identity(), None, "logits", _noise_config(True), seed=4).degraded_inputs(lq)
    torch.manual_seed(5)
    own_again = Distiller(
        _Identity(), _Identity(), None, "logits", _noise_config(True), seed=4
    ).degraded_inputs(lq)
    replay = torch.Generator().manual_seed(4)
    assert torch.equal(own, own_again)
    assert torch.equal(own, torch.stack([lq] + [d.degradation(lq, replay) for _ in range(2)]))


def test_without_the_clean_negative_every_copy_is_degraded():
    lq = torch.full((1, 3, 4, 4), 0.5)
    d = Distiller(_Identity(), _Identity(), None, "logits", _noise_config(False), seed=0)
    copies = d.degraded_inputs(lq, torch.Generator().manual_seed(0))
    assert copies.shape[0] == 3 and not any(torch.equal(c, lq) for c in copies)


def test_frozen_networks_move_to_the_device():
    d = Distiller(_Identity(), _Identity(), None, "logits", DCKDConfig())
    d.frozen_to("meta")
    assert d.teacher.w.device.type == "meta"


def test_step_at_error_names_the_iteration():
    with pytest.raises(ValueError, match=r"^iterations count from 1, got 0$"):
        HistorySchedule([1], 1).step_at(0)


def _replay_degradation(x: torch.Tensor, cfg: DegradationConfig, seed: int) -> torch.Tensor:
    """The released order of DCKDModel.optimize_parameters' degradations, replayed draw by draw: blur (odd
    kernel sizes uniform in the range, one per axis, sigmas uniform), resize by a factor from the up or down
    range (area / bilinear / bicubic), noise, resize back."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return float(torch.rand((), generator=g, dtype=torch.float64) * (high - low) + low)

    def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        mode = ("area", "bilinear", "bicubic")[int(torch.randint(3, (1,), generator=g))]
        return F.interpolate(t, size=size, mode=mode, align_corners=None if mode == "area" else False)

    h, w = x.shape[-2:]
    out = x
    if float(torch.rand(1, generator=g)) < cfg.gaussian_blur_prob:
        low, high = cfg.blur_kernel_size
        sizes = [2 * int(torch.randint(low // 2, high // 2 + 1, (1,), generator=g)) + 1 for _ in range(2)]
        sigmas = [uniform(*cfg.blur_sigma) for _ in range(2)]
        out = gaussian_blur2d(out, (sizes[0], sizes[1]), (sigmas[0], sigmas[1]))
    resized = False
    if float(torch.rand(1, generator=g)) < cfg.resize_prob:
        up = float(torch.rand(1, generator=g)) < cfg.resize_up_prob
        factor = uniform(*(cfg.resize_up_range if up else cfg.resize_down_range))
        size = (max(1, int(h * factor)), max(1, int(w * factor)))
        if size != (h, w):
            out, resized = resize(out, size), True
    if float(torch.rand(1, generator=g)) < cfg.gaussian_noise_prob:
        out = add_gaussian_noise(out, g, cfg.noise_sigma, cfg.gray_noise_prob)
    if resized:
        out = resize(out, (h, w))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_degradation_follows_the_released_order_draw_by_draw(seed):
    cfg = DegradationConfig(
        gaussian_blur_prob=0.7,
        blur_kernel_size=[3, 9],
        blur_sigma=[0.5, 2.0],
        resize_prob=0.8,
        resize_up_prob=0.4,
        resize_up_range=[1.2, 1.5],
        resize_down_range=[0.5, 0.8],
        gaussian_noise_prob=0.6,
    )
    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(100 + seed))
    out = Degradation(cfg)(x, torch.Generator().manual_seed(seed))
    assert torch.equal(out, _replay_degradation(x, cfg, seed))


def _blur_extents(cfg, seeds):
    """(height, width) of the blurred support of a centred impulse, one per seed: a drawn kernel of size k
    spreads the impulse k // 2 pixels each way, so the extent is the kernel size."""
    extents = set()
    for seed in seeds:
        x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
        x[0, 0, 10, 10] = 1.0
        out = Degradation(cfg)(x, torch.Generator().manual_seed(seed))[0, 0]
        rows, cols = (out.abs() > 0).nonzero(as_tuple=True)
        extents.add((int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1))
    return extents


def test_drawn_blur_kernels_are_the_odd_sizes_of_the_range():
    # kernel range [3, 9]: sizes 2 * randint(1, 5) + 1 in {3, 5, 7, 9}, each axis on its own; recovered here
    # from where an impulse's blur ends (a kernel of size k spreads it k // 2 pixels each way)
    cfg = DegradationConfig(
        gaussian_blur_prob=1.0, blur_kernel_size=[3, 9], blur_sigma=[5.0, 5.0], gaussian_noise_prob=0.0
    )
    seen = _blur_extents(cfg, seeds=range(60))
    assert {h for h, _ in seen} == {3, 5, 7, 9} and {w for _, w in seen} == {3, 5, 7, 9}
    assert len(seen) > 4  # the two axes are drawn independently


def test_augment_ops_drawn_on_the_cpu_apply_to_an_image_on_another_device():
    # the ops come from the CPU generator; the image may live elsewhere (the meta device stands in for a GPU)
    aug = InvertibleAugment()
    ops = aug.sample(2, torch.Generator().manual_seed(0))
    out = aug.invert(aug.apply(torch.zeros(2, 3, 4, 4, device="meta"), ops), ops)
    assert out.device.type == "meta" and out.shape == (2, 3, 4, 4)


def test_uniform_draws_are_float64_from_the_generator():
    from paperzoo_dckd.modeling_dckd import _uniform

    drawn = _uniform(torch.Generator().manual_seed(0), 2.0, 5.0, (3,))
    raw = torch.rand(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert drawn.dtype == torch.float64 and torch.equal(drawn, raw * 3.0 + 2.0)


def test_gaussian_noise_draw_by_draw():
    # per sample: sigma ~ U(1, 30) / 255, grey with probability 0.5 (one noise map for all channels), else
    # colour noise; x + noise clipped to [0, 1]
    x = torch.full((6, 3, 4, 4), 0.5)
    out = add_gaussian_noise(x, torch.Generator().manual_seed(0), [1.0, 30.0], 0.5)
    g = torch.Generator().manual_seed(0)
    sigma = (torch.rand(6, generator=g, dtype=torch.float64) * 29.0 + 1.0).float().view(6, 1, 1, 1) / 255.0
    gray = (torch.rand(6, generator=g) < 0.5).view(6, 1, 1, 1)
    colour = torch.randn((6, 3, 4, 4), generator=g)
    grey = torch.randn((6, 1, 4, 4), generator=g).expand(6, 3, 4, 4)
    expected = (x + torch.where(gray, grey, colour) * sigma).clamp(0, 1)
    assert 0 < int(gray.sum()) < 6  # both kinds occur in this draw
    assert torch.allclose(out, expected, atol=1e-7, rtol=0)


def test_noise_is_made_on_the_cpu_and_added_on_the_images_device():
    out = add_gaussian_noise(
        torch.zeros(2, 3, 4, 4, device="meta"), torch.Generator().manual_seed(0), [1, 30], 0.5
    )
    assert out.device.type == "meta"


def test_degradation_clamps_only_when_asked():
    off = Degradation(DegradationConfig(gaussian_noise_prob=0.0))
    on = Degradation(DegradationConfig(gaussian_noise_prob=0.0, clamp=True))
    x = torch.tensor([[[[1.5, 0.5]]]])
    assert torch.equal(off(x, torch.Generator().manual_seed(0)), x)
    assert torch.equal(on(x, torch.Generator().manual_seed(0)), torch.tensor([[[[1.0, 0.5]]]]))


def test_resize_to_a_single_pixel_and_back():
    # factor 0.5 on a 2 x 2 image: int(2 * 0.5) = 1 -> a 1 x 1 image, and back: every pixel is the mean, 1.5,
    # whichever of area / bilinear / bicubic is drawn
    cfg = DegradationConfig(
        gaussian_noise_prob=0.0, resize_prob=1.0, resize_up_prob=0.0, resize_down_range=[0.5, 0.5]
    )
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    for seed in range(4):
        assert torch.allclose(
            Degradation(cfg)(x, torch.Generator().manual_seed(seed)), torch.full((1, 1, 2, 2), 1.5)
        )


def test_resize_up_takes_the_up_range():
    # up with probability 1, factor 2: 2 x 2 -> 4 x 4 -> 2 x 2 keeps the image's contrast (the down branch,
    # factor 0.5, would average it to a constant 1.5; test_resize_to_a_single_pixel_and_back)
    cfg = DegradationConfig(
        gaussian_noise_prob=0.0,
        resize_prob=1.0,
        resize_up_prob=1.0,
        resize_up_range=[2.0, 2.0],
        resize_down_range=[0.5, 0.5],
    )
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    for seed in range(4):
        out = Degradation(cfg)(x, torch.Generator().manual_seed(seed))
        assert float(out.max() - out.min()) > 1.0


def test_blur_kernel_range_above_three():
    # range [7, 9]: 2 * randint(3, 5) + 1 in {7, 9} only (7 // 2 = 3; a lower bound of 2 would allow 5)
    cfg = DegradationConfig(
        gaussian_blur_prob=1.0, blur_kernel_size=[7, 9], blur_sigma=[5.0, 5.0], gaussian_noise_prob=0.0
    )
    sizes = {size for extent in _blur_extents(cfg, seeds=range(40)) for size in extent}
    assert sizes == {7, 9}
