"""Contrastive ratio loss (notes 5.2 item 6), DMM (item 7) and FAKD, against hand computations."""

from __future__ import annotations

import pytest
import torch
from paperzoo_dckd.losses import (
    codebook_distribution,
    contrastive_ratio_loss,
    dmm_cross_entropy,
    fakd_loss,
    spatial_affinity,
)
from paperzoo_dckd.models.vqgan import VQGANEncoder

WEIGHTS = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]


def test_ratio_loss_equals_hand_computation():
    a = torch.tensor([[[[1.0, 2.0]]]])  # (1, 1, 1, 2)
    p = torch.tensor([[[[1.5, 2.0]]]])
    n = torch.tensor([[[[[0.0, 2.0]]]], [[[[1.0, 4.0]]]]])  # (2, 1, 1, 1, 2)
    # |a - p| = [0.5, 0] -> mean 0.25; sum over negatives of |a - n| = [1 + 0, 0 + 2] -> mean 1.5
    loss = contrastive_ratio_loss([a], [p], [n], [2.0])
    assert loss.item() == pytest.approx(2.0 * 0.25 / (1.5 + 1e-7))


def _levels(seed: int, n_neg: int = 3):
    g = torch.Generator().manual_seed(seed)
    shapes = [(2, 4, 8, 8), (2, 4, 4, 4), (2, 8, 2, 2), (2, 8, 2, 2), (2, 16, 1, 1)]
    anchor = [torch.randn(s, generator=g) for s in shapes]
    positive = [torch.randn(s, generator=g) for s in shapes]
    negatives = [torch.randn((n_neg, *s), generator=g) for s in shapes]
    return anchor, positive, negatives


def test_ratio_loss_weights_apply_per_level():
    anchor, positive, negatives = _levels(0)
    per_level = [contrastive_ratio_loss([a], [p], [n], [1.0]) for a, p, n in zip(anchor, positive, negatives)]
    total = contrastive_ratio_loss(anchor, positive, negatives, WEIGHTS)
    assert total.item() == pytest.approx(sum(w * l.item() for w, l in zip(WEIGHTS, per_level)), rel=1e-6)


def test_ratio_loss_moves_the_right_way():
    anchor, positive, negatives = _levels(1)
    base = contrastive_ratio_loss(anchor, positive, negatives, WEIGHTS)
    closer_to_positive = [a + 0.5 * (p - a) for a, p in zip(anchor, positive)]
    assert contrastive_ratio_loss(closer_to_positive, positive, negatives, WEIGHTS) < base
    negative_closer = [n.clone() for n in negatives]
    for level, a in enumerate(anchor):
        negative_closer[level][0] = a + 0.1 * (negatives[level][0] - a)
    assert contrastive_ratio_loss(anchor, positive, negative_closer, WEIGHTS) > base
    permuted = [n[torch.tensor([2, 0, 1])] for n in negatives]
    assert contrastive_ratio_loss(anchor, positive, permuted, WEIGHTS).item() == pytest.approx(
        base.item(), rel=1e-6
    )


def test_ratio_loss_rejects_bad_shapes():
    anchor, positive, negatives = _levels(2)
    with pytest.raises(ValueError, match="levels disagree"):
        contrastive_ratio_loss(anchor[:4], positive, negatives, WEIGHTS)
    with pytest.raises(ValueError, match="negatives must be"):
        contrastive_ratio_loss(anchor, positive, [n[0] for n in negatives], WEIGHTS)


def test_codebook_distribution_sums_to_one_and_prefers_the_nearest_code():
    d = torch.tensor([[0.0, 1.0, 4.0], [9.0, 0.5, 2.0]])
    c = codebook_distribution(d)
    assert torch.allclose(c.sum(-1), torch.ones(2))
    assert c.argmax(-1).tolist() == [0, 1]
    hand = torch.exp(-d) / torch.exp(-d).sum(-1, keepdim=True)
    assert torch.allclose(c, hand)


def test_paper_form_is_minimised_at_equal_distributions_and_code_form_is_not():
    teacher = torch.tensor([[0.3, 1.2, 2.0, 0.1], [1.0, 0.2, 0.4, 3.0]])
    for mode, minimised in (("paper", True), ("code", False)):
        student = teacher.clone().requires_grad_(True)
        loss = dmm_cross_entropy(student, teacher, mode)
        (grad,) = torch.autograd.grad(loss, student)
        assert (grad.abs().max().item() < 1e-6) is minimised, mode
    # hand values: paper = entropy of C_T; code = -sum C_T log softmax(C_S)
    ct = torch.softmax(-teacher, -1)
    entropy = -(ct * ct.log()).sum(-1).mean()
    assert dmm_cross_entropy(teacher, teacher, "paper").item() == pytest.approx(entropy.item(), rel=1e-6)
    code = -(ct * torch.log_softmax(ct, -1)).sum(-1).mean()
    assert dmm_cross_entropy(teacher, teacher, "code").item() == pytest.approx(code.item(), rel=1e-6)
    with pytest.raises(ValueError, match="dmm_ce_mode"):
        dmm_cross_entropy(teacher, teacher, "other")


def test_dmm_gradient_reaches_the_student_output_but_not_the_encoder():
    encoder = VQGANEncoder(
        ch=8, num_res_blocks=1, attn_resolutions=(), z_channels=8, embed_dim=8, n_embed=16, norm_groups=4
    )
    for param in encoder.parameters():
        param.requires_grad_(False)
    student_out = torch.rand(1, 3, 32, 32, requires_grad=True)
    teacher_out = torch.rand(1, 3, 32, 32)
    loss = dmm_cross_entropy(encoder.squared_distances(student_out), encoder.squared_distances(teacher_out))
    loss.backward()
    assert student_out.grad is not None and student_out.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_spatial_affinity_hand_values():
    f = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, C=2, 1, 2): position vectors (1, 0) and (0, 2)
    sa = spatial_affinity(f)
    assert torch.allclose(sa, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), atol=1e-6)


def test_fakd_loss_has_a_gradient():
    # The DUKD-repo FAKD wraps the per-position losses in torch.tensor([...]) and so detaches them.
    s = torch.randn(2, 4, 3, 3, requires_grad=True)
    t = torch.randn(2, 8, 3, 3)
    loss = fakd_loss([s], [t])
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    expected = (spatial_affinity(s.detach()) - spatial_affinity(t)).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
