"""The Video-MME evaluation protocol in one file: what the paper (and its official scripts) define.

Video-MME is a benchmark, so its "model" is the protocol every evaluated model goes through:

1. the exact category strings (§1.1 of the notes; the keys every scorer uses),
2. frame sampling (official: the middle frame of k equal segments, from ``look4u-ok/video-slicer``;
   lmms-eval's models: ``linspace`` with both ends; VLMEvalKit: k interior points; fps sampling),
3. subtitle alignment (official: the subtitle shown at each sampled frame; lmms-eval's variant),
4. the prompt (the README's template with and without subtitles, and the lmms-eval / VLMEvalKit variants),
5. answer extraction (the official regex bug for bug, in both released versions, and the stricter
   lmms-eval and VLMEvalKit extractors).

Scoring (denominators, breakdowns, the results file) is in :mod:`paperzoo_videomme.scoring`.
Every function here is pure Python/numpy and is written from the behaviour of the official code, not
copied from it; the module docstrings of each section say which source and commit they follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysubs2

from paperzoo_shared.data.errors import DataError, require_file

# ----------------------------------------------------------------------------------------------------
# 1. Constants (paper §3.1 / Fig. 2; the strings of the official scorer thanku-all/parse_answer@afd52cf)
# ----------------------------------------------------------------------------------------------------

DURATIONS: tuple[str, ...] = ("short", "medium", "long")
"""Duration buckets: short < 2 min, medium 4-15 min, long 30-60 min."""

DOMAIN_SUB_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Knowledge": (
        "Humanity & History",
        "Literature & Art",
        "Biology & Medicine",
        "Finance & Commerce",
        "Astronomy",
        "Geography",
        "Law",
        "Life Tip",
        "Technology",
    ),
    "Film & Television": ("Animation", "Movie & TV Show", "Documentary", "News Report"),
    "Sports Competition": ("Esports", "Basketball", "Football", "Athletics", "Other Sports"),
    "Artistic Performance": ("Stage Play", "Magic Show", "Variety Show", "Acrobatics", "Handicraft"),
    "Life Record": ("Food", "Fashion", "Daily Life", "Travel", "Pet & Animal", "Exercise"),
    "Multilingual": ("Multilingual",),
}
"""The 6 domains and their 30 sub-categories (9 + 4 + 5 + 5 + 6 + 1)."""

DOMAINS: tuple[str, ...] = tuple(DOMAIN_SUB_CATEGORIES)
SUB_CATEGORIES: tuple[str, ...] = tuple(s for subs in DOMAIN_SUB_CATEGORIES.values() for s in subs)
TASK_TYPES: tuple[str, ...] = (
    "Temporal Perception",
    "Spatial Perception",
    "Attribute Perception",
    "Action Recognition",
    "Object Recognition",
    "OCR Problems",
    "Counting Problem",  # singular in every scorer; the paper's radar figure says "Counting Problems"
    "Temporal Reasoning",
    "Spatial Reasoning",
    "Action Reasoning",
    "Object Reasoning",
    "Information Synopsis",
)
OPTION_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")

# ----------------------------------------------------------------------------------------------------
# 2. Frame sampling
# ----------------------------------------------------------------------------------------------------


def _check_counts(num_frames: int, k: int) -> None:
    if num_frames < 1:
        raise ValueError(f"the video has {num_frames} frames; a video needs at least one frame.")
    if k < 1:
        raise ValueError(f"asked for {k} frames; ask for at least one.")


def official_midpoint_indices(num_frames: int, k: int) -> list[int]:
    """The official slicer's frames (``look4u-ok/video-slicer@aff7000``, ``get_seq_frames``).

    The span ``[0, N-1]`` is cut into ``k`` segments of length ``(N-1)/k``; segment ``i`` runs from
    ``round(i*seg)`` to ``round((i+1)*seg)`` (round half to even, as numpy rounds) and contributes the
    integer midpoint ``(start + end) // 2``. Repeats are possible when ``k > N``.
    """
    _check_counts(num_frames, k)
    segment = float(num_frames - 1) / k
    bounds = [round(segment * i) for i in range(k + 1)]  # Python's round is half-to-even, like np.round
    return [(bounds[i] + bounds[i + 1]) // 2 for i in range(k)]


def linspace_indices(num_frames: int, k: int) -> list[int]:
    """lmms-eval's model-side sampling: ``np.linspace(0, N-1, k, dtype=int)`` (both ends included)."""
    _check_counts(num_frames, k)
    return np.linspace(0, num_frames - 1, k, dtype=int).tolist()


