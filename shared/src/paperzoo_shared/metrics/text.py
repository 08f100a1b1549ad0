"""ROUGE-L in two variants: plain sentence-level LCS, and the union-LCS of pltrdy's ``rouge`` (VEGA).

* ``variant="lcs"``: ROUGE-L of Lin (2004) at sentence level over whitespace tokens. With ``L`` the length
  of the longest common subsequence, ``P = L / len(hyp)``, ``R = L / len(ref)`` and
  ``F = (1 + beta^2) P R / (R + beta^2 P)``; 0.0 when either side has no tokens (as Google's
  ``rouge-score`` does). No stemming, and no lowercasing unless ``lowercase=True``.
* ``variant="pltrdy"``: ``Rouge().get_scores(hyp, ref)[0]["rouge-l"]["f"]`` of the pip package ``rouge``
  1.0.x (pltrdy), which VEGA's ``eval/IITC.py`` reports. It is *summary-level union-LCS* ROUGE-L, not
  ``rouge-score``'s, and the numbers differ. Both texts are split into sentences on ``"."`` (so
  ``"Figure. 3"`` splits), each sentence into tokens on whitespace, with no lowercasing, stemming or
  punctuation stripping. The matched token count is the number of *distinct* tokens in the union over all
  (reference sentence, hypothesis sentence) pairs of the LCS that the package reconstructs, and the
  lengths are numbers of distinct tokens; ``F = 2 P R / (P + R + 1e-8)``. An empty hypothesis or reference
  (no sentence left after the split, e.g. ``""`` or ``"..."``) raises ``ValueError`` as the package does;
  VEGA scores such items 0 (:func:`rouge_l_corpus` with ``on_error="zero"``).

  One difference is deliberate: the package reconstructs the LCS recursively, one call per traceback step,
  and raises ``RecursionError`` (which VEGA scores 0) once that path exceeds Python's recursion limit of
  1000, e.g. for two identical 1100-token sentences; this implementation is iterative and scores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Variant = Literal["lcs", "pltrdy"]


def _lcs_table(x: Sequence[str], y: Sequence[str]) -> list[list[int]]:
    """``table[i][j]`` = length of the LCS of ``x[:i]`` and ``y[:j]``."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table


def _reconstruct_lcs(x: Sequence[str], y: Sequence[str]) -> list[str]:
    """One LCS of ``x`` and ``y``, chosen by the traceback of pltrdy's ``_recon_lcs``.

    From the end: take the token if both match, else step back in ``x`` when that keeps a strictly longer
    LCS, otherwise step back in ``y``. Which LCS is chosen matters for the union-LCS token count.
    """
    table = _lcs_table(x, y)
    i, j = len(x), len(y)
    tokens: list[str] = []
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            tokens.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return tokens[::-1]


def _rouge_l_lcs(hypothesis: str, reference: str, beta: float) -> float:
    hyp_tokens, ref_tokens = hypothesis.split(), reference.split()
    if not hyp_tokens or not ref_tokens:
        return 0.0
    lcs = _lcs_table(hyp_tokens, ref_tokens)[-1][-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp_tokens), lcs / len(ref_tokens)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def _pltrdy_sentences(text: str) -> list[list[str]]:
    """pltrdy ``Rouge._get_scores`` + ``_split_into_words``: split on ".", drop empty pieces, split on " ".

    A whitespace-only piece survives the filter and becomes the one-token sentence ``[""]``, as in the
    package (e.g. the text after a final ``". "``).
    """
    return [" ".join(piece.split()).split(" ") for piece in text.split(".") if len(piece) > 0]


def _rouge_l_pltrdy(hypothesis: str, reference: str) -> float:
    hyp_sentences, ref_sentences = _pltrdy_sentences(hypothesis), _pltrdy_sentences(reference)
    if not hyp_sentences:
        raise ValueError("Hypothesis is empty.")
    if not ref_sentences:
        raise ValueError("Reference is empty.")
    union: set[str] = set()
    for ref_words in ref_sentences:
        for hyp_words in hyp_sentences:
            union.update(_reconstruct_lcs(ref_words, hyp_words))
    n_ref = len({token for sentence in ref_sentences for token in sentence})
    n_hyp = len({token for sentence in hyp_sentences for token in sentence})
    recall, precision = len(union) / n_ref, len(union) / n_hyp
    return 2.0 * precision * recall / (precision + recall + 1e-8)


def _check_options(variant: str, beta: float) -> None:
    if variant not in ("lcs", "pltrdy"):
        raise ValueError(f"variant must be 'lcs' or 'pltrdy', got {variant!r}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if variant == "pltrdy" and beta != 1.0:
        raise ValueError(f"the pltrdy variant has F = 2PR/(P+R+1e-8) and no beta; got beta={beta}")


def rouge_l(
    hypothesis: str,
    reference: str,
    *,
    variant: Variant = "lcs",
    beta: float = 1.0,
    lowercase: bool = False,
) -> float:
    """ROUGE-L F-measure of one hypothesis against one reference (see the module docstring).

    ``beta`` weights recall over precision in the ``"lcs"`` variant; the pltrdy package has no such
    parameter, so ``variant="pltrdy"`` requires ``beta == 1``. ``lowercase=True`` lowercases both texts
    first (in either variant; neither the pltrdy package nor VEGA does).
    """
    if not isinstance(hypothesis, str) or not isinstance(reference, str):
        raise TypeError(
            f"hypothesis and reference must be str, got {type(hypothesis).__name__} and "
            f"{type(reference).__name__}"
        )
    _check_options(variant, beta)
    if lowercase:
        hypothesis, reference = hypothesis.lower(), reference.lower()
    if variant == "lcs":
        return _rouge_l_lcs(hypothesis, reference, beta)
    return _rouge_l_pltrdy(hypothesis, reference)


def rouge_l_corpus(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    variant: Variant = "lcs",
    on_error: Literal["zero", "raise"] = "zero",
    beta: float = 1.0,
    lowercase: bool = False,
) -> float:
    """Mean sentence ROUGE-L over all pairs (VEGA ``IITC.py``: every line counts in the denominator).

    ``on_error="zero"``: an item whose score raises ``ValueError`` (an empty hypothesis or reference in the
    pltrdy variant) contributes 0, as VEGA's ``try/except`` does; ``"raise"`` propagates it.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if len(hypotheses) == 0:
        raise ValueError("no hypotheses to score")
    if on_error not in ("zero", "raise"):
        raise ValueError(f"on_error must be 'zero' or 'raise', got {on_error!r}")
    _check_options(variant, beta)  # before the loop, so a bad option is not silently scored 0
    total = 0.0
    for hypothesis, reference in zip(hypotheses, references):
        try:
            total += rouge_l(hypothesis, reference, variant=variant, beta=beta, lowercase=lowercase)
        except ValueError:
            if on_error == "raise":
                raise
    return total / len(hypotheses)
