"""Vocabulary extension: VITA's placeholders and state tokens become single tokens, embeddings grow."""

from __future__ import annotations

import torch
from paperzoo_vita.configuration import tiny_vita_config
from paperzoo_vita.modeling_vita import VitaForConditionalGeneration
from paperzoo_vita.tokenization import VITA_SPECIAL_TOKENS, extend_vocabulary


def test_extend_vocabulary_adds_single_tokens_and_resizes():
    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    tok = to_transformers_tokenizer(build_word_tokenizer())  # the plain QA vocabulary: no <audio>, no <1>
    before = len(tok)
    assert tok.convert_tokens_to_ids("<audio>") == tok.unk_token_id
    cfg = tiny_vita_config(vocab_size=before, image_token_id=0, audio_token_id=1)
    model = VitaForConditionalGeneration(cfg)
    ids = extend_vocabulary(tok, model)
    missing = [
        t for t in VITA_SPECIAL_TOKENS if t != "<image>"
    ]  # <image> is in the shared vocabulary already
    assert len(tok) == before + len(missing)
    assert sorted(ids[t] for t in missing) == list(range(before, before + len(missing)))
    assert model.get_input_embeddings().weight.shape[0] == len(
        tok
    ) and model.config.text_config.vocab_size == len(tok)
    assert (model.config.image_token_id, model.config.audio_token_id) == (ids["<image>"], ids["<audio>"])
    encoded = tok("<2><1>red</s>", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(encoded) == ["<2>", "<1>", "red", "</s>"]
    out = model(input_ids=torch.tensor([encoded]))
    assert out.logits.shape[-1] == len(tok)
    assert extend_vocabulary(tok, model) == ids and len(tok) == before + len(missing)  # idempotent
