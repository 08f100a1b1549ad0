"""HUWSOD (arXiv 2406.19394) in plain PyTorch: the paper's parts in one file.

Read from the official code (shenyunhang/HUWSOD, detectron2 project ``WSL/``); section numbers refer to
the paper notes (``huwsod.md``), which map the abstract's names onto code mechanisms:

* Multi-rate resampling pyramid (MRRP, sec. 1.3): the last backbone stage runs three times with one shared
  weight tensor and dilations 1/2/4; the three outputs are concatenated along the batch (branch-major).
* Autoencoder proposal generator (sec. 1.4): encoder C -> ... -> 32 -> 1 supervised by the sign of the first
  principal component of the features (DDT-style), decoder back to C; boxes = 8-connected components of
  ``encoder > 0``. Training-only.
* Self-supervised RPN (sec. 1.5): a standard RPN head, one "level" per MRRP branch, whose targets are the
  top-1 box per image class of the weak view's last refinement branch. ROI features are gated by
  ``sigmoid(objectness + 1)``.
* ROI head (sec. 1.6): ROILoopPool (box / frame / context) -> shared 2-FC neck -> WSDDN (cls on the box,
  det = frame - context) + K refinement branches with class-specific regression.
* Step-wise entropy minimisation (sec. 1.7): branch k learns hard pseudo boxes mined (MIST-style) from
  branch k-1; weights are the current view's WSDDN image scores.
* Consistency regularisation (sec. 1.8): a weak and a strong view (same geometry); strong branch k learns
  from *weak* branch k-1 (the branch-supervision table); inter-branch EMA after every step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from paperzoo_huwsod.configuration import AEConfig, HeadConfig, ModelConfig, ProposalConfig, RPNConfig
from paperzoo_huwsod.ops import (
    BoxCoder,
    clip_boxes,
    component_boxes,
    nonempty,
    roi_loop_pool,
    sliding_window_boxes,
)

DUMMY_BOX = (-10000.0, -10000.0, 10000.0, 10000.0)  # the repo's placeholder pseudo box (sec. 1.11)


def _msra_(conv: nn.Module) -> None:
    """detectron2 ``c2_msra_fill``: kaiming normal (fan_out, relu), bias 0."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if getattr(conv, "bias", None) is not None:
        nn.init.zeros_(conv.bias)


# ====================================================================================================
# Backbone with the multi-rate resampling pyramid (sec. 1.3)
# ====================================================================================================


class ConvNorm(nn.Conv2d):
    """A conv followed by BatchNorm, named like detectron2's ``Conv2d(norm=...)`` (``weight``, ``norm.*``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__(
            in_ch, out_ch, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False
        )
        self.norm = nn.BatchNorm2d(out_ch)
        _msra_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


class MRRPConv(nn.Module):
    """One 3x3 weight (and one BN) applied to each branch with its own dilation = padding (``MRRPConv``)."""

    def __init__(self, in_ch: int, out_ch: int, dilations: list[int]):
        super().__init__()
        self.dilations = list(dilations)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        self.norm = nn.BatchNorm2d(out_ch)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [self.norm(F.conv2d(x, self.weight, None, 1, d, d)) for x, d in zip(xs, self.dilations)]


class BasicBlock(nn.Module):
    """ResNet-WS basic block: conv-relu-conv + shortcut, relu, then an optional 2x2 max-pool (stride 2 or 1)."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1, pool_stride: int = 0):
        super().__init__()
        self.shortcut = ConvNorm(in_ch, out_ch, kernel=1) if in_ch != out_ch else None
        self.conv1 = ConvNorm(in_ch, out_ch, dilation=dilation)
        self.conv2 = ConvNorm(out_ch, out_ch, dilation=dilation)
        self.pool_stride = pool_stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        out = F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))
        if self.pool_stride == 2:
            out = F.max_pool2d(out, 2, 2)
        elif self.pool_stride == 1:  # the repo's stride-1 pool: zero-pad right/bottom, 2x2 max
            out = F.max_pool2d(F.pad(out, (0, 1, 0, 1)), 2, 1)
        return out


class MRRPBasicBlock(nn.Module):
    """Basic block whose two 3x3 convs are MRRP convs; BN and the 1x1 shortcut are shared by the branches."""

    def __init__(self, in_ch: int, out_ch: int, dilations: list[int]):
        super().__init__()
        self.shortcut = ConvNorm(in_ch, out_ch, kernel=1) if in_ch != out_ch else None
        self.conv1 = MRRPConv(in_ch, out_ch, dilations)
        self.conv2 = MRRPConv(out_ch, out_ch, dilations)
        self.num_branch = len(dilations)

    def forward(self, x: Tensor | list[Tensor]) -> list[Tensor]:
        xs = x if isinstance(x, list) else [x] * self.num_branch
        out = self.conv2([F.relu(o) for o in self.conv1(xs)])
        short = [self.shortcut(b) for b in xs] if self.shortcut is not None else xs
        return [F.relu(o + s) for o, s in zip(out, short)]


class MRRPConvBlock(nn.Module):
    """The ``tiny`` backbone's MRRP stage: one MRRP conv (shared weight and BN) + ReLU per branch."""

    def __init__(self, in_ch: int, out_ch: int, dilations: list[int]):
        super().__init__()
        self.conv1 = MRRPConv(in_ch, out_ch, dilations)
        self.num_branch = len(dilations)

    def forward(self, x: Tensor | list[Tensor]) -> list[Tensor]:
        xs = x if isinstance(x, list) else [x] * self.num_branch
        return [F.relu(o) for o in self.conv1(xs)]


