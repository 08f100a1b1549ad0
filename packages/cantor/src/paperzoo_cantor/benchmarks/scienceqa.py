"""ScienceQA (Lu et al., NeurIPS 2022): the released format, the official scorer and answer extraction.

Release (lupantech/ScienceQA 2cbf831): ``data/scienceqa/problems.json`` (pid -> problem with ``question,
choices, answer (index), hint, image (file name or null), task, grade, subject, topic, category, skill,
lecture, solution, split``), ``pid_splits.json`` and images at ``<split>/<pid>/<image>``.

Scorer: ``tools/evaluate_acc.py`` (categories NAT/SOC/LAN by subject, TXT = has a hint, IMG = has an image,
NO = neither, G1-6 / G7-12 by grade, "%.2f", -1 for an empty category, the average over every result).
Extraction: ``models/run_gpt3.py`` (``The answer is ([A-Z]).`` must match exactly once, else "FAILED",
and then ``get_pred_idx`` picks a *random* option index; here the random generator is explicit and seeded).
Cantor's own matching code is unreleased, so an option matcher for its ``Answer: ...`` format is added.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperzoo_shared.data import DataError, safe_join

OPTIONS = ("A", "B", "C", "D", "E")
TEST_SIZE = 4241
"""The official scorer asserts exactly this many results."""

GRADES_1_6 = tuple(f"grade{i}" for i in range(1, 7))
GRADES_7_12 = tuple(f"grade{i}" for i in range(7, 13))
CATEGORIES = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg")
"""Table 1's columns, in order."""
IMG_CATEGORIES = ("NAT", "SOC", "LAN", "G1-6", "G7-12", "Avg")
"""Table 2's columns (the image subset)."""


@dataclass(frozen=True)
class ScienceQAItem:
    pid: str
    question: str
    choices: tuple[str, ...]
    answer: int
    hint: str
    image: Path | None
    subject: str
    grade: str
    raw: Mapping[str, Any]


def load_scienceqa(
    root: str | Path, split: str = "test", image_only: bool = False, limit: int | None = None
) -> list[ScienceQAItem]:
    """Reads ``<root>/problems.json`` and ``<root>/pid_splits.json``; images from
    ``<root>/images/<split>/<pid>/<image>`` (tools/download.sh's layout; ``<root>/<split>/...`` when there
    is no ``images`` folder), joined with
    :func:`safe_join`. ``image_only`` keeps the problems with an image (Table 2's IMG subset)."""
    root = Path(root)
    problems_path, splits_path = root / "problems.json", root / "pid_splits.json"
    for path in (problems_path, splits_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"ScienceQA file not found: {path} (expected data/scienceqa/ of the release)"
            )
    problems = _read_json(problems_path)
    splits = _read_json(splits_path)
    if split not in splits:
        raise DataError(f"{splits_path}: no split {split!r} (has {', '.join(sorted(splits))})")
    image_root = root / "images" / split if (root / "images").is_dir() else root / split
    items: list[ScienceQAItem] = []
    for pid in splits[split]:
        pid = str(pid)
        if pid not in problems:
            raise DataError(f"{splits_path}: pid {pid!r} of split {split!r} is not in {problems_path}")
        p = problems[pid]
        try:
            choices = tuple(str(c) for c in p["choices"])
            answer = int(p["answer"])
            image_name = p.get("image")
            item = ScienceQAItem(
                pid=pid,
                question=str(p["question"]),
                choices=choices,
                answer=answer,
                hint=str(p.get("hint") or ""),
                image=safe_join(image_root, Path(pid) / image_name, source=problems_path, entry=pid)
                if image_name
                else None,
                subject=str(p["subject"]),
                grade=str(p["grade"]),
                raw=p,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{problems_path}: problem {pid!r} is malformed ({error!r})") from error
        if not 0 <= answer < len(choices):
            raise DataError(
                f"{problems_path}: problem {pid!r} has answer {answer} for {len(choices)} choices"
            )
        if image_only and item.image is None:
            continue
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error


# ----------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------


def choice_text(choices: Sequence[str]) -> str:
    """``(A) x (B) y``, as the release's ``get_choice_text``."""
    return " ".join(f"({OPTIONS[i]}) {c}" for i, c in enumerate(choices))


def context_text(item: ScienceQAItem, caption: str = "") -> str:
    """The hint and the caption joined by a space, ``N/A`` when both are empty (``get_context_text``)."""
    context = " ".join([item.hint, caption]).strip()
    return context or "N/A"


def cantor_query(item: ScienceQAItem, caption: str = "", with_context: bool = True) -> str:
    """What follows "Question: " in Cantor's decision and synthesis calls.

    The demo passes the bare question; a benchmark needs the options, so we add the release's
    ``Context:`` and ``Options:`` lines (a choice, documented in the README).
    """
    if not with_context:
        return item.question
    return f"{item.question}\nContext: {context_text(item, caption)}\nOptions: {choice_text(item.choices)}"


def qcm_prompt(item: ScienceQAItem, caption: str = "") -> str:
    """Zero-shot ``QCM-A`` prompt of the release's ``create_one_example`` (test example form)."""
    text = f"Question: {item.question}\nContext: {context_text(item, caption)}\nOptions: {choice_text(item.choices)}\nAnswer:"
    return text.replace("  ", " ").strip()


# ----------------------------------------------------------------------------------------------------
# Answer extraction
# ----------------------------------------------------------------------------------------------------

_OFFICIAL = re.compile(r"The answer is ([A-Z]).")


def extract_official(output: str) -> str:
    """``run_gpt3.get_gpt3_result``: the letter if ``The answer is ([A-Z]).`` matches exactly once.

    The ``.`` is any character, so "The answer is B" at the very end does *not* match.
    """
    found = _OFFICIAL.findall(output)
    return found[0] if len(found) == 1 else "FAILED"


def pred_index(prediction: str, n_choices: int, rng: random.Random) -> int:
    """``run_gpt3.get_pred_idx``: the letter's index, else a random option index from ``rng``."""
    if prediction in OPTIONS[:n_choices]:
        return OPTIONS.index(prediction)
    return rng.choice(range(n_choices))


_LETTER = re.compile(r"^\(?([A-E])\)?(?:[.:)\s]|$)")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s/%:.-]", " ", text.lower()).split()).strip(" .")


