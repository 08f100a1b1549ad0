"""Notes Sec. 5.7: MathVista's extraction rules and normalize_extracted_answer goldens, the scorer and the
reader. The GPT-4 extraction step is mocked (frozen extractions)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from paperzoo_cantor.benchmarks import mathvista

from paperzoo_shared.data import DataError

# sha256 of demo_prompt in evaluation/prompts/ext_ans.py at lupantech/MathVista 53d5258 (the official file)
DEMO_PROMPT_SHA256 = "a231722ced09cbd1f3fd16630ab58bf487f12e2f46ea0b26d1f2f6b5c50fb17c"


@pytest.mark.parametrize(
    ("extraction", "choices", "qtype", "atype", "precision", "expected"),
    [
        ("(B) 5", ["3", "5", "7"], "multi_choice", "text", None, "5"),
        ("B", ["3", "5", "7"], "multi_choice", "text", None, "5"),
        (
            "(b)",
            ["3", "5", "7"],
            "multi_choice",
            "text",
            None,
            "5",
        ),  # the letter in parentheses is upper-cased
        ("b", ["3", "5", "7"], "multi_choice", "text", None, "3"),  # a bare lower-case letter is not: nearest
        ("seven", ["six", "seven"], "multi_choice", "text", None, "seven"),
        (
            "D",
            ["six", "seven"],
            "multi_choice",
            "text",
            None,
            "six",
        ),  # out of range: nearest by edit distance
        (" 145° ", ["135°", "140°", "145°"], "multi_choice", "text", None, "145°"),
        ("4.0", None, "free_form", "integer", None, "4"),
        ("4.9", None, "free_form", "integer", None, "4"),  # int() truncates
        ("four", None, "free_form", "integer", None, None),
        ("3.14159", None, "free_form", "float", 2, "3.14"),
        ("2.5", None, "free_form", "float", 1, "2.5"),
        ("2.0", None, "free_form", "float", 1, "2.0"),
        ("x", None, "free_form", "float", 1, None),
        ("[2007, 2008]", None, "free_form", "list", None, "[2007, 2008]"),
        ("(C) 5", ["3", "5", "7"], "multi_choice", "text", None, "7"),  # the letter wins over the text
        (" B ", ["3", "5", "7"], "multi_choice", "text", None, "5"),  # stripped first
        (5, ["3", "5", "7"], "multi_choice", "text", None, "5"),  # a non-string extraction as str()
        ("", ["x", "y"], "multi_choice", "text", None, "x"),  # empty kept by default: nearest (a tie: first)
    ],
)
def test_normalize_extracted_answer(extraction, choices, qtype, atype, precision, expected):
    assert mathvista.normalize_extracted_answer(extraction, choices, qtype, atype, precision) == expected


def test_nearest_choice_ties_go_to_the_first():
    assert mathvista.get_most_similar("ab", ["aa", "bb"]) == "aa"
    assert mathvista.normalize_extracted_answer("", ["x", "y"], "multi_choice", "text", None, True) is None


MC = {"question_type": "multi_choice", "answer_type": "text", "choices": ["12", "15"], "query": "Q"}
INT = {"question_type": "free_form", "answer_type": "integer", "choices": None, "query": "Q"}
FLOAT = {"question_type": "free_form", "answer_type": "float", "choices": None, "query": "Q"}


@pytest.mark.parametrize(
    ("response", "problem", "quick", "expected"),
    [
        ("", INT, False, ""),
        ("15", MC, False, "15"),
        ("7", INT, False, "7"),
        ("7.0", INT, False, None),  # int("7.0") fails: to the LLM
        ("2.50", FLOAT, False, "2.5"),
        ('The answer is "15".', MC, True, "15"),
        ('The answer is "15".', MC, False, None),
        ("It is 7 apples", INT, False, None),
    ],
)
def test_extraction_rules(response, problem, quick, expected):
    assert mathvista.extract_by_rules(response, problem, quick) == expected


def test_quick_extraction_is_off_unless_asked():
    quick = 'The answer is "15".'
    assert mathvista.extract_by_rules(quick, MC) is None

    async def frozen(prompt):
        return "12"

    assert asyncio.run(mathvista.extract_answer(quick, MC, frozen)) == "12"  # the LLM, not the regex
    assert asyncio.run(mathvista.extract_answer(quick, MC, None, quick_extract=True)) == "15"


def test_is_correct_is_string_equality():
    assert mathvista.is_correct("5", "5")
    assert not mathvista.is_correct("5.0", "5") and not mathvista.is_correct(None, "5")


def test_llm_extraction_is_mocked_and_its_failure_gives_empty():
    seen = []

    async def frozen(prompt):
        seen.append(prompt)
        return "7"

    async def broken(prompt):
        raise RuntimeError("quota")

    assert asyncio.run(mathvista.extract_answer("It is 7 apples", INT, frozen)) == "7"
    assert seen[0].endswith("\n\nQ\n\nIt is 7 apples\n\nExtracted answer: ")
    assert asyncio.run(mathvista.extract_answer("It is 7 apples", INT, broken)) == ""
    assert asyncio.run(mathvista.extract_answer("It is 7 apples", INT, None)) == ""


def test_extraction_prompt_is_the_official_one():
    demo = mathvista.extraction_demo_prompt()
    assert hashlib.sha256(demo.encode()).hexdigest() == DEMO_PROMPT_SHA256
    assert (
        mathvista.extraction_prompt("QUERY", "RESP")
        == f"{demo.strip()}\n\nQUERY\n\nRESP\n\nExtracted answer: "
    )


PROBLEMS = [
    {"pid": "1", "metadata": {"task": "figure question answering", "skills": ["statistical reasoning"]}},
    {
        "pid": "2",
        "metadata": {
            "task": "figure question answering",
            "skills": ["statistical reasoning", "arithmetic reasoning"],
        },
    },
    {
        "pid": "3",
        "metadata": {
            "task": "geometry problem solving",
            "skills": ["geometry reasoning", "algebraic reasoning"],
        },
    },
    {"pid": "4", "metadata": {"task": "math word problem", "skills": ["arithmetic reasoning"]}},
    {"pid": "5", "metadata": {"task": "visual question answering", "skills": ["logical reasoning"]}},
]


def test_table3_columns_by_hand():
    correct = {"1": True, "2": False, "3": True, "4": True}  # pid 5 has no result
    scores = mathvista.score(PROBLEMS, correct)
    assert list(scores) == list(mathvista.COLUMNS)
    # FQA 1/2, GPS 1/1, MWP 1/1; STA (1,2) 1/2, ARI (2,4) 1/2, GEO 1/1, ALG 1/1; ALL 3/4
    assert scores["FQA"] == 50.0 and scores["GPS"] == 100.0 and scores["MWP"] == 100.0
    assert (
        scores["STA"] == 50.0 and scores["ARI"] == 50.0 and scores["GEO"] == 100.0 and scores["ALG"] == 100.0
    )
    assert scores["ALL"] == 75.0
    assert scores["TQA"] == -1.0 and scores["VQA"] == -1.0 and scores["LOG"] == -1.0


def test_a_problem_without_a_result_anywhere_is_skipped():
    correct = {"1": True, "2": False, "3": True, "4": True}
    reordered = [PROBLEMS[4], *PROBLEMS[:4]]  # pid 5 (no result) first
    assert mathvista.score(reordered, correct) == mathvista.score(PROBLEMS, correct)
    assert (
        mathvista.breakdown(reordered, correct)["task"] == mathvista.breakdown(PROBLEMS[:4], correct)["task"]
    )


def test_official_breakdown():
    problems = [{**p, "question_type": "free_form"} for p in PROBLEMS[:4]]
    out = mathvista.breakdown(problems, {"1": True, "2": False, "3": True, "4": True})
    assert out["skills"]["arithmetic reasoning"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert out["question_type"]["free_form"]["total"] == 4
    assert list(out["task"]) == ["geometry problem solving", "math word problem", "figure question answering"]


def _meta(task, **fields):
    return {"task": task, "skills": ["arithmetic reasoning"], **fields}


def test_breakdown_by_every_official_key_by_hand():
    problems = [
        {"pid": "a", "question_type": "free_form", "answer_type": "integer",
         "metadata": _meta("math word problem", language="english", source="IQTest", category="math-targeted-vqa",
                           context="synthetic scene", grade="elementary school")},
        {"pid": "b", "question_type": "free_form", "answer_type": "integer",
         "metadata": _meta("math word problem", language="english", source="IQTest", category="math-targeted-vqa",
                           context="synthetic scene", grade="elementary school")},
        {"pid": "c", "question_type": "multi_choice", "answer_type": "text",
         "metadata": _meta("figure question answering", language="chinese", source="FigureQA",
                           category="general-vqa", context="bar chart", grade="high school")},
    ]  # fmt: skip
    out = mathvista.breakdown(problems, {"a": True, "b": True, "c": False})
    two, one_wrong = {"correct": 2, "total": 2, "accuracy": 1.0}, {"correct": 0, "total": 1, "accuracy": 0.0}
    assert out == {
        "question_type": {"free_form": two, "multi_choice": one_wrong},
        "answer_type": {"integer": two, "text": one_wrong},
        "language": {"english": two, "chinese": one_wrong},
        "source": {"IQTest": two, "FigureQA": one_wrong},
        "category": {"math-targeted-vqa": two, "general-vqa": one_wrong},
        "task": {"math word problem": two, "figure question answering": one_wrong},
        "context": {"synthetic scene": two, "bar chart": one_wrong},
        "grade": {"elementary school": two, "high school": one_wrong},
        "skills": {"arithmetic reasoning": {"correct": 2, "total": 3, "accuracy": 2 / 3}},
    }


def _release(root, image="images/1.jpg", with_query_field=False):
    row = {"question": "How many?", "image": image, "choices": None, "unit": None, "precision": None,
           "answer": "3", "question_type": "free_form", "answer_type": "integer", "pid": "1",
           "metadata": {"task": "math word problem", "skills": ["arithmetic reasoning"]}}  # fmt: skip
    if with_query_field:
        row["query"] = "Hint: h\nQuestion: How many?"
    (root / "testmini.json").write_text(json.dumps({"1": row}))
    return row


def test_reader_with_query_json(tmp_path):
    _release(tmp_path)
    with pytest.raises(DataError, match="query.json"):
        mathvista.load_mathvista(tmp_path)
    (tmp_path / "query.json").write_text(json.dumps({"1": "Hint: h\nQuestion: How many?"}))
    (item,) = mathvista.load_mathvista(tmp_path)
    assert item.query == "Hint: h\nQuestion: How many?" and item.image == tmp_path / "images" / "1.jpg"
    assert item.choices is None and item.answer == "3"


def test_reader_fields_and_as_problem(tmp_path):
    rows = [
        {"pid": "7", "question": "Length of AB?", "image": "images/7.png", "choices": None, "unit": "cm",
         "precision": 1.0, "answer": "2.5", "question_type": "free_form", "answer_type": "float",
         "metadata": {"task": "geometry problem solving", "skills": ["geometry reasoning"], "language": "english"},
         "query": "Hint: one decimal.\nQuestion: Length of AB? (Unit: cm)"},
        {"pid": "8", "question": "Which?", "image": None, "choices": ["3", "5"], "unit": None, "precision": None,
         "answer": "5", "question_type": "multi_choice", "answer_type": "text", "query": "Q8"},
    ]  # fmt: skip
    (tmp_path / "rows.json").write_text(json.dumps(rows))  # a list, as the Hugging Face rows
    first, second = mathvista.load_mathvista(tmp_path, "rows.json")
    assert first.as_problem() == {
        "pid": "7", "query": "Hint: one decimal.\nQuestion: Length of AB? (Unit: cm)", "question": "Length of AB?",
        "choices": None, "unit": "cm", "precision": 1, "answer": "2.5", "question_type": "free_form",
        "answer_type": "float",
        "metadata": {"task": "geometry problem solving", "skills": ["geometry reasoning"], "language": "english"},
    }  # fmt: skip
    assert first.image == tmp_path / "images" / "7.png"
    assert (second.image, second.choices, second.precision, second.metadata) == (None, ("3", "5"), None, {})
    assert [it.pid for it in mathvista.load_mathvista(tmp_path, "rows.json", limit=1)] == ["7"]


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected data/testmini.json of the release"):
        mathvista.load_mathvista(tmp_path)
    (tmp_path / "testmini.json").write_text("{not json")
    with pytest.raises(DataError, match="testmini.json: not valid JSON"):
        mathvista.load_mathvista(tmp_path)
    row = _release(tmp_path, with_query_field=True)
    del row["question"]
    (tmp_path / "testmini.json").write_text(json.dumps({"1": row}))
    with pytest.raises(DataError, match="problem '1' is malformed"):
        mathvista.load_mathvista(tmp_path)
    row = _release(tmp_path, with_query_field=True)
    (tmp_path / "testmini.json").write_text(json.dumps({"1": {**row, "question_type": "yes_no"}}))
    with pytest.raises(DataError, match="problem '1' has question_type 'yes_no'"):
        mathvista.load_mathvista(tmp_path)


def test_reader_reads_utf8_whatever_the_locale(tmp_path):
    import locale

    row = {**_release(tmp_path), "question": "角度是多少?"}
    (tmp_path / "testmini.json").write_bytes(json.dumps({"1": row}, ensure_ascii=False).encode("utf-8"))
    (tmp_path / "query.json").write_bytes(
        json.dumps({"1": "问题: 角度是多少?"}, ensure_ascii=False).encode("utf-8")
    )
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: reading without an encoding fails here
    try:
        (item,) = mathvista.load_mathvista(tmp_path)
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert (item.question, item.query) == ("角度是多少?", "问题: 角度是多少?")


def test_reader_hf_rows_and_path_escape(tmp_path):
    row = _release(tmp_path, with_query_field=True)
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    (item,) = mathvista.load_mathvista(tmp_path, "rows.jsonl")
    assert item.query.startswith("Hint: h")
    _release(tmp_path, image="/etc/passwd", with_query_field=True)
    with pytest.raises(DataError, match=r"testmini\.json \(entry 1\) is absolute"):
        mathvista.load_mathvista(tmp_path)


# build_query.py's refine_caption list at 53d5258, typed from the official file
BARD_NONSENSE = [
    "Sure. ",
    "Sure, I can do that.",
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm unable to help you with that, as I'm only a language model and don't have the necessary information or abilities.",
    "I'm not programmed to assist with that.",
    "Please let me know if you have any other questions.",
    "I hope this is helpful!",
    "I hope this helps!",
]


@pytest.mark.parametrize("phrase", BARD_NONSENSE)
def test_refine_caption_drops_each_bard_phrase(phrase):
    assert mathvista.refine_caption(f"{phrase} A red  bar. {phrase}") == "A red bar."


def test_refine_caption_edges():
    assert mathvista.refine_caption(None) == "" and mathvista.refine_caption(3) == ""
    assert mathvista.refine_caption("  Sure.  A cat  ") == "A cat"
    assert mathvista.refine_caption("Sure. Sure. x") == "x"  # every occurrence
    assert mathvista.refine_caption("Sure.x") == "Sure.x"  # "Sure. " needs its space
    assert mathvista.refine_caption("a   b") == "a  b"  # one pass of "  " -> " "
