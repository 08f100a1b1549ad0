"""The official IITC/ITA scorers on the expected outputs of the notes (§5.5), computed with the official logic."""

from __future__ import annotations

import math
import random

import pytest
from paperzoo_vega.modeling_vega import (
    bleu_official,
    iitc_cited_pictures,
    iitc_picture_correct,
    iitc_text_scores,
    ita_correct,
    rouge_l_official,
    rouge_l_standard,
)
from paperzoo_vega.scoring import score_iitc, score_ita


# ---- IITC picture accuracy (truth_fig_idx is 0-based; the citation is 1-based) -----------------------
@pytest.mark.parametrize(
    ("response", "truth", "expected"),
    [
        ("As shown in [Picture 2](Figure. 3), the loss falls.", 1, True),
        ("[Picture 2] and [Picture 3] show it.", 1, False),  # two citations
        ("Picture 2 shows the loss.", 1, False),  # no brackets
        ("[Picture2] shows the loss.", 1, True),  # the no-space fallback pattern
        ("[Picture 1] first, then again [Picture 1].", 0, False),  # the right picture twice
        ("[Picture 1] shows it.", 0, True),
        ("[Picture 1] shows it.", "0", True),  # truth_fig_idx as a string, int() as the script
        ("[Picture 3] shows it.", 1, False),  # wrong picture
        ("", 0, False),
        ("[Picture 2] and [Picture3]", 1, True),  # the fallback is only tried when the first finds nothing
        ("[Picture2] and [Picture3]", 1, False),  # fallback finds two
        ("[picture 2]", 1, False),  # case-sensitive
    ],
)
def test_iitc_picture_accuracy(response: str, truth: int, expected: bool) -> None:
    assert iitc_picture_correct(response, truth) is expected


def test_no_citation_is_zero() -> None:
    assert iitc_cited_pictures("no picture here") == [0]
    assert not iitc_picture_correct("no picture here", 0)  # [0] never equals truth_fig_idx + 1 >= 1
    assert iitc_cited_pictures("[Picture 12] then [Picture 3]") == [12, 3]


# ---- ITA ------------------------------------------------------------------------------------------------
GT = "T1:[Picture 2] T2:[Picture 3] T3:[Picture 1]"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (GT, True),
        ("T1:[Picture 2] T2:[Picture 3]", False),  # missing T3
        (GT + " T4:[Picture 5]", True),  # extras ignored
        ("Picture 2, Picture 3, Picture 1", True),  # brackets optional, labels unread
        ("T3:[Picture 1] T1:[Picture 2] T2:[Picture 3]", False),  # same pairs, other order
        ("", False),
        ("T1:[Picture 2] T2:[Picture 1] T3:[Picture 3]", False),
    ],
)
def test_ita_accuracy(response: str, expected: bool) -> None:
    assert ita_correct(response, GT) is expected


def test_ita_answer_without_pictures_is_correct() -> None:
    assert ita_correct("anything", "no pictures in this answer")


# ---- ROUGE-L as pltrdy's package computes it (values of the notes, §5.5) -----------------------------
def test_rouge_l_official_goldens() -> None:
    hyp = "The [Picture 2](Figure. 3) shows that the loss decreases."
    ref = "The [Picture 2](Figure. 3) shows that loss decreases quickly."
    assert rouge_l_official(hyp, ref) == pytest.approx(0.8889, abs=5e-5)
    assert rouge_l_official("the the the cat", "the cat") == pytest.approx(1.0, abs=1e-7)
    assert rouge_l_official("Loss decreases", "loss decreases") == pytest.approx(0.5, abs=1e-7)
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        rouge_l_official("", ref)


def test_rouge_l_matches_the_rouge_package_on_random_texts() -> None:
    rouge = pytest.importorskip("rouge")
    scorer = rouge.Rouge()
    rng = random.Random(0)
    words = ["The", "the", "loss", "[Picture", "2]", "2](Figure.", "3)", "shows.", "a", "b.", "c"]
    for _ in range(200):
        hyp = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        try:
            expected = scorer.get_scores(hyp, ref)[0]["rouge-l"]["f"]
        except ValueError:
            with pytest.raises(ValueError):
                rouge_l_official(hyp, ref)
            continue
        assert rouge_l_official(hyp, ref) == pytest.approx(expected, abs=1e-12), (hyp, ref)


