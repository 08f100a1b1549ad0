"""Question/answer pairs about small shape scenes, for training and probing tiny multimodal LLMs.

Scenes are ``image_size`` pixels square (64 by default) with 2-4 objects, one per quadrant, each with a
distinct palette colour, so "the red triangle" always names exactly one object and every object's centre
is unambiguously left/right and top/bottom of the image centre.

Question types (:data:`QUESTION_TYPES`), all with single-word answers from :data:`ANSWER_VOCAB`:

* ``colour``: "What colour is the {shape}?" (asked only of a class present once).
* ``shape``: "What shape is the {colour} object?"
* ``count``: "How many {shapes} are there?" (``zero`` .. ``four``; one class may repeat).
* ``position``: left/right or top/bottom of the image centre.
* ``existence``: "Is there a {colour} {shape}?" (half present, half absent).
* ``detail``: the object's surface pattern, ``plain``, ``striped`` or ``checkered``. The patterns have a
  2-pixel period aligned to the image grid with the plain colour as their exact mean, so they are
  visible at full resolution and vanish under 2x2 or 4x4 average pooling: a model that compresses
  visual tokens that much cannot answer them.

Question types are assigned round-robin over the dataset (exactly balanced when ``n_images *
questions_per_image`` is a multiple of the number of types). Each image is drawn from a generator seeded
with ``(seed, image index)``.

The word-level tokenizer is built offline from the closed vocabulary of the templates: ids are the five
:data:`SPECIAL_TOKENS` (``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3, ``<image>`` = 4), then the
sorted lower-case words, then any extra special tokens, so extras never shift the word ids.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paperzoo_shared.data.synthetic.render import (
    COLOUR_NAMES,
    PATTERNS,
    SHAPE_CLASSES,
    ShapeSpec,
    sample_geometry,
    sample_rgb,
    shape_coverage,
    smooth_background,
)
from paperzoo_shared.data.synthetic.shapes import Scene, SceneObject, compose_scene

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "count", "position", "existence", "detail")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "ring": "rings",
    "cross": "crosses",
    "ellipse": "ellipses",
}
ANSWER_VOCAB: tuple[str, ...] = (
    *COLOUR_NAMES,
    *SHAPE_CLASSES,
    *NUMBER_WORDS,
    "yes",
    "no",
    "left",
    "right",
    "top",
    "bottom",
    *PATTERNS,
)
"""Every possible answer."""

TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("What colour is the {shape}?", "Which colour does the {shape} have?"),
    "shape": ("What shape is the {colour} object?", "Which shape is {colour}?"),
    "count": ("How many {plural} are there?", "How many {plural} can you see?"),
    "position_x": ("Is the {colour} {shape} on the left or the right?",),
    "position_y": ("Is the {colour} {shape} at the top or the bottom?",),
    "existence": ("Is there a {colour} {shape}?", "Does the image contain a {colour} {shape}?"),
    "detail": (
        "What pattern is on the {colour} {shape}?",
        "Is the {colour} {shape} plain, striped or checkered?",
    ),
}
"""Question templates per type (``position`` has one template per axis)."""

PROMPT_WORDS: tuple[str, ...] = (
    "question", "answer", "options", "option", "the", "best", "is", "a", "b", "c", "d",
    ".", ",", ":", "?", "(", ")",
)  # fmt: skip
"""Words for prompt scaffolding ("Question: ... Options: (a) ... Answer:") kept in the vocabulary."""

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>", "<image>")

_WORD_RE = re.compile(r"\w+|[^\w\s]")
_TOKENIZERS_MISSING = (
    "the word tokenizer needs the tokenizers package; install it with `pip install paperzoo-shared[text]`."
)


@dataclass(frozen=True)
class QAConfig:
    """Parameters of the question/answer generator.

    Attributes:
        image_size: square image side; a multiple of 4 and at least 32.
        min_objects, max_objects: objects per image, at most 4 (one per quadrant).
        radius_fraction_range: radius of each shape's bounding circle as a fraction of the largest that
            fits its quadrant (uniform).
        question_types: subset of :data:`QUESTION_TYPES` to ask, in round-robin order.
        questions_per_image: questions asked about each image.
        colours: palette names objects may take (distinct within an image; at least 4 for options).
        patterns: surface patterns objects may take; ``detail`` questions need at least 2.
        pattern_amplitude: contrast of the patterns.
        repeat_class_prob: probability that an image with >= 3 objects has one class twice.
        noise_std: Gaussian pixel noise (0 keeps pooled patterns exactly equal to the plain colour).
        supersampling: anti-aliasing samples per pixel side.
    """

    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 4
    radius_fraction_range: tuple[float, float] = (0.6, 0.95)
    question_types: tuple[str, ...] = QUESTION_TYPES
    questions_per_image: int = 3
    colours: tuple[str, ...] = COLOUR_NAMES
    patterns: tuple[str, ...] = PATTERNS
    pattern_amplitude: float = 48.0
    repeat_class_prob: float = 0.3
    noise_std: float = 0.0
    supersampling: int = 4

    def __post_init__(self) -> None:
        if self.image_size % 4 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 4 and >= 32, got {self.image_size}.")
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 4, got {self.min_objects}, {self.max_objects}."
            )
        lo, hi = self.radius_fraction_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"radius_fraction_range must satisfy 0 < low <= high <= 1, got {(lo, hi)}.")
        bad = [q for q in self.question_types if q not in QUESTION_TYPES]
        if bad or not self.question_types:
            raise ValueError(f"unknown or empty question_types {bad}; choose from {QUESTION_TYPES}.")
        if self.questions_per_image < 1:
            raise ValueError(f"questions_per_image must be >= 1, got {self.questions_per_image}.")
        if len(set(self.colours)) < max(4, self.max_objects) or not set(self.colours) <= set(COLOUR_NAMES):
            raise ValueError(
                f"colours must be at least 4 distinct names from {COLOUR_NAMES}, got {self.colours}."
            )
        if not set(self.patterns) <= set(PATTERNS) or not self.patterns:
            raise ValueError(f"patterns must be a non-empty subset of {PATTERNS}, got {self.patterns}.")
        if "detail" in self.question_types and len(set(self.patterns)) < 2:
            raise ValueError("'detail' questions need at least two patterns to choose from.")


@dataclass(frozen=True)
class QASample:
    """One question about one image.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB; shared (not copied) by the questions of the same image.
        question: the question text.
        answer: single word from :data:`ANSWER_VOCAB`.
        qtype: one of :data:`QUESTION_TYPES`.
        options: multiple-choice options (answer included), in random order.
        answer_index: position of ``answer`` in ``options``.
        image_id: index of the image in the dataset.
        objects: the scene's ground truth.
    """

    image: np.ndarray
    question: str
    answer: str
    qtype: str
    options: tuple[str, ...]
    answer_index: int
    image_id: int
    objects: tuple[SceneObject, ...]


def generate_qa_scene(rng: np.random.Generator, cfg: QAConfig) -> Scene:
    """Draw one QA scene: objects in distinct quadrants, distinct colours, at most one repeated class."""
    size_px = cfg.image_size
    cell = size_px // 2
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    labels = [SHAPE_CLASSES[int(i)] for i in rng.choice(len(SHAPE_CLASSES), size=n, replace=False)]
    if n >= 3 and rng.random() < cfg.repeat_class_prob:
        labels[-1] = labels[0]  # one class twice, the other classes still unique
    labels = [labels[int(i)] for i in rng.permutation(n)]
    colours = [cfg.colours[int(i)] for i in rng.choice(len(cfg.colours), size=n, replace=False)]
    cells = rng.choice(4, size=n, replace=False)

    specs, coverages = [], []
    for label, colour, cell_index in zip(labels, colours, cells):
        aspect, angle, inner = sample_geometry(rng, label)
        unit = ShapeSpec(
            label, 0.0, 0.0, 1.0, aspect, angle, inner, colour, (0, 0, 0)
        )  # size 1: radius ratio
        radius = float(rng.uniform(*cfg.radius_fraction_range)) * (cell / 2 - 1)
        x_cell, y_cell = (int(cell_index) % 2) * cell, (int(cell_index) // 2) * cell
        cx, cy = rng.uniform(radius + 0.5, cell - radius - 0.5, size=2) + (x_cell, y_cell)
        pattern = cfg.patterns[int(rng.integers(len(cfg.patterns)))]
        spec = dataclasses.replace(
            unit,
            cx=float(cx),
            cy=float(cy),
            size=radius / unit.radius,
            rgb=sample_rgb(rng, colour),
            pattern=pattern,
        )
        specs.append(spec)
        coverages.append(shape_coverage(spec, size_px, size_px, cfg.supersampling))
    background = smooth_background(rng, size_px, size_px)
    return compose_scene(
        rng, background, specs, coverages, noise_std=cfg.noise_std, pattern_amplitude=cfg.pattern_amplitude
    )


def _pick(rng: np.random.Generator, items: list[Any] | tuple[Any, ...]) -> Any:
    return items[int(rng.integers(len(items)))]


def _options(
    rng: np.random.Generator, answer: str, pool: tuple[str, ...], n: int
) -> tuple[tuple[str, ...], int]:
    """``answer`` plus ``n - 1`` distinct distractors from ``pool``, shuffled; returns options and answer index."""
    others = [p for p in dict.fromkeys(pool) if p != answer]
    chosen = [others[int(i)] for i in rng.choice(len(others), size=min(n - 1, len(others)), replace=False)]
    options = [answer, *chosen]
    order = rng.permutation(len(options))
    shuffled = tuple(options[int(i)] for i in order)
    return shuffled, shuffled.index(answer)


def _ask(
    rng: np.random.Generator, qtype: str, objects: tuple[SceneObject, ...], cfg: QAConfig
) -> tuple[str, str, tuple[str, ...], int]:
    """Question text, answer, options and answer index of one question of type ``qtype``."""
    labels = [obj.label for obj in objects]
    target = _pick(rng, objects)
    if qtype == "colour":
        target = _pick(rng, [obj for obj in objects if labels.count(obj.label) == 1])
        question = _pick(rng, TEMPLATES["colour"]).format(shape=target.label)
        answer, pool, n_options = target.colour, cfg.colours, 4
    elif qtype == "shape":
        question = _pick(rng, TEMPLATES["shape"]).format(colour=target.colour)
        answer, pool, n_options = target.label, SHAPE_CLASSES, 4
    elif qtype == "count":
        absent = [c for c in SHAPE_CLASSES if c not in labels]
        label = _pick(rng, absent) if absent and rng.random() < 1 / 3 else _pick(rng, labels)
        question = _pick(rng, TEMPLATES["count"]).format(plural=PLURALS[label])
        answer, pool, n_options = NUMBER_WORDS[labels.count(label)], NUMBER_WORDS, 4
    elif qtype == "position":
        centre = cfg.image_size / 2
        if rng.random() < 0.5:
            template, answer, pool = (
                "position_x",
                "left" if target.center[0] < centre else "right",
                ("left", "right"),
            )
        else:
            template, answer, pool = (
                "position_y",
                "top" if target.center[1] < centre else "bottom",
                ("top", "bottom"),
            )
        question = _pick(rng, TEMPLATES[template]).format(colour=target.colour, shape=target.label)
        n_options = 2
    elif qtype == "existence":
        present = {(obj.colour, obj.label) for obj in objects}
        if rng.random() < 0.5:
            colour, label, answer = target.colour, target.label, "yes"
        else:
            absent_pairs = [(c, s) for c in cfg.colours for s in SHAPE_CLASSES if (c, s) not in present]
            (colour, label), answer = _pick(rng, absent_pairs), "no"
        question = _pick(rng, TEMPLATES["existence"]).format(colour=colour, shape=label)
        pool, n_options = ("yes", "no"), 2
    elif qtype == "detail":
        question = _pick(rng, TEMPLATES["detail"]).format(colour=target.colour, shape=target.label)
        answer, pool, n_options = target.pattern, cfg.patterns, len(set(cfg.patterns))
    else:
        raise ValueError(f"unknown question type {qtype!r}; choose from {QUESTION_TYPES}.")
    options, answer_index = _options(rng, answer, tuple(pool), n_options)
    return question, answer, options, answer_index


def generate_qa_dataset(n_images: int, *, seed: int, cfg: QAConfig | None = None) -> list[QASample]:
    """``n_images * questions_per_image`` question/answer samples, deterministic given ``seed``."""
    cfg = cfg or QAConfig()
    types = cfg.question_types
    samples = []
    for image_id in range(n_images):
        rng = np.random.default_rng([seed, image_id])
        scene = generate_qa_scene(rng, cfg)
        for j in range(cfg.questions_per_image):
            qtype = types[(image_id * cfg.questions_per_image + j) % len(types)]
            question, answer, options, answer_index = _ask(rng, qtype, scene.objects, cfg)
            samples.append(
                QASample(scene.image, question, answer, qtype, options, answer_index, image_id, scene.objects)
            )
    return samples


def qa_vocabulary() -> list[str]:
    """The closed, sorted, lower-case word vocabulary of all questions, answers and prompt words."""
    words: set[str] = set(PROMPT_WORDS)
    for templates in TEMPLATES.values():
        for template in templates:
            words.update(_WORD_RE.findall(re.sub(r"\{\w+\}", " ", template).lower()))
    words.update(ANSWER_VOCAB)
    words.update(PLURALS.values())
    return sorted(words)


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as err:
        raise ImportError(_TOKENIZERS_MISSING) from err
    return tokenizers


def build_word_tokenizer(extra_special_tokens: tuple[str, ...] | list[str] = ()) -> Tokenizer:
    """A ``tokenizers`` WordLevel tokenizer over :func:`qa_vocabulary`, built offline.

    Text is lower-cased, split on whitespace and each punctuation character is its own token. Special
    tokens (:data:`SPECIAL_TOKENS` then ``extra_special_tokens``) are matched verbatim in raw text.
    """
    tokenizers = _tokenizers()
    extras = [t for t in extra_special_tokens if t not in SPECIAL_TOKENS]
    tokens = [*SPECIAL_TOKENS, *qa_vocabulary(), *dict.fromkeys(extras)]
    tokenizer = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>")
    )
    tokenizer.normalizer = tokenizers.normalizers.Lowercase()
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [tokenizers.pre_tokenizers.WhitespaceSplit(), tokenizers.pre_tokenizers.Punctuation()]
    )
    tokenizer.add_special_tokens([*SPECIAL_TOKENS, *dict.fromkeys(extras)])
    return tokenizer


def word_level_tokenizer(
    words: Iterable[str], special_tokens: Sequence[str], *, split_punctuation: bool = False
) -> Tokenizer:
    """A case-sensitive ``tokenizers`` WordLevel tokenizer for a tiny test model's closed vocabulary, built offline.

    Ids: ``special_tokens`` in their order, then the sorted distinct ``words`` (``<unk>`` must be among the
    special tokens). Text splits on whitespace only, or with ``split_punctuation`` as the ``Whitespace``
    pre-tokenizer does (``\\w+`` and runs of punctuation). Special tokens are matched verbatim in raw text.
    """
    tokenizers = _tokenizers()
    if "<unk>" not in special_tokens:
        raise ValueError("special_tokens must contain '<unk>'")
    tokens = [*special_tokens, *sorted(set(words) - set(special_tokens))]
    tokenizer = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>")
    )
    split = tokenizers.pre_tokenizers
    tokenizer.pre_tokenizer = split.Whitespace() if split_punctuation else split.WhitespaceSplit()
    tokenizer.add_special_tokens(list(special_tokens))
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write ``directory/tokenizer.json`` (creating the directory) and return its path."""
    path = Path(directory) / "tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def to_transformers_tokenizer(
    tokenizer: Tokenizer, *, bos_token: str = "<bos>", padding_side: str = "right"
) -> PreTrainedTokenizerFast:
    """Wrap ``tokenizer`` as a ``transformers.PreTrainedTokenizerFast`` with pad/bos/eos/unk set.

    ``<image>`` and any extra special tokens become ``extra_special_tokens`` (``additional_special_tokens`` before
    transformers 5). transformers is imported here
    only, so the rest of the module does not need it.
    """
    import transformers
    from transformers import PreTrainedTokenizerFast

    roles = {"pad_token": "<pad>", "bos_token": bos_token, "eos_token": "<eos>", "unk_token": "<unk>"}
    extras = [
        added.content
        for _, added in sorted(tokenizer.get_added_tokens_decoder().items())
        if added.special and added.content not in roles.values()
    ]
    # transformers 5 renamed the list of extra special tokens (4.x: additional_special_tokens)
    key = (
        "extra_special_tokens"
        if int(transformers.__version__.split(".")[0]) >= 5
        else "additional_special_tokens"
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, **{key: extras}, **roles, padding_side=padding_side
    )
