"""Training with Lightning: the HUWSOD module (two views, burn-in, inter-branch EMA) and stage-0 pretraining.

``fit`` resumes from ``<run_dir>/checkpoints/last.ckpt`` when it exists, so a killed run continues where
its last checkpoint left it; a finished run (``<run_dir>/model.pt``) is not retrained. The resume is exact
(bit for bit on CPU, ``tests/test_train.py::test_killed_run_resumes_bit_for_bit``):

* the inter-branch EMA runs in ``optimizer_step`` (:class:`~paperzoo_shared.lightning_resume.PostStepMixin`),
  so the step-k checkpoint holds the EMA of step k (Lightning writes ``last.ckpt`` in a callback's
  ``on_train_batch_end``, before the module's own ``on_train_batch_end``);
* every random stream (Python, NumPy, torch) is saved in the checkpoint and restored, not re-seeded
  (:class:`~paperzoo_shared.lightning_resume.RngStateCallback`); the ROI-head forward counter, which picks
  the branch supervision table entry, is saved too;
* the data stream is step-indexed (:class:`~paperzoo_huwsod.data.SampleStream`,
  :class:`~paperzoo_huwsod.data.StepSampler`): the batch of step s depends on (seed, s) only.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from paperzoo_huwsod.configuration import HUWSODConfig, resolve_class_names
from paperzoo_huwsod.data import (
    Collate,
    SampleStream,
    StepSampler,
    TrainDataset,
    dataset_root,
    load_ground_truth,
    load_weak_labels,
    offline_proposals,
)
from paperzoo_huwsod.modeling_huwsod import HUWSOD, MRRPBackbone, normalize_images, trainable_groups
from paperzoo_shared.config import to_dict
from paperzoo_shared.lightning_resume import PostStepMixin, RngStateCallback

logger = logging.getLogger(__name__)

FINAL_WEIGHTS = "model.pt"


def lr_multiplier(step: int, cfg: HUWSODConfig, group: str) -> float:
    """detectron2 WarmupMultiStepLR (linear warm-up, x gamma at each step), and 0 for the RPN and ROI heads
    during the AE burn-in (the repo's trainer ``freeze``s those param groups)."""
    t = cfg.train
    if cfg.model.ae.enabled and step < cfg.model.self_training.burnin_iters and group in ("rpn", "roi"):
        return 0.0
    factor = 1.0
    if step < t.warmup_iters:
        alpha = step / t.warmup_iters
        factor = t.warmup_factor * (1 - alpha) + alpha
    return factor * t.gamma ** sum(1 for s in t.lr_steps if step >= s)


class HUWSODModule(PostStepMixin, L.LightningModule):
    """One optimizer step = the weak view (+ the strong view) of a batch; EMA between branches afterwards."""

    def __init__(self, config: HUWSODConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.model = HUWSOD(config.model, num_classes)
        self.group_names: list[str] = []

    def in_burnin(self) -> bool:
        st = self.config.model.self_training
        return self.config.model.ae.enabled and self.global_step < st.burnin_iters

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        burnin = self.in_burnin()
        losses = self.model.training_losses(
            batch["weak"],
            batch.get("strong"),
            batch["sizes"],
            batch["labels"],
            batch.get("gt"),
            burnin,
            batch.get("proposals"),
        )
        total = sum(losses.values())
        # zero-valued terms over every trainable parameter keep DDP's reducer happy when a part is idle
        # (burn-in, or a branch without positives), as the repo's meta-arch does
        total = total + sum(p.reshape(-1)[0] * 0.0 for p in self.parameters() if p.requires_grad)
        if not torch.isfinite(total):
            raise FloatingPointError(f"loss is {total.item()} at step {self.global_step}: {losses}")
        n = len(batch["labels"])
        self.log("loss", total.detach(), prog_bar=True, batch_size=n)
        for name, value in losses.items():
            self.log(name, value.detach(), batch_size=n)
        return total

    def configure_optimizers(self):
        t = self.config.train
        groups = trainable_groups(self.model)
        self.group_names = list(groups)
        optimizer = torch.optim.SGD(
            [{"params": params, "name": name} for name, params in groups.items()],
            lr=t.lr,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
        )
        lambdas = [lambda step, g=name: lr_multiplier(step, self.config, g) for name in self.group_names]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.config.model.backbone.freeze:
            # frozen BN (the repo's FrozenBatchNorm2d): Lightning sets the submodules' train mode itself and
            # bypasses HUWSOD.train, which left a frozen backbone's BN on batch statistics, updating them
            self.model.backbone.eval()
        frozen = self.in_burnin()
        for group in self.trainer.optimizers[0].param_groups:
            idle = frozen and group["name"] in ("rpn", "roi")
            group["weight_decay"] = 0.0 if idle else self.config.train.weight_decay

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip = self.config.model.ae.clip_grad_norm
        if clip > 0 and self.model.ae is not None:
            torch.nn.utils.clip_grad_norm_(self.model.ae.parameters(), clip)

    def after_optimizer_step(self, step: int) -> None:
        """Inter-branch EMA after optimizer step ``step`` (1-based), from the end of the AE burn-in on."""
        st = self.config.model.self_training
        burnin = self.config.model.ae.enabled and step < st.burnin_iters
        if st.ema and not burnin:
            self.model.ema_update()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["huwsod_forward_count"] = self.model.forward_count

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.model.forward_count = int(checkpoint.get("huwsod_forward_count", 0))


# ----------------------------------------------------------------------------------------------------
# stage 0: the backbone as a multi-label image classifier (our stand-in for ImageNet pretraining)
# ----------------------------------------------------------------------------------------------------


class Stage0Classifier(L.LightningModule):
    """Backbone + global average pooling (valid cells, mean over MRRP branches) + linear, BCE on image labels."""

    def __init__(self, config: HUWSODConfig, num_classes: int):
        super().__init__()
        b = config.model.backbone
        self.config = config
        self.backbone = MRRPBackbone(b.name, b.channels, b.branch_dilations)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)
        self.register_buffer("pixel_mean", torch.tensor(b.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(b.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
        x = normalize_images(
            images, self.pixel_mean, self.pixel_std, self.config.model.backbone.input_format, sizes
        )
        feats = self.backbone(x)
        nb = self.backbone.num_branch
        n = images.shape[0]
        _, _, h, w = feats.shape
        mask = torch.zeros(n, 1, h, w, device=feats.device)
        for i, (ih, iw) in enumerate(sizes):
            mask[i, :, : math.ceil(ih / 8), : math.ceil(iw / 8)] = 1.0
        mask = mask.repeat(nb, 1, 1, 1)
        pooled = (feats * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))
        pooled = pooled.view(nb, n, -1).mean(0)
        return self.fc(pooled)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["weak"], batch["sizes"])
        target = torch.zeros_like(logits)
        for i, labels in enumerate(batch["labels"]):
            target[i, labels] = 1.0
        loss = F.binary_cross_entropy_with_logits(logits, target)
        self.log("stage0_loss", loss.detach(), prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def configure_optimizers(self):
        b = self.config.model.backbone
        optimizer = torch.optim.AdamW(self.parameters(), lr=b.pretrain_lr, weight_decay=1e-4)
        total = b.pretrain_iters
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ----------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------


@dataclass
class TrainData:
    root: Path
    class_names: list[str]
    dataset: TrainDataset


def build_train_data(
    config: HUWSODConfig, cache_dir: Path, *, two_views: bool, with_boxes: bool, with_proposals: bool = True
) -> TrainData:
    """The training set of ``config``: image-label files only, unless ``with_boxes`` (fully supervised)."""
    dcfg = config.data
    root = dataset_root(dcfg, cache_dir)
    class_names = resolve_class_names(dcfg)
    if not class_names:  # coco: the categories of the first image-label file, in id order
        import json

        from paperzoo_huwsod.data import weak_label_path

        data = json.loads(weak_label_path(dcfg, root, dcfg.train_splits[0]).read_text())
        class_names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    records = []
    gt = None
    for split in dcfg.train_splits:
        records += load_weak_labels(dcfg, root, split, class_names)
        if with_boxes:
            part = load_ground_truth(dcfg, root, split, class_names)
            gt = (
                part
                if gt is None
                else type(part)(gt.boxes + part.boxes, None, {**gt.per_image, **part.per_image})
            )
    proposals = (
        offline_proposals(records, config.model.proposals, cache_dir, dcfg.skip_bad)
        if with_proposals
        else None
    )
    dataset = TrainDataset(
        records, config.augment, two_views=two_views, skip_bad=dcfg.skip_bad, gt=gt, proposals=proposals
    )
    return TrainData(root, class_names, dataset)


def _loader(
    config: HUWSODConfig, dataset: TrainDataset, batch_size: int, total_steps: int, start_step: int = 0
) -> DataLoader:
    """The step-indexed stream of steps ``start_step ..`` (each rank takes its slice of every global batch)."""
    per_device = max(1, batch_size // config.train.devices)
    return DataLoader(
        SampleStream(dataset, config.train.seed),
        batch_size=per_device,
        sampler=StepSampler(start_step, total_steps, per_device),
        num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
        collate_fn=Collate(config.augment.size_divisibility),
    )


def checkpoint_step(path: Path) -> int:
    """The optimizer steps done in a Lightning checkpoint."""
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def _trainer(
    config: HUWSODConfig, run_dir: Path, max_steps: int, progress: bool, callbacks: list
) -> L.Trainer:
    t = config.train
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        max_steps=max_steps,
        max_epochs=-1,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=t.log_every,
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in callbacks),
        use_distributed_sampler=False,  # StepSampler splits every global batch between the ranks
    )


class StepProgress(L.Callback):
    """A tqdm bar over optimizer steps for runs without Lightning's bar (the reproduction's worker processes:
    one bar per worker, at its own ``position``); shows the step count and the loss, refreshed every few s."""

    def __init__(self, desc: str, position: int = 0, mininterval: float = 5.0):
        self.desc, self.position, self.mininterval = desc, position, mininterval
        self.bar = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.max_steps,
            initial=trainer.global_step,
            desc=self.desc,
            position=self.position,
            leave=False,
            mininterval=self.mininterval,
            dynamic_ncols=True,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            self.bar.n = trainer.global_step
            loss = trainer.callback_metrics.get("loss", trainer.callback_metrics.get("stage0_loss"))
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
            self.bar.update(0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.on_train_end(trainer, pl_module)


def _set_threads(config: HUWSODConfig) -> None:
    if config.train.torch_threads > 0:
        torch.set_num_threads(config.train.torch_threads)


def quiet_lightning() -> None:
    """Silences Lightning's info banners (GPU available, tips); warnings still show."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def pretrain_backbone(
    config: HUWSODConfig,
    out_path: Path,
    cache_dir: Path,
    *,
    progress: bool = False,
    callbacks: list | None = None,
) -> Path:
    """Stage 0: trains the backbone as a multi-label classifier on the training image labels; saves
    ``{"backbone": state_dict, "fc": state_dict, "class_names": [...]}`` to ``out_path`` (skipped if present)."""
    out_path = Path(out_path)
    if out_path.is_file():
        return out_path
    _set_threads(config)
    if not progress:
        quiet_lightning()
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    data = build_train_data(config, cache_dir, two_views=False, with_boxes=False, with_proposals=False)
    module = Stage0Classifier(config, len(data.class_names))
    b = config.model.backbone
    loader = _loader(config, data.dataset, b.pretrain_batch_size, b.pretrain_iters)
    single = copy.deepcopy(config)
    single.train.devices, single.train.strategy = 1, "auto"
    trainer = _trainer(single, out_path.parent / "stage0_run", b.pretrain_iters, progress, callbacks or [])
    trainer.fit(module, loader)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    torch.save(
        {
            "backbone": module.backbone.state_dict(),
            "fc": module.fc.state_dict(),
            "class_names": data.class_names,
        },
        tmp,
    )
    os.replace(tmp, out_path)
    return out_path


def load_backbone(model: HUWSOD, path: Path) -> None:
    """Loads a stage-0 file or a converted checkpoint (``{"backbone": state_dict}``) into ``model.backbone``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("backbone", state)
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"backbone weights {path} do not match the {model.cfg.backbone.name} backbone: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def fit(
    config: HUWSODConfig,
    run_dir: Path,
    *,
    cache_dir: Path | None = None,
    backbone_weights: Path | None = None,
    progress: bool = False,
    callbacks: list | None = None,
) -> Path:
    """Trains ``config`` in ``run_dir`` (resuming from its last checkpoint) and returns the final weights."""
    run_dir = Path(run_dir)
    final = run_dir / FINAL_WEIGHTS
    if final.is_file():
        return final
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir is not None else run_dir / "data"
    _set_threads(config)
    if not progress:
        quiet_lightning()
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    mcfg = config.model
    data = build_train_data(
        config, cache_dir, two_views=mcfg.self_training.consistency, with_boxes=mcfg.supervision == "full"
    )
    module = HUWSODModule(config, len(data.class_names))
    weights = backbone_weights or (Path(mcfg.backbone.weights) if mcfg.backbone.weights else None)
    if weights is not None:
        load_backbone(module.model, weights)
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="step{step}",
        every_n_train_steps=config.train.checkpoint_every,
        save_last=True,
        save_top_k=1,
    )
    trainer = _trainer(
        config,
        run_dir,
        config.train.iterations,
        progress,
        [checkpoint, RngStateCallback(), *(callbacks or [])],
    )
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if last.is_file() else None
    start = 0
    if resume:
        start = checkpoint_step(last)
        logger.info("resuming %s from %s (step %d)", run_dir, last, start)
    loader = _loader(config, data.dataset, config.train.batch_size, config.train.iterations, start)
    with warnings.catch_warnings():
        # the loader restarts at the checkpoint's step by construction (StepSampler); Lightning cannot see it
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable", category=UserWarning)
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(module, loader, ckpt_path=resume)
    if trainer.global_rank == 0:
        tmp = run_dir / (FINAL_WEIGHTS + ".tmp")
        torch.save(
            {
                "model": module.model.state_dict(),
                "class_names": data.class_names,
                "config": to_dict(config),
                "steps": trainer.global_step,
                "world_size": trainer.world_size,
            },
            tmp,
        )
        os.replace(tmp, final)
    return final


def load_model(config: HUWSODConfig, weights: Path) -> tuple[HUWSOD, list[str]]:
    """A model of ``config`` with the weights ``fit`` saved (``weights_only`` loading)."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = HUWSOD(config.model, len(state["class_names"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, list(state["class_names"])
