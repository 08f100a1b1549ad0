"""A fixed, seeded set of model responses in the styles real MLLMs produce, for the scoring-parity table.

Each style renders an intended letter ``X`` (the right one with probability ``correct_prob``) the way
models answer Video-MME questions in practice. Several styles are chosen because the official regex
reads them differently from the stricter extractors:

===========================  ==========================================  =================================
style                        example (X = C, option "C. circle")         official regex reads
===========================  ==========================================  =================================
letter                       ``C``                                       C
letter_period_text           ``C. circle``                               C
best_answer_is               ``The best answer is C.``                   C
answer_colon                 ``Answer: C``                               C (the June-2024 list: A)
lowercase_the_answer_is      ``Based on the video, the answer is C.``    B (the B of "Based")
best_option_colon            ``Best option: C``                          B (a concatenated prefix)
parenthesised                ``(C)``                                     C
lowercase_letter             ``c``                                       unparsed
verbose_no_letter            ``It is the circle that the video shows.``  unparsed
sentence_then_letter         ``After watching it all, I choose C.``      A (the A of "After")
refusal                      ``I cannot tell from the video.``           unparsed
===========================  ==========================================  =================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paperzoo_videomme.modeling_videomme import OPTION_LETTERS


def _text(options: Sequence[str], letter: str) -> str:
    option = options[OPTION_LETTERS.index(letter)]
    return option[3:] if option[1:3] == ". " else option


RESPONSE_STYLES: dict[str, Any] = {
    "letter": lambda x, options: x,
    "letter_period_text": lambda x, options: f"{x}. {_text(options, x)}",
    "best_answer_is": lambda x, options: f"The best answer is {x}.",
    "answer_colon": lambda x, options: f"Answer: {x}",
    "lowercase_the_answer_is": lambda x, options: f"Based on the video, the answer is {x}.",
    "best_option_colon": lambda x, options: f"Best option: {x}",
    "parenthesised": lambda x, options: f"({x})",
    "lowercase_letter": lambda x, options: x.lower(),
    "verbose_no_letter": lambda x, options: f"It is the {_text(options, x).lower()} that the video shows.",
    "sentence_then_letter": lambda x, options: f"After watching it all, I choose {x}.",
    "refusal": lambda x, options: "I cannot tell from the video.",
}


def simulate_responses(
    records: Sequence[Mapping[str, Any]], *, seed: int, styles: Mapping[str, float], correct_prob: float
) -> list[dict[str, Any]]:
    """Copies of ``records`` with a ``response`` drawn per question (and ``style``, ``intended``)."""
    unknown = [s for s in styles if s not in RESPONSE_STYLES]
    if unknown:
        raise ValueError(f"unknown response styles {unknown}; choose from {', '.join(RESPONSE_STYLES)}.")
    names = [s for s, w in styles.items() if w > 0]
    if not names:
        raise ValueError("parity.styles needs at least one style with a positive weight.")
    weights = np.array([styles[s] for s in names], dtype=np.float64)
    weights /= weights.sum()
    rng = np.random.default_rng([seed, 7])
    out = []
    for record in records:
        style = names[int(rng.choice(len(names), p=weights))]
        right = record["answer"]
        if rng.random() < correct_prob:
            intended = right
        else:
            wrong = [letter for letter in OPTION_LETTERS if letter != right]
            intended = wrong[int(rng.integers(len(wrong)))]
        response = RESPONSE_STYLES[style](intended, record["options"])
        out.append({**record, "response": response, "style": style, "intended": intended})
    return out
