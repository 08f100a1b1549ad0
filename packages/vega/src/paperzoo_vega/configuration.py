"""Typed configuration of the presets (``configs/{smoke,mini,full}.yaml``); every field documented and checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from paperzoo_vega.modeling_vega import PROMPT_STYLES


@dataclass
class CorpusConfig:
    """The synthetic interleaved corpus (:mod:`paperzoo_vega.synthetic`)."""

    train_documents: int = 300
    test_documents: int = 40
    train_seed: int = 0
    """Corpus seeds are fixed across runs: the per-run seed changes the model's initialisation and data order."""
    test_seed: int = 1000
    figures_per_document: list[int] = field(default_factory=lambda: [3, 4])
    filler_paragraphs: int = 1
    image_size: int = 56

    def __post_init__(self) -> None:
        if self.train_documents < 3 or self.test_documents < 3:
            raise ValueError("train_documents and test_documents must be >= 3 (ITA needs 3 papers)")
        if (
            len(self.figures_per_document) != 2
            or not 2 <= self.figures_per_document[0] <= self.figures_per_document[1]
        ):
            raise ValueError(
                f"figures_per_document must be [lo, hi] with 2 <= lo <= hi, got {self.figures_per_document}"
            )


@dataclass
class ConstructionConfig:
    """Options of the construction tool for the synthetic corpus (see :class:`~paperzoo_vega.construct.BuildConfig`)."""

    budget: int = 120
    image_tokens: int = 4
    """The tiny model's visual tokens per 56 x 56 image (4 after Qwen2-VL's 2 x 2 merge), not Qwen-VL's 256."""
    max_images: int = 3
    ita_pictures: list[int] = field(default_factory=lambda: [3])


@dataclass
class ModelConfig:
    """The tiny Qwen2-VL (:class:`~paperzoo_vega.tiny.TinyConfig`) and generation."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    prompt_style: str = "none"
    max_new_tokens: int = 12
    eval_batch_size: int = 16
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}")


@dataclass
class TrainConfig:
    steps: int = 400
    batch_size: int = 8
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.05

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError("steps and batch_size must be >= 1 and learning_rate > 0")


@dataclass
class RowConfig:
    """One row: a training mixture by weight (``iitc``, ``ita``); no positive weight = the chance row."""

    id: str
    label: str
    weights: dict[str, float] = field(default_factory=lambda: {"iitc": 1.0})

    def __post_init__(self) -> None:
        unknown = set(self.weights) - {"iitc", "ita"}
        if unknown:
            raise ValueError(f"row {self.id}: unknown mixture parts {sorted(unknown)} (use iitc, ita)")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"row {self.id}: mixture weights must be >= 0, got {self.weights}")


@dataclass
class FullConfig:
    """The paper's setting on the real release (``full`` preset); paths are given with ``--set``."""

    data_root: str = ""
    """Folder with the release's JSON files and ``test_imgs/``."""
    test_files: list[str] = field(default_factory=lambda: ["IITC_4k_test.json", "ITA_3picture_test.json"])
    model_path: str = ""
    """A local transformers checkpoint (e.g. a VEGA-trained Qwen2-VL)."""
    prompt_style: str = "official"
    device: str = "cuda"
    dtype: str = "bfloat16"
    batch_size: int = 4
    max_new_tokens: int = 512


@dataclass
class VegaConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    construction: ConstructionConfig = field(default_factory=ConstructionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rows: list[RowConfig] = field(default_factory=list)
    comparisons: list[list[str]] = field(default_factory=list)
    """Pre-registered paired differences ``[row_a, row_b, metric]`` (a − b, 95% CI over seeds)."""
    full: FullConfig = field(default_factory=FullConfig)
    progress: bool = False
