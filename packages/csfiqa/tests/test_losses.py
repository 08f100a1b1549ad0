"""SCL masks, InfoNCE and NSM against hand computation (notes Sec. 5.2 items 11 and 13)."""

from __future__ import annotations

import math

import pytest
import torch
from paperzoo_csfiqa.configuration import LossConfig
from paperzoo_csfiqa.losses import (
    csfiqa_loss,
    info_nce,
    inter_scale_loss,
    intra_scale_loss,
    mos_masks,
    mos_regression_loss,
    nsm_loss,
    nsm_pairs,
)


def test_mos_masks_follow_gamma_thresholds():
    mos = torch.tensor([0.0, 0.1, 0.5, 0.9])
    pos, neg = mos_masks(mos, 0.2, 0.7)
    # |dMOS|: (0,1)=0.1 pos; (0,2)=0.5 ignored; (0,3)=0.9 neg; (1,2)=0.4 ignored; (1,3)=0.8 neg; (2,3)=0.4 ignored
    expected_pos = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    expected_neg = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(pos, expected_pos) and torch.equal(neg, expected_neg)
    # the boundaries are strict: |dMOS| == gamma is neither
    pos, neg = mos_masks(torch.tensor([0.0, 0.25, 1.0]), 0.25, 0.75)
    assert not pos[0, 1] and not neg[0, 1] and neg[0, 2]


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_info_nce_equals_hand_computation():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    candidates = torch.tensor([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.5]])
    positives = torch.tensor([[True, True, False], [True, False, False]])
    negatives = torch.tensor([[False, False, True], [False, True, True]])
    tau = 0.5
    s = [[_cos(a, c) / tau for c in candidates.tolist()] for a in anchors.tolist()]
    terms = []
    for i, row in enumerate(positives.tolist()):
        neg = [s[i][j] for j, flag in enumerate(negatives[i].tolist()) if flag]
        for p, flag in enumerate(row):
            if flag:
                terms.append(
                    -math.log(math.exp(s[i][p]) / (math.exp(s[i][p]) + sum(math.exp(n) for n in neg)))
                )
    expected = sum(terms) / len(terms)
    got = info_nce(anchors, candidates, positives, negatives, tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_temperature_and_direction():
    anchors = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[0.9, 0.1], [0.0, 1.0]])
    pos, neg = torch.tensor([[True, False]]), torch.tensor([[False, True]])
    # a positive closer than the negative: a lower temperature sharpens and lowers the loss
    assert info_nce(anchors, candidates, pos, neg, 0.05) < info_nce(anchors, candidates, pos, neg, 1.0)
    # moving the negative towards the anchor raises the loss
    closer = torch.tensor([[0.9, 0.1], [0.7, 0.3]])
    assert info_nce(anchors, closer, pos, neg, 0.1) > info_nce(anchors, candidates, pos, neg, 0.1)


def test_info_nce_without_negatives_is_zero_with_finite_gradients():
    anchors = torch.randn(3, 4, requires_grad=True)
    candidates = torch.randn(3, 4)
    pos = torch.eye(3, dtype=torch.bool)
    neg = torch.zeros(3, 3, dtype=torch.bool)
    neg[0, 1] = True  # only anchor 0 has a negative
    loss = info_nce(anchors, candidates, pos, neg, 0.1)
    loss.backward()
    assert torch.isfinite(anchors.grad).all()
    assert anchors.grad[1:].abs().sum() == 0  # anchors without negatives contribute nothing
    none = info_nce(anchors, candidates, pos, torch.zeros(3, 3, dtype=torch.bool), 0.1)
    assert none.item() == 0.0 and none.requires_grad


def test_info_nce_rejects_overlapping_masks():
    m = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="both positive and negative"):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), m, m, 0.1)


