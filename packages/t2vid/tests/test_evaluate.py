"""The package's own multiple-choice scorer (hand-made cases) and the Video-MME-layout evaluation loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_t2vid.evaluate import (
    MCQ_SUFFIX,
    Question,
    evaluate,
    extract_letter,
    prompt_text,
    read_questions,
    score,
)

from paperzoo_shared.errors import UserError

OPTIONS = ("A. apple", "B. river", "C. stone", "D. cloud")


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        (" (C) stone", "C"),
        ("D: cloud", "D"),
        ("A river", "A"),  # a leading letter standing alone wins
        ("The answer is C.", "C"),
        ("I pick Option D", "D"),
        ("The answer is a guess", None),  # a lower-case "a" is the article, not option A
        ("river", "B"),  # equals an option's text
        ("Stone.", "C"),
        ("Because", None),  # starts with a letter that is part of a word
        ("E", None),  # not one of the four letters
        ("", None),
        ("apple river", None),
    ],
)
def test_extract_letter_by_hand(response: str, letter: str | None) -> None:
    assert extract_letter(response, OPTIONS) == letter


def test_extract_letter_respects_the_number_of_options() -> None:
    assert extract_letter("C", ("A. x", "B. y")) is None
    assert extract_letter("B", ("A. x", "B. y")) == "B"


def test_score_by_hand() -> None:
    q = [
        Question("1", "v1", "short", "?", OPTIONS, "A"),
        Question("2", "v1", "short", "?", OPTIONS, "B"),
        Question("3", "v2", "long", "?", OPTIONS, "C"),
        Question("4", "v2", "long", "?", OPTIONS, "D"),
    ]
    s = score(zip(q, ["A", "C", "stone", "no idea"], strict=True))
    # right: 1 (A), 3 (stone = C); wrong: 2, 4; unmatched: "no idea"
    assert s.accuracy == 50.0 and s.n == 4 and s.unmatched == 1
    assert s.by_duration == {"long": 50.0, "short": 50.0}
    with pytest.raises(UserError, match="nothing to score"):
        score([])


def test_prompt_is_question_options_suffix() -> None:
    q = Question("1", "v", "short", "Which word?", OPTIONS, "A")
    assert prompt_text(q) == "Which word?\nA. apple\nB. river\nC. stone\nD. cloud\n" + MCQ_SUFFIX
    assert MCQ_SUFFIX == "Answer with the option's letter from the given choices directly."


def test_read_questions_layout_and_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no annotations"):
        read_questions(tmp_path)
    row = {"videoID": "v", "question_id": "001-1", "question": "?", "options": list(OPTIONS), "answer": "B"}
    (tmp_path / "videomme").mkdir()
    (tmp_path / "videomme" / "test.jsonl").write_text(json.dumps(row) + "\n")
    assert read_questions(tmp_path)[0].answer == "B"
    (tmp_path / "videomme" / "test.json").write_text(json.dumps([{**row, "answer": "E"}]))
    with pytest.raises(UserError, match="not an option letter"):
        read_questions(tmp_path)
    (tmp_path / "videomme" / "test.json").write_text(
        json.dumps([{k: v for k, v in row.items() if k != "question"}])
    )
    with pytest.raises(UserError, match="no field 'question'"):
        read_questions(tmp_path)


def test_evaluate_on_the_videomme_layout(tmp_path: Path, font_path: str) -> None:
    from paperzoo_t2vid.minitrain import MiniTrainConfig, vocabulary_words, write_eval_set
    from paperzoo_t2vid.tiny import build_tiny_idefics3

    cfg = MiniTrainConfig(n_eval=4)
    root = write_eval_set(4, 0, cfg, tmp_path / "eval")
    questions = read_questions(root)
    assert len(questions) == 4 and (root / "video" / f"{questions[0].video_id}.mp4").is_file()
    model, processor = build_tiny_idefics3(vocabulary_words())
    scores, records = evaluate(model, processor, root, n_frames=24, max_new_tokens=2)
    assert scores.n == 4 and len(records) == 4
    assert 0.0 <= scores.accuracy <= 100.0
    assert {r["question_id"] for r in records} == {q.question_id for q in questions}
