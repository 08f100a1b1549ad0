"""Scoring rules, breakdowns and the official results file.

A *scoring rule* is an extractor (:data:`paperzoo_videomme.modeling_videomme.EXTRACTORS`) plus what the
scorer does with a response whose extraction is empty:

=====================  ==========================================  ==========================
rule                   extractor                                   unparsed responses
=====================  ==========================================  ==========================
official               first capital A-D after prefix removal      dropped from both counts
official_2024_06       the same with the June-2024 prefix list     dropped from both counts
lmms_eval              priority-ranked last-answer extractor       wrong (in the denominator)
lmms_eval_legacy       copy of the June-2024 official regex        wrong
vlmevalkit             official regex + Answer:/Option:, then      wrong ('Z' under
                       VLMEvalKit's rule matcher                   ``exact_matching``)
vlmevalkit_2024_07     official regex + Answer:/Option:            dropped (score -1 excluded)
=====================  ==========================================  ==========================

Accuracies are fractions in [0, 1]; the official script prints ``100 * acc`` with ``%.1f`` and 0.0 for
a category with nothing answered (:func:`official_report_text` reproduces its printout).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperzoo_shared.data.errors import DataError, require_file
from paperzoo_shared.metrics.classification import multiple_choice_accuracy
from paperzoo_shared.repro import atomic_write_json
from paperzoo_videomme.modeling_videomme import (
    DOMAINS,
    DURATIONS,
    EXTRACTORS,
    SUB_CATEGORIES,
    TASK_TYPES,
    extract_answer,
)


@dataclass(frozen=True)
class ScoringRule:
    name: str
    extractor: str
    drop_unparsed: bool
    source: str


SCORING_RULES: dict[str, ScoringRule] = {
    "official": ScoringRule(
        "official", "official", True, "thanku-all/parse_answer@afd52cf eval_your_results.py"
    ),
    "official_2024_06": ScoringRule(
        "official_2024_06",
        "official_2024_06",
        True,
        "BradyFU/Video-MME@4e7566d evaluation/eval_your_results.py",
    ),
    "lmms_eval": ScoringRule("lmms_eval", "lmms_eval", False, "lmms-eval@75571cfe tasks/videomme/utils.py"),
    "lmms_eval_legacy": ScoringRule(
        "lmms_eval_legacy", "lmms_eval_legacy", False, "lmms-eval before 9ca4445d (2026-04-11)"
    ),
    "vlmevalkit": ScoringRule(
        "vlmevalkit", "vlmevalkit", False, "VLMEvalKit@e8e78f05 VideoMME.evaluate, judge=exact_matching"
    ),
    "vlmevalkit_2024_07": ScoringRule(
        "vlmevalkit_2024_07", "vlmevalkit_2024_07", True, "VLMEvalKit@9e004797 (PR #270) VideoMME.evaluate"
    ),
}
assert set(SCORING_RULES) == set(EXTRACTORS)

BREAKDOWNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "domain": ("domain", DOMAINS),
    "sub_category": ("sub_category", SUB_CATEGORIES),
    "task_type": ("task_type", TASK_TYPES),
}
RECORD_KEYS = ("question_id", "duration", "domain", "sub_category", "task_type", "answer", "response")


def get_rule(name: str) -> ScoringRule:
    if name not in SCORING_RULES:
        raise ValueError(f"unknown scoring rule {name!r}; choose one of {', '.join(SCORING_RULES)}.")
    return SCORING_RULES[name]


def _group(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"accuracy": result["accuracy"], "correct": result["correct"], "total": result["total"]}


def _breakdowns(records: list[dict[str, Any]], skip: bool) -> dict[str, Any]:
    """Overall and per-category results of ``records`` (every canonical category listed, zeros included)."""
    if not records:
        empty = {"accuracy": 0.0, "correct": 0, "total": 0}
        return {**empty, "unparsed": 0, "questions": 0, **{k: {v: dict(empty) for v in vals}
                                                            for k, (_, vals) in BREAKDOWNS.items()}}  # fmt: skip
    result = multiple_choice_accuracy(
        records, breakdown_by=tuple(field for field, _ in BREAKDOWNS.values()), skip_unparsed=skip
    )
    out: dict[str, Any] = {**_group(result), "unparsed": result["unparsed"], "questions": len(records)}
    for key, (field, canonical) in BREAKDOWNS.items():
        seen = result["breakdown"][field]
        groups = {value: _group(seen[value]) if value in seen else {"accuracy": 0.0, "correct": 0, "total": 0}
                  for value in canonical}  # fmt: skip
        groups.update({value: _group(group) for value, group in seen.items() if value not in groups})
        out[key] = groups
    return out


def score_records(
    records: Iterable[Mapping[str, Any]], rule: str = "official", durations: Sequence[str] | None = None
) -> dict[str, Any]:
    """Score question records (keys :data:`RECORD_KEYS`) under one rule.

    Returns ``{"rule", "source", "overall": {...}, "by_duration": {d: {...}}}`` where each ``{...}`` has
    ``accuracy``, ``correct``, ``total`` (the denominator), ``unparsed`` (empty extractions), ``questions``
    and the ``domain`` / ``sub_category`` / ``task_type`` breakdowns. ``overall`` covers the durations in
    ``durations`` (default: all three), as the official script's "entire dataset" block does.
    """
    spec = get_rule(rule)
    durations = tuple(durations or DURATIONS)
    scored = []
    for index, record in enumerate(records):
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise KeyError(f"record {index} ({record.get('question_id', '?')}) lacks {missing}")
        if record["duration"] not in durations:
            continue
        letter = extract_answer(record["response"], spec.extractor, record)
        scored.append({**record, "prediction": letter or None})
    by_duration = {
        d: _breakdowns([r for r in scored if r["duration"] == d], spec.drop_unparsed) for d in durations
    }
    return {
        "rule": spec.name,
        "source": spec.source,
        "durations": list(durations),
        "overall": _breakdowns(scored, spec.drop_unparsed),
        "by_duration": by_duration,
    }


def score_all_rules(
    records: Sequence[Mapping[str, Any]], rules: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`score_records` under every rule in ``rules`` (default: all of :data:`SCORING_RULES`)."""
    return {rule: score_records(records, rule) for rule in (rules or SCORING_RULES)}


