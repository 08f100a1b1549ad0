"""Typed settings of Dynamic-LLaVA: the sparsification (saved into the model's ``config.sparse_config``),
the training recipe, and the experiment presets that ``paperzoo reproduce`` loads from ``configs/*.yaml``.

Field names of :class:`SparseConfig` follow the official ``SparseArguments`` (``llava/train/train_sparse.py``
of Osilly/dynamic_llava) so a ``config.json`` written by the official code converts key for key. Where we
follow the official code rather than the paper text, or fix it, the field says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

SELECTIONS = ("dynamic", "dense", "random", "fastv")
"""Token-selection strategies: the learned predictors (the paper), none, uniform random, FastV's attention rank."""


def _check_keep_rate(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) <= 1.0) or math.isnan(float(value)):
        raise ValueError(
            f"{name} must be a keep ratio in (0, 1], got {value!r}; e.g. 0.2 keeps 20% of the tokens "
            "(the paper's vision setting) and 1.0 keeps all of them"
        )


@dataclass(frozen=True)
class SparseConfig:
    """Where and how much Dynamic-LLaVA sparsifies (paper Sec. 3.2-3.4; official ``SparseArguments``)."""

    use_vision_predictor: bool = True
    """Prune image tokens with the learned image predictor (Dynamic-LLaVA_I and _IT)."""
    vision_keep_rate: float = 0.2
    """r_I: share of image tokens kept after ``sparse_layer``; inference keeps exactly int(N_I * r_I) (576 -> 115)."""
    use_text_predictor: bool = True
    """Master switch of the text predictors (official name); off disables output-text sparsification."""
    use_output_text_predictor: bool = True
    """Sparsify generated (output) text tokens: the _IT variant, the shipped configuration."""
    output_text_keep_rate: float = 0.5
    """r_OT: target keep ratio of output-text tokens during training (inference thresholds the logits)."""
    output_text_len_for_training: int = 50
    """LEN_OT: answers shorter than this are kept whole in training and get no ratio loss ("for stable training")."""
    use_instruct_predictor: bool = False
    """Prompt-text predictor; off in the shipped scripts (it hurts accuracy, paper App.) and not implemented here."""
    sparse_layer: int = 2
    """l: decisions are taken at the input of this decoder layer (0-based) and shared by all later layers."""
    d_model: int = 512
    """Width of the predictors (official default)."""
    nhead: int = 8
    """Heads of the image predictor's ViT blocks."""
    dim_feedforward: int = 2048
    """MLP width of the image predictor's ViT blocks."""
    num_layers: int = 2
    """ViT blocks in the image predictor (the output-text predictor is a per-token MLP and ignores it)."""
    mask_loss_weight: float = 100.0
    """lambda of the keep-ratio losses (paper Eq. 11-12)."""
    masked_softmax_eps: float = 1e-6
    """Smoothing of the MaskedSoftmax (official ``softmax_with_policy``): eps/N is added to every causally
    visible key and eps to the denominator. The official code also adds eps/N to future (causally masked)
    keys, a tiny causal leak; here it goes only to visible keys."""

    def __post_init__(self) -> None:
        _check_keep_rate("vision_keep_rate", self.vision_keep_rate)
        _check_keep_rate("output_text_keep_rate", self.output_text_keep_rate)
        if self.sparse_layer < 0:
            raise ValueError(
                f"sparse_layer must be >= 0 (0-based decoder layer index), got {self.sparse_layer}"
            )
        if self.output_text_len_for_training < 0:
            raise ValueError(
                f"output_text_len_for_training must be >= 0, got {self.output_text_len_for_training}"
            )
        if self.d_model % 4 or self.d_model % self.nhead:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by 4 (the output MLP halves it twice) "
                f"and by nhead ({self.nhead})"
            )
        if self.use_instruct_predictor:
            raise ValueError(
                "use_instruct_predictor=True is not implemented: the shipped Dynamic-LLaVA scripts disable it "
                "(dropping prompt text hurts accuracy, paper appendix); set it to false"
            )
        if self.mask_loss_weight < 0 or self.masked_softmax_eps < 0:
            raise ValueError("mask_loss_weight and masked_softmax_eps must be >= 0")

    @property
    def sparsify_output_text(self) -> bool:
        return self.use_text_predictor and self.use_output_text_predictor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "sparse_config") -> SparseConfig:
        """Builds from a (possibly official) ``sparse_config`` mapping; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        # Keys the official SparseArguments carries for the disabled instruct predictor.
        ignored = {"instruct_keep_rate", "instruct_len_for_training"}
        unknown = sorted(set(data) - known - ignored)
        if unknown:
            raise ValueError(f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainRecipe:
    """The Dynamic-LLaVA training stage (paper Sec. 4.1, App. Table 15; official ``train_sparse.py`` + scripts)."""

    learning_rate: float = 5e-6
    """LR of everything that is not a predictor (the LLM and the projector)."""
    predictor_lr: float = 2e-4
    """LR of the two predictors (shipped scripts; the SparseArguments default is 3e-4)."""
    weight_decay: float = 0.0
    predictor_weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    num_train_epochs: float = 1.0
    max_steps: int = -1
    """> 0 overrides num_train_epochs (the mini preset counts steps)."""
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gumbel_start_tau: float = 1.0
    gumbel_end_tau: float = 0.1
    """tau decays exponentially from start to end over the optimizer steps (official ``CustomCallback``)."""
    freeze_vision_tower: bool = True
    freeze_projector: bool = False
    """The paper says the projector is frozen; the official code leaves ``mm_projector`` trainable. We follow
    the code (the reported numbers come from it); set true for the paper's text."""
    bf16: bool = False
    gradient_checkpointing: bool = False
    model_max_length: int = 2048
    logging_steps: int = 10
    seed: int = 0
    deepspeed: str | None = None
    """Path to a DeepSpeed JSON (configs/deepspeed/zero3.json for the paper's ZeRO-3); None on CPU."""

    def __post_init__(self) -> None:
        if self.learning_rate < 0 or self.predictor_lr < 0:
            raise ValueError("learning rates must be >= 0")
        if not (self.gumbel_start_tau > 0 and self.gumbel_end_tau > 0):
            raise ValueError(
                f"Gumbel temperatures must be > 0, got start {self.gumbel_start_tau} end {self.gumbel_end_tau}"
            )
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("set max_steps > 0 or num_train_epochs > 0")


