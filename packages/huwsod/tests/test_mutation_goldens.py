"""Goldens for mutants of modeling_huwsod.py that survived `make mutate` (issue 14; README, "Mutation
checks"). Every expected value is written by hand or computed by an independent path (plain F.conv2d /
batch-norm arithmetic on the module's own parameters, math.log), never by the function under test."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from paperzoo_huwsod import modeling_huwsod as M
from paperzoo_huwsod.configuration import AEConfig, apply_method
from paperzoo_huwsod.ops import BoxCoder


# ---------------------------------------------------------------------------------------------------- backbone
def _bn(x: torch.Tensor, norm: torch.nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode batch norm by hand: (x - mean) / sqrt(var + eps) * gamma + beta."""
    shape = (1, -1, 1, 1)
    scale = (norm.running_var + norm.eps).rsqrt() * norm.weight
    return (x - norm.running_mean.view(shape)) * scale.view(shape) + norm.bias.view(shape)


def _randomise_bn(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)


def _pool_stride1(x: torch.Tensor) -> torch.Tensor:
    """The repo's stride-1 pool by hand: zero row/column appended right and bottom, then the max of 2x2."""
    p = torch.zeros(x.shape[0], x.shape[1], x.shape[2] + 1, x.shape[3] + 1)
    p[:, :, :-1, :-1] = x
    return torch.maximum(
        torch.maximum(p[:, :, :-1, :-1], p[:, :, 1:, :-1]), torch.maximum(p[:, :, :-1, 1:], p[:, :, 1:, 1:])
    )


def _pool_stride2(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).amax(dim=(3, 5))