def test_standard_rouge_l_differs_and_is_hand_computed() -> None:
    # LCS("the the the cat", "the cat") = 2; P = 2/4, R = 2/2, F = 2PR/(P+R) = 2/3
    assert rouge_l_standard("the the the cat", "the cat") == pytest.approx(2 / 3)
    assert rouge_l_standard("", "the cat") == 0.0


def test_bleu_hand_computed() -> None:
    # every n-gram precision is 1; brevity penalty exp(1 - 5/4)
    assert bleu_official("a b c d e", "a b c d") == pytest.approx(math.exp(-0.25), rel=1e-9)
    # method1: zero counts become 0.1 / total. hyp "a b x d", ref "a b c d":
    # p1 = 3/4, p2 = 1/3, p3 = 0.1/2, p4 = 0.1/1, BP = 1
    expected = math.exp(0.25 * (math.log(3 / 4) + math.log(1 / 3) + math.log(0.05) + math.log(0.1)))
    assert bleu_official("a b c d", "a b x d") == pytest.approx(expected, rel=1e-9)


def test_text_scores_zero_both_when_rouge_raises() -> None:
    assert iitc_text_scores("", "a b c") == (0.0, 0.0, True)
    assert iitc_text_scores("...", "a b c") == (0.0, 0.0, True)


# ---- file-level aggregation: every line in every denominator -----------------------------------------
def test_score_iitc_denominator_is_all_lines() -> None:
    records = [
        {"response": "[Picture 1] the cat", "answer": "the cat", "truth_fig_idx": 0},
        {"response": "", "answer": "the cat", "truth_fig_idx": 0},
        {"response": "[Picture 2] [Picture 2] the", "answer": "the cat", "truth_fig_idx": 1},
        {"response": "the cat", "answer": "the cat", "truth_fig_idx": 2},
    ]
    scores = score_iitc(records)
    assert scores["picture_acc"] == pytest.approx(1 / 4)
    expected_rouge = (
        rouge_l_official("[Picture 1] the cat", "the cat")
        + 0.0
        + rouge_l_official("[Picture 2] [Picture 2] the", "the cat")
        + 1.0
    ) / 4
    assert scores["rouge_l"] == pytest.approx(expected_rouge)
    # hand values: 1: union{the,cat}=2, m=2, n=4 -> P=.5 R=1 -> 2/3; 3: union{the}=1, m=2, n=3 -> P=1/3 R=1/2
    assert expected_rouge == pytest.approx(
        (2 / 3 + 0 + 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2) + 1) / 4, abs=1e-7
    )
    assert scores["n"] == 4 and scores["text_failures"] == 1


def test_score_ita() -> None:
    records = [{"response": GT, "answer": GT}, {"response": "Picture 2", "answer": GT}]
    assert score_ita(records) == {"accuracy": 0.5, "n": 2.0}


# ---- what mutation testing found unchecked -----------------------------------------------------------
def test_score_iitc_means_of_every_metric_and_a_single_record() -> None:
    records = [
        {"response": "a b c d", "answer": "a b c d e", "truth_fig_idx": 0},
        {"response": "a b x d", "answer": "a b c d", "truth_fig_idx": 0},
    ]
    scores = score_iitc(records)
    bleu = (
        math.exp(-0.25)
        + math.exp(0.25 * (math.log(3 / 4) + math.log(1 / 3) + math.log(0.05) + math.log(0.1)))
    ) / 2
    assert scores["bleu"] == pytest.approx(bleu)
    # standard ROUGE-L: LCS 4 of (4, 5) -> 2*1*.8/1.8; LCS 3 of (4, 4) -> .75
    assert scores["rouge_l_standard"] == pytest.approx((2 * 0.8 / 1.8 + 0.75) / 2)
    one = score_iitc(records[:1])
    assert one["n"] == 1 and one["bleu"] == pytest.approx(math.exp(-0.25))


def test_empty_and_incomplete_records() -> None:
    from paperzoo_shared.data.errors import DataError

    with pytest.raises(DataError, match=r"^no IITC records to score$"):
        score_iitc([])
    with pytest.raises(DataError, match=r"^no ITA records to score$"):
        score_ita([])
    with pytest.raises(DataError, match=r"record 1 has no 'truth_fig_idx' field \(keys: answer, response\)"):
        score_iitc([{"response": "", "answer": "", "truth_fig_idx": 0}, {"response": "", "answer": ""}])
    with pytest.raises(DataError, match="record 0 has no 'response' field"):
        score_ita([{"answer": "x"}])
    with pytest.raises(DataError, match="record 0 has no 'answer' field"):
        score_ita([{"response": "x"}])


