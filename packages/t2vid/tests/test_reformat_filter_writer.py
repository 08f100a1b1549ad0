"""§4.1 T2Vid 3 and 4: reformatters, filters and the multi-image writer."""

from __future__ import annotations

import pytest
from paperzoo_t2vid.configuration import FilterConfig
from paperzoo_t2vid.data import validate_multi_image
from paperzoo_t2vid.modeling_t2vid import (
    LONGQLORA_SUFFIX,
    FilterRule,
    SampleError,
    filter_reasons,
    filter_rule,
    parse_longqlora_answer,
    reformat_conversation,
    reformat_longalpaca,
    reformat_longqlora,
    to_multi_image,
)

from paperzoo_shared.data import DataError


def test_longqlora_answer_and_question_are_rewritten() -> None:
    raw = {"context": "Document [1] ...", "question": "who wrote it",
           "answer": "Answer: Jane Austen Long Answer: She wrote it in 1813. Gold Document ID: 3"}  # fmt: skip
    out = reformat_longqlora(raw, 7)
    assert out["id"] == "LongQLoRA_00007" == out["video"]
    assert out["conversations"] == [
        {"from": "human", "value": "<video>\nwho wrote it\n" + LONGQLORA_SUFFIX},
        {"from": "gpt", "value": "Jane Austen\nDocument ID: 3"},
    ]
    assert LONGQLORA_SUFFIX == "Answer the question in short and give the corresponding document ID."
    assert parse_longqlora_answer("Answer: 42 Gold Document ID: 12.") == ("42", "12")
    with pytest.raises(SampleError, match="Gold Document ID"):
        parse_longqlora_answer("Paris")


def test_longalpaca_passes_through() -> None:
    raw = {"context": "Long text.", "question": " Summarize. ", "answer": "  A summary,\nverbatim.  "}
    out = reformat_longalpaca(raw, 12)
    assert out["id"] == "LongAlpaca_00012" and out["context"] == "Long text."
    assert out["conversations"][0]["value"] == "<video>\nSummarize."
    assert out["conversations"][1]["value"] == "  A summary,\nverbatim.  "


def test_missing_fields_name_the_field() -> None:
    with pytest.raises(SampleError, match="missing field 'question'"):
        reformat_longalpaca({"context": "x", "answer": "y"}, 0)
    with pytest.raises(SampleError, match="'context' must be a string"):
        reformat_longqlora({"context": 3, "question": "q", "answer": "a"}, 0)
    with pytest.raises(SampleError, match="pair up"):
        reformat_conversation({"context": "x", "conversations": [{"from": "human", "value": "q"}]}, 0)


def test_conversation_format_keeps_turns_and_adds_one_video() -> None:
    raw = {"id": "doc9", "context": "x", "conversations": [
        {"from": "human", "value": "<video>\nFirst?"}, {"from": "gpt", "value": "A."},
        {"from": "human", "value": "Second?"}, {"from": "gpt", "value": "B."}]}  # fmt: skip
    out = reformat_conversation(raw, 0)
    assert out["id"] == "doc9"
    assert [t["value"] for t in out["conversations"]] == ["<video>\nFirst?", "A.", "Second?", "B."]


