"""§5.2 of the notes: denominators of the official, lmms-eval and VLMEvalKit rules; breakdowns; the
official results file (valid JSON, current and June-2024 keys); the official printout."""

from __future__ import annotations

import json

import pytest
from paperzoo_videomme.modeling_videomme import DOMAINS, SUB_CATEGORIES, TASK_TYPES
from paperzoo_videomme.scoring import (
    official_report_text,
    official_results,
    read_official_results,
    score_all_rules,
    score_records,
    vlmevalkit_rating,
    write_official_results,
)


def _record(qid: str, answer: str, response: str, **extra) -> dict:
    base = {
        "video_id": "001", "videoID": "vid001", "duration": "short", "domain": "Knowledge",
        "sub_category": "Humanity & History", "question_id": qid, "task_type": "Counting Problem",
        "question": "How many?", "options": ["A. 1", "B. 2", "C. 3", "D. 4"], "answer": answer, "response": response,
    }  # fmt: skip
    return {**base, **extra}


FIXTURE = [_record("001-1", "A", "A"), _record("001-2", "C", "B"), _record("001-3", "D", "I cannot tell")]


def test_denominators_5_2() -> None:
    scores = score_all_rules(FIXTURE)
    official = scores["official"]["overall"]
    assert (official["correct"], official["total"], official["unparsed"]) == (1, 2, 1)
    assert official["accuracy"] == pytest.approx(0.5)  # 50.0%: the unparsable response is dropped
    lmms = scores["lmms_eval"]["overall"]
    assert (lmms["correct"], lmms["total"]) == (1, 3)  # 33.3%: counted wrong
    vlm = scores["vlmevalkit"]["overall"]
    assert (vlm["correct"], vlm["total"]) == (1, 3)  # 'Z' under exact matching
    assert (
        scores["vlmevalkit_2024_07"]["overall"]["total"] == 2
    )  # the first VLMEvalKit version: score -1 dropped
    assert scores["official_2024_06"]["overall"]["accuracy"] == pytest.approx(0.5)
    assert scores["lmms_eval_legacy"]["overall"]["accuracy"] == pytest.approx(1 / 3)


def test_printout_lists_every_category_with_zero_for_unanswered() -> None:
    text = official_report_text(score_records(FIXTURE), sub_categories=True, task_types=True)
    for name in (*DOMAINS, *SUB_CATEGORIES, *TASK_TYPES):
        assert f"\n{name}: " in text
    assert "Knowledge:  50.0%" in text
    assert "Film & Television:  0.0%" in text  # no answered question: 0.0, not N/A
    assert "Counting Problem:  50.0%" in text
    assert text.rstrip().endswith("Overall:  50.0%")
    assert "Evaluation on video Type: medium" in text and "Overall:  0.0%" in text


def test_breakdowns_by_duration_domain_sub_category_task_type() -> None:
    records = [
        _record("001-1", "A", "A"),
        _record("002-1", "B", "B", video_id="002", duration="long", domain="Multilingual",
                sub_category="Multilingual", task_type="OCR Problems"),
        _record("002-2", "B", "C", video_id="002", duration="long", domain="Multilingual",
                sub_category="Multilingual", task_type="Information Synopsis"),
    ]  # fmt: skip
    scores = score_records(records, "official")
    assert scores["by_duration"]["short"]["accuracy"] == 1.0
    assert scores["by_duration"]["long"]["accuracy"] == 0.5
    assert scores["by_duration"]["medium"]["total"] == 0
    assert scores["overall"]["domain"]["Multilingual"] == {"accuracy": 0.5, "correct": 1, "total": 2}
    assert scores["overall"]["task_type"]["OCR Problems"]["accuracy"] == 1.0
    assert scores["by_duration"]["long"]["sub_category"]["Multilingual"]["total"] == 2
    only_long = score_records(records, "official", durations=["long"])
    assert only_long["overall"]["total"] == 2 and list(only_long["by_duration"]) == ["long"]


