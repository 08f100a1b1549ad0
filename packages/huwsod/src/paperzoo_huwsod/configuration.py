"""Typed configuration of HUWSOD and its anchors, loaded with :func:`paperzoo_shared.config.load_config`.

One dataclass tree describes a run: the data (WSOD-Shapes, VOC or COCO), the model (backbone with the
multi-rate resampling pyramid, proposal sources, ROI head, self-training switches), augmentation,
training and evaluation. The anchors of the paper's lineage are the *same* model with flags switched
off; :data:`METHODS` names those flag sets and :func:`apply_method` applies one.

Defaults are the official repository's VOC07 values (``huwsod_WSR_18_DC5_4x1_160e.yaml`` and the
detectron2/WSL defaults it inherits); ``configs/mini.yaml`` and ``configs/smoke.yaml`` shrink them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from paperzoo_shared.config import ConfigError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

PAPER_TRAIN_SCALES: tuple[int, ...] = tuple(range(480, 1217, 32))  # 480, 512, ..., 1216 (24 scales)
PAPER_TTA_SCALES: tuple[int, ...] = (480, 576, 672, 768, 864, 960, 1056, 1152)


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _fraction(name: str, value: float, *, closed_low: bool = True) -> None:
    ok = (0 <= value <= 1) if closed_low else (0 < value <= 1)
    if not ok:
        raise ValueError(f"{name} must be in {'[0' if closed_low else '(0'}, 1], got {value}")


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------


@dataclass
class ShapesConfig:
    """WSOD-Shapes generation (``paperzoo_shared.data.synthetic.shapes``); used when ``data.format=shapes``."""

    seed: int = 0
    """Generator seed (the dataset is the same for every training seed)."""
    image_size: int = 128
    """Side of the square images in pixels."""
    size_range: list[float] = field(default_factory=lambda: [16.0, 56.0])
    """Nominal object sizes in pixels (shrink it with the image size)."""
    train: int = 2000
    """Images in the train split."""
    val: int = 300
    """Images in the val split (never used for training; optional model selection)."""
    test: int = 500
    """Images in the test split (evaluation only)."""

    def __post_init__(self) -> None:
        if len(self.size_range) != 2 or not 0 < self.size_range[0] <= self.size_range[1]:
            raise ValueError(
                f"shapes.size_range must be [low, high] with 0 < low <= high, got {self.size_range}"
            )
        for name in ("train", "val", "test"):
            if getattr(self, name) < 0:
                raise ValueError(f"shapes.{name} must be >= 0")
        _positive("shapes.image_size", self.image_size)


@dataclass
class DataConfig:
    """Where the images and annotations are, and which split plays which role."""

    format: Literal["shapes", "voc", "coco"] = "shapes"
    """``shapes`` generates WSOD-Shapes (VOC + COCO layout); ``voc`` reads a VOC<year> folder; ``coco`` a COCO root."""
    root: str = ""
    """shapes: cache folder for the generated data ('' = under the run's output folder); voc: the folder
    holding Annotations/, JPEGImages/ and ImageSets/Main/ (e.g. VOCdevkit/VOC2007); coco: the dataset root."""
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    """Generator settings (format ``shapes`` only)."""
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    """Splits trained on (VOC07: train + val = trainval; COCO: train2017)."""
    val_split: str = "val"
    """Held-out split for optional model selection ('' = none). Never the test split."""
    test_split: str = "test"
    """Split evaluated for mAP / AP (VOC07 test, COCO val2017, WSOD-Shapes test)."""
    corloc_splits: list[str] = field(default_factory=lambda: ["train"])
    """Training splits on which CorLoc is measured (the repo reports voc_2007_train and voc_2007_val)."""
    class_names: list[str] = field(default_factory=list)
    """Class names; empty = WSOD-Shapes' six, VOC's twenty, or the COCO categories in id order."""
    image_extension: str = ".jpg"
    """VOC image file extension (WSOD-Shapes writes .png; set automatically for format shapes)."""
    coco_annotations: str = "annotations/instances_{split}.json"
    """COCO annotation file per split, relative to ``root``."""
    coco_images: str = "{split}"
    """COCO image folder per split, relative to ``root``."""
    weak_labels: str = "image_labels_{split}.json"
    """Image-level label file per split, relative to ``root`` (or absolute). It is the ONLY annotation file
    the weakly supervised training loader opens; `paperzoo-huwsod prepare` writes it for VOC/COCO."""
    include_difficult_labels: bool = False
    """Count classes present only as difficult objects as image labels (the repo does not)."""
    skip_bad: bool = False
    """Skip (and log) unreadable images or malformed annotations instead of raising."""
    num_workers: int = 0
    """DataLoader workers."""

    def __post_init__(self) -> None:
        if not self.train_splits:
            raise ValueError("data.train_splits must name at least one split")
        if self.val_split and self.val_split == self.test_split:
            raise ValueError(
                f"data.val_split equals data.test_split ({self.test_split!r}); model selection must never "
                "use the test split"
            )
        if self.test_split in self.train_splits:
            raise ValueError(f"data.test_split {self.test_split!r} is also a training split")


# ----------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    """Stride-8 backbone whose last stage is the multi-rate resampling pyramid (MRRP)."""

    name: Literal["tiny", "wsr18"] = "wsr18"
    """``wsr18``: ResNet-WS-18 (DRN-WSOD layout, detectron2 names); ``tiny``: 4 conv stages for CPU runs."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 96])
    """Channels of the four ``tiny`` stages (ignored by wsr18, whose res5 has 512)."""
    branch_dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    """MRRP: dilation (= padding) of each branch; one shared weight tensor (MODEL.MRRP.BRANCH_DILATIONS)."""
    freeze: bool = True
    """Freeze the whole backbone, BN included (the repo's FREEZE_AT: 5 freezes res2..res5)."""
    weights: str = ""
    """Converted backbone checkpoint (`paperzoo-huwsod convert`); '' = random init (+ stage-0 pretraining)."""
    input_format: Literal["rgb", "bgr"] = "bgr"
    """Channel order fed to the network (WSR-18 is Caffe-style BGR)."""
    pixel_mean: list[float] = field(default_factory=lambda: [102.9801, 115.9465, 122.7717])
    """Subtracted from 0-255 pixels, in ``input_format`` order."""
    pixel_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """Pixels are divided by this after the mean."""
    pretrain_iters: int = 0
    """Stage 0 (our stand-in for ImageNet pretraining): train the backbone as a multi-label image classifier
    (GAP + BCE) on the training image labels for this many iterations before freezing it. 0 = skip."""
    pretrain_lr: float = 0.01
    """Stage-0 SGD learning rate."""
    pretrain_batch_size: int = 32
    """Stage-0 batch size."""

    def __post_init__(self) -> None:
        if len(self.channels) != 4 or min(self.channels) <= 0:
            raise ValueError(f"backbone.channels must be 4 positive integers, got {self.channels}")
        if not self.branch_dilations or min(self.branch_dilations) < 1:
            raise ValueError(f"backbone.branch_dilations must be >= 1, got {self.branch_dilations}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError("backbone.pixel_mean / pixel_std need 3 values (std > 0)")


@dataclass
class ProposalConfig:
    """Offline-proposal stand-in used by the anchors (the repo's WSDDN/OICR configs load MCG proposals)."""

    external: Literal["none", "segments", "sliding_window"] = "none"
    """Offline proposals of the anchors (the repo loads MCG boxes): ``segments`` = boxes of Felzenszwalb
    segments of the original image, mapped through the augmentation as precomputed proposals are;
    ``sliding_window`` = a fixed multi-scale grid; ``none`` = only in-network proposals (HUWSOD)."""
    segment_scales: list[float] = field(default_factory=lambda: [50.0, 150.0])
    """Felzenszwalb ``scale`` values (one segmentation each)."""
    segment_sigma: float = 0.8
    """Felzenszwalb smoothing."""
    segment_min_size: int = 20
    """Felzenszwalb minimum segment size (pixels)."""
    window_sizes: list[float] = field(default_factory=lambda: [64.0, 128.0, 256.0, 512.0])
    """Sliding-window sides in pixels (scaled by ``image_short_side / window_reference``)."""
    window_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    """Aspect ratios (h / w) of the sliding windows."""
    window_step: float = 0.5
    """Window step as a fraction of the window side."""
    window_reference: float = 0.0
    """Short side at which ``window_sizes`` are given (0 = do not scale)."""
    min_size: float = 40.0
    """Proposals whose side is not above this many pixels are dropped (PROPOSAL_GENERATOR.MIN_SIZE)."""

    def __post_init__(self) -> None:
        if self.external == "sliding_window" and (not self.window_sizes or not self.window_ratios):
            raise ValueError("proposals.window_sizes and window_ratios must not be empty")
        _fraction("proposals.window_step", self.window_step, closed_low=False)


@dataclass
class AEConfig:
    """Autoencoder proposal generator (`AEHead`): PCA-supervised encoder map -> connected-component boxes."""

    enabled: bool = True
    """Add AE boxes to the training proposals (never used at test time, as in the repo)."""
    encode_weight: float = 0.1
    """Weight of BCE(encoder map, PCA sign mask)."""
    decode_weight: float = 1.0
    """Weight of MSE(decoder(encoder map), feature)."""
    min_component: int = 40
    """Connected components smaller than min(this, largest component) cells are dropped."""
    clip_grad_norm: float = 0.0
    """Clip the AE's gradient norm to this before each step (0 = off, as in the repo). The mini preset needs
    it: its AE diverged without it (losses ~1e18 after 29 steps, seed 0)."""

    def __post_init__(self) -> None:
        if self.min_component < 1:
            raise ValueError("ae.min_component must be >= 1")


@dataclass
class RPNConfig:
    """Self-supervised RPN: a standard RPN head trained on pseudo boxes of the last refinement branch."""

    enabled: bool = True
    """Use RPN proposals (HUWSOD's test-time proposals come from the RPN only)."""
    anchor_sizes: list[list[float]] = field(
        default_factory=lambda: [[32.0, 64.0], [128.0, 256.0], [512.0, 768.0]]
    )
    """Anchor sides per MRRP branch (branch 0 small ... branch 2 large), stride 8."""
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0, 2.0, 0.5])
    """Anchor aspect ratios (h / w), in the official order; it fixes the RPN channel order (``convert.py``)."""
    pre_nms_topk: int = 2048
    """Top-k per (branch, anchor shape) group before NMS."""
    post_nms_topk: int = 1024
    """Proposals kept per image after grouped NMS."""
    nms_thresh: float = 0.7
    """NMS IoU inside each (branch, anchor shape) group."""
    iou_thresholds: list[float] = field(default_factory=lambda: [0.2, 0.6])
    """Anchor matcher: IoU < low negative, >= high positive, between ignored (plus low-quality matches)."""
    batch_size_per_image: int = 512
    """Sampled anchors per image."""
    positive_fraction: float = 0.5
    """Maximum fraction of positives among the sampled anchors."""
    loss_weight: float = 1.0
    """Weight of loss_rpn_cls and loss_rpn_loc."""
    gate_offset: float = 1.0
    """ROI features are multiplied by sigmoid(objectness + gate_offset) (the repo adds 1)."""

    def __post_init__(self) -> None:
        if len(self.iou_thresholds) != 2 or not 0 <= self.iou_thresholds[0] <= self.iou_thresholds[1] <= 1:
            raise ValueError(f"rpn.iou_thresholds must be [low, high] in [0, 1], got {self.iou_thresholds}")
        _fraction("rpn.positive_fraction", self.positive_fraction)
        for name in ("pre_nms_topk", "post_nms_topk", "batch_size_per_image"):
            _positive(f"rpn.{name}", getattr(self, name))


