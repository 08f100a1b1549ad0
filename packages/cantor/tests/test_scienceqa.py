"""Notes Sec. 5.7: the ScienceQA reader, the official scorer (tools/evaluate_acc.py) and extractor
(models/run_gpt3.py) on a hand-made problems.json; expected values are computed by hand below."""

from __future__ import annotations

import json
import random

import pytest
from paperzoo_cantor.benchmarks import scienceqa
from paperzoo_cantor.evaluate import option_index, scienceqa_verdict

from paperzoo_shared.data import DataError

# pid: (subject, hint, image, grade, answer, prediction)
TABLE = {
    "1": ("natural science", "h", None, "grade1", 0, 0),  # ok
    "2": ("natural science", "", "image.png", "grade3", 1, 1),  # ok
    "3": ("natural science", "h", "image.png", "grade8", 2, 0),  # wrong
    "4": ("natural science", "", None, "grade10", 0, 0),  # ok
    "5": ("social science", "h", None, "grade2", 1, 0),  # wrong
    "6": ("social science", "", "image.png", "grade7", 0, 0),  # ok
    "7": ("social science", None, None, "grade12", 1, 1),  # ok (hint null counts as no hint)
    "8": ("language science", "h", None, "grade4", 0, 1),  # wrong
    "9": ("language science", "", None, "grade5", 2, 2),  # ok
    "10": ("language science", "h", "image.png", "grade9", 3, 3),  # ok
}


def _problems(split="test"):
    return {
        pid: {
            "question": f"q{pid}",
            "choices": ["a", "b", "c", "d"],
            "answer": ans,
            "hint": hint,
            "image": image,
            "subject": subject,
            "grade": grade,
            "split": split,
        }  # fmt: skip
        for pid, (subject, hint, image, grade, ans, _) in TABLE.items()
    }


PREDICTIONS = {pid: row[5] for pid, row in TABLE.items()}

# by hand: NAT 3/4, SOC 2/3, LAN 2/3, TXT (1,3,5,8,10) 2/5, IMG (2,3,6,10) 3/4, NO (4,7,9) 3/3,
# G1-6 (1,2,5,8,9) 3/5, G7-12 (3,4,6,7,10) 4/5, Avg 7/10
EXPECTED = {"NAT": 75.0, "SOC": 200 / 3, "LAN": 200 / 3, "TXT": 40.0, "IMG": 75.0, "NO": 100.0, "G1-6": 60.0,
            "G7-12": 80.0, "Avg": 70.0}  # fmt: skip


def test_category_accuracies_match_evaluate_acc():
    scores = scienceqa.score(_problems(), PREDICTIONS)
    assert list(scores) == list(scienceqa.CATEGORIES)
    assert scores == pytest.approx(EXPECTED)


def test_average_divides_by_every_result_and_categories_use_the_test_split():
    problems = {**_problems(), "11": {**_problems()["1"], "split": "train"}}
    scores = scienceqa.score(problems, {**PREDICTIONS, "11": 0})
    assert scores["NAT"] == pytest.approx(75.0)  # the train problem is not in any category
    assert scores["Avg"] == pytest.approx(700 / 11)  # but counts in the official denominator


def test_empty_category_is_minus_one_and_full_test_check():
    scores = scienceqa.score(_problems(), {"1": 0, "2": 1})
    assert scores["SOC"] == -1 and scores["LAN"] == -1 and scores["NAT"] == 100.0
    with pytest.raises(ValueError, match="4241"):
        scienceqa.score(_problems(), PREDICTIONS, require_full_test=True)
    with pytest.raises(KeyError, match="unknown pid '99'"):
        scienceqa.score(_problems(), {"99": 0})
    # no prediction at all: every column is the official -1
    assert scienceqa.score(_problems(), {}) == {k: -1.0 for k in scienceqa.CATEGORIES}


def test_a_train_problem_anywhere_in_the_results_is_skipped():
    problems = {**_problems(), "11": {**_problems()["1"], "split": "train"}}
    predictions = {"11": 0, **PREDICTIONS}  # the non-test problem first
    scores = scienceqa.score(problems, predictions)
    assert scores["NAT"] == pytest.approx(75.0) and scores["Avg"] == pytest.approx(700 / 11)