def _conv(question: str = "<video>\nq", answer: str = "a") -> list[dict[str, str]]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.mark.parametrize(
    ("model", "cap", "per_frame", "budget"), [("minicpm_v", 90, 96, 8192), ("idefics3", 65, 169, 10240)]
)
def test_frame_caps_and_token_budgets_at_their_boundaries(
    model: str, cap: int, per_frame: int, budget: int
) -> None:
    rule = filter_rule(model, "LongAlpaca")
    assert (rule.max_frames, rule.tokens_per_frame, rule.max_tokens) == (cap, per_frame, budget)
    # the frame cap alone (budget lifted): cap frames pass, cap + 1 do not
    no_budget = FilterRule(cap, per_frame, 10**9, rule.max_question_words)
    assert filter_reasons(_conv(), cap, 0, no_budget) == []
    assert [c for c, _ in filter_reasons(_conv(), cap + 1, 0, no_budget)] == ["frames"]
    # with the real budget the cap never binds: 90 x 96 = 8640 > 8192 and 65 x 169 = 10985 > 10240, so
    # even an empty text allows at most 85 (MiniCPM-V) / 60 (Idefics3) frames
    most = budget // per_frame
    assert most == {"minicpm_v": 85, "idefics3": 60}[model] and most < cap
    assert filter_reasons(_conv(), most, 0, rule) == []
    assert [c for c, _ in filter_reasons(_conv(), cap, 0, rule)] == ["token_budget"]
    assert [c for c, _ in filter_reasons(_conv(), cap + 1, 0, rule)] == ["frames", "token_budget"]
    fits = budget - per_frame * 10
    assert filter_reasons(_conv(), 10, fits, rule) == []
    assert [c for c, _ in filter_reasons(_conv(), 10, fits + 1, rule)] == ["token_budget"]


def test_question_caps_and_video_placeholder() -> None:
    qlora, alpaca = filter_rule("minicpm_v", "LongQLoRA"), filter_rule("minicpm_v", "LongAlpaca")
    assert (qlora.max_question_words, alpaca.max_question_words) == (30, 500)
    # "<video>\nw0" is one piece of split(' '): 29 pieces are kept, 30 are dropped (official: >= cap)
    q29 = "<video>\n" + " ".join(f"w{i}" for i in range(29))
    q30 = "<video>\n" + " ".join(f"w{i}" for i in range(30))
    assert filter_reasons(_conv(q29), 1, 0, qlora) == []
    assert [c for c, _ in filter_reasons(_conv(q30), 1, 0, qlora)] == ["question_words"]
    assert filter_reasons(_conv(q30), 1, 0, alpaca) == []
    for bad in (_conv("no placeholder"), _conv("<video><video>\nq"), _conv("q", "<video>")):
        assert [c for c, _ in filter_reasons(bad, 1, 0, alpaca)] == ["video_placeholder"]


def test_filter_config_overrides_and_validation() -> None:
    assert FilterConfig(model="idefics3", max_frames=10).rule("LongQLoRA") == FilterRule(10, 169, 10240, 30)
    with pytest.raises(ValueError, match="filter.model"):
        FilterConfig(model="llava")
    with pytest.raises(ValueError, match="max_frames"):
        FilterRule(0, 1, 1, 1)


def test_writer_schema_placeholders_ordered_and_prepended() -> None:
    conv = [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "That."},
            {"from": "human", "value": "And?"}, {"from": "gpt", "value": "This."}]  # fmt: skip
    out = to_multi_image(conv, ["f/a.png", "f/b.png", "f/c.png"])
    assert out == {
        "image": {"<image_00>": "f/a.png", "<image_01>": "f/b.png", "<image_02>": "f/c.png"},
        "conversations": [
            {"role": "user", "content": "<image_00>\n<image_01>\n<image_02>\nWhat?"},
            {"role": "assistant", "content": "That."},
            {"role": "user", "content": "And?"},
            {"role": "assistant", "content": "This."},
        ],
    }


def test_validate_multi_image_uses_safe_join(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.png").write_bytes(b"x")
    good = to_multi_image(_conv(), ["f/a.png"])
    validate_multi_image([good], tmp_path, source="t2vid.json")
    escape = to_multi_image(_conv(), ["../outside.png"])
    with pytest.raises(DataError, match="leaves the data root"):
        validate_multi_image([escape], tmp_path, source="t2vid.json")
    missing = to_multi_image(_conv(), ["f/none.png"])
    with pytest.raises(DataError, match="does not exist"):
        validate_multi_image([missing], tmp_path, source="t2vid.json")
    shuffled = {"image": {"<image_01>": "f/a.png"}, "conversations": good["conversations"]}
    with pytest.raises(DataError, match="image keys"):
        validate_multi_image([shuffled], tmp_path, source="t2vid.json")
