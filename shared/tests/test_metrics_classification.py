"""Multiple-choice accuracy: hand-computed counts, two breakdown fields, and the unparsed-answer rule."""

from __future__ import annotations

import pytest

from paperzoo_shared.metrics import multiple_choice_accuracy

RECORDS = [
    {"prediction": "A", "answer": "A", "duration": "short", "domain": "Sports"},
    {"prediction": "B", "answer": "C", "duration": "short", "domain": "Sports"},
    {"prediction": None, "answer": "D", "duration": "short", "domain": "Knowledge"},
    {"prediction": "D", "answer": "D", "duration": "long", "domain": "Knowledge"},
    {"prediction": "A", "answer": "A", "duration": "long", "domain": "Sports"},
    {"prediction": None, "answer": "B", "duration": "medium", "domain": "Life"},
]


def test_unparsed_counted_wrong_by_default():
    # correct: records 0, 3, 4 -> 3 of 6
    result = multiple_choice_accuracy(RECORDS, breakdown_by=("duration", "domain"))
    assert (result["accuracy"], result["correct"], result["total"], result["unparsed"]) == (0.5, 3, 6, 2)
    assert result["breakdown"]["duration"] == {
        "short": {"accuracy": 1 / 3, "correct": 1, "total": 3},
        "long": {"accuracy": 1.0, "correct": 2, "total": 2},
        "medium": {"accuracy": 0.0, "correct": 0, "total": 1},
    }
    assert result["breakdown"]["domain"] == {
        "Sports": {"accuracy": 2 / 3, "correct": 2, "total": 3},
        "Knowledge": {"accuracy": 0.5, "correct": 1, "total": 2},
        "Life": {"accuracy": 0.0, "correct": 0, "total": 1},
    }


def test_skip_unparsed_drops_them_from_both_sides():
    # Video-MME official: 3 correct of the 4 parsed answers; a group with nothing parsed reports 0.0
    result = multiple_choice_accuracy(RECORDS, breakdown_by=("duration", "domain"), skip_unparsed=True)
    assert (result["accuracy"], result["correct"], result["total"], result["unparsed"]) == (0.75, 3, 4, 2)
    assert result["breakdown"]["duration"]["short"] == {"accuracy": 0.5, "correct": 1, "total": 2}
    assert result["breakdown"]["duration"]["medium"] == {"accuracy": 0.0, "correct": 0, "total": 0}
    assert result["breakdown"]["domain"]["Knowledge"] == {"accuracy": 1.0, "correct": 1, "total": 1}


def test_video_mme_denominator_fixture():
    # videomme notes section 5.2: responses A (GT A), B (GT C), unparsable (GT D)
    records = [{"p": "A", "a": "A"}, {"p": "B", "a": "C"}, {"p": None, "a": "D"}]
    official = multiple_choice_accuracy(records, prediction_key="p", answer_key="a", skip_unparsed=True)
    lmms_eval = multiple_choice_accuracy(records, prediction_key="p", answer_key="a")
    assert official["accuracy"] == pytest.approx(1 / 2)
    assert lmms_eval["accuracy"] == pytest.approx(1 / 3)
    assert official["breakdown"] == {}


def test_all_unparsed_and_iterables():
    result = multiple_choice_accuracy(iter([{"prediction": None, "answer": "A"}]), skip_unparsed=True)
    assert (result["accuracy"], result["total"], result["unparsed"]) == (0.0, 0, 1)


def test_errors_name_the_record_and_key():
    with pytest.raises(KeyError, match="record 1 has no key 'answer'"):
        multiple_choice_accuracy([{"prediction": "A", "answer": "A"}, {"prediction": "B"}])
    with pytest.raises(KeyError, match="record 0 has no key 'domain'"):
        multiple_choice_accuracy([{"prediction": "A", "answer": "A"}], breakdown_by=["domain"])
    with pytest.raises(ValueError, match="no records"):
        multiple_choice_accuracy([])
