"""transformers' ``generate`` with the gated KV cache (a ``Cache`` subclass) and its static-capacity variant.

Goldens: the package's reference decode loop (``sparse_generate``: greedy, the same prefill and decoding steps
driven by its own loop), a sampling loop written here over ``decode_step``, transformers' own LLaVA (dense beam
search), and teacher-forced re-scoring of the returned beams.
"""

from __future__ import annotations

import threading

import pytest
import torch
from paperzoo_dynamic_llava.modeling_dynamic_llava import GatedKVCache, StaticGatedKVCache
from transformers import (
    DynamicCache,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)


def _sharp_attention(model):
    """Scales the query and key projections so that attention depends on the keys (at the N(0, 0.02)
    initialisation it is nearly uniform, and a cache holding another row's keys would go unnoticed)."""
    with torch.no_grad():
        for layer in model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(25.0)
            layer.self_attn.k_proj.weight.mul_(25.0)
    return model


def _new_tokens(out, batch):
    return out[:, batch["input_ids"].shape[1] :]


@pytest.mark.parametrize("selection", ["dynamic", "random", "fastv", "dense"])
def test_greedy_generate_equals_the_reference_decode_loop(tiny, selection):
    model = tiny.make_model()
    batch = tiny.make_prompts([31, 26, 22], seed=11)  # left padding
    with torch.no_grad():
        ref = model.sparse_generate(**batch, max_new_tokens=8, selection=selection)
        out = model.generate(**batch, max_new_tokens=8, do_sample=False, selection=selection,
                             eos_token_id=None, pad_token_id=tiny.PAD_ID, return_dict_in_generate=True)  # fmt: skip
    assert torch.equal(_new_tokens(out.sequences, batch), ref["sequences"])
    cache = out.cache
    assert isinstance(cache, GatedKVCache)
    assert torch.equal(cache.cached_tokens(), ref["cache"].cached_tokens())
    assert torch.equal(torch.stack(cache.lengths), cache.cached_tokens())  # the 0.1 per-layer views
    assert cache.longest == cache.cached_tokens().amax(1).tolist() and cache.keys[0] is cache.layers[0].keys
    if selection == "dynamic":
        # decoding was sparse: 12 of 16 image tokens and every dropped step are missing
        kept = torch.stack(ref["text_keep"], 1)  # (B, 7 decoding steps)
        assert 0 < int(kept.sum()) < kept.numel()
        lengths = cache.cached_tokens()
        assert torch.equal(lengths[0] - lengths[model.sparse.sparse_layer], 12 + 7 - kept.sum(1))


