"""Fixtures of the VITA tests: the offline word-level tokenizer and a tiny random model matching it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tok():
    from paperzoo_vita.tokenization import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture
def model(tok):
    from paperzoo_vita.configuration import tiny_vita_config
    from paperzoo_vita.modeling_vita import VitaForConditionalGeneration

    torch.manual_seed(0)
    cfg = tiny_vita_config(
        vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
        audio_token_id=tok.convert_tokens_to_ids("<audio>"),
    )  # fmt: skip
    return VitaForConditionalGeneration(cfg).eval()
