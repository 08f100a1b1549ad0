"""Hand-computed goldens for the rules of ``modeling_vita.py`` that the mutation run (README, "Mutation testing")
found unpinned: CMVN, the subsampling's layout and masks, the sinusoid table, the relative-position attention, the
residual wiring, the init, the CMVN loader's precision, the dummy-modality terms, the forward's pass-through
arguments, the prefill-only media rule and the stage switches."""

from __future__ import annotations

import json
import math

import pytest
import torch
from paperzoo_vita.configuration import VitaAudioConfig, tiny_vita_config
from paperzoo_vita.modeling_vita import (
    Conv2dSubsampling4,
    GlobalCMVN,
    RelPositionalEncoding,
    RelPositionAttention,
    VitaForConditionalGeneration,
    VitaProjector,
    WhaleAudioEncoder,
    WhaleLayer,
    load_global_cmvn,
    pixel_shuffle,
)
from torch import nn


def test_pixel_shuffle_rejects_odd_or_non_square_grids():
    with pytest.raises(ValueError, match="square grid of even side, got 25 tokens"):
        pixel_shuffle(torch.zeros(1, 25, 2))  # 5 x 5: square, odd
    with pytest.raises(ValueError, match="square grid of even side, got 8 tokens"):
        pixel_shuffle(torch.zeros(1, 8, 2))


def test_projector_golden():
    proj = VitaProjector(2, 2)  # default activation: GELU
    assert [type(m).__name__ for m in proj] == ["Linear", "GELUActivation", "Linear"]
    with torch.no_grad():
        proj[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        proj[0].bias.zero_()
        proj[2].weight.copy_(torch.eye(2))
        proj[2].bias.copy_(torch.tensor([0.5, 0.0]))
    # gelu(1) = 0.8413447, gelu(-2) = -2 * Phi(-2) = -0.0455003
    out = proj(torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.5 + 0.8413447, -0.0455003]]), atol=1e-6, rtol=0)


def test_cmvn_golden():
    cmvn = GlobalCMVN(2)
    cmvn.mean.copy_(torch.tensor([1.0, -2.0]))
    cmvn.istd.copy_(torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(
        cmvn(torch.tensor([[3.0, 2.0]])), torch.tensor([[4.0, 2.0]])
    )  # (3-1)*2, (2+2)/2


def test_subsampling_golden_layout_and_odd_lengths():
    # (n - 1) // 2 twice: 81 -> 40 -> 19, 83 -> 41 -> 20 (neighbouring formulas agree on 80 -> 19)
    assert [Conv2dSubsampling4(num_bins=n, dim=1).out.in_features for n in (80, 81, 83)] == [19, 19, 20]
    sub = Conv2dSubsampling4(num_bins=11, dim=2)  # frequency: 11 -> 5 -> 2
    assert sub.out.in_features == 4
    with torch.no_grad():
        for conv in (sub.conv[0], sub.conv[2]):
            conv.weight.zero_()
            conv.bias.zero_()
        sub.conv[0].weight[0, 0, 1, 1] = 1.0  # channel 0: the centre sample; channel 1: 0
        sub.conv[2].weight[0, 0, 1, 1] = 1.0  # channel 0: the centre of channel 0
        sub.conv[2].weight[1, 0, 1, 1] = 2.0  # channel 1: twice it, minus 100, through the last ReLU
        sub.conv[2].bias[1] = -100.0
        sub.out.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))
        sub.out.bias.zero_()
    x = torch.arange(11 * 11, dtype=torch.float32).reshape(1, 11, 11)  # value 11 t + f
    out, mask = sub(x, torch.ones(1, 11, dtype=torch.bool))
    # output (t'', f'') sees input (4 t'' + 3, 4 f'' + 3): v = 11 (4 t'' + 3) + 4 f'' + 3 -> v(0, .) = 36, 40 and
    # v(1, .) = 80, 84. The Linear reads (channel, frequency) channel-major: feature 1 = channel 0 at f'' = 1,
    # feature 2 = channel 1 at f'' = 0 = relu(2 v(t'', 0) - 100)
    torch.testing.assert_close(out[0], torch.tensor([[40.0, 0.0], [84.0, 60.0]]))
    assert mask.shape == (1, 2)
    lengths = torch.tensor([99, 61])
    mask = torch.arange(99)[None] < lengths[:, None]
    sub = Conv2dSubsampling4(80, 2)
    out, sub_mask = sub(torch.randn(2, 99, 80), mask)
    assert sub_mask.shape[1] == out.shape[1] == 24  # (99 - 1) // 2 = 49, (49 - 1) // 2 = 24
    assert sub_mask.sum(1).tolist() == [24, 14]  # 61 -> 30 -> 14


