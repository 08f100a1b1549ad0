"""History model: schedule, closed form of Eq. 6, no gradient to negatives/teacher/encoder (notes 5.2 item 5)."""

from __future__ import annotations

import pytest
import torch
from paperzoo_dckd.configuration import DCKDConfig
from paperzoo_dckd.modeling_dckd import Distiller, HistorySchedule, ema_update_
from paperzoo_dckd.models import build_model
from torch import nn

TINY_ENCODER = dict(
    ch=4, num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=8, n_embed=16, norm_groups=2
)


def test_schedule_update_iterations_and_guard():
    schedule = HistorySchedule([2, 3], period=6)
    # period 1 (its 1..6): every 2; period 2 (7..12): every 3; beyond: the last step (3) is kept.
    assert schedule.update_iterations(18) == [2, 4, 6, 9, 12, 15, 18]
    assert schedule.step_at(1) == 2 and schedule.step_at(7) == 3 and schedule.step_at(10_000) == 3
    released = HistorySchedule([1000, 2000, 3000], 100_000)
    assert released.step_at(100_000) == 1000 and released.step_at(100_001) == 2000
    assert released.step_at(300_001) == 3000  # the released code would raise IndexError here
    with pytest.raises(ValueError):
        schedule.step_at(0)


def test_history_equals_closed_form_mix_of_ema_snapshots():
    alpha = 0.1
    his = nn.Linear(3, 2)
    h0 = [p.detach().clone() for p in his.parameters()]
    snapshots = []
    for _ in range(4):
        ema = nn.Linear(3, 2)
        snapshots.append([p.detach().clone() for p in ema.parameters()])
        ema_update_(his, ema, alpha)
    # his_k = alpha^k his_0 + (1 - alpha) * sum_j alpha^(k - j) e_j
    k = len(snapshots)
    for index, param in enumerate(his.parameters()):
        expected = alpha**k * h0[index] + sum(
            (1 - alpha) * alpha ** (k - 1 - j) * snapshots[j][index] for j in range(k)
        )
        assert torch.allclose(param, expected, atol=1e-6)


def _distiller(method: str, **cfg) -> Distiller:
    torch.manual_seed(0)
    student = build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2})
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 2, "upscale": 2})
    encoder = build_model("vqgan_encoder", TINY_ENCODER)
    config = DCKDConfig(history_steps=[2], history_period=100, **cfg)
    return Distiller(student, teacher, encoder, method, config, ema_decay=0.5, seed=0)


def test_history_starts_as_student_ema_and_follows_the_schedule():
    d = _distiller("dckd")
    for ps, ph in zip(d.student.parameters(), d.history.parameters()):
        assert torch.equal(ps, ph)
    with torch.no_grad():
        for p in d.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in d.history.parameters()]
    assert d.after_optimizer_step(1) is False  # not an update iteration: history unchanged, EMA moved
    assert all(torch.equal(a, b) for a, b in zip(before, d.history.parameters()))
    ema = [p.clone() for p in d.student_ema.parameters()]
    assert d.after_optimizer_step(2) is True
    ema = [p.clone() for p in d.student_ema.parameters()]  # EMA is updated first, then copied into history
    for b, e, h in zip(before, ema, d.history.parameters()):
        assert torch.allclose(h, 0.1 * b + 0.9 * e, atol=1e-6)


def test_history_source_student_uses_raw_weights():
    d = _distiller("dckd", history_source="student")
    with torch.no_grad():
        for p in d.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in d.history.parameters()]
    d.after_optimizer_step(2)
    for b, s, h in zip(before, d.student.parameters(), d.history.parameters()):
        assert torch.allclose(h, 0.1 * b + 0.9 * s, atol=1e-6)


def test_negatives_have_no_gradient_and_only_the_student_gets_gradients():
    d = _distiller("dckd_star")
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    negatives = d.negatives(lq)
    assert negatives.shape == (5, 2, 3, 32, 32) and not negatives.requires_grad
    # the first negative is the history model on the clean LR (released code)
    assert torch.allclose(negatives[0], d.history(lq), atol=1e-6)
    terms = d.training_losses(lq, gt)
    assert set(terms) == {"rec", "kd", "lcr", "dcl", "ce", "total"}
    terms["total"].backward()
    assert all(p.grad is not None for p in d.student.parameters())
    for net in (d.teacher, d.encoder, d.history, d.student_ema):
        assert all(p.grad is None and not p.requires_grad for p in net.parameters())


def test_negatives_count_without_clean_copy():
    d = _distiller("dckd", num_negatives=3, clean_negative=False)
    assert d.degraded_inputs(torch.rand(1, 3, 8, 8)).shape[0] == 3


@pytest.mark.parametrize(
    "method,terms",
    [
        ("scratch", {"rec"}),
        ("logits", {"rec", "kd"}),
        ("fakd", {"rec", "kd", "fakd"}),
        ("dckd", {"rec", "kd", "dcl", "ce"}),
        ("dckd_no_dcr", {"rec", "kd", "ce"}),
        ("dckd_no_dmm", {"rec", "kd", "dcl"}),
    ],
)
def test_each_method_uses_its_terms(method, terms):
    d = _distiller(method, fakd_student_positions=["conv_first", 0], fakd_teacher_positions=["conv_first", 1])
    out = d.training_losses(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16))
    assert set(out) == terms | {"total"}
    assert out["total"].item() == pytest.approx(
        sum(v.item() for k, v in out.items() if k != "total"), rel=1e-6
    )
    assert (d.history is not None) == ("dcl" in terms)


def test_ema_and_history_stay_in_eval_mode():
    d = _distiller("dckd")
    d.train()
    assert d.student.training and not d.student_ema.training and not d.history.training


def test_missing_parts_are_clear_errors():
    student = build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2})
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(student, None, None, "logits", DCKDConfig())
    with pytest.raises(ValueError, match="feature encoder"):
        Distiller(student, student, None, "dckd", DCKDConfig())
    with pytest.raises(ValueError, match="unknown method"):
        Distiller(student, student, None, "csd", DCKDConfig())