@dataclass
class HeadConfig:
    """ROI head: ROILoopPool, shared 2-FC neck, WSDDN and K refinement branches."""

    pooled_size: int = 7
    """ROI pooling resolution."""
    context_ratio: float = 1.8
    """ContextLocNet ratio of ROILoopPool: frame = box minus box/ratio, context = box*ratio minus box."""
    neck_dim: int = 4096
    """Width of the two FC layers (DiscriminativeAdaptionNeck)."""
    dropout: float = 0.5
    """Dropout after each FC layer."""
    neck_init_std: float = 0.005
    """Std of the neck's normal init (the repo: 0.005, for 25088 -> 4096 -> 4096). A narrower neck needs a
    larger std to keep the same output scale (std x sqrt(fan-in))."""
    refine_k: int = 4
    """Number of refinement branches (0 = WSDDN alone)."""
    refine_reg: bool = True
    """Class-specific box regression in the refinement branches (deltas weighted 10, 10, 5, 5)."""
    mining: Literal["mist", "oicr_top1"] = "mist"
    """Pseudo-label mining: MIST-style top-p% + threshold + NMS, or OICR's top-1 proposal per class."""
    pgt_weight: Literal["image_score", "top_score"] = "image_score"
    """Pseudo-label weight: the current view's WSDDN image score (HUWSOD) or the top score (OICR)."""
    mist_top_fraction: float = 0.10
    """MIST: top fraction of proposals per positive class (at least one)."""
    mist_score_thresh: float = 0.05
    """MIST: minimum score (the top-1 is always kept)."""
    mist_nms: float = 0.01
    """MIST: class-wise NMS IoU among mined boxes."""
    fg_iou: float = 0.5
    """Proposals with IoU >= this with a pseudo box take its class, others are background."""
    roi_batch_per_image: int = 4096
    """Proposals per image used by each refinement loss; the surplus is ignored (WSL.SAMPLING)."""
    bbox_reg_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    """Box2BoxTransform weights (dx, dy, dw, dh)."""
    wsddn_loss: Literal["mean", "sum"] = "mean"
    """WSDDN BCE normalisation: mean over images x classes (VOC) or sum / images (COCO)."""
    wsddn_weight: float = 1.0
    """WSDDN loss weight (COCO configs use 0.05 with ``sum``)."""
    test_score_thresh: float = 1e-5
    """Detections below this score are dropped."""
    test_nms: float = 0.3
    """Class-wise NMS at test time."""
    test_topk: int = 100
    """Detections kept per image."""

    def __post_init__(self) -> None:
        _positive("head.pooled_size", self.pooled_size)
        if self.context_ratio <= 1:
            raise ValueError(f"head.context_ratio must be > 1, got {self.context_ratio}")
        if self.refine_k < 0:
            raise ValueError("head.refine_k must be >= 0")
        _fraction("head.mist_top_fraction", self.mist_top_fraction, closed_low=False)
        _fraction("head.dropout", self.dropout)
        if len(self.bbox_reg_weights) != 4:
            raise ValueError("head.bbox_reg_weights needs 4 values")


