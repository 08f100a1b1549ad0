"""Greedy generation with a KV cache equals recomputation, batched equals per-sample, HD works end to end."""

from __future__ import annotations

import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_model

I, L = IMAGE_ID, LEARNABLE_ID
PROMPTS = [[10, 11, I, 12, 13, 14, L, 15, 16], [10, 11, I, 19, L, 15, 16], [10, 12, 13, 14, 17, L, 15, 16]]


def _batch(prompts, model, views=None):
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):  # left padding, as a user would batch prompts
        ids[b, width - len(p) :] = torch.tensor(p)
        mask[b, width - len(p) :] = 1
    n = sum(p.count(I) for p in prompts)
    size = model.config.vision_config.image_size
    shape = (n, views, 3, size, size) if views else (n, 3, size, size)
    pixels = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return ids, mask, pixels


def test_kv_cache_equals_recompute():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS, model)
    cached, cached_logits = model.generate(
        ids, mask, pixels, max_new_tokens=6, use_cache=True, return_logits=True
    )
    full, full_logits = model.generate(
        ids, mask, pixels, max_new_tokens=6, use_cache=False, return_logits=True
    )
    assert torch.equal(cached, full)
    torch.testing.assert_close(cached_logits, full_logits, rtol=1e-4, atol=1e-5)


def test_batched_equals_one_by_one():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS, model)
    together = model.generate(ids, mask, pixels, max_new_tokens=5)
    image = 0
    for b, prompt in enumerate(PROMPTS):
        n = prompt.count(I)
        alone = model.generate(torch.tensor([prompt]), None, pixels[image : image + n], max_new_tokens=5)
        image += n
        assert torch.equal(alone[0], together[b]), b


def test_first_step_matches_the_training_forward():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS[:1], model)
    _, logits = model.generate(ids, mask, pixels, max_new_tokens=1, return_logits=True)
    with torch.no_grad():
        forward = model(ids, mask, pixels).logits[:, -1]
    torch.testing.assert_close(logits[:, 0], forward, rtol=1e-5, atol=1e-6)


def test_eos_stops_and_pads():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS, model)
    first = model.generate(ids, mask, pixels, max_new_tokens=1)[:, 0]
    out = model.generate(ids, mask, pixels, max_new_tokens=4, eos_token_id=int(first[0]), pad_token_id=39)
    assert out[0, 0] == first[0] and (out[0, 1:] == 39).all()


def test_hd_generation_cache_equals_recompute():
    model = tiny_model(variant="hd")
    assert model.config.image_seq_length == 5 * 4 and model.config.vision_tokens_per_query_block == 23
    ids, mask, pixels = _batch(PROMPTS[:2], model, views=5)
    a = model.generate(ids, mask, pixels, max_new_tokens=4, use_cache=True)
    b = model.generate(ids, mask, pixels, max_new_tokens=4, use_cache=False)
    assert torch.equal(a, b)
    assembled, ctx = model.prepare_multimodal(ids, mask, pixels)
    assert ctx.raw_features.shape[1] == 5 * 36  # the query module sees every view's uncompressed patches