def vlmeval_interior_indices(num_frames: int, k: int) -> list[int]:
    """VLMEvalKit's ``nframe`` mode: ``int(i * N / (k + 1))`` for ``i = 1..k`` (both ends excluded)."""
    _check_counts(num_frames, k)
    step = num_frames / (k + 1)
    return [int(i * step) for i in range(1, k + 1)]


def fps_indices(
    num_frames: int, video_fps: float, target_fps: float, max_frames: int | None = None
) -> list[int]:
    """Frames at ``target_fps`` (VLMEvalKit's ``fps`` mode), optionally capped.

    ``int(i * video_fps / target_fps)`` for ``i < int(duration * target_fps)`` with ``duration = N /
    video_fps``. The leaderboard's caps (GPT-4o 384, Qwen2-VL 768 frames) replace a longer list by
    ``max_frames`` uniform (linspace) frames. A video shorter than one step gets its first frame.
    """
    _check_counts(num_frames, 1)
    if not video_fps > 0 or not target_fps > 0:
        raise ValueError(
            f"fps sampling needs positive frame rates, got video {video_fps}, target {target_fps}."
        )
    count = int(num_frames / video_fps * target_fps)
    step = video_fps / target_fps
    indices = [min(int(i * step), num_frames - 1) for i in range(count)] or [0]
    if max_frames is not None and len(indices) > max_frames:
        return linspace_indices(num_frames, max_frames)
    return indices


FRAME_SAMPLERS: dict[str, str] = {
    "official": "middle frame of k equal segments (look4u-ok/video-slicer)",
    "lmms_eval": "np.linspace(0, N-1, k, dtype=int), both ends (lmms-eval models)",
    "vlmevalkit": "int(i*N/(k+1)) for i=1..k (VLMEvalKit nframe mode)",
    "fps": "int(i*video_fps/target_fps), optionally capped by linspace (VLMEvalKit fps mode, leaderboard)",
}


def sample_frame_indices(
    sampler: str,
    num_frames: int,
    *,
    k: int = 8,
    video_fps: float | None = None,
    target_fps: float = 1.0,
    max_frames: int | None = None,
) -> list[int]:
    """Frame indices by the sampler's name (one of :data:`FRAME_SAMPLERS`)."""
    if sampler == "official":
        return official_midpoint_indices(num_frames, k)
    if sampler == "lmms_eval":
        return linspace_indices(num_frames, k)
    if sampler == "vlmevalkit":
        return vlmeval_interior_indices(num_frames, k)
    if sampler == "fps":
        if video_fps is None:
            raise ValueError("the 'fps' sampler needs the video's frame rate (video_fps).")
        return fps_indices(num_frames, video_fps, target_fps, max_frames)
    raise ValueError(f"unknown frame sampler {sampler!r}; choose one of {', '.join(FRAME_SAMPLERS)}.")


# ----------------------------------------------------------------------------------------------------
# 3. Subtitles
#
# The official slicer (and VLMEvalKit) read .srt files with pysubs2 and take, for each sampled frame,
# the text of the first cue with start < t < end (strict, in milliseconds, t from pysubs2.make_time).
# lmms-eval has its own reader and a frame-unit, half-open, de-duplicated variant. Both are below.
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubtitleCue:
    """One SubRip cue as pysubs2 holds it: times in integer milliseconds, text with ``\\N`` line breaks
    and SubStation tags (``{\\i1}``) in place of ``<i>``/``<b>``/``<u>``/``<s>``; other HTML tags removed."""

    start_ms: int
    end_ms: int
    text: str


