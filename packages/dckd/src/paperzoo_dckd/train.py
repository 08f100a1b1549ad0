"""Building models from a config, and training with Lightning (resumable from ``last.ckpt``).

:func:`train_student` trains one method (row) for one seed; :func:`train_teacher` and :func:`train_encoder`
make the mini/smoke presets' teacher and stand-in encoder. Each writes into its own run folder and, when it
finishes, a ``final.pt`` plus ``done.json`` holding the fingerprint of its config; a rerun with the same
fingerprint loads ``final.pt`` instead of training, a killed run resumes from ``last.ckpt``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from paperzoo_dckd.configuration import (
    DCKDConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    fingerprint_dict,
)
from paperzoo_dckd.convert import CheckpointError, load_weights, read_checkpoint, save_weights
from paperzoo_dckd.data import (
    LazyPairs,
    PairedImage,
    PatchDataset,
    ProgressiveBatchSampler,
    load_paired_folder,
    pair_folders,
    pair_restoration_folder,
    skimage_sr_split,
)
from paperzoo_dckd.modeling_dckd import Distiller
from paperzoo_dckd.models import build_model
from paperzoo_dckd.module import DistillationModule, VQAutoencoderModule
from paperzoo_shared.config import config_hash
from paperzoo_shared.errors import UserError
from paperzoo_shared.lightning_resume import CHECKPOINT_KEY, RngStateCallback
from paperzoo_shared.repro import atomic_write_json

SR_ARCHS = {"swinir", "rcan", "edsr"}


def model_options(spec: ModelConfig, scale: int | None) -> dict[str, Any]:
    """The model's options, with ``upscale`` set from the data scale for SR backbones."""
    from paperzoo_dckd.models import PAPER_CONFIGS

    options = dict(spec.options)
    arch = PAPER_CONFIGS.get(spec.arch, {}).get("arch", spec.arch)
    if scale is not None and arch in SR_ARCHS:
        options.setdefault("upscale", scale)
    return options


def build_from_config(spec: ModelConfig, scale: int | None, where: str) -> nn.Module:
    """Builds ``spec`` and loads its checkpoint (strictly) if it names one."""
    model = build_model(spec.arch, model_options(spec, scale), where=where)
    if spec.checkpoint is not None:
        load_weights(model, spec.checkpoint, spec.checkpoint_format, arch=f"{where} ({spec.arch})")
    return model


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------


def load_train_pairs(config: ExperimentConfig) -> list[PairedImage] | list[tuple[Path, ...]]:
    """In-memory pairs (skim-SR) or ``(gt/hr path, lq/lr path[, name])`` tuples read on demand."""
    data = config.data
    if data.source == "skimage":
        return skimage_sr_split(data.scale, data.skimage_crop)[0]
    if data.is_restoration:
        if data.train_dir is None:
            raise ValueError(
                f"data.source is {data.source!r} but data.train_dir is not set; pass it with "
                "--set data.train_dir=/path/to/folder"
            )
        return pair_restoration_folder(data.train_dir, *data.folder_names)
    missing = [k for k in ("train_hr_dir", "train_lr_dir") if getattr(data, k) is None]
    if missing:
        raise ValueError(
            f"data.source is 'folders' but data.{missing[0]} is not set; pass it with "
            f"--set data.{missing[0]}=/path/to/folder"
        )
    return pair_folders(data.train_hr_dir, data.train_lr_dir, data.train_filename_tmpl)


def load_test_sets(config: ExperimentConfig) -> dict[str, Sequence[PairedImage]]:
    """Named test sets: in memory (SR) or :class:`LazyPairs` read one image at a time (gopro, rain13k)."""
    data = config.data
    if data.source == "skimage":
        return {"skim-SR": skimage_sr_split(data.scale, data.skimage_crop)[1]}
    if data.is_restoration:
        if not data.test_dirs:
            raise ValueError(
                f"data.test_dirs is empty; name at least one {data.source} test folder, e.g. "
                "--set data.test_dirs.GoPro=datasets/GoPro/test"
            )
        return {
            name: LazyPairs(pair_restoration_folder(folder, *data.folder_names), data.scale)
            for name, folder in data.test_dirs.items()
        }
    if not data.test_sets:
        raise ValueError(
            "data.test_sets is empty; name at least one test set (hr_dir, lr_dir, filename_tmpl)"
        )
    return {
        name: load_paired_folder(spec.hr_dir, spec.lr_dir, data.scale, spec.filename_tmpl)
        for name, spec in data.test_sets.items()
    }


