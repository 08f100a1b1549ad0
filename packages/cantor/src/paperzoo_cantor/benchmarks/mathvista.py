"""MathVista (Lu et al., ICLR 2024) testmini: the released format, answer extraction and the official scorer.

Release (lupantech/MathVista 53d5258): ``data/testmini.json`` (pid -> problem with ``question, image
("images/<pid>.jpg"), choices, unit, precision, answer (a string), question_type (multi_choice |
free_form), answer_type (text | integer | float | list), pid, metadata{split, language, source, category,
task, context, grade, skills[]}``) and ``data/query.json`` (pid -> the prompt); the Hugging Face copy
(AI4Math/MathVista) carries ``query`` in each row. Both are read here.

Scoring has two steps. ``evaluation/extract_answer.py``: trivial cases by rule (empty response, a response
equal to a choice, an int / float response, the optional quick regex ``The answer is "(.*)"\\.``), the
rest by an LLM with the few-shot prompt ``prompts/ext_ans.py`` (GPT-4 in the paper; any backend here).
``evaluation/calculate_score.py``: ``normalize_extracted_answer`` by answer type and precision, with the
Levenshtein-nearest choice for multiple choice, then string equality with ``answer``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from Levenshtein import distance

from paperzoo_shared.data import DataError, safe_join

TASKS = {
    "figure question answering": "FQA",
    "geometry problem solving": "GPS",
    "math word problem": "MWP",
    "textbook question answering": "TQA",
    "visual question answering": "VQA",
}
SKILLS = {
    "algebraic reasoning": "ALG",
    "arithmetic reasoning": "ARI",
    "geometry reasoning": "GEO",
    "logical reasoning": "LOG",
    "numeric commonsense": "NUM",
    "scientific reasoning": "SCI",
    "statistical reasoning": "STA",
}
COLUMNS = (*TASKS.values(), *SKILLS.values(), "ALL")
"""Table 3's columns, in order."""


@dataclass(frozen=True)
class MathVistaItem:
    pid: str
    query: str
    question: str
    image: Path | None
    choices: tuple[str, ...] | None
    unit: str | None
    precision: int | None
    answer: str
    question_type: str
    answer_type: str
    metadata: Mapping[str, Any]

    def as_problem(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "query": self.query, "question": self.question,
            "choices": list(self.choices) if self.choices is not None else None, "unit": self.unit,
            "precision": self.precision, "answer": self.answer, "question_type": self.question_type,
            "answer_type": self.answer_type, "metadata": dict(self.metadata),
        }  # fmt: skip