def test_vlmevalkit_rating_layout() -> None:
    rating = vlmevalkit_rating(score_records(FIXTURE, "vlmevalkit"))
    assert rating["short"]["overall"] == "0.333"
    assert rating["overall"]["domain"]["Knowledge"] == "0.333"
    assert rating["medium"]["overall"] == "nan"  # numpy's mean of nothing


def test_results_file_is_valid_json_with_missing_flags(tmp_path) -> None:
    extra = _record("002-1", "B", "", video_id="002", videoID="vid002")
    path = write_official_results(tmp_path / "results.json", [*FIXTURE, extra], missing_videos=["002"])
    data = json.loads(path.read_text())  # the committed official template is not valid JSON; ours is
    assert [v["video_id"] for v in data] == ["001", "002"]
    assert [v["missing"] for v in data] == [False, True]
    video = data[0]
    for key in ("duration", "domain", "sub_category", "questions"):  # what eval_your_results reads
        assert key in video
    for key in ("question_id", "task_type", "options", "answer", "response"):
        assert key in video["questions"][0]
    back = read_official_results(path)
    assert [r["question_id"] for r in back] == ["001-1", "001-2", "001-3"]  # the missing video is skipped
    assert score_records(back)["overall"]["accuracy"] == pytest.approx(0.5)


def test_reads_the_june_2024_template_with_trailing_commas(tmp_path) -> None:
    text = """[
    {"video_id": "001", "duration_category": "short", "video_category": "Knowledge",
     "video_subcategory": "Humanity & History", "url": "",
     "questions": [
        {"question_id": "001-1", "task_type": "Counting Problem", "question": "Q?",
         "choices": ["A. a", "B. b", "C. c", "D. d"], "answer": "C", "response": "C. c",},
     ]},
]"""
    path = tmp_path / "old.json"
    path.write_text(text)
    records = read_official_results(path)
    assert records[0]["duration"] == "short" and records[0]["options"][2] == "C. c"
    assert score_records(records)["overall"]["accuracy"] == 1.0
    from paperzoo_shared.data.errors import DataError

    with pytest.raises(DataError, match="old.json is not valid JSON"):
        read_official_results(path, lenient=False)


def test_bad_records_are_named() -> None:
    with pytest.raises(KeyError, match="record 0 .*001-1.*response"):
        score_records([{k: v for k, v in FIXTURE[0].items() if k != "response"}])
    with pytest.raises(ValueError, match="unknown scoring rule 'strict'"):
        score_records(FIXTURE, "strict")


def test_official_results_groups_by_video() -> None:
    grouped = official_results(FIXTURE)
    assert len(grouped) == 1 and len(grouped[0]["questions"]) == 3


def test_lmms_eval_substring_grouping_equals_exact_grouping() -> None:
    """lmms-eval groups its composite keys "duration_domain_sub_task" by substring tests; with the current
    strings no category is a substring of a different key, so its numbers equal exact grouping."""
    from paperzoo_videomme.modeling_videomme import DOMAIN_SUB_CATEGORIES, DURATIONS

    keys = [
        (d, dom, sub, task)
        for d in DURATIONS
        for dom, subs in DOMAIN_SUB_CATEGORIES.items()
        for sub in subs
        for task in TASK_TYPES
    ]
    for position, names in enumerate((DURATIONS, DOMAINS, SUB_CATEGORIES, TASK_TYPES)):
        for name in names:
            by_substring = {k for k in keys if name in "_".join(k)}
            exact = {
                k for k in keys if k[position] == name or (name == "Multilingual" and "Multilingual" in k)
            }
            assert by_substring == exact, name


# Goldens computed by hand (the comments give the arithmetic); each dict is compared whole, so a wrong key, a
# wrong zero group or a group that should not be there fails.

ZERO = {"accuracy": 0.0, "correct": 0, "total": 0}


def _zeros(**seen: dict) -> dict:
    """Breakdowns with every canonical category at zero except the ``seen`` ones (keys: field=({value: group}))."""
    from paperzoo_videomme.scoring import BREAKDOWNS

    out = {key: {value: dict(ZERO) for value in canonical} for key, (_, canonical) in BREAKDOWNS.items()}
    for key, groups in seen.items():
        out[key].update(groups)
    return out