def test_basic_block_equals_hand_composed_convs():
    """ResNet-WS basic block: relu(bn(conv2(relu(bn(conv1 x)))) + shortcut), dilation = padding on both 3x3
    convs, a 1x1 conv+BN shortcut only when the width changes, then the block's pool. Defaults: dilation 1,
    no pool, identity shortcut."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    for kwargs, pool in (
        ({"dilation": 2, "pool_stride": 1}, _pool_stride1),
        ({"pool_stride": 2}, _pool_stride2),
    ):
        block = M.BasicBlock(4, 6, **kwargs).eval()
        _randomise_bn(block)
        d = kwargs.get("dilation", 1)
        assert block.shortcut.weight.shape == (6, 4, 1, 1)
        h = F.relu(_bn(F.conv2d(x, block.conv1.weight, padding=d, dilation=d), block.conv1.norm))
        h = _bn(F.conv2d(h, block.conv2.weight, padding=d, dilation=d), block.conv2.norm)
        h = F.relu(h + _bn(F.conv2d(x, block.shortcut.weight), block.shortcut.norm))
        torch.testing.assert_close(block(x), pool(h), rtol=1e-5, atol=1e-5)
    plain = M.BasicBlock(4, 4).eval()
    _randomise_bn(plain)
    assert plain.shortcut is None and not any(k.startswith("shortcut") for k in plain.state_dict())
    h = F.relu(_bn(F.conv2d(x, plain.conv1.weight, padding=1), plain.conv1.norm))
    h = F.relu(_bn(F.conv2d(h, plain.conv2.weight, padding=1), plain.conv2.norm) + x)
    torch.testing.assert_close(plain(x), h, rtol=1e-5, atol=1e-5)


def test_mrrp_basic_block_equals_hand_composed_convs_per_branch():
    """MRRP basic block: per branch b the two shared 3x3 weights with dilation = padding d_b, one shared BN
    per conv, and the residual (1x1 conv + BN when the width changes, else identity) added, then ReLU."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    for in_ch in (4, 6):
        block = M.MRRPBasicBlock(in_ch, 6, [1, 2]).eval()
        _randomise_bn(block)
        inp = x if in_ch == 4 else torch.randn(2, 6, 8, 8)
        outs = block(inp)
        assert len(outs) == 2
        if in_ch == 6:
            assert block.shortcut is None and not any(k.startswith("shortcut") for k in block.state_dict())
        else:
            assert block.shortcut.weight.shape == (6, 4, 1, 1)
        for out, d in zip(outs, [1, 2]):
            h = F.relu(_bn(F.conv2d(inp, block.conv1.weight, padding=d, dilation=d), block.conv1.norm))
            h = _bn(F.conv2d(h, block.conv2.weight, padding=d, dilation=d), block.conv2.norm)
            short = inp if in_ch == 6 else _bn(F.conv2d(inp, block.shortcut.weight), block.shortcut.norm)
            torch.testing.assert_close(out, F.relu(h + short), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- AE
def test_ae_encoder_and_decoder_have_elu_between_layers_not_after_the_last():
    """AEHead: conv-ELU-...-conv; the code (encoder output) and the reconstruction are linear outputs."""
    torch.manual_seed(0)
    ae = M.AEProposalGenerator(64, AEConfig(enabled=True), stride=8, min_size=0.0)
    assert [conv.weight.shape[:2] for conv in ae.encoder] == [(32, 64), (1, 32)]
    features = torch.randn(2, 64, 5, 5)
    code, recon, _ = ae(features, torch.ones(2, 5, 5, dtype=torch.bool))
    e1, e2 = ae.encoder
    d1, d2 = ae.decoder
    hand_code = F.conv2d(
        F.elu(F.conv2d(features, e1.weight, e1.bias, padding=1)), e2.weight, e2.bias, padding=1
    )
    hand_recon = F.conv2d(
        F.elu(F.conv2d(hand_code, d1.weight, d1.bias, padding=1)), d2.weight, d2.bias, padding=1
    )
    assert (hand_code < 0).any()  # an ELU after the last conv would change these cells
    torch.testing.assert_close(code, hand_code, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(recon, hand_recon, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- RPN sampling
def test_matcher_thresholds_are_half_open():
    """detectron2 Matcher [0.25, 0.5): IoU < low is negative, low <= IoU < high ignored, IoU >= high positive
    (exact binary fractions, so the boundaries are hit exactly)."""
    iou = torch.tensor([[0.25, 0.5, 0.375, 0.125], [0.125, 0.0, 0.0, 0.25]])
    matched, labels = M.match_labels(iou, 0.25, 0.5, allow_low_quality=False)
    assert matched.tolist() == [0, 0, 0, 1]
    assert labels.tolist() == [-1, 1, -1, -1]
    _, labels = M.match_labels(iou, 0.25, 0.5, allow_low_quality=True)
    assert labels.tolist() == [-1, 1, -1, 1]  # gt 1's best anchor (3) becomes positive


def test_subsample_labels_counts():
    """At most batch * fraction positives, then negatives up to batch (detectron2 subsample_labels)."""
    labels = torch.tensor([1] * 10 + [0] * 10 + [-1] * 5)
    torch.manual_seed(0)
    pos, neg = M.subsample_labels(labels, 8, 0.25, bg_label=0)
    assert len(pos) == 2 and len(neg) == 6
    assert set(pos.tolist()) <= set(range(10)) and set(neg.tolist()) <= set(range(10, 20))
    assert len(set(pos.tolist())) == 2 and len(set(neg.tolist())) == 6
    few = torch.tensor([1] + [0] * 10)
    pos, neg = M.subsample_labels(few, 8, 0.25, bg_label=0)
    assert pos.tolist() == [0] and len(neg) == 7 and len(set(neg.tolist())) == 7
    pos, neg = M.subsample_labels(torch.tensor([0] * 3), 8, 0.5, bg_label=0)
    assert len(pos) == 0 and sorted(neg.tolist()) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------- ROI head
def test_refinement_branch_outputs_and_init():
    """(C+1) logits and class-specific deltas x W^T + b; without regression the deltas are zeros (R, 4C) and
    there is no bbox_pred parameter. Init (OICROutputLayers): cls std 0.01, deltas std 0.001, biases 0."""
    torch.manual_seed(0)
    branch = M.RefinementBranch(256, 20, regression=True)
    assert branch.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert branch.bbox_pred.weight.std().item() == pytest.approx(0.001, rel=0.05)
    x = torch.randn(3, 256)
    scores, deltas = branch(x)
    torch.testing.assert_close(scores, x @ branch.cls_score.weight.T + branch.cls_score.bias)
    torch.testing.assert_close(deltas, x @ branch.bbox_pred.weight.T + branch.bbox_pred.bias)
    plain = M.RefinementBranch(256, 20, regression=False)
    assert plain.bbox_pred is None and set(plain.state_dict()) == {"cls_score.weight", "cls_score.bias"}
    _, zeros = plain(x)
    assert zeros.shape == (3, 80) and not zeros.any()


def test_refinement_losses_golden_with_class_zero_and_regression():
    """Weighted CE over #(w > 1e-12), weighted L1 of the true class's deltas over all proposals."""
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    scores = probs.log()  # softmax(log p) = p
    classes = torch.tensor([0, 1, 2, -1])  # class 0, class 1, background (K = 2), ignored
    weights = torch.tensor([0.5, 0.8, 1.0, 0.0])
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4)
    targets = torch.tensor(
        [[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0]]
    )
    deltas = torch.zeros(4, 8)
    deltas[0, :4] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class 0 of proposal 0
    deltas[0, 4:] = 9.0  # another class: must not be used
    deltas[1, 4:] = torch.tensor([0.0, 0.0, 1.0, 0.0])  # class 1 of proposal 1
    deltas[1, :4] = 7.0
    deltas[2:] = 3.0  # background / ignored: no regression
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    losses = M.refinement_losses(scores, deltas, props, classes, targets, weights, coder, 2, True)
    cls = (0.5 * -math.log(0.5) + 0.8 * -math.log(0.6) + 1.0 * -math.log(0.8)) / 3
    # proposal 0: target dx = 10 * (6 - 5) / 10 = 1 -> |0.5 - 1| = 0.5
    # proposal 1: target dx = 10 * (10 - 5) / 10 = 5, dw = 5 log 2 -> |0 - 5| + |1 - 5 log 2|
    reg = (0.5 * 0.5 + 0.8 * (5.0 + abs(1.0 - 5.0 * math.log(2.0)))) / 4
    assert losses["cls"].item() == pytest.approx(cls, rel=1e-5)
    assert losses["box_reg"].item() == pytest.approx(reg, rel=1e-5)
    one = M.refinement_losses(
        scores[:1], deltas[:1], props[:1], classes[:1], targets[:1], torch.tensor([1.0]), coder, 2, True
    )
    assert one["cls"].item() == pytest.approx(-math.log(0.5), rel=1e-5)  # / 1, not / 2
    assert one["box_reg"].item() == pytest.approx(0.5, rel=1e-5)


# ---------------------------------------------------------------------------------------------------- detector
def test_branch_of_size_is_the_nearest_anchor_size_in_log_scale(config):
    """Branch b's size is sqrt(min * max) of its anchor sizes; a box's size is sqrt(w h) with w, h >= 1;
    the branch is the argmin of |log size - log size_b| (here 16, 64, 256: boundaries 32 and 128)."""
    cfg = apply_method(config, "oicr")
    cfg.model.rpn.anchor_sizes = [[8.0, 32.0], [64.0], [256.0]]
    model = M.HUWSOD(cfg.model, 6)
    assert model.num_branch == 3
    boxes = torch.tensor(
        [
            [200.0, 0.0, 216.0, 16.0],  # 16 x 16 far right -> 0
            [0.0, 200.0, 16.0, 216.0],  # 16 x 16 far down -> 0
            [0.0, 0.0, 256.0, 16.0],  # sqrt(256 * 16) = 64 -> 1
            [0.0, 0.0, 16.0, 256.0],  # 64 -> 1
            [0.0, 0.0, 0.5, 1000.0],  # w clamped to 1: sqrt(1000) = 31.6 -> 0 (with w = 2 it would be 44.7)
            [0.0, 0.0, 1000.0, 0.5],  # 31.6 -> 0
            [0.0, 0.0, 256.0, 256.0],  # 256 -> 2
            [10.0, 10.0, 150.0, 150.0],  # 140 -> 2
        ]
    )
    assert model.branch_of_size(boxes).tolist() == [0, 0, 1, 1, 0, 0, 2, 2]


def test_train_defaults_to_training_mode_and_groups_are_named(config):
    """model.train() with no argument means training mode (the frozen backbone stays in eval); the parameter
    groups that burn-in and the LR multipliers address by name are backbone / ae / rpn / roi."""
    cfg = apply_method(config, "huwsod")
    model = M.HUWSOD(cfg.model, 6).eval()
    model.train()
    assert model.training and model.head.training
    assert not model.backbone.training  # frozen in the smoke preset
    groups = M.trainable_groups(model)
    assert sorted(groups) == ["ae", "roi", "rpn"]  # the frozen backbone has nothing to train
    for name, module in (("ae", model.ae), ("rpn", model.rpn), ("roi", model.head)):
        assert [id(p) for p in groups[name]] == [id(p) for p in module.parameters()]
    cfg.model.backbone.freeze = False
    unfrozen = M.trainable_groups(M.HUWSOD(cfg.model, 6))
    assert sorted(unfrozen) == ["ae", "backbone", "roi", "rpn"]


def test_ae_channels_and_losses_golden():
    """Widths halve down to 32 then 1; losses per branch: encode_weight * mean BCE-with-logits(code, target),
    decode_weight * mean squared error(recon, features)."""
    assert M.ae_channels(512) == [512, 256, 128, 64, 32, 1]
    assert M.ae_channels(66) == [66, 33, 32, 1]
    assert M.ae_channels(16) == [16, 1]
    ae = M.AEProposalGenerator(16, AEConfig(encode_weight=0.1, decode_weight=2.0), stride=8, min_size=0.0)
    torch.manual_seed(0)
    features, recon = torch.randn(2, 16, 2, 2), torch.randn(2, 16, 2, 2)
    code = torch.randn(2, 1, 2, 2)
    target = (torch.rand(2, 2, 2) > 0.5).float()
    losses = ae.losses(features, code, recon, target, num_branch=2)
    for b in range(2):
        c, t = code[b, 0].flatten().tolist(), target[b].flatten().tolist()
        bce = sum(math.log1p(math.exp(v)) - y * v for v, y in zip(c, t)) / 4  # softplus(c) - t c
        mse = ((recon[b] - features[b]) ** 2).sum().item() / (16 * 4)
        assert losses[f"loss_encode_{b}"].item() == pytest.approx(0.1 * bce, rel=1e-5)
        assert losses[f"loss_decode_{b}"].item() == pytest.approx(2.0 * mse, rel=1e-5)


def test_initialisation_follows_the_repo():
    """c2_msra_fill (kaiming normal, fan_out, relu gain; bias 0) for the backbone and AE convs; RPN normal
    std 0.01 with bias 0 and deltas weights (1, 1, 1, 1); neck normal(neck_init_std) with bias 0.1; ConvNorm
    is a bias-free conv with padding = dilation (default 1)."""
    from paperzoo_huwsod.configuration import HeadConfig, RPNConfig

    torch.manual_seed(0)
    fan_out = math.sqrt(2.0 / (64 * 9))  # fan_in would give sqrt(2 / (16 * 9)), twice as large
    conv = M.ConvNorm(16, 64)
    assert conv.bias is None and conv.dilation == (1, 1) and conv.padding == (1, 1)
    assert M.ConvNorm(16, 64, kernel=1).padding == (0, 0) and M.ConvNorm(4, 4, dilation=2).padding == (2, 2)
    assert conv.weight.std().item() == pytest.approx(fan_out, rel=0.05)
    assert M.MRRPConv(16, 64, [1, 2]).weight.std().item() == pytest.approx(fan_out, rel=0.05)
    ae = M.AEProposalGenerator(64, AEConfig(enabled=True), stride=8, min_size=0.0)
    assert ae.encoder[0].weight.std().item() == pytest.approx(math.sqrt(2.0 / (32 * 9)), rel=0.05)
    assert all(not c.bias.any() for c in [*ae.encoder, *ae.decoder])
    rpn = M.SelfSupervisedRPN(64, RPNConfig(), stride=8, min_size=0.0)
    assert rpn.conv.weight.std().item() == pytest.approx(0.01, rel=0.05) and not rpn.conv.bias.any()
    assert rpn.coder.weights == (1.0, 1.0, 1.0, 1.0)
    head = M.WSODHead(16, 6, HeadConfig(pooled_size=4, neck_dim=256, neck_init_std=0.005))
    assert head.fc1.weight.std().item() == pytest.approx(0.005, rel=0.05)
    assert torch.equal(head.fc2.bias, torch.full((256,), 0.1))


def test_wsr18_layout_matches_resnet_ws_18():
    """res2: two blocks, the second ends with the stride-2 pool; res3: two blocks, the second with the
    stride-1 pool; res4: two blocks with dilation 2; res5: the two MRRP blocks."""
    model = M.MRRPBackbone("wsr18", [], [1, 2, 4])
    assert [b.pool_stride for b in model.res2] == [0, 2]
    assert [b.pool_stride for b in model.res3] == [0, 1]
    assert [b.pool_stride for b in model.res4] == [0, 0]
    assert [(b.conv1.dilation, b.conv2.dilation) for b in model.res4] == [((2, 2), (2, 2))] * 2
    assert [(b.conv1.dilation, b.conv2.dilation) for b in [*model.res2, *model.res3]] == [
        ((1, 1), (1, 1))
    ] * 4
    assert len(model.res5) == 2 and model.res5[0].conv1.dilations == [1, 2, 4]


# ---------------------------------------------------------------------------------------------------- WSDDN
def test_wsddn_scores_golden_and_clamp():
    """Region score = softmax over classes of cls x softmax over the image's regions of det; image score =
    the sum over the image's regions, clamped to [1e-6, 1 - 1e-6]."""
    cls = torch.tensor(
        [[0.0, math.log(3.0)], [math.log(3.0), 0.0], [0.0, 0.0]]
    )  # probs (1/4, 3/4), (3/4, 1/4), (1/2, 1/2)
    det = torch.tensor([[0.0, math.log(2.0)], [math.log(3.0), 0.0], [5.0, -5.0]])
    region, image = M.wsddn_scores(cls, det, [2, 1])
    # image 0, class 0: det softmax over regions (1/4, 3/4); class 1: (2/3, 1/3); image 1: one region -> 1
    expected = torch.tensor([[1 / 4 * 1 / 4, 3 / 4 * 2 / 3], [3 / 4 * 3 / 4, 1 / 4 * 1 / 3], [1 / 2, 1 / 2]])
    torch.testing.assert_close(region, expected)
    torch.testing.assert_close(image, torch.tensor([[1 / 16 + 9 / 16, 1 / 2 + 1 / 12], [1 / 2, 1 / 2]]))
    _, clamped = M.wsddn_scores(torch.tensor([[-30.0, 30.0]]), torch.zeros(1, 2), [1])
    assert clamped[0, 0].item() == pytest.approx(1e-6, rel=1e-3)  # 1e-26 before the clamp
    assert clamped[0, 1].item() == pytest.approx(1 - 1e-6, abs=2e-7) and clamped[0, 1].item() < 1.0


def test_predictions_det_stream_is_frame_minus_context(config):
    """ContextLocNet: det logits = W_det x_frame - W_det x_context; cls logits = W_cls x_box."""
    cfg = apply_method(config, "wsddn")
    torch.manual_seed(0)
    model = M.HUWSOD(cfg.model, 2)
    x_box, x_frame, x_context = torch.randn(3, 32), torch.randn(3, 32), torch.randn(3, 32)
    region, image, refined = model.predictions(x_box, x_frame, x_context, [3])
    cls_w, det_w = model.head.wsddn_cls, model.head.wsddn_det
    cls = torch.softmax(x_box @ cls_w.weight.T + cls_w.bias, dim=1)
    det = (x_frame - x_context) @ det_w.weight.T  # the biases cancel
    torch.testing.assert_close(region, cls * torch.softmax(det, dim=0), rtol=1e-5, atol=1e-6)
    assert refined == []


# ---------------------------------------------------------------------------------------------------- detector
def test_normalize_images_bgr_golden():
    """RGB 0-255 -> BGR (channel flip only), minus mean, over std; padding (outside (h, w)) set to 0."""
    images = torch.tensor(
        [[[[10.0, 20.0], [30.0, 40.0]], [[1.0, 2.0], [3.0, 4.0]], [[100.0, 200.0], [0.0, 50.0]]]]
    )
    mean = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    std = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1)
    out = M.normalize_images(images, mean, std, "bgr", [(1, 2)])
    expected = torch.tensor(
        [[[[99.0, 199.0], [0.0, 0.0]], [[-0.5, 0.0], [0.0, 0.0]], [[1.75, 4.25], [0.0, 0.0]]]]
    )  # B = (100, 200) - 1; G = ((1, 2) - 2) / 2; R = ((10, 20) - 3) / 4; row 1 is padding
    torch.testing.assert_close(out, expected)


def test_feature_valid_is_ceil_of_the_image_size_over_the_stride(config):
    model = M.HUWSOD(apply_method(config, "wsddn").model, 6)
    features = torch.zeros(3 * 2, 4, 12, 12)
    valid = model.feature_valid(features, [(96, 70), (40, 96)])
    assert valid.shape == (6, 12, 12)
    first, second = torch.zeros(12, 12, dtype=torch.bool), torch.zeros(12, 12, dtype=torch.bool)
    first[:, :9] = True  # ceil(70 / 8) = 9 columns
    second[:5, :] = True  # ceil(40 / 8) = 5 rows
    for b in range(3):
        assert torch.equal(valid[2 * b], first) and torch.equal(valid[2 * b + 1], second)


def test_roi_features_pool_image_i_branch_b_from_row_b_n_plus_i(config):
    """ROI (b * N + i, box) at spatial scale 1 / stride with the configured context ratio."""
    from paperzoo_huwsod.ops import roi_loop_pool

    cfg = apply_method(config, "wsddn")
    cfg.model.head.context_ratio = 1.5
    model = M.HUWSOD(cfg.model, 6).eval()
    torch.manual_seed(0)
    features = torch.rand(3 * 2, model.backbone.out_channels, 12, 12)
    props = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "branch": torch.tensor([2]), "logits": torch.ones(1)},
        {"boxes": torch.tensor([[16.0, 0.0, 64.0, 32.0], [0.0, 0.0, 96.0, 96.0]]), "branch": torch.tensor([1, 0]),
         "logits": torch.ones(2)},
    ]  # fmt: skip
    seen = []
    model.head.neck = lambda pooled: seen.append(pooled.clone()) or pooled.flatten(1)
    model.roi_features(features, props)
    rois = torch.tensor(
        [[4.0, 8, 8, 40, 48], [3.0, 16, 0, 64, 32], [1.0, 0, 0, 96, 96]]
    )  # 2*2+0, 1*2+1, 0*2+1
    box, frame, context = roi_loop_pool(features, rois, 1 / 8, cfg.model.head.pooled_size, 1.5)
    torch.testing.assert_close(seen[0], torch.cat([box, frame, context]))