# ----------------------------------------------------------------------------------------------------
# Experiment presets (configs/smoke.yaml, mini.yaml, full_*.yaml)
# ----------------------------------------------------------------------------------------------------


@dataclass
class TinyModelConfig:
    """Sizes of the tiny LLaVA (CLIP vision tower + mlp2x_gelu projector + Llama) of the smoke/mini presets."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_intermediate: int = 256
    max_position_embeddings: int = 512

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.text_hidden % self.text_heads or self.vision_hidden % self.vision_heads:
            raise ValueError("hidden sizes must be divisible by the number of heads")


@dataclass
class DataConfig:
    """The stand-in data: paperzoo_shared.data.synthetic.qa shape questions plus one long description per image."""

    train_images: int = 600
    eval_images: int = 60
    questions_per_image: int = 3
    question_types: tuple[str, ...] = ("colour", "shape", "count", "position", "existence")
    colours: tuple[str, ...] = ()
    """Palette subset (at least 4 names of paperzoo_shared's palette); empty = all nine."""
    patterns: tuple[str, ...] = ()
    """Surface patterns; empty = all three. With one pattern, descriptions leave the pattern word out."""
    describe: bool = True
    """Add a "what does the image contain ?" sample per image whose answer lists every object (colour,
    pattern, shape, side, height): the long outputs that output-text sparsification acts on."""
    eval_description_images: int = 30
    """Images whose descriptions are generated at evaluation (KV-cache size, PPL)."""


@dataclass
class StageConfig:
    """One training stage of the miniature."""

    steps: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    predictor_lr: float = 1e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0


@dataclass
class ExperimentConfig:
    """A whole smoke/mini run: tiny LLaVA pretraining, Dynamic-LLaVA training, four evaluated rows."""

    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sparse: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`SparseConfig` (e.g. output_text_len_for_training scaled to the short answers)."""
    vision_pretrain: StageConfig = field(default_factory=lambda: StageConfig(steps=0))
    """Stand-in for CLIP pretraining: the vision tower learns per-patch shape and colour classes (0 = skip)."""
    pretrain: StageConfig = field(default_factory=StageConfig)
    """Dense LLaVA training (projector + LLM, tower frozen as in LLaVA), standing in for LLaVA-1.5."""
    dynamic: StageConfig = field(default_factory=StageConfig)
    """Dynamic-LLaVA training from the dense model (one more stage with predictors; paper Sec. 4.1)."""
    gumbel_start_tau: float = 1.0
    gumbel_end_tau: float = 0.1
    freeze_vision_tower: bool = True
    freeze_projector: bool = False
    rows: tuple[str, ...] = SELECTIONS
    max_new_tokens: int = 48
    eval_batch_size: int = 32
    threads: int = 2
    """torch threads (the mini budget is 2 CPU cores)."""

    def __post_init__(self) -> None:
        bad = [r for r in self.rows if r not in SELECTIONS]
        if bad:
            raise ValueError(f"unknown rows {bad}; choose from {SELECTIONS}")
        SparseConfig.from_dict(dict(self.sparse), source="sparse")  # validate early

    @property
    def sparse_config(self) -> SparseConfig:
        return SparseConfig.from_dict(dict(self.sparse), source="sparse")


Selection = Literal["dynamic", "dense", "random", "fastv"]


@dataclass
class FullTrainConfig:
    """``paperzoo-dynamic-llava train``: Dynamic-LLaVA training from a dense llava-hf LLaVA-1.5 checkpoint
    (configs/full/*.yaml hold the paper's settings)."""

    model_path: str = ""
    """Local llava-hf checkpoint (``convert`` turns liuhaotian/llava-v1.5-7b into one)."""
    data_path: str = ""
    """llava_v1_5_mix665k.json (image samples are used; the paper's "656K mixture")."""
    image_folder: str = ""
    output_dir: str = "runs/dynamic_llava"
    sparse: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`SparseConfig`."""
    train: TrainRecipe = field(default_factory=TrainRecipe)

    def __post_init__(self) -> None:
        SparseConfig.from_dict(dict(self.sparse), source="sparse")

    @property
    def sparse_config(self) -> SparseConfig:
        return SparseConfig.from_dict(dict(self.sparse), source="sparse")