GOLDEN_RECORDS = [
    _record("001-1", "A", "A"),  # short, Knowledge, Counting Problem: right
    _record("001-2", "C", "B"),  # short: wrong
    _record("001-3", "D", "I cannot tell"),  # short: no letter (dropped by official, wrong for lmms-eval)
    _record("002-1", "D", "D.", video_id="002", videoID="vid002", duration="medium", domain="Sports Competition",
            sub_category="Esports", task_type="Temporal Perception"),  # medium: right
    _record("003-1", "B", "B", video_id="003", videoID="vid003", duration="long"),  # long: left out below
]  # fmt: skip


def test_score_records_golden_official_rule() -> None:
    scores = score_records(GOLDEN_RECORDS, "official", durations=["short", "medium"])
    from paperzoo_videomme.scoring import SCORING_RULES

    assert (scores["rule"], scores["source"]) == ("official", SCORING_RULES["official"].source)
    assert scores["durations"] == ["short", "medium"] and list(scores["by_duration"]) == ["short", "medium"]
    # short: 001-1 right, 001-2 wrong, 001-3 dropped -> 1 / 2
    assert scores["by_duration"]["short"] == {
        "accuracy": 0.5, "correct": 1, "total": 2, "unparsed": 1, "questions": 3,
        **_zeros(domain={"Knowledge": {"accuracy": 0.5, "correct": 1, "total": 2}},
                 sub_category={"Humanity & History": {"accuracy": 0.5, "correct": 1, "total": 2}},
                 task_type={"Counting Problem": {"accuracy": 0.5, "correct": 1, "total": 2}}),
    }  # fmt: skip
    # medium: 002-1 right -> 1 / 1
    assert scores["by_duration"]["medium"] == {
        "accuracy": 1.0, "correct": 1, "total": 1, "unparsed": 0, "questions": 1,
        **_zeros(domain={"Sports Competition": {"accuracy": 1.0, "correct": 1, "total": 1}},
                 sub_category={"Esports": {"accuracy": 1.0, "correct": 1, "total": 1}},
                 task_type={"Temporal Perception": {"accuracy": 1.0, "correct": 1, "total": 1}}),
    }  # fmt: skip
    # overall over short + medium (the long question is not counted): 2 / 3
    overall = scores["overall"]
    assert (overall["correct"], overall["total"], overall["unparsed"], overall["questions"]) == (2, 3, 1, 4)
    assert overall["accuracy"] == pytest.approx(2 / 3)
    assert overall["domain"]["Knowledge"] == {"accuracy": 0.5, "correct": 1, "total": 2}
    assert overall["domain"]["Sports Competition"] == {"accuracy": 1.0, "correct": 1, "total": 1}
    assert overall["domain"]["Multilingual"] == ZERO


def test_score_records_golden_lmms_eval_rule_and_an_empty_duration() -> None:
    scores = score_records(GOLDEN_RECORDS[:3], "lmms_eval")  # every duration; only short questions
    # unparsed counted wrong: 1 / 3
    short = scores["by_duration"]["short"]
    assert (short["correct"], short["total"], short["unparsed"], short["questions"]) == (1, 3, 1, 3)
    assert short["accuracy"] == pytest.approx(1 / 3)
    assert short["task_type"]["Counting Problem"]["total"] == 3
    empty = {**ZERO, "unparsed": 0, "questions": 0, **_zeros()}
    assert scores["by_duration"]["medium"] == empty and scores["by_duration"]["long"] == empty
    assert score_records([], "official")["overall"] == empty


def test_a_category_outside_the_canonical_lists_is_kept() -> None:
    scores = score_records([_record("001-1", "B", "B", task_type="Novel Task")])
    groups = scores["overall"]["task_type"]
    assert list(groups) == [*TASK_TYPES, "Novel Task"]
    assert groups["Novel Task"] == {"accuracy": 1.0, "correct": 1, "total": 1}
    assert groups["Counting Problem"] == ZERO