# ---------------------------------------------------------------------------------------------------------
# Lightning
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_lightning():
    """Silences Lightning's info banners and the warnings it prints for tiny CPU runs."""
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")
    previous = {n: logging.getLogger(n).level for n in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*tensorboardX.*")
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        # resumption continues the sample stream itself (DistillationModule.on_train_start sets the offset)
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        try:
            yield
        finally:
            for name, level in previous.items():
                logging.getLogger(name).setLevel(level)


def make_trainer(
    train: TrainConfig, run_dir: Path, max_steps: int, callbacks: Sequence[Any] = ()
) -> L.Trainer:
    checkpoint = ModelCheckpoint(
        dirpath=run_dir,
        filename="step{step}",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=train.checkpoint_every,
        save_on_train_epoch_end=False,
    )
    return L.Trainer(
        max_steps=max_steps,
        gradient_clip_val=train.grad_clip_norm or None,
        gradient_clip_algorithm="norm",
        # the progressive batch sampler splits the samples between ranks itself
        use_distributed_sampler=not train.progressive,
        max_epochs=-1,
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        precision=train.precision,
        # every random stream (global and the module's degradation generator) saved in and restored from
        # each checkpoint: a killed run resumes bit for bit on CPU
        callbacks=[checkpoint, RngStateCallback(), *callbacks],
        logger=CSVLogger(run_dir, name="logs", version="") if train.logger == "csv" else False,
        enable_progress_bar=train.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=train.log_every,
        default_root_dir=run_dir,
    )


def fit(
    module: L.LightningModule,
    dataset: torch.utils.data.Dataset,
    train: TrainConfig,
    run_dir: Path,
    max_steps: int,
    callbacks: Sequence[Any] = (),
) -> L.Trainer:
    """Fits ``module`` for ``max_steps`` optimizer steps, resuming from ``run_dir/last.ckpt`` if present.

    With ``train.progressive`` the batches come from a :class:`ProgressiveBatchSampler`. On resume the sample
    stream is moved to the checkpoint's step *before* the loader starts, so that data-loader worker processes
    (``num_workers`` > 0), which copy the dataset when they start, continue it too.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if train.threads:
        torch.set_num_threads(train.threads)
    last = run_dir / "last.ckpt"
    start, has_rng = _resume_info(last) if last.is_file() else (0, True)
    if not has_rng:
        raise UserError(
            f"{last} was written by paperzoo-dckd 0.1, which did not save the random streams, so it cannot be "
            "resumed exactly; delete it (or the run folder) to restart the run"
        )
    common = {"num_workers": train.num_workers, "persistent_workers": False}
    if train.progressive and isinstance(dataset, PatchDataset):
        sampler = ProgressiveBatchSampler(train.stage_at, train.max_batch_size, max_steps, start_step=start)
        loader = DataLoader(dataset, batch_sampler=sampler, **common)
    else:
        if isinstance(dataset, PatchDataset):
            dataset.offset = start * train.batch_size * train.devices * train.num_nodes
        loader = DataLoader(dataset, batch_size=train.batch_size, shuffle=False, drop_last=True, **common)
    with quiet_lightning():
        trainer = make_trainer(train, run_dir, max_steps, callbacks)
        trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if last.is_file() else None)
    if trainer.global_rank != 0:
        # A DDP worker started by Lightning's script launcher reruns the whole command; its part ends with the
        # fit (rank 0 saves, evaluates and writes results; the next fit starts fresh workers).
        sys.exit(0)
    return trainer


def training_fingerprint(config: ExperimentConfig) -> dict[str, Any]:
    """The parts of a config that change a trained student: data, networks, losses, optimisation (not the
    list of rows, the paper rows, the Fig. 8b settings or the number of parallel jobs)."""
    keys = ("data", "teacher", "student", "encoder", "dckd", "train", "teacher_train", "encoder_train")
    return {key: fingerprint_dict(getattr(config, key)) for key in keys}


def _finished(run_dir: Path, fingerprint: str) -> bool:
    done = run_dir / "done.json"
    if not done.is_file():
        return False
    try:
        return (
            json.loads(done.read_text()).get("fingerprint") == fingerprint
            and (run_dir / "final.pt").is_file()
        )
    except json.JSONDecodeError:
        return False


def _mark_finished(run_dir: Path, fingerprint: str, extra: dict[str, Any] | None = None) -> None:
    atomic_write_json(run_dir / "done.json", {"fingerprint": fingerprint, **(extra or {})})
    for stale in run_dir.glob("*.ckpt"):
        stale.unlink()  # the run is complete; final.pt holds what is needed


def _reset_if_changed(run_dir: Path, fingerprint: str) -> None:
    """A run folder from a different config is cleared so its checkpoint is not resumed by mistake."""
    marker = run_dir / "fingerprint.txt"
    if marker.is_file() and marker.read_text().strip() != fingerprint:
        for path in run_dir.glob("*"):
            if path.is_file():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)


def is_rank_zero() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _fixed_batch(dataset: PatchDataset, size: int) -> dict[str, torch.Tensor]:
    items = [dataset[10_000_000 + i] for i in range(size)]  # indices never used in training
    return {key: torch.stack([item[key] for item in items]) for key in ("lq", "gt")}


def train_student(
    config: ExperimentConfig,
    method: str,
    seed: int,
    run_dir: Path,
    teacher: nn.Module | None,
    encoder: nn.Module | None,
    train_pairs: Sequence[Any],
    *,
    track_every: int = 0,
    track_batch_size: int = 8,
    callbacks: Sequence[Any] = (),
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Trains ``method`` for one seed and returns (student EMA, Fig. 8b curve if tracked).

    The result is cached in ``run_dir`` (``final.pt``), keyed by the config, method and seed.
    """
    train = config.train
    fingerprint = config_hash(
        {"config": fingerprint_dict(config), "method": method, "seed": seed, "track": track_every}
    )
    student = build_from_config(config.student, config.data.scale, "student")
    if _finished(run_dir, fingerprint):
        load_weights(student, run_dir / "final.pt", "ours", arch="student")
        curve = json.loads((run_dir / "done.json").read_text()).get("curve", [])
        return student.eval(), curve
    _reset_if_changed(run_dir, fingerprint)
    L.seed_everything(seed, workers=True, verbose=False)
    student = build_from_config(config.student, config.data.scale, "student")  # seeded initialisation
    distiller = Distiller(student, teacher, encoder, method, config.dckd, train.ema_decay, seed)
    dataset = PatchDataset(
        train_pairs,
        config.data.scale,
        train.lr_patch,
        train.iterations * train.max_batch_size * train.devices * train.num_nodes,
        seed=seed,
        use_flip=train.use_flip,
        use_rot=train.use_rot,
    )
    track_batch = _fixed_batch(dataset, track_batch_size) if track_every else None
    module = DistillationModule(distiller, train, config.data.scale, track_batch, track_every, seed)
    wall, cpu = time.perf_counter(), time.process_time()
    fit(module, dataset, train, run_dir, train.iterations, callbacks)
    timing = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    if is_rank_zero():
        save_weights(distiller.student_ema, run_dir / "final.pt", method=method, seed=seed)
        if distiller.history is not None:
            save_weights(distiller.history, run_dir / "history.pt", method=method, seed=seed)
        _mark_finished(run_dir, fingerprint, {"curve": module.curve, "timing": timing})
    return distiller.student_ema.eval(), list(module.curve)


def train_teacher(config: ExperimentConfig, run_dir: Path, train_pairs: Sequence[Any]) -> nn.Module:
    """Trains the teacher architecture from scratch (L1 to GT) with ``config.teacher_train``; returns its EMA."""
    if config.teacher_train is None:
        raise ValueError(
            "teacher.checkpoint is empty and teacher_train is not set: nothing to build a teacher from"
        )
    teacher_config = ExperimentConfig(
        name=f"{config.name}-teacher",
        data=config.data,
        student=config.teacher,
        train=config.teacher_train,
        methods=["scratch"],
        # the teacher uses no DCKD setting: the defaults keep a changed dckd.* key from retraining it
        dckd=DCKDConfig(),
    )
    seed = config.teacher_train.seed
    model, _ = train_student(teacher_config, "scratch", seed, run_dir, None, None, train_pairs)
    return model


def hr_patch_dataset(
    train_pairs: Sequence[Any], scale: int, hr_patch: int, length: int, seed: int
) -> PatchDataset:
    return PatchDataset(train_pairs, scale, max(1, hr_patch // scale), length, seed=seed)


def train_encoder(config: ExperimentConfig, run_dir: Path, train_pairs: Sequence[Any]) -> nn.Module:
    """Trains the stand-in encoder as a VQ autoencoder on HR training patches; returns the encoder."""
    enc_cfg = config.encoder_train
    if enc_cfg is None:
        raise ValueError("encoder.checkpoint is empty and encoder_train is not set")
    fingerprint = config_hash(
        {
            "encoder": fingerprint_dict(config.encoder),
            "train": fingerprint_dict(enc_cfg),
            "data": fingerprint_dict(config.data),
        }
    )
    encoder = build_from_config(config.encoder, None, "encoder")
    if _finished(run_dir, fingerprint):
        load_weights(encoder, run_dir / "final.pt", "ours", arch="encoder")
        return encoder.eval()
    _reset_if_changed(run_dir, fingerprint)
    L.seed_everything(enc_cfg.seed, workers=True, verbose=False)
    encoder = build_from_config(config.encoder, None, "encoder")
    module = VQAutoencoderModule(encoder, enc_cfg, ch=encoder.encoder.conv_in.out_channels)
    train = TrainConfig(
        iterations=enc_cfg.iterations,
        batch_size=enc_cfg.batch_size,
        accelerator=config.train.accelerator,
        checkpoint_every=max(1, enc_cfg.iterations // 4),
        progress_bar=config.train.progress_bar,
        threads=config.train.threads,
    )
    dataset = hr_patch_dataset(
        train_pairs,
        config.data.scale,
        enc_cfg.hr_patch,
        enc_cfg.iterations * enc_cfg.batch_size,
        enc_cfg.seed,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    fit(module, dataset, train, run_dir, enc_cfg.iterations)
    timing = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    save_weights(encoder, run_dir / "final.pt", kind="stand-in VQ encoder")
    _mark_finished(run_dir, fingerprint, {"timing": timing})
    return encoder.eval()


def build_teacher(
    config: ExperimentConfig, run_dir: Path, train_pairs: Callable[[], Sequence[Any]]
) -> nn.Module:
    """The teacher from its checkpoint, else trained (cached in ``run_dir``)."""
    if config.teacher.checkpoint is not None:
        return build_from_config(config.teacher, config.data.scale, "teacher").eval()
    return train_teacher(config, run_dir, train_pairs())


def build_encoder(
    config: ExperimentConfig, run_dir: Path, train_pairs: Callable[[], Sequence[Any]]
) -> nn.Module:
    """The feature encoder from its checkpoint (e.g. taming VQGAN f16/n1024), else the trained stand-in."""
    if config.encoder.checkpoint is not None:
        return build_from_config(config.encoder, None, "encoder").eval()
    return train_encoder(config, run_dir, train_pairs())


def checkpoint_step(path: Path) -> int:
    """The global step stored in a Lightning checkpoint."""
    return int(read_checkpoint(path).get("global_step", 0))


def _resume_info(path: Path) -> tuple[int, bool]:
    """(global step, whether it holds exact resume's random-stream state) of a Lightning checkpoint; an
    unreadable one gives (0, True) and Lightning reports it."""
    try:
        state = read_checkpoint(path)
        return int(state.get("global_step", 0)), CHECKPOINT_KEY in state
    except (CheckpointError, AttributeError, KeyError, TypeError, ValueError):
        return 0, True


def resume_step(path: Path) -> int:
    """The global step of a Lightning checkpoint, 0 if it cannot be read (Lightning then reports it)."""
    try:
        return checkpoint_step(path)
    except (CheckpointError, KeyError, TypeError, ValueError):
        return 0
