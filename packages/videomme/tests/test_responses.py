"""The fixed response set of the parity table: deterministic, and read by each rule as documented."""

from __future__ import annotations

import pytest
from paperzoo_videomme.modeling_videomme import extract_answer
from paperzoo_videomme.responses import RESPONSE_STYLES, simulate_responses

OPTIONS = ["A. square", "B. ring", "C. circle", "D. cross"]
# style -> (official reads, lmms_eval reads) for intended letter C, worked out by hand from the rules
EXPECTED = {
    "letter": ("C", "C"),
    "letter_period_text": ("C", "C"),
    "best_answer_is": ("C", "C"),
    "answer_colon": ("C", "C"),
    "lowercase_the_answer_is": ("B", "C"),
    "best_option_colon": ("B", "C"),
    "parenthesised": ("C", "C"),
    "lowercase_letter": ("", ""),
    "verbose_no_letter": ("", ""),
    "sentence_then_letter": ("A", "C"),
    "refusal": ("", ""),
}


@pytest.mark.parametrize("style", sorted(RESPONSE_STYLES))
def test_styles_read_as_documented(style: str) -> None:
    response = RESPONSE_STYLES[style]("C", OPTIONS)
    assert (extract_answer(response, "official"), extract_answer(response, "lmms_eval")) == EXPECTED[style]


def test_simulation_is_seeded() -> None:
    records = [{"question_id": f"q{i}", "answer": "ABCD"[i % 4], "options": OPTIONS} for i in range(200)]
    styles = {"letter": 1.0, "refusal": 1.0}
    a = simulate_responses(records, seed=1, styles=styles, correct_prob=0.7)
    assert a == simulate_responses(records, seed=1, styles=styles, correct_prob=0.7)
    assert a != simulate_responses(records, seed=2, styles=styles, correct_prob=0.7)
    right = sum(r["intended"] == r["answer"] for r in a) / len(a)
    assert 0.6 < right < 0.8
    assert {r["style"] for r in a} == {"letter", "refusal"}
    with pytest.raises(ValueError, match="unknown response styles"):
        simulate_responses(records, seed=0, styles={"haiku": 1.0}, correct_prob=0.5)


def test_option_text_drops_only_a_letter_period_prefix() -> None:
    """The text styles render the option without its "X. " prefix, and options without one unchanged."""
    options = ["A. red square", "B ring", "C", "D.. cross"]
    assert RESPONSE_STYLES["letter_period_text"]("A", options) == "A. red square"
    assert RESPONSE_STYLES["verbose_no_letter"]("A", options) == "It is the red square that the video shows."
    assert RESPONSE_STYLES["letter_period_text"]("B", options) == "B. B ring"
    assert RESPONSE_STYLES["letter_period_text"]("C", options) == "C. C"
    assert RESPONSE_STYLES["letter_period_text"]("D", options) == "D. D.. cross"


RECORDS = [{"answer": "C", "options": OPTIONS}] * 2000


def test_styles_are_drawn_by_weight_and_zero_weights_never() -> None:
    out = simulate_responses(
        RECORDS, seed=3, styles={"letter": 3, "refusal": 1, "parenthesised": 0}, correct_prob=1
    )
    styles = [r["style"] for r in out]
    assert "parenthesised" not in styles
    # integer weights are normalised as floats; refusal drawn with probability 1/4 (binomial sd 0.0097 at n=2000)
    assert abs(styles.count("refusal") / len(styles) - 0.25) < 0.04
    for record in out:
        assert record["response"] == RESPONSE_STYLES[record["style"]](record["intended"], OPTIONS)


def test_intended_letter_is_right_with_correct_prob_and_otherwise_a_wrong_letter() -> None:
    out = simulate_responses(RECORDS, seed=0, styles={"letter": 1.0}, correct_prob=0.6)
    right = sum(r["intended"] == "C" for r in out) / len(out)
    assert abs(right - 0.6) < 0.04  # binomial sd 0.011
    assert {r["intended"] for r in out} == {"A", "B", "C", "D"}
    assert all(r["response"] == r["intended"] for r in out)


def test_bad_style_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError) as error:
        simulate_responses(RECORDS[:1], seed=0, styles={"letter": 0.0}, correct_prob=1)
    assert str(error.value) == "parity.styles needs at least one style with a positive weight."
    with pytest.raises(ValueError) as error:
        simulate_responses(RECORDS[:1], seed=0, styles={"shout": 1.0}, correct_prob=1)
    assert str(error.value) == f"unknown response styles ['shout']; choose from {', '.join(RESPONSE_STYLES)}."