def parse_srt(content: str) -> list[SubtitleCue]:
    """Parse SubRip text with pysubs2, the reader of the official slicer (and of VLMEvalKit).

    Cues keep the file's order; texts are pysubs2's (``\\N`` line breaks, SubStation style tags).
    """
    subtitles = pysubs2.SSAFile.from_string(content, format_="srt")
    return [SubtitleCue(event.start, event.end, event.text) for event in subtitles.events]


def read_srt_text(path: str | Path) -> str:
    """The text of a subtitle file (UTF-8, universal newlines); errors name the file and the fix."""
    path = require_file(path, "subtitle")
    try:
        with open(path, encoding="utf-8") as handle:  # universal newlines, like pysubs2.load
            return handle.read()
    except UnicodeDecodeError as err:
        raise DataError(f"subtitle file {path} is not UTF-8 ({err}); convert it to UTF-8.") from None


def read_srt(path: str | Path) -> list[SubtitleCue]:
    """Read a .srt file with pysubs2 (see :func:`parse_srt`)."""
    return parse_srt(read_srt_text(path))


def frame_time_ms(frame: int, fps: float) -> int:
    """``pysubs2.make_time(frames=frame, fps=fps)``: ``round(frame * 1000 / fps)`` milliseconds."""
    if not fps > 0:
        raise ValueError(f"frame rate must be positive, got {fps}.")
    return int(round(frame * (1000 / fps)))


def official_subtitle_lines(
    cues: Sequence[SubtitleCue], frame_indices: Sequence[int], fps: float
) -> list[str]:
    """The official slicer's subtitles for the sampled frames (also VLMEvalKit's).

    For each frame, in order: the text of the first cue (file order) with ``start < t < end`` (both
    strict), ``\\N`` replaced by a space. Frames that hit no cue, or a cue whose text is blank, add
    nothing; a cue hit by several frames is repeated once per frame.
    """
    lines = []
    for frame in frame_indices:
        t = frame_time_ms(int(frame), fps)
        text = next((cue.text.replace("\\N", " ") for cue in cues if cue.start_ms < t < cue.end_ms), "")
        if text.strip():
            lines.append(text)
    return lines


# lmms-eval (tasks/videomme/utils.py @75571cfe) reads .srt itself.
LMMS_EVAL_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')
LMMS_EVAL_NO_SUBTITLES = "No subtitles available"


def lmms_eval_parse_srt(content: str) -> list[tuple[float, float, str]]:
    """lmms-eval's reader: blocks split on blank lines, timing on the block's second line, text lines
    joined with a space, cues keyed by ``(start, end)`` so a repeated timing keeps only the last text."""
    by_timing: dict[tuple[float, float], str] = {}
    for block in content.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        if len(lines) < 3:
            continue
        start_text, end_text = lines[1].split(" --> ")
        by_timing[(_lmms_seconds(start_text), _lmms_seconds(end_text))] = " ".join(lines[2:])
    return [(start, end, text) for (start, end), text in by_timing.items()]


def _lmms_seconds(text: str) -> float:
    hours, minutes, rest = text.split(":")
    seconds, millis = rest.split(",")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def lmms_eval_subtitle_lines(content: str, total_frames: int, fps: float, frame_num: int = 32) -> list[str]:
    """lmms-eval's ``videomme_w_subtitle`` subtitles.

    Differences from the official rule: the frames are ``linspace(0, N-1, frame_num)`` with ``frame_num``
    from the task (32; 768 for llava_vid and qwen3_vl), whatever the model sees; cue bounds become frames
    by ``int(seconds * fps)`` and the test is half-open, ``start <= f < end``; the matched cues are
    de-duplicated with ``list(set(...))``; each cue contributes only the first
    ``<font color="white" size=".72c">...</font>`` match, and cues without one are dropped.
    ``frame_num = -1`` means every frame.
    """
    cues = [(int(start * fps), int(end * fps), text) for start, end, text in lmms_eval_parse_srt(content)]
    if frame_num == -1:
        frame_num = total_frames
    frames = np.linspace(0, total_frames - 1, frame_num, dtype=int).tolist()
    hits = [index for frame in frames for index, (start, end, _) in enumerate(cues) if start <= frame < end]
    lines = []
    for index in list(set(hits)):  # the same de-duplication as lmms-eval, so the same (CPython) order
        match = LMMS_EVAL_FONT.findall(cues[index][2])
        if match:
            lines.append(match[0])
    return lines


