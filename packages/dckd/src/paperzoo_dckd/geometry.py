"""Is the miniature's geometry one in which DCKD can act as in the paper? Two measurements (issue 13).

* :func:`gradient_ratio` - at initialisation (random weights at the configuration's real sizes, one batch
  of training patches), the norm of the gradient that each weighted loss term sends into the student,
  relative to the reconstruction term's, and each encoder level's share of the contrastive gradient. The
  ratio loss of Eq. 5 is invariant to the scale of the features, so what sets the contrastive gradient is
  the encoder's layout (width, number of levels against the patch size), not its feature scale.
* :func:`codebook_usage` - how many of the encoder's codes the (stand-in) encoder's embeddings actually pick
  on a set of patches, and the entropy of the per-position distributions of the distribution mapping module
  (Eq. 8): near-uniform distributions (entropy near log M) make the DMM term weak.

``paperzoo-dckd geometry --config configs/mini.yaml`` (and ``--config configs/full/swinir_x2.yaml``) prints
both as JSON; the mini's encoder width was chosen from these numbers (README, "Mini preset").
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from paperzoo_dckd.configuration import ExperimentConfig
from paperzoo_dckd.data import PatchDataset, skimage_sr_split
from paperzoo_dckd.losses import codebook_distribution, contrastive_ratio_loss
from paperzoo_dckd.modeling_dckd import Distiller
from paperzoo_dckd.models import build_model


def _grad_norm(value: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def training_batch(config: ExperimentConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``batch_size`` training patches (LR ``train.lr_patch``) cut from the skim-SR training images: the same
    images for every configuration, so the full and the mini layouts are measured on the same content."""
    pairs = skimage_sr_split(config.data.scale, None)[0]
    dataset = PatchDataset(pairs, config.data.scale, config.train.lr_patch, batch_size, seed=seed)
    items = [dataset[i] for i in range(batch_size)]
    return {key: torch.stack([item[key] for item in items]) for key in ("lq", "gt")}


def level_gradient_shares(distiller: Distiller, lq: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """Each encoder level's share of the contrastive gradient norm (levels' weighted terms measured alone)."""
    cfg = distiller.config
    params = [p for p in distiller.student.parameters() if p.requires_grad]
    s_out = distiller.student(lq)
    with torch.no_grad():
        t_out = distiller.teacher(lq)
        negatives = distiller.negatives(lq)
        n, b = negatives.shape[:2]
        positive = distiller.encoder.level_features(t_out)
        neg = [f.view(n, b, *f.shape[1:]) for f in distiller.encoder.level_features(negatives.flatten(0, 1))]
    anchor = distiller.encoder.level_features(s_out)
    norms = []
    for level in range(len(anchor)):
        weights = [w if i == level else 0.0 for i, w in enumerate(cfg.layer_weights)]
        term = cfg.lambda_dcl * contrastive_ratio_loss(anchor, positive, neg, weights)
        norms.append(_grad_norm(term, params))
    total = sum(norms) or 1.0
    return [x / total for x in norms]


def gradient_ratio(config: ExperimentConfig, batch_size: int = 4, seed: int = 0) -> dict[str, Any]:
    """Gradient norms of DCKD's weighted terms relative to L_rec's, at initialisation.

    Teacher, student and encoder are built at the configuration's sizes with seeded random weights (no
    checkpoint is read); the history model is the student's copy, as at step 0. Returns the ratios, the
    per-level shares of the contrastive gradient and the feature map sizes of the levels.
    """
    torch.manual_seed(seed)
    scale = config.data.scale
    from paperzoo_dckd.train import model_options

    student = build_model(config.student.arch, model_options(config.student, scale), where="student")
    teacher = build_model(config.teacher.arch, model_options(config.teacher, scale), where="teacher")
    encoder = build_model(config.encoder.arch, dict(config.encoder.options), where="encoder")
    distiller = Distiller(student, teacher, encoder, "dckd", config.dckd, seed=seed)
    batch = training_batch(config, batch_size, seed)
    lq, gt = batch["lq"], batch["gt"]
    params = [p for p in student.parameters() if p.requires_grad]
    terms = distiller.training_losses(lq, gt)
    rec = _grad_norm(terms["rec"], params)
    ratios = {name: _grad_norm(v, params) / rec for name, v in terms.items() if name not in ("rec", "total")}
    with torch.no_grad():
        sizes = [list(f.shape[1:]) for f in encoder.level_features(gt[:1])]
    return {
        "hr_patch": int(gt.shape[-1]),
        "batch_size": batch_size,
        "encoder_levels": sizes,
        "ratio_to_rec": ratios,
        "dcl_level_shares": level_gradient_shares(distiller, lq, gt),
    }


@torch.no_grad()
def codebook_usage(encoder: torch.nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Codes used by the nearest-code assignment of ``images``' embeddings, and the DMM distributions' mean
    entropy (nats) against its maximum log M."""
    distances = encoder.squared_distances(images)
    n_codes = distances.shape[1]
    used = torch.unique(distances.argmin(1)).numel()
    probs = codebook_distribution(distances)
    entropy = float(-(probs * probs.clamp_min(1e-30).log()).sum(1).mean())
    return {"codes": n_codes, "codes_used": int(used), "entropy": entropy, "max_entropy": math.log(n_codes)}


def encoder_patches(config: ExperimentConfig, count: int = 32, seed: int = 1) -> torch.Tensor:
    """``count`` HR patches of the encoder's training size from the skim-SR *test* images (held out)."""
    pairs = skimage_sr_split(config.data.scale, None)[1]
    hr = config.encoder_train.hr_patch if config.encoder_train is not None else 64
    dataset = PatchDataset(pairs, config.data.scale, max(1, hr // config.data.scale), count, seed=seed)
    return torch.stack([dataset[i]["gt"] for i in range(count)])


def unused_code_mask(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Boolean (M,) mask of the codes that no position of ``z`` (B, D, H, W) picks as its nearest code."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    nearest = torch.cdist(flat, codebook).argmin(1)
    used = F.one_hot(nearest, codebook.shape[0]).sum(0) > 0
    return ~used
