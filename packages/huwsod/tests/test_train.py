"""Training and the harness: smoke reproduction, resume after a kill, DDP on 2 CPU processes, CLI, converter."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from paperzoo_huwsod.configuration import apply_method
from paperzoo_huwsod.convert import convert_file, read_official
from paperzoo_huwsod.modeling_huwsod import HUWSOD
from paperzoo_huwsod.paper import PAPER
from paperzoo_huwsod.train import FINAL_WEIGHTS, fit, load_backbone, load_model

from paperzoo_shared.lightning_resume import KillAtStep, SimulatedKill, assert_same_tensors
from paperzoo_shared.repro import run_reproduction


def test_smoke_preset_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERZOO_HUWSOD_CACHE", str(tmp_path / "cache"))
    written = run_reproduction(PAPER, preset="smoke", out_dir=tmp_path / "out", command="pytest smoke")
    json_path, markdown = written[0]
    results = json.loads(json_path.read_text())
    assert [row["id"] for row in results["rows"]] == ["whole_image", "random_boxes", "wsddn", "huwsod"]
    for row in results["rows"]:
        assert {"map07", "map_area", "corloc", "ap", "ap50", "ap75"} <= set(row["metrics"])
        for metric in ("map07", "corloc"):
            assert 0.0 <= row["metrics"][metric]["mean"] <= 100.0
    huwsod = results["rows"][-1]
    assert huwsod["paper"] == {"map07": 53.36, "corloc": 71.9}
    assert "rpn_recall50" in huwsod["metrics"] and "map07_tta" in huwsod["metrics"]
    assert "53.36" in markdown
    # a second run is served from the ledger (resumable reproduction)
    ledger = (tmp_path / "out" / "voc07.partial.jsonl").read_text().splitlines()
    assert len(ledger) == 4
    run_reproduction(PAPER, preset="smoke", out_dir=tmp_path / "out", command="pytest smoke")
    assert len((tmp_path / "out" / "voc07.partial.jsonl").read_text().splitlines()) == 4


class _Steps(L.Callback):
    """The optimizer steps a run executes (to show the resumed run restarts at the checkpoint)."""

    def __init__(self):
        self.steps: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)


def _test_metrics(cfg, weights, cache):
    from paperzoo_huwsod.data import dataset_root, offline_proposals
    from paperzoo_huwsod.evaluate import predict
    from paperzoo_huwsod.reproduce import evaluate_detections

    model, names = load_model(cfg, weights)
    root = dataset_root(cfg.data, cache)

    def run(records):
        props = offline_proposals(records, cfg.model.proposals, cache, False)
        return predict(model, records, cfg.eval, tta=False, proposals=props)

    return evaluate_detections(cfg, root, names, run)


@pytest.mark.parametrize(
    ("method", "kills"),
    # HUWSOD: AE burn-in (step 0), RPN, two views, inter-branch EMA; OICR+reg+MIST+EMA: offline proposals
    [("huwsod", [2, 4]), ("oicr_reg_mist_consistency_ema", [3])],
)
def test_killed_run_resumes_bit_for_bit(tmp_path, config, method, kills):
    """Killed at step k through a callback, resumed from last.ckpt: weights (model, inter-branch EMA),
    optimizer state, the ROI-head forward counter and test metrics equal the uninterrupted run's."""
    cfg = apply_method(config, method)
    cfg.train.iterations, cfg.train.checkpoint_every = 6, 1
    cfg.model.self_training.ema_decay = 0.5  # a visible EMA: every step moves the teachers by half
    assert cfg.model.self_training.ema and cfg.model.head.dropout > 0
    cache = tmp_path / "data"
    straight = fit(cfg, tmp_path / "straight", cache_dir=cache)
    run = tmp_path / "killed"
    for k in kills:
        with pytest.raises(SimulatedKill):
            fit(cfg, run, cache_dir=cache, callbacks=[KillAtStep(k)])
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == k
    steps = _Steps()
    resumed = fit(cfg, run, cache_dir=cache, callbacks=[steps])
    assert steps.steps == list(range(kills[-1], 6))  # resumed at the checkpoint, not from scratch
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["steps"] == b["steps"] == 6
    assert_same_tensors(a["model"], b["model"], "model + EMA")
    ckpt_a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt_b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert_same_tensors(ckpt_a["optimizer_states"][0]["state"], ckpt_b["optimizer_states"][0]["state"], "SGD")
    assert ckpt_a["huwsod_forward_count"] == ckpt_b["huwsod_forward_count"]
    assert ckpt_a["lr_schedulers"] == ckpt_b["lr_schedulers"]
    assert _test_metrics(cfg, straight, cache) == _test_metrics(cfg, resumed, cache)
    assert fit(cfg, run, cache_dir=cache) == resumed  # finished: not retrained


