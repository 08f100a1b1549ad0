"""§5.1 of the notes: what each extractor reads from typical responses (expected values from running the
official functions at the cited commits; hand-checked against their rules)."""

from __future__ import annotations

import pytest
from paperzoo_videomme.modeling_videomme import (
    OFFICIAL_PREFIXES,
    OFFICIAL_PREFIXES_2024_06,
    VLMEVALKIT_PREFIXES,
    extract_answer,
    lmms_eval_extract,
    regex_extract,
    vlmevalkit_can_infer,
    vlmevalkit_choices_from_question,
)

ELEVEN_WORDS = "the man in the video walks his dog through a quiet park today"

# response, official@4e7566d, official@parse_answer HEAD, VLMEvalKit regex, lmms-eval extract_mcq_answer
TABLE_5_1 = [
    ("C", "C", "C", "C", "C"),
    ("C. Berries.", "C", "C", "C", "C"),
    ("(B)", "B", "B", "B", "B"),
    ("The best answer is D.", "D", "D", "D", "D"),
    ("Answer: C", "A", "C", "C", "C"),
    ("Based on the video, the answer is C.", "B", "B", "B", "C"),
    ("Best option: C", "B", "B", "B", "C"),
    ("A man is walking, so D", "A", "A", "A", "A"),
    ("The correct option is B", "B", "B", "B", "B"),
    ("Option: B", "B", "B", "B", "B"),
    ("**B**", "B", "B", "B", "B"),
    ("d", "", "", "", ""),
    ("The answer is (c).", "", "", "", ""),
    ("", "", "", "", ""),
    (ELEVEN_WORDS, "", "", "", ""),
]


@pytest.mark.parametrize(("response", "old", "head", "vlmeval", "lmms"), TABLE_5_1)
def test_table_5_1(response: str, old: str, head: str, vlmeval: str, lmms: str) -> None:
    assert regex_extract(response, OFFICIAL_PREFIXES_2024_06) == old
    assert regex_extract(response, OFFICIAL_PREFIXES) == head
    assert regex_extract(response, VLMEVALKIT_PREFIXES) == vlmeval
    assert lmms_eval_extract(response) == lmms
    # the named extractors
    assert extract_answer(response, "official_2024_06") == old
    assert extract_answer(response, "official") == head
    assert extract_answer(response, "lmms_eval") == lmms
    assert extract_answer(response, "lmms_eval_legacy") == old  # lmms-eval copied the June-2024 regex
    assert extract_answer(response, "vlmevalkit_2024_07") == vlmeval


def test_concatenated_prefixes_are_never_removed_alone() -> None:
    # the missing commas join four prefixes into two strings nobody writes
    assert "The best option isThe correct option is" in OFFICIAL_PREFIXES
    assert "Best answer:Best option:" in OFFICIAL_PREFIXES
    assert "Best answer:" not in OFFICIAL_PREFIXES and "The best option is" not in OFFICIAL_PREFIXES
    assert regex_extract("Best answer: D") == "B"  # the B of "Best"
    assert regex_extract("Best answer:Best option: D") == "D"  # only the concatenation is removed


def test_first_capital_anywhere_and_case_sensitivity() -> None:
    assert regex_extract("I think Dogs are shown; the letter is A") == "D"
    assert regex_extract("c") == ""
    assert regex_extract("The answer is c") == ""


def test_lmms_eval_priorities() -> None:
    assert lmms_eval_extract("I considered A and B, but the answer is C") == "C"  # end letter beats phrase
    assert lmms_eval_extract("B. because the answer is (C) here") == "B"  # start beats all
    assert lmms_eval_extract("the answer is (B) I think") == "B"  # phrase
    assert lmms_eval_extract("(C), not (A) - (B) is wrong too.") == "B"  # no start/end letter: the last (X)
    assert lmms_eval_extract("option (A) or option (B) x") == "B"  # the last (X) wins within a format
    assert lmms_eval_extract("Dogs") == "D"  # only the fallback: any occurrence


def test_vlmevalkit_fallback_is_z_without_options_in_the_question() -> None:
    # VLMEvalKit rebuilds options from the `question` field, which holds none for Video-MME
    assert vlmevalkit_choices_from_question("What is shown?") == {}
    record = {"question": "What is shown?", "options": ["A. x", "B. y", "C. z", "D. w"]}
    for response in ("d", "The answer is (c).", "", ELEVEN_WORDS):
        assert extract_answer(response, "vlmevalkit", record) == "Z"
    assert extract_answer("Best option: C", "vlmevalkit", record) == "B"


def test_vlmevalkit_can_infer_with_options() -> None:
    choices = {"A": "apples", "B": "candles", "C": "berries", "D": "the same"}
    assert vlmevalkit_can_infer("I would say c ) B", choices) == "B"  # one bare letter near the end
    assert vlmevalkit_can_infer("berries", choices) == "C"  # option text
    assert vlmevalkit_can_infer("Cannot determine the answer", choices) == "Z"
    assert vlmevalkit_can_infer("apples or berries", choices) is None  # two option texts
    question = "Which is most?\nA. Apples.\nB. Candles.\nC. Berries.\nD. Same."
    assert vlmevalkit_choices_from_question(question) == {
        "A": "Apples",
        "B": "Candles",
        "C": "Berries",
        "D": "Same",
    }


def test_unknown_extractor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown extractor 'gpt'.*official"):
        extract_answer("A", "gpt")
