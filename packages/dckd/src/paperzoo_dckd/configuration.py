"""Typed configuration of DCKD experiments, loaded from YAML with :func:`paperzoo_shared.config.load_config`.

Every field is documented where it is declared; ``__post_init__`` checks values and names the offending key.
Defaults are the paper's / released code's values (SwinIR x2 DCKD); the YAML files in ``configs/`` set the
rest (``smoke.yaml``, ``mini.yaml``, ``full/*.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ADDED = {"fingerprint": "omit_default"}
"""``field(metadata=ADDED)`` marks a key added after the committed mini results: while it keeps its default it
is left out of :func:`fingerprint_dict`, so the cached runs (``final.pt``, the ledger) of configs that do not
use it stay valid."""

RESTORATION_SOURCES: dict[str, tuple[str, str]] = {"gopro": ("blur", "sharp"), "rain13k": ("input", "target")}
"""Same-size (scale 1) paired sources and their default (LQ, GT) sub-folder names."""
METHODS: dict[str, dict[str, bool]] = {
    # Which loss terms each method (table row) uses. rec = L1(student, GT) is always on.
    "scratch": {
        "kd": False,
        "fakd": False,
        "dcr": False,
        "dmm": False,
        "lcr": False,
        "mclir": False,
        "mipkd": False,
    },
    "logits": {
        "kd": True,
        "fakd": False,
        "dcr": False,
        "dmm": False,
        "lcr": False,
        "mclir": False,
        "mipkd": False,
    },
    "fakd": {
        "kd": True,
        "fakd": True,
        "dcr": False,
        "dmm": False,
        "lcr": False,
        "mclir": False,
        "mipkd": False,
    },
    "dckd": {
        "kd": True,
        "fakd": False,
        "dcr": True,
        "dmm": True,
        "lcr": False,
        "mclir": False,
        "mipkd": False,
    },
    "dckd_no_dcr": {
        "kd": True,
        "fakd": False,
        "dcr": False,
        "dmm": True,
        "lcr": False,
        "mclir": False,
        "mipkd": False,
    },
    "dckd_no_dmm": {
        "kd": True,
        "fakd": False,
        "dcr": True,
        "dmm": False,
        "lcr": False,
        "mclir": False,
        "mipkd": False,
    },
    "dckd_star": {
        "kd": True,
        "fakd": False,
        "dcr": True,
        "dmm": True,
        "lcr": True,
        "mclir": False,
        "mipkd": False,
    },
    # MCLIR (Wu et al., AAAI 2024; DCKD Table 8): L_rec minus a feature distance to a lagged copy of the
    # model itself; no teacher
    "mclir": {
        "kd": False,
        "fakd": False,
        "dcr": False,
        "dmm": False,
        "lcr": False,
        "mclir": True,
        "mipkd": False,
    },
    # MiPKD (Li et al., arXiv 2404.02573 / ICLR 2025; DCKD Table 2), reconstructed from its paper (no public
    # code): L_rec + L_kd + feature prior mixer + block prior mixer + auto-encoder term (modeling_dckd.PriorMixer)
    "mipkd": {
        "kd": True,
        "fakd": False,
        "dcr": False,
        "dmm": False,
        "lcr": False,
        "mclir": False,
        "mipkd": True,
    },
}
"""Methods of the shared trainer: Scratch, Logits KD, FAKD, DCKD, its -DCR/-DMM ablations (Table 5) and
DCKD* (DCKD + DUKD's label-consistency term, which the released SwinIR configs switch on), and the baselines
MCLIR (Table 8) and MiPKD (Table 2; a reconstruction, see :class:`MiPKDConfig`)."""

METHOD_LABELS = {
    "teacher": "Teacher",
    "scratch": "Scratch",
    "logits": "Logits",
    "fakd": "FAKD",
    "dckd": "DCKD",
    "dckd_no_dcr": "DCKD −DCR",
    "dckd_no_dmm": "DCKD −DMM",
    "dckd_star": "DCKD*",
    "mclir": "MCLIR",
    "mipkd": "MiPKD",
}


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def _check_range(name: str, pair: tuple[float, float] | list[float], low: float = 0.0) -> None:
    if len(pair) != 2 or not low <= pair[0] <= pair[1]:
        raise ValueError(f"{name} must be [min, max] with {low} <= min <= max, got {list(pair)}")


@dataclass
class ModelConfig:
    arch: str = "swinir_student"
    """A backbone (swinir, rcan, edsr, nafnet, restormer, vqgan_encoder) or a paper preset of
    :data:`paperzoo_dckd.models.PAPER_CONFIGS` (swinir_teacher, swinir_student, rcan_teacher, ...)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments on top of the preset (e.g. ``upscale``, ``num_feat``); unknown ones are errors."""
    checkpoint: Path | None = None
    """Weights to load strictly (ours, or an official SwinIR/RCAN/taming-VQGAN file; see ``checkpoint_format``)."""
    checkpoint_format: Literal[
        "auto",
        "ours",
        "official_swinir",
        "official_rcan",
        "official_nafnet",
        "official_restormer",
        "taming_vqgan",
    ] = "auto"
    """How to read ``checkpoint``; ``auto`` picks from the keys found in the file."""

    def __post_init__(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint = Path(self.checkpoint).expanduser()


@dataclass
class DegradationConfig:
    """The negative-sample degradations (released keys; defaults = the released SwinIR config: noise only)."""

    gaussian_noise_prob: float = 1.0
    """Probability (per negative, for the whole batch) of adding Gaussian noise."""
    noise_sigma: list[float] = field(default_factory=lambda: [1.0, 30.0])
    """Noise std range on the 0-255 scale, drawn per sample (Real-ESRGAN's ``random_add_gaussian_noise_pt``)."""
    gray_noise_prob: float = 0.5
    """Per-sample probability that the noise is the same on all three channels."""
    gaussian_blur_prob: float = 0.0
    """Probability of an anisotropic Gaussian blur (odd kernel sizes and sigmas drawn per axis)."""
    blur_kernel_size: list[int] = field(default_factory=lambda: [3, 11])
    """Range of odd kernel sizes per axis."""
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    """Range of the blur sigma per axis."""
    resize_prob: float = 0.0
    """Probability of resizing (up with prob. 0.25 by 1-1.5x, else down by 0.5-1x) and resizing back."""
    resize_up_range: list[float] = field(default_factory=lambda: [1.0, 1.5])
    resize_down_range: list[float] = field(default_factory=lambda: [0.5, 1.0])
    resize_up_prob: float = 0.25
    clamp: bool = False
    """Clip the final result to [0, 1]. The released code clips after the noise but not after resizing back,
    so bicubic resizing can overshoot slightly; False keeps that."""

    def __post_init__(self) -> None:
        for name in (
            "gaussian_noise_prob",
            "gray_noise_prob",
            "gaussian_blur_prob",
            "resize_prob",
            "resize_up_prob",
        ):
            _check_prob(name, getattr(self, name))
        _check_range("noise_sigma", self.noise_sigma)
        _check_range("blur_sigma", self.blur_sigma, low=1e-6)
        _check_range("blur_kernel_size", self.blur_kernel_size, low=1)
        if any(k % 2 == 0 for k in self.blur_kernel_size):
            raise ValueError(f"blur_kernel_size must hold odd sizes, got {self.blur_kernel_size}")
        _check_range("resize_up_range", self.resize_up_range, low=1e-3)
        _check_range("resize_down_range", self.resize_down_range, low=1e-3)


@dataclass
class MiPKDConfig:
    """MiPKD (Li et al., "Knowledge Distillation with Multi-granularity Mixture of Priors for Image
    Super-Resolution", arXiv 2404.02573, ICLR 2025), the strongest baseline of DCKD's Table 2.

    **A reconstruction from the paper's description; no code is public.** What the paper states: teacher and
    student features are mapped into one latent space by *separate* encoders, mixed there with a random 3D mask
    and decoded (the feature prior mixer, FPM), an auto-encoder auxiliary loss keeps the latent space tied to
    the teacher's features, and the mixed, decoded feature is propagated through network blocks chosen at
    random (the block prior mixer, BPM); the loss adds logits, feature and block terms. Every number and form
    below that the paper's description does not fix is marked [reconstruction] here and in the README.
    """

    stages: int = 2
    """K: teacher and student bodies are each split into K equal, contiguous stages and mixed at the K stage
    ends [reconstruction: the paper mixes at block-group ends; K must divide both bodies' block counts]."""
    latent_channels: int = 0
    """Channels of the shared latent space; 0 = the teacher's width [reconstruction]."""
    teacher_prob: float = 0.5
    """Probability that an element of the 3D (channel x height x width) mask takes the teacher's latent
    (else the student's), drawn per element and sample [reconstruction: ratio 0.5]."""
    lambda_fpm: float = 1.0
    """Weight of the FPM term sum_k |D_k(M * E_T,k(F_T,k) + (1 - M) * E_S,k(F_S,k)) - F_T,k|_1 [reconstruction]."""
    lambda_bpm: float = 1.0
    """Weight of the BPM term |T_{>j}(FPM output at stage j) - T(x)|_1, j drawn uniformly in 1..K per step: the
    mixed feature continues through the teacher's remaining stages and tail [reconstruction]."""
    lambda_ae: float = 1.0
    """Weight of the auto-encoder term sum_k |D_k(E_T,k(F_T,k)) - F_T,k|_1 [reconstruction]."""
    image_units: bool = True
    """Divide the two feature terms (FPM, auto-encoder) by the teacher's ``img_range`` (255 for EDSR/RCAN, 1
    for SwinIR), i.e. measure them in the units of a [0, 1] image, so that a weight means the same for every
    backbone; False = L1 on the raw features [reconstruction: the paper gives no units]."""

    def __post_init__(self) -> None:
        if self.stages < 1:
            raise ValueError(f"dckd.mipkd.stages must be >= 1, got {self.stages}")
        if self.latent_channels < 0:
            raise ValueError(f"dckd.mipkd.latent_channels must be >= 0, got {self.latent_channels}")
        _check_prob("dckd.mipkd.teacher_prob", self.teacher_prob)
        for name in ("lambda_fpm", "lambda_bpm", "lambda_ae"):
            if getattr(self, name) < 0:
                raise ValueError(f"dckd.mipkd.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class DCKDConfig:
    """Loss weights and the dynamic-contrast machinery (paper Sec. 3 and appendix; released configs)."""

    lambda_kd: float = 1.0
    """Weight of the logits KD term L1(student, teacher) (Eq. 3)."""
    lambda_dcl: float = 0.1
    """Weight of the dynamic contrastive loss (Eq. 10)."""
    lambda_ce: float = 0.001
    """Weight of the distribution-mapping cross-entropy (Eq. 10)."""
    layer_weights: list[float] = field(default_factory=lambda: [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0])
    """Per-level weights of the contrastive loss over the encoder's 5 levels (appendix)."""
    num_negatives: int = 5
    """N, the number of negatives (Fig. 8a); the released code uses the clean LR plus 4 degraded copies."""
    clean_negative: bool = True
    """First negative = history model on the clean LR (released code); then N-1 degraded copies."""
    history_decay: float = 0.1
    """alpha of Eq. 6: his <- alpha * his + (1 - alpha) * source."""
    history_source: Literal["ema", "student"] = "ema"
    """The history model is updated from the student's EMA (released code) or the raw student (Eq. 6)."""
    history_steps: list[int] = field(default_factory=lambda: [1000, 2000, 3000])
    """Update step s, growing over training: ``history_steps[k]`` applies in the k-th ``history_period``."""
    history_period: int = 100000
    """Iterations per entry of ``history_steps``; past the last period the last step is kept (the released
    code would index past the list and crash after 300k iterations)."""
    dmm_ce_mode: Literal["paper", "code"] = "paper"
    """``paper``: -sum C_T log C_S (Eq. 9). ``code``: F.cross_entropy(C_S, C_T), which treats the student's
    probabilities as logits (a second softmax), as the released CELoss does."""
    lambda_lcr: float = 1.0
    """Weight of DUKD's label-consistency term (DCKD* only)."""
    lcr_prob: float = 0.5
    """Per-sample probability of each invertible op (invert colours, flip H, flip W, transpose)."""
    fakd_weight: float = 10.0
    """Weight of the FAKD spatial-affinity L1 (DUKD's FAKD configs)."""
    fakd_student_positions: list[int | str] = field(
        default_factory=lambda: ["conv_first", 1, 3, "conv_after_body"]
    )
    """Student feature maps matched by FAKD: 'conv_first', body block/group/RSTB indices, 'conv_after_body'."""
    fakd_teacher_positions: list[int | str] = field(
        default_factory=lambda: ["conv_first", 2, 5, "conv_after_body"]
    )
    """Teacher feature maps matched to ``fakd_student_positions`` (same length)."""
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    lambda_mclir: float = field(default=0.001, metadata=ADDED)
    """MCLIR's weight of the negative feature distance (released ``perceptual_weight: 0.001``)."""
    mclir_layer_weights: list[float] = field(default_factory=lambda: [0.2, 0.3, 0.5], metadata=ADDED)
    """MCLIR's per-level weights (released VGG16 relu1_2/2_2/3_3: 0.2/0.3/0.5), here on the encoder's first
    levels (the VGG16 it uses is not available offline; the frozen encoder stands in)."""
    mipkd: MiPKDConfig = field(default_factory=MiPKDConfig, metadata=ADDED)
    """The MiPKD baseline's settings (method ``mipkd``; a reconstruction, see :class:`MiPKDConfig`)."""

    def __post_init__(self) -> None:
        if not 1 <= len(self.mclir_layer_weights) <= 5:
            raise ValueError(
                f"dckd.mclir_layer_weights needs 1 to 5 weights (encoder levels), got {self.mclir_layer_weights}"
            )
        if len(self.layer_weights) != 5:
            raise ValueError(
                f"layer_weights needs 5 values (one per encoder level), got {self.layer_weights}"
            )
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        _check_prob("history_decay", self.history_decay)
        _check_prob("lcr_prob", self.lcr_prob)
        if not self.history_steps or any(s < 1 for s in self.history_steps):
            raise ValueError(f"history_steps must be positive integers, got {self.history_steps}")
        if self.history_period < 1:
            raise ValueError(f"history_period must be >= 1, got {self.history_period}")
        if len(self.fakd_student_positions) != len(self.fakd_teacher_positions):
            raise ValueError(
                "fakd_student_positions and fakd_teacher_positions must have the same length, got "
                f"{self.fakd_student_positions} and {self.fakd_teacher_positions}"
            )


@dataclass
class ProgressiveStage:
    """One stage of a progressive patch/batch schedule (Restormer's ``gt_sizes``/``mini_batch_sizes``)."""

    start: int = 0
    """First optimizer step (0-based) of the stage."""
    lr_patch: int = 128
    """Input patch size of the stage (the GT patch is ``lr_patch * scale``)."""
    batch_size: int = 64
    """Batch size per device of the stage."""

    def __post_init__(self) -> None:
        if self.start < 0 or self.lr_patch < 1 or self.batch_size < 1:
            raise ValueError(
                f"progressive stage needs start >= 0, lr_patch >= 1, batch_size >= 1, got {self}"
            )


@dataclass
class TrainConfig:
    """Optimisation and the Lightning Trainer."""

    iterations: int = 250000
    """Optimizer steps (released: 250k)."""
    batch_size: int = 16
    """Batch size per device (released: 16 per GPU on 4 GPUs, i.e. 64 in total under DDP)."""
    lr_patch: int = 48
    """LR patch size (HR patch = lr_patch * scale)."""
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [250000])
    """MultiStepLR milestones (released: [250000] = no decay within 250k; the paper says x0.1 every 1e5)."""
    gamma: float = 0.1
    optimizer: Literal["adam", "adamw"] = field(default="adam", metadata=ADDED)
    """``adam`` (SR, released) or ``adamw`` (decoupled weight decay; NAFNet and Restormer)."""
    scheduler: Literal["multistep", "cosine"] = field(default="multistep", metadata=ADDED)
    """``multistep`` (``milestones``/``gamma``) or ``cosine``: cosine annealing in the periods ``cosine_periods``,
    each from ``lr`` down to its ``eta_mins`` entry, restarting at ``lr`` (BasicSR's
    ``CosineAnnealingRestartCyclicLR`` with restart weights 1; one period = ``CosineAnnealingLR``). Past the
    last period the last ``eta_min`` is kept."""
    cosine_periods: list[int] = field(default_factory=list, metadata=ADDED)
    """Lengths of the cosine periods in iterations (NAFNet: [200000]; Restormer: [92000, 208000])."""
    eta_mins: list[float] = field(default_factory=list, metadata=ADDED)
    """Final learning rate of each cosine period (NAFNet: [1e-7]; Restormer: [3e-4, 1e-6], i.e. constant
    3e-4 for 92k iterations, then cosine to 1e-6)."""
    grad_clip_norm: float = field(default=0.0, metadata=ADDED)
    """Clip the gradient norm of the student to this value (0 = off; Restormer's ``use_grad_clip``: 0.01)."""
    progressive: list[ProgressiveStage] = field(default_factory=list, metadata=ADDED)
    """Progressive patch/batch schedule (Restormer): stages ``{start, lr_patch, batch_size}``; the first
    stage starts at 0 and replaces ``lr_patch``/``batch_size``. Empty = fixed patch and batch."""
    ema_decay: float = 0.999
    """Decay of the student EMA used for evaluation and as the history model's source."""
    use_flip: bool = True
    use_rot: bool = True
    seed: int = 10
    """Seed of weights, data and degradations (the released configs use manual_seed 10); the reproduce
    presets replace it by the table seed."""
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, ddp_spawn (the CPU gloo test uses ddp_spawn with 2 processes)."""
    precision: str = "32-true"
    checkpoint_every: int = 5000
    """Save ``last.ckpt`` every this many steps (a killed run resumes from it)."""
    log_every: int = 100
    progress_bar: bool = True
    logger: Literal["csv", "none"] = "csv"
    """``csv``: every loss term (``train/rec``, ``train/kd``, ``train/dcl``, ``train/ce``, ...) is written every
    ``log_every`` steps to ``<run dir>/logs/metrics.csv``."""
    threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""

    def __post_init__(self) -> None:
        for name in (
            "iterations",
            "batch_size",
            "lr_patch",
            "checkpoint_every",
            "log_every",
            "devices",
            "num_nodes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        if self.scheduler == "cosine":
            if not self.cosine_periods or len(self.cosine_periods) != len(self.eta_mins):
                raise ValueError(
                    "scheduler 'cosine' needs cosine_periods and eta_mins of the same, non-zero length, got "
                    f"{self.cosine_periods} and {self.eta_mins}"
                )
            if any(p < 1 for p in self.cosine_periods):
                raise ValueError(f"cosine_periods must be positive, got {self.cosine_periods}")
        if self.grad_clip_norm < 0:
            raise ValueError(f"grad_clip_norm must be >= 0, got {self.grad_clip_norm}")
        if self.progressive:
            starts = [stage.start for stage in self.progressive]
            if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
                raise ValueError(f"progressive stages must start at 0 and increase, got starts {starts}")

    def stage_at(self, iteration: int) -> tuple[int, int]:
        """(lr_patch, batch_size) of the optimizer step ``iteration`` (0-based: steps already taken)."""
        if not self.progressive:
            return self.lr_patch, self.batch_size
        stage = [s for s in self.progressive if s.start <= iteration][-1]
        return stage.lr_patch, stage.batch_size

    @property
    def max_batch_size(self) -> int:
        """The largest batch of any stage (the sample indices of a step are spaced by it)."""
        return max([self.batch_size, *(s.batch_size for s in self.progressive)])


@dataclass
class TestSetConfig:
    """A paired test set in the benchmark layout (``<root>/HR``, ``<root>/LR_bicubic/X<scale>``)."""

    hr_dir: Path = Path("HR")
    lr_dir: Path = Path("LR_bicubic/X2")
    filename_tmpl: str = "{}x2"


@dataclass
class DataConfig:
    scale: int = 2
    """Super-resolution factor (2, 3 or 4); 1 for the same-size restoration sources (gopro, rain13k)."""
    source: Literal["skimage", "folders", "gopro", "rain13k"] = "skimage"
    """``skimage``: the fixed skim-SR split of the scikit-image images (LR by MATLAB bicubic);
    ``folders``: paired LR/HR folders (DIV2K for training, benchmark sets for testing);
    ``gopro``: deblurring pairs ``<dir>/<scene>/{blur,sharp}/*.png``; ``rain13k``: deraining pairs
    ``<dir>/{input,target}/*`` (Restormer's layout). For the last two see ``train_dir`` and ``test_dirs``."""
    train_hr_dir: Path | None = None
    """HR training folder, e.g. datasets/DIV2K/DIV2K_train_HR_sub (``folders`` only)."""
    train_lr_dir: Path | None = None
    """LR training folder, e.g. datasets/DIV2K/DIV2K_train_LR_bicubic/X2_sub."""
    train_filename_tmpl: str = "{}"
    """LR file stem from the HR stem (``{}`` for DCKD's sub-images, ``{}x2`` for DIV2K's LR folders)."""
    test_sets: dict[str, TestSetConfig] = field(default_factory=dict)
    """Named test sets (Set5, Set14, B100, Urban100, Manga109) for ``folders``."""
    skimage_crop: int | None = None
    """skimage only: centre-crop every HR image to at most this size (smoke preset)."""
    train_dir: Path | None = field(default=None, metadata=ADDED)
    """gopro/rain13k: the training folder, holding ``<lq_name>/`` and ``<gt_name>/`` directly (Rain13K:
    datasets/Deraining/train/Rain13K) or in one sub-folder per scene (GoPro: datasets/GoPro/train)."""
    test_dirs: dict[str, Path] = field(default_factory=dict, metadata=ADDED)
    """gopro/rain13k: named test folders in the same layout (GoPro; Test100, Rain100H, Rain100L, Test2800,
    Test1200)."""
    lq_name: str | None = field(default=None, metadata=ADDED)
    """gopro/rain13k: name of the degraded-image sub-folders (default: blur for gopro, input for rain13k)."""
    gt_name: str | None = field(default=None, metadata=ADDED)
    """gopro/rain13k: name of the ground-truth sub-folders (default: sharp for gopro, target for rain13k)."""

    @property
    def is_restoration(self) -> bool:
        """True for the same-size (scale 1) sources gopro and rain13k."""
        return self.source in RESTORATION_SOURCES

    @property
    def folder_names(self) -> tuple[str, str]:
        """(LQ, GT) sub-folder names of a restoration source."""
        lq, gt = RESTORATION_SOURCES[self.source]
        return self.lq_name or lq, self.gt_name or gt

    def __post_init__(self) -> None:
        if self.is_restoration:
            if self.scale != 1:
                raise ValueError(
                    f"data.source {self.source!r} pairs same-size images: data.scale must be 1, got {self.scale}"
                )
            return
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        # the training folders are checked when training data is read (train.load_train_pairs): evaluation
        # needs only the test sets


@dataclass
class EvalConfig:
    """How PSNR/SSIM are computed (``paperzoo_shared.metrics.image``, BasicSR-exact)."""

    y_channel: bool = True
    """PSNR/SSIM on the Y channel (SR, deraining) or, when false, on RGB (deblurring)."""
    crop_border: int | None = None
    """Pixels cropped from each edge before measuring; ``None`` = the scale (SR); 0 for deblurring/deraining."""

    def __post_init__(self) -> None:
        if self.crop_border is not None and self.crop_border < 0:
            raise ValueError(f"evaluation.crop_border must be >= 0, got {self.crop_border}")


@dataclass
class EncoderTrainConfig:
    """Training of the mini preset's stand-in encoder: a small VQ autoencoder on the HR training patches."""

    iterations: int = 300
    batch_size: int = 8
    hr_patch: int = 48
    lr: float = 2e-3
    commitment: float = 0.25
    """beta of the VQ-VAE commitment term."""
    seed: int = 0
    restart_every: int = field(default=0, metadata=ADDED)
    """Every this many steps, codes that no position of the step's batch picked are moved onto randomly
    chosen embeddings of that batch (dead-code restart, as in Jukebox/SoundStream); 0 = never. Without it
    the small codebook collapses to a handful of codes and the DMM distributions are near uniform."""

    def __post_init__(self) -> None:
        if self.restart_every < 0:
            raise ValueError(f"encoder_train.restart_every must be >= 0, got {self.restart_every}")


@dataclass
class Fig8bConfig:
    """The Fig. 8b mechanism check: PSNR of the history outputs vs the student over training."""

    enabled: bool = False
    small_step: int = 5
    """A small history update step (negatives nearly as good as the anchor)."""
    large_step: int = 200
    """A large update step (negatives stale)."""
    iterations: int = 400
    track_every: int = 20
    """Measure every this many iterations on a fixed batch of training patches."""
    seed: int = 0


@dataclass
class ExperimentConfig:
    """One DCKD experiment: data, teacher, student, encoder, method weights, training, rows to run."""

    name: str = "dckd"
    variant: str = ""
    """Full preset only: the file under configs/full/ to use (e.g. ``swinir_x3``); see reproduce.py."""
    data: DataConfig = field(default_factory=DataConfig)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig(arch="swinir_teacher"))
    student: ModelConfig = field(default_factory=lambda: ModelConfig(arch="swinir_student"))
    encoder: ModelConfig = field(default_factory=lambda: ModelConfig(arch="vqgan_f16_n1024"))
    dckd: DCKDConfig = field(default_factory=DCKDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher_train: TrainConfig | None = None
    """When set and ``teacher.checkpoint`` is empty, the teacher is trained first (mini/smoke presets)."""
    encoder_train: EncoderTrainConfig | None = None
    """When set and ``encoder.checkpoint`` is empty, the stand-in encoder is trained first."""
    methods: list[str] = field(default_factory=lambda: ["teacher", "scratch", "logits", "fakd", "dckd"])
    """Rows to run: 'teacher' and any key of METHODS."""
    paper_rows: dict[str, str] = field(default_factory=dict)
    """Method -> id of the paper/tables.yaml row shown beside it."""
    fig8b: Fig8bConfig = field(default_factory=Fig8bConfig)
    eval_max_images: int = 0
    """Evaluate on at most this many images per test set (0 = all)."""
    evaluation: EvalConfig = field(default_factory=EvalConfig, metadata=ADDED)
    """Metric convention: Y with crop = scale (SR, default), RGB with crop 0 (GoPro), Y with crop 0 (deraining)."""
    parallel_jobs: int = 1
    """Train this many (row, seed) runs at once in separate processes (CPU presets: one per core, each with
    ``train.threads`` threads); 1 runs everything in this process."""

    def __post_init__(self) -> None:
        if self.parallel_jobs < 1:
            raise ValueError(f"parallel_jobs must be >= 1, got {self.parallel_jobs}")
        unknown = [m for m in self.methods if m != "teacher" and m not in METHODS]
        if unknown:
            raise ValueError(
                f"unknown method {unknown[0]!r} in methods; valid: teacher, {', '.join(METHODS)}"
            )
        for method in self.paper_rows:
            if method not in METHOD_LABELS:
                raise ValueError(
                    f"paper_rows has unknown method {method!r}; valid: {', '.join(METHOD_LABELS)}"
                )


def fingerprint_dict(config: Any) -> Any:
    """``paperzoo_shared.config.to_dict(config)`` without the keys marked :data:`ADDED` that hold their
    default: the input of every cache fingerprint (trained runs, ledger rows)."""
    from paperzoo_shared.config import to_dict

    data = to_dict(config)
    _drop_added_defaults(config, data)
    return data


def _drop_added_defaults(config: Any, data: Any) -> None:
    import dataclasses

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.metadata.get("fingerprint") == "omit_default":
                if f.default is not dataclasses.MISSING:
                    default = f.default
                else:
                    default = f.default_factory()  # type: ignore[misc]
                if value == default:
                    data.pop(f.name, None)
                    continue
            _drop_added_defaults(value, data.get(f.name))
    elif isinstance(config, (list, tuple)) and isinstance(data, list):
        for item, sub in zip(config, data):
            _drop_added_defaults(item, sub)
    elif isinstance(config, dict) and isinstance(data, dict):
        for key, item in config.items():
            _drop_added_defaults(item, data.get(str(key)))