def test_problems_without_a_split_field_count_as_the_split_scored():
    problems = {pid: {k: v for k, v in p.items() if k != "split"} for pid, p in _problems().items()}
    assert scienceqa.score(problems, PREDICTIONS) == pytest.approx(EXPECTED)


def test_no_context_needs_neither_hint_nor_image():
    # a: no hint, no image, wrong; b: no hint but an image, right. By hand: NO 0/1, IMG 1/1, TXT empty
    problems = {
        "a": {"subject": "natural science", "grade": "grade1", "hint": "", "image": None, "answer": 0},
        "b": {"subject": "natural science", "grade": "grade1", "hint": "", "image": "image.png", "answer": 0},
    }
    scores = scienceqa.score(problems, {"a": 1, "b": 0}, split=None)
    assert (scores["NO"], scores["IMG"], scores["TXT"], scores["Avg"]) == (0.0, 100.0, -1.0, 50.0)


@pytest.mark.parametrize(
    ("output", "letter"),
    [
        ("The answer is B.", "B"),
        ("Because ... The answer is C. BECAUSE: x", "C"),
        ("The answer is B", "FAILED"),  # the '.' needs one more character
        ("The answer is B!", "B"),  # '.' is any character
        ("The answer is (B).", "FAILED"),
        ("The answer is A. The answer is B.", "FAILED"),  # must match exactly once
        ("the answer is B.", "FAILED"),
        ("Answer: B", "FAILED"),
    ],
)
def test_official_extractor(output, letter):
    assert scienceqa.extract_official(output) == letter


def test_pred_index_random_fallback_is_seeded():
    assert scienceqa.pred_index("C", 3, random.Random(0)) == 2
    # E is out of range for 3 choices: the official get_pred_idx draws random.choice(range(3))
    assert scienceqa.pred_index("E", 3, random.Random(7)) == random.Random(7).choice(range(3))
    assert scienceqa.pred_index("FAILED", 4, random.Random(1)) == random.Random(1).choice(range(4))


@pytest.mark.parametrize(
    ("answer", "index"),
    [
        ("B", 1),
        ("(C)", 2),
        ("B. Solution A", 1),
        ("solution a", 1),
        ("Solution A.", 1),
        ("The answer is neither; their concentrations are the same", 0),
        ("I think sample B is hotter", None),
        ("E", None),  # out of range
        ("D", None),  # one past the last of three choices
        ("", None),
        ("**B**", 1),  # markdown bold around a letter
    ],
)
def test_option_matcher(answer, index):
    choices = ["neither; their concentrations are the same", "Solution A", "Solution B"]
    assert scienceqa.match_option(answer, choices) == index


def test_option_matcher_prefers_longest_contained_choice():
    assert scienceqa.match_option("It is sample AB", ["sample A", "sample AB"]) == 1
    assert scienceqa.match_option("so it is sample B for sure", ["sample", "sample B"]) == 1
    assert scienceqa.match_option("so it is sample B for sure", ["sample B", "sample"]) == 0


@pytest.mark.parametrize(
    ("answer", "choices", "index"),
    [
        ("Washington, D.C", ["Washington, D.C.", "Boston"], 0),  # a final '.' is ignored on both sides
        ("yes it is", ["Yes, it is", "No, it is not"], 0),  # punctuation is a space
        ("Xenon", ["Argon", "Xenon"], 1),  # only '*' is stripped from the ends, not letters
    ],
)
def test_option_matcher_normalises_text(answer, choices, index):
    assert scienceqa.match_option(answer, choices) == index


def test_both_readings_of_a_cantor_reply():
    choices = ("red", "blue", "green")
    verdict = scienceqa_verdict("Rationale: it is blue.\nAnswer: (B) blue", choices, 1, "7", seed=0)
    assert verdict["extraction"] == {"official_regex": "FAILED", "option_match": 1}
    assert verdict["prediction"]["option_match"] == 1
    assert verdict["prediction"]["official_regex"] == random.Random("0:7:official").choice(range(3))
    assert option_index("... The answer is C.", choices) == 2


def _write_release(root, image="image.png"):
    problems = _problems()
    problems["2"]["image"] = image
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps({"train": [], "val": [], "test": list(problems)}))
    return problems