def test_gather_proposals_segments_windows_and_sources(config):
    """Segments: clipped to the image, boxes not larger than min_size dropped, the whole image when none is
    left, float32, branch by size, logit 1. Sliding windows: scaled by min(h, w) / window_reference and cached.
    RPN and AE proposals are appended in that order (AE logit 1). Segments without external is an error."""
    from paperzoo_huwsod.ops import sliding_window_boxes

    cfg = apply_method(config, "wsddn")
    cfg.model.proposals.min_size = 4.0
    model = M.HUWSOD(cfg.model, 6)
    features = torch.zeros(6, 4, 8, 12)
    external = [
        torch.tensor([[-5.0, -5.0, 30.0, 20.0], [10.0, 10.0, 13.0, 30.0], [50.0, 10.0, 200.0, 90.0]], dtype=torch.float64),
        torch.tensor([[0.0, 0.0, 2.0, 2.0]]),
    ]  # fmt: skip
    out = model.gather_proposals(features, [(64, 96), (48, 40)], None, None, external)
    expected0 = torch.tensor([[0.0, 0.0, 30.0, 20.0], [50.0, 10.0, 96.0, 64.0]])  # clipped in x and y
    assert out[0]["boxes"].dtype == torch.float32
    torch.testing.assert_close(out[0]["boxes"], expected0)
    torch.testing.assert_close(out[1]["boxes"], torch.tensor([[0.0, 0.0, 40.0, 48.0]]))  # whole image (w, h)
    assert torch.equal(out[0]["branch"], model.branch_of_size(expected0))
    assert out[0]["logits"].tolist() == [1.0, 1.0] and out[1]["logits"].tolist() == [1.0]
    with pytest.raises(ValueError, match="segments"):
        model.gather_proposals(features, [(64, 96)], None, None, None)

    cfg.model.proposals.external = "sliding_window"
    cfg.model.proposals.window_sizes, cfg.model.proposals.window_ratios = [32.0], [1.0]
    cfg.model.proposals.window_reference = 48.0
    windows = M.HUWSOD(cfg.model, 6)
    out = windows.gather_proposals(features, [(96, 128)], None, None)
    hand = sliding_window_boxes(96, 128, [64.0], [1.0], cfg.model.proposals.window_step, 4.0)  # 32 * 96 / 48
    torch.testing.assert_close(out[0]["boxes"], hand)
    assert torch.equal(out[0]["branch"], windows.branch_of_size(hand)) and not (out[0]["logits"] - 1).any()
    assert windows.gather_proposals(features, [(96, 128)], None, None)[0]["boxes"] is not None
    assert list(windows._windows) == [(96, 128)]
    cfg.model.proposals.window_reference = 0.0  # no reference: the sizes are used as they are
    unscaled = M.HUWSOD(cfg.model, 6).gather_proposals(features, [(96, 128)], None, None)[0]["boxes"]
    torch.testing.assert_close(
        unscaled, sliding_window_boxes(96, 128, [32.0], [1.0], cfg.model.proposals.window_step, 4.0)
    )

    hcfg = apply_method(config, "huwsod")
    both = M.HUWSOD(hcfg.model, 6)
    rpn = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
            "branch": torch.tensor([1]),
            "logits": torch.tensor([-0.5]),
        }
    ]
    ae = [(torch.tensor([[5.0, 5.0, 20.0, 20.0], [0.0, 0.0, 30.0, 30.0]]), torch.tensor([0, 2]))]
    out = both.gather_proposals(features[:3], [(64, 64)], rpn, ae)[0]
    torch.testing.assert_close(
        out["boxes"], torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 20, 20], [0.0, 0, 30, 30]])
    )
    assert out["branch"].tolist() == [1, 0, 2] and out["logits"].tolist() == [-0.5, 1.0, 1.0]


