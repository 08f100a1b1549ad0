"""Multiple-choice accuracy with per-field breakdowns (Video-MME, ScienceQA, MathVista multiple choice).

Accuracies are **fractions in [0, 1]** (multiply by 100 for the papers' tables). A prediction is correct
when it equals the answer (``==``); extracting the option letter from a model's free text is the
benchmark package's job and happens before this function.

``None`` as a prediction means the answer could not be parsed. Benchmarks differ on it: the official
Video-MME script drops such questions from numerator *and* denominator (``skip_unparsed=True``), while
lmms-eval and VLMEvalKit count them wrong (``skip_unparsed=False``). On the Video-MME fixture with answers
[right, wrong, unparsable] that is 1/2 versus 1/3.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any


def _group_result(correct: int, total: int) -> dict[str, float | int]:
    # A group whose questions were all skipped has no accuracy; the official Video-MME script prints 0.0.
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}


def _field(record: Mapping[str, Any], index: int, key: str) -> Any:
    try:
        return record[key]
    except KeyError:
        raise KeyError(f"record {index} has no key {key!r}") from None


def multiple_choice_accuracy(
    records: Iterable[Mapping[str, Any]],
    *,
    prediction_key: str = "prediction",
    answer_key: str = "answer",
    breakdown_by: Sequence[str] = (),
    skip_unparsed: bool = False,
) -> dict[str, Any]:
    """Accuracy of ``record[prediction_key] == record[answer_key]`` over ``records``.

    Returns::

        {"accuracy": float, "correct": int, "total": int, "unparsed": int,
         "breakdown": {field: {value: {"accuracy", "correct", "total"}}}}

    ``total`` is the denominator: all records, or with ``skip_unparsed=True`` those whose prediction is not
    ``None``; ``unparsed`` counts the ``None`` predictions either way. A breakdown group or the whole set
    with a zero denominator has accuracy 0.0. Breakdown groups are listed in order of first appearance.

    Raises:
        KeyError: a record lacks a key, naming the record's index and the key.
        ValueError: ``records`` is empty.
    """
    correct = total = unparsed = 0
    groups: dict[str, dict[Hashable, list[int]]] = {field: {} for field in breakdown_by}
    n_records = 0
    for index, record in enumerate(records):
        n_records += 1
        prediction = _field(record, index, prediction_key)
        answer = _field(record, index, answer_key)
        values = {field: _field(record, index, field) for field in breakdown_by}
        if prediction is None:
            unparsed += 1
        counted = not (prediction is None and skip_unparsed)
        is_correct = int(prediction is not None and prediction == answer)
        for field, value in values.items():
            # a group whose records were all skipped is still listed, with total 0
            counts = groups[field].setdefault(value, [0, 0])
            if counted:
                counts[0] += is_correct
                counts[1] += 1
        if counted:
            correct += is_correct
            total += 1
    if n_records == 0:
        raise ValueError("no records")
    return {
        **_group_result(correct, total),
        "unparsed": unparsed,
        "breakdown": {
            field: {value: _group_result(c, t) for value, (c, t) in by_value.items()}
            for field, by_value in groups.items()
        },
    }
