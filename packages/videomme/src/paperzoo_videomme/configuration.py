"""Typed configuration of a Video-MME run (loaded from ``configs/*.yaml`` by ``paperzoo_shared.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from paperzoo_videomme.modeling_videomme import (
    DURATIONS,
    FRAME_SAMPLERS,
    PROMPT_STYLES,
    SUBTITLE_MODES,
)
from paperzoo_videomme.scoring import SCORING_RULES

MODEL_KINDS = (
    "tiny_qwen2_vl",
    "tiny_llava_onevision",
    "subtitle_reader",
    "transformers",
    "openai",
    "callable",
)


def _one_of(name: str, value: str, valid: object) -> None:
    if value not in valid:  # type: ignore[operator]
        raise ValueError(f"{name} {value!r} is not one of {', '.join(valid)}")  # type: ignore[arg-type]


@dataclass
class DataConfig:
    """Where the data comes from."""

    root: str = ""
    """Folder in the release layout (videomme/, video/, subtitle/). Empty: the synthetic set is generated
    (see ``synthetic``) into the run's work folder."""
    annotations: str = ""
    """Annotation file (parquet/JSON/JSONL); empty: found under ``root``."""
    durations: list[str] = field(default_factory=lambda: list(DURATIONS))
    """Duration buckets to evaluate."""
    limit_videos: int = 0
    """Evaluate only the first N videos (0: all)."""
    probe: bool = False
    """Open every video at load time to report corrupt files before the run."""

    def __post_init__(self) -> None:
        for duration in self.durations:
            _one_of("data.durations entry", duration, DURATIONS)
        if self.limit_videos < 0:
            raise ValueError(f"data.limit_videos must be >= 0, got {self.limit_videos}")


@dataclass
class SyntheticConfig:
    """The synthetic stand-in (``paperzoo_shared.data.synthetic.video``) written in the release layout."""

    n_videos: int = 12
    """Number of videos (3 questions each)."""
    fps: float = 8.0
    """Frame rate of the generated videos."""
    size: int = 64
    """Frame width and height in pixels (even, >= 32)."""
    duration_range_s: tuple[float, float] = (4.0, 12.0)
    """Video length range in seconds."""
    duration_buckets_s: tuple[float, float] = (6.0, 9.0)
    """short below the first, medium below the second, else long."""
    narrate_events: bool = False
    """Subtitles describe the events (else filler lines plus one narration cue)."""

    def __post_init__(self) -> None:
        if self.n_videos < 1:
            raise ValueError(f"synthetic.n_videos must be >= 1, got {self.n_videos}")

    def scene(self) -> dict[str, object]:
        return {
            "fps": self.fps,
            "width": self.size,
            "height": self.size,
            "duration_range_s": tuple(self.duration_range_s),
            "duration_buckets_s": tuple(self.duration_buckets_s),
            "narrate_events": self.narrate_events,
        }


@dataclass
class ProtocolConfig:
    """How frames, subtitles and prompts are made (the paper's protocol and its variants)."""

    frame_sampler: str = "official"
    """One of official (segment midpoints), lmms_eval (linspace), vlmevalkit (interior), fps."""
    num_frames: int = 8
    """Frames per video for the count-based samplers (the paper uses the model's own count, e.g. 8-64)."""
    target_fps: float = 1.0
    """Frame rate of the ``fps`` sampler."""
    max_frames: int = 0
    """Cap of the ``fps`` sampler (0: none; GPT-4o 384, Qwen2-VL 768 on the leaderboard)."""
    subtitles: str = "none"
    """none, official (at the sampled frames), lmms_eval, or full."""
    lmms_eval_subtitle_frames: int = 32
    """lmms-eval's subtitle ``frame_num`` (32; 768 for llava_vid and qwen3_vl; -1 every frame)."""
    prompt_style: str = "official"
    """official (README), lmms_eval, or vlmevalkit."""
    post_prompt: str = ""
    """lmms-eval no-subtitle post prompt; empty: its default."""
    decode_backend: str = "auto"
    """auto (decord when installed, else OpenCV), decord or opencv; frame counts may differ by one between
    them, and every response records the backend used."""
    max_side: int = 0
    """Shrink frames so the longer side is at most this many pixels (0: keep the decoded size)."""

    def __post_init__(self) -> None:
        _one_of("protocol.frame_sampler", self.frame_sampler, FRAME_SAMPLERS)
        _one_of("protocol.subtitles", self.subtitles, SUBTITLE_MODES)
        _one_of("protocol.prompt_style", self.prompt_style, PROMPT_STYLES)
        _one_of("protocol.decode_backend", self.decode_backend, ("decord", "opencv", "auto"))
        if self.num_frames < 1:
            raise ValueError(f"protocol.num_frames must be >= 1, got {self.num_frames}")


