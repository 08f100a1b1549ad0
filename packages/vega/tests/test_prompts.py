"""Prompt builders: string equality with the queries eval/IITC.py and eval/ITA.py build (hand-written)."""

from __future__ import annotations

import pytest
from paperzoo_vega.adapters import chat_messages
from paperzoo_vega.modeling_vega import build_query

CONTEXT = "Text [Picture 1].\nPicture 1: <img>a.png</img>\nFigure. 1 Picture 2: <img>b.png</img>\nFigure. 2"


def test_iitc_official_query() -> None:
    expected = (
        "Based on the following known information, answer the user's questions concisely and professionally. "
        "If the answer is derived from an image, please indicate in the answer by referencing [Picture *], "
        "where * represents the image number. If the answer cannot be obtained from it, ignore the content of "
        "the text and respond to the user's question in Chinese. Known content: "
        + CONTEXT
        + "\nQuestion:Why?"
    )
    assert build_query("iitc", CONTEXT, "Why?") == expected


def test_iitc_paper_query_asks_for_one_picture() -> None:
    query = build_query("iitc", CONTEXT, "Why?", style="paper")
    assert "'[Picture 2](Figure. 3)'" in query and "only choose one picture" in query
    assert query.endswith("Known content: " + CONTEXT + "\nQuestion:Why?")
    assert "Chinese" not in query


def test_ita_queries() -> None:
    head = (
        "Please determine the correspondence between the pictures and segments based on the content provided "
        "in 'pictures' and 'segments'. Please use [Picture *] to respond, where * represents the index of the "
        "picture."
    )
    assert build_query("ita", CONTEXT) == head + CONTEXT
    assert build_query("ita", CONTEXT, ita_format_line=True) == (
        head + " Answer in the format T1:[Picture 2] T2:[Picture 3] ..." + CONTEXT
    )
    assert build_query("ita", CONTEXT, style="paper") == (
        head
        + " Answer in the format T1:[Picture 2] T2:[Picture 3] ...\n"
        + CONTEXT
        + "\nQuestion:What is the corresponding order between text segments and pictures?"
    )
    assert build_query("ita", CONTEXT, style="paper", ita_format_line=False).startswith(head + "\n")


def test_bad_prompt_arguments() -> None:
    with pytest.raises(ValueError, match="needs a question"):
        build_query("iitc", CONTEXT)
    with pytest.raises(ValueError, match="prompt style"):
        build_query("iitc", CONTEXT, "q", style="other")  # type: ignore[arg-type]


def test_chat_messages_interleave_in_context_order(tiny_release) -> None:
    sample = tiny_release[0].samples[0]
    content = chat_messages(sample)[0]["content"]
    kinds = [part["type"] for part in content]
    assert kinds.count("image") == len(sample.image_paths)
    text = "".join(p.get("text", "<IMG>") for p in content)
    # the query with each placeholder replaced by the label and an image part, nothing else changed
    expected = build_query("iitc", sample.context, sample.question)
    for k, path in enumerate(sample.image_paths, start=1):
        expected = expected.replace(f"Picture {k}: <img>{path}</img>", f"Picture {k}: <IMG>")
    assert text == expected
