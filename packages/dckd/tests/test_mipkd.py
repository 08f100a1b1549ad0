"""MiPKD (Li et al., arXiv 2404.02573; DCKD Table 2), reconstructed from its paper: the staged forward of the
backbones, the feature prior mixer's loss terms by hand, the block prior mixer's routing, and training."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from paperzoo_dckd.configuration import DCKDConfig, ExperimentConfig, MiPKDConfig
from paperzoo_dckd.losses import prior_mix, stage_l1
from paperzoo_dckd.modeling_dckd import Distiller, PriorMixer, mipkd_terms
from paperzoo_dckd.models import build_model
from paperzoo_dckd.models.common import stage_bounds
from paperzoo_dckd.module import DistillationModule
from paperzoo_dckd.train import load_train_pairs, train_student
from torch import nn

from paperzoo_shared.config import load_config
from paperzoo_shared.lightning_resume import KillAtStep, SimulatedKill, assert_same_tensors

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# -- the staged forward of the backbones ------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,options",
    [
        ("edsr", {"num_feat": 8, "num_block": 4, "upscale": 2}),
        ("rcan", {"num_feat": 16, "num_group": 2, "num_block": 1, "upscale": 3}),
        ("swinir", {"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "window_size": 4, "upscale": 2}),
    ],
)
def test_staged_forward_equals_the_forward_from_every_stage(arch, options):
    torch.manual_seed(0)
    net = build_model(arch, options).eval()
    x = torch.rand(2, 3, 10, 9)  # not a multiple of SwinIR's window: the padding and crop go through too
    with torch.no_grad():
        out = net(x)
        staged, feats, state = net.forward_stages(x, 2)
        assert torch.equal(staged, out) and len(feats) == 2
        for stage, feat in enumerate(feats, start=1):
            assert torch.equal(net.forward_from_stage(feat, stage, 2, state), out)


def test_stage_bounds_by_hand_and_uneven_splits_are_errors():
    assert stage_bounds(4, 2, "edsr") == [2, 4]
    assert stage_bounds(6, 3, "swinir") == [2, 4, 6]
    assert stage_bounds(10, 1, "rcan") == [10]
    with pytest.raises(ValueError, match="4 blocks cannot be split into 3"):
        stage_bounds(4, 3, "edsr")


# -- the feature prior mixer by hand ----------------------------------------------------------------------


def test_prior_mix_and_stage_l1_by_hand():
    z_t = torch.tensor([[[[1.0]], [[2.0]], [[3.0]]]])  # (1, 3, 1, 1)
    z_s = torch.tensor([[[[10.0]], [[20.0]], [[30.0]]]])
    mask = torch.tensor([[[[1.0]], [[0.0]], [[1.0]]]])
    assert prior_mix(z_t, z_s, mask).flatten().tolist() == [1.0, 20.0, 3.0]
    # sum over stages of the mean absolute difference: (|1-2| + |4-1|)/2 + |0-5| = 2 + 5
    a, b = torch.tensor([1.0, 4.0]), torch.tensor([2.0, 1.0])
    assert stage_l1([a, torch.tensor([0.0])], [b, torch.tensor([5.0])]).item() == pytest.approx(7.0)
    with pytest.raises(ValueError):
        prior_mix(z_t, z_s, mask[:, :2])


def _set_centre(conv: nn.Conv2d, matrix: list[list[float]]) -> None:
    """A 3x3 convolution that acts on a 1x1 map as the linear map ``matrix`` (out x in), no bias."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = torch.tensor(matrix)
        conv.bias.zero_()


def _hand_mixer(**config) -> PriorMixer:
    # teacher width 2, student width 1, latent 2, one stage
    mixer = PriorMixer(1, 2, MiPKDConfig(stages=1, **config))
    _set_centre(mixer.encode_teacher[0], [[1.0, 0.0], [0.0, 1.0]])  # E_T = identity
    _set_centre(mixer.encode_student[0], [[2.0], [-1.0]])  # E_S: s -> (2s, -s)
    _set_centre(mixer.decode[0], [[1.0, 0.0], [0.0, 3.0]])  # D = diag(1, 3)
    return mixer


F_T = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
F_S = torch.tensor([3.0]).view(1, 1, 1, 1)


