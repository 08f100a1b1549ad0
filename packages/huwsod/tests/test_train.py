"""Training and the harness: smoke reproduction, resume after a kill, DDP on 2 CPU processes, CLI, converter."""

from __future__ import annotations

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


class _Kill(L.Callback):
    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at:
            raise RuntimeError("simulated kill")


class _FirstStep(L.Callback):
    def __init__(self):
        self.first = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first is None:
            self.first = trainer.global_step


def test_killed_training_resumes_from_last_checkpoint(tmp_path, config):
    cfg = apply_method(config, "huwsod")
    cfg.train.iterations, cfg.train.checkpoint_every = 5, 2
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(cfg, run, cache_dir=tmp_path / "data", callbacks=[_Kill(3)])
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and not (run / FINAL_WEIGHTS).exists()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    # step 0 is the AE burn-in (no ROI-head forward), step 1 runs the weak and the strong view
    assert saved["global_step"] == 2 and saved["huwsod_forward_count"] == 2
    first = _FirstStep()
    weights = fit(cfg, run, cache_dir=tmp_path / "data", callbacks=[first])
    assert first.first == 2  # resumed at the checkpoint, not from scratch
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert state["steps"] == 5
    model, names = load_model(cfg, weights)
    assert len(names) == 6 and isinstance(model, HUWSOD)
    assert fit(cfg, run, cache_dir=tmp_path / "data") == weights  # finished: not retrained


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "PAPERZOO_HUWSOD_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "paperzoo_huwsod", "train", "--config", "smoke", "--method", "oicr_reg_mist",
        "--out", str(tmp_path / "ddp"), "--no-progress",
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