def test_sinusoid_table_and_scaling_golden():
    enc = RelPositionalEncoding(4)
    assert enc.table.shape == (5000, 4) and enc.dropout.p == 0.1 and enc.table.dtype == torch.float32
    # dim 4: frequencies 10000^(-0/4) = 1 and 10000^(-2/4) = 0.01; row p = [sin p, cos p, sin 0.01p, cos 0.01p]
    for p in (1, 7):
        expected = [math.sin(p), math.cos(p), math.sin(0.01 * p), math.cos(0.01 * p)]
        assert enc.table[p].tolist() == pytest.approx(expected, abs=1e-6)
    enc.eval()
    x, pos = enc(torch.ones(1, 3, 4))
    torch.testing.assert_close(x, torch.full((1, 3, 4), 2.0))  # x sqrt(4)
    torch.testing.assert_close(pos, enc.table[None, :3])
    short = RelPositionalEncoding(2, max_len=3)
    short(torch.ones(1, 3, 2))  # exactly the table's length is fine
    with pytest.raises(ValueError) as info:
        short(torch.ones(1, 4, 2))
    assert str(info.value) == (
        "audio of 4 encoder frames exceeds the 3-row position table (about 0 s); split the clip"
    )
    with pytest.raises(ValueError, match="2000-row position table \\(about 80 s\\)"):
        RelPositionalEncoding(2, max_len=2000)(torch.ones(1, 2001, 2))


def test_relative_position_attention_golden():
    att = RelPositionAttention(dim=4, heads=2, dropout=0.0)  # d_k = 2
    with torch.no_grad():
        for lin in (att.linear_q, att.linear_k, att.linear_v, att.linear_out):
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
        att.linear_pos.weight.copy_(torch.eye(4))
        att.pos_bias_u.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
        att.pos_bias_v.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    x = torch.tensor([[[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 1.0], [2.0, 3.0, 1.0, 1.0]]])  # T = 3
    pos = torch.tensor([[[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]])
    key_mask = torch.tensor([[True, True, False]])  # the third frame is padding
    out = att(x, key_mask, pos)
    # head h uses channels 2h, 2h+1: q = k = v = x[:, 2h:2h+2], p = pos[:, 2h:2h+2];
    # scores[i, j] = ((q_i + u_h) . k_j + (q_i + v_h) . p_j) / sqrt(2) over the real keys j = 0, 1
    expected = torch.zeros(3, 4)
    for h in range(2):
        q, p = x[0, :, 2 * h : 2 * h + 2], pos[0, :, 2 * h : 2 * h + 2]
        u, v = att.pos_bias_u[h].detach(), att.pos_bias_v[h].detach()
        for i in range(3):
            scores = torch.stack([((q[i] + u) @ q[j] + (q[i] + v) @ p[j]) / math.sqrt(2) for j in range(2)])
            w = torch.softmax(scores, 0)
            expected[i, 2 * h : 2 * h + 2] = w[0] * q[0] + w[1] * q[1]
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)
    # one entry by hand: head 0, query 0 = (1, 0): scores ((2, 0).(1, 0) + (1, 1).(0, 1)) / sqrt 2 = 3 / sqrt 2 and
    # ((2, 0).(0, 1) + (1, 1).(1, 0)) / sqrt 2 = 1 / sqrt 2; output channel 0 = w_0 * 1 + w_1 * 0
    w0 = 1 / (1 + math.exp(-2 / math.sqrt(2)))
    assert out[0, 0, 0].item() == pytest.approx(w0, abs=1e-6)


def test_whale_layer_is_pre_norm_residual():
    cfg = VitaAudioConfig(hidden_size=4, num_attention_heads=2, intermediate_size=8, dropout=0.0)
    layer = WhaleLayer(cfg).eval()
    x, mask, pos = torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.bool), torch.randn(1, 3, 4)
    h = x + layer.self_attn(layer.norm1(x), mask, pos)
    torch.testing.assert_close(layer(x, mask, pos), h + layer.feed_forward(layer.norm2(h)))


def test_encoder_honours_the_config():
    cfg = VitaAudioConfig(
        hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, dropout=0.3,
        layer_norm_eps=1e-3,
    )  # fmt: skip
    enc = WhaleAudioEncoder(cfg)
    assert [type(m) for m in enc.embed] == [nn.Linear, nn.LayerNorm, nn.Dropout, nn.ReLU]
    assert enc.embed[2].p == 0.3 and enc.pos_enc.dropout.p == 0.3
    norms = [enc.embed[1], enc.after_norm, enc.layers[0].norm1, enc.layers[0].norm2]
    assert [n.eps for n in norms] == [1e-3] * 4
    assert [type(m) for m in enc.subsampling.conv] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]
    assert [c.kernel_size for c in enc.subsampling.conv[::2]] == [(3, 3), (3, 3)]