def official_report_text(
    scores: Mapping[str, Any],
    *,
    categories: bool = True,
    sub_categories: bool = False,
    task_types: bool = False,
) -> str:
    """The printout of the official ``eval_your_results`` for these scores (``%.1f`` percentages)."""

    def pct(group: Mapping[str, Any]) -> str:
        return f"{100 * group['correct'] / group['total'] if group['total'] > 0 else 0: .1f}%"

    bar, dash = "=" * 37, "-" * 37
    lines: list[str] = []

    def section(title: str, groups: Mapping[str, Any], names: Sequence[str]) -> None:
        lines.extend([dash, title, dash])
        lines.extend(f"{name}: {pct(groups[name])}" for name in names)

    for duration in scores["durations"]:
        block = scores["by_duration"][duration]
        lines.extend([bar, f"Evaluation on video Type: {duration}", bar])
        if categories:
            section("Video Categories", block["domain"], DOMAINS)
        if sub_categories:
            section("Video Sub Categories", block["sub_category"], SUB_CATEGORIES)
        if task_types:
            section("Task Categories", block["task_type"], TASK_TYPES)
        lines.extend([dash, "Overall Performance", dash, f"Overall: {pct(block)}", "", ""])
    overall = scores["overall"]
    lines.extend([bar, "Evaluation on the entire dataset", bar])
    if categories:
        section("Video Categories", overall["domain"], DOMAINS)
    if sub_categories:
        section("Video Sub Categories", overall["sub_category"], SUB_CATEGORIES)
    if task_types:
        section("Task Categories", overall["task_type"], TASK_TYPES)
    lines.extend([dash, "Overall Performance", dash, f"Overall: {pct(overall)}"])
    return "\n".join(lines) + "\n"


def vlmevalkit_rating(scores: Mapping[str, Any]) -> dict[str, Any]:
    """VLMEvalKit's ``get_dimension_rating`` layout: per duration and ``overall``, strings ``"%.3f"`` of
    fractions, ``"nan"`` for an empty group (numpy's mean of nothing)."""

    def fmt(group: Mapping[str, Any]) -> str:
        return f"{group['correct'] / group['total']:.3f}" if group["total"] else "nan"

    rating = {}
    for name, block in [*scores["by_duration"].items(), ("overall", scores["overall"])]:
        rating[name] = {
            "overall": fmt(block),
            **{
                key: {value: fmt(block[key][value]) for value in canonical}
                for key, (_, canonical) in BREAKDOWNS.items()
            },
        }
    return rating


