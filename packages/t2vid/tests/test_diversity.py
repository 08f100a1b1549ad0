"""§4.1 T2Vid 8: the diversity score on hand-made cases, both embedders, the t-SNE plot."""

from __future__ import annotations

import numpy as np
import pytest
from paperzoo_t2vid.diversity import (
    analyse,
    bootstrap_diversity,
    diversity_score,
    embedder,
    first_instruction,
)


def test_score_on_hand_made_vectors() -> None:
    assert diversity_score(np.ones((5, 3))) == pytest.approx(0.0)
    assert diversity_score(np.eye(4)) == pytest.approx(1.0)
    assert diversity_score(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(2.0)
    # cos(a, b) = 0.6, cos(a, c) = 0, cos(b, c) = 0.8: mean 1.4 / 3, score 1 - 0.4667
    e = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 5.0]])
    assert diversity_score(e) == pytest.approx(1 - 1.4 / 3)
    # scale-invariant per row
    assert diversity_score(e * np.array([[3.0], [0.5], [7.0]])) == pytest.approx(1 - 1.4 / 3)
    with pytest.raises(ValueError, match="zero vector"):
        diversity_score(np.array([[0.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        diversity_score(np.ones((1, 3)))


def test_bootstrap_difference_is_centred_on_the_difference() -> None:
    rng = np.random.default_rng(0)
    tight = np.ones((60, 8)) + 0.05 * rng.standard_normal((60, 8))
    spread = rng.standard_normal((60, 8))
    diff = bootstrap_diversity(spread, pair_with=tight, resamples=300, seed=1)
    point = diversity_score(spread) - diversity_score(tight)
    assert np.percentile(diff, 2.5) > 0 and abs(np.median(diff) - point) < 0.1


TEMPLATED = [
    f"What is the {w} doing in the video?" for w in ("man", "woman", "boy", "girl", "dog", "cat")
] * 3
VARIED = [
    "Summarize the legal arguments of the appeal in three bullet points.",
    "Translate the second paragraph into formal German.",
    "Which enzyme limits the rate of glycolysis, according to the paper?",
    "Write a limerick about a lighthouse keeper.",
    "Estimate the cost of the bridge repairs described in the report.",
    "List every character who betrays the queen, in order of appearance.",
    "Explain the proof of the lemma to a first-year student.",
    "Compare the two tax proposals and recommend one.",
    "What year did the railway reach the northern valley?",
]


def test_first_instruction_strips_placeholders() -> None:
    assert first_instruction({"conversations": [{"from": "human", "value": "<video>\nWhat?"}]}) == "What?"
    record = {"conversations": [{"role": "user", "content": "<image_00>\n<image_01>\nDescribe.\nBriefly."}]}
    assert first_instruction(record) == "Describe.\nBriefly."


def test_tfidf_varied_beats_templated() -> None:
    embed = embedder("tfidf", fit_on=TEMPLATED + VARIED)
    assert diversity_score(embed(VARIED)) > diversity_score(embed(TEMPLATED)) + 0.2


def test_minilm_ranks_paraphrases_below_varied_instructions_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embed = embedder("minilm")
    e = embed(["Describe the video in detail."] * 3 + VARIED)
    assert e.shape == (12, 384)
    assert diversity_score(e[:3]) == pytest.approx(0.0, abs=1e-5)  # identical sentences
    paraphrases = embed(["Describe this video in detail.", "Give a detailed description of the video.",
                         "Please describe the video thoroughly.", "Explain in detail what the video shows."])  # fmt: skip
    assert diversity_score(e[3:]) > diversity_score(paraphrases) + 0.3


def test_analyse_writes_a_tsne_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    scores = analyse({"templated": TEMPLATED, "varied": VARIED * 2}, "tfidf", plot=tmp_path / "tsne.png")
    assert scores["varied"] > scores["templated"]
    assert (tmp_path / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
