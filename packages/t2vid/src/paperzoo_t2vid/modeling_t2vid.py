"""The T2Vid synthesis core (Yin et al., arXiv 2411.19951, "Translating Long Text into Multi-Image is the
Catalyst for Video-LLMs", later "Sparrow"), written fresh from the paper notes and a reading of the official
scripts (xjtupanda/T2Vid @ e4d5ea2: ``utils/text-to-images/t2vid.py``, ``utils/preprocess/*-filter.py``,
``utils/preprocess/reformat_json.py``).

The pipeline of §2.3 of the notes, one function per step:

1. reformat a long-text QA sample into a "fake video" conversation: the long ``context`` becomes frames, the
   user turn becomes ``"<video>\\n" + question`` (:func:`reformat_longalpaca`, :func:`reformat_longqlora`);
2. split the context into chunks of 115 word tokens (:func:`split_tokens`, greedy, as
   ``split_text_by_word_limit``);
3. render each chunk on a white 448x448 canvas, black TrueType text of size 20, greedy word wrap to
   448 - 40 px, x = 20, the block vertically centred (:func:`wrap_words`, :func:`layout_chunk`,
   :func:`render_chunk`); unlike the official script, a chunk that does not fit is *detected* (:class:`Layout`);
4. the number of frames is the number of chunks (no subsampling for synthetic data);
5. filter per base model: frame cap, token budget (text tokens + tokens per frame x frames), question word
   cap, exactly one ``<video>`` in the first turn (:func:`filter_reasons`);
6. write the multi-image schema: ``<image_00>..`` placeholders, one per line, before the question
   (:func:`to_multi_image`);
7. real videos: 1 fps frames, then 24 middle-of-segment frames (:func:`one_fps_indices`, :func:`seq_frames`);
8. mix synthetic and real samples at a ratio, seeded (:func:`mix_counts`, :func:`mix`).

Everything here is pure (no file IO) so that it can be tested exactly; IO lives in ``data.py`` and the
parallel renderer in ``synthesize.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

VIDEO_TOKEN = "<video>"
LONGQLORA_SUFFIX = "Answer the question in short and give the corresponding document ID."
"""Appended (after a newline) to every LongQLoRA question (notes §2.3 step 2)."""

# ----------------------------------------------------------------------------------------------------
# Step 1: reformatters
# ----------------------------------------------------------------------------------------------------


class SampleError(ValueError):
    """A source sample cannot be converted; the message says why (reported per sample, never dropped)."""


def _text_field(sample: Mapping[str, Any], key: str) -> str:
    if key not in sample:
        raise SampleError(f"missing field {key!r} (fields: {', '.join(sorted(map(str, sample))) or 'none'})")
    value = sample[key]
    if not isinstance(value, str):
        raise SampleError(f"field {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise SampleError(f"field {key!r} is empty")
    return value


def sample_id(source: str, index: int) -> str:
    """``LongAlpaca_00012``: the sample id and frame folder name of the official scripts."""
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    return f"{source}_{index:05d}"


def fake_video_sample(sid: str, context: str, turns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The intermediate LLaVA-style "fake video" record (``*_chat_fake_vid.json`` of the release).

    ``turns`` alternate human, gpt; ``<video>\\n`` is put in front of the first human turn.
    """
    conversations = []
    for i, (question, answer) in enumerate(turns):
        conversations.append({"from": "human", "value": (f"{VIDEO_TOKEN}\n" if i == 0 else "") + question})
        conversations.append({"from": "gpt", "value": answer})
    return {"id": sid, "video": sid, "context": context, "conversations": conversations}


def reformat_longalpaca(sample: Mapping[str, Any], index: int) -> dict[str, Any]:
    """LongAlpaca (``context``, ``question``, ``answer``): the answer is kept verbatim."""
    context = _text_field(sample, "context")
    question = _text_field(sample, "question").strip()
    answer = _text_field(sample, "answer")
    return fake_video_sample(sample_id("LongAlpaca", index), context, [(question, answer)])


