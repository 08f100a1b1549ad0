"""ROUGE-L: hand-computed LCS cases, the VEGA goldens, and a randomized check against the pltrdy package."""

from __future__ import annotations

import random

import pytest

from paperzoo_shared.metrics import rouge_l, rouge_l_corpus


def f_measure(lcs: int, n_hyp: int, n_ref: int, beta: float = 1.0) -> float:
    p, r = lcs / n_hyp, lcs / n_ref
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def test_lcs_variant_hand_computed():
    # Lin (2004) example: LCS("police killed the gunman", "police kill the gunman") = 3 of 4 tokens each
    assert rouge_l("police kill the gunman", "police killed the gunman") == pytest.approx(0.75)
    # LCS("a b c d e", "a c e f") = "a c e": P = 3/4, R = 3/5, F = 2PR/(P+R) = 2/3
    assert rouge_l("a c e f", "a b c d e") == pytest.approx(f_measure(3, 4, 5), abs=1e-12)
    assert rouge_l("a c e f", "a b c d e") == pytest.approx(2 / 3, abs=1e-12)
    # beta = 2 weights recall: F = 5 P R / (R + 4 P) with P = 3/4, R = 3/5
    assert rouge_l("a c e f", "a b c d e", beta=2.0) == pytest.approx(5 * 0.75 * 0.6 / (0.6 + 3.0), abs=1e-12)
    # repeated tokens count in the "lcs" variant: LCS("the the the cat", "the cat") = 2 -> P = 2/4, R = 1
    assert rouge_l("the the the cat", "the cat") == pytest.approx(f_measure(2, 4, 2), abs=1e-12)
    # no lowercasing unless asked; whitespace of any kind separates tokens
    assert rouge_l("Loss decreases", "loss decreases") == pytest.approx(0.5)
    assert rouge_l("Loss  decreases\n", "loss decreases", lowercase=True) == 1.0
    assert rouge_l("x y", "a b") == 0.0
    assert rouge_l("", "a b") == 0.0
    assert rouge_l("a b", "   ") == 0.0


def test_pltrdy_goldens_from_vega_notes():
    hyp = "The [Picture 2](Figure. 3) shows that the loss decreases."
    ref = "The [Picture 2](Figure. 3) shows that loss decreases quickly."
    assert round(rouge_l(hyp, ref, variant="pltrdy"), 4) == 0.8889
    assert round(rouge_l("the the the cat", "the cat", variant="pltrdy"), 4) == 1.0  # unique tokens
    assert round(rouge_l("Loss decreases", "loss decreases", variant="pltrdy"), 4) == 0.5  # case-sensitive
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        rouge_l("", ref, variant="pltrdy")
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        rouge_l("...", ref, variant="pltrdy")  # only empty sentences
    with pytest.raises(ValueError, match="Reference is empty"):
        rouge_l(hyp, "", variant="pltrdy")


def test_pltrdy_hand_computed():
    # Sentences: hyp ["The [Picture 2](Figure", "3) shows that the loss decreases"],
    # ref ["The [Picture 2](Figure", "3) shows that loss decreases quickly"]. Distinct tokens: hyp 9
    # (The, [Picture, 2](Figure, 3), shows, that, the, loss, decreases), ref 9 (... loss, decreases,
    # quickly). Union of the sentence-pair LCS tokens: The, [Picture, 2](Figure, 3), shows, that, loss,
    # decreases = 8. P = R = 8/9, F = 2 (8/9)^2 / (16/9 + 1e-8).
    hyp = "The [Picture 2](Figure. 3) shows that the loss decreases."
    ref = "The [Picture 2](Figure. 3) shows that loss decreases quickly."
    p = r = 8 / 9
    assert rouge_l(hyp, ref, variant="pltrdy") == pytest.approx(2 * p * r / (p + r + 1e-8), abs=1e-15)
    # "the the the cat" vs "the cat": 2 distinct tokens each, LCS {the, cat}: 2 / (2 + 1e-8)
    assert rouge_l("the the the cat", "the cat", variant="pltrdy") == pytest.approx(2 / (2 + 1e-8), abs=1e-15)


VOCABULARY = ["the", "The", "loss", "cat", "a", "b", "c", "[Picture", "2]", "shows", "Figure", "x"]


def random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 14)):
        parts.append(rng.choice(VOCABULARY))
        roll = rng.random()
        if roll < 0.15:
            parts.append(".")
        elif roll < 0.2:
            parts.append(". ")
        elif roll < 0.25:
            parts.append("  ")
    separator = rng.choice([" ", " ", "  "])
    text = separator.join(parts)
    return text + rng.choice(["", ".", ". ", " "])


def test_pltrdy_matches_the_rouge_package():
    rouge = pytest.importorskip("rouge")
    scorer = rouge.Rouge()
    rng = random.Random(1234)
    checked = 0
    for _ in range(300):
        hyp, ref = random_text(rng), random_text(rng)
        try:
            expected = scorer.get_scores(hyp, ref)[0]["rouge-l"]["f"]
        except ValueError:
            with pytest.raises(ValueError):
                rouge_l(hyp, ref, variant="pltrdy")
            continue
        assert rouge_l(hyp, ref, variant="pltrdy") == pytest.approx(expected, abs=1e-12), (hyp, ref)
        checked += 1
    assert checked > 250
    # the package's quirks: a whitespace-only piece after the last "." becomes an empty-string token
    for hyp, ref in [("a b. ", "a b"), ("a b.", "a b. "), (" ", "a"), ("a.. b", "b a"), ("a\tb", "a b")]:
        expected = scorer.get_scores(hyp, ref)[0]["rouge-l"]["f"]
        assert rouge_l(hyp, ref, variant="pltrdy") == pytest.approx(expected, abs=1e-12), (hyp, ref)


def test_corpus_mean_and_error_policy():
    hyps = ["a b c", "", "x"]
    refs = ["a b c", "a b", "y"]
    # VEGA: the empty hypothesis raises in the package and contributes 0; denominator is all 3 lines
    expected = (rouge_l("a b c", "a b c", variant="pltrdy") + 0.0 + 0.0) / 3
    assert rouge_l_corpus(hyps, refs, variant="pltrdy") == pytest.approx(expected, abs=1e-15)
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        rouge_l_corpus(hyps, refs, variant="pltrdy", on_error="raise")
    assert rouge_l_corpus(hyps, refs) == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        rouge_l_corpus(hyps[:2], refs)
    with pytest.raises(ValueError, match="variant"):
        rouge_l_corpus(hyps, refs, variant="rouge-score")  # a bad option is not swallowed by on_error
    with pytest.raises(ValueError, match="no hypotheses"):
        rouge_l_corpus([], [])


def test_option_errors():
    with pytest.raises(ValueError, match="no beta"):
        rouge_l("a", "a", variant="pltrdy", beta=2.0)
    with pytest.raises(ValueError, match="beta must be positive"):
        rouge_l("a", "a", beta=0.0)
    with pytest.raises(TypeError, match="must be str"):
        rouge_l(None, "a")