@dataclass
class ModelConfig:
    """Which model answers, and how it is called."""

    kind: str = "tiny_qwen2_vl"
    """tiny_qwen2_vl / tiny_llava_onevision (random tiny models built offline), subtitle_reader (a plain
    callable baseline), transformers (``path``: a local checkpoint), openai (an OpenAI-compatible server),
    callable (``path``: ``module:function``)."""
    path: str = ""
    """Checkpoint folder (transformers) or ``module:function`` (callable)."""
    base_url: str = ""
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang) or a hosted API."""
    model_name: str = ""
    """Model name sent to the OpenAI-compatible server."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never put the key in a config)."""
    max_new_tokens: int = 16
    """Generation length (lmms-eval uses 16, greedy)."""
    batch_size: int = 4
    """Questions per model call (requests in flight for the HTTP client)."""
    dtype: str = "float32"
    """torch dtype of transformers models (bfloat16 on GPUs)."""
    device: str = "cpu"
    """torch device of transformers models."""
    frames_as: str = "video"
    """Give frames to transformers models as one video or as separate images."""
    timeout_s: float = 120.0
    """HTTP timeout per request."""
    seed: int = 0
    """Initialisation seed of the random tiny models."""

    def __post_init__(self) -> None:
        _one_of("model.kind", self.kind, MODEL_KINDS)
        _one_of("model.frames_as", self.frames_as, ("video", "images"))
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("model.batch_size and model.max_new_tokens must be >= 1")


@dataclass
class RunConfig:
    """Execution."""

    num_workers: int = 0
    """Frame-decoding worker processes (0: decode in the main process)."""
    scoring_rules: list[str] = field(default_factory=lambda: list(SCORING_RULES))
    """Rules to score the responses with (the first one is the headline)."""
    progress: bool = True
    """Show a tqdm progress bar with ETA."""

    def __post_init__(self) -> None:
        for rule in self.scoring_rules:
            _one_of("run.scoring_rules entry", rule, SCORING_RULES)
        if self.num_workers < 0:
            raise ValueError(f"run.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class PipelineRow:
    """One row of the end-to-end table: a model under one protocol setting."""

    id: str
    label: str
    model: str = "tiny_qwen2_vl"
    """A model kind (see :class:`ModelConfig`); the other model fields come from ``model``."""
    subtitles: str = "none"
    frame_sampler: str = "official"
    prompt_style: str = "official"

    def __post_init__(self) -> None:
        _one_of(f"pipeline row {self.id}: model", self.model, MODEL_KINDS)
        _one_of(f"pipeline row {self.id}: subtitles", self.subtitles, SUBTITLE_MODES)
        _one_of(f"pipeline row {self.id}: frame_sampler", self.frame_sampler, FRAME_SAMPLERS)
        _one_of(f"pipeline row {self.id}: prompt_style", self.prompt_style, PROMPT_STYLES)


@dataclass
class ParityConfig:
    """The fixed response set scored under every rule (the parity table)."""

    styles: dict[str, float] = field(
        default_factory=lambda: {
            "letter": 4.0,
            "letter_period_text": 2.0,
            "best_answer_is": 2.0,
            "answer_colon": 1.0,
            "lowercase_the_answer_is": 1.0,
            "best_option_colon": 0.5,
            "parenthesised": 0.5,
            "lowercase_letter": 0.5,
            "verbose_no_letter": 0.5,
            "sentence_then_letter": 0.5,
            "refusal": 0.5,
        }
    )
    """Relative weights of response styles (see :mod:`paperzoo_videomme.responses`)."""
    correct_prob: float = 0.6
    """Probability that the intended letter is the right one."""

    def __post_init__(self) -> None:
        from paperzoo_videomme.responses import RESPONSE_STYLES

        for style, weight in self.styles.items():
            _one_of("parity.styles key", style, RESPONSE_STYLES)
            if weight < 0:
                raise ValueError(f"parity.styles[{style}] must be >= 0, got {weight}")
        if not 0 <= self.correct_prob <= 1:
            raise ValueError(f"parity.correct_prob must be in [0, 1], got {self.correct_prob}")


@dataclass
class VideoMMEConfig:
    """A whole run: data, protocol, model, execution, and the rows of the mini tables."""

    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)
    parity: ParityConfig = field(default_factory=ParityConfig)
    pipeline: list[PipelineRow] = field(default_factory=list)
    """Rows of the end-to-end table (smoke/mini presets)."""
    full_rows: dict[str, ModelConfig] = field(default_factory=dict)
    """Full preset: the model of each paper row of the main table (paper/tables.yaml ids)."""
    full_protocol: dict[str, ProtocolConfig] = field(default_factory=dict)
    """Full preset: per paper row, the protocol (frame sampler and count from the leaderboard page); the
    subtitle mode is set by the column (w/o subs: none, w/ subs: official)."""
