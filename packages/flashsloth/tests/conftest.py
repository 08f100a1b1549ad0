"""Fixtures of the FlashSloth tests; the helpers live in flashsloth_testlib.py (tests/ goes on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from flashsloth_testlib import tiny_model


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture(scope="session")
def word_tokenizer():
    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    return to_transformers_tokenizer(
        build_word_tokenizer(extra_special_tokens=("<learnable>", "USER", "ASSISTANT"))
    )