def test_model_builds_only_the_enabled_parts_and_checks_num_classes(config):
    assert M.HUWSOD(apply_method(config, "oicr").model, 1).ae is None  # one class is allowed
    with pytest.raises(ValueError, match="num_classes"):
        M.HUWSOD(apply_method(config, "oicr").model, 0)
    empty = M._gt_targets({"boxes": torch.zeros(0, 4), "classes": torch.zeros(0, dtype=torch.int64)}, "cpu")
    assert empty["boxes"].tolist() == [[-10000.0, -10000.0, 10000.0, 10000.0]]  # the repo's dummy box
    assert empty["classes"].tolist() == [0] and empty["weights"].tolist() == [1.0]
    assert empty["classes"].dtype == torch.int64
    gt = {
        "boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]]),
        "classes": torch.tensor([3, 0]),
    }
    full = M._gt_targets(gt, "cpu")
    assert full["boxes"] is gt["boxes"] and full["classes"] is gt["classes"]
    assert full["weights"].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------------- training glue
def test_training_losses_sums_the_views_and_passes_every_argument(config):
    """Weak view always; the strong view only with consistency on, a strong batch and after burn-in; the
    total is the per-name sum; gt / burnin / external reach both views."""
    model = M.HUWSOD(apply_method(config, "huwsod").model, 6)
    calls = []

    def fake(images, sizes, labels, prev, gt=None, burnin=False, external=None):
        calls.append((images, gt, burnin, external))
        return {"a": 1.0, "b": 2.0} if len(calls) % 2 else {"a": 10.0, "c": 5.0}

    model.forward_view = fake
    weak, strong, gt, ext = torch.zeros(1), torch.ones(1), [{"boxes": None}], [torch.zeros(1, 4)]
    total = model.training_losses(weak, strong, [(8, 8)], [[0]], gt=gt, external=ext)
    assert total == {"a": 11.0, "b": 2.0, "c": 5.0}
    got = [(c[0] is x, c[1] is gt, c[2], c[3] is ext) for c, x in zip(calls, (weak, strong))]
    assert got == [(True, True, False, True)] * 2
    calls.clear()
    assert model.training_losses(weak, strong, [(8, 8)], [[0]], burnin=True) == {"a": 1.0, "b": 2.0}
    assert len(calls) == 1 and calls[0][2] is True
    calls.clear()
    assert model.training_losses(weak, None, [(8, 8)], [[0]]) == {"a": 1.0, "b": 2.0} and len(calls) == 1
    calls.clear()
    model.cfg.self_training.consistency = False
    assert model.training_losses(weak, strong, [(8, 8)], [[0]]) == {"a": 1.0, "b": 2.0} and len(calls) == 1


