"""CSFIQA's losses: MOS regression, scale contrastive learning (SCL) and noise sample matching (NSM).

    L = L_mos + lambda * (alpha * L_intra + beta * L_inter) + w_nsm * L_nsm

What is known (notes Sec. 2.3): positives and negatives are chosen by MOS similarity ("MOS-guided"), with
thresholds gamma1 = 0.2 and gamma2 = 0.7 quoted by a reviewer; the objective is InfoNCE with a temperature;
there is an intra-scale term (same branch, across images) and an inter-scale term (across branches); NSM
emphasises the regions whose features disagree most between the scales. Reconstructed (marked below): the
reading of the gammas as thresholds on |dMOS| of MOS normalised to [0, 1], the multi-positive InfoNCE form,
the symmetric inter-scale term, and NSM's pairing (same region at the other scale as the positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paperzoo_csfiqa.configuration import LossConfig


def mos_masks(mos: torch.Tensor, gamma1: float, gamma2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative pair masks (B, B) from normalised MOS (B,).

    Reconstructed reading of gamma1/gamma2: ``|mos_i - mos_j| < gamma1`` is a positive pair, ``> gamma2`` a
    negative pair, anything in between is ignored. The diagonal is positive (same image); callers that compare
    an image with itself at the same scale remove it.
    """
    difference = (mos[:, None] - mos[None, :]).abs()
    return difference < gamma1, difference > gamma2