def test_intra_scale_has_no_self_pairs_and_inter_scale_uses_the_same_image():
    config = LossConfig(temperature=0.1)
    mos = torch.tensor([0.0, 1.0])  # one negative pair, no positive pair across images
    z = torch.randn(2, 8)
    # intra: the only positives would be self-pairs, which are excluded -> 0
    assert intra_scale_loss((z, z), mos, config).item() == 0.0
    # inter: image i at the other scale is a positive -> a real loss; identical views give the minimum
    aligned = inter_scale_loss((z, z), mos, config)
    opposed = inter_scale_loss((z, -z), mos, config)  # each image's other-scale view points away from it
    assert 0 < aligned.item() < opposed.item()


def test_nsm_picks_the_least_similar_regions():
    small = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    large = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]])
    # cosine: 1, -1, 0, ~0.995 -> most disagreeing first: region 1, then 2
    assert nsm_pairs(small, large, 2).tolist() == [[1, 2]]
    assert nsm_pairs(small, large, 10).shape == (1, 4)


def test_nsm_loss_uses_the_same_region_as_positive():
    config = LossConfig(nsm_k=1, temperature=0.1)
    mos = torch.tensor([0.0, 1.0])
    small = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    large_match = torch.tensor([[[1.0, 0.0], [0.1, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]])
    # image 0: region 1 disagrees most (cos < 1); anchor small[0,1] = (0,1), positive large[0,1] = (0.1,1),
    # negatives: both regions of image 1 at the large scale.
    a = torch.tensor([0.0, 1.0])
    p = torch.tensor([0.1, 1.0])
    negs = [torch.tensor([-1.0, 0.0]), torch.tensor([0.0, -1.0])]
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))  # noqa: E731
    s_p = cos(a, p) / 0.1
    term0 = -math.log(math.exp(s_p) / (math.exp(s_p) + sum(math.exp(cos(a, n) / 0.1) for n in negs)))
    # image 1: cosines of regions: (1,0)vs(-1,0) = -1, (0,1)vs(0,-1) = -1 -> tie, the first (region 0)
    a1, p1 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])
    negs1 = [torch.tensor([1.0, 0.0]), torch.tensor([0.1, 1.0])]
    s_p1 = cos(a1, p1) / 0.1
    term1 = -math.log(math.exp(s_p1) / (math.exp(s_p1) + sum(math.exp(cos(a1, n) / 0.1) for n in negs1)))
    got = nsm_loss((small, large_match), mos, config)
    assert got.item() == pytest.approx((term0 + term1) / 2, rel=1e-5)


def test_total_loss_weights_and_switches():
    class Out:
        score = torch.tensor([0.2, 0.9, 0.1])
        embeddings = (torch.randn(3, 4), torch.randn(3, 4))
        regions = (torch.randn(3, 4, 4), torch.randn(3, 4, 4))

    mos = torch.tensor([0.0, 1.0, 0.05])
    config = LossConfig(scl_weight=0.3, alpha=0.25, beta=0.75, nsm_weight=0.5)
    terms = csfiqa_loss(Out, mos, config)
    expected = terms.mos + 0.3 * (0.25 * terms.intra + 0.75 * terms.inter) + 0.5 * terms.nsm
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.mos.item() == pytest.approx((0.2 + 0.1 + 0.05) / 3, rel=1e-6)
    off = csfiqa_loss(Out, mos, LossConfig(use_scl=False, use_nsm=False))
    assert (
        off.total.item() == pytest.approx(terms.mos.item()) and off.intra.item() == 0 and off.nsm.item() == 0
    )


def test_regression_loss_rejects_broadcasting():
    with pytest.raises(ValueError, match="shape"):
        mos_regression_loss(torch.zeros(4, 1), torch.zeros(4))
    assert mos_regression_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]), "mse").item() == 5.0
    assert mos_regression_loss(
        torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]), "smooth_l1"
    ).item() == pytest.approx((0.5 * 0.25 + 2.5) / 2)


# ---------------------------------------------------------------------------------------------------------
# Tests added for `make mutate` survivors (README "Mutation testing"); goldens by hand.
# ---------------------------------------------------------------------------------------------------------


