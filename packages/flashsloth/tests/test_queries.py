"""The query tokens as released: kaiming-uniform init (``LearnableToken.reset_parameters``) and the embedding of
token 764 added at insertion (``llava_arch.py``); checked by hand from the init formula and the embedding table."""

from __future__ import annotations

import math

import torch
from flashsloth_testlib import ANCHOR_ID, IMAGE_ID, LEARNABLE_ID, tiny_model
from paperzoo_flashsloth.configuration import TextSpec

I, L = IMAGE_ID, LEARNABLE_ID


def _query_rows(model, ids):
    size = model.config.vision_config.image_size
    pixels = torch.randn(int((ids == I).sum()), 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assembled, _ = model.prepare_multimodal(ids, torch.ones_like(ids), pixels)
    start = assembled.layout.start
    q = model.config.num_query_tokens
    return torch.stack(
        [assembled.inputs_embeds[b, s : s + q] for b, s in zip(assembled.layout.sample, start)]
    )


def test_inserted_queries_are_parameters_plus_the_anchor_embedding():
    model = tiny_model()
    ids = torch.tensor([[10, 11, I, 12, 13, L, 15], [10, I, 12, 13, 14, L, 15]])
    anchor = model.language_model.model.embed_tokens.weight[ANCHOR_ID]
    expected = (model.query_tokens + anchor).detach()
    rows = _query_rows(model, ids)
    assert float(anchor.detach().abs().max()) > 1e-3  # the anchor really moves them
    for block in rows:
        torch.testing.assert_close(block, expected)


def test_no_anchor_inserts_the_parameters_alone():
    model = tiny_model(query_anchor_token_id=None)
    model.config.query_anchor_token_id = None
    ids = torch.tensor([[10, 11, I, 12, 13, L, 15]])
    torch.testing.assert_close(_query_rows(model, ids)[0], model.query_tokens.detach())


def test_query_init_is_kaiming_uniform():
    """kaiming_uniform_(a=sqrt(5)) on a [Q, C] tensor: U(-b, b) with b = gain * sqrt(3 / fan_in), gain =
    sqrt(2 / (1 + a^2)) = sqrt(1/3), fan_in = C, so b = 1 / sqrt(C) and the std is b / sqrt(3)."""
    text = TextSpec(
        hidden_size=256, intermediate_size=64, num_layers=4, num_heads=4, partial_rotary_factor=0.5
    )
    model = tiny_model(text=text, num_query_tokens=16)
    q = model.query_tokens.detach()
    bound = 1 / math.sqrt(256)
    assert float(q.abs().max()) <= bound + 1e-7
    assert float(q.abs().max()) > 0.95 * bound  # 4096 draws reach the edge
    assert abs(float(q.std()) - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)
    assert abs(float(q.mean())) < 0.05 * bound