def load_mathvista(
    root: str | Path, annotations: str = "testmini.json", limit: int | None = None
) -> list[MathVistaItem]:
    """Reads ``<root>/<annotations>`` (a pid -> problem dict, a list, or JSON lines) and, for rows
    without ``query``, ``<root>/query.json``; images are joined to ``root`` with :func:`safe_join`."""
    root = Path(root)
    path = root / annotations
    if not path.is_file():
        raise FileNotFoundError(
            f"MathVista annotations not found: {path} (expected data/testmini.json of the release)"
        )
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            rows: list[Mapping[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            rows = list(data.values()) if isinstance(data, dict) else list(data)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error
    queries: dict[str, str] = {}
    if any("query" not in row for row in rows):
        query_path = root / "query.json"
        if not query_path.is_file():
            raise DataError(
                f"{path}: rows have no 'query' and {query_path} is missing (it ships with the release)"
            )
        queries = json.loads(query_path.read_text(encoding="utf-8"))
    items: list[MathVistaItem] = []
    for row in rows:
        try:
            pid = str(row["pid"])
            query = row["query"] if "query" in row else queries[pid]
            choices = row.get("choices")
            precision = row.get("precision")
            image = row.get("image")
            items.append(
                MathVistaItem(
                    pid=pid,
                    query=str(query),
                    question=str(row["question"]),
                    image=safe_join(root, image, source=path, entry=pid) if image else None,
                    choices=tuple(str(c) for c in choices) if choices else None,
                    unit=row.get("unit"),
                    precision=int(precision) if precision is not None else None,
                    answer=str(row["answer"]),
                    question_type=str(row["question_type"]),
                    answer_type=str(row["answer_type"]),
                    metadata=dict(row.get("metadata") or {}),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: problem {row.get('pid')!r} is malformed ({error!r})") from error
        if items[-1].question_type not in ("multi_choice", "free_form"):
            raise DataError(f"{path}: problem {pid!r} has question_type {items[-1].question_type!r}")
        if limit is not None and len(items) >= limit:
            break
    return items


CAPTION_NONSENSE = (
    "Sure. ",
    "Sure, I can do that.",
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm unable to help you with that, as I'm only a language model and don't have the necessary "
    "information or abilities.",
    "I'm not programmed to assist with that.",
    "Please let me know if you have any other questions.",
    "I hope this is helpful!",
    "I hope this helps!",
)
"""The phrases ``evaluation/build_query.py``'s ``refine_caption`` removes from the Bard captions."""


def refine_caption(caption: Any) -> str:
    """``refine_caption``: each phrase of :data:`CAPTION_NONSENSE` removed (stripping after each), double
    spaces made single, stripped; a non-string caption gives ``""``."""
    if not isinstance(caption, str):
        return ""
    for phrase in CAPTION_NONSENSE:
        caption = caption.replace(phrase, "").strip()
    return caption.replace("  ", " ").strip()


# ----------------------------------------------------------------------------------------------------
# Extraction (evaluation/extract_answer.py)
# ----------------------------------------------------------------------------------------------------


def extraction_demo_prompt() -> str:
    """``prompts/ext_ans.py``'s ``demo_prompt`` at 53d5258, byte-exact."""
    path = resources.files("paperzoo_cantor.prompts").joinpath("mathvista_53d5258/ext_ans_demo_prompt.txt")
    with path.open("r", encoding="utf-8", newline="") as handle:
        return handle.read()


def extraction_prompt(query: str, response: str) -> str:
    """``create_test_prompt``: the stripped demo, the query and response, then ``Extracted answer: ``."""
    return f"{extraction_demo_prompt().strip()}\n\n{query}\n\n{response}\n\nExtracted answer: "


def extract_by_rules(response: str, problem: Mapping[str, Any], quick_extract: bool = False) -> str | None:
    """The rule steps of ``extract_answer``; None when the LLM step is needed."""
    if response == "":
        return ""
    if problem["question_type"] == "multi_choice" and response in (problem.get("choices") or ()):
        return response
    if problem["answer_type"] == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if problem["answer_type"] == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    if quick_extract:
        found = re.search(r'The answer is "(.*)"\.', response)
        if found:
            return found.group(1)
    return None


async def extract_answer(
    response: str,
    problem: Mapping[str, Any],
    llm: Callable[[str], Awaitable[str]] | None,
    quick_extract: bool = False,
) -> str:
    """``extract_answer``: rules, then the few-shot LLM extraction; an LLM failure gives ``""``
    (the official ``except: ... return ""``). Without ``llm`` the rules' miss gives ``""`` too."""
    ruled = extract_by_rules(response, problem, quick_extract)
    if ruled is not None:
        return ruled
    if llm is None:
        return ""
    try:
        return await llm(extraction_prompt(problem["query"], response))
    except Exception:
        return ""


# ----------------------------------------------------------------------------------------------------
# Scoring (evaluation/calculate_score.py)
# ----------------------------------------------------------------------------------------------------


def get_most_similar(prediction: str, choices: Sequence[str]) -> str:
    """The first choice with the smallest Levenshtein distance to the prediction."""
    distances = [distance(prediction, choice) for choice in choices]
    return choices[distances.index(min(distances))]


def normalize_extracted_answer(
    extraction: Any,
    choices: Sequence[str] | None,
    question_type: str,
    answer_type: str,
    precision: int | None,
    ignore_empty_extractions: bool = False,
) -> str | None:
    """``normalize_extracted_answer``: multiple choice -> a choice's text (a letter from ``(X)`` or a bare
    letter maps to its choice, anything else to the nearest choice); integer -> ``str(int(float(x)))``;
    float -> ``str(round(float(x), precision))``; list -> ``str(x)``; a failed conversion -> None."""
    if question_type == "multi_choice":
        choices = list(choices or [])
        extraction = extraction.strip() if isinstance(extraction, str) else str(extraction)
        if ignore_empty_extractions and not extraction:
            return None
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction in letters:
            return choices[letters.index(extraction)]
        return get_most_similar(extraction, choices)
    if answer_type == "integer":
        try:
            return str(int(float(extraction)))
        except (TypeError, ValueError, OverflowError):
            return None
    if answer_type == "float":
        try:
            return str(round(float(extraction), int(precision)))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
    if answer_type == "list":
        return str(extraction)
    return None  # the official function leaves other types unbound (an error); none occur in testmini


def is_correct(prediction: str | None, answer: str) -> bool:
    """``safe_equal``: plain equality."""
    return prediction == answer


def score(problems: Iterable[Mapping[str, Any]], correct: Mapping[str, bool]) -> dict[str, float]:
    """Accuracy (%) for Table 3's task and skill columns and ALL, over the problems with a result.

    A skill counts a problem once per skill it lists (skills are multi-label), as ``get_acc_with_contion``.
    A column with no problems is ``-1``.
    """
    totals: dict[str, list[bool]] = {column: [] for column in COLUMNS}
    for problem in problems:
        pid = str(problem["pid"])
        if pid not in correct:
            continue
        ok = bool(correct[pid])
        meta = problem.get("metadata") or {}
        totals["ALL"].append(ok)
        if meta.get("task") in TASKS:
            totals[TASKS[meta["task"]]].append(ok)
        for skill in meta.get("skills") or ():
            if skill in SKILLS:
                totals[SKILLS[skill]].append(ok)
    return {k: (100.0 * sum(v) / len(v) if v else -1.0) for k, v in totals.items()}


def breakdown(
    problems: Iterable[Mapping[str, Any]], correct: Mapping[str, bool]
) -> dict[str, dict[str, dict[str, float]]]:
    """The official fine-grained scores: per key of question_type, answer_type, language, source,
    category, task, context, grade and skills, each value's accuracy (a fraction), correct and total."""
    keys = (
        "question_type",
        "answer_type",
        "language",
        "source",
        "category",
        "task",
        "context",
        "grade",
        "skills",
    )
    out: dict[str, dict[str, dict[str, float]]] = {k: {} for k in keys}
    for problem in problems:
        pid = str(problem["pid"])
        if pid not in correct:
            continue
        flat = {**problem, **(problem.get("metadata") or {})}
        for key in keys:
            values = flat.get(key) if key == "skills" else [flat.get(key)]
            for value in values or ():
                cell = out[key].setdefault(str(value), {"correct": 0, "total": 0})
                cell["total"] += 1
                cell["correct"] += int(bool(correct[pid]))
    for key in keys:
        for cell in out[key].values():
            cell["accuracy"] = cell["correct"] / cell["total"]
        out[key] = dict(sorted(out[key].items(), key=lambda kv: kv[1]["accuracy"], reverse=True))
    return out