def test_feature_prior_mixer_by_hand():
    mixer = _hand_mixer()
    mask = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # first latent channel from the teacher, second student
    mixed, reconstructed = mixer([F_T], [F_S], [mask])
    # z_T = (1, 2), z_S = (6, -3); mix = (1, -3); D(mix) = (1, -9); D(z_T) = (1, 6)
    assert mixed[0].flatten().tolist() == [1.0, -9.0]
    assert reconstructed[0].flatten().tolist() == [1.0, 6.0]
    # FPM: (|1 - 1| + |-9 - 2|) / 2 = 5.5; auto-encoder: (|1 - 1| + |6 - 2|) / 2 = 2
    assert stage_l1(mixed, [F_T]).item() == pytest.approx(5.5)
    assert stage_l1(reconstructed, [F_T]).item() == pytest.approx(2.0)


class _ToyTeacher(nn.Module):
    """A stand-in teacher whose remaining stages and tail map a stage feature f to 2 f + head."""

    def __init__(self, img_range: float):
        super().__init__()
        self.img_range = img_range

    def forward_from_stage(self, feature, stage, num_stages, state):
        assert (stage, num_stages) == (1, 1)
        return 2 * feature + state["head"]


@pytest.mark.parametrize("img_range,unit", [(1.0, 1.0), (255.0, 1 / 255)])
def test_mipkd_terms_by_hand(img_range, unit):
    # teacher_prob 0: the mask takes the student everywhere; mix = z_S = (6, -3), D(mix) = (6, -9)
    mixer = _hand_mixer(teacher_prob=0.0, lambda_fpm=1.0, lambda_bpm=2.0, lambda_ae=3.0)
    state = {"head": torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)}
    t_out = torch.tensor([2.0, 4.0]).view(1, 2, 1, 1)
    terms = mipkd_terms(
        mixer, _ToyTeacher(img_range), [F_S], t_out, [F_T], state, torch.Generator().manual_seed(0)
    )
    # FPM: (|6 - 1| + |-9 - 2|) / 2 = 8; AE: 2 (above), x 3; in image units both are divided by img_range
    assert terms["fpm"].item() == pytest.approx(8.0 * unit)
    assert terms["ae"].item() == pytest.approx(3 * 2.0 * unit)
    # BPM: routed = 2 * (6, -9) + 0.5 = (12.5, -17.5); (|12.5 - 2| + |-17.5 - 4|) / 2 = 16, x 2 (not rescaled)
    assert terms["bpm"].item() == pytest.approx(2 * 16.0)


def test_mask_keeps_the_teacher_with_the_configured_probability():
    mixer = PriorMixer(4, 8, MiPKDConfig(stages=1, teacher_prob=0.25))
    (mask,) = mixer.sample_masks([torch.zeros(4, 8, 16, 16)], torch.Generator().manual_seed(0))
    assert mask.shape == (4, 8, 16, 16) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.mean().item() == pytest.approx(0.25, abs=0.02)  # 8192 draws: 4 standard errors


# -- the block prior mixer and the distiller --------------------------------------------------------------


def _mipkd_distiller(stages: int = 2) -> Distiller:
    torch.manual_seed(0)
    student = build_model("edsr", {"num_feat": 4, "num_block": 2, "upscale": 2})
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 4, "upscale": 2})
    return Distiller(student, teacher, None, "mipkd", DCKDConfig(mipkd=MiPKDConfig(stages=stages)), seed=0)


def _drawn_stage(d: Distiller, lq: torch.Tensor) -> int:
    """The BPM stage the distiller's next step draws (replays its generator: K masks, then the stage)."""
    replay = torch.Generator().manual_seed(0)
    replay.set_state(d.generator.get_state())
    with torch.no_grad():
        _, feats, _ = d.teacher.forward_stages(lq, d.config.mipkd.stages)
    d.mixer.sample_masks(feats, replay)
    return int(torch.randint(1, d.config.mipkd.stages + 1, (1,), generator=replay))


