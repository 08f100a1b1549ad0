"""Training through transformers' Trainer: optimizer groups, the tau schedule, DeepSpeed JSON, DDP smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paperzoo_dynamic_llava.data import ExampleDataset, TrainCollator
from paperzoo_dynamic_llava.train import (
    DynamicLlavaTrainer,
    GumbelTauCallback,
    freeze_for_dynamic_training,
    training_arguments,
    validate_deepspeed_config,
)

PACKAGE = Path(__file__).resolve().parents[1]


def _examples(tiny, n=8):
    from paperzoo_dynamic_llava.data import Example

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        prompt = [2, 9, *([tiny.IMAGE_ID] * 16), *torch.randint(5, tiny.VOCAB, (6,), generator=g).tolist()]
        answer = torch.randint(5, tiny.VOCAB, (3 + i % 6,), generator=g).tolist() + [3]
        out.append(Example(prompt, answer, torch.randn(3, 32, 32, generator=g), "x", "describe", i))
    return out


def test_optimizer_groups_and_tau_schedule(tiny, tmp_path):
    model = tiny.make_model()
    freeze_for_dynamic_training(model)
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    assert all(p.requires_grad for p in model.model.multi_modal_projector.parameters())  # official code
    args = training_arguments(tmp_path, per_device_train_batch_size=4, max_steps=4, learning_rate=5e-6,
                              weight_decay=0.1, logging_steps=1)  # fmt: skip
    trainer = DynamicLlavaTrainer(model=model, args=args, train_dataset=ExampleDataset(_examples(tiny)),
                                  data_collator=TrainCollator(), predictor_lr=2e-4)  # fmt: skip
    seen = []

    class Spy(GumbelTauCallback):
        def on_step_begin(self, *a, **k):
            super().on_step_begin(*a, **k)
            seen.append(self.model.gumbel_tau)

    trainer.callback_handler.callbacks = [c for c in trainer.callback_handler.callbacks
                                          if not isinstance(c, GumbelTauCallback)]  # fmt: skip
    trainer.add_callback(Spy(model, 1.0, 0.1))
    trainer.train()
    groups = trainer.optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        is_pred = {"score_predictor" in names[id(p)] for p in group["params"]}
        assert len(is_pred) == 1
        assert group["initial_lr"] == (2e-4 if is_pred.pop() else 5e-6)
    n_trainable = sum(len(g["params"]) for g in groups)
    assert n_trainable == sum(1 for p in model.parameters() if p.requires_grad)
    assert seen == pytest.approx([0.1 ** (s / 4) for s in range(4)])


def test_training_moves_keep_ratios_toward_targets(tiny, tmp_path):
    model = tiny.make_model(mask_loss_weight=100.0, output_text_len_for_training=4)
    freeze_for_dynamic_training(model)
    args = training_arguments(tmp_path, per_device_train_batch_size=8, max_steps=20, learning_rate=1e-3,
                              logging_steps=1)  # fmt: skip
    trainer = DynamicLlavaTrainer(model=model, args=args, train_dataset=ExampleDataset(_examples(tiny)),
                                  data_collator=TrainCollator(), predictor_lr=1e-2)  # fmt: skip
    batch = TrainCollator()(_examples(tiny))
    model.train()

    def ratios():
        torch.manual_seed(0)
        with torch.no_grad():
            out = model(**batch)
        return float(out.image_keep_ratio.mean()), float(out.text_ratio_loss)

    before = ratios()
    trainer.train()
    after = ratios()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]
    assert abs(after[0] - 0.25) < abs(before[0] - 0.25)


def test_shipped_deepspeed_zero3_json_is_valid(tmp_path):
    cfg = validate_deepspeed_config(PACKAGE / "configs" / "deepspeed" / "zero3.json")
    assert cfg["zero_optimization"]["stage"] == 3
    bad = dict(cfg, zero_optimization={**cfg["zero_optimization"], "stage": 2})
    (tmp_path / "z2.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="stage must be 3"):
        validate_deepspeed_config(tmp_path / "z2.json")


def test_full_configs_load():
    from paperzoo_dynamic_llava.configuration import FullTrainConfig, SparseConfig

    from paperzoo_shared.config import load_config

    for name, batch, accum in (("dynamic_llava_7b", 8, 1), ("dynamic_llava_13b", 4, 2)):
        cfg = load_config(FullTrainConfig, PACKAGE / "configs" / "full" / f"{name}.yaml")
        assert cfg.sparse_config == SparseConfig()  # the paper's settings are the defaults
        assert (cfg.train.per_device_train_batch_size, cfg.train.gradient_accumulation_steps) == (
            batch,
            accum,
        )
        assert (cfg.train.learning_rate, cfg.train.predictor_lr) == (5e-6, 2e-4)
        assert (PACKAGE / "configs" / "full" / cfg.train.deepspeed).resolve() == (
            PACKAGE / "configs" / "deepspeed" / "zero3.json"
        )  # relative to the config file


def test_deepspeed_path_is_config_relative_and_checked_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from paperzoo_dynamic_llava.cli import main

    monkeypatch.chdir(tmp_path)  # not the package folder
    shipped = PACKAGE / "configs" / "full" / "dynamic_llava_7b.yaml"
    # the shipped config's ZeRO-3 JSON is found and valid from here: the next check (no model path) speaks
    assert main(["train", "--config", str(shipped)]) == 2
    assert "model_path is empty" in capsys.readouterr().err
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.yaml").write_text(
        "model_path: /nonexistent/model\ndata_path: x.json\nimage_folder: img\ntrain:\n  deepspeed: ds/z3.json\n"
    )
    assert main(["train", "--config", "cfg/run.yaml"]) == 2  # fails on the JSON, before touching the model
    assert f"DeepSpeed config not found: {tmp_path / 'cfg' / 'ds' / 'z3.json'}" in capsys.readouterr().err
    assert main(["train", "--config", "cfg/run.yaml", "--set", "train.deepspeed=here.json"]) == 2
    assert f"DeepSpeed config not found: {tmp_path / 'here.json'}" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_cpu_trainer_smoke(tmp_path):
    """torchrun with 2 gloo processes through the `train` command (about 30-60 s on 2 busy cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "paperzoo_dynamic_llava", "train", "--tiny",
        "--set", f"output_dir={tmp_path}", "--set", "train.deepspeed=null", "--set", "train.max_steps=3",
        "--set", "train.per_device_train_batch_size=2", "--set", "train.bf16=false",
        "--set", "train.gradient_checkpointing=false", "--set", "train.logging_steps=1",
        "--set", "sparse.d_model=16", "--set", "sparse.nhead=2", "--set", "sparse.dim_feedforward=32",
        "--set", "sparse.output_text_len_for_training=8",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=600, capture_output=True)
    log = json.loads((tmp_path / "final" / "log_history.json").read_text())
    steps = [h for h in log if "loss" in h]
    assert len(steps) == 3
    assert steps[0]["epoch"] == pytest.approx(0.25)  # 16 examples, 2 processes x 2 per step
    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration

    DynamicLlavaForConditionalGeneration.from_pretrained(str(tmp_path / "final"))
