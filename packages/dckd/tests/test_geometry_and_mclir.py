"""0.2: the mini's encoder geometry, the gradient-ratio measurement, the codebook's use, MCLIR's loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from paperzoo_dckd.configuration import DCKDConfig, ExperimentConfig
from paperzoo_dckd.geometry import codebook_usage, gradient_ratio, unused_code_mask
from paperzoo_dckd.losses import feature_distance
from paperzoo_dckd.modeling_dckd import Distiller
from paperzoo_dckd.models import build_model
from paperzoo_dckd.module import restart_dead_codes

from paperzoo_shared.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_GEOMETRY = [
    "teacher.options={num_feat: 8, num_block: 1}",
    "student.options={num_feat: 4, num_block: 1}",
    "encoder.options={ch: 4, ch_mult: [1, 1, 2, 2, 4], num_res_blocks: 1, attn_resolutions: [], z_channels: 8, embed_dim: 8, n_embed: 16, norm_groups: 2}",
    "train.lr_patch=16",
]


def test_mini_geometry_is_the_vqgan_layout_at_64_px():
    config = load_config(ExperimentConfig, CONFIGS / "mini.yaml")
    options = config.encoder.options
    assert options["ch_mult"] == [1, 1, 2, 2, 4]  # the f16 VQGAN's width ratios, 5 levels
    assert config.train.lr_patch * config.data.scale >= 64 and config.encoder_train.hr_patch >= 64
    assert config.encoder_train.restart_every > 0
    encoder = build_model("vqgan_encoder", dict(options))
    feats = encoder.level_features(torch.rand(1, 3, 64, 64))
    ch = options["ch"]
    assert [tuple(f.shape[1:]) for f in feats] == [
        (ch, 64, 64),
        (ch, 32, 32),
        (2 * ch, 16, 16),
        (2 * ch, 8, 8),
        (4 * ch, 4, 4),
    ]  # the 5th level is 4x4, not the old 2x2


def test_gradient_ratio_scales_with_the_weight_and_shares_sum_to_one():
    config = load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=TINY_GEOMETRY)
    base = gradient_ratio(config, batch_size=2)
    doubled = load_config(
        ExperimentConfig, CONFIGS / "mini.yaml", overrides=[*TINY_GEOMETRY, "dckd.lambda_dcl=0.2"]
    )
    twice = gradient_ratio(doubled, batch_size=2)
    # the weighted term's gradient is linear in lambda_dcl; L_rec's does not depend on it
    assert twice["ratio_to_rec"]["dcl"] == pytest.approx(2 * base["ratio_to_rec"]["dcl"], rel=1e-6)
    assert twice["ratio_to_rec"]["kd"] == pytest.approx(base["ratio_to_rec"]["kd"], rel=1e-9)
    assert sum(base["dcl_level_shares"]) == pytest.approx(1.0)
    assert base["hr_patch"] == 32 and [s[1] for s in base["encoder_levels"]] == [32, 16, 8, 4, 2]
    only_last = load_config(
        ExperimentConfig,
        CONFIGS / "mini.yaml",
        overrides=[*TINY_GEOMETRY, "dckd.layer_weights=[0, 0, 0, 0, 1]"],
    )
    assert gradient_ratio(only_last, batch_size=2)["dcl_level_shares"] == pytest.approx([0, 0, 0, 0, 1])


def test_one_encoder_pass_gives_the_same_levels_and_distances():
    torch.manual_seed(0)
    encoder = build_model(
        "vqgan_encoder",
        {
            "ch": 4,
            "norm_groups": 2,
            "n_embed": 8,
            "embed_dim": 4,
            "z_channels": 4,
            "attn_resolutions": [],
            "num_res_blocks": 1,
        },
    )
    x = torch.rand(2, 3, 32, 32)
    levels, distances = encoder.levels_and_distances(x)
    for a, b in zip(levels, encoder.level_features(x)):
        assert torch.equal(a, b)
    assert torch.allclose(distances, encoder.squared_distances(x), atol=1e-6)


def test_codebook_usage_and_dead_code_restart_by_hand():
    codebook = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    z = torch.tensor([[0.1, 9.9], [0.0, 0.2]]).reshape(1, 2, 1, 2)  # positions (0.1, 0.0), (9.9, 0.2)
    assert unused_code_mask(z, codebook).tolist() == [False, False, True, True]
    moved = restart_dead_codes(codebook, z)
    assert moved == 2
    positions = {(0.1, 0.0), (9.9, 0.2)}
    assert {tuple(round(v, 4) for v in row.tolist()) for row in codebook[2:]} <= positions
    assert codebook[:2].tolist() == [[0.0, 0.0], [10.0, 0.0]]  # used codes stay

    class Fixed(torch.nn.Module):
        def squared_distances(self, x):
            # 2 positions, 4 codes: one uniform row (entropy log 4), one decisive row
            return torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 50.0, 50.0, 50.0]])

    usage = codebook_usage(Fixed(), torch.zeros(1))
    assert usage["codes"] == 4 and usage["codes_used"] == 1  # argmin ties pick code 0
    assert usage["max_entropy"] == pytest.approx(math.log(4))
    assert usage["entropy"] == pytest.approx(math.log(4) / 2, abs=1e-6)


def test_feature_distance_by_hand():
    out = [torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[0.0]]]]), torch.tensor([[[[5.0]]]])]
    neg = [torch.tensor([[[[0.0, 0.0]]]]), torch.tensor([[[[3.0]]]]), torch.tensor([[[[9.0]]]])]
    # 0.2 * mean(1, 2) + 0.3 * 3 = 0.3 + 0.9 (third level unused with two weights)
    assert float(feature_distance(out, neg, [0.2, 0.3])) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="weights"):
        feature_distance(out[:1], neg[:1], [0.2, 0.3])


def _tiny(method: str, **cfg):
    torch.manual_seed(0)
    student = build_model("edsr", {"num_feat": 4, "num_block": 1, "upscale": 2})
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2})
    encoder = build_model(
        "vqgan_encoder",
        {
            "ch": 4,
            "norm_groups": 2,
            "n_embed": 8,
            "embed_dim": 4,
            "z_channels": 4,
            "attn_resolutions": [],
            "num_res_blocks": 1,
        },
    )
    config = DCKDConfig(history_steps=[1], **cfg)
    return Distiller(student, teacher, encoder, method, config, ema_decay=0.5)


def test_mclir_subtracts_the_distance_to_its_lagged_copy_and_uses_no_teacher():
    distiller = _tiny("mclir", lambda_mclir=0.5)
    assert distiller.teacher is None and distiller.history is not None
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # move the student away from its copy so the distance is not zero
        for p in distiller.student.parameters():
            p.add_(0.05)
    terms = distiller.training_losses(lq, gt)
    assert set(terms) == {"rec", "neg", "total"}
    enc = distiller.encoder
    with torch.no_grad():
        s_out, n_out = distiller.student(lq), distiller.history(lq)
        expected = -0.5 * sum(
            w * (a - b).abs().mean()
            for a, b, w in zip(enc.level_features(s_out), enc.level_features(n_out), [0.2, 0.3, 0.5])
        )
    neg = float(terms["neg"].detach())
    assert neg == pytest.approx(float(expected), rel=1e-5) and neg < 0
    assert float(terms["total"]) == pytest.approx(float(terms["rec"] + terms["neg"]), rel=1e-6)
    # its negative model follows the raw student (history_source is ignored): his = 0.1 his + 0.9 student
    before = {k: v.clone() for k, v in distiller.history.state_dict().items()}
    distiller.after_optimizer_step(1)
    student = distiller.student.state_dict()
    for key, value in distiller.history.state_dict().items():
        assert torch.allclose(value, 0.1 * before[key] + 0.9 * student[key], atol=1e-6)


def test_fakd_with_label_consistency_runs():
    # 0.1 computed the LCR teacher output in an elif of the FAKD branch (NameError when both were on)
    distiller = _tiny(
        "fakd", fakd_student_positions=["conv_first", 0], fakd_teacher_positions=["conv_first", 0]
    )
    distiller.uses = {**distiller.uses, "lcr": True}
    terms = distiller.training_losses(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16))
    assert {"fakd", "lcr", "kd"} <= set(terms)


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_dmm_gradient_vanishes_for_flat_and_for_agreeing_peaked_distributions(mode):
    """Why the DMM term is inert unless teacher and student pick different, clearly separated codes: its
    gradient w.r.t. the distances is (C_S - C_T)/P (paper form), zero when both distributions are flat (a
    codebook whose distances barely differ, as the stand-in's and any random codebook's) and when both are
    peaked on the same code; it is large only where peaked distributions disagree. The released code form
    passes the student's probabilities through a second softmax, whose Jacobian vanishes at a peaked student
    distribution: it is inert there even when the teacher picks another code."""
    from paperzoo_dckd.losses import dmm_cross_entropy

    def grad(student, teacher):
        d = student.clone().requires_grad_(True)
        dmm_cross_entropy(d, teacher, mode).backward()
        return float(d.grad.abs().max())

    flat = torch.tensor([[1.00, 1.01, 0.99, 1.00]])
    peaked_a = torch.tensor([[0.0, 40.0, 40.0, 40.0]])
    peaked_b = torch.tensor([[40.0, 0.0, 40.0, 40.0]])
    assert grad(flat, flat + 0.01) < 0.01
    assert grad(peaked_a, peaked_a + 0.5) < 1e-12
    if mode == "paper":
        assert grad(peaked_a, peaked_b) > 0.9  # |C_S - C_T| = 1 at two codes
    else:
        assert grad(peaked_a, peaked_b) < 1e-12