def test_mipkd_terms_and_where_the_block_mixer_gradient_goes():
    d = _mipkd_distiller()
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    seen = set()
    for _ in range(12):
        stage = _drawn_stage(d, lq)
        terms = d.training_losses(lq, gt)
        assert set(terms) == {"rec", "kd", "fpm", "bpm", "ae", "total"}
        assert terms["total"].item() == pytest.approx(sum(terms[k].item() for k in terms if k != "total"))
        params = dict(d.student.named_parameters())
        grads = torch.autograd.grad(
            terms["bpm"], [params["body.0.conv1.weight"], params["body.1.conv1.weight"]], allow_unused=True
        )
        # the routed path runs the student's first `stage` stages (one block each), then the teacher's
        assert grads[0] is not None and grads[0].abs().sum() > 0
        assert (grads[1] is not None) == (stage == 2)
        seen.add(stage)
    assert seen == {1, 2}  # the stage is drawn at random
    # the teacher stays frozen; the mixer is trained with the student, and the optimizer sees both
    assert all(not p.requires_grad for p in d.teacher.parameters())
    assert len(d.trainable_parameters()) == len(list(d.student.parameters())) + len(
        list(d.mixer.parameters())
    )
    module = DistillationModule(d, ExperimentConfig().train, scale=2)
    optimizer = module.configure_optimizers()["optimizer"]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(d.trainable_parameters())


def test_other_methods_have_no_mixer_and_bad_networks_are_errors():
    torch.manual_seed(0)
    student = build_model("edsr", {"num_feat": 4, "num_block": 2, "upscale": 2})
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 3, "upscale": 2})
    logits = Distiller(student, teacher, None, "logits", DCKDConfig())
    assert logits.mixer is None and len(logits.trainable_parameters()) == len(list(student.parameters()))
    d = Distiller(student, teacher, None, "mipkd", DCKDConfig())
    with pytest.raises(ValueError, match="3 blocks cannot be split into 2"):
        d.training_losses(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(student, None, None, "mipkd", DCKDConfig())


# -- Lightning: trains, and a killed run resumes bit for bit -----------------------------------------------

TINY = [
    "data.skimage_crop=48",
    "teacher.options={num_feat: 8, num_block: 2}",
    "student.options={num_feat: 4, num_block: 2}",
    "train.iterations=4",
    "train.batch_size=2",
    "train.lr_patch=8",
    "train.checkpoint_every=2",
    "train.threads=0",
]


class _FinalState(L.Callback):
    def __init__(self) -> None:
        self.state: dict | None = None

    def on_train_end(self, trainer, pl_module):
        self.state = copy.deepcopy(pl_module.state_dict())


def test_killed_mipkd_run_resumes_bit_for_bit(tmp_path):
    config = load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=TINY)
    torch.manual_seed(0)
    teacher = build_model("edsr", {"num_feat": 8, "num_block": 2, "upscale": 2})
    pairs = load_train_pairs(config)

    def run(folder, kill=None):
        if kill is not None:
            with pytest.raises(SimulatedKill):
                train_student(config, "mipkd", 0, folder, teacher, None, pairs, callbacks=[KillAtStep(kill)])
        final = _FinalState()
        student, _ = train_student(config, "mipkd", 0, folder, teacher, None, pairs, callbacks=[final])
        return final.state, student

    reference, ref_student = run(tmp_path / "straight")
    resumed, student = run(tmp_path / "killed", kill=2)
    assert {k.split(".")[1] for k in reference} == {"student", "student_ema", "mixer"}
    assert_same_tensors(reference, resumed, "student + EMA + MiPKD mixer")
    assert_same_tensors(ref_student.state_dict(), student.state_dict(), "final.pt (EMA)")


def test_mipkd_settings_leave_the_cached_runs_valid_and_fit_the_paper_networks():
    from paperzoo_dckd.configuration import fingerprint_dict
    from paperzoo_dckd.models import PAPER_CONFIGS

    mini = load_config(ExperimentConfig, CONFIGS / "mini.yaml")
    assert "mipkd" in mini.methods and mini.paper_rows["mipkd"] == "rcan_x2_urban100_mipkd"
    # the new settings are left out of the cache fingerprint while they hold their defaults
    assert "mipkd" not in fingerprint_dict(mini)["dckd"]
    changed = load_config(ExperimentConfig, CONFIGS / "mini.yaml", overrides=["dckd.mipkd.stages=1"])
    assert fingerprint_dict(changed)["dckd"]["mipkd"]["stages"] == 1
    # the default 2 stages divide every Table 2 body: SwinIR 6 / 4 RSTBs, RCAN 10 / 10 groups
    stages = MiPKDConfig().stages
    for name, blocks in (("swinir", "depths"), ("rcan", "num_group")):
        for role in ("teacher", "student"):
            value = PAPER_CONFIGS[f"{name}_{role}"][blocks]
            stage_bounds(len(value) if isinstance(value, list) else value, stages, name)
    for variant in ("swinir_x2", "rcan_x2", "swinir_x4"):
        config = load_config(ExperimentConfig, CONFIGS / "full" / f"{variant}.yaml")
        assert "mipkd" in config.methods