_GOLD_ID = re.compile(r"Gold\s+Document\s+ID\s*:\s*(\S+)", re.IGNORECASE)
_SHORT = re.compile(r"^\s*Answer\s*:\s*(.*?)\s*(?:Long\s+Answer\s*:|Gold\s+Document\s+ID\s*:|$)", re.I | re.S)


def parse_longqlora_answer(answer: str) -> tuple[str, str]:
    """Splits a LongQLoRA / NaturalQuestions answer "Answer: s Long Answer: l Gold Document ID: k" into (s, k)."""
    gold = _GOLD_ID.search(answer)
    short = _SHORT.search(answer)
    if gold is None or short is None or not short.group(1).strip():
        raise SampleError(
            "answer is not in the form 'Answer: ... Long Answer: ... Gold Document ID: k': "
            + repr(answer[:80])
        )
    return short.group(1).strip(), gold.group(1).strip().rstrip(".")


def reformat_longqlora(sample: Mapping[str, Any], index: int) -> dict[str, Any]:
    """LongQLoRA: the question gets the fixed suffix, the answer becomes ``"{short}\\nDocument ID: {k}"``."""
    context = _text_field(sample, "context")
    question = _text_field(sample, "question").strip()
    short, doc_id = parse_longqlora_answer(_text_field(sample, "answer"))
    return fake_video_sample(
        sample_id("LongQLoRA", index),
        context,
        [(f"{question}\n{LONGQLORA_SUFFIX}", f"{short}\nDocument ID: {doc_id}")],
    )


def reformat_conversation(
    sample: Mapping[str, Any], index: int, source: str = "Conversation"
) -> dict[str, Any]:
    """Any LLaVA-style record with a long ``context`` and ``conversations`` [{from: human|gpt, value}, ...].

    Turns must alternate human, gpt; a ``<video>`` placeholder is put in front of the first human turn
    when it has none.
    """
    context = _text_field(sample, "context")
    conversations = sample.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise SampleError("missing or empty field 'conversations' (a list of {from, value} turns)")
    if len(conversations) % 2:
        raise SampleError(f"'conversations' has {len(conversations)} turns; human and gpt turns must pair up")
    turns: list[tuple[str, str]] = []
    for i in range(0, len(conversations), 2):
        human, gpt = conversations[i], conversations[i + 1]
        for turn, role in ((human, "human"), (gpt, "gpt")):
            if (
                not isinstance(turn, Mapping)
                or turn.get("from") != role
                or not isinstance(turn.get("value"), str)
            ):
                raise SampleError(
                    f"turn {conversations.index(turn)} must be {{'from': {role!r}, 'value': str}}"
                )
        question = human["value"]
        if i == 0:
            question = question.replace(VIDEO_TOKEN, "").strip()
        turns.append((question, gpt["value"]))
    sid = str(sample["id"]) if isinstance(sample.get("id"), str | int) else sample_id(source, index)
    return fake_video_sample(sid, context, turns)


REFORMATTERS: dict[str, Callable[[Mapping[str, Any], int], dict[str, Any]]] = {
    "longalpaca": reformat_longalpaca,
    "longqlora": reformat_longqlora,
    "conversation": reformat_conversation,
}

# ----------------------------------------------------------------------------------------------------
# Step 2: the splitter
# ----------------------------------------------------------------------------------------------------


