"""Typed configuration of CSFIQA experiments, loaded from YAML with :func:`paperzoo_shared.config.load_config`.

Every field is documented where it is declared; ``__post_init__`` checks values and names the offending key.
Defaults are the ``full`` configuration: CrossViT-S/240 shapes, a LLaMA-7B-shaped frozen block, the reviewers'
gamma1 = 0.2 / gamma2 = 0.7. Values the public sources do not give (k of the selector, tau, alpha, beta,
lambda, the head, the schedule) are *reconstructed*; each says why it was chosen. ``configs/`` holds
``smoke.yaml``, ``mini.yaml`` and ``full.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FrozenBlock = Literal["llama", "small", "identity"]

METHODS: dict[str, dict[str, bool | str]] = {
    # Which parts each method (mini table row) uses. "model" names the network family.
    "brisque": {"model": "brisque"},
    "cnn": {"model": "cnn"},
    "vit": {"model": "vit"},
    "csfiqa": {"model": "csfiqa", "sfa": True, "scl": True, "nsm": True},
    "csfiqa_no_sfa": {"model": "csfiqa", "sfa": False, "scl": True, "nsm": True},
    "csfiqa_no_scl": {"model": "csfiqa", "sfa": True, "scl": False, "nsm": True},
    "csfiqa_no_nsm": {"model": "csfiqa", "sfa": True, "scl": True, "nsm": False},
}
"""The rows: a classical NR baseline (BRISQUE features + SVR), a small CNN regressor, a single-scale ViT,
CSFIQA and its -SFA / -SCL / -NSM ablations."""

METHOD_LABELS = {
    "brisque": "BRISQUE (features + SVR)",
    "cnn": "Small CNN regressor",
    "vit": "Single-scale ViT",
    "csfiqa": "CSFIQA",
    "csfiqa_no_sfa": "CSFIQA −SFA",
    "csfiqa_no_scl": "CSFIQA −SCL",
    "csfiqa_no_nsm": "CSFIQA −NSM",
}


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _fraction(name: str, value: float, *, closed: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in {'[0, 1]' if closed else '(0, 1)'}, got {value}")


@dataclass
class EncoderConfig:
    """The dual-branch multi-scale encoder: timm's ``CrossVit`` (defaults = ``crossvit_small_240``)."""

    img_size: int = 240
    """Input side in pixels (CrossViT-S/240)."""
    img_scale: list[float] = field(default_factory=lambda: [1.0, 224 / 240])
    """Per-branch input rescale (CrossViT-S: the large-patch branch sees 224 px)."""
    patch_sizes: list[int] = field(default_factory=lambda: [12, 16])
    """Small- and large-patch sizes: the two "scales" of the paper."""
    embed_dims: list[int] = field(default_factory=lambda: [192, 384])
    depth: list[list[int]] = field(default_factory=lambda: [[1, 4, 0], [1, 4, 0], [1, 4, 0]])
    """Per multi-scale block: [small-branch blocks, large-branch blocks, cross-attention blocks] (timm layout)."""
    num_heads: list[int] = field(default_factory=lambda: [6, 6])
    mlp_ratio: list[float] = field(default_factory=lambda: [4.0, 4.0, 1.0])
    drop_path_rate: float = 0.1
    pretrained: Path | None = None
    """ImageNet weights for timm's CrossVit (a local ``.safetensors``/``.pth``); none are downloaded."""

    def __post_init__(self) -> None:
        for name in ("img_scale", "patch_sizes", "embed_dims", "num_heads"):
            if len(getattr(self, name)) != 2:
                raise ValueError(
                    f"encoder.{name} must have 2 entries (small, large branch), got {getattr(self, name)}"
                )
        if len(self.mlp_ratio) != 3:
            raise ValueError(
                f"encoder.mlp_ratio must have 3 entries (small, large, cross), got {self.mlp_ratio}"
            )
        for block in self.depth:
            if len(block) != 3:
                raise ValueError(f"encoder.depth entries must be [small, large, cross], got {block}")
        for scale, patch in zip(self.img_scale, self.patch_sizes):
            side = int(self.img_size * scale)
            if side % patch:
                raise ValueError(
                    f"encoder: branch input {side} px (img_size {self.img_size} x img_scale {scale}) is not a "
                    f"multiple of its patch size {patch}"
                )
        if self.patch_sizes[0] >= self.patch_sizes[1]:
            raise ValueError(
                f"encoder.patch_sizes must be [small, large] with small < large, got {self.patch_sizes}"
            )
        if self.pretrained is not None:
            self.pretrained = Path(self.pretrained).expanduser()