class _NoRangeTeacher(_ToyTeacher):
    """The toy teacher without an ``img_range`` attribute (a backbone that works in [0, 1] units)."""

    def __init__(self):
        super().__init__(1.0)
        del self.img_range


@pytest.mark.parametrize(
    "teacher,image_units",
    [(_ToyTeacher(255.0), False), (_NoRangeTeacher(), True)],
    ids=["image_units_off", "no_img_range"],
)
def test_mipkd_feature_terms_are_not_rescaled_without_a_range(teacher, image_units):
    # the hand case of test_mipkd_terms_by_hand with unit 1: image_units off, or a teacher without img_range
    # (whose features are already in image units) - FPM 8, AE 3 x 2, BPM 2 x 16 as there
    mixer = _hand_mixer(
        teacher_prob=0.0, lambda_fpm=1.0, lambda_bpm=2.0, lambda_ae=3.0, image_units=image_units
    )
    state = {"head": torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)}
    t_out = torch.tensor([2.0, 4.0]).view(1, 2, 1, 1)
    terms = mipkd_terms(mixer, teacher, [F_S], t_out, [F_T], state, torch.Generator().manual_seed(0))
    assert terms["fpm"].item() == pytest.approx(8.0)
    assert terms["ae"].item() == pytest.approx(6.0)
    assert terms["bpm"].item() == pytest.approx(32.0)


def test_masks_come_from_the_given_generator_and_go_to_the_features_device():
    mixer = PriorMixer(4, 8, MiPKDConfig(stages=1, teacher_prob=0.5))
    feats = [torch.zeros(2, 8, 3, 3)]
    torch.manual_seed(1)  # the global stream must not matter
    (first,) = mixer.sample_masks(feats, torch.Generator().manual_seed(7))
    torch.manual_seed(2)
    (second,) = mixer.sample_masks(feats, torch.Generator().manual_seed(7))
    draws = torch.rand((2, 8, 3, 3), generator=torch.Generator().manual_seed(7)) < 0.5
    assert torch.equal(first, second) and torch.equal(first, draws.float())
    (on_meta,) = mixer.sample_masks(
        [torch.zeros(2, 8, 3, 3, device="meta")], torch.Generator().manual_seed(7)
    )
    assert on_meta.device.type == "meta" and on_meta.dtype == torch.float32


def test_mipkd_errors_name_the_counts_and_shapes():
    mixer = _hand_mixer()
    with pytest.raises(
        ValueError, match=r"^MiPKD needs 1 teacher features, student features and masks, got 2, 1, 1$"
    ):
        mixer([F_T, F_T], [F_S], [F_T])
    with pytest.raises(
        ValueError, match=r"^teacher latent \(1, 2\), student latent \(1, 2\) and mask \(1, 3\) must"
    ):
        prior_mix(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"^1 predictions for 2 targets \(need one per stage\)$"):
        stage_l1([torch.zeros(2)], [torch.zeros(2)] * 2)
    with pytest.raises(ValueError, match=r"^0 predictions for 0 targets"):
        stage_l1([], [])
    with pytest.raises(ValueError, match=r"^shapes differ: \(2,\) vs \(3,\)$"):
        stage_l1([torch.zeros(2)], [torch.zeros(3)])


class _ConvFirstOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_first = nn.Conv2d(3, 4, 3)


def test_feature_channels_needs_conv_first_and_forward_stages():
    from paperzoo_dckd.modeling_dckd import feature_channels

    assert (
        feature_channels(build_model("edsr", {"num_feat": 8, "num_block": 2, "upscale": 2}), "student") == 8
    )
    message = r"^MiPKD needs a teacher with forward_stages and conv_first \(EDSR, RCAN or SwinIR\), got {}$"
    with pytest.raises(ValueError, match=message.format("Identity")):
        feature_channels(nn.Identity(), "teacher")  # no conv_first at all
    with pytest.raises(ValueError, match=message.format("_ConvFirstOnly")):
        feature_channels(_ConvFirstOnly(), "teacher")  # conv_first but no forward_stages
