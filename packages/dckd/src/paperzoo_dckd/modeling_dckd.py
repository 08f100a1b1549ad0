"""DCKD: Dynamic Contrastive Knowledge Distillation for efficient image restoration (Zhou et al., AAAI 2025).

The method is structure-agnostic: teacher and student are any modules mapping an LQ image to an HQ image.
:class:`Distiller` computes, per training batch, the terms of the total loss (Eq. 10)::

    L = L_rec + lambda_kd * L_kd + lambda_dcl * L_dcl + lambda_ce * L_ce     [+ lambda_lcr * L_lcr for DCKD*]

* ``L_rec = |S(x) - y|_1`` and ``L_kd = |S(x) - T(x)|_1`` (Eqs. 2-3);
* the Dynamic Contrastive Regularization (Sec. 3.2): negatives are the outputs of a *history model* - a
  lagged copy of the student (Eq. 6, :class:`HistorySchedule`) - on the clean LR and on degraded copies of it
  (:class:`Degradation`, Eq. 4); ``L_dcl`` is the ratio loss of :func:`paperzoo_dckd.losses.contrastive_ratio_loss`
  on the five levels of a frozen encoder, with the teacher output as positive and the student output as anchor;
* the Distribution Mapping Module (Sec. 3.3): per-position softmax over negative squared distances to the
  encoder's codebook, and a cross-entropy from the teacher's to the student's distribution (Eqs. 7-9);
* DCKD* adds DUKD's label-consistency regularization (:class:`InvertibleAugment`);
* the baselines of the same trainer: Scratch (L_rec), Logits (L_rec + L_kd), FAKD (+ spatial affinity) and
  MCLIR (Wu et al., AAAI 2024; DCKD Table 8): ``L_rec - lambda * feature_distance(S(x), N(x))`` with N a
  lagged copy of the student updated like the history model (from the raw student, as MCLIR's code) and
  the frozen encoder's first levels standing in for MCLIR's VGG16; and MiPKD (Li et al., arXiv 2404.02573;
  DCKD Table 2), **reconstructed from its paper** (no public code), in :class:`PriorMixer`::

      L = L_rec + lambda_kd * L_kd + lambda_fpm * L_fpm + lambda_bpm * L_bpm + lambda_ae * L_ae

Released-code details kept by default (see README, "Fidelity"): the history model is initialised from and
updated from the student's EMA (decay 0.999), with alpha = 0.1; the step schedule is [1000, 2000, 3000] per
100k iterations; negatives = clean LR + 4 noisy copies; degradation decisions are drawn per batch and noise
levels per sample.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo_dckd.configuration import METHODS, DCKDConfig, DegradationConfig, MiPKDConfig
from paperzoo_dckd.losses import (
    contrastive_ratio_loss,
    dmm_cross_entropy,
    fakd_loss,
    feature_distance,
    prior_mix,
    stage_l1,
)

# ---------------------------------------------------------------------------------------------------------
# Moving averages and the history schedule (Eq. 6)
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, decay: float) -> None:
    """In place, for every parameter: ``target = decay * target + (1 - decay) * source``.

    With ``decay`` = 0.999 this is the student EMA; with ``decay`` = alpha = 0.1 it is the history update of
    Eq. 6. Buffers are copied (none of the backbones has running statistics).
    """
    source_params = dict(source.named_parameters())
    for name, param in target.named_parameters():
        param.mul_(decay).add_(source_params[name].detach(), alpha=1.0 - decay)
    source_buffers = dict(source.named_buffers())
    for name, buffer in target.named_buffers():
        if name in source_buffers:
            buffer.copy_(source_buffers[name])


class HistorySchedule:
    """When the history model is updated: every ``steps[k]`` iterations during the k-th ``period``.

    Iterations count from 1 (BasicSR's ``current_iter``). The released code indexes ``steps[(it - 1) // 1e5]``
    and crashes beyond the last period; here the last step is kept (the guard).
    """

    def __init__(self, steps: Sequence[int], period: int):
        if not steps or any(int(s) < 1 for s in steps) or period < 1:
            raise ValueError(f"invalid history schedule steps={list(steps)} period={period}")
        self.steps, self.period = [int(s) for s in steps], int(period)

    def step_at(self, iteration: int) -> int:
        if iteration < 1:
            raise ValueError(f"iterations count from 1, got {iteration}")
        return self.steps[min((iteration - 1) // self.period, len(self.steps) - 1)]

    def should_update(self, iteration: int) -> bool:
        return iteration % self.step_at(iteration) == 0

    def update_iterations(self, last: int) -> list[int]:
        """Every iteration in 1..last at which the history model is updated."""
        return [it for it in range(1, last + 1) if self.should_update(it)]


# ---------------------------------------------------------------------------------------------------------
# Degradations for the negatives (Eq. 4; released DCKDModel.optimize_parameters)
# ---------------------------------------------------------------------------------------------------------


def _uniform(generator: torch.Generator, low: float, high: float, size: Sequence[int] = ()) -> torch.Tensor:
    return torch.rand(tuple(size), generator=generator, dtype=torch.float64) * (high - low) + low


def gaussian_kernel1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur2d(
    x: torch.Tensor, kernel_size: tuple[int, int], sigma: tuple[float, float]
) -> torch.Tensor:
    """Separable anisotropic Gaussian blur of an NCHW tensor with reflect borders (kornia's default).

    ``kernel_size`` and ``sigma`` are (height, width).
    """
    channels = x.shape[1]
    out = x
    for axis, (size, s) in enumerate(zip(kernel_size, sigma)):
        kernel = gaussian_kernel1d(size, s).to(x)
        shape = (1, 1, size, 1) if axis == 0 else (1, 1, 1, size)
        weight = kernel.view(shape).expand(channels, -1, -1, -1).contiguous()
        pad = (0, 0, size // 2, size // 2) if axis == 0 else (size // 2, size // 2, 0, 0)
        side = out.shape[2] if axis == 0 else out.shape[3]
        mode = "reflect" if size // 2 < side else "replicate"
        out = F.conv2d(F.pad(out, pad, mode=mode), weight, groups=channels)
    return out


def add_gaussian_noise(
    x: torch.Tensor, generator: torch.Generator, sigma_range: Sequence[float], gray_prob: float
) -> torch.Tensor:
    """Adds Gaussian noise with a per-sample std drawn from ``sigma_range`` / 255; with probability
    ``gray_prob`` per sample the same noise goes to all channels; the result is clipped to [0, 1]."""
    b, c, h, w = x.shape
    sigma = _uniform(generator, sigma_range[0], sigma_range[1], (b,)).float().view(b, 1, 1, 1) / 255.0
    gray = (torch.rand(b, generator=generator) < gray_prob).float().view(b, 1, 1, 1)
    color_noise = torch.randn((b, c, h, w), generator=generator)
    gray_noise = torch.randn((b, 1, h, w), generator=generator).expand(b, c, h, w)
    noise = (color_noise * (1 - gray) + gray_noise * gray) * sigma
    return (x + noise.to(x)).clamp(0.0, 1.0)


class Degradation:
    """Random degradation of an LR batch (shape-preserving, [0, 1] in and out).

    Order as released: blur -> resize -> noise -> resize back. Whether each happens is drawn once per call
    (for the whole batch); noise std and grey/colour are drawn per sample.
    """

    RESIZE_MODES = ("area", "bilinear", "bicubic")

    def __init__(self, config: DegradationConfig):
        self.config = config

    def _resize(self, x: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        mode = self.RESIZE_MODES[int(torch.randint(3, (1,), generator=generator))]
        return F.interpolate(x, size=size, mode=mode, align_corners=None if mode == "area" else False)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        height, width = x.shape[-2:]
        out = x
        if float(torch.rand(1, generator=generator)) < cfg.gaussian_blur_prob:
            low, high = cfg.blur_kernel_size
            sizes = [
                2 * int(torch.randint(low // 2, high // 2 + 1, (1,), generator=generator)) + 1
                for _ in range(2)
            ]
            sigmas = [float(_uniform(generator, *cfg.blur_sigma)) for _ in range(2)]
            out = gaussian_blur2d(out, (sizes[0], sizes[1]), (sigmas[0], sigmas[1]))
        resized = False
        if float(torch.rand(1, generator=generator)) < cfg.resize_prob:
            up = float(torch.rand(1, generator=generator)) < cfg.resize_up_prob
            factor = float(_uniform(generator, *(cfg.resize_up_range if up else cfg.resize_down_range)))
            size = (max(1, int(height * factor)), max(1, int(width * factor)))
            if size != (height, width):
                out, resized = self._resize(out, size, generator), True
        if float(torch.rand(1, generator=generator)) < cfg.gaussian_noise_prob:
            out = add_gaussian_noise(out, generator, cfg.noise_sigma, cfg.gray_noise_prob)
        if resized:
            out = self._resize(out, (height, width), generator)
        return out.clamp(0.0, 1.0) if cfg.clamp else out


# ---------------------------------------------------------------------------------------------------------
# DUKD's label-consistency regularization (DCKD*): invertible augmentations of the teacher input
# ---------------------------------------------------------------------------------------------------------


class InvertibleAugment:
    """Four invertible ops applied per sample: invert colours (1 - x), flip H, flip W, transpose H/W.

    :meth:`apply` runs them in that order, :meth:`invert` undoes them in the *reverse* order (transpose,
    flip W, flip H, invert), which is the exact inverse for every one of the 16 subsets. DUKD's code undoes
    them by applying the forward sequence again, which is wrong for transpose + exactly one flip.
    """

    OPS = ("invert", "flip_h", "flip_w", "transpose")

    def __init__(self, prob: float = 0.5, value_range: float = 1.0):
        self.prob, self.value_range = prob, value_range

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, 4) booleans: which ops each sample gets."""
        return torch.rand((batch, 4), generator=generator) < self.prob

    def _op(self, x: torch.Tensor, mask: torch.Tensor, op: str) -> torch.Tensor:
        m = mask.to(x.device).view(-1, *([1] * (x.ndim - 1)))
        if op == "invert":
            changed = self.value_range - x
        elif op == "flip_h":
            changed = x.flip(-2)
        elif op == "flip_w":
            changed = x.flip(-1)
        else:
            if x.shape[-1] != x.shape[-2]:
                raise ValueError(f"transpose needs square images, got {tuple(x.shape[-2:])}")
            changed = x.transpose(-2, -1)
        return torch.where(m, changed, x)

    def apply(self, x: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        for index, op in enumerate(self.OPS):
            x = self._op(x, ops[:, index], op)
        return x

    def invert(self, x: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        for index in reversed(range(len(self.OPS))):
            x = self._op(x, ops[:, index], self.OPS[index])
        return x


# ---------------------------------------------------------------------------------------------------------
# MiPKD's multi-granularity mixture of priors (a reconstruction from arXiv 2404.02573; no public code)
# ---------------------------------------------------------------------------------------------------------


class PriorMixer(nn.Module):
    """MiPKD's feature prior mixer (FPM) and block prior mixer (BPM), **reconstructed from the paper**.

    Teacher and student bodies are split into K equal stages (``forward_stages`` of the backbones). At the end
    of stage k the teacher feature F_T,k (C_T channels) and the student feature F_S,k (C_S channels) are mapped
    into one latent space by *separate* encoders E_T,k and E_S,k, mixed there with a random 3D mask M (per
    sample, channel x height x width; 1 keeps the teacher's element) and decoded by D_k into the teacher's
    feature space::

        F_mix,k = D_k(M * E_T,k(F_T,k) + (1 - M) * E_S,k(F_S,k))
        L_fpm   = sum_k |F_mix,k - F_T,k|_1            L_ae = sum_k |D_k(E_T,k(F_T,k)) - F_T,k|_1

    The block prior mixer propagates the mixed feature of a stage j drawn uniformly from 1..K at every step
    through the teacher's remaining stages and tail (frozen weights, but the gradient flows back through them
    to the mixer and the student's first j stages), and matches the result to the teacher's output::

        L_bpm = |T_{>j}(F_mix,j) - T(x)|_1

    [reconstruction] choices (the paper's description fixes the structure - separate encoders, one latent
    space, a random 3D mask, an auto-encoder auxiliary loss, the mixed feature propagated through randomly
    chosen blocks - but not these): each E and D is one 3x3 convolution; the latent has the teacher's width;
    the mask keeps the teacher with probability 0.5; the BPM path is student stages 1..j then teacher stages
    j+1..K with the teacher's head feature as the global skip; every weight is 1, with the feature terms
    measured in [0, 1]-image units (divided by the teacher's ``img_range``) (:class:`MiPKDConfig`).
    The mixer is trained with the student and used only in training.
    """

    def __init__(self, student_channels: int, teacher_channels: int, config: MiPKDConfig):
        super().__init__()
        self.config = config
        latent = config.latent_channels or teacher_channels

        def convs(c_in: int, c_out: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(c_in, c_out, 3, 1, 1) for _ in range(config.stages))

        self.encode_teacher = convs(teacher_channels, latent)
        self.encode_student = convs(student_channels, latent)
        self.decode = convs(latent, teacher_channels)
        self.latent_channels = latent

    def sample_masks(
        self, teacher_feats: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        """One 0/1 mask (B, latent, H, W) per stage, 1 with probability ``teacher_prob``; drawn on the CPU
        generator (reproducible, resumable) and moved to the features' device."""
        masks = []
        for feat in teacher_feats:
            shape = (feat.shape[0], self.latent_channels, *feat.shape[2:])
            draw = torch.rand(shape, generator=generator) < self.config.teacher_prob
            masks.append(draw.to(device=feat.device, dtype=feat.dtype))
        return masks

    def forward(
        self,
        teacher_feats: Sequence[torch.Tensor],
        student_feats: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per stage: the decoded mixture F_mix,k and the teacher's auto-encoded feature D_k(E_T,k(F_T,k))."""
        stages = self.config.stages
        if not len(teacher_feats) == len(student_feats) == len(masks) == stages:
            raise ValueError(
                f"MiPKD needs {stages} teacher features, student features and masks, got "
                f"{len(teacher_feats)}, {len(student_feats)}, {len(masks)}"
            )
        mixed, reconstructed = [], []
        for k in range(stages):
            z_teacher = self.encode_teacher[k](teacher_feats[k].detach())
            z_student = self.encode_student[k](student_feats[k])
            mixed.append(self.decode[k](prior_mix(z_teacher, z_student, masks[k])))
            reconstructed.append(self.decode[k](z_teacher))
        return mixed, reconstructed


def mipkd_terms(
    mixer: PriorMixer,
    teacher: nn.Module,
    student_feats: Sequence[torch.Tensor],
    teacher_out: torch.Tensor,
    teacher_feats: Sequence[torch.Tensor],
    teacher_state: dict,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """MiPKD's weighted ``fpm``, ``bpm`` and ``ae`` terms (see :class:`PriorMixer`). Per step the generator
    draws the K masks, then the BPM stage j."""
    cfg = mixer.config
    masks = mixer.sample_masks(teacher_feats, generator)
    mixed, reconstructed = mixer(teacher_feats, student_feats, masks)
    stage = int(torch.randint(1, cfg.stages + 1, (1,), generator=generator))
    routed = teacher.forward_from_stage(mixed[stage - 1], stage, cfg.stages, teacher_state)
    unit = 1.0 / float(getattr(teacher, "img_range", 1.0)) if cfg.image_units else 1.0
    return {
        "fpm": cfg.lambda_fpm * unit * stage_l1(mixed, teacher_feats),
        "bpm": cfg.lambda_bpm * F.l1_loss(routed, teacher_out.detach()),
        "ae": cfg.lambda_ae * unit * stage_l1(reconstructed, teacher_feats),
    }


def feature_channels(net: nn.Module, role: str) -> int:
    """Width of a backbone's body (its ``conv_first`` output): the channels of its MiPKD stage features."""
    conv = getattr(net, "conv_first", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(net, "forward_stages"):
        raise ValueError(
            f"MiPKD needs a {role} with forward_stages and conv_first (EDSR, RCAN or SwinIR), got {type(net).__name__}"
        )
    return conv.out_channels


# ---------------------------------------------------------------------------------------------------------
# The distiller: every method of the trainer (Scratch, Logits, FAKD, DCKD and its ablations, DCKD*)
# ---------------------------------------------------------------------------------------------------------


class _Frozen:
    """Holds the teacher and the encoder outside the module tree (not trained, not in checkpoints)."""

    def __init__(self, teacher: nn.Module | None, encoder: nn.Module | None):
        self.teacher, self.encoder = teacher, encoder


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


class Distiller(nn.Module):
    """Student (+ EMA, + history model) trained against a frozen teacher and a frozen feature encoder.

    Args:
        student: the network being trained (any LQ -> HQ module).
        teacher: frozen teacher (``None`` for Scratch).
        encoder: frozen feature encoder with ``level_features`` and ``squared_distances``
            (:class:`paperzoo_dckd.models.VQGANEncoder`); needed for DCR and DMM.
        method: a key of :data:`paperzoo_dckd.configuration.METHODS`.
        config: loss weights and the dynamic-contrast settings.
        ema_decay: student EMA decay (0.999).
        seed: seed of the degradation / augmentation generator.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        encoder: nn.Module | None,
        method: str,
        config: DCKDConfig,
        ema_decay: float = 0.999,
        seed: int = 0,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        self.method, self.config, self.ema_decay = method, config, ema_decay
        self.uses = METHODS[method]
        needs_teacher = any(self.uses[k] for k in ("kd", "fakd", "dcr", "dmm", "lcr", "mipkd"))
        if needs_teacher and teacher is None:
            raise ValueError(f"method {method!r} needs a teacher")
        if (self.uses["dcr"] or self.uses["dmm"] or self.uses["mclir"]) and encoder is None:
            raise ValueError(f"method {method!r} needs a feature encoder (DCR/DMM/MCLIR)")
        if self.uses["fakd"]:
            for name, net in (("student", student), ("teacher", teacher)):
                if not hasattr(net, "forward_features"):
                    raise ValueError(f"FAKD needs a {name} with forward_features (EDSR, RCAN or SwinIR)")
        # MiPKD's encoders/decoder are trained with the student (built before the EMA copy is made, which
        # draws no random numbers, so the other methods' initialisation is unchanged)
        self.mixer = (
            PriorMixer(
                feature_channels(student, "student"), feature_channels(teacher, "teacher"), config.mipkd
            )
            if self.uses["mipkd"]
            else None
        )
        self.student = student
        self.student_ema = freeze(copy.deepcopy(student))
        # The history model starts as a copy of the student EMA (released: update_model_ema(0)); MCLIR's
        # negative model is the same lagged copy.
        has_history = self.uses["dcr"] or self.uses["mclir"]
        self.history = freeze(copy.deepcopy(student)) if has_history else None
        uses_encoder = self.uses["dcr"] or self.uses["dmm"] or self.uses["mclir"]
        # a method that does not use the teacher (Scratch, MCLIR) or the encoder never runs them
        teacher = teacher if needs_teacher else None
        encoder = encoder if uses_encoder else None
        self._frozen = _Frozen(
            freeze(teacher) if teacher is not None else None, freeze(encoder) if encoder is not None else None
        )
        self.schedule = HistorySchedule(config.history_steps, config.history_period)
        self.degradation = Degradation(config.degradation)
        self.augment = InvertibleAugment(config.lcr_prob)
        self._seed = int(seed)
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """CPU generator of the degradations and LCR ops (created lazily, so the module pickles for spawn)."""
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self._seed)
        return self._generator

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = None  # torch.Generator does not survive torch.multiprocessing's spawn pickling
        return state

    @property
    def teacher(self) -> nn.Module | None:
        return self._frozen.teacher

    @property
    def encoder(self) -> nn.Module | None:
        return self._frozen.encoder

    def frozen_to(self, device: torch.device | str) -> None:
        """Moves the teacher and encoder (outside the module tree) to ``device``."""
        for net in (self._frozen.teacher, self._frozen.encoder):
            if net is not None:
                net.to(device)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.student_ema.eval()  # never in training mode (no stochastic depth in EMA/history outputs)
        if self.history is not None:
            self.history.eval()
        return self

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.student(lq)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimizer trains: the student's parameters, then MiPKD's mixer's (if any)."""
        params = [p for p in self.student.parameters() if p.requires_grad]
        if self.mixer is not None:
            params += [p for p in self.mixer.parameters() if p.requires_grad]
        return params

    # -- the negatives of the dynamic contrastive regularization --------------------------------------

    def degraded_inputs(self, lq: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, B, C, h, w): the clean LR (if ``clean_negative``) and N - 1 (else N) degraded copies."""
        generator = generator or self.generator
        cfg = self.config
        copies = [lq] if cfg.clean_negative else []
        while len(copies) < cfg.num_negatives:
            # the draws come from the CPU generator (reproducible, resumable); the image stays on its device
            # (only the noise tensor moves to it)
            copies.append(self.degradation(lq.detach(), generator))
        return torch.stack(copies)

    @torch.no_grad()
    def negatives(self, lq: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, B, C, H, W) history-model outputs on :meth:`degraded_inputs`, without gradient (Eq. 4)."""
        if self.history is None:
            raise RuntimeError(f"method {self.method!r} has no history model")
        inputs = self.degraded_inputs(lq, generator)
        n, b = inputs.shape[:2]
        out = self.history(inputs.flatten(0, 1))
        return out.view(n, b, *out.shape[1:])

    # -- the loss -------------------------------------------------------------------------------------

    def training_losses(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every active loss term (already weighted) and their sum under ``"total"``."""
        cfg, uses = self.config, self.uses
        terms: dict[str, torch.Tensor] = {}
        if uses["mipkd"]:
            s_out, s_stages, _ = self.student.forward_stages(lq, cfg.mipkd.stages)
        elif uses["fakd"]:
            s_out, s_feats = self.student.forward_features(lq, cfg.fakd_student_positions)
        else:
            s_out = self.student(lq)
        terms["rec"] = F.l1_loss(s_out, gt)
        if uses["mclir"]:
            with torch.no_grad():
                negative = self.encoder.level_features(self.history(lq))
            distance = feature_distance(self.encoder.level_features(s_out), negative, cfg.mclir_layer_weights)
            terms["neg"] = -cfg.lambda_mclir * distance
        if self.teacher is None:
            terms["total"] = sum(terms.values())
            return terms
        with torch.no_grad():
            if uses["mipkd"]:
                t_out, t_stages, t_state = self.teacher.forward_stages(lq, cfg.mipkd.stages)
            elif uses["fakd"]:
                t_out, t_feats = self.teacher.forward_features(lq, cfg.fakd_teacher_positions)
            else:
                t_out = self.teacher(lq)
            if uses["lcr"]:
                ops = self.augment.sample(lq.shape[0], self.generator)
                t_lcr = self.augment.invert(self.teacher(self.augment.apply(lq, ops)), ops)
        if uses["kd"]:
            terms["kd"] = cfg.lambda_kd * F.l1_loss(s_out, t_out)
        if uses["lcr"]:
            terms["lcr"] = cfg.lambda_lcr * F.l1_loss(s_out, t_lcr)
        if uses["fakd"]:
            terms["fakd"] = cfg.fakd_weight * fakd_loss(s_feats, t_feats)
        if uses["mipkd"]:
            terms.update(
                mipkd_terms(self.mixer, self.teacher, s_stages, t_out, t_stages, t_state, self.generator)
            )
        if uses["dcr"] or uses["dmm"]:
            # one encoder pass over the student output serves both terms
            if uses["dmm"]:
                anchor, student_d = self.encoder.levels_and_distances(s_out)
            else:
                anchor = self.encoder.level_features(s_out)
        if uses["dcr"]:
            negatives = self.negatives(lq)
            with torch.no_grad():
                positive = self.encoder.level_features(t_out)
                n, b = negatives.shape[:2]
                neg = [
                    f.view(n, b, *f.shape[1:]) for f in self.encoder.level_features(negatives.flatten(0, 1))
                ]
            terms["dcl"] = cfg.lambda_dcl * contrastive_ratio_loss(anchor, positive, neg, cfg.layer_weights)
        if uses["dmm"]:
            with torch.no_grad():
                teacher_d = self.encoder.squared_distances(t_out)
            terms["ce"] = cfg.lambda_ce * dmm_cross_entropy(student_d, teacher_d, cfg.dmm_ce_mode)
        terms["total"] = sum(terms.values())
        return terms

    @torch.no_grad()
    def after_optimizer_step(self, iteration: int) -> bool:
        """Student EMA update, then (at scheduled iterations) the history update; True if it was updated."""
        ema_update_(self.student_ema, self.student, self.ema_decay)
        if self.history is not None and self.schedule.should_update(iteration):
            # MCLIR's negative model follows the raw student (released SRNegModel.model_neg)
            from_ema = self.config.history_source == "ema" and not self.uses["mclir"]
            source = self.student_ema if from_ema else self.student
            ema_update_(self.history, source, self.config.history_decay)
            return True
        return False

    # -- the Fig. 8b mechanism check --------------------------------------------------------------------

    @torch.no_grad()
    def history_gap(
        self, lq: torch.Tensor, gt: torch.Tensor, crop_border: int, seed: int = 1234
    ) -> dict[str, float]:
        """PSNR-Y (dB, batch mean) of the student, the student EMA, and the history model on the clean and on
        the degraded inputs (a fixed degradation draw), all against the ground truth."""
        from paperzoo_shared.metrics.image import psnr_torch

        if self.history is None:
            raise RuntimeError(f"method {self.method!r} has no history model")

        def score(out: torch.Tensor) -> float:
            return float(psnr_torch(out.clamp(0, 1), gt, crop_border=crop_border, test_y_channel=True).mean())

        was_training = self.student.training
        self.student.eval()
        student = score(self.student(lq))
        self.student.train(was_training)
        negatives = self.negatives(lq, torch.Generator().manual_seed(seed))
        result = {
            "student": student,
            "ema": score(self.student_ema(lq)),
            "history_clean": score(negatives[0]) if self.config.clean_negative else math.nan,
        }
        degraded = negatives[1:] if self.config.clean_negative else negatives
        result["history_degraded"] = float(sum(score(d) for d in degraded) / max(1, len(degraded)))
        return result


def gradient_diagnostics(
    distiller: Distiller, lq: torch.Tensor, gt: torch.Tensor
) -> dict[str, dict[str, float]]:
    """Per loss term: its value, the norm of its gradient w.r.t. the student's parameters, and the cosine
    between that gradient and the gradient of L_rec (how strongly, and in which direction, each term pulls)."""
    params = [p for p in distiller.student.parameters() if p.requires_grad]
    terms = distiller.training_losses(lq, gt)
    grads = {}
    for name, value in terms.items():
        if name == "total":
            continue
        grad = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        grads[name] = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grad, params)]
        )
    rec = grads["rec"]
    return {
        name: {
            "value": float(terms[name].detach()),
            "grad_norm": float(g.norm()),
            "cos_with_rec": float(F.cosine_similarity(g, rec, dim=0)) if g.norm() > 0 else 0.0,
        }
        for name, g in grads.items()
    }
