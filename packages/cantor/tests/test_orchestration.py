"""Notes Sec. 5.6: the released parser, summary and prompts, and the pipeline over a scripted backend."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
import released_example as released
from paperzoo_cantor.backends import ScriptedBackend
from paperzoo_cantor.modeling_cantor import (
    CallFailed,
    CantorConfig,
    decision_rationale,
    load_prompts,
    parse_response,
    run_cantor,
    split_task,
    summary,
)

# sha256 of the two strings of utils/prompt.py at ggg0919/cantor c549f9e, computed from the official file
DECISION_PROMPT_SHA256 = "07c60562920d591a20ddf60eeb1d4f4b2ce341629345bbde7ed5a6b53b99419f"
SYNTHESIS_PROMPT_SHA256 = "b82e4ff47902614c2676a2bf9e1faa9d9c8b4fd6b47f81cdc7361d4404010f22"


def test_released_split_reproduces_sub_tasks():
    assert split_task(released.DECISION) == released.SUB_TASKS
    assert split_task(released.DECISION, "fixed") == released.SUB_TASKS


def test_released_summary_reproduces_supplementary_information_byte_for_byte():
    got = summary(released.DECISION, released.SUB_TASKS, released.SUB_ANSWERS)
    assert got == released.SUPPLEMENTARY_INFORMATION


KEYWORD_DECISION = "VisionIQ Analyst: Note the colour of the car\nTextIntel Extractor: N/A\nObjectQuant Locator: cars, people"


def test_official_filter_drops_note_because_it_contains_no():
    assert split_task(KEYWORD_DECISION, "official") == ["ObjectQuant Locator: cars, people"]


def test_fixed_filter_keeps_note():
    # order of the release's scan: ChartSense, VisionIQ, TextIntel, ObjectQuant
    assert split_task(KEYWORD_DECISION, "fixed") == [
        "VisionIQ Analyst: Note the colour of the car",
        "ObjectQuant Locator: cars, people",
    ]


@pytest.mark.parametrize(
    ("line", "official", "fixed"),
    [
        ("TextIntel Extractor: Read the North arrow label", False, True),  # "No" in "North"
        ("TextIntel Extractor: Rainfall in November", False, True),
        ("TextIntel Extractor: None", False, False),
        ("TextIntel Extractor: None.", False, False),
        ("TextIntel Extractor: Not required.", False, False),
        ("TextIntel Extractor: [Not needed]", False, False),
        ("TextIntel Extractor: No.", False, False),
        ("TextIntel Extractor: n/a", True, False),  # the release is case-sensitive
        ("TextIntel Extractor: not required for this question", True, False),
        (
            "TextIntel Extractor: [Specify the text or information to be extracted from the image, if necessary.]",
            False,
            False,
        ),
        (
            "ChartSense Expert: [Extract chart data or specify any questions about the chart, if required.]",
            True,
            False,
        ),
        ("TextIntel Extractor: Read the title", True, True),
        ("TextIntel Extractor: ", True, False),  # an empty task line
        ("TextIntel Extractor: [].", True, False),  # nothing but brackets and punctuation
        ("ObjectQuant Locator: X", True, True),  # a one-letter task (the point labelled X)
    ],
)
def test_filters_line_by_line(line, official, fixed):
    assert bool(split_task(line, "official")) is official
    assert bool(split_task(line, "fixed")) is fixed


def test_split_tolerates_markdown_bold_and_keeps_scan_order():
    decision = (
        "Modules' tasks:\n1. **TextIntel Extractor:** Read the labels.\n2. **ChartSense Expert**: Read the axis.\n"
        "3. ObjectQuant Locator: dogs, cats"
    )
    assert split_task(decision) == [
        "ChartSense Expert: Read the axis.",
        "TextIntel Extractor: Read the labels.",
        "ObjectQuant Locator: dogs, cats",
    ]


def test_summary_fallbacks():
    # no "Answer ... Modules' tasks:" span: the "Rationale ... \nModules' tasks:" span
    decision = "Rationale: look at the bars\nModules' tasks:\n1. ChartSense Expert: Read the bars.\n"
    assert decision_rationale(decision) == "look at the bars"
    # neither: the whole decision; no sub-tasks: no header
    assert summary("It can be answered directly.\n", [], []) == "It can be answered directly.\n"
    # several spans are joined by one space (checked against the release's summary)
    two_answers = (
        "Answer: first part\nModules' tasks:\n1. TextIntel Extractor: Read it.\n"
        "Answer: second part\nModules' tasks:\n1. ChartSense Expert: Read the bars.\n"
    )
    assert decision_rationale(two_answers) == "first part second part"
    two_rationales = (
        "Rationale: look at the bars\nModules' tasks:\n1. ChartSense Expert: Read the bars.\n"
        "Rationale: then count\nModules' tasks:\n2. ObjectQuant Locator: dogs\n"
    )
    assert decision_rationale(two_rationales) == "look at the bars then count"
    # zip: a task without an answer is dropped, as in the release
    text = summary("Answer: r\nModules' tasks:\n", ["A: x", "B: y"], [" a"])
    assert text == "r\nModules' tasks:\nA: x Answer: a\n"


def test_prompts_are_the_released_strings():
    prompts = load_prompts("release-c549f9e")
    assert hashlib.sha256(prompts.decision_prompt.encode()).hexdigest() == DECISION_PROMPT_SHA256
    assert hashlib.sha256(prompts.synthesis_prompt.encode()).hexdigest() == SYNTHESIS_PROMPT_SHA256
    for example in range(1, 7):
        assert f'"Question{example}"' in prompts.decision_prompt
    assert prompts.version == "release-c549f9e"
    with pytest.raises(ValueError, match=r"^unknown prompt version 'paper-v2'; known: release-c549f9e$"):
        load_prompts("paper-v2")


def test_prompt_goldens():
    prompts = load_prompts()
    assert prompts.decision_call("Q?") == (
        prompts.decision_prompt
        + "\nPlease refer to the prompts and examples above to help me solve the following problem:\nQuestion: Q?\n"
    )
    assert prompts.synthesis_call("Q?", "S") == (
        prompts.synthesis_prompt
        + "\nPlease answer the following case:\n Question:Q?\nSupplementary information:S"
    )


def _released_backend() -> ScriptedBackend:
    prompts = load_prompts()
    return ScriptedBackend.from_prompts(
        {
            prompts.decision_call(released.QUERY): released.DECISION,
            released.SUB_TASKS[0]: released.SUB_ANSWERS[0],
            prompts.synthesis_call(released.QUERY, released.SUPPLEMENTARY_INFORMATION): released.RESPONSE,
        }
    )


def test_end_to_end_reproduces_the_released_state_file():
    backend = _released_backend()
    image = b"\x89PNG fake chart"
    trace = asyncio.run(run_cantor(backend.generate, released.QUERY, image))
    assert trace.as_decision_json() == released.DECISION_JSON
    assert len(backend.calls) == 1 + len(released.SUB_TASKS) + 1
    assert [c[1] for c in backend.calls] == [image, image, image]  # every call sees the image
    assert [s.role for s in trace.steps] == ["decision", "expert", "synthesis"]
    parsed = parse_response(trace.response)
    assert parsed.answer == "July" and parsed.well_formed
    assert parsed.rationale.endswith("with an average temperature of 75\u00b0F.")


def test_sequential_experts_and_image_switches():
    backend = _released_backend()
    config = CantorConfig(parallel_experts=False, decision_image=False, synthesis_image=False)
    trace = asyncio.run(run_cantor(backend.generate, released.QUERY, b"img", config))
    assert trace.supplementary_information == released.SUPPLEMENTARY_INFORMATION
    assert [c[1] for c in backend.calls] == [None, b"img", None]


def test_a_failed_call_stands_as_a_space_and_the_pipeline_goes_on():
    prompts = load_prompts()
    decision = (
        "Answer:\n1. r\n\nModules' tasks:\n1. TextIntel Extractor: Read it.\n2. ObjectQuant Locator: dogs\n"
    )

    async def generate(prompt, image):
        if prompt == prompts.decision_call("q"):
            return decision
        if prompt.startswith("TextIntel"):
            raise CallFailed("timeout", "no response within 1 s")
        if prompt.startswith("ObjectQuant"):
            return " two dogs"
        raise CallFailed("refusal", "blocked")

    trace = asyncio.run(run_cantor(generate, "q", None))
    assert trace.sub_answers == [" ", " two dogs"]
    assert trace.supplementary_information == (
        "1. r\nModules' tasks:\nTextIntel Extractor: Read it. Answer: \nObjectQuant Locator: dogs Answer: two dogs\n"
    )
    assert trace.response == " "
    assert [s.error for s in trace.steps] == [
        None,
        "timeout: no response within 1 s",
        None,
        "refusal: blocked",
    ]


@pytest.mark.parametrize(
    ("response", "rationale", "answer", "well_formed"),
    [
        ("Rationale: because.\nAnswer: July", "because.", "July", True),
        ("Rationale:x Answer:(B)", "x", "(B)", True),
        ("**Rationale:** x\n**Answer:** B", "x", "B", True),
        ("Answer: A. Rationale: ... Answer: C", "...", "C", True),
        ("Answer: XII", "", "XII", True),  # no rationale; a leading X is part of the answer
        ("Rationale: r\nAnswer: **X**", "r", "X", True),
        ("July is the hottest.", "", "July is the hottest.", False),
    ],
)
def test_parse_response(response, rationale, answer, well_formed):
    parsed = parse_response(response)
    assert (parsed.rationale, parsed.answer, parsed.well_formed) == (rationale, answer, well_formed)


def test_config_validation():
    assert CantorConfig(split_mode="fixed").split_mode == "fixed"
    with pytest.raises(ValueError, match="split_mode"):
        CantorConfig(split_mode="loose")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown prompt_version 'v9'; known: release-c549f9e$"):
        CantorConfig(prompt_version="v9")
    with pytest.raises(ValueError, match="split mode"):
        split_task("x", "loose")  # type: ignore[arg-type]


# sha256 of data/decision.json at ggg0919/cantor c549f9e (the official file's bytes, as json.dump(indent=4) wrote it)
RELEASED_DECISION_JSON_SHA256 = "66b7c39c03efca6a63d74ca4c74d97c7564cc8b08ed3837c1594ddd13ea7c27e"


def test_the_retyped_example_is_the_released_file_byte_for_byte():
    written = json.dumps(released.DECISION_JSON, indent=4)  # the release writes its state file this way
    assert hashlib.sha256(written.encode("utf-8")).hexdigest() == RELEASED_DECISION_JSON_SHA256


NO_MODULES = "This question does not require any modules and can be answered directly based on the information provided."
NO_MODULE_DECISION = (
    f"Answer: {NO_MODULES}\n\nModules' tasks:\n1. TextIntel Extractor: None\n2. ObjectQuant Locator: None\n"
    "3. VisionIQ Analyst: None\n4. ChartSense Expert: None\n"
)


@pytest.mark.parametrize("parallel", [True, False])
def test_a_decision_without_modules_makes_two_calls(parallel):
    # the release's sixth in-context example (capital of New Jersey): no module, so decision + synthesis
    prompts = load_prompts()
    query = "What is the capital of New Jersey?\nContext: N/A\nOptions: (A) Newark (B) Trenton"
    backend = ScriptedBackend.from_prompts(
        {
            prompts.decision_call(query): NO_MODULE_DECISION,
            # by hand: the Answer span stops before "\n\nModules' tasks:"; no sub-task, so no header
            prompts.synthesis_call(query, NO_MODULES): "Rationale: Trenton is the capital.\nAnswer: (B)",
        }
    )
    trace = asyncio.run(run_cantor(backend.generate, query, b"img", CantorConfig(parallel_experts=parallel)))
    assert trace.sub_tasks == [] and trace.sub_answers == []
    assert trace.supplementary_information == NO_MODULES
    assert [prompt for prompt, _ in backend.calls] == [
        prompts.decision_call(query),
        prompts.synthesis_call(query, NO_MODULES),
    ]
    assert [s.role for s in trace.steps] == ["decision", "synthesis"]
    assert parse_response(trace.response).answer == "(B)"


THREE_TASK_DECISION = (
    "Rationale: count and read.\nModules' tasks:\n1. TextIntel Extractor: Read the labels.\n"
    "2. ObjectQuant Locator: dogs, cats\n3. VisionIQ Analyst: N/A\n4. ChartSense Expert: Read the y axis.\n"
)
# by hand: scan order ChartSense, VisionIQ (N/A dropped), TextIntel, ObjectQuant; the Rationale span
THREE_TASKS = [
    "ChartSense Expert: Read the y axis.",
    "TextIntel Extractor: Read the labels.",
    "ObjectQuant Locator: dogs, cats",
]
THREE_TASK_SUPPLEMENT = (
    "count and read.\nModules' tasks:\nChartSense Expert: Read the y axis. Answer: 4\n"
    "TextIntel Extractor: Read the labels. Answer: dog, cat\nObjectQuant Locator: dogs, cats Answer: 2 dogs, 1 cat\n"
)


@pytest.mark.parametrize("parallel", [True, False])
def test_three_sub_tasks_make_five_calls_in_the_releases_order(parallel):
    prompts = load_prompts()
    backend = ScriptedBackend.from_prompts(
        {
            prompts.decision_call("q"): THREE_TASK_DECISION,
            THREE_TASKS[0]: " 4",
            THREE_TASKS[1]: " dog, cat",
            THREE_TASKS[2]: " 2 dogs, 1 cat",
            prompts.synthesis_call("q", THREE_TASK_SUPPLEMENT): "Rationale: r\nAnswer: 3",
        }
    )
    trace = asyncio.run(run_cantor(backend.generate, "q", b"img", CantorConfig(parallel_experts=parallel)))
    assert len(backend.calls) == 1 + 3 + 1
    assert [prompt for prompt, _ in backend.calls[1:4]] == THREE_TASKS  # module-prefixed, nothing else
    assert trace.sub_tasks == THREE_TASKS and trace.sub_answers == [" 4", " dog, cat", " 2 dogs, 1 cat"]
    assert trace.supplementary_information == THREE_TASK_SUPPLEMENT
    assert [s.role for s in trace.steps] == ["decision", "expert", "expert", "expert", "synthesis"]
    assert [s.prompt for s in trace.steps[1:4]] == THREE_TASKS
    assert parse_response(trace.response).answer == "3"


def test_a_separate_expert_backend_plays_only_the_experts():
    prompts = load_prompts()
    text_model = ScriptedBackend.from_prompts(
        {
            prompts.decision_call("q"): THREE_TASK_DECISION,
            prompts.synthesis_call("q", THREE_TASK_SUPPLEMENT): "Answer: 3",
        }
    )
    mllm = ScriptedBackend.from_prompts(dict(zip(THREE_TASKS, [" 4", " dog, cat", " 2 dogs, 1 cat"])))
    config = CantorConfig(decision_image=False, synthesis_image=False)
    trace = asyncio.run(run_cantor(text_model.generate, "q", b"img", config, expert_generate=mllm.generate))
    assert [image for _, image in text_model.calls] == [None, None]
    assert mllm.calls == [(task, b"img") for task in THREE_TASKS]
    assert trace.response == "Answer: 3"


def test_the_pipeline_uses_the_configured_split_mode_and_expert_image():
    prompts = load_prompts()
    backend = ScriptedBackend.from_prompts(
        {prompts.decision_call("q"): KEYWORD_DECISION},
        fallback=lambda prompt, image: "Answer: A" if prompt.startswith(prompts.synthesis_prompt) else " ok",
    )
    config = CantorConfig(split_mode="fixed", expert_image=False)
    trace = asyncio.run(run_cantor(backend.generate, "q", b"img", config))
    # fixed mode keeps the "Note ..." task the official filter drops; the experts get no image
    assert trace.sub_tasks == [
        "VisionIQ Analyst: Note the colour of the car",
        "ObjectQuant Locator: cars, people",
    ]
    assert [image for _, image in backend.calls] == [b"img", None, None, b"img"]


def test_each_step_records_its_own_duration():
    async def slow(prompt, image):
        await asyncio.sleep(0.05)
        return "Answer: A"

    trace = asyncio.run(run_cantor(slow, "q", None))
    assert [s.role for s in trace.steps] == ["decision", "synthesis"]
    assert all(0.04 <= s.seconds < 5 for s in trace.steps)