class MRRPBackbone(nn.Module):
    """Stride-8 backbone ending in an MRRP stage; ``forward`` returns (num_branch * N, C, H/8, W/8).

    ``wsr18`` follows DRN-WSOD's ResNet-WS-18 with detectron2 module names (3-conv stem + 2x2 max-pool,
    res2 ends with a stride-2 pool, res3 with the stride-1 padded pool, res4 dilation 2, res5 = MRRP).
    ``tiny`` (CPU runs): a stride-2 3x3 stem + 2x2 max-pool, a 3x3 conv + 2x2 max-pool, a 3x3 conv, and one
    MRRP 3x3 conv (stride 8).
    """

    stride = 8

    def __init__(self, name: str, channels: list[int], dilations: list[int]):
        super().__init__()
        self.name = name
        self.num_branch = len(dilations)
        if name == "wsr18":
            self.stem = nn.Module()
            self.stem.conv1 = ConvNorm(3, 64, stride=2)
            self.stem.conv2 = ConvNorm(64, 64)
            self.stem.conv3 = ConvNorm(64, 64)
            self.res2 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64, pool_stride=2))
            self.res3 = nn.Sequential(BasicBlock(64, 128), BasicBlock(128, 128, pool_stride=1))
            self.res4 = nn.Sequential(BasicBlock(128, 256, dilation=2), BasicBlock(256, 256, dilation=2))
            self.res5 = nn.ModuleList(
                [MRRPBasicBlock(256, 512, dilations), MRRPBasicBlock(512, 512, dilations)]
            )
            self.out_channels = 512
        elif name == "tiny":
            c0, c1, c2, c3 = channels
            self.stem = nn.Module()
            self.stem.conv1 = ConvNorm(3, c0, stride=2)
            self.res2 = nn.Sequential(ConvNorm(c0, c1))
            self.res3 = nn.Sequential(ConvNorm(c1, c2))
            self.res4 = nn.Sequential()
            self.res5 = nn.ModuleList([MRRPConvBlock(c2, c3, dilations)])
            self.out_channels = c3
        else:
            raise ValueError(f"unknown backbone {name!r}; valid: wsr18, tiny")

    def forward(self, images: Tensor) -> Tensor:
        if self.name == "wsr18":
            x = F.relu(self.stem.conv1(images))
            x = F.relu(self.stem.conv2(x))
            x = F.max_pool2d(F.relu(self.stem.conv3(x)), 2, 2)
            x = self.res4(self.res3(self.res2(x)))
        else:
            x = F.max_pool2d(F.relu(self.stem.conv1(images)), 2, 2)
            x = F.max_pool2d(F.relu(self.res2(x)), 2, 2)
            x = F.relu(self.res3(x))
        branches: Tensor | list[Tensor] = x
        for block in self.res5:
            branches = block(branches)
        return torch.cat(branches, dim=0)  # branch-major: index = branch * N + image


# ====================================================================================================
# Autoencoder proposal generator (sec. 1.4)
# ====================================================================================================