def test_vlmevalkit_reads_the_options_from_the_record_question() -> None:
    question = "How many circles?\nA. one\nB. two\nC. three\nD. four"
    records = [_record("001-1", "B", "There are two circles.", question=question)]
    # VLMEvalKit's matcher finds option text "two" -> B (right); the official regex finds no letter
    assert score_records(records, "vlmevalkit")["overall"]["correct"] == 1
    assert score_records(records, "official")["overall"]["unparsed"] == 1


def test_a_record_without_a_question_id_is_named_with_a_question_mark() -> None:
    record = {k: v for k, v in FIXTURE[0].items() if k not in ("question_id", "answer")}
    with pytest.raises(KeyError, match=r"record 0 \(\?\) lacks \['question_id', 'answer'\]"):
        score_records([record])


def test_official_results_golden(tmp_path) -> None:
    bare = {"video_id": "002", "duration": "medium", "domain": "Sports Competition", "sub_category": "Esports",
            "question_id": "002-1", "task_type": "Temporal Perception", "answer": "B", "response": None}  # fmt: skip
    grouped = official_results([FIXTURE[0], FIXTURE[1], bare], missing_videos=["002"])
    options = ["A. 1", "B. 2", "C. 3", "D. 4"]
    expected = [
        {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
         "videoID": "vid001", "missing": False, "questions": [
             {"question_id": "001-1", "task_type": "Counting Problem", "question": "How many?", "options": options,
              "answer": "A", "response": "A"},
             {"question_id": "001-2", "task_type": "Counting Problem", "question": "How many?", "options": options,
              "answer": "C", "response": "B"}]},
        {"video_id": "002", "duration": "medium", "domain": "Sports Competition", "sub_category": "Esports",
         "videoID": "", "missing": True, "questions": [
             {"question_id": "002-1", "task_type": "Temporal Perception", "question": "", "options": [],
              "answer": "B", "response": ""}]},
    ]  # fmt: skip
    assert grouped == expected
    # read back: the missing video is skipped, the other comes back as flat records with every field
    path = write_official_results(tmp_path / "results.json", [FIXTURE[0], FIXTURE[1], bare], ["002"])
    assert read_official_results(path) == [FIXTURE[0], FIXTURE[1]]


def test_read_official_results_fills_absent_fields_and_names_problems(tmp_path) -> None:
    video = {"video_id": "002", "duration": "long", "domain": "Multilingual", "sub_category": "Multilingual"}
    data = [
        {**video, "video_id": "001", "missing": True, "questions": [{"question_id": "001-1"}]},  # skipped
        {**video, "questions": [
            {"question_id": "002-1", "task_type": "OCR Problems", "answer": "C", "response": "C",
             "options": ["A. a", "B. b", "C. c", "D. d"], "choices": ["old"]},  # options win over choices
            {"question_id": "002-2", "task_type": "OCR Problems", "answer": "A", "response": "B"}]},
    ]  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    common = {**video, "videoID": "", "task_type": "OCR Problems", "question": ""}
    assert read_official_results(path) == [
        {**common, "question_id": "002-1", "answer": "C", "response": "C", "options": ["A. a", "B. b", "C. c", "D. d"]},
        {**common, "question_id": "002-2", "answer": "A", "response": "B", "options": []},
    ]  # fmt: skip
    from paperzoo_shared.data.errors import DataError

    data[1]["questions"][1] = {"task_type": "OCR Problems", "response": "B"}
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"results\.json: question \? of video 002 has no 'question_id'"):
        read_official_results(path)
    path.write_text(json.dumps({"videos": []}))
    with pytest.raises(DataError, match="must hold a JSON list of videos, got dict"):
        read_official_results(path)
    with pytest.raises(DataError, match="Video-MME results"):
        read_official_results(tmp_path / "absent.json")


def test_unknown_rule_message_lists_the_rules() -> None:
    from paperzoo_videomme.scoring import SCORING_RULES, get_rule

    with pytest.raises(ValueError) as error:
        get_rule("nope")
    assert str(error.value) == f"unknown scoring rule 'nope'; choose one of {', '.join(SCORING_RULES)}."
    assert list(SCORING_RULES)[:2] == ["official", "official_2024_06"]