PAPER_EMA_DECAY = 0.9996
"""WSL.EMA.DECAY of the official VOC07 config: each step pulls a teacher branch 0.0004 towards its student."""
PAPER_IMAGES_PER_STEP = 4
"""SOLVER.IMS_PER_BATCH of the official config (4 GPUs x 1 image)."""


def paper_ema_decay(batch_size: int) -> float:
    """The EMA decay with the paper's pull per training image: ``0.9996 ** (batch_size / 4)``.

    One step of ``B`` images then moves a teacher as much as ``B / 4`` of the paper's steps, so after the same
    number of images the teachers have moved as far as in the paper, whatever the batch size; the decay does
    not depend on the schedule length. A shorter schedule therefore sees a proportionally smaller total pull
    (``1 - decay ** iterations``), as the paper's own first iterations do, instead of the inflated pull of a
    horizon rescaled to the schedule (0.1 per step at decay 0.9, 250 times the paper's)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return PAPER_EMA_DECAY ** (batch_size / PAPER_IMAGES_PER_STEP)


@dataclass
class SelfTrainingConfig:
    """The holistic self-training switches."""

    consistency: bool = True
    """Two views per image: weak and strong (same geometry); strong branch k learns from weak branch k-1."""
    ema: bool = True
    """After each step, branch k-1 <- EMA(branch k) for k = K..2 and WSDDN-cls <- EMA(branch 1 cls)."""
    ema_decay: float = 0.9996
    """EMA decay per optimizer step (WSL.EMA.DECAY, at the paper's 4 images per step). For another batch
    size keep the paper's pull per training image: ``paper_ema_decay(train.batch_size)``."""
    burnin_iters: int = 10000
    """AE-only burn-in iterations (only when the AE is enabled; RPN and ROI heads frozen meanwhile)."""

    def __post_init__(self) -> None:
        _fraction("self_training.ema_decay", self.ema_decay)
        if self.burnin_iters < 0:
            raise ValueError("self_training.burnin_iters must be >= 0")


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    ae: AEConfig = field(default_factory=AEConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    supervision: Literal["weak", "full"] = "weak"
    """``full`` trains the refinement branches on the annotated boxes (the fully supervised upper bound);
    it is the only mode whose training loader reads boxes."""

    def __post_init__(self) -> None:
        if self.proposals.external == "none" and not self.rpn.enabled:
            raise ValueError(
                "model.proposals.external is 'none' and model.rpn.enabled is false: the detector would have no "
                "test-time proposals; enable the RPN or use sliding_window proposals"
            )
        if self.rpn.enabled and self.head.refine_k == 0:
            raise ValueError(
                "model.rpn.enabled needs refinement branches (head.refine_k >= 1) to supervise it"
            )
        if self.backbone.name == "tiny" and self.backbone.input_format == "bgr" and self.backbone.weights:
            pass  # any combination is allowed; the converted weights decide


# ----------------------------------------------------------------------------------------------------
# augmentation, training, evaluation
# ----------------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Weak view (detectron2 augs of the repo) and strong view (geometry-preserving photometric augs)."""

    train_scales: list[int] = field(default_factory=lambda: list(PAPER_TRAIN_SCALES))
    """Shortest-side choices for training (ResizeShortestEdge, sampled per image)."""
    max_size: int = 2000
    """Longest side cap."""
    crop_fraction: float = 0.9
    """RandomCrop relative_range (same fraction for h and w); 1.0 disables cropping."""
    hflip: bool = True
    """Random horizontal flip."""
    brightness: float = 1.5
    """RandomBrightness in [1/b, b]."""
    saturation: float = 1.5
    """RandomSaturation in [1/s, s]."""
    strong_color_jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])
    """Strong view ColorJitter (brightness, contrast, saturation, hue), applied with p = 0.8."""
    strong_grayscale_p: float = 0.2
    """Strong view RandomGrayscale probability."""
    strong_blur_p: float = 0.5
    """Strong view GaussianBlur (sigma in [0.1, 2]) probability."""
    strong_erasing: bool = True
    """Strong view: three RandomErasing passes (p 0.7/0.5/0.3) with the repo's scales and ratios."""
    size_divisibility: int = 8
    """Batches are padded to a multiple of this (the backbone stride)."""

    def __post_init__(self) -> None:
        if not self.train_scales or min(self.train_scales) <= 0:
            raise ValueError("augment.train_scales must be positive")
        _fraction("augment.crop_fraction", self.crop_fraction, closed_low=False)
        if self.brightness < 1 or self.saturation < 1:
            raise ValueError("augment.brightness and saturation must be >= 1 (ranges [1/b, b])")