def full_subtitle_lines(content: str) -> list[str]:
    """Every subtitle line of the file (lmms-eval's ``gemini_api_flag: "full subtitle"``, the setting of
    the paper's Gemini rows): the first ``<font ...>`` match of each line of the file."""
    return [match[0] for line in content.splitlines(keepends=True) if (match := LMMS_EVAL_FONT.findall(line))]


SUBTITLE_MODES: dict[str, str] = {
    "none": "no subtitles (the paper's 'w/o subs' columns)",
    "official": "the subtitle at each sampled frame (official slicer; also VLMEvalKit)",
    "lmms_eval": "lmms-eval: subtitles at linspace(32) frames, half-open, de-duplicated, <font> text only",
    "full": "the whole subtitle file (Gemini rows; lmms-eval 'full subtitle')",
}

# ----------------------------------------------------------------------------------------------------
# 4. Prompts
# ----------------------------------------------------------------------------------------------------

OFFICIAL_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
OFFICIAL_SUBTITLE_HEADER = "This video's subtitles are listed below:"
OFFICIAL_ANSWER_CUE = "The best answer is:"
LMMS_EVAL_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
LMMS_EVAL_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
VLMEVALKIT_NOSUB = (
    "\nThese are the frames of a video. "
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option.\n"
)
VLMEVALKIT_SUB = (
    "\nThese are the frames of a video. This video's subtitles are listed below:\n{}\n"
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option.\n"
)

PROMPT_STYLES: dict[str, str] = {
    "official": "the README template: [subtitle block] instruction, question, options, 'The best answer is:'",
    "lmms_eval": "lmms-eval's videomme / videomme_w_subtitle doc_to_text (default model kwargs)",
    "vlmevalkit": "VLMEvalKit's VideoMME.build_prompt text (its two text messages concatenated)",
}


def build_prompt(
    style: str,
    question: str,
    options: Sequence[str],
    subtitles: Sequence[str] | None = None,
    *,
    post_prompt: str | None = None,
) -> str:
    """The text prompt of one question. Frames go before the text (see the adapters).

    Args:
        style: one of :data:`PROMPT_STYLES`.
        question: the question text.
        options: the four options, already prefixed ``"A. "`` .. ``"D. "`` as in the release.
        subtitles: ``None`` for the no-subtitle setting, else the subtitle lines (possibly empty).
            The official style omits the subtitle block when there are no lines (a video without an .srt:
            744 of the 900 videos have one); lmms-eval writes "No subtitles available" only when the
            .srt file is missing (pass ``[LMMS_EVAL_NO_SUBTITLES]``), and VLMEvalKit keeps an empty block.
        post_prompt: lmms-eval's model-specific ``post_prompt`` for the no-subtitle task (default
            :data:`LMMS_EVAL_POST_PROMPT`; ``"The best answer is:"`` for llava_vid).
    """
    option_block = "\n".join(options)
    if style == "official":
        body = f"{OFFICIAL_INSTRUCTION}\n{question}\n{option_block}\n{OFFICIAL_ANSWER_CUE}"
        if subtitles:
            return OFFICIAL_SUBTITLE_HEADER + "\n" + "\n".join(subtitles) + "\n" + body
        return body
    if style == "lmms_eval":
        if subtitles is None:
            post = LMMS_EVAL_POST_PROMPT if post_prompt is None else post_prompt
            return f"{LMMS_EVAL_INSTRUCTION}\n{question}\n{option_block}\n{post}"
        return (
            OFFICIAL_SUBTITLE_HEADER + " \n" + "\n".join(subtitles) + "\n"
            f"{LMMS_EVAL_INSTRUCTION}\n{question}\n{option_block}\n{OFFICIAL_ANSWER_CUE}"
        )
    if style == "vlmevalkit":
        head = VLMEVALKIT_NOSUB if subtitles is None else VLMEVALKIT_SUB.format("\n".join(subtitles))
        return head + f"Question: {question}\n{option_block}\nAnswer: "
    raise ValueError(f"unknown prompt style {style!r}; choose one of {', '.join(PROMPT_STYLES)}.")