def test_generate_without_cache_equals_the_reference_no_cache_loop(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([30, 25], seed=12)
    with torch.no_grad():
        ref = model.sparse_generate(**batch, max_new_tokens=6, use_cache=False)
        out = model.generate(**batch, max_new_tokens=6, use_cache=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(_new_tokens(out, batch), ref["sequences"])


def test_sampling_with_a_fixed_seed_equals_a_sampling_loop_over_decode_step(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([29, 24], seed=13)
    steps, temperature = 10, 3.0
    with torch.no_grad():
        torch.manual_seed(7)
        out = model.generate(**batch, max_new_tokens=steps, do_sample=True, temperature=temperature, top_k=0,
                             top_p=1.0, eos_token_id=None, pad_token_id=0)  # fmt: skip
        torch.manual_seed(7)
        cache = GatedKVCache(len(model.language_model.layers))
        logits = model(**batch, cache=cache, last_logits_only=True).logits[:, -1]
        tokens = []
        for t in range(steps):
            nxt = torch.multinomial(torch.softmax(logits.float() / temperature, -1), num_samples=1)[:, 0]
            tokens.append(nxt)
            if t < steps - 1:
                logits, _ = model.decode_step(nxt, cache)
        greedy = model.sparse_generate(**batch, max_new_tokens=steps)["sequences"]
    assert torch.equal(_new_tokens(out, batch), torch.stack(tokens, 1))
    assert not torch.equal(_new_tokens(out, batch), greedy)  # sampling really sampled


def test_dense_beam_search_equals_transformers_llava(tiny):
    model = tiny.make_model()
    reference = LlavaForConditionalGeneration(model.config).eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    batch = tiny.make_prompts([28, 28], seed=14)
    kw = dict(max_new_tokens=6, num_beams=3, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        ours = model.generate(**batch, selection="dense", **kw)
        theirs = reference.generate(**batch, **kw)
    assert torch.equal(ours, theirs)


def test_sparse_beam_search_scores_equal_teacher_forced_decoding(tiny):
    """A wrong reorder of the gated cache (rows of another beam) would score the returned beam differently."""
    model = _sharp_attention(tiny.make_model())
    batch = tiny.make_prompts([30, 27], seed=15)
    steps = 7
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=steps, num_beams=3, num_return_sequences=3, do_sample=False,
                             length_penalty=0.0, eos_token_id=None, pad_token_id=0, return_dict_in_generate=True,
                             output_scores=True)  # fmt: skip
        seqs = _new_tokens(out.sequences, batch)  # (6, steps): 3 beams per sample
        rows = torch.arange(2).repeat_interleave(3)
        expanded = {k: v[rows] for k, v in batch.items()}
        cache = GatedKVCache(len(model.language_model.layers))
        logits = model(**expanded, cache=cache, last_logits_only=True).logits[:, -1]
        total = torch.zeros(6)
        for t in range(steps):
            total += torch.log_softmax(logits.float(), -1).gather(1, seqs[:, t : t + 1])[:, 0]
            if t < steps - 1:
                logits, _ = model.decode_step(seqs[:, t], cache)
    torch.testing.assert_close(out.sequences_scores, total, atol=1e-4, rtol=1e-5)
    assert len({tuple(s) for s in seqs[:3].tolist()}) == 3  # three different beams were followed


def _word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="w1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w1", pad_token="w0")


def test_text_iterator_streamer_yields_the_generated_text(tiny):
    model = tiny.make_model()
    tok = _word_tokenizer(tiny.VOCAB)
    batch = tiny.make_prompts([27], seed=16)
    streamer = TextIteratorStreamer(tok, skip_prompt=True)
    result = {}

    def run():
        with torch.no_grad():
            result["out"] = model.generate(**batch, max_new_tokens=6, streamer=streamer, eos_token_id=None,
                                           pad_token_id=0)  # fmt: skip

    thread = threading.Thread(target=run)
    thread.start()
    text = "".join(streamer)
    thread.join()
    ref = model.sparse_generate(**batch, max_new_tokens=6)["sequences"][0]
    assert torch.equal(_new_tokens(result["out"], batch)[0], ref)
    assert text.split() == [f"w{i}" for i in ref.tolist()]


class _StopAfter(StoppingCriteria):
    def __init__(self, length: int):
        self.length = length

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.length, dtype=torch.bool)


def test_stopping_criteria_and_eos_stop_the_sparse_generation(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([28], seed=17)
    n = batch["input_ids"].shape[1]
    with torch.no_grad():
        ref = model.sparse_generate(**batch, max_new_tokens=8)["sequences"][0]
        stopped = model.generate(**batch, max_new_tokens=8, stopping_criteria=StoppingCriteriaList([_StopAfter(n + 3)]),
                                 eos_token_id=None, pad_token_id=0)  # fmt: skip
        eos = int(ref[4])
        first = int((ref == eos).nonzero()[0])
        ended = model.generate(**batch, max_new_tokens=8, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(_new_tokens(stopped, batch)[0], ref[:3])
    assert torch.equal(_new_tokens(ended, batch)[0], ref[: first + 1])


def test_generate_rejects_caches_it_cannot_decode_with(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([26], seed=18)
    with pytest.raises(ValueError, match="GatedKVCache or StaticGatedKVCache, got DynamicCache"):
        model.generate(**batch, max_new_tokens=2, cache=DynamicCache())
    used = GatedKVCache(len(model.language_model.layers))
    with torch.no_grad():
        model(**batch, cache=used)
    with pytest.raises(ValueError, match="fresh gated KV cache"):
        model.generate(**batch, max_new_tokens=2, cache=used)
    with pytest.raises(ValueError, match="decode one token per sample"):
        model(**batch, cache=used)
    with pytest.raises(ValueError, match="does not take"):
        model.generate(**batch, max_new_tokens=2, labels=batch["input_ids"])


# ------------------------------------------------------------------ the static-capacity variant


@pytest.mark.parametrize("selection", ["dynamic", "random"])
def test_static_cache_equals_the_dynamic_cache(tiny, selection):
    model = tiny.make_model()
    batch = tiny.make_prompts([31, 24, 20], seed=19)
    with torch.no_grad():
        dyn = model.sparse_generate(**batch, max_new_tokens=9, selection=selection, text_keep_pattern=None)
        sta = model.sparse_generate(**batch, max_new_tokens=9, selection=selection, cache_kind="static")
        via_generate = model.generate(**batch, max_new_tokens=9, selection=selection, eos_token_id=None,
                                      pad_token_id=0, cache=StaticGatedKVCache(4, batch["input_ids"].shape[1] + 9))  # fmt: skip
    assert torch.equal(sta["sequences"], dyn["sequences"])
    assert torch.equal(_new_tokens(via_generate, batch), dyn["sequences"])
    assert torch.equal(sta["cache"].cached_tokens(), dyn["cache"].cached_tokens())
    assert torch.equal(torch.stack(sta["text_keep"]), torch.stack(dyn["text_keep"]))
    # the static buffers never grew: one allocation of prompt columns + new tokens per layer
    slots = sta["cache"].layers[0].keys.shape[2]
    assert slots == batch["input_ids"].shape[1] + 9


def _prefilled(model, batch, kind, capacity):
    cache = StaticGatedKVCache(4, capacity) if kind == "static" else GatedKVCache(4)
    logits = model(**batch, cache=cache, last_logits_only=True).logits[:, -1]
    return cache, logits.argmax(-1)


def test_static_decode_step_compiles_with_fullgraph_and_equals_eager(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([30, 23], seed=20)
    capacity = batch["input_ids"].shape[1] + 6
    torch._dynamo.reset()
    step = torch.compile(model.decode_graph, fullgraph=True, backend="eager")  # a graph break is an error
    with torch.no_grad():
        compiled, token_c = _prefilled(model, batch, "static", capacity)
        eager, token_e = _prefilled(model, batch, "dynamic", capacity)
        for _ in range(4):
            logits_c, keep_c = step(token_c, compiled, "dynamic", None, None)
            compiled.seen_tokens += 1
            logits_e, keep_e = model.decode_step(token_e, eager)
            torch.testing.assert_close(logits_c, logits_e, atol=1e-5, rtol=1e-5)
            assert torch.equal(keep_c, keep_e)
            token_c, token_e = logits_c.argmax(-1), logits_e.argmax(-1)
    assert torch.equal(compiled.cached_tokens(), eager.cached_tokens())
    assert torch.equal(compiled.next_position, eager.next_position)


def test_compile_decode_drives_the_static_generation(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([28, 25], seed=21)
    torch._dynamo.reset()
    with torch.no_grad():
        plain = model.sparse_generate(**batch, max_new_tokens=6, cache_kind="static")
        model.compile_decode(backend="eager")
        compiled = model.sparse_generate(**batch, max_new_tokens=6, cache_kind="static")
    assert torch.equal(compiled["sequences"], plain["sequences"])
    assert torch.equal(compiled["cache"].cached_tokens(), plain["cache"].cached_tokens())


def test_static_cache_reports_when_it_is_full(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([26], seed=22)
    cache = StaticGatedKVCache(4, batch["input_ids"].shape[1] + 1)
    with torch.no_grad():
        model(**batch, cache=cache)
        model.decode_step(torch.tensor([5]), cache)
        with pytest.raises(ValueError, match="static gated KV cache is full"):
            model.decode_step(torch.tensor([5]), cache)
    with pytest.raises(ValueError, match="larger max_cache_len"):
        model(**batch, cache=StaticGatedKVCache(4, 10))


def test_static_cache_beam_search_equals_the_dynamic_cache(tiny):
    """Beam reordering in place (the static buffers keep their addresses) picks the same rows."""
    model = _sharp_attention(tiny.make_model())
    batch = tiny.make_prompts([29, 25], seed=23)
    kw = dict(
        max_new_tokens=6, num_beams=3, do_sample=False, eos_token_id=None, pad_token_id=0, selection="random"
    )
    with torch.no_grad():
        dyn = model.generate(**batch, **kw, return_dict_in_generate=True)
        cache = StaticGatedKVCache(4, batch["input_ids"].shape[1] + 6)
        sta = model.generate(**batch, **kw, cache=cache, return_dict_in_generate=True)
    assert torch.equal(sta.sequences, dyn.sequences)
    torch.testing.assert_close(sta.sequences_scores, dyn.sequences_scores)
    assert torch.equal(cache.cached_tokens(), dyn.cache.cached_tokens())