@dataclass
class SFAConfig:
    """Selective focus attention: a top-k token selector and an information focuser (Sec. 2.2 of the notes)."""

    dim: int = 384
    """Width of the shared cross-scale token space both branches are projected into (reconstructed: the
    large branch's width, so the large branch needs no down-projection)."""
    keep_ratio: float = 0.5
    """Fraction of the cross-scale patch tokens the selector keeps when ``top_k`` is None."""
    top_k: int | None = 196
    """A fixed number of kept tokens; overrides ``keep_ratio`` when set. Reconstructed: the paper's k is not
    public; 45 GMACs ~ 6.5 G (CrossViT-S and heads) + 196 tokens x 202.4 M MACs of a LLaMA-7B layer, and 196
    is the large branch's 14 x 14 grid, i.e. one third of CrossViT-S's 596 cross-scale tokens."""
    frozen_block: FrozenBlock = "llama"
    """The focuser's frozen block: ``llama`` (a LLaMA decoder layer, shapes below), ``small`` (a frozen
    randomly initialised timm ViT block) or ``identity`` (ablation switch)."""
    block_dim: int = 4096
    """Hidden width of the frozen block (LLaMA-7B: 4096)."""
    block_heads: int = 32
    block_intermediate: int = 11008
    """SwiGLU width of a ``llama`` block (LLaMA-7B: 11008); a ``small`` block uses 4 x block_dim."""
    block_checkpoint: Path | None = None
    """Real LLaMA layer weights (a state dict of one ``LlamaDecoderLayer``); random frozen weights otherwise."""
    block_seed: int = 1234
    """Seed of the frozen block's random weights (so every run freezes the same block)."""

    def __post_init__(self) -> None:
        _positive("sfa.dim", self.dim)
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"sfa.keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"sfa.top_k must be >= 1, got {self.top_k}")
        if self.block_dim % self.block_heads:
            raise ValueError(
                f"sfa.block_dim {self.block_dim} is not divisible by sfa.block_heads {self.block_heads}"
            )
        if self.block_checkpoint is not None:
            self.block_checkpoint = Path(self.block_checkpoint).expanduser()


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    sfa: SFAConfig = field(default_factory=SFAConfig)
    use_sfa: bool = True
    """False: the -SFA ablation (the head reads the mean of all cross-scale tokens)."""
    embed_dim: int = 128
    """Width of the contrastive embedding space (reconstructed; SimCLR-style projection heads)."""
    nsm_grid: int = 4
    """NSM compares the two scales on a ``nsm_grid x nsm_grid`` grid of regions (reconstructed)."""
    head_hidden: int = 256
    """Hidden width of the regression MLP (reconstructed; DEIQT-lineage heads are small MLPs)."""

    def __post_init__(self) -> None:
        _positive("model.embed_dim", self.embed_dim)
        _positive("model.nsm_grid", self.nsm_grid)


