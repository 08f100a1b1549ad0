"""Lightning training of CSFIQA and the learned baselines, resumable exactly from ``last.ckpt``.

:func:`train_run` trains one (method, split seed) in its own run folder. After every epoch the model is
evaluated with multi-crop testing on the validation part of the training split and on the test split; the
reported epoch is the best on validation (the honest protocol), and the lineage's best-on-test epoch is kept
beside it for comparability. A finished run writes ``result.json`` (with its fingerprint); a rerun with the
same fingerprint returns it without training, a killed run resumes from ``last.ckpt`` (epoch boundaries;
model, optimiser, scheduler, RNG streams and data order are restored).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from paperzoo_csfiqa.configuration import METHODS, ExperimentConfig, method_model_config
from paperzoo_csfiqa.data import EpochSampler, EvalCrops, IQADataset, TrainCrops
from paperzoo_csfiqa.losses import csfiqa_loss, mos_regression_loss
from paperzoo_shared.config import config_hash, to_dict
from paperzoo_shared.lightning_resume import RngStateCallback
from paperzoo_shared.metrics import plcc, srcc
from paperzoo_shared.repro import atomic_write_json


def build_network(config: ExperimentConfig, method: str) -> nn.Module:
    family = METHODS[method]["model"]
    if family == "csfiqa":
        from paperzoo_csfiqa.modeling_csfiqa import CSFIQA

        model_config, _ = method_model_config(config, method)
        network = CSFIQA(model_config)
        if model_config.encoder.pretrained is not None:
            load_pretrained_encoder(network, model_config.encoder.pretrained)
        return network
    from paperzoo_csfiqa.baselines import SmallCNN, single_scale_vit

    b = config.baselines
    if family == "cnn":
        return SmallCNN(b.cnn_channels)
    if family == "vit":
        return single_scale_vit(config.train.crop, b.vit_patch, b.vit_dim, b.vit_depth, b.vit_heads)
    raise ValueError(f"method {method!r} is not a trained network")


def load_pretrained_encoder(network: nn.Module, path: Path) -> None:
    """timm ``crossvit_*`` weights from a local file (safetensors or a ``weights_only`` torch file); the
    classifier heads are dropped, every other key must match."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = network.encoder.vit.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: CrossViT weights do not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def correlation_metrics(pred: np.ndarray, mos: np.ndarray) -> dict[str, float]:
    """SRCC, raw PLCC and PLCC after the 4-parameter logistic (raw PLCC where the fit fails)."""
    out = {"srcc": srcc(pred, mos), "plcc": plcc(pred, mos)}
    try:
        out["plcc4"] = plcc(pred, mos, fit="logistic4")
    except (RuntimeError, ValueError):
        out["plcc4"] = out["plcc"]
    return {k: (0.0 if not math.isfinite(v) else v) for k, v in out.items()}