def _fixed_view(model, region, image, refined, boxes):
    """Replace the proposal / pooling / head pieces of forward_view by fixed tensors (one entry per image)."""

    def gather(*args):
        return [
            {"boxes": b, "branch": torch.zeros(len(b), dtype=torch.int64), "logits": torch.ones(len(b))}
            for b in boxes
        ]

    model.gather_proposals = gather
    model.roi_features = lambda features, proposals: (None, None, None)
    model.predictions = lambda *args: (region, image, refined)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_wsddn_image_loss_golden(config, reduction):
    """loss_cls = wsddn_weight * BCE summed over (image, class) / (N K) ('mean') or / N ('sum')."""
    cfg = apply_method(config, "wsddn")
    cfg.model.head.wsddn_weight, cfg.model.head.wsddn_loss = 2.0, reduction
    model = M.HUWSOD(cfg.model, 3).train()
    image = torch.tensor([[0.8, 0.1, 0.3], [0.5, 0.5, 0.9]])
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])] * 2
    _fixed_view(model, torch.full((2, 3), 0.1), image, [], boxes)
    losses = model.forward_view(torch.zeros(2, 3, 32, 32), [(32, 32)] * 2, [[0], [2]], [], external=boxes)
    bce = -(math.log(0.8) + math.log(0.9) + math.log(0.7)) - (math.log(0.5) + math.log(0.5) + math.log(0.9))
    expected = 2.0 * (bce / 6 if reduction == "mean" else bce / 2)
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_cascade_mines_the_previous_branchs_regressed_boxes_with_the_image_labels(config, monkeypatch):
    """Weak pass: branch 0 mines WSDDN's region scores on the proposals; branch k >= 1 mines branch k-1's
    softmax on branch k-1's *decoded* boxes; every miner gets the image's labels and WSDDN image scores."""
    cfg = apply_method(config, "oicr_reg_mist")
    model = M.HUWSOD(cfg.model, 2).train()
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]])]
    region = torch.tensor([[0.6, 0.1], [0.2, 0.3]])
    image = torch.tensor([[0.7, 0.2]])
    refined = []
    for k in range(4):
        deltas = torch.zeros(2, 8)
        deltas[:, 0::4] = float(k + 1)  # dx = (k + 1) / 10 of the width for both classes
        refined.append((torch.full((2, 3), float(k)), deltas))
    _fixed_view(model, region, image, refined, boxes)
    seen = []
    real = M.mine_pseudo_boxes

    def spy(scores, p_boxes, labels, image_scores, hcfg):
        seen.append((scores.clone(), p_boxes.clone(), labels, image_scores.clone()))
        return real(scores, p_boxes, labels, image_scores, hcfg)

    monkeypatch.setattr(M, "mine_pseudo_boxes", spy)
    model.forward_view(torch.zeros(1, 3, 48, 48), [(48, 48)], [[1]], [], external=boxes)
    assert len(seen) == 4
    torch.testing.assert_close(seen[0][0], region)
    torch.testing.assert_close(seen[0][1], boxes[0][:, None].expand(-1, 2, 4))
    for k in range(1, 4):
        scores, p_boxes, _, _ = seen[k]
        torch.testing.assert_close(scores, torch.full((2, 3), 1 / 3))  # softmax of equal logits
        shift = torch.tensor([10.0, 20.0]) * k / 10  # branch k-1's dx = k / 10 (weight 10); widths 10, 20
        hand = boxes[0].clone()
        hand[:, 0] += shift
        hand[:, 2] += shift
        torch.testing.assert_close(p_boxes, hand[:, None].expand(-1, 2, 4))
    assert all(s[2] == [1] for s in seen) and all(torch.equal(s[3], image[0]) for s in seen)


