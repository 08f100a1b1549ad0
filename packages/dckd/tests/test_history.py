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


@pytest.mark.parametrize(
    "method,term,weight",
    [
        ("fakd", "fakd", "fakd_weight"),
        ("dckd_star", "lcr", "lambda_lcr"),
        ("dckd", "dcl", "lambda_dcl"),
        ("dckd", "ce", "lambda_ce"),
    ],
)
def test_each_weighted_term_is_its_weight_times_its_loss(method, term, weight):
    # Eq. 10 is linear in each weight: doubling lambda doubles its term and leaves the others unchanged
    positions = {"fakd_student_positions": ["conv_first", 0], "fakd_teacher_positions": ["conv_first", 1]}
    lq, gt = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.rand(2, 3, 16, 16)
    base = getattr(DCKDConfig(), weight)
    one = _distiller(method, **positions, **{weight: base}).training_losses(lq, gt)
    two = _distiller(method, **positions, **{weight: 2 * base}).training_losses(lq, gt)
    assert one[term].item() > 0
    assert two[term].item() == pytest.approx(2 * one[term].item(), rel=1e-5)
    assert two["rec"].item() == pytest.approx(one["rec"].item(), rel=1e-6)


def test_the_dmm_term_uses_the_configured_cross_entropy_form():
    from paperzoo_dckd.losses import dmm_cross_entropy

    lq, gt = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)), torch.rand(2, 3, 16, 16)
    for mode in ("paper", "code"):
        d = _distiller("dckd_no_dcr", dmm_ce_mode=mode)
        with torch.no_grad():
            expected = d.config.lambda_ce * dmm_cross_entropy(
                d.encoder.squared_distances(d.student(lq)), d.encoder.squared_distances(d.teacher(lq)), mode
            )
            assert d.training_losses(lq, gt)["ce"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_label_consistency_ops_come_from_the_distillers_generator():
    lq, gt = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)), torch.rand(2, 3, 16, 16)
    values = []
    for global_seed in (10, 20):
        d = _distiller("dckd_star")
        torch.manual_seed(global_seed)  # after building: only the distiller's own generator may matter
        values.append(d.training_losses(lq, gt)["lcr"].item())
    assert values[0] == values[1]


def test_invalid_history_schedules_name_the_values():
    for steps, period in (([0], 5), ([], 5), ([1, 2], 0)):
        with pytest.raises(
            ValueError,
            match=rf"^invalid history schedule steps={steps} period={period}$".replace("[", r"\[").replace(
                "]", r"\]"
            ),
        ):
            HistorySchedule(steps, period)


@pytest.mark.parametrize("method", ["dckd_no_dmm", "dckd_no_dcr", "mclir"])
def test_each_encoder_term_alone_needs_the_encoder(method):
    student = build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2})
    with pytest.raises(ValueError, match=rf"^method '{method}' needs a feature encoder \(DCR/DMM/MCLIR\)$"):
        Distiller(student, student, None, method, DCKDConfig())


def test_construction_errors_name_the_method_and_the_network():
    from paperzoo_dckd.configuration import METHODS

    student = build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2})
    with pytest.raises(ValueError, match=rf"^unknown method 'csd'; valid: {', '.join(METHODS)}$"):
        Distiller(student, student, None, "csd", DCKDConfig())
    plain = nn.Conv2d(3, 3, 1)  # no forward_features, no forward_stages
    for role, s, t in (("student", plain, student), ("teacher", student, plain)):
        with pytest.raises(
            ValueError, match=rf"^FAKD needs a {role} with forward_features \(EDSR, RCAN or SwinIR\)$"
        ):
            Distiller(s, t, None, "fakd", DCKDConfig())
        with pytest.raises(ValueError, match=rf"^MiPKD needs a {role} with forward_stages and conv_first"):
            Distiller(s, t, None, "mipkd", DCKDConfig())


def test_defaults_are_the_released_ema_decay_and_seed_and_unused_networks_are_dropped():
    student = build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2})
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 2, "upscale": 2})
    encoder = build_model("vqgan_encoder", TINY_ENCODER)
    d = Distiller(student, teacher, encoder, "dckd", DCKDConfig())
    assert d.ema_decay == 0.999  # the released student EMA
    assert torch.equal(
        torch.rand(4, generator=d.generator), torch.rand(4, generator=torch.Generator().manual_seed(0))
    )
    # Logits never runs the encoder, Scratch and MCLIR never run the teacher: they are not kept
    assert Distiller(student, teacher, encoder, "logits", DCKDConfig()).encoder is None
    assert Distiller(student, teacher, encoder, "mclir", DCKDConfig()).teacher is None
    # DUKD's label-consistency ops: each with probability 0.5 by default
    from paperzoo_dckd.modeling_dckd import InvertibleAugment

    ops = InvertibleAugment().sample(4000, torch.Generator().manual_seed(0))
    assert torch.allclose(ops.float().mean(0), torch.full((4,), 0.5), atol=0.03)


def test_the_distiller_pickles_without_its_generator_and_forwards_the_student():
    import pickle

    d = _distiller("dckd")
    lq = torch.rand(1, 3, 8, 8)
    assert torch.equal(d(lq), d.student(lq))
    first = torch.rand(3, generator=d.generator)  # the generator now exists and has advanced
    state = d.__getstate__()
    assert state["_generator"] is None and d._generator is not None  # the live module keeps its own
    assert all(state[k] is d.__dict__[k] for k in d.__dict__ if k != "_generator")
    copy_ = pickle.loads(pickle.dumps(d))
    # the copy starts its generator afresh from the seed (spawned workers re-create it)
    assert torch.equal(torch.rand(3, generator=copy_.generator), first)


def test_the_weighted_terms_equal_their_weights_times_the_losses_recomputed():
    # Eq. 10 term by term, each loss recomputed from the networks (the distiller's generator replayed for the
    # draws: the LCR ops, then the negatives' degradations)
    from paperzoo_dckd.losses import contrastive_ratio_loss, fakd_loss

    lq, gt = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4)), torch.rand(2, 3, 16, 16)
    positions = {"fakd_student_positions": ["conv_first", 0], "fakd_teacher_positions": ["conv_first", 1]}
    d = _distiller("fakd", **positions)
    with torch.no_grad():
        s_feats = d.student.forward_features(lq, positions["fakd_student_positions"])[1]
        t_feats = d.teacher.forward_features(lq, positions["fakd_teacher_positions"])[1]
        assert d.training_losses(lq, gt)["fakd"].item() == pytest.approx(
            d.config.fakd_weight * fakd_loss(s_feats, t_feats).item(), rel=1e-5
        )
    d = _distiller("dckd_star", lambda_lcr=0.7, lambda_dcl=0.3)
    replay = torch.Generator()
    replay.set_state(d.generator.get_state())
    with torch.no_grad():
        terms = d.training_losses(lq, gt)
        s_out = d.student(lq)
        ops = d.augment.sample(2, replay)
        t_lcr = d.augment.invert(d.teacher(d.augment.apply(lq, ops)), ops)
        assert terms["lcr"].item() == pytest.approx(0.7 * (s_out - t_lcr).abs().mean().item(), rel=1e-5)
        negatives = d.negatives(lq, replay)
        neg = [f.view(5, 2, *f.shape[1:]) for f in d.encoder.level_features(negatives.flatten(0, 1))]
        ratio = contrastive_ratio_loss(
            d.encoder.level_features(s_out),
            d.encoder.level_features(d.teacher(lq)),
            neg,
            d.config.layer_weights,
        )
        assert terms["dcl"].item() == pytest.approx(0.3 * ratio.item(), rel=1e-4)