# ----------------------------------------------------------------------------------------------------
# 5. Answer extraction
# ----------------------------------------------------------------------------------------------------

# The official prefix lists, with their two missing commas kept: Python joins the adjacent string
# literals, so "The best option is", "The correct option is", "Best answer:" and "Best option:" are
# never removed on their own (notes §1.3).
OFFICIAL_PREFIXES_2024_06: tuple[str, ...] = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is" + "The correct option is",
    "Best answer:" + "Best option:",
)
"""``BradyFU/Video-MME@4e7566d`` (2024-06-03 to 06-18)."""
OFFICIAL_PREFIXES: tuple[str, ...] = (
    *OFFICIAL_PREFIXES_2024_06,
    "Answer:",
    "Option:",
    "The correct answer",
    "The correct option",
)
"""``thanku-all/parse_answer@afd52cf``: the scorer the Video-MME README links today."""
VLMEVALKIT_PREFIXES: tuple[str, ...] = (*OFFICIAL_PREFIXES_2024_06, "Answer:", "Option:")
"""``vlmeval/dataset/utils/videomme.py`` (both the 2024-07 and the current version)."""

_FIRST_LETTER = re.compile(r"[ABCD]")


def regex_extract(response: str, prefixes: Sequence[str] = OFFICIAL_PREFIXES) -> str:
    """The official ``extract_characters_regex``: strip, delete every occurrence of each prefix in order,
    then the first upper-case A/B/C/D anywhere, or ``""``.

    The official "more than 10 words and no letter" rule is kept as a comment only: when no letter is
    present the search fails anyway, so the rule never changes the result.
    """
    text = response.strip()
    for prefix in prefixes:
        text = text.replace(prefix, "")
    match = _FIRST_LETTER.search(text)
    return match.group(0) if match else ""


_MCQ_PHRASES: tuple[str, ...] = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
    "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)  # fmt: skip
_MCQ_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4,
                 "right_paren": 3, "space": 2, "fallback": 0}  # fmt: skip


def lmms_eval_extract(response: str, choices: Sequence[str] = OPTION_LETTERS) -> str:
    """lmms-eval's current extractor (``_task_utils/mcq_extract.extract_mcq_answer``, since 2026-04-11).

    Collects candidate letters in several formats, each at its **last** occurrence, and returns the one of
    the highest-priority format (ties: the later position, then the first found): a bare letter at the
    start (10) or end (9), after an answer phrase (7), ``(X)`` (6), ``X.`` (5), ``X:`` (4), ``X)`` (3),
    ``X `` (2), and, only if nothing else matched, any occurrence (0).
    """
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in (",", ".", "!", "?", ";", ":", "'", '"'):  # stripped one after another, in this order
        text = text.strip(char)
    text = f" {text} "
    found: list[tuple[str, int, str]] = []
    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"),
                         ("right_paren", "{})"), ("space", "{} ")):  # fmt: skip
        for letter in choices:
            position = text.rfind(pattern.format(letter))
            if position >= 0:
                found.append((letter, position, fmt))
    lowered = text.lower()
    for phrase in _MCQ_PHRASES:
        at = lowered.find(phrase)
        if at >= 0:
            for letter in choices:
                position = text.find(letter, at + len(phrase))
                if position >= 0:
                    found.append((letter, position, "phrase"))
    core = text.strip()
    for letter in choices:
        if core.startswith(letter) and (len(core) == 1 or not core[1].isalpha()):
            found.append((letter, 0, "start"))
    for letter in choices:
        if core.endswith(letter) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((letter, len(text) - 1, "end"))
    if not found:
        found = [(letter, text.rfind(letter), "fallback") for letter in choices if letter in text]
    if not found:
        return ""
    # stable sort, descending: equal keys keep the order in which they were found
    found.sort(key=lambda c: (_MCQ_PRIORITY[c[2]], c[1]), reverse=True)
    return found[0][0]