def test_negative_threshold_is_strict():
    _, neg = mos_masks(torch.tensor([0.0, 0.25, 1.0]), 0.25, 0.75)
    assert not neg[1, 2] and not neg[2, 1]  # |dMOS| == gamma2 exactly (0.75 is exact in float32)


def test_info_nce_checks_mask_shapes_against_the_features():
    anchors, candidates = torch.randn(2, 4), torch.randn(3, 4)
    wrong = torch.zeros(3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^masks must be \(2, 3\), got \(3, 3\) and \(3, 3\)$"):
        info_nce(anchors, candidates, wrong, wrong, 0.1)
    right = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^masks must be \(2, 3\), got \(2, 3\) and \(3, 3\)$"):
        info_nce(anchors, candidates, right, wrong, 0.1)
    with pytest.raises(ValueError, match="^a pair cannot be both positive and negative$"):
        info_nce(anchors, candidates, ~right, ~right, 0.1)


def test_info_nce_averages_only_over_anchors_with_negatives():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    pos = torch.tensor([[True, False, False], [False, True, False]])
    neg = torch.tensor([[False, False, True], [False, False, False]])  # anchor 1 has no negative
    # anchor 0: s_pos = 1 / 0.5 = 2, s_neg = -1 / 0.5 = -2 -> -log(e^2 / (e^2 + e^-2)) = log(1 + e^-4)
    expected = math.log(1 + math.exp(-4))
    assert info_nce(anchors, candidates, pos, neg, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_inter_scale_loss_is_the_mean_of_both_directions_by_hand():
    config = LossConfig(temperature=0.5)
    mos = torch.tensor([0.0, 1.0])  # the two images are MOS-negatives; each image's other scale a positive
    small = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    large = torch.tensor([[1.0, 1.0], [2.0, -1.0]])

    def direction(anchors, candidates):
        terms = []
        for i in range(2):
            s_pos = _cos(anchors[i], candidates[i]) / 0.5
            s_neg = _cos(anchors[i], candidates[1 - i]) / 0.5
            terms.append(-math.log(math.exp(s_pos) / (math.exp(s_pos) + math.exp(s_neg))))
        return sum(terms) / 2

    forward = direction(small.tolist(), large.tolist())
    backward = direction(large.tolist(), small.tolist())
    assert forward != pytest.approx(backward)  # the two directions differ here, so the mean is checked
    got = inter_scale_loss((small, large), mos, config)
    assert got.item() == pytest.approx((forward + backward) / 2, rel=1e-6)


def test_nsm_pairs_name_both_grids_when_they_differ():
    with pytest.raises(ValueError, match=r"^region grids differ: \(1, 4, 2\) vs \(1, 3, 2\)$"):
        nsm_pairs(torch.zeros(1, 4, 2), torch.zeros(1, 3, 2), 1)


def test_regression_loss_defaults_to_l1_and_names_an_unknown_kind():
    assert mos_regression_loss(torch.tensor([0.5, -3.0]), torch.zeros(2)).item() == 1.75
    with pytest.raises(ValueError, match="^unknown MOS loss 'huber'$"):
        mos_regression_loss(torch.zeros(2), torch.zeros(2), "huber")


def test_total_loss_uses_the_configured_mos_loss_and_names_its_terms():
    class Out:
        score = torch.tensor([0.2, 0.9, 0.1])

    mos = torch.tensor([0.0, 1.0, 0.05])
    terms = csfiqa_loss(Out, mos, LossConfig(mos_loss="mse", use_scl=False, use_nsm=False))
    assert terms.mos.item() == pytest.approx((0.04 + 0.01 + 0.0025) / 3, rel=1e-6)
    named = terms.as_dict()
    assert list(named) == ["loss", "mos", "intra", "inter", "nsm"]
    values = [terms.total, terms.mos, terms.intra, terms.inter, terms.nsm]
    assert all(named[k] is v for k, v in zip(named, values))