def test_resume_check_can_fail(tmp_path, config):
    """The comparison above is not vacuous: a run with another seed ends at other weights."""
    cfg = apply_method(config, "oicr_reg_mist_consistency_ema")
    cfg.train.iterations = 3
    a = torch.load(fit(cfg, tmp_path / "a", cache_dir=tmp_path / "data"), weights_only=True)
    cfg.train.seed = 1
    b = torch.load(fit(cfg, tmp_path / "b", cache_dir=tmp_path / "data"), weights_only=True)
    with pytest.raises(AssertionError, match="differ"):
        assert_same_tensors(a["model"], b["model"])


class _EmaCountAtSave(L.Callback):
    """(global step, EMA updates done) each time a checkpoint is written."""

    def __init__(self):
        self.saves: list[tuple[int, int]] = []
        self.updates = 0

    def on_train_start(self, trainer, pl_module):
        update = pl_module.model.ema_update

        def counted():
            self.updates += 1
            update()

        pl_module.model.ema_update = counted

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.saves.append((checkpoint["global_step"], self.updates))


def test_frozen_backbone_keeps_its_batchnorm_statistics(tmp_path, config):
    """A frozen backbone is FrozenBatchNorm2d in the repo: training must not move its running statistics
    (it did: Lightning bypasses HUWSOD.train and left the backbone in train mode)."""
    cfg = apply_method(config, "wsddn")
    assert cfg.model.backbone.freeze
    state = torch.load(fit(cfg, tmp_path / "run", cache_dir=tmp_path / "data"), weights_only=True)["model"]
    means = [v for k, v in state.items() if k.startswith("backbone.") and k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.startswith("backbone.") and k.endswith("running_var")]
    assert means and all(torch.equal(m, torch.zeros_like(m)) for m in means)  # BN's initial statistics
    assert all(torch.equal(v, torch.ones_like(v)) for v in variances)


def test_ema_of_a_step_is_in_that_steps_checkpoint(tmp_path, config):
    """The step-k checkpoint holds k EMA updates (issue 11: the EMA ran after last.ckpt, one step stale)."""
    cfg = apply_method(config, "oicr_reg_mist_consistency_ema")
    cfg.train.iterations, cfg.train.checkpoint_every = 3, 1
    counter = _EmaCountAtSave()
    fit(cfg, tmp_path / "run", cache_dir=tmp_path / "data", callbacks=[counter])
    assert counter.saves and all(step == updates for step, updates in counter.saves)
    assert counter.updates == 3


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "PAPERZOO_HUWSOD_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "paperzoo_huwsod", "train", "--config", "smoke", "--method", "oicr_reg_mist",
        "--out", str(tmp_path / "ddp"), "--no-progress", "--random-backbone",
        "--set", "train.strategy=ddp", "--set", "train.devices=2", "--set", "train.accelerator=cpu",
        "--set", "train.batch_size=4", "--set", "train.iterations=2",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "ddp" / FINAL_WEIGHTS, map_location="cpu", weights_only=True)
    assert state["steps"] == 2 and state["world_size"] == 2


def test_cli_help_and_prepare(tmp_path, monkeypatch, capsys):
    from paperzoo_huwsod.cli import build_parser, main

    help_text = build_parser().format_help()
    for command in ("prepare", "pretrain", "train", "eval", "convert"):
        assert command in help_text
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    monkeypatch.setenv("PAPERZOO_HUWSOD_CACHE", str(tmp_path))
    assert main(["prepare", "--config", "smoke"]) == 0
    assert "VOCdevkit" in capsys.readouterr().out


def test_cli_new_user_paths(tmp_path, capsys, monkeypatch, shapes_root):
    """train refuses a frozen random backbone unless asked; eval reads the config stored in model.pt;
    prepare fails on a missing image, naming it (it used to pass and train failed later)."""
    from paperzoo_huwsod.cli import main

    monkeypatch.setenv("PAPERZOO_HUWSOD_CACHE", str(tmp_path))
    out = tmp_path / "run"
    args = ["train", "--config", "smoke", "--method", "wsddn", "--out", str(out), "--no-progress",
            "--set", "train.iterations=1"]  # fmt: skip
    assert main(args) == 2
    assert "--backbone" in capsys.readouterr().err
    assert main([*args, "--random-backbone"]) == 0
    capsys.readouterr()
    assert main(["eval", "--weights", str(out / FINAL_WEIGHTS)]) == 0  # no --config / --method
    metrics = json.loads(capsys.readouterr().out)
    assert {"map07", "map07_5095", "corloc"} <= set(metrics)
    root = tmp_path / "voc"
    import shutil

    shutil.copytree(shapes_root, root)
    (root / "JPEGImages" / "000003.png").unlink()
    prepare = ["prepare", "--config", "smoke", "--set", "data.format=voc", "--set", f"data.root={root}",
               "--set", "data.class_names=[circle,square,triangle,ring,cross,ellipse]",
               "--set", "data.image_extension=.png"]  # fmt: skip
    assert main(prepare) == 2
    err = capsys.readouterr().err
    assert "000003.png" in err and len(err.strip().splitlines()) == 2