def split_tokens(tokens: Sequence[str], max_tokens: int = 115) -> list[str]:
    """Greedy chunks of at most ``max_tokens`` tokens, each joined with single spaces (``split_text_by_word_limit``).

    The official call uses 115 (its default argument is 90). Joining with spaces is why punctuation
    appears space-separated in the rendered frames, as in the release.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    return [" ".join(tokens[start : start + max_tokens]) for start in range(0, len(tokens), max_tokens)]


# ----------------------------------------------------------------------------------------------------
# Step 3: wrapping, layout and the overflow check
# ----------------------------------------------------------------------------------------------------


class Font:
    """The protocol :func:`wrap_words` and :func:`layout_chunk` need: ``getbbox(text) -> (l, t, r, b)``."""

    def getbbox(self, text: str) -> tuple[float, float, float, float]:  # pragma: no cover - protocol
        raise NotImplementedError


def wrap_words(text: str, font: Any, max_width: float) -> list[str]:
    """Greedy word wrap as the official ``text_wrap``: a word costs ``getbbox(word + ' ')[2]`` pixels.

    Difference: when the very first word is wider than ``max_width``, the official code emits an empty line
    first; an empty line has zero height and draws nothing, so it is omitted here (identical pixels).
    """
    lines: list[list[str]] = []
    current: list[str] = []
    width = 0.0
    for word in text.split():
        cost = font.getbbox(word + " ")[2]
        if width + cost <= max_width:
            current.append(word)
            width += cost
        else:
            if current:
                lines.append(current)
            current, width = [word], cost
    if current:
        lines.append(current)
    return [" ".join(line) for line in lines]


@dataclass(frozen=True)
class Layout:
    """Where each line of a chunk goes, and whether the chunk fits its canvas."""

    lines: tuple[str, ...]
    ys: tuple[float, ...]
    """Top y of each line (the official code draws line i at y0 + sum of the previous line heights)."""
    heights: tuple[float, ...]
    widths: tuple[float, ...]
    x: float
    canvas: tuple[int, int]
    max_width: float

    @property
    def text_height(self) -> float:
        return float(sum(self.heights))

    @property
    def overflow_height(self) -> bool:
        """The block is taller than the canvas: it starts above y = 0 and text is cut at both edges."""
        return self.text_height > self.canvas[1]

    @property
    def overflow_width(self) -> bool:
        """A line (a single word wider than the wrap width) runs past the right margin."""
        return any(w > self.max_width for w in self.widths)

    @property
    def overflow(self) -> bool:
        return self.overflow_height or self.overflow_width

    def reason(self) -> str:
        parts = []
        if self.overflow_height:
            parts.append(
                f"{len(self.lines)} lines, {self.text_height:.0f} px tall > canvas {self.canvas[1]} px"
            )
        if self.overflow_width:
            widest = max(range(len(self.widths)), key=self.widths.__getitem__)
            parts.append(
                f"line {self.lines[widest][:30]!r} is {self.widths[widest]:.0f} px > {self.max_width:.0f} px"
            )
        return "; ".join(parts)


def layout_chunk(text: str, font: Any, size: tuple[int, int] = (448, 448), margin: int = 20) -> Layout:
    """The official ``create_image_with_text`` geometry: wrap to ``width - 2 * margin``, x = margin,
    ``y0 = (height - sum(line heights)) / 2`` with line height ``getbbox(line)[3]`` (no extra leading)."""
    max_width = size[0] - 2 * margin
    lines = wrap_words(text, font, max_width)
    heights = tuple(float(font.getbbox(line)[3]) for line in lines)
    widths = tuple(float(font.getbbox(line)[2]) for line in lines)
    y = (size[1] - sum(heights)) / 2
    ys = []
    for h in heights:
        ys.append(y)
        y += h
    return Layout(tuple(lines), tuple(ys), heights, widths, float(margin), size, float(max_width))


def render_layout(layout: Layout, font: Any) -> Any:
    """Draws a :class:`Layout`: white RGB canvas, black text (a ``PIL.Image``)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", layout.canvas, "white")
    draw = ImageDraw.Draw(image)
    for line, y in zip(layout.lines, layout.ys, strict=True):
        draw.text((layout.x, y), line, font=font, fill="black")
    return image


def render_chunk(
    text: str, font: Any, size: tuple[int, int] = (448, 448), margin: int = 20
) -> tuple[Any, Layout]:
    """One frame and its layout (check ``layout.overflow`` before using the frame)."""
    layout = layout_chunk(text, font, size, margin)
    return render_layout(layout, font), layout


def frame_name(index: int) -> str:
    """``text_pic_00003.png``, the official frame file name."""
    return f"text_pic_{index:05d}.png"


