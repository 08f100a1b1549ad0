"""Generation through transformers' GenerationMixin: the KV-cache path equals step-by-step recomputation by hand,
batched equals per-sample, sampling is seeded, streamers see every token, HD works end to end."""

from __future__ import annotations

import torch
from flashsloth_testlib import EOS_ID, IMAGE_ID, LEARNABLE_ID, tiny_model
from transformers import GenerationMixin

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


def greedy_by_recompute(model, ids, mask, pixels, steps):
    """Independent of generate: the full (placeholder) forward on the growing prompt, argmax each step."""
    ids, mask = ids.clone(), mask.clone()
    logits = []
    for _ in range(steps):
        with torch.no_grad():
            last = model(ids, mask, pixels, padding_side="left").logits[:, -1]
        logits.append(last)
        ids = torch.cat([ids, last.argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids, torch.stack(logits, 1)


def test_generate_is_transformers_generate():
    model = tiny_model()
    assert type(model).generate is GenerationMixin.generate


def test_kv_cache_equals_recompute_by_hand():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS, model)
    out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=6,
                         do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0,
                         eos_token_id=None)  # fmt: skip
    expected_ids, expected_logits = greedy_by_recompute(model, ids, mask, pixels, 6)
    assert torch.equal(out.sequences, expected_ids)
    torch.testing.assert_close(torch.stack(out.logits, 1), expected_logits, rtol=1e-4, atol=1e-5)
    no_cache = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=6,
                              do_sample=False, use_cache=False, pad_token_id=0, eos_token_id=None)  # fmt: skip
    assert torch.equal(no_cache, expected_ids)


def test_batched_equals_one_by_one():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS, model)
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    together = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, **kw)[
        :, ids.shape[1] :
    ]
    image = 0
    for b, prompt in enumerate(PROMPTS):
        n = prompt.count(I)
        alone = model.generate(input_ids=torch.tensor([prompt]), pixel_values=pixels[image : image + n], **kw)
        image += n
        assert torch.equal(alone[0, len(prompt) :], together[b]), b


def test_eos_stops_and_pads():
    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS, model)
    first, _ = greedy_by_recompute(model, ids, mask, pixels, 1)
    eos = int(first[0, -1])
    out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4,
                         eos_token_id=eos, pad_token_id=39, do_sample=False)[:, ids.shape[1] :]  # fmt: skip
    assert out[0, 0] == eos and (out[0, 1:] == 39).all()


def test_sampling_is_seeded_and_differs_from_greedy():
    model = tiny_model()
    with torch.no_grad():  # a flat distribution: sampling must leave the argmax path
        model.language_model.lm_head.weight.mul_(0.01)
    ids, mask, pixels = _batch(PROMPTS, model)
    kw = dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=8, pad_token_id=0,
              eos_token_id=None)  # fmt: skip
    torch.manual_seed(1)
    a = model.generate(**kw, do_sample=True, temperature=1.0, top_k=0)
    torch.manual_seed(1)
    b = model.generate(**kw, do_sample=True, temperature=1.0, top_k=0)
    greedy = model.generate(**kw, do_sample=False)
    assert torch.equal(a, b)
    assert not torch.equal(a, greedy)
    assert ((a[:, ids.shape[1] :] >= 0) & (a[:, ids.shape[1] :] < model.config.text_config.vocab_size)).all()


def test_streamer_receives_every_token():
    class Collect:
        def __init__(self):
            self.chunks = []
            self.ended = False

        def put(self, value):
            self.chunks.append(value.clone())

        def end(self):
            self.ended = True

    model = tiny_model()
    ids, mask, pixels = _batch(PROMPTS[:1], model)
    streamer = Collect()
    out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4,
                         do_sample=False, streamer=streamer, pad_token_id=0, eos_token_id=None)  # fmt: skip
    assert streamer.ended
    assert torch.equal(streamer.chunks[0].view(-1), ids[0])  # the prompt first, then one token per step
    assert torch.equal(torch.cat([c.view(-1) for c in streamer.chunks[1:]]), out[0, ids.shape[1] :])


def test_hd_generation_cache_equals_recompute():
    model = tiny_model(variant="hd")
    assert model.config.image_seq_length == 5 * 4 and model.config.vision_tokens_per_query_block == 23
    ids, mask, pixels = _batch(PROMPTS[:2], model, views=5)
    a = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4,
                       do_sample=False, pad_token_id=0, eos_token_id=None)  # fmt: skip
    b, _ = greedy_by_recompute(model, ids, mask, pixels, 4)
    assert torch.equal(a, b)
    assembled, ctx = model.prepare_multimodal(ids, mask, pixels)
    assert ctx.raw_features.shape[1] == 5 * 36  # the query module sees every view's uncompressed patches


def test_query_module_runs_at_prefill_only(monkeypatch):
    model = tiny_model()
    calls = []
    original = model.apply_embedded_query

    def spy(hidden, layout, raw):
        calls.append(hidden.shape[1])
        return original(hidden, layout, raw)

    monkeypatch.setattr(model, "apply_embedded_query", spy)
    ids, mask, pixels = _batch(PROMPTS[:1], model)
    model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4, do_sample=False,
                   pad_token_id=0, eos_token_id=None)  # fmt: skip
    assert len(calls) == 1 and calls[0] > 1  # once, on the whole prompt
    assert EOS_ID == 2