@dataclass
class TrainConfig:
    iterations: int = 200000
    """Optimizer steps (the repo: 200k on VOC07 = 160 epochs at batch 4)."""
    batch_size: int = 4
    """Total images per step (the repo: 4 GPUs x 1 image)."""
    lr: float = 0.01
    """Base learning rate (WSR backbones; VGG16 uses 0.001)."""
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 200
    """Linear warm-up iterations."""
    warmup_factor: float = 0.001
    """LR multiplier at iteration 0 of the warm-up."""
    lr_steps: list[int] = field(default_factory=lambda: [140000])
    """Iterations at which the LR is multiplied by ``gamma``."""
    gamma: float = 0.1
    accelerator: str = "auto"
    """Lightning accelerator (cpu, gpu, auto)."""
    devices: int = 1
    """Processes / devices; with ddp each gets batch_size / devices images."""
    strategy: str = "auto"
    """Lightning strategy (auto, ddp, ddp_spawn, ...)."""
    precision: str = "32-true"
    checkpoint_every: int = 2000
    """Save a resumable checkpoint every this many steps (and at the end)."""
    log_every: int = 20
    seed: int = 0
    torch_threads: int = 0
    """torch.set_num_threads for the run (0 = leave the default)."""

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "devices", "checkpoint_every", "log_every"):
            _positive(f"train.{name}", getattr(self, name))
        if self.batch_size % self.devices:
            raise ValueError(
                f"train.batch_size {self.batch_size} must be divisible by train.devices {self.devices}"
            )