def test_training_losses_do_not_depend_on_the_pixels_of_the_batch_padding(config):
    """The training forward pads with the mean colour: what the loader left in the padding never matters."""
    model = M.HUWSOD(apply_method(config, "huwsod").model, 6).train()
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64) * 255
    other = images.clone()
    other[1, :, 40:, :] = (
        255.0  # the second image is 40 x 48 (h, w): rows >= 40 and columns >= 48 are padding
    )
    other[1, :, :, 48:] = 0.0
    sizes = [(64, 64), (40, 48)]
    runs = []
    for batch in (images, other):
        torch.manual_seed(1)
        model.forward_count = 0
        runs.append(model.training_losses(batch, batch.clone(), sizes, [[0], [1, 2]]))
    assert runs[0].keys() == runs[1].keys()
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_training_forward_uses_rpn_and_ae_proposals_and_the_labels_for_rpn_targets(config, monkeypatch):
    """After burn-in the head sees the RPN's proposals and the AE's boxes; the RPN targets are mined with the
    image's labels (top-1 per class of the weak last branch), not the dummy box of a label-free image."""
    model = M.HUWSOD(apply_method(config, "huwsod").model, 6).train()
    sources, rpn_mined = [], []
    real_gather, real_mine = model.gather_proposals, M.mine_pseudo_boxes

    def gather(features, sizes, rpn_props, ae_boxes, external=None):
        sources.append((rpn_props, ae_boxes))
        return real_gather(features, sizes, rpn_props, ae_boxes, external)

    def mine(scores, boxes, labels, image_scores, hcfg):
        out = real_mine(scores, boxes, labels, image_scores, hcfg)
        if hcfg.mining == "oicr_top1":
            rpn_mined.append((labels, out["boxes"]))
        return out

    model.gather_proposals = gather
    monkeypatch.setattr(M, "mine_pseudo_boxes", mine)
    torch.manual_seed(0)
    model.forward_view(torch.rand(2, 3, 64, 64) * 255, [(64, 64)] * 2, [[0], [1, 2]], [])
    ((rpn_props, ae_boxes),) = sources
    assert rpn_props is not None and len(rpn_props) == 2 and all(len(p["boxes"]) > 0 for p in rpn_props)
    assert ae_boxes is not None and len(ae_boxes) == 2 and all(len(b) > 0 for b, _ in ae_boxes)
    assert [labels for labels, _ in rpn_mined] == [[0], [1, 2]]
    assert [len(b) for _, b in rpn_mined] == [1, 2]  # one box per image class
    assert all((b.abs() < 1000).all() for _, b in rpn_mined)  # not the dummy box


