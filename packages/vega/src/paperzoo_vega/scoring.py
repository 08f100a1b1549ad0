"""File-level VEGA scores, aggregated as ``show_score`` of ``eval/IITC.py`` and ``eval/ITA.py`` does.

Every record counts in every denominator (``len(lines)``): a failed ROUGE/BLEU contributes 0, an item with
no usable citation is wrong. The official script opens its output in append mode, so a rerun silently
scores duplicates; :func:`score_output_file` reads a file as it is and reports duplicate ids, and the
runner of :mod:`paperzoo_vega.evaluate` never appends a finished item twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from paperzoo_shared.data.errors import DataError
from paperzoo_vega.modeling_vega import (
    Task,
    iitc_picture_correct,
    iitc_text_scores,
    ita_correct,
    rouge_l_standard,
)


def _field(record: Mapping[str, Any], key: str, index: int) -> Any:
    if key not in record:
        raise DataError(f"record {index} has no {key!r} field (keys: {', '.join(sorted(record))})")
    return record[key]


def score_iitc(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """IITC scores of records holding ``response``, ``answer`` and ``truth_fig_idx``.

    Returns ``picture_acc`` (image association accuracy, 0-1), ``rouge_l`` (pltrdy, as reported by VEGA),
    ``bleu``, ``rouge_l_standard`` (sentence-level LCS ROUGE-L, for comparison), ``n`` and
    ``text_failures`` (items whose ROUGE or BLEU raised and were scored 0).
    """
    n = correct = failures = 0
    rouge = bleu = standard = 0.0
    for index, record in enumerate(records):
        response = _field(record, "response", index)
        answer = _field(record, "answer", index)
        truth = _field(record, "truth_fig_idx", index)
        n += 1
        correct += iitc_picture_correct(response, truth)
        item_rouge, item_bleu, failed = iitc_text_scores(response, answer)
        rouge += item_rouge
        bleu += item_bleu
        failures += failed
        standard += rouge_l_standard(response, answer)
    if n == 0:
        raise DataError("no IITC records to score")
    return {
        "picture_acc": correct / n,
        "rouge_l": rouge / n,
        "bleu": bleu / n,
        "rouge_l_standard": standard / n,
        "n": float(n),
        "text_failures": float(failures),
    }


def score_ita(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """ITA accuracy (0-1) of records holding ``response`` and ``answer``, and ``n``."""
    n = correct = 0
    for index, record in enumerate(records):
        n += 1
        correct += ita_correct(_field(record, "response", index), _field(record, "answer", index))
    if n == 0:
        raise DataError("no ITA records to score")
    return {"accuracy": correct / n, "n": float(n)}


def score_records(task: Task, records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    if task == "iitc":
        return score_iitc(records)
    if task == "ita":
        return score_ita(records)
    raise ValueError(f"task must be 'iitc' or 'ita', got {task!r}")


def read_output_file(path: str | Path) -> list[dict[str, Any]]:
    """The records of an output JSONL (input record + ``response``), one per non-empty line.

    A malformed line raises :class:`DataError` naming the file and line.
    """
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def detect_task(records: list[Mapping[str, Any]]) -> Task:
    """``iitc`` when the records carry ``truth_fig_idx``, else ``ita``."""
    return "iitc" if records and "truth_fig_idx" in records[0] else "ita"


def score_output_file(path: str | Path, task: Task | None = None) -> dict[str, Any]:
    """Score an output file of the official scripts (or of this package), with a duplicate-id count."""
    records = read_output_file(path)
    if not records:
        raise DataError(f"{path}: no records to score")
    task = task or detect_task(records)
    scores: dict[str, Any] = dict(score_records(task, records))
    keys = [json.dumps([r.get("id"), r.get("question"), r.get("context")]) for r in records]
    scores["duplicates"] = float(len(keys) - len(set(keys)))
    scores["task"] = task
    return scores