@dataclass
class EvalConfig:
    scales: list[int] = field(default_factory=lambda: [688])
    """Single-scale test short side (the repo: 688)."""
    max_size: int = 4000
    tta: bool = True
    """Multi-scale + flip test-time augmentation: union of detections, then class-wise NMS."""
    tta_scales: list[int] = field(default_factory=lambda: list(PAPER_TTA_SCALES))
    tta_flip: bool = True
    batch_size: int = 8


@dataclass
class HUWSODConfig:
    """A full run: data, model, augmentation, training, evaluation, and (for tables) the rows to run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rows: list[str] = field(default_factory=lambda: ["huwsod"])
    """Methods (keys of METHODS) run by `paperzoo reproduce`, one table row each."""
    random_boxes_per_image: int = 100
    """Detections per image of the random-boxes baseline."""
    workers: int = 1
    """Parallel (row, seed) processes of `paperzoo reproduce` (each single-threaded)."""

    def __post_init__(self) -> None:
        unknown = [row for row in self.rows if row not in METHODS]
        if unknown:
            raise ValueError(f"unknown rows {unknown}; valid: {', '.join(METHODS)}")


# ----------------------------------------------------------------------------------------------------
# the anchors: one code path, flags
# ----------------------------------------------------------------------------------------------------

_EXTERNAL = {
    "model.proposals.external": "segments",
    "model.rpn.enabled": False,
    "model.ae.enabled": False,
}
_SINGLE_VIEW = {"model.self_training.consistency": False, "model.self_training.ema": False}
_MIST = {
    "model.head.refine_k": 4,
    "model.head.refine_reg": True,
    "model.head.mining": "mist",
    "model.head.pgt_weight": "image_score",
}

METHODS: dict[str, dict[str, Any] | None] = {
    # baselines without a trained detector (None: handled by reproduce.py)
    "whole_image": None,
    "random_boxes": None,
    # WSDDN (Bilen & Vedaldi 2016) with ContextLocNet frame/context detection stream
    "wsddn": {**_EXTERNAL, **_SINGLE_VIEW, "model.head.refine_k": 0},
    # OICR (Tang et al. 2017): K=3, top-1 pseudo box, weight = its score, no regression
    "oicr": {
        **_EXTERNAL,
        **_SINGLE_VIEW,
        "model.head.refine_k": 3,
        "model.head.refine_reg": False,
        "model.head.mining": "oicr_top1",
        "model.head.pgt_weight": "top_score",
    },
    # OICR + box regression + MIST-style multi-instance mining (K=4)
    "oicr_reg_mist": {**_EXTERNAL, **_SINGLE_VIEW, **_MIST},
    "oicr_reg_mist_consistency": {
        **_EXTERNAL,
        **_SINGLE_VIEW,
        **_MIST,
        "model.self_training.consistency": True,
    },
    "oicr_reg_mist_consistency_ema": {
        **_EXTERNAL,
        **_MIST,
        "model.self_training.consistency": True,
        "model.self_training.ema": True,
    },
    "oicr_reg_mist_consistency_ema_ae": {
        **_EXTERNAL,
        **_MIST,
        "model.self_training.consistency": True,
        "model.self_training.ema": True,
        "model.ae.enabled": True,
    },
    # + RPN = HUWSOD: no offline proposals at all (AE boxes in training, self-trained RPN always)
    "huwsod": {
        **_MIST,
        "model.proposals.external": "none",
        "model.rpn.enabled": True,
        "model.ae.enabled": True,
        "model.self_training.consistency": True,
        "model.self_training.ema": True,
    },
    # HUWSOD without the AE: the RPN bootstraps from randomly initialised boxes only (claim C6)
    "huwsod_no_ae": {
        **_MIST,
        "model.proposals.external": "none",
        "model.rpn.enabled": True,
        "model.ae.enabled": False,
        "model.self_training.consistency": True,
        "model.self_training.ema": True,
    },
    # upper bound: same network and proposals, refinement branches trained on the annotated boxes
    "fully_supervised": {**_EXTERNAL, **_SINGLE_VIEW, **_MIST, "model.supervision": "full"},
}

METHOD_LABELS: dict[str, str] = {
    "whole_image": "Whole-image box (stage-0 classifier scores)",
    "random_boxes": "Random boxes, random scores",
    "wsddn": "WSDDN",
    "oicr": "OICR (K=3)",
    "oicr_reg_mist": "OICR + regression + MIST (K=4)",
    "oicr_reg_mist_consistency": "+ weak/strong consistency",
    "oicr_reg_mist_consistency_ema": "+ consistency + EMA",
    "oicr_reg_mist_consistency_ema_ae": "+ consistency + EMA + AE",
    "huwsod": "HUWSOD-lite (AE + RPN, no offline proposals)",
    "huwsod_no_ae": "HUWSOD-lite without AE (random-box bootstrap)",
    "fully_supervised": "Fully supervised (same net, box labels)",
}


def _set_dotted(config: Any, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = getattr(node, part)
    if not hasattr(node, leaf):
        raise ConfigError(f"method flag {dotted!r} names no config field")
    setattr(node, leaf, value)


def apply_method(config: HUWSODConfig, method: str) -> HUWSODConfig:
    """A copy of ``config`` with the flags of ``method`` (a key of :data:`METHODS`) applied, re-validated."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    flags = METHODS[method]
    result = copy.deepcopy(config)
    if flags is None:
        return result
    for dotted, value in flags.items():
        _set_dotted(result, dotted, value)
    # re-run validation of the touched dataclasses
    result.model.__post_init__()
    return result


def resolve_class_names(config: DataConfig) -> list[str]:
    """The class list of a data config (see :attr:`DataConfig.class_names`)."""
    if config.class_names:
        return list(config.class_names)
    if config.format == "shapes":
        from paperzoo_shared.data.synthetic.render import SHAPE_CLASSES

        return list(SHAPE_CLASSES)
    if config.format == "voc":
        return list(VOC_CLASSES)
    return []  # coco: read from the categories of the weak-label / annotation file