def test_full_supervision_learns_from_the_annotated_boxes(config, monkeypatch):
    """The fully supervised row: every refinement branch is labelled with the batch's boxes (weight 1);
    without boxes it is an error."""
    model = M.HUWSOD(apply_method(config, "fully_supervised").model, 3).train()
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]])]
    _fixed_view(
        model,
        torch.full((2, 3), 0.1),
        torch.tensor([[0.7, 0.2, 0.1]]),
        [(torch.zeros(2, 4), torch.zeros(2, 12))] * 4,
        boxes,
    )
    seen = []
    real = M.label_proposals
    monkeypatch.setattr(M, "label_proposals", lambda p, t, k, h: seen.append(t) or real(p, t, k, h))
    gt = [{"boxes": torch.tensor([[1.0, 1.0, 11.0, 11.0]]), "classes": torch.tensor([2])}]
    model.forward_view(torch.zeros(1, 3, 48, 48), [(48, 48)], [[2]], [], gt=gt, external=boxes)
    assert len(seen) == 4
    for t in seen:
        assert t["boxes"].tolist() == [[1.0, 1.0, 11.0, 11.0]] and t["classes"].tolist() == [2]
        assert t["weights"].tolist() == [1.0]
    with pytest.raises(ValueError, match="annotated boxes"):
        model.forward_view(torch.zeros(1, 3, 48, 48), [(48, 48)], [[2]], [], gt=None, external=boxes)


def test_model_normalises_in_the_configured_channel_order_and_trains_an_unfrozen_backbone(config):
    """BGR models see the channels flipped before the mean is subtracted; an unfrozen backbone's features
    are the backbone applied to the normalised batch, with gradients."""
    cfg = apply_method(config, "wsddn")
    cfg.model.backbone.input_format, cfg.model.backbone.freeze = "bgr", False
    cfg.model.backbone.pixel_mean, cfg.model.backbone.pixel_std = [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]
    model = M.HUWSOD(cfg.model, 6).eval()
    images = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1).expand(1, 3, 16, 16).contiguous()
    normalised = model.normalize(images)
    assert normalised[0, :, 0, 0].tolist() == [29.0, 18.0, 7.0]  # (B, G, R) - (1, 2, 3)
    features = model.features(images)
    assert features.requires_grad
    torch.testing.assert_close(features, model.backbone(normalised))
