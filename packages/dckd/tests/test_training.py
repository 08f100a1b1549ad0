"""Lightning training: every method runs, a killed run resumes from last.ckpt, 2-process CPU DDP (gloo)."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from paperzoo_dckd.configuration import ExperimentConfig
from paperzoo_dckd.evaluate import evaluate
from paperzoo_dckd.models import build_model
from paperzoo_dckd.train import load_test_sets, load_train_pairs, train_student

from paperzoo_shared.config import load_config
from paperzoo_shared.lightning_resume import KillAtStep, SimulatedKill, assert_same_tensors

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = [
    "data.skimage_crop=48",
    "teacher.options={num_feat: 8, num_block: 2}",
    "student.options={num_feat: 4, num_block: 2}",
    "encoder.options={ch: 4, ch_mult: [1, 1, 2, 2, 4], num_res_blocks: 1, attn_resolutions: [], z_channels: 8, embed_dim: 8, n_embed: 16, norm_groups: 2}",
    "train.iterations=6",
    "train.batch_size=2",
    "train.lr_patch=8",
    "train.checkpoint_every=2",
    "train.threads=0",
    "dckd.history_steps=[2]",
    "dckd.fakd_student_positions=[conv_first, 1]",
    "dckd.fakd_teacher_positions=[conv_first, 1]",
]


def _setup(extra=()):
    config = load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=[*TINY, *extra])
    torch.manual_seed(0)
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 2, "upscale": 2})
    encoder = build_model("vqgan_encoder", dict(config.encoder.options))
    return config, teacher, encoder, load_train_pairs(config)


class StartStep(L.Callback):
    def __init__(self):
        self.step: int | None = None
        self.history_steps: list[int] = []

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step


def test_every_method_trains_a_few_steps(tmp_path):
    config, teacher, encoder, pairs = _setup(["train.iterations=2"])
    for method in ("scratch", "logits", "fakd", "dckd", "dckd_no_dcr", "dckd_no_dmm", "dckd_star"):
        student, _ = train_student(config, method, 0, tmp_path / method, teacher, encoder, pairs)
        assert (tmp_path / method / "final.pt").is_file() and not list((tmp_path / method).glob("*.ckpt"))
        assert student(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_killed_training_resumes_from_last_checkpoint(tmp_path):
    config, teacher, encoder, pairs = _setup()
    run = tmp_path / "dckd"
    with pytest.raises(SimulatedKill):
        train_student(config, "dckd", 0, run, teacher, encoder, pairs, callbacks=[KillAtStep(4)])
    last = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4 and not (run / "done.json").exists()
    # the history model and the EMA are part of the checkpoint
    assert any(k.startswith("distiller.history.") for k in last["state_dict"])
    assert any(k.startswith("distiller.student_ema.") for k in last["state_dict"])
    start = StartStep()
    student, _ = train_student(config, "dckd", 0, run, teacher, encoder, pairs, callbacks=[start])
    assert start.step == 4  # resumed, not restarted
    assert (run / "done.json").is_file()
    # a finished run is loaded, not retrained
    again = StartStep()
    cached, _ = train_student(config, "dckd", 0, run, teacher, encoder, pairs, callbacks=[again])
    assert again.step is None
    for a, b in zip(student.state_dict().values(), cached.state_dict().values()):
        assert torch.equal(a, b)


def test_changed_config_does_not_resume_a_stale_checkpoint(tmp_path):
    config, teacher, encoder, pairs = _setup()
    run = tmp_path / "logits"
    with pytest.raises(SimulatedKill):
        train_student(config, "logits", 0, run, teacher, encoder, pairs, callbacks=[KillAtStep(2)])
    changed, *_ = _setup(["train.lr=0.0005"])
    start = StartStep()
    train_student(changed, "logits", 0, run, teacher, encoder, pairs, callbacks=[start])
    assert start.step == 0


def test_every_loss_term_is_logged(tmp_path):
    import csv

    config, teacher, encoder, pairs = _setup(["train.log_every=1"])
    train_student(config, "dckd_star", 0, tmp_path / "log", teacher, encoder, pairs)
    with (tmp_path / "log" / "logs" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0])
    assert {"train/rec", "train/kd", "train/lcr", "train/dcl", "train/ce", "train/total"} <= columns
    assert len(rows) == 6 and all(float(r["train/dcl"]) > 0 for r in rows)


def test_fig8b_tracking_records_the_history_gap(tmp_path):
    config, teacher, encoder, pairs = _setup()
    _, curve = train_student(config, "dckd", 0, tmp_path / "track", teacher, encoder, pairs, track_every=2)
    assert [c["iteration"] for c in curve] == [2, 4, 6]
    assert {"student", "ema", "history_clean", "history_degraded"} <= set(curve[0])


@pytest.mark.slow  # process spawning takes 30-90 s on 2 shared cores
def test_ddp_two_cpu_processes_gloo(tmp_path):
    config, teacher, encoder, pairs = _setup(
        [
            "train.strategy=ddp_spawn",
            "train.devices=2",
            "train.accelerator=cpu",
            "train.iterations=2",
            "train.batch_size=1",
        ]
    )
    student, _ = train_student(config, "dckd", 0, tmp_path / "ddp", teacher, encoder, pairs)
    assert (tmp_path / "ddp" / "final.pt").is_file()
    assert student(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


class BatchLog(L.Callback):
    def __init__(self):
        self.sums: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sums[trainer.global_step] = float(batch["lq"].sum())


def test_resumed_run_continues_the_sample_stream(tmp_path):
    config, teacher, encoder, pairs = _setup()
    full = BatchLog()
    train_student(config, "logits", 0, tmp_path / "full", teacher, encoder, pairs, callbacks=[full])
    with pytest.raises(SimulatedKill):
        train_student(
            config, "logits", 0, tmp_path / "cut", teacher, encoder, pairs, callbacks=[KillAtStep(4)]
        )
    resumed = BatchLog()
    train_student(config, "logits", 0, tmp_path / "cut", teacher, encoder, pairs, callbacks=[resumed])
    assert sorted(resumed.sums) == [4, 5]
    assert all(resumed.sums[step] == pytest.approx(full.sums[step]) for step in (4, 5))


# ---------------------------------------------------------------------------------------------------------
# Exact resume (issue 11): a dckd run killed at step k (KillAtStep fires once step k's last.ckpt is on disk)
# and resumed equals the uninterrupted run bit for bit: student, EMA, history model, Fig. 8b curve and the
# evaluation PSNR/SSIM. Before the fix last.ckpt held an EMA and history model one step stale and the
# degradation generator was re-seeded on resume, so these comparisons failed.
# ---------------------------------------------------------------------------------------------------------


class FinalState(L.Callback):
    """Keeps a copy of the module's state dict (student, EMA, history model) when training ends."""

    def __init__(self) -> None:
        self.state: dict | None = None

    def on_train_end(self, trainer, pl_module):
        self.state = copy.deepcopy(pl_module.state_dict())