def test_loader_reads_the_release_layout(tmp_path):
    _write_release(tmp_path)
    (tmp_path / "images" / "test" / "2").mkdir(parents=True)
    items = scienceqa.load_scienceqa(tmp_path)
    assert [it.pid for it in items] == list(TABLE)
    assert items[1].image == tmp_path / "images" / "test" / "2" / "image.png"
    assert items[0].image is None and items[6].hint == ""
    first = items[0]
    assert (first.question, first.choices, first.answer, first.hint) == ("q1", ("a", "b", "c", "d"), 0, "h")
    assert (first.subject, first.grade) == ("natural science", "grade1")
    assert [it.pid for it in scienceqa.load_scienceqa(tmp_path, limit=3)] == ["1", "2", "3"]
    image_only = scienceqa.load_scienceqa(tmp_path, image_only=True)
    assert [it.pid for it in image_only] == ["2", "3", "6", "10"]
    assert scienceqa.score_items(items, PREDICTIONS) == pytest.approx(EXPECTED)


def test_loader_without_an_images_folder_reads_split_folders(tmp_path):
    _write_release(tmp_path)  # <root>/test/<pid>/<image>, as some mirrors unpack it
    (tmp_path / "test" / "2").mkdir(parents=True)
    items = scienceqa.load_scienceqa(tmp_path)
    assert items[1].image == tmp_path / "test" / "2" / "image.png"


def test_loader_rejects_an_image_path_outside_the_root(tmp_path):
    _write_release(tmp_path, image="../../../etc/passwd")
    with pytest.raises(DataError, match=r"problems\.json \(entry 2\) leaves the data root"):
        scienceqa.load_scienceqa(tmp_path)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="problems.json"):
        scienceqa.load_scienceqa(tmp_path)
    problems = _write_release(tmp_path)
    with pytest.raises(DataError, match=r"no split 'minival' \(has test, train, val\)"):
        scienceqa.load_scienceqa(tmp_path, split="minival")
    problems["4"]["answer"] = 4  # one past the last of four choices
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    with pytest.raises(DataError, match="answer 4 for 4 choices"):
        scienceqa.load_scienceqa(tmp_path)
    (tmp_path / "pid_splits.json").write_text(json.dumps({"test": ["1", "99"]}))
    with pytest.raises(DataError, match="pid '99' of split 'test' is not in"):
        scienceqa.load_scienceqa(tmp_path)
    (tmp_path / "problems.json").write_text("{not json")
    with pytest.raises(DataError, match="problems.json: not valid JSON"):
        scienceqa.load_scienceqa(tmp_path)


def test_loader_reads_utf8_whatever_the_locale(tmp_path):
    import locale

    problems = _write_release(tmp_path)
    problems["1"]["question"] = "Which is 25\u00b0C?"
    (tmp_path / "problems.json").write_bytes(json.dumps(problems, ensure_ascii=False).encode("utf-8"))
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: reading without an encoding fails here
    try:
        assert scienceqa.load_scienceqa(tmp_path)[0].question == "Which is 25\u00b0C?"
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


def test_prompts():
    item = scienceqa.ScienceQAItem("1", "Which?", ("x", "y"), 0, "", None, "natural science", "grade1", {})
    assert scienceqa.qcm_prompt(item) == "Question: Which?\nContext: N/A\nOptions: (A) x (B) y\nAnswer:"
    assert scienceqa.cantor_query(item, caption="A cat.") == "Which?\nContext: A cat.\nOptions: (A) x (B) y"
    assert scienceqa.cantor_query(item, with_context=False) == "Which?"
    assert scienceqa.cantor_query(item) == "Which?\nContext: N/A\nOptions: (A) x (B) y"
    assert scienceqa.context_text(item) == "N/A"
    assert (
        scienceqa.qcm_prompt(item, caption="A cat.")
        == "Question: Which?\nContext: A cat.\nOptions: (A) x (B) y\nAnswer:"
    )
    # create_one_example's replace("  ", " "): one pass, so three spaces become two
    spaced = scienceqa.ScienceQAItem(
        "1", "Which  one   now?", ("x",), 0, "", None, "natural science", "grade1", {}
    )
    assert scienceqa.qcm_prompt(spaced) == "Question: Which one  now?\nContext: N/A\nOptions: (A) x\nAnswer:"