def test_bleu_failure_after_rouge_keeps_rouge(monkeypatch: pytest.MonkeyPatch) -> None:
    import paperzoo_vega.modeling_vega as mv

    def broken(answer: str, response: str) -> float:
        raise ZeroDivisionError

    monkeypatch.setattr(mv, "bleu_official", broken)
    assert mv.iitc_text_scores("the cat", "the cat") == (pytest.approx(1.0), 0.0, True)


def test_none_prompt_style() -> None:
    from paperzoo_vega.modeling_vega import build_query

    assert build_query("iitc", "ctx", "q?", style="none") == "ctx\nQuestion:q?"
    assert build_query("ita", "ctx", style="none") == "ctx"
    with pytest.raises(ValueError, match=r"^an IITC query needs a question$"):
        build_query("iitc", "ctx", style="none")
    with pytest.raises(ValueError, match="task must be one of"):
        build_query("other", "ctx")  # type: ignore[arg-type]


def test_output_files_duplicates_task_and_errors(tmp_path) -> None:
    import json

    from paperzoo_vega.scoring import score_output_file, score_records

    from paperzoo_shared.data.errors import DataError

    iitc = {"id": "p", "question": "q1", "context": "c", "answer": "[Picture 1] a", "truth_fig_idx": 0,
            "response": "[Picture 1] a"}  # fmt: skip
    lines = [iitc, {**iitc, "question": "q2"}, {**iitc, "context": "c2"}, iitc]  # the last: an appended rerun
    path = tmp_path / "results_final.json"
    path.write_text(
        "\n".join(json.dumps(r) for r in lines[:2])
        + "\n\n"
        + "\n".join(json.dumps(r) for r in lines[2:])
        + "\n"
    )
    scores = score_output_file(path)
    assert scores["task"] == "iitc" and scores["n"] == 4 and scores["duplicates"] == 1
    ita = tmp_path / "ita.json"
    ita.write_text(json.dumps({"id": ["a"], "answer": GT, "response": GT}) + "\n")
    assert score_output_file(ita) == {"accuracy": 1.0, "n": 1.0, "duplicates": 0.0, "task": "ita"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(iitc) + "\n\n[1]\n")
    with pytest.raises(DataError, match=r"bad\.json:3: expected a JSON object, got list"):
        score_output_file(bad)
    bad.write_text(json.dumps(iitc) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad\.json:2: not valid JSON"):
        score_output_file(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty.json: no records to score"):
        score_output_file(empty)
    with pytest.raises(ValueError, match="task must be 'iitc' or 'ita'"):
        score_records("x", [])  # type: ignore[arg-type]


def test_missing_iitc_fields_name_their_record() -> None:
    from paperzoo_shared.data.errors import DataError

    full = {"response": "", "answer": "", "truth_fig_idx": 0}
    for key in ("response", "answer"):
        partial = {k: v for k, v in full.items() if k != key}
        with pytest.raises(DataError, match=rf"^record 1 has no '{key}' field"):
            score_iitc([full, partial])


def test_duplicates_are_keyed_on_id_question_and_context(tmp_path) -> None:
    import json

    from paperzoo_vega.scoring import score_output_file

    # two papers asked the same question over the same context: not a rerun, so no duplicate
    base = {"question": "q", "context": "c", "answer": "a", "truth_fig_idx": 0, "response": "a"}
    path = tmp_path / "two_papers.json"
    path.write_text("".join(json.dumps({**base, "id": paper}) + "\n" for paper in ("p1", "p2", "p1")))
    assert score_output_file(path)["duplicates"] == 1.0  # only the second "p1" line repeats


def test_output_file_is_read_as_utf8_whatever_the_locale(tmp_path) -> None:
    # the official IITC prompt asks for an answer in Chinese when the context does not give one
    import json
    import locale

    from paperzoo_vega.scoring import read_output_file

    record = {"id": "p", "answer": "[Picture 1] a", "truth_fig_idx": 0, "response": "图片 [Picture 1]"}
    path = tmp_path / "zh.json"
    path.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: open() without an encoding fails here
    try:
        assert read_output_file(path) == [record]
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