def _run(config, teacher, encoder, pairs, run, kill=None):
    if kill is not None:
        with pytest.raises(SimulatedKill):
            train_student(
                config, "dckd", 0, run, teacher, encoder, pairs, track_every=2, callbacks=[KillAtStep(kill)]
            )
        assert (run / "last.ckpt").is_file() and not (run / "done.json").exists()
    final = FinalState()
    student, curve = train_student(
        config, "dckd", 0, run, teacher, encoder, pairs, track_every=2, callbacks=[final]
    )
    return final.state, student, curve


@pytest.mark.parametrize("kill", [2, 4])
def test_killed_dckd_run_resumes_bit_for_bit(tmp_path, kill):
    # history updated every 2 steps and checkpoints every 2: a kill lands right after a history update
    config, teacher, encoder, pairs = _setup()
    reference, ref_student, ref_curve = _run(config, teacher, encoder, pairs, tmp_path / "straight")
    resumed, student, curve = _run(config, teacher, encoder, pairs, tmp_path / "killed", kill)
    assert {k.split(".")[1] for k in reference} == {"student", "student_ema", "history"}
    assert_same_tensors(reference, resumed, "student + EMA + history model")
    assert_same_tensors(ref_student.state_dict(), student.state_dict(), "final.pt (EMA)")
    assert curve == ref_curve and [c["iteration"] for c in curve] == [2, 4, 6]
    test_set = load_test_sets(config)["skim-SR"][:2]
    ref_metrics = evaluate(ref_student, test_set, config.data.scale)
    metrics = evaluate(student, test_set, config.data.scale)
    assert metrics == ref_metrics  # PSNR/SSIM bit for bit, per image too


def test_a_checkpoint_without_random_stream_state_is_a_clear_error(tmp_path):
    from paperzoo_shared.errors import UserError

    config, teacher, encoder, pairs = _setup()
    run = tmp_path / "old"
    with pytest.raises(SimulatedKill):
        train_student(config, "logits", 0, run, teacher, encoder, pairs, callbacks=[KillAtStep(2)])
    state = torch.load(run / "last.ckpt", weights_only=False)
    del state["paperzoo_rng"]  # what a 0.1 checkpoint looks like
    torch.save(state, run / "last.ckpt")
    with pytest.raises(UserError, match="cannot be resumed exactly"):
        train_student(config, "logits", 0, run, teacher, encoder, pairs)
