"""The central invariants of Dynamic-LLaVA's three execution paths, on a tiny random LLaVA.

Goldens come from transformers' own LLaVA (dense path), from the other execution path of the paper (masked
training path vs physically pruned inference; KV-cache decoding vs a no-cache forward) or from per-sample runs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from paperzoo_dynamic_llava.modeling_dynamic_llava import (
    GatedKVCache,
    gumbel_tau_at,
    hard_gumbel_keep,
    masked_softmax_attention,
)
from transformers import LlavaForConditionalGeneration


def _answer_mask(batch, n_answer):
    mask = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    mask[:, -n_answer:] = True
    return mask


def test_dense_path_equals_transformers_llava(tiny):
    model = tiny.make_model(kv_heads=2)  # grouped-query attention too
    reference = LlavaForConditionalGeneration(model.config).eval()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all("score_predictor" in k for k in unexpected)
    batch = tiny.make_prompts([30, 30], seed=1)
    with torch.no_grad():
        ours = model(**batch, selection="dense").logits
        theirs = reference(**batch).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("eps,atol", [(0.0, 2e-5), (1e-6, 1e-4)])
def test_masked_training_path_equals_pruned_inference_on_kept_tokens(tiny, eps, atol):
    model = tiny.make_model(masked_softmax_eps=eps)
    batch = tiny.make_prompts([34, 30, 27], seed=2)  # left padding
    answer = _answer_mask(batch, 8)
    with torch.no_grad():
        masked = model(**batch, answer_mask=answer, execution="mask")
        pruned = model(**batch, answer_mask=answer, execution="prune")
    # the same decisions: top-k image tokens and thresholded output text (the newest token always computed)
    kept_by_mask = masked.keep.bool() & batch["attention_mask"].bool()
    assert 0 < int((kept_by_mask & answer).sum()) < int(answer.sum())  # the text predictor drops some tokens
    for b in range(3):
        rows = pruned.real[b]
        idx = pruned.token_index[b][rows]
        expected = kept_by_mask[b].nonzero().squeeze(1)
        expected = torch.unique(torch.cat([expected, torch.tensor([batch["input_ids"].shape[1] - 1])]))
        assert torch.equal(idx, expected)
        torch.testing.assert_close(pruned.logits[b][rows], masked.logits[b, idx], atol=atol, rtol=1e-4)


def test_prefill_keeps_int_n_times_rate_sorted_with_original_positions(tiny):
    model = tiny.make_model()  # 16 image tokens, keep 0.25 -> 4
    batch = tiny.make_prompts([28, 28], seed=3)
    with torch.no_grad():
        out = model(**batch, execution="prune")
    image = batch["input_ids"] == tiny.IMAGE_ID
    kept_image = out.keep.bool() & image
    assert kept_image.sum(1).tolist() == [4, 4] == [int(16 * 0.25)] * 2
    assert out.token_index.shape[1] == 28 - 16 + 4
    assert torch.all(out.token_index[:, 1:] > out.token_index[:, :-1])  # order preserved
    # the decision is the top-k keep log-probability of the image predictor on the hidden states at the input
    # of sparse_layer, taken here from transformers' own LLaVA (output_hidden_states)
    reference = LlavaForConditionalGeneration(model.config).eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        hidden = reference(**batch, output_hidden_states=True).hidden_states[model.sparse.sparse_layer]
        for b in range(2):
            logits = model.image_score_predictor(hidden[b][image[b]][None])
            top = F.log_softmax(logits, -1)[0, :, 0].topk(4).indices
            expected = image[b].nonzero().squeeze(1)[top].sort().values
            assert torch.equal(kept_image[b].nonzero().squeeze(1), expected)
    assert int(576 * 0.2) == 115  # the paper's count follows the same int() rule


def test_gated_kv_cache_decoding_equals_no_cache_forward(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([30, 26], seed=4)
    steps = 7
    gen = torch.randint(5, tiny.VOCAB, (2, steps), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = GatedKVCache(len(model.language_model.layers))
        cache.next_position = batch["attention_mask"].sum(1)
        model(**batch, execution="prune", cache=cache)
        decisions = []
        for t in range(steps):
            logits, keep = model.decode_step(gen[:, t], cache)
            decisions.append(keep)
            ids = torch.cat([batch["input_ids"], gen[:, : t + 1]], 1)
            mask = torch.cat([batch["attention_mask"], torch.ones_like(gen[:, : t + 1])], 1)
            answer = torch.zeros_like(ids, dtype=torch.bool)
            answer[:, -(t + 1) :] = True
            ref = model(ids, batch["pixel_values"], mask, answer_mask=answer, execution="prune")
            last = (ref.real.long() * torch.arange(ref.real.shape[1])).argmax(1)
            torch.testing.assert_close(logits, ref.logits[torch.arange(2), last], atol=2e-5, rtol=1e-4)
    kept = torch.stack(decisions, 1)
    assert 0 < int(kept.sum()) < kept.numel()
    lengths = cache.cached_tokens()  # (layers, batch)
    prompt = batch["attention_mask"].sum(1)
    l = model.sparse.sparse_layer
    assert torch.equal(lengths[:l], (prompt + steps).expand(l, 2))  # dense layers cache every token
    expected = prompt - 16 + 4 + kept.sum(1)
    assert torch.equal(lengths[l:], expected.expand(len(lengths) - l, 2))
    assert torch.equal(cache.next_position, prompt + steps)  # RoPE positions stay absolute


@pytest.mark.parametrize("selection", ["dynamic", "dense", "random", "fastv"])
def test_left_padded_batch_equals_per_sample_runs(tiny, selection):
    model = tiny.make_model()
    lengths = [31, 26, 22]
    batch = tiny.make_prompts(lengths, seed=5)
    with torch.no_grad():
        together = model.sparse_generate(**batch, max_new_tokens=6, selection=selection, seed=3)
        for b, length in enumerate(lengths):
            single = {
                k: v[b : b + 1, -length:] if k != "pixel_values" else v[b : b + 1] for k, v in batch.items()
            }
            alone = model.sparse_generate(**single, max_new_tokens=6, selection=selection, seed=3)
            if selection != "random":  # random decisions are drawn per batch row, so only the others compare
                assert torch.equal(together["sequences"][b], alone["sequences"][0])
                torch.testing.assert_close(
                    together["cache"].cached_tokens()[:, b],
                    alone["cache"].cached_tokens()[:, 0],
                    atol=0,
                    rtol=0,
                )
        # prefill logits of each sample's last token agree to float precision
        out = model(**batch, selection="dense" if selection == "random" else selection, execution="prune")
        last = (out.real.long() * torch.arange(out.real.shape[1])).argmax(1)
        for b, length in enumerate(lengths):
            single = {
                k: v[b : b + 1, -length:] if k != "pixel_values" else v[b : b + 1] for k, v in batch.items()
            }
            one = model(
                **single, selection="dense" if selection == "random" else selection, execution="prune"
            )
            torch.testing.assert_close(out.logits[b, last[b]], one.logits[0, -1], atol=2e-5, rtol=1e-4)


def test_padding_changes_nothing_in_any_layer(tiny):
    """Catches the official bug (attention mask dropped after layer 0): pad token values must not matter."""
    model = tiny.make_model()
    batch = tiny.make_prompts([30, 20], seed=6)
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][1, :10] = 7  # different pad ids under the mask
    with torch.no_grad():
        a = model(**batch, execution="prune")
        b = model(**other, execution="prune")
    torch.testing.assert_close(a.logits[1][a.real[1]], b.logits[1][b.real[1]], atol=1e-5, rtol=1e-5)


def test_no_cache_generation_matches_cache_generation(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([30, 25], seed=7)
    with torch.no_grad():
        a = model.sparse_generate(**batch, max_new_tokens=8, use_cache=True)
        b = model.sparse_generate(**batch, max_new_tokens=8, use_cache=False)
    assert torch.equal(a["sequences"], b["sequences"])


def test_fastv_keeps_image_tokens_most_attended_by_last_token_in_previous_layer(tiny):
    """Independent check through transformers' eager attention weights (output_attentions)."""
    model = tiny.make_model()
    batch = tiny.make_prompts([28], seed=8)
    reference = LlavaForConditionalGeneration(model.config)
    reference.load_state_dict(model.state_dict(), strict=False)
    reference.eval().set_attn_implementation("eager")
    with torch.no_grad():
        att = reference(**batch, output_attentions=True).attentions[model.sparse.sparse_layer - 1]
        out = model(**batch, selection="fastv", execution="prune")
    image = (batch["input_ids"][0] == tiny.IMAGE_ID).nonzero().squeeze(1)
    scores = att[0].mean(0)[-1, image]
    expected = image[scores.topk(4).indices].sort().values
    kept = out.token_index[0][torch.isin(out.token_index[0], image)]
    assert torch.equal(kept, expected)


