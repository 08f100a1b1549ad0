"""Exact resume for Lightning training, and the kill-and-resume test that proves it.

A run killed at step k and resumed from its ``last.ckpt`` must end bit for bit where the uninterrupted run
ends (on CPU). Lightning restores the model, optimizers, schedulers and loop counters by itself; three things
it does not, and each package has to get right:

1. State updated *after* the optimizer step (an EMA, a history model, a running curve) must be updated before
   the checkpoint of that step is written. ``ModelCheckpoint`` saves in ``on_train_batch_end``, and Lightning
   calls every callback's ``on_train_batch_end`` *before* the LightningModule's, so an EMA updated there is
   one step stale in ``last.ckpt``. Update it in ``optimizer_step`` instead (see :class:`PostStepMixin`).
2. Random streams: Python's, NumPy's, torch's global generators and the module's own ``torch.Generator``
   objects must be *restored*, not re-seeded. :class:`RngStateCallback` saves them in every checkpoint and
   restores them just before the first resumed batch.
3. Data order: the sample stream must continue at the checkpoint's step (a step-indexed dataset or sampler).

:class:`KillAtStep` and :func:`assert_same_tensors` are the test side: train uninterrupted, train again with
``KillAtStep(k)`` (it raises :class:`SimulatedKill` once the step-k checkpoint is on disk), resume, and compare.
Needs ``lightning`` (``pip install paperzoo-shared[lightning]``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

CHECKPOINT_KEY = "paperzoo_rng"


def _numpy_state() -> tuple:
    # plain types and a tensor: checkpoints load with ``weights_only=True``, which refuses NumPy arrays
    name, keys, position, has_gauss, cached = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every random stream: Python, NumPy, torch CPU (and CUDA), and ``generators`` by name."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Put every stream back where :func:`capture_rng_state` found it; a generator missing from ``state`` is
    an error (its run would silently diverge)."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"the checkpoint has no state for generator {name!r} (saved: {sorted(saved)})")
        gen.set_state(saved[name])


def module_generators(module: L.LightningModule) -> dict[str, torch.Generator]:
    """The module's own generators: ``module.resumable_generators()`` when it defines it, else none."""
    getter = getattr(module, "resumable_generators", None)
    return dict(getter()) if callable(getter) else {}


class RngStateCallback(Callback):
    """Saves every random stream in each checkpoint and restores it when a resumed run starts training.

    The restore waits for ``on_train_start``: by then Lightning has loaded the checkpoint and built the data
    loaders, so nothing between the restore and the first resumed batch draws from the streams. A module can
    expose its own generators (a degradation or augmentation generator) with ``resumable_generators()``.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = capture_rng_state(module_generators(pl_module))

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if CHECKPOINT_KEY not in checkpoint:
            raise KeyError(
                "this checkpoint holds no random-stream state (written before exact resume existed); "
                "delete it to restart the run, or train from scratch"
            )
        self._pending = checkpoint[CHECKPOINT_KEY]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            restore_rng_state(self._pending, module_generators(pl_module))
            self._pending = None


class PostStepMixin:
    """Runs ``after_optimizer_step(step)`` right after each optimizer step, before any checkpoint of it.

    Mix into a LightningModule (``class Module(PostStepMixin, L.LightningModule)``) and put EMA, history-model
    and other post-step updates in ``after_optimizer_step``; ``step`` is the number of optimizer steps done.
    """

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)  # type: ignore[misc]
        # Lightning counts the step as completed only after this hook returns: +1 makes it the finished count
        self.after_optimizer_step(int(self.trainer.global_step) + 1)  # type: ignore[attr-defined]

    def after_optimizer_step(self, step: int) -> None:
        """Override: the updates that belong to optimizer step ``step`` (1-based)."""


class SimulatedKill(RuntimeError):
    """Raised by :class:`KillAtStep`: stands for the process being killed."""


class KillAtStep(Callback):
    """Raises :class:`SimulatedKill` once optimizer step ``step`` is done and checkpointed.

    It fires at the start of the next batch: Lightning runs checkpoint callbacks last within a hook, so the
    end of step ``step`` is too early. Make the checkpoint interval divide ``step`` so that ``last.ckpt``
    holds step ``step`` when the run dies.
    """

    def __init__(self, step: int) -> None:
        if step < 1:
            raise ValueError(f"KillAtStep needs a step >= 1, got {step}")
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step >= self.step:
            raise SimulatedKill(f"killed at step {trainer.global_step}")


def assert_same_tensors(expected: Mapping[str, Any], actual: Mapping[str, Any], what: str = "state") -> None:
    """Assert two (nested) state dicts hold the same keys and bit-identical tensors and numbers."""
    if set(expected) != set(actual):
        raise AssertionError(f"{what}: keys differ: {sorted(set(expected) ^ set(actual))}")
    for key, value in expected.items():
        other = actual[key]
        where = f"{what}[{key!r}]"
        if isinstance(value, torch.Tensor):
            if (
                not isinstance(other, torch.Tensor)
                or value.dtype != other.dtype
                or value.shape != other.shape
            ):
                raise AssertionError(f"{where}: tensor metadata differs")
            if not torch.equal(value, other):
                diff = (value.double() - other.double()).abs().max().item()
                raise AssertionError(f"{where}: tensors differ (max abs difference {diff:.3g})")
        elif isinstance(value, Mapping):
            assert_same_tensors(value, other, where)
        elif value != other:
            raise AssertionError(f"{where}: {value!r} != {other!r}")
