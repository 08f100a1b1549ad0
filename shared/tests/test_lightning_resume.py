"""Exact resume: a run killed at step k and resumed equals the uninterrupted run bit for bit."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytest
import torch

L = pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from paperzoo_shared.lightning_resume import (  # noqa: E402
    KillAtStep,
    PostStepMixin,
    RngStateCallback,
    SimulatedKill,
    assert_same_tensors,
)

STEPS = 8


class Data(torch.utils.data.Dataset):
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def __len__(self) -> int:
        return 10_000

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.randn(4, generator=torch.Generator().manual_seed(index + self.offset))


class Module(PostStepMixin, L.LightningModule):
    """Noise from its own generator, global RNGs (dropout, numpy, random) and an EMA updated after each step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.noise = torch.Generator().manual_seed(123)
        self.steps_seen: list[int] = []

    def resumable_generators(self):
        return {"noise": self.noise}

    def training_step(self, batch, batch_idx):
        noise = torch.randn(batch.shape, generator=self.noise)
        scale = float(np.random.rand()) + random.random()
        return (self.net(batch + noise) * scale).pow(2).mean()

    def after_optimizer_step(self, step: int) -> None:
        self.steps_seen.append(step)
        with torch.no_grad():
            for ema, p in zip(self.ema.parameters(), self.net.parameters()):
                ema.lerp_(p, 0.3)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 3, 0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _fit(run_dir: Path, callbacks=(), rng: bool = True) -> Module:
    last = run_dir / "last.ckpt"
    start = int(torch.load(last, weights_only=False)["global_step"]) if last.is_file() else 0
    torch.manual_seed(7), np.random.seed(7), random.seed(7)  # what a fresh process does (seed_everything)
    module = Module()
    loader = torch.utils.data.DataLoader(Data(offset=start * 2), batch_size=2, shuffle=False)
    checkpoint = ModelCheckpoint(dirpath=run_dir, save_last=True, save_top_k=0, every_n_train_steps=1)
    trainer = L.Trainer(
        max_steps=STEPS,
        callbacks=[checkpoint, *([RngStateCallback()] if rng else []), *callbacks],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=True,
        accelerator="cpu",
    )
    trainer.fit(module, loader, ckpt_path=str(last) if last.is_file() else None)
    return module


def _kill_and_resume(run_dir: Path, kill: int, rng: bool = True) -> Module:
    with pytest.raises(SimulatedKill):
        _fit(run_dir, [KillAtStep(kill)], rng=rng)
    return _fit(run_dir, rng=rng)


@pytest.mark.parametrize("kill", [1, 5])
def test_killed_run_resumes_bit_for_bit(tmp_path, kill):
    reference = _fit(tmp_path / "straight")
    resumed = _kill_and_resume(tmp_path / "killed", kill)
    assert reference.steps_seen == list(range(1, STEPS + 1))
    assert resumed.steps_seen == list(range(kill + 1, STEPS + 1))
    assert_same_tensors(reference.state_dict(), resumed.state_dict(), "model + EMA")
    assert torch.equal(reference.noise.get_state(), resumed.noise.get_state())


def test_without_rng_restore_the_resume_diverges(tmp_path):
    # the comparison can fail: re-seeding instead of restoring changes the final weights
    reference = _fit(tmp_path / "straight", rng=False)
    resumed = _kill_and_resume(tmp_path / "killed", 3, rng=False)
    with pytest.raises(AssertionError, match="differ"):
        assert_same_tensors(reference.state_dict(), resumed.state_dict())


def test_old_checkpoint_without_rng_state_is_a_clear_error(tmp_path):
    with pytest.raises(SimulatedKill):
        _fit(tmp_path, [KillAtStep(2)], rng=False)
    with pytest.raises(KeyError, match="no random-stream state"):
        _fit(tmp_path)


def test_assert_same_tensors_reports_the_key():
    with pytest.raises(AssertionError, match=r"\['w'\]: tensors differ"):
        assert_same_tensors({"w": torch.zeros(2)}, {"w": torch.tensor([0.0, 1e-7])})
