"""Typed configuration of a Cantor run (``configs/*.yaml``, loaded by ``paperzoo_shared.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from paperzoo_cantor.modeling_cantor import PROMPT_VERSIONS

BENCHMARKS = ("scienceqa", "mathvista")
METHODS = ("cantor", "direct", "cot")
BACKENDS = ("openai", "transformers", "callable", "scripted")
EXTRACTORS = ("llm", "rules", "answer_field")


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(valid)}")


@dataclass
class BackendConfig:
    """The model behind every call."""

    kind: str = "openai"
    """openai (an OpenAI-compatible server), transformers (a local checkpoint), callable
    (``package.module:function``) or scripted (the in-process scripted model of the smoke tests);
    ``same`` (expert_backend only): the main backend."""
    model: str = ""
    """Model name sent to the server (openai), or the checkpoint path (transformers), or the callable."""
    base_url: str = ""
    """Server URL, e.g. ``http://127.0.0.1:8000/v1`` (openai)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (openai); never sent over plain http except to loopback."""
    temperature: float = 0.0
    """Sampling temperature (openai)."""
    max_tokens: int = 1024
    """Longest completion (openai: max_tokens; transformers: max_new_tokens)."""
    timeout: float = 120.0
    """Seconds before one call counts as timed out."""
    retries: int = 2
    """Retries of a timed-out or transient (connection, 429, 5xx) call, with exponential backoff."""
    backoff: float = 1.0
    """First backoff in seconds (doubled per retry, with jitter, at most 30 s)."""
    rate_limit: float = 0.0
    """At most this many call starts per second (0: no limit)."""
    concurrency: int = 8
    """Calls in flight at once."""

    def __post_init__(self) -> None:
        _one_of("backend.kind", self.kind, (*BACKENDS, "same"))
        for name in ("timeout", "backoff", "rate_limit", "temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"backend.{name} must be >= 0, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise ValueError(f"backend.concurrency must be >= 1, got {self.concurrency}")
        if self.retries < 0 or self.max_tokens < 1:
            raise ValueError("backend.retries must be >= 0 and backend.max_tokens >= 1")


@dataclass
class CantorRunConfig:
    """Cantor's own settings (Sec. 3; see ``modeling_cantor.CantorConfig``)."""

    prompt_version: str = "release-c549f9e"
    """Prompt set: the released ``utils/prompt.py`` (byte-exact)."""
    split_mode: str = "official"
    """official (the release's keyword filter, which drops any line containing "No") or fixed."""
    query_with_context: bool = True
    """Put the hint/caption and the options after the question (the demo passes the bare question)."""
    images: bool = True
    """Send the image to the decision and synthesis calls (Cantor (Gemini)); false with captions gives the
    Cantor (GPT-3.5) layout, where only the experts see the image."""

    def __post_init__(self) -> None:
        _one_of("cantor.split_mode", self.split_mode, ("official", "fixed"))
        _one_of("cantor.prompt_version", self.prompt_version, tuple(PROMPT_VERSIONS))


@dataclass
class EvalConfig:
    """One evaluation: a benchmark, a method, a backend."""

    benchmark: str = "scienceqa"
    """scienceqa (test split) or mathvista (testmini)."""
    data_root: str = ""
    """ScienceQA: the release's data/scienceqa folder; MathVista: the release's data folder."""
    method: str = "cantor"
    """cantor, direct (answer at once) or cot (think step by step, then "The answer is X.")."""
    image_only: bool = False
    """ScienceQA: only the problems with an image (Table 2)."""
    captions: str = ""
    """ScienceQA data/captions.json or MathVista texts/captions_bard.json: adds the caption to the context
    (the GPT-3.5 rows)."""
    limit: int = 0
    """Evaluate only the first N problems (0: all)."""
    item_concurrency: int = 8
    """Problems in flight at once (each makes its calls through the backend's own concurrency limit)."""
    extractor: str = "llm"
    """MathVista extraction: llm (official: rules, then the few-shot prompt on the backend), rules (the
    official rules only) or answer_field (the text after Cantor's last "Answer:", then the rules)."""
    quick_extract: bool = False
    """MathVista's optional quick regex ``The answer is "(.*)".``"""
    seed: int = 0
    """Seeds ScienceQA's random fallback for an unreadable answer (per problem)."""
    retry_failed: bool = False
    """On resume, rerun the problems whose record has a failed call (else they stand as recorded)."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """The model of the decision, synthesis, baselines and MathVista extraction."""
    expert_backend: BackendConfig = field(default_factory=lambda: BackendConfig(kind="same"))
    """The model of the expert calls (Cantor (GPT-3.5): an MLLM beside the text model); same: ``backend``."""
    cantor: CantorRunConfig = field(default_factory=CantorRunConfig)

    def __post_init__(self) -> None:
        if self.backend.kind == "same":
            raise ValueError("backend.kind 'same' is only for expert_backend")
        _one_of("benchmark", self.benchmark, BENCHMARKS)
        _one_of("method", self.method, METHODS)
        _one_of("extractor", self.extractor, EXTRACTORS)
        if self.limit < 0 or self.item_concurrency < 1:
            raise ValueError("limit must be >= 0 and item_concurrency >= 1")


@dataclass
class PipelinePresetConfig:
    """The smoke / mini presets: the whole pipeline against the local scripted server on fixtures."""

    scienceqa_n: int = 24
    """ScienceQA fixture problems per seed (cycling image / hint / both / neither)."""
    mathvista_n: int = 20
    """MathVista fixture problems per seed."""
    failure_every: int = 8
    """Every Nth problem carries a failure tag (timeout, refusal, malformed, server error in turn); 0: none."""
    latency: float = 0.05
    """Seconds the server adds to each call (a stand-in for model latency)."""
    timeout: float = 1.0
    """Client timeout per call (the [timeout] problems hang longer)."""
    hang: float = 3.0
    """How long the server sleeps on a [timeout] problem."""
    perception_accuracy: float = 0.9
    """The scripted expert reads the image right with this probability."""
    throughput_n: int = 48
    """Problems of the throughput table (no failure tags)."""
    throughput_timeout: float = 30.0
    """Client timeout per call in the throughput table (long: a slow client must not turn into failures)."""
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    """Problems in flight for the throughput rows."""

    def __post_init__(self) -> None:
        if min(self.scienceqa_n, self.mathvista_n, self.throughput_n) < 1 or self.failure_every < 0:
            raise ValueError("fixture sizes must be >= 1 and failure_every >= 0")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("concurrency must list values >= 1")


@dataclass
class FullPresetConfig:
    """The full preset: a real backend on the real data (set with --set; see the README)."""

    scienceqa_root: str = ""
    """data/scienceqa of the ScienceQA release."""
    mathvista_root: str = ""
    """data/ of the MathVista release."""
    scienceqa_captions: str = ""
    """data/captions.json of the ScienceQA release (the GPT-3.5 rows)."""
    mathvista_captions: str = ""
    """data/texts/captions_bard.json of the MathVista release (the GPT-3.5 rows)."""
    runs: str = "cantor-runs"
    """Folder of the run folders (one per row; each resumable)."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """The model of the MLLM rows (Gemini in the paper)."""
    text_backend: BackendConfig = field(default_factory=BackendConfig)
    """The model of the GPT-3.5 rows (a text model; the experts still use ``backend``). Unset: skipped."""
    extractor: str = "llm"
    """MathVista extraction (llm: the official GPT-4 few-shot step on ``backend``)."""
    limit: int = 0
    """Only the first N problems (0: all)."""