_VLMEVAL_VERBOSE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
_VLMEVAL_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)


def vlmevalkit_choices_from_question(question: str) -> dict[str, str]:
    """VLMEvalKit's ``extract_option`` rebuilds the options from the lines after the first line of the
    ``question`` field, which in its TSV holds no options: for Video-MME this is normally empty."""
    choices = {}
    for position, line in enumerate(question.split("\n")[1:]):
        letter = chr(ord("A") + position)
        tag = letter + "."
        if tag in line:
            choices[letter] = line[line.find(tag) + len(tag) :].strip(". \n")
    return choices


def vlmevalkit_can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's rule-based matcher (``can_infer``: option letter, then option text); ``None`` if it
    cannot decide. With ``exact_matching`` the caller maps ``None`` to ``"Z"`` (wrong)."""
    return _vlmevalkit_option(answer, choices) or _vlmevalkit_text(answer, choices)


def _vlmevalkit_option(answer: str, choices: Mapping[str, str]) -> str | None:
    if "Failed to obtain answer via API" in answer:
        return None
    if any(refusal in answer for refusal in _VLMEVAL_REFUSALS):
        return "Z"
    spaced = answer
    for char in ".()[],:;!*#{}":
        spaced = spaced.replace(char, " ")
    words = [w.strip() for w in spaced.split()]
    present = [c for c in choices if c in words]
    if len(present) == 1:
        letter = present[0]
        if words.index(letter) > len(words) - 5:
            return letter
    elif not present and sum(token in words for token in ("Z", "")) == 1:
        return "Z"
    verbose = _VLMEVAL_VERBOSE.search(answer)
    if verbose and verbose.group(1).upper() in choices:
        return verbose.group(1).upper()
    return None


def _vlmevalkit_text(answer: str, choices: Mapping[str, str]) -> str | None:
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    hits = [k for k, v in choices.items() if str(v).lower() in lowered]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True)
class Extractor:
    """An answer extractor and what its scorer does with a response it cannot parse."""

    name: str
    description: str
    extract: Callable[[str, Mapping[str, object]], str]
    """``(response, question record) -> letter``, ``""`` when nothing was found."""


def _official(prefixes: Sequence[str]) -> Callable[[str, Mapping[str, object]], str]:
    return lambda response, record: regex_extract(response, prefixes)


def _vlmevalkit(response: str, record: Mapping[str, object]) -> str:
    letter = regex_extract(response, VLMEVALKIT_PREFIXES)
    if letter:
        return letter
    return (
        vlmevalkit_can_infer(response, vlmevalkit_choices_from_question(str(record.get("question", ""))))
        or "Z"
    )


EXTRACTORS: dict[str, Extractor] = {
    "official": Extractor("official", "official regex, parse_answer@afd52cf", _official(OFFICIAL_PREFIXES)),
    "official_2024_06": Extractor(
        "official_2024_06", "official regex, BradyFU/Video-MME@4e7566d", _official(OFFICIAL_PREFIXES_2024_06)
    ),
    "lmms_eval": Extractor(
        "lmms_eval", "lmms-eval extract_mcq_answer", lambda r, record: lmms_eval_extract(r)
    ),
    "lmms_eval_legacy": Extractor(
        "lmms_eval_legacy",
        "lmms-eval before 2026-04-11 (official regex copy)",
        _official(OFFICIAL_PREFIXES_2024_06),
    ),
    "vlmevalkit": Extractor(
        "vlmevalkit", "VLMEvalKit regex, then can_infer; 'Z' under exact_matching", _vlmevalkit
    ),
    "vlmevalkit_2024_07": Extractor(
        "vlmevalkit_2024_07", "VLMEvalKit PR #270 (2024-07-10) regex", _official(VLMEVALKIT_PREFIXES)
    ),
}


def extract_answer(
    response: str, extractor: str = "official", record: Mapping[str, object] | None = None
) -> str:
    """The letter ``extractor`` (a name of :data:`EXTRACTORS`) finds in ``response``, ``""`` if none."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}.")
    return EXTRACTORS[extractor].extract(
        response if isinstance(response, str) else str(response), record or {}
    )
