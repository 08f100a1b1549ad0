"""Loss terms of DCKD and of the baselines that share its trainer.

* :func:`contrastive_ratio_loss` - the dynamic contrastive loss (paper Eq. 5, released ``ContrasLoss``).
* :func:`codebook_distribution` and :func:`dmm_cross_entropy` - the distribution mapping module's
  category distributions and cross-entropy (Eqs. 8-9; ``paper`` and released ``code`` forms).
* :func:`spatial_affinity` and :func:`fakd_loss` - FAKD (He et al., ICIP 2020), *with* its gradient.
* :func:`feature_distance` - MCLIR's negative term (Wu et al., AAAI 2024): the weighted per-level L1
  distance between the model's features and its lagged copy's, which the loss *subtracts*.
* :func:`prior_mix` and :func:`stage_l1` - MiPKD's feature prior mixer (Li et al., arXiv 2404.02573; a
  reconstruction, see :class:`paperzoo_dckd.modeling_dckd.PriorMixer`): the masked mixture of two latents and
  the per-stage L1 sums of its FPM and auto-encoder terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

CONTRAST_EPS = 1e-7
"""Added to the denominator of the ratio (released code)."""


def contrastive_ratio_loss(
    anchor: Sequence[torch.Tensor],
    positive: Sequence[torch.Tensor],
    negatives: Sequence[torch.Tensor],
    weights: Sequence[float],
) -> torch.Tensor:
    """Multi-level ratio contrastive loss (Eq. 5).

    For every level i, with anchor features a (student output), positive p (teacher output) and the N
    negatives n_j (history model on the clean and degraded LR inputs)::

        L_i = mean|a - p| / (mean(sum_j |a - n_j|) + 1e-7)

    (the numerator's mean and the denominator's mean of the per-element sum over negatives are the released
    code's normalisation of Eq. 5), and the loss is ``sum_i weights[i] * L_i``.

    Args:
        anchor, positive: per level a (B, C, H, W) tensor.
        negatives: per level a (N, B, C, H, W) tensor.
        weights: one weight per level ([1/32, 1/16, 1/8, 1/4, 1] in the paper).
    """
    if not len(anchor) == len(positive) == len(negatives) == len(weights):
        raise ValueError(
            f"levels disagree: {len(anchor)} anchor, {len(positive)} positive, {len(negatives)} negative "
            f"feature lists and {len(weights)} weights"
        )
    total = anchor[0].new_zeros(())
    for a, p, n, w in zip(anchor, positive, negatives, weights):
        if n.ndim != a.ndim + 1 or n.shape[1:] != a.shape:
            raise ValueError(
                f"negatives must be (N, *anchor.shape) = (N, {tuple(a.shape)}), got {tuple(n.shape)}"
            )
        d_ap = (a - p).abs().mean()
        d_an = (a.unsqueeze(0) - n).abs().sum(0).mean()
        total = total + w * d_ap / (d_an + CONTRAST_EPS)
    return total


def codebook_distribution(squared_distances: torch.Tensor) -> torch.Tensor:
    """Per-position category distribution over the codebook: softmax of the negative squared distance (Eq. 8).

    The released code computes ``softmax(max_d - d)``, which is the same distribution.
    """
    return torch.softmax(-squared_distances, dim=-1)


def dmm_cross_entropy(
    student_distances: torch.Tensor,
    teacher_distances: torch.Tensor,
    mode: Literal["paper", "code"] = "paper",
) -> torch.Tensor:
    """Cross-entropy from the teacher's to the student's codebook distribution, averaged over positions.

    Args:
        student_distances, teacher_distances: (P, M) squared distances of P positions to M codes.
        mode: ``"paper"`` is Eq. 9, ``-sum_m C_T[m] log C_S[m]`` (computed with log-softmax for stability,
            minimised at C_S = C_T). ``"code"`` is the released ``F.cross_entropy(C_S, C_T)``: PyTorch
            treats the student's *probabilities* C_S as logits, so the loss is ``-sum_m C_T[m] log
            softmax(C_S)[m]``, which is not minimised at C_S = C_T.
    """
    if student_distances.shape != teacher_distances.shape:
        raise ValueError(
            f"student and teacher distances differ in shape: {tuple(student_distances.shape)} vs "
            f"{tuple(teacher_distances.shape)}"
        )
    target = codebook_distribution(teacher_distances)
    if mode == "paper":
        log_student = torch.log_softmax(-student_distances, dim=-1)
    elif mode == "code":
        log_student = torch.log_softmax(codebook_distribution(student_distances), dim=-1)
    else:
        raise ValueError(f"dmm_ce_mode must be 'paper' or 'code', got {mode!r}")
    return -(target * log_student).sum(-1).mean()


def spatial_affinity(feature: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, C, H, W) -> (B, HW, HW) cosine similarities between the positions' channel vectors (FAKD's SA)."""
    flat = feature.flatten(2)
    flat = flat / (flat.pow(2).sum(1, keepdim=True).sqrt() + eps)
    return flat.transpose(1, 2) @ flat


def fakd_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over positions of the mean L1 between student and teacher spatial-affinity matrices.

    Unlike the DUKD-repo implementation (which wraps the per-position losses in ``torch.tensor([...])`` and so
    detaches them), the gradient reaches the student.
    """
    if len(student_feats) != len(teacher_feats):
        raise ValueError(f"{len(student_feats)} student vs {len(teacher_feats)} teacher feature maps")
    total = student_feats[0].new_zeros(())
    for s, t in zip(student_feats, teacher_feats):
        if s.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"FAKD needs equal spatial sizes, got {tuple(s.shape)} and {tuple(t.shape)}")
        total = total + F.l1_loss(spatial_affinity(s), spatial_affinity(t))
    return total


def feature_distance(
    output: Sequence[torch.Tensor], negative: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """``sum_l weights[l] * mean|f_l(output) - f_l(negative)|`` over the first ``len(weights)`` levels.

    MCLIR's loss is ``L_rec - lambda * feature_distance(model output, negative-model output)`` (released
    ``SRNegModel``: ``l_total -= l_percep`` with BasicSR's L1 ``PerceptualLoss``, whose per-layer term is the
    mean absolute difference times the layer weight); the negative model's features carry no gradient.
    """
    if len(weights) > min(len(output), len(negative)):
        raise ValueError(f"{len(weights)} weights for {min(len(output), len(negative))} feature levels")
    total = output[0].new_zeros(())
    for f, n, w in zip(output, negative, weights):
        total = total + w * (f - n.detach()).abs().mean()
    return total


def prior_mix(z_teacher: torch.Tensor, z_student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiPKD's feature prior mixture in the shared latent space: ``M * z_T + (1 - M) * z_S``.

    ``mask`` is the random 3D (per sample: channel x height x width) 0/1 mask; where it is 1 the teacher's
    latent is kept, elsewhere the student's. The teacher latent keeps its gradient (its encoder is trained).
    """
    if not z_teacher.shape == z_student.shape == mask.shape:
        raise ValueError(
            f"teacher latent {tuple(z_teacher.shape)}, student latent {tuple(z_student.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape"
        )
    return mask * z_teacher + (1 - mask) * z_student


def stage_l1(predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_k mean|predictions[k] - targets[k]|`` (MiPKD's FPM and auto-encoder terms over the stage ends;
    the targets, the teacher's features, carry no gradient)."""
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets (need one per stage)")
    total = predictions[0].new_zeros(())
    for prediction, target in zip(predictions, targets):
        if prediction.shape != target.shape:
            raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
        total = total + (prediction - target.detach()).abs().mean()
    return total