def _tiny(**kw):
    torch.manual_seed(0)
    return VitaForConditionalGeneration(tiny_vita_config(**kw))


def test_init_weights():
    model = _tiny()
    w = model.audio_encoder.subsampling.out.weight  # VITA's own module: 32 x 608 normal(0, 0.02) draws
    assert abs(w.mean().item()) < 0.002 and w.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.audio_encoder.cmvn.mean.eq(0).all() and model.audio_encoder.cmvn.istd.eq(1).all()
    assert model.mm_projector[1].__class__.__name__ == "GELUActivation"
    assert isinstance(_tiny(projector_hidden_act="relu").mm_projector[1], nn.ReLU)


def test_global_cmvn_loader_keeps_float64_precision(tmp_path):
    model = _tiny()
    # bin 0: mean 10000.001 (float32 keeps 10000.0010), variance 1 over 4 frames: the sums need float64;
    # bin 1: mean 1, variance 0.25
    m = 10000.001
    stats = {
        "frame_num": 4,
        "mean_stat": [4 * m, 4.0] + [0.0] * 78,
        "var_stat": [4 * (1 + m * m), 5.0] + [4.0] * 78,
    }
    path = tmp_path / "global_cmvn"
    path.write_text(json.dumps(stats))
    load_global_cmvn(model, str(path))
    cmvn = model.audio_encoder.cmvn
    assert cmvn.mean[:2].tolist() == pytest.approx([m, 1.0], rel=1e-7)
    assert cmvn.istd[:3].tolist() == pytest.approx([1.0, 2.0, 1.0])  # 1/sqrt(1), 1/sqrt(1.25 - 1), 1/sqrt(1)
    path.write_text(json.dumps({**stats, "mean_stat": [0.0] * 40, "var_stat": [1.0] * 40}))
    with pytest.raises(ValueError) as info:
        load_global_cmvn(model, str(path))
    assert str(info.value) == f"{path}: 40 bins, the model has 80"


def test_encode_images_other_feature_layers():
    for layer in (-2, 1):
        model = _tiny(vision_feature_layer=layer).eval()
        pixels = torch.randn(2, 3, 56, 56)
        hidden = model.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states[layer]
        expected = model.mm_projector(pixel_shuffle(hidden[:, 1:] * 0.5))
        torch.testing.assert_close(model.encode_images(pixels), expected)


def test_bfloat16_model_takes_float32_media():
    model = _tiny().to(torch.bfloat16).eval()
    c = model.config
    ids = torch.tensor([[5] + [c.image_token_id] * 4 + [c.audio_token_id] * 12 + [6]])
    out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 56, 56), input_features=torch.randn(1, 98, 80))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()


def test_splice_error_messages():
    model = _tiny().eval()
    c = model.config
    ids = torch.tensor([[5] + [c.image_token_id] * 4 + [6]])
    with pytest.raises(ValueError) as info:
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 56, 56))
    assert str(info.value) == (
        "2 tiles/frames give 8 image tokens but the prompt has 4 image placeholders (4 per tile); every <image> "
        "needs one tile and every tile one <image>"
    )
    ids = torch.tensor([[5] + [c.audio_token_id] * 3 + [6]])
    with pytest.raises(
        ValueError, match="^1 audio clips give 12 audio tokens but the prompt has 3 audio placeholders"
    ):
        model(input_ids=ids, input_features=torch.randn(1, 98, 80))
    with pytest.raises(
        ValueError, match="^the prompt has 3 audio placeholders but no input_features were given$"
    ):
        model(input_ids=ids)


def test_dummy_modality_terms_add_exactly_zero():
    model = _tiny()
    ids = torch.tensor([[5, 6, 7, 8]])
    model.train()
    loss = model(input_ids=ids, labels=ids).loss  # zero biases at init: the dummy outputs are 0
    assert torch.isfinite(loss)
    with torch.no_grad():
        model.mm_projector[2].bias.fill_(1.0)
        model.audio_adapter.proj.bias.fill_(1.0)
    train_logits = model(input_ids=ids).logits
    model.eval()
    torch.testing.assert_close(train_logits, model(input_ids=ids).logits)


