"""Offline word tokenizers for the splitter and token counters for the filters.

The official splitter is NLTK's ``word_tokenize``, which first splits sentences with the Punkt model; Punkt's
data is downloaded at run time (``nltk.download('punkt')``), which this project never does. So:

- ``treebank`` (default): a small regex sentence splitter, then NLTK's own ``NLTKWordTokenizer`` (the
  Treebank tokenizer ``word_tokenize`` calls per sentence; pure regex, no data files). It matches
  ``word_tokenize`` wherever the regex and Punkt agree on sentence ends, which is ordinary prose; it can
  differ on abbreviations Punkt knows and the regex does not (see :data:`ABBREVIATIONS`).
- ``nltk``: ``nltk.word_tokenize`` itself, only when the Punkt data is already installed locally; a missing
  model is an error with the install command, never a download.
- ``whitespace``: ``str.split``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

TOKENIZERS = ("treebank", "nltk", "whitespace")
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "no",
        "fig",
        "al",
        "inc",
        "ltd",
        "co",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentence ends are ., ! or ? followed by space and a capital or digit, unless the word is a known
    abbreviation or a single capital letter (an initial)."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start()].rstrip("\"')]")
        last = before.split()[-1] if before.split() else ""
        word = last.rstrip(".!?").lower()
        if last.endswith(".") and (word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


@lru_cache(maxsize=1)
def _treebank() -> Callable[[str], list[str]]:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer().tokenize


def _nltk_word_tokenize(text: str) -> list[str]:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        try:
            nltk.data.find("tokenizers/punkt/english.pickle")
        except LookupError as error:
            raise LookupError(
                "tokenizer 'nltk' needs NLTK's Punkt data installed locally (this project never downloads it): "
                "python -m nltk.downloader punkt_tab, or use tokenizer 'treebank' (offline)"
            ) from error
    return nltk.word_tokenize(text)


def tokenize(text: str, tokenizer: str = "treebank") -> list[str]:
    """Word tokens of ``text`` with the named tokenizer (see the module docstring)."""
    if tokenizer == "treebank":
        treebank = _treebank()
        return [token for sentence in split_sentences(text) for token in treebank(sentence)]
    if tokenizer == "nltk":
        return _nltk_word_tokenize(text)
    if tokenizer == "whitespace":
        return text.split()
    raise ValueError(f"unknown tokenizer {tokenizer!r}; one of {', '.join(TOKENIZERS)}")


def token_counter(spec: str) -> Callable[[str], int]:
    """A text-token counter for the filters' budgets.

    ``words``: Treebank word tokens (offline; an approximation of a subword count, usually lower).
    ``hf:PATH``: a local Hugging Face tokenizer (the official filter uses MiniCPM-V's / Idefics3's with
    ``add_bos_token=True, add_eos_token=False``); loaded with ``local_files_only``.
    """
    if spec == "words":
        return lambda text: len(tokenize(text, "treebank"))
    kind, sep, path = spec.partition(":")
    if sep and kind == "hf" and path:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        return lambda text: len(tok(text, padding=False, truncation=False).input_ids)
    raise ValueError(f"token counter {spec!r} is not 'words' or 'hf:/path/to/tokenizer'")