def ae_channels(in_channels: int) -> list[int]:
    """Encoder widths C -> C/2 -> ... -> 32 -> 1 (halving, never below 32): 512 gives 512,256,128,64,32,1."""
    widths = [in_channels]
    while widths[-1] > 32:
        widths.append(max(widths[-1] // 2, 32))
    return [*widths, 1]


@torch.no_grad()
def pca_sign_target(features: Tensor, valid: Tensor) -> Tensor:
    """The AE's self-supervised target: 1 where a feature's projection on the first principal direction > 0.

    ``features`` (B, C, H, W); ``valid`` (B, H, W) bool marks un-padded cells. All valid feature vectors of the
    batch (all images, all branches) are pooled into X (M, C) and mean-centred; v1 is the top eigenvector of
    X^T X (exact, where the repo uses the randomised ``torch.pca_lowrank(niter=2)``); its sign is fixed the
    sklearn "u-based" way, so that the projection of largest magnitude is positive. Padded cells get 0.
    """
    b, c, h, w = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(-1, c).double()
    mask = valid.reshape(-1)
    x = flat[mask]
    target = torch.zeros(b * h * w, dtype=features.dtype, device=features.device)
    if x.shape[0] < 2:
        return target.view(b, h, w)
    x = x - x.mean(dim=0, keepdim=True)
    _, vectors = torch.linalg.eigh(x.T @ x)
    v1 = vectors[:, -1]
    projection = x @ v1
    if projection[projection.abs().argmax()] < 0:
        projection = -projection
    target[mask] = (projection > 0).to(features.dtype)
    return target.view(b, h, w)


class AEProposalGenerator(nn.Module):
    """``AEHead``: conv encoder to one channel, conv decoder back; losses and connected-component boxes."""

    def __init__(self, in_channels: int, cfg: AEConfig, stride: int, min_size: float):
        super().__init__()
        widths = ae_channels(in_channels)
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        back = widths[::-1]
        self.decoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(back[:-1], back[1:]))
        for conv in [*self.encoder, *self.decoder]:
            _msra_(conv)
        self.cfg = cfg
        self.stride = stride
        self.min_size = min_size

    @staticmethod
    def _run(layers: nn.ModuleList, x: Tensor) -> Tensor:
        for i, conv in enumerate(layers):
            x = conv(x)
            if i < len(layers) - 1:
                x = F.elu(x)
        return x

    def forward(self, features: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder map (B, 1, H, W), reconstruction (B, C, H, W) and PCA target (B, H, W)."""
        code = self._run(self.encoder, features)
        recon = self._run(self.decoder, code)
        target = pca_sign_target(features.detach(), valid)
        return code, recon, target

    def losses(self, features: Tensor, code: Tensor, recon: Tensor, target: Tensor, num_branch: int) -> dict:
        out = {}
        for b, (f_b, c_b, r_b, t_b) in enumerate(
            zip(*(t.chunk(num_branch) for t in (features.detach(), code, recon, target)))
        ):
            out[f"loss_encode_{b}"] = self.cfg.encode_weight * F.binary_cross_entropy_with_logits(
                c_b[:, 0], t_b, reduction="mean"
            )
            out[f"loss_decode_{b}"] = self.cfg.decode_weight * F.mse_loss(r_b, f_b, reduction="mean")
        return out

    @torch.no_grad()
    def boxes(self, code: Tensor, valid: Tensor, image_sizes: list[tuple[int, int]], num_branch: int):
        """Per image: boxes (R, 4) and branch ids from the 8-connected components of ``code > 0``."""
        n = len(image_sizes)
        positive = ((code[:, 0] > 0) & valid).cpu().numpy()
        per_image = []
        for i, (height, width) in enumerate(image_sizes):
            boxes, branches = [], []
            for b in range(num_branch):
                comps = component_boxes(positive[b * n + i], self.cfg.min_component)
                found = [
                    (c0 * self.stride, r0 * self.stride, c1 * self.stride, r1 * self.stride)
                    for r0, c0, r1, c1 in comps
                ]
                if not found:  # no component: the whole image
                    found = [(0.0, 0.0, float(width), float(height))]
                for box in found:
                    boxes.append(box)
                    branches.append(b)
            tensor = clip_boxes(torch.tensor(boxes, dtype=torch.float32), height, width)
            branch = torch.tensor(branches, dtype=torch.int64)
            keep = nonempty(tensor, self.min_size)
            per_image.append((tensor[keep].to(code.device), branch[keep].to(code.device)))
        return per_image


# ====================================================================================================
# Self-supervised RPN (sec. 1.5)
# ====================================================================================================


def cell_anchors(sizes: list[float], ratios: list[float]) -> Tensor:
    """detectron2 ``generate_cell_anchors``: for each size, for each ratio (h / w), a box centred at 0."""
    anchors = []
    for size in sizes:
        area = size**2.0
        for ratio in ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(cell: Tensor, height: int, width: int, stride: int) -> Tensor:
    """Anchors of one feature map, ordered (H, W, A) as detectron2 (offset 0: centres at x * stride)."""
    xs = torch.arange(width, dtype=torch.float32) * stride
    ys = torch.arange(height, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)], dim=1)
    return (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)


def match_labels(iou: Tensor, low: float, high: float, allow_low_quality: bool) -> tuple[Tensor, Tensor]:
    """detectron2 ``Matcher`` with labels [0, -1, 1]: ``iou`` is (G, A); returns (matched gt, label) per anchor."""
    values, matched = iou.max(dim=0)
    labels = torch.full_like(matched, -1)
    labels[values < low] = 0
    labels[values >= high] = 1
    if allow_low_quality:
        best = iou.max(dim=1, keepdim=True).values
        _, anchors = torch.nonzero(iou == best, as_tuple=True)
        labels[anchors] = 1
    return matched, labels


def subsample_labels(labels: Tensor, batch_size: int, positive_fraction: float, bg_label: int):
    """detectron2 ``subsample_labels``: random positives (<= fraction) then negatives up to ``batch_size``.

    ``labels`` uses -1 for ignore and ``bg_label`` for negatives; returns (positive idx, negative idx).
    """
    positive = torch.nonzero((labels != -1) & (labels != bg_label)).squeeze(1)
    negative = torch.nonzero(labels == bg_label).squeeze(1)
    num_pos = min(positive.numel(), int(batch_size * positive_fraction))
    num_neg = min(negative.numel(), batch_size - num_pos)
    perm_pos = torch.randperm(positive.numel(), device=labels.device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), device=labels.device)[:num_neg]
    return positive[perm_pos], negative[perm_neg]


@dataclass
class RPNOutput:
    logits: list[Tensor]  # per branch (N, H*W*A)
    deltas: list[Tensor]  # per branch (N, H*W*A, 4)
    anchors: list[Tensor]  # per branch (H*W*A, 4)


class SelfSupervisedRPN(nn.Module):
    """``RPNWSL``: shared 3x3 conv + 1x1 objectness / deltas over every MRRP branch."""

    def __init__(self, in_channels: int, cfg: RPNConfig, stride: int, min_size: float):
        super().__init__()
        counts = {len(sizes) for sizes in cfg.anchor_sizes}
        if len(counts) != 1:
            raise ValueError(
                f"rpn.anchor_sizes must give every branch the same number of sizes: {cfg.anchor_sizes}"
            )
        self.num_anchors = counts.pop() * len(cfg.aspect_ratios)
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, self.num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(in_channels, self.num_anchors * 4, 1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        self.cfg = cfg
        self.stride = stride
        self.min_size = min_size
        self.coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.cells = [cell_anchors(sizes, cfg.aspect_ratios) for sizes in cfg.anchor_sizes]
        self._anchor_cache: dict[tuple[int, int, int], Tensor] = {}

    def anchors(self, branch: int, height: int, width: int, device: torch.device) -> Tensor:
        key = (branch, height, width)
        if key not in self._anchor_cache:
            self._anchor_cache[key] = grid_anchors(self.cells[branch], height, width, self.stride)
        return self._anchor_cache[key].to(device)

    def forward(self, features: Tensor, num_branch: int) -> RPNOutput:
        logits, deltas, anchors = [], [], []
        for b, feat in enumerate(features.chunk(num_branch)):
            t = F.relu(self.conv(feat))
            n, _, h, w = t.shape
            logits.append(self.objectness_logits(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.anchor_deltas(t).view(n, self.num_anchors, 4, h, w).permute(0, 3, 4, 1, 2)
            deltas.append(d.reshape(n, -1, 4))
            anchors.append(self.anchors(b, h, w, feat.device))
        return RPNOutput(logits, deltas, anchors)

    @torch.no_grad()
    def proposals(self, out: RPNOutput, image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """``find_top_rpn_proposals_group``: per (branch, anchor shape) top-k, clip, min size, grouped NMS.

        Group (level) id = branch * 1000 + anchor index; the branch used for pooling is ``level // 1000``.
        """
        n = len(image_sizes)
        cand_boxes, cand_scores, cand_levels = [], [], []
        for b, (logits, deltas, anchors) in enumerate(zip(out.logits, out.deltas, out.anchors)):
            hw = logits.shape[1] // self.num_anchors
            boxes = self.coder.apply_deltas(deltas.reshape(-1, 4), anchors.repeat(n, 1)).view(
                n, hw, self.num_anchors, 4
            )
            scores = logits.view(n, hw, self.num_anchors)
            k = min(hw, self.cfg.pre_nms_topk)
            for a in range(self.num_anchors):
                top, idx = scores[:, :, a].sort(dim=1, descending=True)
                cand_scores.append(top[:, :k])
                cand_boxes.append(torch.gather(boxes[:, :, a], 1, idx[:, :k, None].expand(n, k, 4)))
                cand_levels.append(torch.full((k,), b * 1000 + a, dtype=torch.int64, device=logits.device))
        all_boxes = torch.cat(cand_boxes, dim=1)
        all_scores = torch.cat(cand_scores, dim=1)
        levels = torch.cat(cand_levels)
        results = []
        for i, (height, width) in enumerate(image_sizes):
            boxes, scores, lvl = all_boxes[i], all_scores[i], levels
            finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
            if not finite.all():
                if self.training:
                    raise FloatingPointError("RPN predicted Inf/NaN boxes or scores: training has diverged")
                boxes, scores, lvl = boxes[finite], scores[finite], lvl[finite]
            boxes = clip_boxes(boxes, height, width)
            keep = nonempty(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.cfg.nms_thresh)[: self.cfg.post_nms_topk]
            results.append({"boxes": boxes[keep], "logits": scores[keep], "branch": lvl[keep] // 1000})
        return results

    def losses(self, out: RPNOutput, targets: list[Tensor]) -> dict[str, Tensor]:
        """BCE on sampled anchors + L1 (smooth-L1 with beta 0) on positives, both / (batch_per_image * N)."""
        anchors = torch.cat(out.anchors)
        logits = torch.cat(out.logits, dim=1)
        deltas = torch.cat(out.deltas, dim=1)
        low, high = self.cfg.iou_thresholds
        gt_labels, gt_deltas = [], []
        for gt in targets:
            matched, labels = match_labels(box_iou(gt, anchors), low, high, allow_low_quality=True)
            pos, neg = subsample_labels(
                torch.where(labels == 1, 1, torch.where(labels == 0, 0, -1)),
                self.cfg.batch_size_per_image,
                self.cfg.positive_fraction,
                bg_label=0,
            )
            sampled = torch.full_like(labels, -1)
            sampled[pos] = 1
            sampled[neg] = 0
            gt_labels.append(sampled)
            gt_deltas.append(self.coder.get_deltas(anchors, gt[matched]))
        labels = torch.stack(gt_labels)
        target_deltas = torch.stack(gt_deltas)
        positive = labels == 1
        valid = labels >= 0
        normalizer = self.cfg.batch_size_per_image * len(targets)
        loc = F.l1_loss(deltas[positive], target_deltas[positive], reduction="sum")
        cls = F.binary_cross_entropy_with_logits(logits[valid], labels[valid].float(), reduction="sum")
        return {
            "loss_rpn_cls": self.cfg.loss_weight * cls / normalizer,
            "loss_rpn_loc": self.cfg.loss_weight * loc / normalizer,
        }


# ====================================================================================================
# ROI head: ROILoopPool, neck, WSDDN, refinement branches (sec. 1.6, 1.7)
# ====================================================================================================


class RefinementBranch(nn.Module):
    """``OICROutputLayers``: (C+1)-way classifier (background last) and class-specific deltas."""

    def __init__(self, dim: int, num_classes: int, regression: bool):
        super().__init__()
        self.cls_score = nn.Linear(dim, num_classes + 1)
        self.bbox_pred = nn.Linear(dim, num_classes * 4) if regression else None
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.zeros_(self.cls_score.bias)
        if self.bbox_pred is not None:
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.cls_score(x)
        if self.bbox_pred is None:
            return scores, x.new_zeros((x.shape[0], self.num_classes * 4))
        return scores, self.bbox_pred(x)


class WSODHead(nn.Module):
    """Neck (2 x FC + ReLU + dropout, shared by box/frame/context), WSDDN and the refinement branches."""

    def __init__(self, in_channels: int, num_classes: int, cfg: HeadConfig):
        super().__init__()
        p = cfg.pooled_size
        self.fc1 = nn.Linear(in_channels * p * p, cfg.neck_dim)
        self.fc2 = nn.Linear(cfg.neck_dim, cfg.neck_dim)
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, std=cfg.neck_init_std)
            nn.init.constant_(fc.bias, 0.1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.wsddn_cls = nn.Linear(cfg.neck_dim, num_classes)
        self.wsddn_det = nn.Linear(cfg.neck_dim, num_classes)
        for fc in (self.wsddn_cls, self.wsddn_det):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.refinements = nn.ModuleList(
            RefinementBranch(cfg.neck_dim, num_classes, cfg.refine_reg) for _ in range(cfg.refine_k)
        )
        self.cfg = cfg

    def neck(self, pooled: Tensor) -> Tensor:
        x = self.dropout(F.relu(self.fc1(pooled.flatten(1))))
        return self.dropout(F.relu(self.fc2(x)))


def wsddn_scores(cls_logits: Tensor, det_logits: Tensor, counts: list[int]) -> tuple[Tensor, Tensor]:
    """WSDDN: region scores softmax_classes(cls) * softmax_regions(det) per image, and image scores.

    Returns (region scores (R, K), image scores (N, K) = clamp(sum over the image's regions, 1e-6, 1 - 1e-6)).
    """
    cls_prob = F.softmax(cls_logits, dim=1)
    region, image = [], []
    for c, d in zip(cls_prob.split(counts), det_logits.split(counts)):
        s = c * F.softmax(d, dim=0)
        region.append(s)
        image.append(s.sum(dim=0))
    return torch.cat(region), torch.stack(image).clamp(1e-6, 1 - 1e-6)


@torch.no_grad()
def mine_pseudo_boxes(
    scores: Tensor,
    boxes: Tensor,
    labels: list[int],
    image_scores: Tensor,
    cfg: HeadConfig,
) -> dict[str, Tensor]:
    """Pseudo ground truth of one image from the previous branch (``get_pgt_mist`` / ``get_pgt_top_k``).

    ``scores`` (R, K or K+1), ``boxes`` (R, K, 4) (regressed per class, or the proposals repeated),
    ``labels`` the image's class indices, ``image_scores`` (K,) the current view's WSDDN image scores.
    MIST: per class the top ``max(int(R * fraction), 1)`` proposals, keep those with score >= threshold
    (the top-1 always), class-wise NMS at ``mist_nms``. OICR: the top-1 proposal per class. Weight: the
    image score of the class (HUWSOD) or the box's own score (OICR). No class: the dummy box.
    """
    device = scores.device
    if not labels:
        return {
            "boxes": torch.tensor([DUMMY_BOX], device=device),
            "classes": torch.zeros(1, dtype=torch.int64, device=device),
            "weights": torch.ones(1, device=device),
        }
    cls = torch.tensor(labels, dtype=torch.int64, device=device)
    s = scores[:, cls]  # (R, G)
    b = boxes[:, cls]  # (R, G, 4)
    r = s.shape[0]
    top = max(int(r * cfg.mist_top_fraction), 1) if cfg.mining == "mist" else 1
    top = min(top, r)
    top_scores, top_idx = s.topk(top, dim=0)  # (top, G)
    top_boxes = torch.gather(b, 0, top_idx[:, :, None].expand(top, len(labels), 4))
    classes = cls[None, :].expand(top, -1)
    weights = image_scores[cls][None, :].expand(top, -1) if cfg.pgt_weight == "image_score" else top_scores
    if cfg.mining == "mist":
        keep = top_scores >= cfg.mist_score_thresh
        keep[0] = True
        top_scores, top_boxes, classes, weights = (
            top_scores[keep],
            top_boxes[keep],
            classes[keep],
            weights[keep],
        )
        nms = batched_nms(top_boxes, top_scores, classes, cfg.mist_nms)
        top_scores, top_boxes, classes, weights = top_scores[nms], top_boxes[nms], classes[nms], weights[nms]
    return {
        "boxes": top_boxes.reshape(-1, 4),
        "classes": classes.reshape(-1),
        "weights": weights.reshape(-1).float(),
    }


@torch.no_grad()
def label_proposals(
    proposals: Tensor, targets: dict[str, Tensor], num_classes: int, cfg: HeadConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Classes (bg = K, ignored = -1), target boxes and weights of one image's proposals for one branch.

    IoU >= ``fg_iou`` with the best pseudo box gives its class, otherwise background (``label_and_sample_
    proposals_wsl``); at most ``roi_batch_per_image`` proposals are kept (all positives first), the rest
    ignored with weight 0.
    """
    iou = box_iou(targets["boxes"], proposals)
    values, matched = iou.max(dim=0)
    classes = targets["classes"][matched].clone()
    classes[values < cfg.fg_iou] = num_classes
    pos, neg = subsample_labels(classes, cfg.roi_batch_per_image, 1.0, bg_label=num_classes)
    sampled = torch.full_like(classes, -1)
    sampled[pos] = classes[pos]
    sampled[neg] = classes[neg]
    weights = targets["weights"][matched].clone()
    weights[sampled == -1] = 0.0
    return sampled, targets["boxes"][matched], weights


def refinement_losses(
    scores: Tensor,
    deltas: Tensor,
    proposals: Tensor,
    classes: Tensor,
    target_boxes: Tensor,
    weights: Tensor,
    coder: BoxCoder,
    num_classes: int,
    regression: bool,
) -> dict[str, Tensor]:
    """Weighted CE / #(weights > 1e-12) and weighted L1 (smooth-L1 beta 0) on foreground / #proposals."""
    ce = F.cross_entropy(scores, classes.clamp(min=0), reduction="none")
    ce = torch.where(classes >= 0, ce, torch.zeros_like(ce)) * weights
    losses = {"cls": ce.sum() / (weights > 1e-12).sum().clamp(min=1)}
    if regression:
        fg = torch.nonzero((classes >= 0) & (classes < num_classes)).squeeze(1)
        pred = deltas.view(-1, num_classes, 4)[fg, classes[fg]]
        target = coder.get_deltas(proposals[fg], target_boxes[fg])
        l1 = (pred - target).abs().sum(dim=1) * weights[fg]
        losses["box_reg"] = l1.sum() / max(classes.numel(), 1)
    return losses


def branch_supervision_table(num_refine: int, consistency: bool) -> list[int]:
    """``WSL.HUWSOD.BRANCH_SUPERVISION``: weak pass -1 (previous branch of the same pass); strong pass k."""
    return [-1] * num_refine + (list(range(num_refine)) if consistency else [])


def branch_supervision_index(k: int, forward_count: int, table: list[int], num_refine: int) -> int:
    """The repo's ``table[k + K * iter % len(table)]`` (``*`` and ``%`` bind left to right, so it is
    ``k + ((K * iter) % len)``); ``iter`` counts ROI-head training forwards: even = weak, odd = strong."""
    return table[k + (num_refine * forward_count) % len(table)]


# ====================================================================================================
# The detector
# ====================================================================================================


def normalize_images(
    images: Tensor,
    mean: Tensor,
    std: Tensor,
    input_format: str,
    image_sizes: list[tuple[int, int]] | None = None,
) -> Tensor:
    """(N, 3, H, W) RGB 0-255 -> ``input_format`` order, (x - mean) / std; cells outside each image's
    ``(height, width)`` (the batch padding) are set to 0 after normalising, as detectron2 pads."""
    if input_format == "bgr":
        images = images.flip(1)
    x = (images - mean) / std
    if image_sizes is not None:
        _, _, h, w = x.shape
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        inside = torch.stack(
            [(rows[:, None] < ih) & (cols[None, :] < iw) for ih, iw in image_sizes]
        )  # (N, H, W)
        x = x * inside[:, None].to(x.dtype)
    return x


@dataclass
class ViewOutput:
    """What one forward of the ROI head leaves for the next view and for the RPN targets."""

    losses: dict[str, Tensor] = field(default_factory=dict)
    image_scores: Tensor | None = None


class HUWSOD(nn.Module):
    """HUWSOD and its anchors: which parts run is decided by the :class:`ModelConfig` flags."""

    def __init__(self, cfg: ModelConfig, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        bcfg = cfg.backbone
        self.backbone = MRRPBackbone(bcfg.name, bcfg.channels, bcfg.branch_dilations)
        self.num_branch = self.backbone.num_branch
        channels = self.backbone.out_channels
        stride = self.backbone.stride
        min_size = cfg.proposals.min_size
        self.ae = AEProposalGenerator(channels, cfg.ae, stride, min_size) if cfg.ae.enabled else None
        self.rpn = SelfSupervisedRPN(channels, cfg.rpn, stride, min_size) if cfg.rpn.enabled else None
        self.head = WSODHead(channels, num_classes, cfg.head)
        self.coder = BoxCoder(cfg.head.bbox_reg_weights)
        self.register_buffer("pixel_mean", torch.tensor(bcfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(bcfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.forward_count = 0  # ROI-head training forwards (the repo's roi_heads.iter)
        self.table = branch_supervision_table(cfg.head.refine_k, cfg.self_training.consistency)
        self._windows: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        if bcfg.freeze:
            self.backbone.requires_grad_(False)

    # -------------------------------------------------------------------------------------------- utils
    def train(self, mode: bool = True) -> HUWSOD:
        super().train(mode)
        if self.cfg.backbone.freeze:
            self.backbone.eval()  # frozen BN (the repo converts it to FrozenBatchNorm2d)
        return self

    def normalize(self, images: Tensor, image_sizes: list[tuple[int, int]] | None = None) -> Tensor:
        """(N, 3, H, W) RGB 0-255 -> the backbone's channel order, mean/std normalised.

        With ``image_sizes``, the batch padding (bottom/right of each image) is 0 *after* normalisation,
        i.e. the mean colour, as detectron2 pads (``ImageList.from_tensors`` on normalised images). The
        loaders pad raw 0-255 images with 0 (black), which would otherwise reach the network.
        """
        return normalize_images(
            images, self.pixel_mean, self.pixel_std, self.cfg.backbone.input_format, image_sizes
        )

    def features(self, images: Tensor, image_sizes: list[tuple[int, int]] | None = None) -> Tensor:
        x = self.normalize(images, image_sizes)
        if self.cfg.backbone.freeze:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def feature_valid(self, features: Tensor, image_sizes: list[tuple[int, int]]) -> Tensor:
        """(num_branch * N, H, W) mask of feature cells inside each image (not padding)."""
        _, _, h, w = features.shape
        stride = self.backbone.stride
        rows = torch.arange(h, device=features.device)
        cols = torch.arange(w, device=features.device)
        masks = [
            (rows[:, None] < math.ceil(ih / stride)) & (cols[None, :] < math.ceil(iw / stride))
            for ih, iw in image_sizes
        ]
        return torch.stack(masks * self.num_branch)

    def branch_of_size(self, boxes: Tensor) -> Tensor:
        """Scale-aware MRRP branch for external proposals: the branch whose anchor sizes are closest in log scale."""
        sizes = torch.tensor(
            [math.sqrt(min(s) * max(s)) for s in self.cfg.rpn.anchor_sizes[: self.num_branch]],
            device=boxes.device,
        )
        side = ((boxes[:, 2] - boxes[:, 0]).clamp(min=1) * (boxes[:, 3] - boxes[:, 1]).clamp(min=1)).sqrt()
        return (side[:, None].log() - sizes[None, :].log()).abs().argmin(dim=1)

    def external_proposals(self, height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (height, width)
        if key not in self._windows:
            pcfg: ProposalConfig = self.cfg.proposals
            scale = min(height, width) / pcfg.window_reference if pcfg.window_reference > 0 else 1.0
            boxes = sliding_window_boxes(
                height,
                width,
                [s * scale for s in pcfg.window_sizes],
                pcfg.window_ratios,
                pcfg.window_step,
                pcfg.min_size,
            )
            self._windows[key] = (boxes, self.branch_of_size(boxes))
        boxes, branches = self._windows[key]
        return boxes.to(device), branches.to(device)

    # -------------------------------------------------------------------------------------------- pieces
    def gather_proposals(
        self,
        features: Tensor,
        image_sizes: list[tuple[int, int]],
        rpn_props: list[dict[str, Tensor]] | None,
        ae_boxes: list[tuple[Tensor, Tensor]] | None,
        external: list[Tensor] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes, MRRP branch and objectness logit of every proposal source in use.

        ``external`` holds the per-image offline proposals (already mapped to the input's pixels) when
        ``proposals.external = segments``; sliding windows are generated here.
        """
        out = []
        device = features.device
        mode = self.cfg.proposals.external
        if mode == "segments" and external is None:
            raise ValueError(
                "proposals.external=segments needs the per-image offline proposals (external=...)"
            )
        for i, (h, w) in enumerate(image_sizes):
            boxes, branches, logits = [], [], []
            if mode != "none":
                if mode == "segments":
                    b = clip_boxes(external[i].to(device=device, dtype=torch.float32), h, w)
                    b = b[nonempty(b, self.cfg.proposals.min_size)]
                    if len(b) == 0:
                        b = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=device)
                    br = self.branch_of_size(b)
                else:
                    b, br = self.external_proposals(h, w, device)
                boxes.append(b)
                branches.append(br)
                logits.append(torch.ones(len(b), device=device))
            if rpn_props is not None:
                boxes.append(rpn_props[i]["boxes"])
                branches.append(rpn_props[i]["branch"])
                logits.append(rpn_props[i]["logits"])
            if ae_boxes is not None:
                boxes.append(ae_boxes[i][0])
                branches.append(ae_boxes[i][1])
                logits.append(torch.ones(len(ae_boxes[i][0]), device=device))  # the repo sets AE logits to 1
            out.append(
                {"boxes": torch.cat(boxes), "branch": torch.cat(branches), "logits": torch.cat(logits)}
            )
        return out

    def roi_features(
        self, features: Tensor, proposals: list[dict[str, Tensor]]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Neck features of box, frame and context for all proposals of the batch."""
        n = len(proposals)
        rois = torch.cat(
            [
                torch.cat([(p["branch"] * n + i).to(p["boxes"].dtype)[:, None], p["boxes"]], dim=1)
                for i, p in enumerate(proposals)
            ]
        )
        scale = 1.0 / self.backbone.stride
        box, frame, context = roi_loop_pool(
            features, rois, scale, self.cfg.head.pooled_size, self.cfg.head.context_ratio
        )
        if self.rpn is not None:
            # objectness gating, sigmoid(logit + 1); proposals are fixed (no gradient through them)
            gate = torch.sigmoid(
                torch.cat([p["logits"] for p in proposals]).detach() + self.cfg.rpn.gate_offset
            )
            gate = gate.view(-1, 1, 1, 1)
            box, frame, context = box * gate, frame * gate, context * gate
        r = box.shape[0]
        x = self.head.neck(torch.cat([box, frame, context]))
        return x[:r], x[r : 2 * r], x[2 * r :]

    def predictions(self, x_box: Tensor, x_frame: Tensor, x_context: Tensor, counts: list[int]):
        """WSDDN region/image scores and, per refinement branch, (scores logits, deltas)."""
        cls_logits = self.head.wsddn_cls(x_box)
        det_logits = self.head.wsddn_det(x_frame) - self.head.wsddn_det(x_context)
        region, image = wsddn_scores(cls_logits, det_logits, counts)
        refined = [branch(x_box) for branch in self.head.refinements]
        return region, image, refined

    def decode(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """(R, 4K) deltas on (R, 4) proposals -> (R, K, 4) boxes."""
        return self.coder.apply_deltas(deltas, boxes).view(-1, self.num_classes, 4)

    # -------------------------------------------------------------------------------------------- training
    def forward_view(
        self,
        images: Tensor,
        image_sizes: list[tuple[int, int]],
        labels: list[list[int]],
        prev: list[tuple[list[Tensor], list[Tensor]]],
        gt: list[dict[str, Tensor]] | None = None,
        burnin: bool = False,
        external: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """One training forward of one view; appends its branch predictions to ``prev`` (sec. 1.7)."""
        losses: dict[str, Tensor] = {}
        features = self.features(images, image_sizes)
        valid = self.feature_valid(features, image_sizes)
        ae_boxes = None
        if self.ae is not None:
            code, recon, target = self.ae(features, valid)
            losses.update(self.ae.losses(features, code, recon, target, self.num_branch))
            ae_boxes = None if burnin else self.ae.boxes(code.detach(), valid, image_sizes, self.num_branch)
        if burnin:
            return losses
        rpn_out = rpn_props = None
        if self.rpn is not None:
            rpn_out = self.rpn(features, self.num_branch)
            rpn_props = self.rpn.proposals(rpn_out, image_sizes)
        proposals = self.gather_proposals(features, image_sizes, rpn_props, ae_boxes, external)
        counts = [len(p["boxes"]) for p in proposals]
        boxes = torch.cat([p["boxes"] for p in proposals])
        x_box, x_frame, x_context = self.roi_features(features, proposals)
        region, image_scores, refined = self.predictions(x_box, x_frame, x_context, counts)

        # WSDDN image-level BCE
        n, k = len(labels), self.num_classes
        y = torch.zeros(n, k, device=images.device)
        for i, lab in enumerate(labels):
            y[i, lab] = 1.0
        bce = F.binary_cross_entropy(image_scores, y, reduction="sum")
        hcfg = self.cfg.head
        losses["loss_cls"] = hcfg.wsddn_weight * (bce / (n * k) if hcfg.wsddn_loss == "mean" else bce / n)

        # cascade: previous predictions list (sec. 1.7)
        proposal_boxes = boxes[:, None, :].expand(-1, k, 4)
        pred_scores = [region.detach()]
        pred_boxes = [proposal_boxes.detach()]
        prev.append((list(region.detach().split(counts)), list(proposal_boxes.split(counts))))
        phi = image_scores.detach()
        for kk in range(len(self.head.refinements)):
            scores_logits, deltas = refined[kk]
            if self.cfg.supervision == "full":
                if gt is None:
                    raise ValueError("model.supervision=full needs the annotated boxes of the batch")
                targets = [_gt_targets(g, images.device) for g in gt]
            else:
                idx = branch_supervision_index(kk, self.forward_count, self.table, hcfg.refine_k)
                p_scores, p_boxes = prev[idx]
                targets = [
                    mine_pseudo_boxes(p_scores[i], p_boxes[i], labels[i], phi[i], hcfg) for i in range(n)
                ]
            labelled = [label_proposals(p["boxes"], t, k, hcfg) for p, t in zip(proposals, targets)]
            classes = torch.cat([lab[0] for lab in labelled])
            tboxes = torch.cat([lab[1] for lab in labelled])
            weights = torch.cat([lab[2] for lab in labelled])
            branch_losses = refinement_losses(
                scores_logits, deltas, boxes, classes, tboxes, weights, self.coder, k, hcfg.refine_reg
            )
            losses[f"loss_cls_r{kk}"] = branch_losses["cls"]
            if "box_reg" in branch_losses:
                losses[f"loss_box_reg_r{kk}"] = branch_losses["box_reg"]
            probs = F.softmax(scores_logits, dim=1).detach()
            decoded = self.decode(deltas.detach(), boxes) if hcfg.refine_reg else proposal_boxes
            prev.append((list(probs.split(counts)), list(decoded.detach().split(counts))))
            pred_scores.append(probs)
            pred_boxes.append(decoded)

        if self.rpn is not None:
            # RPN targets: top-1 box per image class of the *weak* view's last branch (RPN_SUPERVISION = K)
            p_scores, p_boxes = prev[self.cfg.head.refine_k]
            top1 = dataclasses.replace(hcfg, mining="oicr_top1", pgt_weight="top_score")
            rpn_targets = [
                mine_pseudo_boxes(p_scores[i], p_boxes[i], labels[i], phi[i], top1)["boxes"] for i in range(n)
            ]
            losses.update(self.rpn.losses(rpn_out, rpn_targets))
        self.forward_count += 1
        return losses

    def training_losses(
        self,
        weak: Tensor,
        strong: Tensor | None,
        image_sizes: list[tuple[int, int]],
        labels: list[list[int]],
        gt: list[dict[str, Tensor]] | None = None,
        burnin: bool = False,
        external: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """All losses of one step: the weak view, then (consistency on, after burn-in) the strong view."""
        prev: list[tuple[list[Tensor], list[Tensor]]] = []
        losses = self.forward_view(weak, image_sizes, labels, prev, gt, burnin, external)
        if burnin or strong is None or not self.cfg.self_training.consistency:
            return losses
        strong_losses = self.forward_view(strong, image_sizes, labels, prev, gt, burnin, external)
        total = dict(losses)
        for name, value in strong_losses.items():
            total[name] = total[name] + value if name in total else value
        return total

    @torch.no_grad()
    def ema_update(self) -> None:
        """Inter-branch EMA (``student2teacher_2wsddn_cls``): r_{k-1} <- d r_{k-1} + (1-d) r_k, k = K..2, then
        WSDDN cls <- d WSDDN cls + (1-d) r_1 cls without its background row."""
        decay = self.cfg.self_training.ema_decay
        branches = list(self.head.refinements)
        for k in range(len(branches) - 1, 0, -1):
            teacher, student = branches[k - 1], branches[k]
            for t, s in zip(teacher.parameters(), student.parameters()):
                t.mul_(decay).add_(s, alpha=1 - decay)
        if branches:
            first = branches[0].cls_score
            self.head.wsddn_cls.weight.mul_(decay).add_(first.weight[:-1], alpha=1 - decay)
            self.head.wsddn_cls.bias.mul_(decay).add_(first.bias[:-1], alpha=1 - decay)

    # -------------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def inference(
        self, images: Tensor, image_sizes: list[tuple[int, int]], external: list[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections per image (boxes in the input's pixels): mean of the refinement branches (WSDDN alone
        when K = 0), class-wise NMS, top-k. Proposals: RPN (HUWSOD) or the external ones; never the AE."""
        features = self.features(images, image_sizes)
        rpn_props = (
            self.rpn.proposals(self.rpn(features, self.num_branch), image_sizes)
            if self.rpn is not None
            else None
        )
        proposals = self.gather_proposals(features, image_sizes, rpn_props, None, external)
        counts = [len(p["boxes"]) for p in proposals]
        boxes = torch.cat([p["boxes"] for p in proposals])
        x_box, x_frame, x_context = self.roi_features(features, proposals)
        region, _, refined = self.predictions(x_box, x_frame, x_context, counts)
        k = self.num_classes
        if refined:
            scores = torch.stack([F.softmax(s, dim=1) for s, _ in refined]).mean(0)[:, :k]
            deltas = torch.stack([d for _, d in refined]).mean(0)
            pred = self.decode(deltas, boxes) if self.cfg.head.refine_reg else boxes[:, None].expand(-1, k, 4)
        else:
            scores = region
            pred = boxes[:, None].expand(-1, k, 4)
        results = []
        hcfg = self.cfg.head
        for s, b, (h, w) in zip(scores.split(counts), pred.split(counts), image_sizes):
            b = clip_boxes(b, h, w)
            mask = s > hcfg.test_score_thresh
            idx = torch.nonzero(mask)
            det_boxes, det_scores, det_classes = b[mask], s[mask], idx[:, 1]
            keep = batched_nms(det_boxes, det_scores, det_classes, hcfg.test_nms)[: hcfg.test_topk]
            results.append(
                {"boxes": det_boxes[keep], "scores": det_scores[keep], "classes": det_classes[keep]}
            )
        return results

    @torch.no_grad()
    def proposal_boxes(
        self,
        images: Tensor,
        image_sizes: list[tuple[int, int]],
        source: str,
        external: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """Proposals of one source (``rpn``, ``ae`` or ``external``) per image, for recall diagnostics."""
        features = self.features(images, image_sizes)
        if source == "rpn" and self.rpn is not None:
            return [p["boxes"] for p in self.rpn.proposals(self.rpn(features, self.num_branch), image_sizes)]
        if source == "ae" and self.ae is not None:
            valid = self.feature_valid(features, image_sizes)
            code = self.ae._run(self.ae.encoder, features)
            return [b for b, _ in self.ae.boxes(code, valid, image_sizes, self.num_branch)]
        if source == "external":
            return [p["boxes"] for p in self.gather_proposals(features, image_sizes, None, None, external)]
        raise ValueError(f"no proposal source {source!r} in this model")


def trainable_groups(model: HUWSOD) -> dict[str, list[nn.Parameter]]:
    """Parameter groups: backbone (if not frozen), ae, rpn, roi (neck + predictors)."""
    groups = {
        "backbone": [p for p in model.backbone.parameters() if p.requires_grad],
        "ae": list(model.ae.parameters()) if model.ae is not None else [],
        "rpn": list(model.rpn.parameters()) if model.rpn is not None else [],
        "roi": list(model.head.parameters()),
    }
    return {name: params for name, params in groups.items() if params}


def _gt_targets(gt: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Annotated boxes as refinement targets (weight 1); an image without boxes gets the dummy box."""
    if len(gt["boxes"]) == 0:
        return {
            "boxes": torch.tensor([DUMMY_BOX], device=device),
            "classes": torch.zeros(1, dtype=torch.int64, device=device),
            "weights": torch.ones(1, device=device),
        }
    return {
        "boxes": gt["boxes"],
        "classes": gt["classes"],
        "weights": torch.ones(len(gt["boxes"]), device=device),
    }