def test_forward_passes_its_arguments_through():
    model = _tiny().eval()
    c = model.config
    a, i = c.audio_token_id, c.image_token_id
    # two clips of different lengths in one padded batch: the mask must reach the encoder (12 and 24 tokens)
    ids = torch.tensor([[5] + [a] * 12 + [6] * 12, [5] + [a] * 24])
    feats, mask = torch.randn(2, 198, 80), torch.ones(2, 198, dtype=torch.long)
    mask[0, 98:] = 0
    assert model(input_ids=ids, input_features=feats, input_features_mask=mask).logits.shape == (2, 25, 128)
    text = torch.tensor([[5, 6, 7, 8, 9]] * 2)
    out = model(input_ids=text, use_cache=False, output_hidden_states=True, logits_to_keep=1)
    assert out.past_key_values is None and out.logits.shape == (2, 1, 128) and len(out.hidden_states) == 3
    gapped = torch.tensor(
        [[0, 1, 2, 10, 11]] * 2
    )  # RoPE sees the gap: the caller's positions must reach the LLM
    assert not torch.allclose(model(input_ids=text, position_ids=gapped).logits, model(input_ids=text).logits)
    model.language_model.set_attn_implementation("eager")  # sdpa returns no attention maps
    attentions = model(input_ids=text, output_attentions=True).attentions
    assert [a.shape for a in attentions] == [(2, 4, 5, 5)] * 2  # 2 layers, 4 heads, causal 5 x 5
    out = model(input_ids=text, use_cache=True)
    assert out.past_key_values is not None and out.past_key_values.get_seq_length() == 5
    # truncation keeps the caller's attention mask and position ids (a left-padded row, positions with a gap)
    ids = torch.tensor([[5] * 70 + [i] * 4 + [6] * 6, [0] * 10 + [7] * 70])
    attn = torch.ones(2, 80, dtype=torch.long)
    attn[1, :10] = 0
    positions = torch.arange(80)[None].repeat(2, 1)
    positions[:, 40:] += 10  # a gap (a constant shift would change nothing under RoPE)
    pixels = torch.randn(1, 3, 56, 56)
    kw = dict(input_ids=ids, attention_mask=attn, position_ids=positions, pixel_values=pixels)
    full = model(**kw).logits
    model.config.model_max_length = 72  # longer than the LLM width (64), shorter than the sequence
    cut = model(**kw, labels=ids).logits
    assert cut.shape[1] == 72
    torch.testing.assert_close(cut[0], full[0, :72])
    torch.testing.assert_close(cut[1, 10:], full[1, 10:72])


def test_decoding_step_with_past_key_values_keyword_ignores_media():
    from transformers import DynamicCache

    model = _tiny().eval()
    i = model.config.image_token_id
    ids, pixels = torch.tensor([[10] + [i] * 4 + [11]]), torch.randn(1, 3, 56, 56)
    cache = DynamicCache(config=model.config.text_config)
    model(input_ids=ids, pixel_values=pixels, past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == 6
    step = model(input_ids=torch.tensor([[12]]), past_key_values=cache, use_cache=True, pixel_values=pixels)
    full = model(input_ids=torch.tensor([[10] + [i] * 4 + [11, 12]]), pixel_values=pixels).logits[:, -1:]
    torch.testing.assert_close(step.logits, full, atol=1e-4, rtol=1e-4)


def test_prepare_inputs_drops_media_after_prefill():
    from transformers import DynamicCache

    model = _tiny().eval()
    media = dict(
        pixel_values=torch.randn(1, 3, 56, 56), input_features=torch.randn(1, 98, 80),
        input_features_mask=torch.ones(1, 98, dtype=torch.long),
    )  # fmt: skip
    cache = DynamicCache(config=model.config.text_config)
    ids = torch.tensor([[10, 11]])
    # transformers forwards media on a first iteration (a new prompt, possibly continuing a cache)
    first = model.prepare_inputs_for_generation(ids, cache=cache, is_first_iteration=True, **media)
    assert all(k in first for k in media)
    model(input_ids=torch.tensor([[10]]), cache=cache, use_cache=True)  # one token cached
    later = model.prepare_inputs_for_generation(ids, cache=cache, is_first_iteration=True, **media)
    assert not any(k in later for k in media)  # a non-empty cache: the forward would ignore them anyway


def test_stage_switches_of_the_audio_adapter():
    model = _tiny()

    def trains(module):
        return all(p.requires_grad for p in module.parameters())

    model.set_stage("finetune")
    assert not trains(model.audio_adapter) and trains(model.language_model)
    model.set_stage("continual", train_audio_adapter=True)  # continual: the adapter stays frozen
    assert not trains(model.audio_adapter) and trains(model.mm_projector)
    model.set_stage("finetune", train_audio_adapter=True)
    assert trains(model.audio_adapter)