# ----------------------------------------------------------------------------------------------------
# The official results file: a JSON list, one object per video, with the questions and responses
# ----------------------------------------------------------------------------------------------------

_OLD_VIDEO_KEYS = {
    "duration_category": "duration",
    "video_category": "domain",
    "video_subcategory": "sub_category",
}


def official_results(
    records: Iterable[Mapping[str, Any]], missing_videos: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Group question records into the official template (``evaluation/output_test_template.json``,
    current keys), adding ``"missing"`` per video so that the official ``eval_your_results(...,
    skip_missing=True)`` can score a partial file. ``missing_videos`` are video ids whose frames could not
    be read; their questions keep an empty response."""
    missing = set(missing_videos)
    videos: dict[str, dict[str, Any]] = {}
    for record in records:
        video = videos.setdefault(
            record["video_id"],
            {
                "video_id": record["video_id"],
                "duration": record["duration"],
                "domain": record["domain"],
                "sub_category": record["sub_category"],
                "videoID": record.get("videoID", ""),
                "missing": record["video_id"] in missing,
                "questions": [],
            },
        )
        video["questions"].append(
            {
                "question_id": record["question_id"],
                "task_type": record["task_type"],
                "question": record.get("question", ""),
                "options": list(record.get("options", [])),
                "answer": record["answer"],
                "response": record.get("response") or "",
            }
        )
    return list(videos.values())


def write_official_results(
    path: str | Path, records: Iterable[Mapping[str, Any]], missing_videos: Iterable[str] = ()
) -> Path:
    """Write :func:`official_results` as valid JSON (the committed template is not: it has trailing commas)."""
    path = Path(path)
    atomic_write_json(path, official_results(records, missing_videos))
    return path


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def read_official_results(path: str | Path, *, lenient: bool = True) -> list[dict[str, Any]]:
    """Read a results file in the official layout and flatten it to question records.

    Accepts the current keys (``duration``, ``domain``, ``sub_category``) and the June-2024 ones
    (``duration_category``, ``video_category``, ``video_subcategory``, ``choices``). With ``lenient``,
    trailing commas (as in the official template) are removed before parsing. Videos flagged
    ``"missing": true`` are skipped, as the official scorer does with ``skip_missing=True``.
    """
    path = require_file(path, "Video-MME results")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if not lenient:
            raise DataError(
                f"results file {path} is not valid JSON ({err}); fix it or pass lenient=True."
            ) from None
        try:
            data = json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except json.JSONDecodeError as err2:
            raise DataError(
                f"results file {path} is not valid JSON even without trailing commas ({err2})."
            ) from None
    if not isinstance(data, list):
        raise DataError(f"results file {path} must hold a JSON list of videos, got {type(data).__name__}.")
    records = []
    for position, video in enumerate(data):
        video = {_OLD_VIDEO_KEYS.get(k, k): v for k, v in video.items()}
        for key in ("video_id", "duration", "domain", "sub_category", "questions"):
            if key not in video:
                raise DataError(
                    f"results file {path}: video {position} has no {key!r}; see the official template."
                )
        if video.get("missing"):
            continue
        for question in video["questions"]:
            if "options" not in question and "choices" in question:
                question = {**question, "options": question["choices"]}
            for key in ("question_id", "task_type", "answer", "response"):
                if key not in question:
                    raise DataError(
                        f"results file {path}: question {question.get('question_id', '?')} of video "
                        f"{video['video_id']} has no {key!r}."
                    )
            records.append(
                {
                    "video_id": video["video_id"],
                    "videoID": video.get("videoID", ""),
                    "duration": video["duration"],
                    "domain": video["domain"],
                    "sub_category": video["sub_category"],
                    **{
                        k: question.get(k, "")
                        for k in ("question_id", "task_type", "question", "answer", "response")
                    },
                    "options": list(question.get("options", [])),
                }
            )
    return records
