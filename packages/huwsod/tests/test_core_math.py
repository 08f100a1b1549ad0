"""Goldens for four core behaviours of modeling_huwsod.py that shape-only tests let through (issue 14):
the RPN loss normaliser, the sigmoid(logit + 1) objectness gating, the test-time score as the mean of the
refinement branches, and the branch-major order of the multi-rate pyramid's output. Every expected value is
computed by hand or by an independent path (plain convolutions, torchvision IoU), never by the code under
test. Each test was checked to fail on a planted change (README, "Mutation checks")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from paperzoo_huwsod import modeling_huwsod as M
from paperzoo_huwsod.configuration import RPNConfig, apply_method
from torchvision.ops import box_iou


# ---------------------------------------------------------------------------------------------------- RPN loss
def _hand_anchors(sizes: list[float], grid: int, stride: int) -> torch.Tensor:
    """Square anchors centred at (x * stride, y * stride), row-major over (y, x), one size per branch."""
    out = []
    for size in sizes:
        for y in range(grid):
            for x in range(grid):
                cx, cy = x * stride, y * stride
                out.append([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
    return torch.tensor(out)


def test_rpn_loss_is_the_sum_over_sampled_anchors_over_batch_size_per_image_times_images():
    """detectron2's RPN loss: sum over sampled anchors / (BATCH_SIZE_PER_IMAGE * N), not / #sampled.

    Constant objectness c and zero deltas make the sum independent of which anchors the sampler draws:
    cls = (P softplus(-c) + Q softplus(c)), loc = sum |target deltas| of the positives."""
    c, per_image, grid = 0.3, 512, 4
    cfg = RPNConfig(anchor_sizes=[[16.0], [32.0], [64.0]], aspect_ratios=[1.0], batch_size_per_image=per_image,
                    iou_thresholds=[0.3, 0.95], positive_fraction=0.5)  # fmt: skip
    rpn = M.SelfSupervisedRPN(4, cfg, stride=8, min_size=0.0)
    with torch.no_grad():
        for layer in (rpn.objectness_logits, rpn.anchor_deltas):
            layer.weight.zero_()
            layer.bias.zero_()
        rpn.objectness_logits.bias.fill_(c)
    out = rpn(torch.randn(3 * 2, 4, grid, grid), num_branch=3)  # 3 branches x 2 images
    # the 32-px anchor centred at (16, 16), shifted right by 2 px: IoU 30/34 < 0.95, so it is positive only
    # as the low-quality best match; negatives are the anchors with IoU < 0.3
    gt = torch.tensor([[2.0, 0.0, 34.0, 32.0]])
    anchors = _hand_anchors([16.0, 32.0, 64.0], grid, 8)
    iou = box_iou(gt, anchors)[0]
    assert int((iou == iou.max()).sum()) == 1
    negatives = int((iou < 0.3).sum())
    assert 0 < negatives < per_image - 1  # every valid anchor is sampled: a /#sampled normaliser differs
    losses = rpn.losses(out, [gt, gt])
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    cls = 2 * (softplus(-c) + negatives * softplus(c)) / (per_image * 2)
    loc = 2 * (2.0 / 32.0) / (per_image * 2)  # dx = 2 / 32, dy = dw = dh = 0 for the one positive
    assert losses["loss_rpn_cls"].item() == pytest.approx(cls, rel=1e-5)
    assert losses["loss_rpn_loc"].item() == pytest.approx(loc, rel=1e-5)


# ---------------------------------------------------------------------------------------------------- gating
def test_roi_features_are_gated_by_sigmoid_of_objectness_plus_one(config):
    """The pooled box / frame / context features of an RPN proposal are scaled by sigmoid(logit + 1)
    before the neck (the repo's objectness gating, WSL.RPN gating offset 1)."""
    cfg = apply_method(config, "huwsod")
    assert cfg.model.rpn.gate_offset == 1.0
    torch.manual_seed(0)
    model = M.HUWSOD(cfg.model, 6).eval()
    features = torch.rand(3 * 1, model.backbone.out_channels, 8, 8)  # 3 branches x 1 image
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [8.0, 16.0, 56.0, 60.0], [4.0, 4.0, 20.0, 40.0]])
    branch = torch.tensor([0, 1, 2])
    logits = torch.tensor([-2.0, 0.0, 1.5])
    seen = []
    model.head.neck = lambda pooled: seen.append(pooled.clone()) or pooled.flatten(1)
    model.roi_features(features, [{"boxes": boxes, "branch": branch, "logits": logits}])
    model.roi_features(features, [{"boxes": boxes, "branch": branch, "logits": torch.full((3,), 60.0)}])
    gated, ungated = seen  # sigmoid(61) == 1 in float32
    gate = torch.tensor([1 / (1 + math.exp(-(v + 1.0))) for v in logits.tolist()])  # 0.269, 0.731, 0.924
    expected = ungated * gate.repeat(3).view(-1, 1, 1, 1)  # box, frame, context of the 3 proposals
    assert ungated.abs().sum() > 0
    torch.testing.assert_close(gated, expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------- test score
def test_test_time_score_is_the_mean_of_the_refinement_branch_softmaxes(config):
    """Inference scores = mean over the K branches of softmax(branch logits) (background dropped), not the
    last branch, a max or WSDDN's score."""
    cfg = apply_method(config, "oicr")
    cfg.model.head.refine_k = 2
    torch.manual_seed(0)
    model = M.HUWSOD(cfg.model, 2).eval()
    boxes = torch.tensor([[0.0, 0.0, 30.0, 30.0], [50.0, 50.0, 90.0, 90.0]])  # no overlap: NMS keeps both
    r1 = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]))
    r2 = torch.log(torch.tensor([[0.2, 0.7, 0.1], [0.3, 0.5, 0.2]]))
    region = torch.tensor([[0.9, 0.9], [0.9, 0.9]])  # WSDDN: must not be the score
    model.features = lambda images, sizes: torch.zeros(3, 4, 12, 12)
    model.gather_proposals = lambda *args: [{"boxes": boxes}]
    model.roi_features = lambda features, proposals: (None, None, None)
    model.predictions = lambda *args: (region, None, [(r1, torch.zeros(2, 8)), (r2, torch.zeros(2, 8))])
    result = model.inference(torch.zeros(1, 3, 96, 96), [(96, 96)])[0]
    got = {
        (int(c), tuple(b.tolist())): float(s)
        for b, s, c in zip(result["boxes"], result["scores"], result["classes"])
    }
    expected = {  # (0.6 + 0.2) / 2, (0.3 + 0.7) / 2, (0.1 + 0.3) / 2, (0.1 + 0.5) / 2
        (0, (0.0, 0.0, 30.0, 30.0)): 0.4,
        (1, (0.0, 0.0, 30.0, 30.0)): 0.5,
        (0, (50.0, 50.0, 90.0, 90.0)): 0.2,
        (1, (50.0, 50.0, 90.0, 90.0)): 0.3,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6)


