"""Lightning modules: the distillation trainer (every method) and the stand-in encoder's VQ autoencoder."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from paperzoo_dckd.configuration import EncoderTrainConfig, TrainConfig
from paperzoo_dckd.data import ProgressiveBatchSampler
from paperzoo_dckd.modeling_dckd import Distiller
from paperzoo_dckd.models.vqgan import VQGANEncoder
from paperzoo_shared.lightning_resume import PostStepMixin


def cosine_lr(iteration: int, lr: float, periods: list[int], eta_mins: list[float]) -> float:
    """BasicSR's ``CosineAnnealingRestartCyclicLR`` (restart weights 1) after ``iteration`` steps: in the
    period holding ``iteration`` (a step on a boundary belongs to the earlier period), ``eta + (lr - eta) *
    (1 + cos(pi * (iteration - period start) / period length)) / 2``; past the last period, its ``eta_min``."""
    start = 0
    for period, eta in zip(periods, eta_mins):
        if iteration <= start + period:
            return eta + 0.5 * (lr - eta) * (1.0 + math.cos(math.pi * (iteration - start) / period))
        start += period
    return eta_mins[-1]


def make_optimizer(params, cfg: TrainConfig):
    """(optimizer, per-step scheduler) of ``cfg``: Adam or AdamW; MultiStepLR or cyclic cosine annealing."""
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.scheduler == "cosine":
        periods, eta_mins, lr = list(cfg.cosine_periods), list(cfg.eta_mins), cfg.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_lr(step, lr, periods, eta_mins) / lr
        )
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
    return optimizer, scheduler


class DistillationModule(PostStepMixin, L.LightningModule):
    """Trains ``distiller.student`` with the distiller's losses; keeps the EMA and history model in step.

    Exact resume (on CPU): the EMA, history-model and Fig. 8b updates run in :meth:`after_optimizer_step`,
    i.e. inside ``optimizer_step`` and so before ``ModelCheckpoint`` writes the step's ``last.ckpt``
    (Lightning calls callbacks' ``on_train_batch_end`` before the module's). The degradation generator is
    exposed through :meth:`resumable_generators`, so ``paperzoo_shared.lightning_resume.RngStateCallback``
    saves it in every checkpoint and restores it (with the global RNGs) on resume instead of re-seeding it.

    Args:
        distiller: the student, its EMA/history copies, the frozen teacher/encoder and the method.
        train: optimiser settings: Adam + MultiStepLR (released SR configs) or AdamW + cosine annealing
            (NAFNet, Restormer), see :func:`make_optimizer`.
        scale: the SR factor (crop border of the Fig. 8b PSNR).
        track_batch: a fixed ``{"lq", "gt"}`` batch on which :meth:`Distiller.history_gap` is measured
            every ``track_every`` iterations (Fig. 8b); the curve is kept in ``self.curve`` and in checkpoints.
        seed: seed of the degradation generator (combined with the rank when the fit starts; a resumed run
            restores the generator's saved state instead).
    """

    def __init__(
        self,
        distiller: Distiller,
        train: TrainConfig,
        scale: int,
        track_batch: dict[str, torch.Tensor] | None = None,
        track_every: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.distiller = distiller
        self.train_cfg = train
        self.scale = scale
        self.track_batch = track_batch
        self.track_every = track_every
        self.seed = seed
        self.curve: list[dict[str, float]] = []
        self.start_step: int | None = None

    def configure_optimizers(self):
        params = self.distiller.trainable_parameters()  # the student's, then MiPKD's mixer's
        optimizer, scheduler = make_optimizer(params, self.train_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def resumable_generators(self) -> dict[str, torch.Generator]:
        return {"degradation": self.distiller.generator}

    def on_fit_start(self) -> None:
        self.distiller.frozen_to(self.device)
        # Seeded here, before Lightning's callbacks restore a resumed run's saved state in on_train_start.
        self.distiller.generator.manual_seed(hash((self.seed, self.global_rank)) % (2**63))

    def on_train_start(self) -> None:
        # After a resume the checkpoint is loaded by now: continue the sample stream where it was.
        self.start_step = int(self.global_step)
        if self.start_step and self.global_rank != 0:
            # Only rank 0 writes checkpoints, so the restored degradation state is rank 0's: re-derive the
            # other ranks' streams (resume is bit-exact for one process; with DDP the ranks stay decorrelated).
            self.distiller.generator.manual_seed(
                hash((self.seed, self.global_rank, self.start_step)) % (2**63)
            )
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        sampler = getattr(loader, "batch_sampler", None)
        if isinstance(sampler, ProgressiveBatchSampler):
            sampler.start_step = self.start_step  # its keys are absolute: the dataset offset stays 0
        elif hasattr(dataset, "offset"):
            dataset.offset = self.start_step * self.train_cfg.batch_size * self.trainer.world_size

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.distiller.training_losses(batch["lq"], batch["gt"])
        batch_size = batch["lq"].shape[0]
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "total", batch_size=batch_size)
        return terms["total"]

    def after_optimizer_step(self, step: int) -> None:
        iteration = step  # optimizer steps done, counting this one = BasicSR's current_iter
        self.distiller.after_optimizer_step(iteration)
        if self.track_batch is not None and self.track_every and iteration % self.track_every == 0:
            lq = self.track_batch["lq"].to(self.device)
            gt = self.track_batch["gt"].to(self.device)
            self.curve.append({"iteration": iteration, **self.distiller.history_gap(lq, gt, self.scale)})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dckd_curve"] = list(self.curve)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.curve = list(checkpoint.get("dckd_curve", []))


class SmallDecoder(nn.Module):
    """Decoder of the stand-in VQ autoencoder (training only; DCKD uses the encoder alone)."""

    def __init__(self, embed_dim: int, ch: int, levels: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(embed_dim, ch * 4, 3, 1, 1), nn.SiLU()]
        width = ch * 4
        for _ in range(levels):
            out = max(ch, width // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, out, 3, 1, 1), nn.SiLU()]
            width = out
        layers.append(nn.Conv2d(width, 3, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@torch.no_grad()
def restart_dead_codes(codebook: torch.Tensor, z: torch.Tensor) -> int:
    """Moves every code that no position of ``z`` (B, D, H, W) picks onto a randomly chosen embedding of
    ``z`` (torch's global generator, restored on resume); returns how many codes moved."""
    from paperzoo_dckd.geometry import unused_code_mask

    dead = unused_code_mask(z, codebook).nonzero().flatten()
    if dead.numel():
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        picks = torch.randint(flat.shape[0], (dead.numel(),))
        codebook[dead] = flat[picks].to(codebook)
    return int(dead.numel())


class VQAutoencoderModule(PostStepMixin, L.LightningModule):
    """Trains a :class:`VQGANEncoder` as a VQ-VAE (van den Oord et al.): L1 reconstruction through the
    straight-through quantiser + codebook loss + ``commitment`` x commitment loss. Stand-in for the
    pretrained taming VQGAN, which cannot be downloaded here."""

    def __init__(self, encoder: VQGANEncoder, config: EncoderTrainConfig, ch: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = SmallDecoder(encoder.quant_conv.out_channels, ch)
        self.config = config
        self._last_z: torch.Tensor | None = None

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.config.lr, betas=(0.5, 0.9))

    def after_optimizer_step(self, step: int) -> None:
        every = self.config.restart_every
        if every and step % every == 0 and self._last_z is not None:
            restart_dead_codes(self.encoder.quantize.embedding.weight, self._last_z)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["gt"]
        z = self.encoder.embed(x)
        self._last_z = z.detach()
        distances = self.encoder.quantize.squared_distances(z)
        codes = self.encoder.quantize.embedding(distances.argmin(1))
        codes = codes.view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        quantised = z + (codes - z).detach()  # straight-through estimator
        recon = self.decoder(quantised)
        rec = F.l1_loss(recon, x)
        codebook = F.mse_loss(codes, z.detach())
        commit = F.mse_loss(z, codes.detach())
        loss = rec + codebook + self.config.commitment * commit
        self.log_dict(
            {"vq/rec": rec.detach(), "vq/codebook": codebook.detach()}, prog_bar=True, batch_size=x.shape[0]
        )
        return loss