def test_results_file_problems_name_the_video_and_question(tmp_path) -> None:
    from paperzoo_shared.data.errors import DataError

    video = {
        "video_id": "007",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Literature & Art",
    }
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            [{**video, "questions": [{"question_id": "007-2", "task_type": "OCR Problems", "response": "A"}]}]
        )
    )
    with pytest.raises(DataError) as error:
        read_official_results(path)
    assert str(error.value) == f"results file {path}: question 007-2 of video 007 has no 'answer'."
    path.write_text(json.dumps([{"video_id": "008", "questions": []}]))
    with pytest.raises(DataError) as error:
        read_official_results(path)
    assert str(error.value) == f"results file {path}: video 0 has no 'duration'; see the official template."
    with pytest.raises(DataError) as error:
        read_official_results(tmp_path / "absent.json")
    assert str(error.value).startswith(f"Video-MME results file {tmp_path / 'absent.json'} does not exist")


def test_results_file_is_read_as_utf8_whatever_the_locale(tmp_path) -> None:
    import locale

    video = {"video_id": "009", "duration": "long", "domain": "Multilingual", "sub_category": "Multilingual"}
    question = {"question_id": "009-1", "task_type": "OCR Problems", "answer": "B", "response": "答案是 B"}
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{**video, "questions": [question]}], ensure_ascii=False), encoding="utf-8")
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: reading without an encoding fails here
    try:
        assert read_official_results(path)[0]["response"] == "答案是 B"
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


def _group(correct: int, total: int) -> dict:
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}


def test_printout_is_the_official_scripts_text() -> None:
    """The whole printout, line by line, as BradyFU/Video-MME's evaluation/eval_your_results.py prints it (its
    headers, 37-character rules, `: .1f` percentages with 0 for an empty group, `print("\\n")` after each
    duration's block, and "Video Categories" in the entire-dataset block as well), for one duration with
    Knowledge 1 of 2 answered and everything else empty; the flags' defaults are the script's (categories only)."""
    block = {
        **_group(1, 2),
        "domain": {name: _group(*((1, 2) if name == "Knowledge" else (0, 0))) for name in DOMAINS},
        "sub_category": {name: _group(0, 0) for name in SUB_CATEGORIES},
        "task_type": {name: _group(*((1, 2) if name == "OCR Problems" else (0, 0))) for name in TASK_TYPES},
    }
    scores = {"durations": ["short"], "by_duration": {"short": block}, "overall": block}
    bar, dash = "=====================================", "-------------------------------------"
    domains = [
        "Knowledge:  50.0%", "Film & Television:  0.0%", "Sports Competition:  0.0%",
        "Artistic Performance:  0.0%", "Life Record:  0.0%", "Multilingual:  0.0%",
    ]  # fmt: skip
    expected = [
        bar, "Evaluation on video Type: short", bar,
        dash, "Video Categories", dash, *domains,
        dash, "Overall Performance", dash, "Overall:  50.0%", "", "",
        bar, "Evaluation on the entire dataset", bar,
        dash, "Video Categories", dash, *domains,
        dash, "Overall Performance", dash, "Overall:  50.0%",
    ]  # fmt: skip
    assert official_report_text(scores) == "\n".join(expected) + "\n"
    flagged = official_report_text(scores, categories=False, sub_categories=True, task_types=True).split("\n")
    assert flagged[:5] == [bar, "Evaluation on video Type: short", bar, dash, "Video Sub Categories"]
    assert flagged[5 + 1 + len(SUB_CATEGORIES) : 5 + 1 + len(SUB_CATEGORIES) + 3] == [
        dash,
        "Task Categories",
        dash,
    ]
    assert "OCR Problems:  50.0%" in flagged and "Humanity & History:  0.0%" in flagged
    assert flagged.count("Video Categories") == 0
    assert flagged.count("Video Sub Categories") == 2 and flagged.count("Task Categories") == 2
    # a group with one answered question prints its percentage, not 0
    one = {**block, "domain": {**block["domain"], "Knowledge": _group(1, 1)}}
    assert "Knowledge:  100.0%" in official_report_text({**scores, "by_duration": {"short": one}}).split("\n")