# ---------------------------------------------------------------------------------------------------- MRRP order
def test_pyramid_output_is_branch_major_and_branch_b_is_dilation_b():
    """Row b * N + i of the backbone output is image i through branch b (dilation d_b), which equals the
    same weights run as a single-branch backbone with dilation d_b on image i alone."""
    torch.manual_seed(0)
    dilations = [1, 2, 4]
    model = M.MRRPBackbone("tiny", [4, 4, 8, 8], dilations).eval()
    images = torch.randn(2, 3, 64, 48)
    out = model(images)
    assert out.shape == (6, 8, 8, 6)
    for b, d in enumerate(dilations):
        single = M.MRRPBackbone("tiny", [4, 4, 8, 8], [d]).eval()
        single.load_state_dict(model.state_dict())
        for i in range(2):
            torch.testing.assert_close(out[b * 2 + i], single(images[i : i + 1])[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[0], out[2])  # the branches differ: the check above can fail


# ---------------------------------------------------------------------------------------------------- EMA decay
def test_ema_decay_keeps_the_papers_pull_per_image_and_the_mini_uses_it():
    from paperzoo_huwsod.configuration import HUWSODConfig, paper_ema_decay

    from paperzoo_shared.config import load_config

    assert paper_ema_decay(4) == pytest.approx(0.9996, abs=1e-12)  # the paper: 4 images per step
    assert paper_ema_decay(8) == pytest.approx(0.9996 * 0.9996, abs=1e-12)  # two paper steps per step
    assert paper_ema_decay(1) == pytest.approx(0.9996**0.25, abs=1e-12)
    # after the same number of images the teacher has moved as far as in the paper: 1000 x 8 = 2000 x 4
    assert paper_ema_decay(8) ** 1000 == pytest.approx(0.9996**2000, rel=1e-9)
    configs = Path(__file__).resolve().parents[1] / "configs"
    for preset in ("mini", "mini-long"):
        cfg = load_config(HUWSODConfig, configs / f"{preset}.yaml")
        st = cfg.model.self_training
        assert st.ema_decay == pytest.approx(paper_ema_decay(cfg.train.batch_size), abs=1e-8), preset
        assert st.burnin_iters == cfg.train.iterations // 20  # 10k of 200k
    with pytest.raises(ValueError, match="batch_size"):
        paper_ema_decay(0)