def match_option(answer: str, choices: Sequence[str]) -> int | None:
    """Our matcher for a Cantor answer field (``Answer: <answer>``): a letter ``B``/``(B)``/``B. text``
    in range, else the choice whose text equals the answer (case and punctuation ignored), else the one
    choice whose text the answer contains (the longest when several do). None when nothing matches."""
    answer = answer.strip().strip("*").strip()
    letter = _LETTER.match(answer)
    if letter and OPTIONS.index(letter.group(1)) < len(choices):
        return OPTIONS.index(letter.group(1))
    norm = _norm(answer)
    normed = [_norm(c) for c in choices]
    for i, c in enumerate(normed):
        if c and c == norm:
            return i
    contained = [i for i, c in enumerate(normed) if c and re.search(rf"(?<!\w){re.escape(c)}(?!\w)", norm)]
    if contained:
        return max(contained, key=lambda i: len(normed[i]))
    return None


# ----------------------------------------------------------------------------------------------------
# The official scorer (tools/evaluate_acc.py)
# ----------------------------------------------------------------------------------------------------


def _flags(problem: Mapping[str, Any]) -> dict[str, bool]:
    hint, image = problem.get("hint"), problem.get("image")
    return {"has_text": bool(hint), "has_image": bool(image), "no_context": not hint and not image}


def _acc(selected: list[bool]) -> float | int:
    if not selected:
        return -1
    return round(100.0 * sum(selected) / len(selected), 10)


def score(
    problems: Mapping[str, Mapping[str, Any]],
    predictions: Mapping[str, int],
    *,
    require_full_test: bool = False,
    split: str | None = "test",
) -> dict[str, float]:
    """Accuracy (%) per Table 1 category, as ``evaluate_acc.get_scores``.

    ``problems``: pid -> problem (problems.json); ``predictions``: pid -> predicted index. Categories
    are computed over the problems of ``split`` that have a prediction (the official script requires all
    4,241 test problems; pass ``require_full_test=True`` for that check). ``Avg`` divides by the number of
    predictions, as the official script does. A category with no problems is ``-1`` (official). Values
    are unrounded; the official script prints them with "%.2f".
    """
    if require_full_test and len(predictions) != TEST_SIZE:
        raise ValueError(f"the official scorer needs {TEST_SIZE} test predictions, got {len(predictions)}")
    rows = []
    for pid, pred in predictions.items():
        if pid not in problems:
            raise KeyError(f"prediction for unknown pid {pid!r}")
        problem = problems[pid]
        if split is not None and problem.get("split", split) != split:
            continue
        rows.append((problem, int(pred) == int(problem["answer"])))

    def acc(cond: Any) -> float | int:
        return _acc([ok for p, ok in rows if cond(p)])

    result = {
        "NAT": acc(lambda p: p["subject"] == "natural science"),
        "SOC": acc(lambda p: p["subject"] == "social science"),
        "LAN": acc(lambda p: p["subject"] == "language science"),
        "TXT": acc(lambda p: _flags(p)["has_text"]),
        "IMG": acc(lambda p: _flags(p)["has_image"]),
        "NO": acc(lambda p: _flags(p)["no_context"]),
        "G1-6": acc(lambda p: p["grade"] in GRADES_1_6),
        "G7-12": acc(lambda p: p["grade"] in GRADES_7_12),
        "Avg": 100.0 * sum(ok for _, ok in rows) / len(predictions) if predictions else -1,
    }
    return {k: float(v) for k, v in result.items()}


def score_items(items: Iterable[ScienceQAItem], predictions: Mapping[str, int]) -> dict[str, float]:
    """:func:`score` over loaded items (their split is the one they were loaded from)."""
    problems = {it.pid: {**it.raw, "split": None} for it in items}
    return score(problems, predictions, split=None)
