"""Freezing per stage, Trainer training, DeepSpeed ZeRO-3 JSON configs (validated without deepspeed)."""

from __future__ import annotations

import json

import pytest
import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_model
from paperzoo_flashsloth.configuration import IGNORE_INDEX, TrainSpec
from paperzoo_flashsloth.data import FlashSlothCollator
from paperzoo_flashsloth.paper import PAPER
from paperzoo_flashsloth.train import freeze_for_stage, load_deepspeed_config, train_stage

I, L = IMAGE_ID, LEARNABLE_ID


def _owner(name):
    return name.split(".")[0]


def test_stage_one_trains_projector_and_pooling_only(model):
    names = freeze_for_stage(model, "I")
    assert {_owner(n) for n in names} == {"projector", "pooling"}
    assert len(names) == 8  # two Linear layers each
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("vision_tower.") for n in frozen) and "query_tokens" in frozen
    assert any(n.startswith("embedded_query.") for n in frozen) and any(
        n.startswith("language_model.") for n in frozen
    )


def test_stage_two_freezes_only_the_vision_tower(model):
    names = set(freeze_for_stage(model, "II"))
    everything = {n for n, _ in model.named_parameters()}
    assert everything - names == {n for n in everything if n.startswith("vision_tower.")}


@pytest.mark.parametrize("stage", ["HD", "scratch"])
def test_hd_and_scratch_train_everything(model, stage):
    assert set(freeze_for_stage(model, stage)) == {n for n, _ in model.named_parameters()}


def test_gradients_follow_the_freezing(model):
    model.train()
    freeze_for_stage(model, "II")
    ids = torch.tensor([[10, I, 12, 13, L, 15, 16]])
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, -2:] = ids[0, -2:]
    model(ids, None, torch.randn(1, 3, 24, 24), labels=labels).loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("vision_tower."):
            assert param.grad is None, name
    assert model.query_tokens.grad is not None and model.embedded_query.up.weight.grad.abs().sum() > 0


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown training stage 'III'"):
        freeze_for_stage(tiny_model(), "III")


def _dataset(n=8):
    gen = torch.Generator().manual_seed(0)
    items = []
    for k in range(n):
        q = torch.randint(10, 30, (2 + k % 3,), generator=gen).tolist()
        ids = [10, I, *q, L, 15, 16 + k % 4, 2]
        labels = [IGNORE_INDEX] * (len(ids) - 2) + ids[-2:]
        items.append(
            {
                "input_ids": torch.tensor(ids),
                "labels": torch.tensor(labels),
                "question_spans": torch.tensor([[2, 2 + len(q)]]),
                "pixel_values": torch.randn(3, 24, 24, generator=gen),
            }
        )
    return items


def test_trainer_updates_exactly_the_trainable_parameters(tmp_path):
    model = tiny_model().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = TrainSpec(stage="II", max_steps=2, batch_size=4, learning_rate=1e-2)
    logs = train_stage(model, _dataset(), FlashSlothCollator(0), spec, tmp_path, log_every=1)
    assert any("loss" in r and r["loss"] == r["loss"] for r in logs)
    for name, param in model.named_parameters():
        moved = not torch.equal(before[name], param.detach())
        assert moved == (not name.startswith("vision_tower.")), name


def test_shipped_deepspeed_configs():
    root = PAPER.data_root() / "configs" / "deepspeed"
    zero3 = load_deepspeed_config(root / "zero3.json")
    z = zero3["zero_optimization"]
    assert z["stage"] == 3 and z["overlap_comm"] and z["contiguous_gradients"]
    assert z["stage3_gather_16bit_weights_on_model_save"] is True
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
        assert z[key] == "auto"
    assert z["sub_group_size"] == z["stage3_max_live_parameters"] == z["stage3_max_reuse_distance"] == 1e9
    assert load_deepspeed_config(root / "zero2.json")["zero_optimization"]["stage"] == 2


def test_bad_deepspeed_configs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_deepspeed_config(bad)
    bad.write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": 256}))
    with pytest.raises(ValueError, match="'train_batch_size' must be \"auto\""):
        load_deepspeed_config(bad)
    with pytest.raises(ValueError, match="not found"):
        load_deepspeed_config(tmp_path / "missing.json")
