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
