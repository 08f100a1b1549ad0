"""Multiple-choice evaluation on data in the Video-MME folder layout, with this package's own small scorer
(notes §2.5; independent of ``paperzoo_videomme``).

Layout read here::

    <root>/videomme/test.json | test.jsonl | test-00000-of-00001.parquet (parquet needs pyarrow)
    <root>/video/<videoID>.mp4   (or data/, videos/; .mp4 .MP4 .mkv .webm .avi .mov)

One row per question with ``videoID``, ``duration``, ``question_id``, ``question``, ``options`` (strings
"A. ...") and ``answer`` (a letter). Frames: the 24 middle-of-segment frames (``get_seq_frames``) over the
whole clip, as in training. Prompt: question, options one per line, then "Answer with the option's letter
from the given choices directly." (no subtitles). Scoring: the official first step, exact match of the
option letter (:func:`extract_letter`); the paper's second step, an LLM judge for answers that name no
letter, is not implemented: such answers count as wrong and are reported as ``unmatched``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperzoo_shared.data import safe_join
from paperzoo_shared.errors import UserError

MCQ_SUFFIX = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCD"
ANNOTATIONS = ("videomme/test.json", "videomme/test.jsonl", "videomme/test-00000-of-00001.parquet")
VIDEO_DIRS = ("video", "data", "videos")
VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")
REQUIRED = ("videoID", "question_id", "question", "options", "answer")


@dataclass(frozen=True)
class Question:
    question_id: str
    video_id: str
    duration: str
    question: str
    options: tuple[str, ...]
    answer: str


def read_questions(root: str | Path) -> list[Question]:
    """The questions of a Video-MME-layout folder; a missing file or field is one error naming it."""
    root = Path(root)
    path = next((root / a for a in ANNOTATIONS if (root / a).is_file()), None)
    if path is None:
        raise UserError(f"no annotations under {root}: expected one of {', '.join(ANNOTATIONS)}")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise UserError(f"{path} needs pyarrow (or put a test.json beside it)") from err
        rows = pq.read_table(path).to_pylist()
    elif path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    else:
        rows = json.loads(path.read_text(encoding="utf-8"))
    questions = []
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise UserError(f"{path} row {i} has no field {missing[0]!r}")
        options = tuple(str(o) for o in row["options"])
        answer = str(row["answer"]).strip()
        if answer not in LETTERS[: len(options)]:
            raise UserError(f"{path} row {i}: answer {answer!r} is not an option letter")
        questions.append(
            Question(
                question_id=str(row["question_id"]),
                video_id=str(row["videoID"]),
                duration=str(row.get("duration", "")),
                question=str(row["question"]),
                options=options,
                answer=answer,
            )
        )
    return questions


def find_video(root: str | Path, video_id: str) -> Path:
    for folder in VIDEO_DIRS:
        for ext in VIDEO_EXTENSIONS:
            path = safe_join(root, f"{folder}/{video_id}{ext}", source=root, entry=video_id)
            if path.is_file():
                return path
    raise UserError(f"no video file for {video_id} under {root}/{{{','.join(VIDEO_DIRS)}}}/")


def prompt_text(question: Question) -> str:
    """The question, its options one per line, and the MCQ suffix (notes §2.5)."""
    return "\n".join([question.question, *question.options, MCQ_SUFFIX])


# ----------------------------------------------------------------------------------------------------
# the scorer
# ----------------------------------------------------------------------------------------------------


def extract_letter(response: str, options: Sequence[str] = ()) -> str | None:
    """The option letter an answer names, or ``None``.

    In order: the answer starts with a letter standing alone (``"B"``, ``"B."``, ``"(B) ..."``, ``"B: ..."``);
    the phrases "answer is B" / "option B" (any case for the phrase, an upper-case letter, so "the answer
    is a guess" names no option); the answer equals one option's text (without its "X. " prefix),
    ignoring case and a final full stop. Anything else is unmatched (the paper sends those to an LLM judge).
    """
    text = response.strip()
    letters = LETTERS[: len(options)] if options else LETTERS
    match = re.match(rf"^[\(\[]?([{letters}])(?:[\)\]\.:,]|\s|$)", text)
    if match:
        return match.group(1)
    match = re.search(rf"(?i:answer is|option)\s*[\(\[]?([{letters}])\b", text)
    if match:
        return match.group(1)
    norm = text.lower().rstrip(".").strip()
    for letter, option in zip(letters, options, strict=False):
        body = re.sub(rf"^{letter}[\.\)]\s*", "", option.strip())
        if norm and norm == body.lower().rstrip(".").strip():
            return letter
    return None


@dataclass(frozen=True)
class Scores:
    accuracy: float
    """Percent correct over all questions."""
    by_duration: dict[str, float]
    n: int
    unmatched: int


def score(items: Iterable[tuple[Question, str]]) -> Scores:
    """Accuracy (%) overall and per duration of (question, model answer) pairs."""
    hits: dict[str, list[int]] = defaultdict(list)
    total: list[int] = []
    unmatched = 0
    for question, response in items:
        letter = extract_letter(response, question.options)
        unmatched += letter is None
        hit = int(letter == question.answer)
        total.append(hit)
        hits[question.duration].append(hit)
    if not total:
        raise UserError("nothing to score")
    return Scores(
        accuracy=100.0 * sum(total) / len(total),
        by_duration={d: 100.0 * sum(v) / len(v) for d, v in sorted(hits.items())},
        n=len(total),
        unmatched=unmatched,
    )


# ----------------------------------------------------------------------------------------------------
# running a model
# ----------------------------------------------------------------------------------------------------


def video_frames(path: Path, n_frames: int = 24) -> list[Any]:
    """``n_frames`` middle-of-segment frames of the whole clip as PIL images."""
    from PIL import Image

    from paperzoo_shared.data import probe_video, read_frames
    from paperzoo_t2vid.modeling_t2vid import seq_frames

    info = probe_video(path)
    frames = read_frames(path, seq_frames(info.num_frames, n_frames))
    return [Image.fromarray(f) for f in frames]


def answer(model: Any, processor: Any, frames: Sequence[Any], text: str, max_new_tokens: int = 32) -> str:
    """Greedy generation (``max_new_tokens`` 32, as the Idefics3 eval) of an Idefics3-style model."""
    import torch

    from paperzoo_t2vid.train import chat_messages

    messages = chat_messages([{"role": "user", "content": text}], len(frames))
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[list(frames)] if frames else None, return_tensors="pt")
    # transformers 4.x tokenizers also return token_type_ids, which Idefics3's generate rejects
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    ).strip()


def evaluate(
    model: Any,
    processor: Any,
    root: str | Path,
    *,
    n_frames: int = 24,
    max_new_tokens: int = 32,
    limit: int = 0,
) -> tuple[Scores, list[dict[str, Any]]]:
    """Answer every question of the Video-MME-layout folder ``root`` and score the answers."""
    questions = read_questions(root)
    if limit > 0:
        questions = questions[:limit]
    cache: dict[str, list[Any]] = {}
    records: list[dict[str, Any]] = []
    pairs: list[tuple[Question, str]] = []
    for q in questions:
        if q.video_id not in cache:
            cache[q.video_id] = video_frames(find_video(root, q.video_id), n_frames)
        response = answer(model, processor, cache[q.video_id], prompt_text(q), max_new_tokens)
        pairs.append((q, response))
        records.append(
            {"question_id": q.question_id, "response": response, "pred": extract_letter(response, q.options)}
        )
    return score(pairs), records


def scores_dict(scores: Scores) -> Mapping[str, Any]:
    return {
        "accuracy": scores.accuracy,
        "by_duration": scores.by_duration,
        "n": scores.n,
        "unmatched": scores.unmatched,
    }
