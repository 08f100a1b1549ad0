"""Unit tests of the model parts (paper notes sec. 7.1): MRRP, AE target and boxes, RPN bookkeeping, WSDDN,
pseudo-label mining, the branch-supervision table, EMA; and that the full preset builds."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from paperzoo_huwsod import modeling_huwsod as M
from paperzoo_huwsod.configuration import AEConfig, HeadConfig, HUWSODConfig, RPNConfig, apply_method

from paperzoo_shared.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ---------------------------------------------------------------------------------------------------- MRRP
def test_mrrp_branches_equal_plain_convs_with_the_shared_weight():
    torch.manual_seed(0)
    conv = M.MRRPConv(3, 5, [1, 2, 4]).eval()
    x = torch.randn(2, 3, 11, 13)
    outs = conv([x, x, x])
    plain = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    plain.weight.data.copy_(conv.weight.data)
    torch.testing.assert_close(outs[0], conv.norm(plain(x)))
    for out, d in zip(outs, [1, 2, 4]):
        assert out.shape == (2, 5, 11, 13)
        torch.testing.assert_close(out, conv.norm(F.conv2d(x, conv.weight, None, 1, d, d)))


def test_mrrp_gradients_accumulate_into_one_weight():
    torch.manual_seed(0)
    conv = M.MRRPConv(2, 3, [1, 2, 4]).eval()
    x = torch.randn(1, 2, 9, 9)
    sum(o.square().sum() for o in conv([x, x, x])).backward()
    total = conv.weight.grad.clone()
    per_branch = torch.zeros_like(total)
    for d in (1, 2, 4):
        w = conv.weight.detach().clone().requires_grad_(True)
        conv.norm(F.conv2d(x, w, None, 1, d, d)).square().sum().backward()
        per_branch += w.grad
    torch.testing.assert_close(total, per_branch)


def test_backbone_stacks_branches_batch_major_at_stride_8(config):
    model = M.MRRPBackbone("tiny", [4, 4, 8, 8], [1, 2, 4]).eval()
    out = model(torch.randn(2, 3, 64, 48))
    assert out.shape == (6, 8, 8, 6)  # 3 branches x 2 images, H/8, W/8


def _rgb_model_config(config):
    cfg = copy.deepcopy(apply_method(config, "huwsod"))
    cfg.model.backbone.input_format = "rgb"
    cfg.model.backbone.pixel_mean = [123.675, 116.28, 103.53]
    cfg.model.backbone.pixel_std = [58.395, 57.12, 57.375]
    return cfg


def test_batch_padding_is_the_mean_colour_after_normalisation(config):
    """detectron2 normalises, then pads with 0: the padding is the mean colour, never black (regression:
    raw 0-255 batches padded with 0 gave (0 - mean) / std = -2.1 at the bottom/right of smaller images)."""
    from paperzoo_huwsod.data import pad_batch

    cfg = _rgb_model_config(config)
    model = M.HUWSOD(cfg.model, num_classes=3)
    white = torch.full((3, 16, 24), 255.0)
    black = torch.zeros(3, 24, 16)
    batch, sizes = pad_batch([white, black], 8)
    assert batch.shape == (2, 3, 24, 24) and sizes == [(16, 24), (24, 16)]
    x = model.normalize(batch, sizes)
    # hand-computed (255 - mean) / std and (0 - mean) / std per RGB channel
    white_value = torch.tensor([131.325 / 58.395, 138.72 / 57.12, 151.47 / 57.375])
    black_value = torch.tensor([-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375])
    torch.testing.assert_close(x[0, :, :16, :], white_value[:, None, None].expand(3, 16, 24))
    torch.testing.assert_close(x[1, :, :, :16], black_value[:, None, None].expand(3, 24, 16))
    assert torch.all(x[0, :, 16:, :] == 0) and torch.all(x[1, :, :, 16:] == 0)


def _mean_padded(images: list[torch.Tensor], mean: list[float]) -> torch.Tensor:
    """Independent padding: raw images padded with the pixel mean colour (RGB), bottom/right, to 24 x 24."""
    out = torch.tensor(mean).view(1, 3, 1, 1).repeat(len(images), 1, 24, 24)
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out


def test_features_of_a_padded_batch_equal_mean_colour_padding(config):
    from paperzoo_huwsod.data import pad_batch

    cfg = _rgb_model_config(config)
    torch.manual_seed(0)
    model = M.HUWSOD(cfg.model, num_classes=3).eval()
    images = [torch.rand(3, 16, 24) * 255, torch.rand(3, 24, 16) * 255]
    batch, sizes = pad_batch(images, 8)
    reference = model.features(_mean_padded(images, cfg.model.backbone.pixel_mean))
    torch.testing.assert_close(model.features(batch, sizes), reference)


def test_stage0_classifier_pads_with_the_mean_colour(config):
    from paperzoo_huwsod.data import pad_batch
    from paperzoo_huwsod.train import Stage0Classifier

    cfg = _rgb_model_config(config)
    torch.manual_seed(0)
    clf = Stage0Classifier(cfg, 3).eval()
    images = [torch.rand(3, 16, 24) * 255, torch.rand(3, 24, 16) * 255]
    batch, sizes = pad_batch(images, 8)
    reference = clf(_mean_padded(images, cfg.model.backbone.pixel_mean), sizes)
    torch.testing.assert_close(clf(batch, sizes), reference)


# ---------------------------------------------------------------------------------------------------- AE
def _square_features(inside: tuple[slice, slice], negate: bool = False) -> torch.Tensor:
    feats = torch.zeros(1, 4, 8, 8)
    feats[0, :, :, :] = torch.tensor([1.0, 0.5, 0.2, 0.0])[:, None, None]
    feats[0, :, inside[0], inside[1]] = torch.tensor([0.1, 2.0, 1.5, 3.0])[:, None, None]
    return -feats if negate else feats


def test_pca_target_marks_the_square_with_a_deterministic_sign():
    square = (slice(2, 5), slice(3, 7))
    expected = torch.zeros(1, 8, 8)
    expected[0, 2:5, 3:7] = 1.0
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    for negate in (False, True):
        target = M.pca_sign_target(_square_features(square, negate), valid)
        torch.testing.assert_close(target, expected)


def test_pca_target_ignores_padding():
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    valid[0, :, 6:] = False
    target = M.pca_sign_target(_square_features((slice(2, 5), slice(3, 7))), valid)
    assert target[0, :, 6:].sum() == 0


def test_ae_boxes_are_components_times_stride_with_fallback():
    ae = M.AEProposalGenerator(4, AEConfig(min_component=40), stride=8, min_size=10.0)
    code = torch.full((3, 1, 8, 8), -1.0)  # 3 branches x 1 image
    code[0, 0, 2:5, 3:7] = 1.0  # branch 0: one 12-cell component (kept: min(40, 12) = 12)
    code[1, 0, 0:2, 0:2] = 1.0  # branch 1: 4 cells -> box 16 x 16 > min_size
    valid = torch.ones(3, 8, 8, dtype=torch.bool)
    boxes, branches = ae.boxes(code, valid, [(64, 64)], num_branch=3)[0]
    assert boxes.tolist() == [[24.0, 16.0, 56.0, 40.0], [0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 64.0, 64.0]]
    assert branches.tolist() == [0, 1, 2]  # branch 2 has no component: the whole image
    assert M.ae_channels(512) == [512, 256, 128, 64, 32, 1]
    assert M.ae_channels(64) == [64, 32, 1]


def test_ae_losses_per_branch():
    torch.manual_seed(0)
    ae = M.AEProposalGenerator(8, AEConfig(), stride=8, min_size=1.0)
    feats = torch.rand(6, 8, 5, 5)
    code, recon, target = ae(feats, torch.ones(6, 5, 5, dtype=torch.bool))
    losses = ae.losses(feats, code, recon, target, num_branch=3)
    assert sorted(losses) == [f"loss_{k}_{b}" for k in ("decode", "encode") for b in range(3)]
    expected = 0.1 * F.binary_cross_entropy_with_logits(code[:2, 0], target[:2])
    torch.testing.assert_close(losses["loss_encode_0"], expected)


# ---------------------------------------------------------------------------------------------------- RPN
def test_anchor_matcher_with_low_quality_matches():
    iou = torch.tensor(
        [
            [0.10, 0.65, 0.30, 0.00, 0.19],
            [0.05, 0.20, 0.50, 0.70, 0.10],
            [0.00, 0.00, 0.35, 0.10, 0.00],
        ]
    )
    matched, labels = M.match_labels(iou, 0.2, 0.6, allow_low_quality=True)
    assert matched.tolist() == [0, 0, 1, 1, 0]
    # anchor 0 (0.10) and 4 (0.19) negative; anchor 1 (0.65) and 3 (0.70) positive; anchor 2 (0.50)
    # would be ignored but is the best anchor of GT 2 (0.35): low-quality positive
    assert labels.tolist() == [0, 1, 1, 1, 0]
    _, strict = M.match_labels(iou, 0.2, 0.6, allow_low_quality=False)
    assert strict.tolist() == [0, 1, -1, 1, 0]


def test_rpn_grouped_topk_nms_and_level_ids():
    cfg = RPNConfig(anchor_sizes=[[8.0, 16.0], [24.0, 32.0], [48.0, 64.0]], aspect_ratios=[1.0], pre_nms_topk=3,
                    post_nms_topk=10, nms_thresh=0.7)  # fmt: skip
    rpn = M.SelfSupervisedRPN(4, cfg, stride=8, min_size=0.0).eval()
    h = w = 4
    logits, deltas, anchors = [], [], []
    for b in range(3):
        anchors.append(rpn.anchors(b, h, w, torch.device("cpu")))
        score = torch.arange(h * w * 2, dtype=torch.float32).view(1, -1) / 100 + b  # branch 2 scores highest
        logits.append(score)
        deltas.append(torch.zeros(1, h * w * 2, 4))
    out = M.RPNOutput(logits, deltas, anchors)
    props = rpn.proposals(out, [(32, 32)])[0]
    assert len(props["boxes"]) == 10
    assert torch.all(props["logits"][:-1] >= props["logits"][1:])  # sorted by objectness
    assert set(props["branch"].tolist()) <= {0, 1, 2}
    assert props["branch"][0].item() == 2
    # every kept box comes from one (branch, anchor) group's top-3 and is an anchor clipped to the image
    ids = M.grid_anchors(rpn.cells[2], h, w, 8)
    clipped = ids.clamp(0, 32)
    assert any(torch.allclose(props["boxes"][0], c) for c in clipped)


def test_rpn_anchor_order_matches_detectron2():
    cell = M.cell_anchors([16.0], [0.5, 1.0, 2.0])
    torch.testing.assert_close(cell[1], torch.tensor([-8.0, -8.0, 8.0, 8.0]))
    w = (256 / 0.5) ** 0.5
    torch.testing.assert_close(cell[0], torch.tensor([-w / 2, -0.25 * w, w / 2, 0.25 * w]))
    grid = M.grid_anchors(cell, 2, 3, 8)
    assert grid.shape == (2 * 3 * 3, 4)
    torch.testing.assert_close(
        grid[3 * 1 + 1], torch.tensor([0.0, 0.0, 0.0, 0.0]) + torch.tensor([8.0, 0.0, 8.0, 0.0]) + cell[1]
    )


def test_rpn_loss_normalised_by_sampled_batch():
    torch.manual_seed(0)
    cfg = RPNConfig(anchor_sizes=[[16.0], [32.0], [64.0]], aspect_ratios=[1.0], batch_size_per_image=8)
    rpn = M.SelfSupervisedRPN(4, cfg, stride=8, min_size=0.0)
    out = rpn(torch.randn(3, 4, 4, 4), num_branch=3)
    losses = rpn.losses(out, [torch.tensor([[0.0, 0.0, 16.0, 16.0]])])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert losses["loss_rpn_cls"].item() > 0


# ---------------------------------------------------------------------------------------------------- WSDDN
def test_wsddn_scores_sum_to_image_score_and_softmax_is_per_image():
    torch.manual_seed(0)
    cls, det = torch.randn(8, 4), torch.randn(8, 4)
    region, image = M.wsddn_scores(cls, det, [3, 5])
    torch.testing.assert_close(image[0], region[:3].sum(0))
    torch.testing.assert_close(image[1], region[3:].sum(0))
    assert (image <= 1).all() and (image > 0).all()
    det2 = det.clone()
    det2[3:] += torch.randn(5, 4) * 10  # another image's proposals must not change image 0
    region2, _ = M.wsddn_scores(cls, det2, [3, 5])
    torch.testing.assert_close(region2[:3], region[:3])
    # the det softmax runs over regions: per image and class, sum_r softmax_r = 1
    torch.testing.assert_close(F.softmax(det[:3], 0).sum(0), torch.ones(4))


# ---------------------------------------------------------------------------------------------------- mining
def _boxes(r: int, k: int) -> torch.Tensor:
    base = torch.stack(
        [torch.arange(r) * 20.0, torch.zeros(r), torch.arange(r) * 20.0 + 10, torch.full((r,), 10.0)], 1
    )
    return base[:, None, :].expand(r, k, 4).clone()


def test_mist_mining_top_fraction_threshold_nms_and_weights():
    r, k = 20, 3
    scores = torch.zeros(r, k + 1)
    scores[4, 0], scores[7, 0] = 0.9, 0.03  # class 0: second below the 0.05 threshold
    scores[2, 2], scores[9, 2] = 0.8, 0.7  # class 2: two disjoint boxes, both kept
    boxes = _boxes(r, k)
    image_scores = torch.tensor([0.6, 0.1, 0.3])
    out = M.mine_pseudo_boxes(scores, boxes, [0, 2], image_scores, HeadConfig())
    got = sorted(zip(out["classes"].tolist(), out["boxes"][:, 0].tolist(), out["weights"].tolist()))
    assert got == [
        (0, 80.0, pytest.approx(0.6)),
        (2, 40.0, pytest.approx(0.3)),
        (2, 180.0, pytest.approx(0.3)),
    ]
    # overlapping boxes (IoU > 0.01) of one class: NMS keeps the better one
    boxes[9, 2] = boxes[2, 2] + torch.tensor([1.0, 0.0, 1.0, 0.0])
    out = M.mine_pseudo_boxes(scores, boxes, [2], image_scores, HeadConfig())
    assert out["boxes"].tolist() == [boxes[2, 2].tolist()]


def test_mist_keeps_top1_even_below_threshold_and_uses_int_fraction():
    r, k = 25, 2  # int(25 * 0.1) = 2 candidates per class
    scores = torch.full((r, k + 1), 0.001)
    scores[3, 1] = 0.01
    out = M.mine_pseudo_boxes(scores, _boxes(r, k), [1], torch.tensor([0.2, 0.4]), HeadConfig())
    assert out["boxes"].tolist() == [_boxes(r, k)[3, 1].tolist()]


def test_oicr_mining_top1_with_score_weight_and_dummy_fallback():
    r, k = 6, 2
    scores = torch.rand(r, k + 1, generator=torch.Generator().manual_seed(0))
    cfg = HeadConfig(mining="oicr_top1", pgt_weight="top_score")
    out = M.mine_pseudo_boxes(scores, _boxes(r, k), [1], torch.tensor([0.5, 0.5]), cfg)
    top = int(scores[:, 1].argmax())
    assert out["boxes"].tolist() == [_boxes(r, k)[top, 1].tolist()]
    assert out["weights"].item() == pytest.approx(scores[top, 1].item())
    dummy = M.mine_pseudo_boxes(scores, _boxes(r, k), [], torch.tensor([0.5, 0.5]), cfg)
    assert dummy["boxes"].tolist() == [list(M.DUMMY_BOX)] and dummy["classes"].tolist() == [0]
    assert dummy["weights"].tolist() == [1.0]


def test_label_proposals_fg_bg_and_weights():
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.0], [50.0, 50.0, 60.0, 60.0]])
    targets = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 9.0]]),
        "classes": torch.tensor([1]),
        "weights": torch.tensor([0.7]),
    }
    classes, tboxes, weights = M.label_proposals(props, targets, 3, HeadConfig())
    assert classes.tolist() == [1, 3, 3]  # IoU 0.9 -> class 1; 0.44 and 0 -> background (index K = 3)
    assert weights.tolist() == pytest.approx([0.7, 0.7, 0.7])


def test_refinement_loss_normalisation():
    scores = torch.zeros(3, 3)
    deltas = torch.zeros(3, 8)
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    classes = torch.tensor([0, 2, -1])
    targets = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0]])
    weights = torch.tensor([0.5, 1.0, 0.0])
    losses = M.refinement_losses(
        scores, deltas, props, classes, targets, weights, M.BoxCoder((10, 10, 5, 5)), 2, True
    )
    # uniform softmax over 3: CE = log 3 for both valid rows; (0.5 + 1) log 3 / 2 valid weights
    assert losses["cls"].item() == pytest.approx(1.5 * torch.log(torch.tensor(3.0)).item() / 2)
    assert losses["box_reg"].item() == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------------- cascade table
def test_branch_supervision_table_for_consecutive_forwards():
    table = M.branch_supervision_table(4, consistency=True)
    assert table == [-1, -1, -1, -1, 0, 1, 2, 3]
    for forward in range(4):
        got = [M.branch_supervision_index(k, forward, table, 4) for k in range(4)]
        assert got == ([-1] * 4 if forward % 2 == 0 else [0, 1, 2, 3])
    single = M.branch_supervision_table(3, consistency=False)
    assert [M.branch_supervision_index(k, 1, single, 3) for k in range(3)] == [-1, -1, -1]


def test_model_uses_the_table_and_weak_last_branch_for_rpn(monkeypatch, config):
    cfg = apply_method(config, "huwsod")
    torch.manual_seed(0)
    model = M.HUWSOD(cfg.model, 6)
    model.train()
    seen, rpn_sources = [], []
    original = M.branch_supervision_index

    def spy(k, forward, table, num_refine):
        idx = original(k, forward, table, num_refine)
        seen.append((forward, idx))
        return idx

    monkeypatch.setattr(M, "branch_supervision_index", spy)
    real_mine = M.mine_pseudo_boxes

    def mine_spy(scores, boxes, labels, image_scores, hcfg):
        if hcfg.mining == "oicr_top1":
            rpn_sources.append(scores)
        return real_mine(scores, boxes, labels, image_scores, hcfg)

    monkeypatch.setattr(M, "mine_pseudo_boxes", mine_spy)
    prev_lists = []
    real_forward = model.forward_view

    def forward_spy(images, sizes, labels, prev, gt=None, burnin=False, external=None):
        prev_lists.append(prev)
        return real_forward(images, sizes, labels, prev, gt, burnin, external)

    model.forward_view = forward_spy
    images = torch.rand(2, 3, 64, 64) * 255
    for _ in range(2):
        losses = model.training_losses(images, images.clone(), [(64, 64)] * 2, [[0], [1, 2]])
        assert {"loss_cls", "loss_rpn_cls", "loss_cls_r3", "loss_box_reg_r0", "loss_encode_0"} <= set(losses)
    assert [i for _, i in seen] == ([-1] * 4 + [0, 1, 2, 3]) * 2
    assert [f for f, _ in seen] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    # RPN targets: the weak view's last refinement branch (list index K = 4), in the weak and the strong pass
    prev = prev_lists[0]
    weak_r4 = prev[4][0]
    assert len(rpn_sources) == 8  # 2 images x 2 passes x 2 steps
    assert rpn_sources[0] is weak_r4[0] and rpn_sources[2] is weak_r4[0]


# ---------------------------------------------------------------------------------------------------- EMA
def test_inter_branch_ema_arithmetic_and_background_row():
    cfg = HUWSODConfig().model
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, name="tiny", channels=[4, 4, 4, 4]),
                              head=dataclasses.replace(cfg.head, refine_k=3, neck_dim=8, pooled_size=1),
                              self_training=dataclasses.replace(cfg.self_training, ema_decay=0.5))  # fmt: skip
    model = M.HUWSOD(cfg, 2)
    branches = model.head.refinements
    for k, branch in enumerate(branches):
        for p in branch.parameters():
            p.data.fill_(float(k + 1))  # r1 = 1, r2 = 2, r3 = 3
    branches[0].cls_score.weight.data[-1] = 100.0  # background row of r1 must not reach WSDDN
    branches[0].cls_score.bias.data[-1] = 100.0
    model.head.wsddn_cls.weight.data.fill_(10.0)
    model.head.wsddn_cls.bias.data.fill_(10.0)
    model.ema_update()
    assert torch.all(branches[2].cls_score.weight == 3.0)  # the last branch is never a teacher
    assert torch.all(branches[1].cls_score.weight == 2.5)  # 0.5 * 2 + 0.5 * 3
    assert torch.all(branches[1].bbox_pred.bias == 2.5)
    assert torch.all(branches[0].cls_score.weight[:-1] == 1.75)  # 0.5 * 1 + 0.5 * 2.5
    assert torch.all(branches[0].cls_score.weight[-1] == 0.5 * 100 + 0.5 * 2.5)
    assert torch.all(model.head.wsddn_cls.weight == 0.5 * 10 + 0.5 * 1.75)
    assert torch.all(model.head.wsddn_cls.bias == 0.5 * 10 + 0.5 * 1.75)


# ---------------------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", ["full", "full_coco"])
def test_full_presets_load_and_build(name):
    cfg = load_config(HUWSODConfig, CONFIGS / f"{name}.yaml", overrides=["data.root=/data/VOC2007"])
    assert cfg.train.iterations in (200000, 360000) and cfg.train.batch_size == 4 and cfg.train.lr == 0.01
    assert cfg.augment.train_scales[0] == 480 and cfg.augment.train_scales[-1] == 1216
    with torch.device("meta"):
        model = M.HUWSOD(apply_method(cfg, "huwsod").model, 20 if name == "full" else 80)
    assert model.backbone.out_channels == 512
    assert model.head.fc1.in_features == 512 * 7 * 7 and model.head.fc1.out_features == 4096
    assert len(model.head.refinements) == 4 and model.rpn.num_anchors == 6
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_wsr18_forward_is_stride_8():
    model = M.MRRPBackbone("wsr18", [], [1, 2, 4]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 80))
    assert out.shape == (3, 512, 8, 10)


def test_config_validation_errors():
    cfg = HUWSODConfig()
    with pytest.raises(ValueError, match="test split"):
        dataclasses.replace(cfg.data, val_split="test")
    bad = copy.deepcopy(cfg)
    bad.model.proposals.external = "none"
    bad.model.rpn.enabled = False
    with pytest.raises(ValueError, match="no\\s+test-time proposals"):
        bad.model.__post_init__()