@dataclass
class LossConfig:
    """L = L_mos + lambda (alpha L_intra + beta L_inter) + nsm_weight L_nsm (Sec. 2.3 of the notes)."""

    mos_loss: Literal["l1", "smooth_l1", "mse"] = "l1"
    """MOS regression loss (reconstructed: L1, as pyiqa's HyperNet recipe and the DEIQT lineage)."""
    gamma1: float = 0.2
    """Pairs with |dMOS| < gamma1 (MOS normalised to [0, 1]) are positives (reviewers' value)."""
    gamma2: float = 0.7
    """Pairs with |dMOS| > gamma2 are negatives; pairs in between are ignored (reviewers' value)."""
    temperature: float = 0.1
    """InfoNCE temperature tau (reconstructed: the SimCLR/SupCon default)."""
    scl_weight: float = 0.1
    """lambda, the weight of scale contrastive learning (reconstructed: small enough that MOS regression
    dominates, as in auxiliary contrastive IQA losses)."""
    alpha: float = 0.5
    """Weight of the intra-scale term (reconstructed: equal split)."""
    beta: float = 0.5
    """Weight of the inter-scale term (reconstructed: equal split)."""
    nsm_weight: float = 0.05
    """Weight of noise sample matching (reconstructed: lambda x beta, as NSM refines the inter-scale term)."""
    nsm_k: int = 4
    """NSM keeps the k regions per image whose two scales disagree most."""
    use_scl: bool = True
    use_nsm: bool = True

    def __post_init__(self) -> None:
        _fraction("loss.gamma1", self.gamma1, closed=True)
        _fraction("loss.gamma2", self.gamma2, closed=True)
        if self.gamma1 > self.gamma2:
            raise ValueError(f"loss.gamma1 ({self.gamma1}) must not exceed loss.gamma2 ({self.gamma2})")
        _positive("loss.temperature", self.temperature)
        for name in ("scl_weight", "alpha", "beta", "nsm_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.nsm_k < 1:
            raise ValueError(f"loss.nsm_k must be >= 1, got {self.nsm_k}")


@dataclass
class DataConfig:
    source: Literal[
        "synthetic", "live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq", "flive"
    ] = "synthetic"
    """``synthetic``: skim-IQA-syn built from the scikit-image images; otherwise a real dataset under ``root``."""
    root: Path | None = None
    """The dataset folder in its released layout (see :mod:`paperzoo_csfiqa.data`)."""
    synthetic_size: int = 128
    """skim-IQA-syn: side of the square references (centre crop, then area resize)."""
    synthetic_refs: list[str] = field(
        default_factory=lambda: [
            "astronaut",
            "chelsea",
            "coffee",
            "rocket",
            "motorcycle_left",
            "motorcycle_right",
            "hubble_deep_field",
            "ihc",
            "retina",
            "camera",
            "coins",
            "brick",
            "grass",
            "gravel",
        ]
    )
    """skim-IQA-syn references (grey images are replicated to 3 channels)."""
    resize: int | None = None
    """Resize the shorter side of real images to this before cropping (SPAQ is usually resized; None keeps size)."""
    train_fraction: float = 0.8
    """Train part of each split; synthetic datasets are split by reference image (content-disjoint)."""
    val_fraction: float = 0.1
    """Part of the *training* split held out for model selection (of its references for synthetic sets)."""

    def __post_init__(self) -> None:
        if self.source != "synthetic" and self.root is None:
            raise ValueError(f"data.root must name the {self.source} folder")
        if self.root is not None:
            self.root = Path(self.root).expanduser()
        _fraction("data.train_fraction", self.train_fraction)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be < 1, got {self.val_fraction}")


@dataclass
class TrainConfig:
    epochs: int = 9
    """DEIQT's LIVEC schedule: 9 epochs (reconstructed from the same lab's code)."""
    warmup_epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-4
    """AdamW, lr 2e-4, weight decay 0.05 (DEIQT lineage)."""
    weight_decay: float = 0.05
    crop: int = 240
    """Random crop side at training (= encoder.img_size); images smaller than it are resized up."""
    train_crops: int = 1
    """Random crops drawn per image and epoch (DEIQT: PATCH_NUM)."""
    test_crops: int = 5
    """Crops averaged per test image (DEIQT/LoDa multi-crop test)."""
    hflip: bool = True
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    threads: int = 1
    """torch threads per training process (0: torch's default)."""
    checkpoint_every: int = 0
    """Save ``last.ckpt`` every N optimiser steps (0: at every epoch end)."""
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "crop", "train_crops", "test_crops", "devices"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"train.warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        _positive("train.lr", self.lr)


@dataclass
class BaselineConfig:
    """Sizes of the baselines of the mini table."""

    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 96])
    vit_patch: int = 16
    """Single-scale ViT: one patch size (the large branch's)."""
    vit_dim: int = 128
    vit_depth: int = 4
    vit_heads: int = 4
    svr_c: float = 10.0
    """BRISQUE's SVR: RBF kernel, C and gamma (LIBSVM defaults of the BRISQUE release use C search; fixed here)."""
    svr_gamma: float = 0.05


@dataclass
class ExperimentConfig:
    name: str = "csfiqa"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    methods: list[str] = field(default_factory=lambda: ["csfiqa"])
    """Rows to run (keys of :data:`METHODS`)."""
    select_on: Literal["val", "test"] = "val"
    """Which split picks the epoch that is reported. ``val`` (a part of the training split) is the honest
    protocol; the lineage's select-on-test number is always reported beside it, labelled as such."""
    parallel_jobs: int = 1
    """Training runs at a time in the reproduce harness (worker processes)."""
    scale_table: bool = True
    """Also compute the scale-dependence table (FR score at full vs half scale) and its plot."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods: unknown {unknown}; valid: {', '.join(METHODS)}")
        if self.parallel_jobs < 1:
            raise ValueError(f"parallel_jobs must be >= 1, got {self.parallel_jobs}")
        if self.train.crop != self.model.encoder.img_size:
            raise ValueError(
                f"train.crop ({self.train.crop}) must equal model.encoder.img_size ({self.model.encoder.img_size})"
            )


def method_model_config(config: ExperimentConfig, method: str) -> tuple[ModelConfig, LossConfig]:
    """The model and loss configs of one row (the ablations switch one part off)."""
    import dataclasses

    uses = METHODS[method]
    model = dataclasses.replace(config.model, use_sfa=bool(uses.get("sfa", True)))
    loss = dataclasses.replace(
        config.loss,
        use_scl=config.loss.use_scl and bool(uses.get("scl", True)),
        use_nsm=config.loss.use_nsm and bool(uses.get("nsm", True)),
    )
    return model, loss