# ----------------------------------------------------------------------------------------------------
# Step 5: filters
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterRule:
    """One base model's filter (``utils/preprocess/{minicpm,idefics}-filter.py``)."""

    max_frames: int
    """Drop a sample with more frames than this (90 MiniCPM-V, 65 Idefics3)."""
    tokens_per_frame: int
    """Visual tokens per frame in the budget (96 MiniCPM-V resampler queries, 169 Idefics3)."""
    max_tokens: int
    """Drop when text tokens + tokens_per_frame x frames exceed this (8192 MiniCPM-V, 10240 Idefics3)."""
    max_question_words: int
    """Drop when the first user turn, split on single spaces, has this many pieces or more (30 LongQLoRA,
    500 LongAlpaca); the official test is ``len(value.split(' ')) >= cap``."""

    def __post_init__(self) -> None:
        for name in ("max_frames", "tokens_per_frame", "max_tokens", "max_question_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"filter {name} must be >= 1, got {getattr(self, name)}")


FILTER_PRESETS: dict[str, dict[str, int]] = {
    "minicpm_v": {"max_frames": 90, "tokens_per_frame": 96, "max_tokens": 8192},
    "idefics3": {"max_frames": 65, "tokens_per_frame": 169, "max_tokens": 10240},
}
QUESTION_CAPS: dict[str, int] = {"LongQLoRA": 30, "LongAlpaca": 500}


def filter_rule(model: str, source: str) -> FilterRule:
    """The official rule for a base model (``minicpm_v`` | ``idefics3``) and a source (LongQLoRA | LongAlpaca)."""
    if model not in FILTER_PRESETS:
        raise ValueError(f"unknown base model {model!r}; one of {', '.join(FILTER_PRESETS)}")
    cap = QUESTION_CAPS.get(source, QUESTION_CAPS["LongAlpaca"])
    return FilterRule(max_question_words=cap, **FILTER_PRESETS[model])


def conversation_text(conversations: Sequence[Mapping[str, str]]) -> str:
    """What the official filter tokenizes: every turn's value joined by newlines (``<video>`` included)."""
    return "\n".join(turn["value"] for turn in conversations)


def filter_reasons(
    conversations: Sequence[Mapping[str, str]], n_frames: int, text_tokens: int, rule: FilterRule
) -> list[tuple[str, str]]:
    """Why a sample is dropped, as (code, message) pairs (empty: kept). The checks follow the official filter.

    Codes: ``frames``, ``video_placeholder``, ``question_words``, ``token_budget``.
    """
    reasons = []
    if n_frames > rule.max_frames:
        reasons.append(("frames", f"{n_frames} frames > cap {rule.max_frames}"))
    n_video = sum(turn["value"].count(VIDEO_TOKEN) for turn in conversations)
    if n_video != 1 or VIDEO_TOKEN not in conversations[0]["value"]:
        reasons.append(
            (
                "video_placeholder",
                f"{n_video} {VIDEO_TOKEN} placeholders; exactly one, in the first turn, is required",
            )
        )
    words = len(conversations[0]["value"].split(" "))
    if words >= rule.max_question_words:
        reasons.append(("question_words", f"question has {words} words >= cap {rule.max_question_words}"))
    total = text_tokens + rule.tokens_per_frame * n_frames
    if total > rule.max_tokens:
        reasons.append(
            (
                "token_budget",
                f"{text_tokens} text + {rule.tokens_per_frame} x {n_frames} frame tokens = {total} "
                f"> budget {rule.max_tokens}",
            )
        )
    return reasons


# ----------------------------------------------------------------------------------------------------
# Step 6: the multi-image writer
# ----------------------------------------------------------------------------------------------------


def placeholder(index: int) -> str:
    return f"<image_{index:02d}>"


def to_multi_image(conversations: Sequence[Mapping[str, str]], frame_paths: Sequence[str]) -> dict[str, Any]:
    """The MiniCPM-V multi-image record (also read by the Idefics3 fine-tune code).

    ``{"image": {"<image_00>": path, ...}, "conversations": [{"role": "user", "content":
    "<image_00>\\n<image_01>\\n...{question}"}, {"role": "assistant", "content": answer}, ...]}``: the
    ``<video>`` placeholder is removed, one placeholder per frame goes before the first question, and turns
    alternate user / assistant by position, as in the official filter.
    """
    if not frame_paths:
        raise SampleError("a sample needs at least one frame")
    prefix = "".join(placeholder(i) + "\n" for i in range(len(frame_paths)))
    turns = []
    for i, turn in enumerate(conversations):
        content = turn["value"]
        if i == 0:
            content = prefix + content.replace(VIDEO_TOKEN, "").strip()
        turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
    return {"image": {placeholder(i): str(p) for i, p in enumerate(frame_paths)}, "conversations": turns}


# ----------------------------------------------------------------------------------------------------
# Step 7: real-video frame sampling
# ----------------------------------------------------------------------------------------------------


def one_fps_indices(num_frames: int, fps: float, rate: float = 1.0) -> list[int]:
    """Frame indices of a ``rate`` frames-per-second extraction: the frame nearest each t = k / rate.

    Stands in for ``ffmpeg -vf fps=1`` (which also picks the nearest frame to each output tick; its count can
    differ by one at the end of a clip).
    """
    if num_frames < 1:
        return []
    if fps <= 0 or rate <= 0:
        raise ValueError(f"fps and rate must be > 0, got fps={fps}, rate={rate}")
    step = fps / rate
    out: list[int] = []
    k = 0
    while (index := int(round(k * step))) < num_frames:
        out.append(index)
        k += 1
    return out


def seq_frames(total: int, desired: int = 24) -> list[int]:
    """``get_seq_frames``: split [0, total - 1] into ``desired`` equal segments, take each middle index.

    With ``total <= desired`` every frame is kept (the official call passes ``min(total, 24)``).
    """
    if total < 1 or desired < 1:
        raise ValueError(f"total and desired must be >= 1, got {total}, {desired}")
    if total <= desired:
        return list(range(total))
    seg = (total - 1) / desired
    return [(int(np.round(seg * i)) + int(np.round(seg * (i + 1)))) // 2 for i in range(desired)]


# ----------------------------------------------------------------------------------------------------
# Step 9: the mixer
# ----------------------------------------------------------------------------------------------------


def mix_counts(total: int, synthetic_ratio: float, n_video_sources: int) -> tuple[int, list[int]]:
    """(synthetic, per video source) counts: ``round(total x ratio)`` synthetic, the rest split evenly over
    the video sources (the first sources take the remainder). 30K at 1/3 over 2 sources is 10K/10K/10K."""
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if not 0.0 <= synthetic_ratio <= 1.0:
        raise ValueError(f"synthetic_ratio must be in [0, 1], got {synthetic_ratio}")
    if n_video_sources < 1 and synthetic_ratio < 1.0:
        raise ValueError("at least one video source is needed when synthetic_ratio < 1")
    n_syn = int(round(total * synthetic_ratio))
    rest = total - n_syn
    if n_video_sources < 1:
        return n_syn, []
    base, extra = divmod(rest, n_video_sources)
    return n_syn, [base + (1 if i < extra else 0) for i in range(n_video_sources)]


def mix(
    synthetic: Sequence[Any],
    videos: Sequence[Sequence[Any]],
    total: int,
    synthetic_ratio: float,
    seed: int,
) -> list[Any]:
    """Seeded mix: draw (without replacement) the counts of :func:`mix_counts` from each pool, then shuffle.

    A pool smaller than its share is an error, never a silent shortfall.
    """
    n_syn, per_video = mix_counts(total, synthetic_ratio, len(videos))
    rng = np.random.default_rng(seed)
    chosen: list[Any] = []
    for name, pool, n in [("synthetic", synthetic, n_syn)] + [
        (f"video source {i}", pool, k) for i, (pool, k) in enumerate(zip(videos, per_video, strict=True))
    ]:
        if n > len(pool):
            raise ValueError(f"{name} has {len(pool)} samples; the mix needs {n}")
        chosen.extend(pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False))
    order = rng.permutation(len(chosen))
    return [chosen[int(i)] for i in order]