def test_cli_known_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from paperzoo_huwsod.cli import main

    monkeypatch.setenv("PAPERZOO_HUWSOD_CACHE", str(tmp_path))
    assert (
        main(["train", "--config", "smoke", "--out", str(tmp_path / "r"), "--set", "train.iterations=-1"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("paperzoo-huwsod: error: ") and "train.iterations must be > 0" in err[0]
    assert "Traceback" not in "\n".join(err)
    assert main(["eval", "--config", "smoke", "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    with pytest.raises(Exception, match="must be > 0"):  # --debug: the exception itself
        main(["train", "--config", "smoke", "--out", str(tmp_path / "r"), "--set", "train.iterations=-1",
              "--debug"])  # fmt: skip


def _official_like_state(model: HUWSOD) -> dict[str, np.ndarray]:
    """Our tensors under detectron2's names (the layout of the official files)."""
    out = {}
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue  # detectron2's FrozenBatchNorm2d has none
        if name.startswith("backbone."):
            out[name[len("backbone.") :]] = value.numpy()
    return out


def test_convert_official_backbone_pickle_and_detector(tmp_path, config):
    torch.manual_seed(0)
    model = HUWSOD(apply_method(config, "huwsod").model, 6)
    pkl = tmp_path / "resnet_ws_d2.pkl"
    with pkl.open("wb") as handle:
        pickle.dump({"model": _official_like_state(model), "__author__": "DRN-WSOD"}, handle)
    summary = convert_file(pkl, tmp_path / "converted.pt")
    assert summary["head_tensors"] == 0 and summary["skipped"] == []
    other = HUWSOD(apply_method(config, "huwsod").model, 6)
    load_backbone(other, tmp_path / "converted.pt")
    for a, b in zip(model.backbone.state_dict().values(), other.backbone.state_dict().values()):
        torch.testing.assert_close(a, b)
    detector = {f"backbone.{k}": torch.from_numpy(v) for k, v in _official_like_state(model).items()}
    detector["roi_heads.box_refinery_2.cls_score.weight"] = model.head.refinements[
        2
    ].cls_score.weight.detach()
    detector["roi_heads.box_predictor.det.bias"] = model.head.wsddn_det.bias.detach()
    detector["proposal_generator.rpn_head.anchor_deltas.weight"] = model.rpn.anchor_deltas.weight.detach()
    detector["cls_head.encoder.0.weight"] = torch.zeros(1)
    torch.save({"model": detector}, tmp_path / "model_final.pth")
    summary = convert_file(tmp_path / "model_final.pth", tmp_path / "det.pt")
    assert summary["head_tensors"] == 3 and summary["skipped"] == ["cls_head.encoder.0.weight"]
    state = torch.load(tmp_path / "det.pt", weights_only=True)["detector"]
    assert "head.refinements.2.cls_score.weight" in state and "rpn.anchor_deltas.weight" in state


_TO_OFFICIAL = [
    ("head.fc", "roi_heads.box_head.fc"),
    ("head.wsddn_cls.", "roi_heads.box_predictor.cls."),
    ("head.wsddn_det.", "roi_heads.box_predictor.det."),
    ("head.refinements.", "roi_heads.box_refinery_"),
    ("rpn.", "proposal_generator.rpn_head."),
    ("ae.", "cls_head."),
    ("backbone.", "backbone."),
]


def _official_detector(model: HUWSOD) -> dict[str, torch.Tensor]:
    """A trained detector under detectron2's names, RPN channels in the official ratio order [1, 2, 0.5]
    (``model`` must use that order): the layout of the official ``model_final.pth``."""
    out = {}
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        for ours, theirs in _TO_OFFICIAL:
            if name.startswith(ours):
                out[theirs + name[len(ours) :]] = value.clone()
                break
        else:
            raise AssertionError(f"no official name for {name}")
    return out


def test_anchor_permutation_golden():
    from paperzoo_huwsod.convert import anchor_permutation

    # ours [0.5, 1, 2] per size, theirs [1, 2, 0.5]: our anchor 0 (size 0, ratio 0.5) is their anchor 2 ...
    assert anchor_permutation(2, [0.5, 1.0, 2.0], [1.0, 2.0, 0.5]) == [2, 0, 1, 5, 3, 4]
    assert anchor_permutation(2, [1.0, 2.0, 0.5], [1.0, 2.0, 0.5]) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="not a permutation"):
        anchor_permutation(1, [1.0, 3.0], [1.0, 2.0])


def test_load_detector_from_the_official_layout_permutes_the_rpn_channels(tmp_path, config):
    from paperzoo_huwsod.convert import OFFICIAL_ASPECT_RATIOS, load_detector

    cfg = apply_method(config, "huwsod")
    cfg.model.rpn.anchor_sizes = [[16.0, 24.0], [32.0, 48.0], [64.0, 96.0]]
    assert cfg.model.rpn.aspect_ratios == list(OFFICIAL_ASPECT_RATIOS) == [1.0, 2.0, 0.5]
    torch.manual_seed(0)
    official = HUWSOD(cfg.model, 6).eval()
    torch.save({"model": _official_detector(official)}, tmp_path / "model_final.pth")
    summary = convert_file(tmp_path / "model_final.pth", tmp_path / "det.pt")
    assert summary["skipped"] and all(k.startswith("cls_head.") for k in summary["skipped"])
    # same anchor order: every tensor back bit for bit (the AE head is training-only: not in the file)
    torch.manual_seed(1)
    same = HUWSOD(cfg.model, 6).eval()
    load_detector(same, tmp_path / "det.pt")
    for name, value in official.state_dict().items():
        if not name.startswith("ae."):
            assert torch.equal(value, same.state_dict()[name]), name
    # our ratio order [0.5, 1, 2]: the objectness of anchor (size s, ratio r) at every cell is unchanged
    reordered_cfg = copy.deepcopy(cfg)
    reordered_cfg.model.rpn.aspect_ratios = [0.5, 1.0, 2.0]
    reordered = HUWSOD(reordered_cfg.model, 6).eval()
    load_detector(reordered, tmp_path / "det.pt")
    features = torch.randn(3, official.backbone.out_channels, 5, 5)
    a, b = official.rpn(features, 3), reordered.rpn(features, 3)
    for branch in range(3):
        la, lb = a.logits[branch].view(1, 5, 5, 6), b.logits[branch].view(1, 5, 5, 6)
        da, db = a.deltas[branch].view(1, 5, 5, 6, 4), b.deltas[branch].view(1, 5, 5, 6, 4)
        for size in range(2):
            for ours, ratio in enumerate([0.5, 1.0, 2.0]):
                theirs = [1.0, 2.0, 0.5].index(ratio)
                assert torch.equal(lb[..., size * 3 + ours], la[..., size * 3 + theirs])
                assert torch.equal(db[..., size * 3 + ours, :], da[..., size * 3 + theirs, :])
        # and the anchors themselves follow the ratios: the same boxes, reordered
        aa, ab = a.anchors[branch].view(25, 6, 4), b.anchors[branch].view(25, 6, 4)
        assert torch.equal(ab[:, [0, 1, 2, 3, 4, 5]], aa[:, [2, 0, 1, 5, 3, 4]])
    with pytest.raises(ValueError, match="holds no detector"):
        torch.save({"backbone": {}}, tmp_path / "bb.pt")
        load_detector(same, tmp_path / "bb.pt")
    other = HUWSOD(apply_method(config, "oicr").model, 6)  # K = 3 branches, no RPN: refinement 3 is extra
    with pytest.raises(ValueError, match="unexpected"):
        load_detector(other, tmp_path / "det.pt")


def test_convert_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": Path("/")}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_official(path)


def test_ae_gradient_clipping_and_burnin_freeze(config):
    from paperzoo_huwsod.train import HUWSODModule, lr_multiplier

    cfg = apply_method(config, "huwsod")
    cfg.model.ae.clip_grad_norm = 2.0
    module = HUWSODModule(cfg, 6)
    for p in module.model.ae.parameters():
        p.grad = torch.full_like(p, 10.0)
    module.on_before_optimizer_step(None)
    norm = torch.sqrt(sum(p.grad.square().sum() for p in module.model.ae.parameters()))
    assert norm.item() == pytest.approx(2.0, rel=1e-4)
    cfg.model.self_training.burnin_iters = 5
    cfg.train.warmup_iters, cfg.train.lr_steps = 2, [8]
    assert lr_multiplier(3, cfg, "roi") == 0.0 and lr_multiplier(3, cfg, "rpn") == 0.0
    assert lr_multiplier(3, cfg, "ae") == 1.0 and lr_multiplier(6, cfg, "roi") == 1.0
    assert lr_multiplier(9, cfg, "roi") == pytest.approx(0.1)
    assert lr_multiplier(1, cfg, "ae") == pytest.approx(0.001 * 0.5 + 0.5)
