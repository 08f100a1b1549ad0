"""§4.1 T2Vid 1: the splitter, and the offline tokenizers."""

from __future__ import annotations

import math

import pytest
from paperzoo_t2vid.modeling_t2vid import split_tokens
from paperzoo_t2vid.text import split_sentences, tokenize


def test_1000_tokens_give_9_chunks_in_order_of_at_most_115() -> None:
    tokens = [f"w{i}" for i in range(1000)]
    chunks = split_tokens(tokens, 115)
    assert len(chunks) == math.ceil(1000 / 115) == 9
    assert [len(c.split(" ")) for c in chunks] == [115] * 8 + [1000 - 8 * 115]
    assert " ".join(chunks).split(" ") == tokens  # order preserved, nothing lost or repeated


def test_chunks_join_tokens_with_single_spaces_like_the_release() -> None:
    assert split_tokens(["Hello", ",", "world", "."], 3) == ["Hello , world", "."]
    assert split_tokens([], 115) == []
    with pytest.raises(ValueError):
        split_tokens(["a"], 0)


def test_treebank_tokens_by_hand() -> None:
    text = "Hello world. It is Mr. Smith, isn't it? Yes."
    assert tokenize(text) == [
        "Hello",
        "world",
        ".",
        "It",
        "is",
        "Mr.",
        "Smith",
        ",",
        "is",
        "n't",
        "it",
        "?",
        "Yes",
        ".",
    ]
    assert tokenize(text, "whitespace") == text.split()


def test_sentence_splitter_keeps_abbreviations_and_initials() -> None:
    text = 'It is Mr. Smith. He said "no." Then 3 left! J. R. Tolkien wrote it? Yes.'
    assert split_sentences(text) == [
        "It is Mr. Smith.",
        'He said "no."',
        "Then 3 left!",
        "J. R. Tolkien wrote it?",
        "Yes.",
    ]


def test_nltk_mode_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nltk.download was called")

    monkeypatch.setattr(nltk, "download", refuse)
    monkeypatch.setattr(nltk.data, "path", [])  # no local Punkt anywhere
    with pytest.raises(LookupError, match="never downloads"):
        tokenize("A sentence. Another one.", "nltk")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenize("x", "spacy")
