"""Vocabulary extension: the placeholders and the state tokens become single special tokens (notes §1.2, §1.5).

The release grew Mixtral's 32,000-token vocabulary with Chinese to 51,747 (padded to 51,760) before any multimodal
training; its extension code is not public. :func:`extend_vocabulary` adds the tokens VITA's prompts need and resizes
the model's embeddings; :func:`build_tiny_tokenizer` is the offline word-level tokenizer of the tests and the smoke
preset (paperzoo_shared's synthetic QA vocabulary plus these tokens).
"""

from __future__ import annotations

from typing import Any

from paperzoo_vita.configuration import AUDIO_TOKEN, IMAGE_TOKEN, STATE_TOKENS, VIDEO_TOKEN

VITA_SPECIAL_TOKENS = (IMAGE_TOKEN, AUDIO_TOKEN, VIDEO_TOKEN, *STATE_TOKENS, "</s>")
ROLE_WORDS = ("system", "user", "bot")


def extend_vocabulary(
    tokenizer: Any, model: Any | None = None, pad_to_multiple_of: int | None = None
) -> dict[str, int]:
    """Adds the missing VITA tokens as special tokens, resizes ``model``'s embeddings (and sets its
    ``image_token_id`` / ``audio_token_id``) and returns token -> id."""
    missing = [
        t for t in VITA_SPECIAL_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)
    ]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VITA_SPECIAL_TOKENS}
    if model is not None:
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of)
        model.config.image_token_id = ids[IMAGE_TOKEN]
        model.config.audio_token_id = ids[AUDIO_TOKEN]
    return ids


def build_tiny_tokenizer() -> Any:
    """Word-level tokenizer over paperzoo_shared's synthetic vocabulary + the VITA tokens + the role words (offline)."""
    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    tokenizer = to_transformers_tokenizer(
        build_word_tokenizer(extra_special_tokens=(*VITA_SPECIAL_TOKENS, *ROLE_WORDS))
    )
    tokenizer.padding_side = "left"
    return tokenizer
