"""The embedded query module (Sec. 3.3): where it runs, what it touches, padding, text-only samples."""

from __future__ import annotations

import pytest
import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_model

I, L = IMAGE_ID, LEARNABLE_ID


def _batch(samples, spans, model, seed=0):
    width = max(len(s) for s in samples)
    ids = torch.zeros(len(samples), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    qs = torch.full((len(samples), 2, 2), -1)
    for b, s in enumerate(samples):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
        qs[b, : len(spans[b])] = torch.tensor(spans[b])
    n_images = sum(s.count(I) for s in samples)
    size = model.config.vision_config.image_size
    pixels = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "question_spans": qs}


A = [10, 11, I, 12, 13, 14, L, 15, 16]
A_SPANS = [(3, 6)]
B = [10, 11, I, 12, 13, 14, 17, 18, 19, 20, L, 15, 16]
B_SPANS = [(3, 10)]


def test_only_query_positions_change(model):
    batch = _batch([A, B], [A_SPANS, B_SPANS], model)
    assembled, ctx = model.prepare_multimodal(**batch)
    hidden = torch.randn_like(assembled.inputs_embeds)
    refined = model.apply_embedded_query(hidden, ctx.layout, ctx.raw_features)
    changed = (refined - hidden).abs().sum(-1) > 0
    expected = torch.zeros_like(changed)
    for b, s in zip(ctx.layout.sample.tolist(), ctx.layout.start.tolist()):
        expected[b, s : s + model.config.num_query_tokens] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_runs_on_the_input_of_the_configured_layer(monkeypatch, layer):
    model = tiny_model(embq_layer=layer)
    batch = _batch([A], [A_SPANS], model)
    seen = {}
    original = model.apply_embedded_query

    def spy(hidden, layout, raw):
        seen["input"] = hidden.detach().clone()
        return original(hidden, layout, raw)

    def record_previous(module, args, output):
        seen["previous"] = (output[0] if isinstance(output, tuple) else output).detach()

    monkeypatch.setattr(model, "apply_embedded_query", spy)
    handle = model.decoder_layers[layer - 1].register_forward_hook(record_previous) if layer else None
    with torch.no_grad():
        model(**batch)
    if handle is not None:
        handle.remove()
        torch.testing.assert_close(seen["input"], seen["previous"])
    else:
        assembled, _ = model.prepare_multimodal(**batch)
        torch.testing.assert_close(seen["input"], assembled.inputs_embeds)


def test_acts_only_through_its_residual():
    model = tiny_model()
    batch = _batch([A, B], [A_SPANS, B_SPANS], model)
    with torch.no_grad():
        with_module = model(**batch).logits
        model.embedded_query.up.weight.zero_()
        model.embedded_query.up.bias.zero_()
        zeroed = model(**batch).logits
        model.embedded_query = None
        without = model(**batch).logits
    torch.testing.assert_close(zeroed, without)
    assert not torch.allclose(with_module, without)


def _loud_module(model, seed=0):
    """Random N(0, 0.5^2) weights (LayerNorms included) in the query module, so its contribution is O(1): at init
    (up-projection N(0, 0.02^2)) it moves the queries by ~6e-3 and a padding leak would hide below any tolerance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.embedded_query.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def test_padding_has_no_effect():
    model = _loud_module(tiny_model())
    alone = _batch([A], [A_SPANS], model, seed=3)
    both = _batch([A, B], [A_SPANS, B_SPANS], model, seed=3)
    both["pixel_values"][0] = alone["pixel_values"][0]
    with torch.no_grad():
        a, ctx_a = model.prepare_multimodal(**alone)
        ab, ctx_ab = model.prepare_multimodal(**both)
        h_a = torch.randn_like(a.inputs_embeds)
        h_ab = torch.randn_like(ab.inputs_embeds)
        h_ab[0, : h_a.shape[1]] = h_a[
            0
        ]  # same hidden states for sample A; its text slots are padded in the batch
        out_a = model.apply_embedded_query(h_a, ctx_a.layout, ctx_a.raw_features)
        out_ab = model.apply_embedded_query(h_ab, ctx_ab.layout, ctx_ab.raw_features)
        leaky = ctx_ab.layout
        leaky = type(leaky)(**{**vars(leaky), "text_mask": torch.ones_like(leaky.text_mask)})
        out_leak = model.apply_embedded_query(h_ab, leaky, ctx_ab.raw_features)
    assert ctx_ab.layout.text_mask[0].sum() < ctx_ab.layout.text_mask.shape[1]  # A really is padded
    # the module's effect and a padding leak are both far above the tolerance, so the check can fail
    assert float((out_a - h_a).abs().max()) > 0.1
    assert float((out_leak[0, : h_a.shape[1]] - out_a[0]).abs().max()) > 1e-2
    torch.testing.assert_close(out_ab[0, : h_a.shape[1]], out_a[0], rtol=1e-5, atol=1e-5)
    # perturbing the padded input ids and the padding positions leaves every valid logit unchanged
    with torch.no_grad():
        ref = model(**both).logits
        noisy = {k: v.clone() for k, v in both.items()}
        noisy["input_ids"][0, len(A) :] = 33
        out = model(**noisy).logits
    valid = torch.zeros(ref.shape[:2], dtype=torch.bool)
    valid[0, : ref.shape[1] - (len(B) - len(A))] = True
    valid[1] = True
    torch.testing.assert_close(out[valid], ref[valid])


def test_text_only_sample_is_unchanged_but_in_the_graph():
    model = tiny_model().train()
    ids = torch.tensor([[10, 11, 12, 13, L, 15, 16]])
    labels = ids.clone()
    out = model(ids, torch.ones_like(ids), None, labels=labels)
    out.loss.backward()
    grads = [p.grad for p in model.embedded_query.parameters()]
    assert all(g is not None for g in grads)
    assert all(float(g.abs().sum()) == 0.0 for g in grads)
    assembled, ctx = model.prepare_multimodal(ids, torch.ones_like(ids), None)
    hidden = torch.randn_like(assembled.inputs_embeds)
    torch.testing.assert_close(model.apply_embedded_query(hidden, ctx.layout, ctx.raw_features), hidden)


def test_reads_the_uncompressed_features():
    model = tiny_model()
    batch = _batch([A], [A_SPANS], model)
    assembled, ctx = model.prepare_multimodal(**batch)
    assert ctx.raw_features.shape[1] == model.config.patches_per_view == 36  # 6x6, not the 2x2 pooled tokens
    raw = ctx.raw_features.detach().requires_grad_(True)
    hidden = assembled.inputs_embeds.detach()
    out = model.apply_embedded_query(hidden, ctx.layout, raw)
    out.sum().backward()
    assert (raw.grad.abs().sum(-1) > 0).all()  # every one of the 36 patch features reaches the queries


@pytest.mark.parametrize("layer", [1, 3])
def test_layer_choice_matters(layer):
    base = tiny_model(embq_layer=2)
    other = tiny_model(embq_layer=layer)
    other.load_state_dict(base.state_dict())
    batch = _batch([A], [A_SPANS], base)
    with torch.no_grad():
        assert not torch.allclose(base(**batch).logits, other(**batch).logits)