def info_nce(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Multi-positive InfoNCE over cosine similarities.

    anchors (A, E), candidates (C, E), masks (A, C). For every positive pair (i, p) whose anchor has at least
    one negative::

        l_ip = -log( exp(s_ip / t) / (exp(s_ip / t) + sum_{n in N(i)} exp(s_in / t)) ),  s = cos(a_i, c_j)

    and the loss is the mean of l_ip over those pairs (0, still attached to the graph, when there is none).
    Reconstructed: the paper's Eq. 3 is "identical to InfoNCE" (reviewer 4) with F+ / F- sets; this is the
    form that uses each positive against the anchor's negatives only (pairs between the gammas never appear).
    """
    if positives.shape != negatives.shape or positives.shape != (anchors.shape[0], candidates.shape[0]):
        raise ValueError(
            f"masks must be ({anchors.shape[0]}, {candidates.shape[0]}), got {tuple(positives.shape)} and "
            f"{tuple(negatives.shape)}"
        )
    if bool((positives & negatives).any()):
        raise ValueError("a pair cannot be both positive and negative")
    logits = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature
    has_negative = negatives.any(dim=1, keepdim=True)
    # rows without a negative get finite dummies (an all -inf logsumexp has a NaN gradient); they are unused
    negative_logits = logits.masked_fill(~negatives & has_negative, float("-inf"))
    negative_lse = torch.logsumexp(negative_logits, dim=1, keepdim=True)
    valid = positives & has_negative
    if not bool(valid.any()):
        return logits.sum() * 0.0
    # -log(e^s / (e^s + e^lse)) = log(1 + e^(lse - s)) = softplus(lse - s)
    per_pair = F.softplus(negative_lse - logits)
    return per_pair[valid].mean()


def intra_scale_loss(
    embeddings: tuple[torch.Tensor, ...], mos: torch.Tensor, config: LossConfig
) -> torch.Tensor:
    """Intra-scale SCL: within each branch, images of similar MOS attract, of distant MOS repel; the mean
    over branches. An image is not its own positive at the same scale."""
    positives, negatives = mos_masks(mos, config.gamma1, config.gamma2)
    eye = torch.eye(mos.shape[0], dtype=torch.bool, device=mos.device)
    positives = positives & ~eye
    terms = [info_nce(z, z, positives, negatives, config.temperature) for z in embeddings]
    return torch.stack(terms).mean()


def inter_scale_loss(
    embeddings: tuple[torch.Tensor, torch.Tensor], mos: torch.Tensor, config: LossConfig
) -> torch.Tensor:
    """Inter-scale SCL: anchors of one branch against candidates of the other. The same image at the other
    scale is a positive (same content, same quality); MOS-guided pairs as in the intra-scale term.
    Reconstructed: symmetric (small -> large and large -> small, averaged)."""
    positives, negatives = mos_masks(mos, config.gamma1, config.gamma2)
    small, large = embeddings
    forward = info_nce(small, large, positives, negatives, config.temperature)
    backward = info_nce(large, small, positives.T, negatives.T, config.temperature)
    return 0.5 * (forward + backward)


def nsm_pairs(regions_small: torch.Tensor, regions_large: torch.Tensor, k: int) -> torch.Tensor:
    """Noise sample matching's choice: per image, the ``k`` regions whose features at the two scales are
    least similar (cosine), i.e. where the scales disagree most. (B, R, E) x 2 -> (B, k) region indices,
    the most-disagreeing first."""
    if regions_small.shape != regions_large.shape:
        raise ValueError(f"region grids differ: {tuple(regions_small.shape)} vs {tuple(regions_large.shape)}")
    k = min(k, regions_small.shape[1])
    similarity = F.cosine_similarity(regions_small, regions_large, dim=-1)  # (B, R)
    return torch.topk(-similarity, k, dim=1).indices


def nsm_loss(
    regions: tuple[torch.Tensor, torch.Tensor], mos: torch.Tensor, config: LossConfig
) -> torch.Tensor:
    """NSM: the most-disagreeing regions are hard samples of an InfoNCE term.

    Reconstructed: for a selected region j of image i, the anchor is its small-scale feature, the positive the
    same region at the large scale (same content, so it should carry the same quality), and the negatives are
    every large-scale region of the images that are MOS-negatives of i (|dMOS| > gamma2).
    """
    small, large = regions
    batch, num_regions, width = small.shape
    chosen = nsm_pairs(
        small.detach(), large.detach(), config.nsm_k
    )  # (B, k); the choice is not differentiated
    k = chosen.shape[1]
    anchors = torch.gather(small, 1, chosen.unsqueeze(-1).expand(-1, -1, width)).reshape(batch * k, width)
    candidates = large.reshape(batch * num_regions, width)
    _, image_negatives = mos_masks(mos, config.gamma1, config.gamma2)
    anchor_image = torch.arange(batch, device=mos.device).repeat_interleave(k)
    candidate_image = torch.arange(batch, device=mos.device).repeat_interleave(num_regions)
    own_region = (
        chosen.reshape(-1)[:, None] == torch.arange(num_regions, device=mos.device).repeat(batch)[None, :]
    )
    positives = (anchor_image[:, None] == candidate_image[None, :]) & own_region
    negatives = image_negatives[anchor_image][:, candidate_image]
    return info_nce(anchors, candidates, positives, negatives, config.temperature)


def mos_regression_loss(pred: torch.Tensor, mos: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    if pred.shape != mos.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from the MOS shape {tuple(mos.shape)}"
        )
    if kind == "l1":
        return F.l1_loss(pred, mos)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, mos)
    if kind == "mse":
        return F.mse_loss(pred, mos)
    raise ValueError(f"unknown MOS loss {kind!r}")


@dataclass
class LossTerms:
    total: torch.Tensor
    mos: torch.Tensor
    intra: torch.Tensor
    inter: torch.Tensor
    nsm: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {
            "loss": self.total,
            "mos": self.mos,
            "intra": self.intra,
            "inter": self.inter,
            "nsm": self.nsm,
        }


def csfiqa_loss(output, mos: torch.Tensor, config: LossConfig) -> LossTerms:
    """The total loss of a :class:`~paperzoo_csfiqa.modeling_csfiqa.CSFIQAOutput` against normalised MOS."""
    regression = mos_regression_loss(output.score, mos, config.mos_loss)
    zero = regression * 0.0
    intra = inter = nsm = zero
    if config.use_scl:
        intra = intra_scale_loss(output.embeddings, mos, config)
        inter = inter_scale_loss(output.embeddings, mos, config)
    if config.use_nsm:
        nsm = nsm_loss(output.regions, mos, config)
    total = (
        regression
        + config.scl_weight * (config.alpha * intra + config.beta * inter)
        + config.nsm_weight * nsm
    )
    return LossTerms(total, regression, intra, inter, nsm)