def test_masked_softmax_all_ones_equals_causal_softmax():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    visible = torch.ones(7, 7, dtype=torch.bool).tril()[None].expand(2, 7, 7)
    ours = masked_softmax_attention(q, k, v, visible, torch.ones(2, 7), eps=0.0)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_masked_softmax_dropped_key_only_attends_itself():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    visible = torch.ones(6, 6, dtype=torch.bool).tril()[None]
    policy = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]])
    out = masked_softmax_attention(q, k, v, visible, policy, eps=0.0)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 2] += 5.0
    v2[:, :, 2] -= 3.0
    out2 = masked_softmax_attention(q, k2, v2, visible, policy, eps=0.0)
    others = [0, 1, 3, 4, 5]
    torch.testing.assert_close(out[:, :, others], out2[:, :, others])  # nobody else sees token 2
    assert torch.isfinite(out[:, :, 2]).all() and not torch.allclose(out[:, :, 2], out2[:, :, 2])


def test_hard_gumbel_is_binary_with_straight_through_gradient():
    torch.manual_seed(2)
    logits = torch.randn(4, 10, 2, requires_grad=True)
    keep = hard_gumbel_keep(logits, tau=0.5)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    (keep * torch.arange(10.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gumbel_tau_schedule():
    values = [gumbel_tau_at(s, 100, 1.0, 0.1) for s in (0, 50, 100)]
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx(math.sqrt(0.1), rel=1e-6)  # 0.316
    assert values[2] == pytest.approx(0.1)


def _training_batch(tiny, answer_lengths, seed=9):
    prompt = 24
    batch = tiny.make_prompts([prompt + a for a in answer_lengths], seed=seed)
    n = batch["input_ids"].shape[1]
    # training batches are right padded: roll left-padded rows to the left
    for b, a in enumerate(answer_lengths):
        shift = n - (prompt + a)
        for key in ("input_ids", "attention_mask"):
            batch[key][b] = batch[key][b].roll(-shift)
    labels = torch.full_like(batch["input_ids"], -100)
    for b, a in enumerate(answer_lengths):
        labels[b, prompt : prompt + a] = batch["input_ids"][b, prompt : prompt + a]
    batch["labels"] = labels
    return batch


def test_straight_through_gradients_reach_both_predictors(tiny):
    model = tiny.make_model(mask_loss_weight=0.0)  # gradients through the LM loss alone
    model.train()
    batch = _training_batch(tiny, [8, 6])
    torch.manual_seed(0)
    out = model(**batch)
    out.loss.backward()
    for name in ("image_score_predictor", "output_text_score_predictor"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert out.image_ratio_loss is not None and out.text_ratio_loss is not None


def test_ratio_losses_follow_eq_11_12_and_len_ot(tiny):
    model = tiny.make_model(mask_loss_weight=100.0, output_text_len_for_training=6)
    model.train()
    batch = _training_batch(tiny, [8, 3])  # sample 1's answer is shorter than LEN_OT
    torch.manual_seed(1)
    out = model(**batch)
    image = batch["input_ids"] == tiny.IMAGE_ID
    ratio = torch.stack([out.keep[b][image[b]].mean() for b in range(2)])
    assert torch.allclose(out.image_ratio_loss, ((0.25 - ratio) ** 2).mean())
    answer = batch["labels"] != -100
    assert torch.all(out.keep[1][answer[1]] == 1)  # short answers are kept whole
    text_ratio = out.keep[0][answer[0]].mean()
    expected = ((0.5 - text_ratio) ** 2 + 0.0) / 2  # the short sample contributes zero
    assert torch.allclose(out.text_ratio_loss, expected)
    assert torch.allclose(out.loss, out.lm_loss + 100.0 * (out.image_ratio_loss + out.text_ratio_loss))
    lm = F.cross_entropy(out.logits[:, :-1].reshape(-1, tiny.VOCAB), batch["labels"][:, 1:].reshape(-1))
    assert torch.allclose(out.lm_loss, lm)


def test_predictor_layout_matches_the_official_checkpoint_keys():
    """Key names and shapes of Osilly/dynamic_llava's VisionPredictor / TextPredictor for LLaVA-1.5-7B
    (C=4096, d_model=512, 8 heads, MLP 2048, 2 blocks), written out by hand from the official module."""
    from paperzoo_dynamic_llava.configuration import SparseConfig
    from paperzoo_dynamic_llava.modeling_dynamic_llava import ImagePredictor, OutputTextPredictor

    image = {k: tuple(v.shape) for k, v in ImagePredictor(4096, SparseConfig()).state_dict().items()}
    expected = {
        "down_mlp.0.weight": (4096,), "down_mlp.0.bias": (4096,),
        "down_mlp.1.weight": (512, 4096), "down_mlp.1.bias": (512,),
        "output_mlp.0.weight": (256, 512), "output_mlp.0.bias": (256,),
        "output_mlp.2.weight": (128, 256), "output_mlp.2.bias": (128,),
        "output_mlp.4.weight": (2, 128), "output_mlp.4.bias": (2,),
    }  # fmt: skip
    for i in range(2):
        expected.update({
            f"transformer.{i}.norm1.weight": (512,), f"transformer.{i}.norm1.bias": (512,),
            f"transformer.{i}.attn.qkv.weight": (1536, 512),
            f"transformer.{i}.attn.proj.weight": (512, 512), f"transformer.{i}.attn.proj.bias": (512,),
            f"transformer.{i}.norm2.weight": (512,), f"transformer.{i}.norm2.bias": (512,),
            f"transformer.{i}.mlp.fc1.weight": (2048, 512), f"transformer.{i}.mlp.fc1.bias": (2048,),
            f"transformer.{i}.mlp.fc2.weight": (512, 2048), f"transformer.{i}.mlp.fc2.bias": (512,),
        })  # fmt: skip
    assert image == expected
    text = {k: tuple(v.shape) for k, v in OutputTextPredictor(4096, SparseConfig()).state_dict().items()}
    assert text == {
        "output_mlp.0.weight": (4096,), "output_mlp.0.bias": (4096,),
        "output_mlp.1.weight": (512, 4096), "output_mlp.1.bias": (512,),
        "output_mlp.3.weight": (256, 512), "output_mlp.3.bias": (256,),
        "output_mlp.5.weight": (128, 256), "output_mlp.5.bias": (128,),
        "output_mlp.7.weight": (2, 128), "output_mlp.7.bias": (2,),
    }  # fmt: skip
