"""Edges of the synthesis core that mutation testing showed the other tests leave open."""

from __future__ import annotations

import numpy as np
import pytest
from paperzoo_t2vid.modeling_t2vid import (
    FilterRule,
    SampleError,
    conversation_text,
    filter_rule,
    layout_chunk,
    mix_counts,
    one_fps_indices,
    reformat_conversation,
    reformat_longalpaca,
    reformat_longqlora,
    render_chunk,
    seq_frames,
    split_tokens,
    to_multi_image,
    wrap_words,
)


def test_wrap_fits_exactly_at_the_width(mono) -> None:  # type: ignore[no-untyped-def]
    # 8 words of 50 px are exactly 400 px: they fit a 400 px line (<=), the 9th starts the next
    assert wrap_words("aaaa " * 9, mono, 400) == ["aaaa " * 7 + "aaaa", "aaaa"]


def test_wrap_width_comes_from_the_canvas_width(mono) -> None:  # type: ignore[no-untyped-def]
    layout = layout_chunk("aaaa " * 9, mono, size=(440, 100), margin=20)  # width 400, height 100
    assert layout.max_width == 400 and len(layout.lines) == 2
    assert layout.ys == (30.0, 50.0)  # (100 - 40) / 2


def test_overflow_reason_names_the_widest_line(mono) -> None:  # type: ignore[no-untyped-def]
    wide = layout_chunk("c " + "b" * 45 + " " + "d" * 42, mono)
    assert wide.reason() == f"line {'b' * 30!r} is 450 px > 408 px"
    both = layout_chunk(("e" * 45 + " ") * 23, mono)
    assert (
        both.reason()
        == "23 lines, 460 px tall > canvas 448 px; line " + repr("e" * 30) + " is 450 px > 408 px"
    )


def test_render_chunk_uses_the_font_and_the_margin(font) -> None:  # type: ignore[no-untyped-def]
    image, layout = render_chunk("Hg Hg Hg", font)
    assert layout.x == 20
    ink = np.asarray(image.convert("L")) < 128
    rows = np.flatnonzero(ink.any(axis=1))
    assert (
        rows.max() - rows.min() + 1 >= 17
    )  # size-20 glyphs ("H" cap plus "g" descender); a default font is ~11 px
    _, shifted = render_chunk("Hg", font, margin=40)
    assert shifted.x == 40 and shifted.max_width == 448 - 80


def test_validation_boundaries() -> None:
    assert split_tokens(["a", "b"], 1) == ["a", "b"]
    assert FilterRule(1, 1, 1, 1).max_frames == 1
    with pytest.raises(ValueError, match="tokens_per_frame must be >= 1"):
        FilterRule(1, 0, 1, 1)
    with pytest.raises(ValueError, match="max_tokens must be >= 1, got 0"):
        split_tokens(["a"], 0)
    assert one_fps_indices(1, 25.0) == [0]
    for fps, rate in ((0.0, 1.0), (25.0, 0.0)):
        with pytest.raises(ValueError, match="fps and rate must be > 0"):
            one_fps_indices(10, fps, rate)
    assert seq_frames(1, 1) == [0] and seq_frames(2, 1) == [0]
    with pytest.raises(ValueError, match="total and desired must be >= 1"):
        seq_frames(5, 0)
    assert mix_counts(0, 0.5, 2) == (0, [0, 0])
    assert mix_counts(4, 1.0, 0) == (4, [])
    with pytest.raises(ValueError, match="total must be >= 0"):
        mix_counts(-1, 0.5, 1)
    with pytest.raises(ValueError, match="at least one video source"):
        mix_counts(4, 0.5, 0)


def test_filter_rule_defaults_and_text() -> None:
    assert filter_rule("idefics3", "Conversation").max_question_words == 500
    with pytest.raises(ValueError, match="unknown base model 'llava'; one of minicpm_v, idefics3"):
        filter_rule("llava", "LongAlpaca")
    assert conversation_text([{"value": "a"}, {"value": "b"}]) == "a\nb"
    with pytest.raises(SampleError, match="at least one frame"):
        to_multi_image([{"value": "<video>\nq"}], [])


def test_reformatter_details() -> None:
    assert (
        reformat_longqlora({"context": "ctx", "question": "q", "answer": "Answer: a Gold Document ID: 2"}, 0)[
            "context"
        ]
        == "ctx"
    )
    with pytest.raises(SampleError, match=r"missing field 'answer' \(fields: context, question\)"):
        reformat_longalpaca({"context": "c", "question": "q"}, 0)
    with pytest.raises(SampleError, match=r"\(fields: none\)"):
        reformat_longalpaca({}, 0)
    with pytest.raises(SampleError, match="'question' must be a string, got int"):
        reformat_longalpaca({"context": "c", "question": 1, "answer": "a"}, 0)
    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    out = reformat_conversation({"context": "ctx", "conversations": conv}, 3, source="Books")
    assert out["id"] == "Books_00003" and out["context"] == "ctx"
    assert reformat_conversation({"context": "c", "conversations": conv}, 4)["id"] == "Conversation_00004"
    with pytest.raises(SampleError, match="missing or empty field 'conversations'"):
        reformat_conversation({"context": "c", "conversations": []}, 0)
    swapped = [{"from": "human", "value": "q"}, {"from": "human", "value": "a"}]
    with pytest.raises(SampleError, match="turn 1 must be"):
        reformat_conversation({"context": "c", "conversations": swapped}, 0)
