"""The package's modules against numbers of the OFFICIAL modules (tests/fixtures/official_goldens.json).

The fixture was written once by ``tests/fixtures/make_official_goldens.py``, which runs the official
``flashsloth/model/pooling.py`` (``AttentionPooling``) and ``flashsloth/model/lqformer.py`` (``LQFormer``, one
``LQFormerLayer``) of codefanw/FlashSloth at commit 881445a on seeded inputs with random weights (LayerNorms
included), query/key head width 4 and value head width 8. The weights are loaded here through the converter's key
map (official name -> package name), so the tests pin the anchor-free module maths: the window softmax, the shared
down-projection, which LayerNorm normalises what, the 1/sqrt(query/key head width) scale, the text padding mask and
the residual.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from paperzoo_flashsloth.modeling_flashsloth import EmbeddedQuery, SpatialAttentionPooling

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "official_goldens.json").read_text())
EMBQ_KEYS = {  # official LQFormer name -> EmbeddedQuery name (as convert.py maps model.lqformer.*)
    "down_projector_learnable_text.": "down_text.",
    "down_projector_image.": "down_image.",
    "up_projector.": "up.",
    "layers.0.ln_q.": "ln_query.",
    "layers.0.ln_text.": "ln_text.",
    "layers.0.ln_kv.": "ln_image.",
    "layers.0.t2q_attn.": "text_to_query.",
    "layers.0.i2q_attn.": "image_to_query.",
}


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _rename(state: dict, table: dict) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in table.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = _t(value)
                break
        else:
            raise KeyError(key)
    return out


def official_embq() -> tuple[EmbeddedQuery, dict]:
    g = GOLDEN["embq"]
    d = g["dims"]
    module = EmbeddedQuery(d["text"], d["vision"], d["down"], d["heads"]).eval()
    module.load_state_dict(_rename(g["state"], EMBQ_KEYS), strict=True)
    return module, g


def _embq_inputs(g: dict, garbage: float | None = 7.0):
    text = _t(g["text"])
    mask = torch.zeros(text.shape[:2], dtype=torch.bool)
    for m, n in enumerate(g["text_lengths"]):
        mask[m, :n] = True
    if garbage is not None:  # what sits in padded slots must not matter
        text = torch.where(mask[..., None], text, torch.full_like(text, garbage))
    image = _t(g["image"])
    return _t(g["queries"]), text, mask, image, torch.ones(image.shape[:2], dtype=torch.bool)


def test_spatial_attention_pooling_matches_official():
    g = GOLDEN["sap"]
    pool = SpatialAttentionPooling(6, pool_size=3, dropout=0.1).eval()
    pool.load_state_dict(_rename(g["state"], {"mlp.": "scorer."}), strict=True)
    with torch.no_grad():
        got = pool(_t(g["input"]))
    torch.testing.assert_close(got, _t(g["output"]), rtol=1e-5, atol=1e-6)


def test_embedded_query_matches_official():
    module, g = official_embq()
    with torch.no_grad():
        got = module(*_embq_inputs(g))
    expected = _t(g["output"])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the fixture is sensitive: the module's contribution is O(1), far above the tolerance
    assert float((expected - _t(g["queries"])).abs().max()) > 0.5


def test_golden_is_sensitive_to_the_scale_and_the_layernorms():
    """The fixture separates the planted mistakes: scaling by the value head width (8 instead of 4), swapping the
    query/text LayerNorms, or normalising image keys with the query LayerNorm each move the output by far more than
    the tolerance above (checked here on copies of the module, so this test documents the margin)."""
    module, g = official_embq()
    expected = _t(g["output"])
    inputs = _embq_inputs(g)

    def off(mutate) -> float:
        m, _ = official_embq()
        mutate(m)
        with torch.no_grad():
            return float((m(*inputs) - expected).abs().max())

    def value_scale(m):  # q/sqrt(2) turns the score scale 1/sqrt(4) into 1/sqrt(8), the value head width's
        m.image_to_query.q_proj.weight.mul_(math.sqrt(4 / 8))
        m.image_to_query.q_proj.bias.mul_(math.sqrt(4 / 8))

    def swap(m):
        m.ln_query, m.ln_text = m.ln_text, m.ln_query

    with torch.no_grad():
        assert off(value_scale) > 1e-2
        assert off(swap) > 1e-2


def test_text_padding_is_masked():
    """Garbage in padded question slots leaves the output unchanged; without the mask it would move it by O(1)."""
    module, g = official_embq()
    q, text, mask, image, image_mask = _embq_inputs(g, garbage=None)
    with torch.no_grad():
        clean = module(q, text, mask, image, image_mask)
        noisy_text = torch.where(mask[..., None], text, torch.randn_like(text) * 5)
        noisy = module(q, noisy_text, mask, image, image_mask)
        unmasked = module(q, noisy_text, torch.ones_like(mask), image, image_mask)
    torch.testing.assert_close(noisy, clean, rtol=1e-5, atol=1e-5)
    assert float((unmasked[1] - clean[1]).abs().max()) > 1e-2  # block 1 is the padded one


@pytest.mark.parametrize("length", [0])
def test_empty_question_runs_like_the_official_code(length):
    """An empty question (``<image><learnable>``): the official gather gives a [M, 0, C] text tensor; softmax over
    no keys is empty and the text-to-query output is 0, so image attention starts from q_proj's bias."""
    module, g = official_embq()
    q, _, _, image, image_mask = _embq_inputs(g)
    text = torch.zeros(2, length, g["dims"]["text"])
    with torch.no_grad():
        got = module(q, text, torch.zeros(2, length, dtype=torch.bool), image, image_mask)
        # by hand: the text step contributes exactly zero, so image attention's queries are q_proj(0) = its bias
        att = module.image_to_query
        heads, down = g["dims"]["heads"], g["dims"]["down"]
        qk = att.q_proj.bias.view(heads, -1)
        keys = att.k_proj(module.ln_image(module.down_image(image))).view(2, 9, heads, -1)
        values = att.v_proj(image).view(2, 9, heads, -1)
        scores = torch.einsum("hd,mkhd->mhk", qk, keys) / math.sqrt(down // heads)
        mixed = torch.einsum("mhk,mkhd->mhd", scores.softmax(-1), values).reshape(2, 1, -1)
        expected = q + module.up(mixed)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