def scores_of(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = network(images)
    return out.score if hasattr(out, "score") else out


@torch.no_grad()
def predict(network: nn.Module, dataset: EvalCrops, batch_size: int = 16) -> np.ndarray:
    """Per-image prediction = mean of the scores of its test crops."""
    was_training = network.training
    network.eval()
    preds = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        crops = torch.stack([c for c, _ in items])  # (b, n, 3, H, W)
        b, n = crops.shape[:2]
        preds.append(scores_of(network, crops.flatten(0, 1)).view(b, n).mean(dim=1))
    network.train(was_training)
    return torch.cat(preds).double().numpy()


class IQAModule(L.LightningModule):
    """One network and its loss; evaluation on val and test after every epoch (``history``)."""

    def __init__(
        self, config: ExperimentConfig, method: str, eval_sets: dict[str, EvalCrops], steps_per_epoch: int
    ):
        super().__init__()
        self.config, self.method = config, method
        self.network = build_network(config, method)
        _, self.loss_config = method_model_config(config, method)
        self.is_csfiqa = METHODS[method]["model"] == "csfiqa"
        self.eval_sets = eval_sets
        self.steps_per_epoch = steps_per_epoch
        self.history: list[dict[str, Any]] = []

    def training_step(self, batch, batch_idx):
        images, mos = batch
        if self.is_csfiqa:
            terms = csfiqa_loss(self.network(images), mos, self.loss_config).as_dict()
        else:
            terms = {"loss": mos_regression_loss(self.network(images), mos, self.loss_config.mos_loss)}
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in terms.items()},
            on_step=False,
            on_epoch=True,
            batch_size=images.shape[0],
        )
        return terms["loss"]

    def on_train_epoch_end(self) -> None:
        entry: dict[str, Any] = {"epoch": int(self.current_epoch) + 1}
        for name, dataset in self.eval_sets.items():
            if len(dataset) >= 4:
                entry[name] = correlation_metrics(
                    predict(self.network, dataset), dataset.mos[dataset.indices]
                )
        self.history.append(entry)

    def configure_optimizers(self):
        train = self.config.train
        params = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        total = max(1, train.epochs * self.steps_per_epoch)
        warmup = train.warmup_epochs * self.steps_per_epoch

        def schedule(step: int) -> float:  # linear warm-up, then cosine to 0 (LoDa; DEIQT steps instead)
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["iqa_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("iqa_history", []))


def run_fingerprint(config: ExperimentConfig, method: str, seed: int, n_items: int) -> str:
    model, loss = method_model_config(config, method)
    payload = {
        "method": method,
        "seed": seed,
        "model": to_dict(model),
        "loss": to_dict(loss),
        "train": {k: v for k, v in to_dict(config.train).items() if k not in ("threads", "num_workers")},
        "data": to_dict(config.data),
        "baselines": to_dict(config.baselines),
        "n": n_items,
    }
    return config_hash(payload)


def select(history: list[dict[str, Any]], select_on: str) -> dict[str, float]:
    """The test metrics of the epoch that is best on ``select_on`` (SRCC), plus the best-on-test ones."""

    def best(key: str) -> dict[str, Any]:
        scored = [h for h in history if key in h]
        return max(scored, key=lambda h: (h[key]["srcc"], -h["epoch"])) if scored else history[-1]

    chosen = best("val" if select_on == "val" else "test")
    on_test = best("test")
    out = {k: v for k, v in chosen["test"].items()}
    out.update({f"{k}_sot": v for k, v in on_test["test"].items() if k in ("srcc", "plcc")})
    out["epoch"] = float(chosen["epoch"])
    return out


def _quiet() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*number of training batches.*")


def train_run(
    config: ExperimentConfig,
    method: str,
    seed: int,
    dataset: IQADataset,
    split: dict[str, list[int]],
    run_dir: Path,
    *,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Train one network on ``split['train']`` and return ``{"metrics", "history", "timing"}``."""
    run_dir = Path(run_dir)
    fingerprint = run_fingerprint(config, method, seed, len(dataset))
    done = run_dir / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if result.get("fingerprint") == fingerprint:
            return result
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    _quiet()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    mos = dataset.normalized_mos()
    train = config.train
    crops = TrainCrops(
        dataset,
        split["train"],
        mos,
        train.crop,
        crops_per_image=train.train_crops,
        hflip=train.hflip,
        seed=seed,
        resize=config.data.resize,
    )
    eval_sets = {
        name: EvalCrops(dataset, split[name], mos, train.crop, train.test_crops, config.data.resize)
        for name in ("val", "test")
        if split.get(name)
    }
    loader = DataLoader(
        crops,
        batch_size=train.batch_size,
        sampler=EpochSampler(len(crops), seed),
        num_workers=train.num_workers,
        drop_last=len(crops) > train.batch_size,
    )
    steps = max(1, len(loader) // max(1, train.devices))
    L.seed_everything(seed, workers=True, verbose=False)
    module = IQAModule(config, method, eval_sets, steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=train.checkpoint_every or None,
        every_n_epochs=None if train.checkpoint_every else 1,
    )
    trainer = L.Trainer(
        max_epochs=train.epochs,
        accelerator=train.accelerator,
        devices=train.devices,
        strategy=train.strategy,
        precision=train.precision,
        callbacks=[checkpoint, RngStateCallback(), *(callbacks or [])],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=run_dir,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    last = run_dir / "last.ckpt"
    trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if last.is_file() else None)
    history = module.history
    if not trainer.is_global_zero:
        return {}
    if train.strategy == "ddp_spawn" and not history:  # the spawned workers' history is in the checkpoint
        history = torch.load(last, map_location="cpu", weights_only=True)["iqa_history"]
    result = {
        "fingerprint": fingerprint,
        "method": method,
        "seed": seed,
        "metrics": select(history, config.select_on),
        "history": history,
        "timing": {"wall_s": time.perf_counter() - start_wall, "cpu_s": time.process_time() - start_cpu},
    }
    torch.save(module.network.state_dict(), run_dir / "final.pt")
    atomic_write_json(done, result)
    return result


def brisque_run(
    config: ExperimentConfig, dataset: IQADataset, split: dict[str, list[int]], features: np.ndarray
) -> dict[str, Any]:
    """BRISQUE + SVR fitted on the whole training split (train + val: nothing to select)."""
    from paperzoo_csfiqa.baselines import BrisqueRegressor

    mos = dataset.normalized_mos()
    fit = split["train"] + split.get("val", [])
    model = BrisqueRegressor(config.baselines.svr_c, config.baselines.svr_gamma).fit(features[fit], mos[fit])
    metrics = correlation_metrics(model.predict(features[split["test"]]), mos[split["test"]])
    metrics.update({"srcc_sot": metrics["srcc"], "plcc_sot": metrics["plcc"], "epoch": 0.0})
    return {"metrics": metrics}
