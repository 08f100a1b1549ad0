"""Pixel shuffle, splicing order, label masks at placeholders, the dummy-modality trick, stage freezing, Auto
registration (notes §4.1.1, 5, 8)."""

from __future__ import annotations

import pytest
import torch
from paperzoo_vita.configuration import IGNORE_INDEX, VitaConfig
from paperzoo_vita.modeling_vita import pixel_shuffle
from torch import nn


def test_pixel_shuffle_golden():
    x = torch.arange(16.0).reshape(1, 16, 1)  # 4x4 grid, value = 4 * row + col
    y = pixel_shuffle(x)
    assert y.shape == (1, 4, 4)
    assert y[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_pixel_shuffle_real_size():
    assert pixel_shuffle(torch.zeros(2, 1024, 1024)).shape == (2, 256, 4096)
    cfg = VitaConfig()
    assert (cfg.image_seq_length, cfg.vision_feature_dim, cfg.text_config.vocab_size) == (256, 4096, 51760)


def test_feature_scale_is_exactly_half(model):
    model.mm_projector = nn.Identity()  # a linear probe: the projector's input
    pixels = torch.randn(2, 3, 56, 56)
    half = model.encode_images(pixels)
    model.config.vision_feature_scale = 1.0
    full = model.encode_images(pixels)
    assert half.shape == (2, 4, 128)
    torch.testing.assert_close(half, 0.5 * full, rtol=0, atol=0)


def _ids(model, layout):
    i, a = model.config.image_token_id, model.config.audio_token_id
    out = []
    for item in layout:
        out.extend([i] * item[1] if item[0] == "img" else [a] * item[1] if item[0] == "aud" else [item[1]])
    return torch.tensor([out])


def test_splice_order(model):
    # text 10 | image A (4) | text 11 | audio (12) | text 12 | image B (4)
    ids = _ids(model, [("t", 10), ("img", 4), ("t", 11), ("aud", 12), ("t", 12), ("img", 4)])
    pixels = torch.randn(2, 3, 56, 56)
    feats = torch.randn(1, 98, 80)
    embeds = model.splice(ids, pixels, feats)
    images = model.encode_images(pixels)
    audio, _ = model.encode_audio(feats)
    emb = model.get_input_embeddings()
    assert embeds.shape == (1, 23, 64)
    torch.testing.assert_close(embeds[0, 0], emb(torch.tensor(10)))
    torch.testing.assert_close(embeds[0, 1:5], images[0])
    torch.testing.assert_close(embeds[0, 5], emb(torch.tensor(11)))
    torch.testing.assert_close(embeds[0, 6:18], audio[0])
    torch.testing.assert_close(embeds[0, 18], emb(torch.tensor(12)))
    torch.testing.assert_close(embeds[0, 19:23], images[1])


def test_splice_padded_audio_batch(model):
    # two clips (1 s and 2 s, padded to 2 s): 12 then 24 tokens, in placeholder order across rows
    a = model.config.audio_token_id
    ids = torch.tensor([[5] + [a] * 24 + [6], [5] + [a] * 12 + [6] * 13])
    feats = torch.randn(2, 198, 80)
    mask = torch.ones(2, 198, dtype=torch.long)
    # the first clip is the 2 s one (row 0 holds 24 slots)
    mask[1, 98:] = 0
    embeds = model.splice(ids, None, feats, mask)
    tokens, tmask = model.encode_audio(feats, mask)
    torch.testing.assert_close(embeds[0, 1:25], tokens[0])
    torch.testing.assert_close(embeds[1, 1:13], tokens[1, :12])


def test_count_mismatch_is_a_clear_error(model):
    ids = _ids(model, [("t", 10), ("img", 4), ("t", 11)])
    with pytest.raises(ValueError, match="2 tiles/frames give 8 image tokens but the prompt has 4"):
        model.splice(ids, torch.randn(2, 3, 56, 56))
    with pytest.raises(ValueError, match="no pixel_values"):
        model.splice(ids)
    ids = _ids(model, [("t", 10), ("aud", 5)])
    with pytest.raises(ValueError, match="give 12 audio tokens but the prompt has 5"):
        model.splice(ids, None, torch.randn(1, 98, 80))


def test_labels_ignored_on_placeholders(model):
    ids = _ids(model, [("t", 10), ("img", 4), ("t", 11), ("t", 12)])
    labels = ids.clone()  # a careless caller supervises everything
    out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 56, 56), labels=labels)
    manual = labels.clone()
    manual[0, 1:5] = IGNORE_INDEX
    logits = out.logits[0, :-1]
    expected = nn.functional.cross_entropy(logits, manual[0, 1:], ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, expected)


def test_mixed_batch_and_every_trainable_parameter_gets_a_gradient(model):
    model.train()
    model.set_stage("finetune", train_audio_adapter=True)
    # text-only batch: projector and adapter stay in the graph through the dummy path
    ids = torch.tensor([[10, 11, 12, 13]])
    model(input_ids=ids, labels=ids).loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, p in trainable.items() if p.grad is None and "block_sparse_moe.experts" not in n]
    assert not missing, missing
    assert any(n.startswith("mm_projector") for n in trainable) and any(
        n.startswith("audio_adapter") for n in trainable
    )
    # a batch mixing text-only, image-only, audio-only and both runs without a shape error
    i, a, p = model.config.image_token_id, model.config.audio_token_id, 0
    rows = [
        [10, 11] + [p] * 17,
        [10] + [i] * 4 + [p] * 14,
        [10] + [a] * 12 + [p] * 6,
        [10] + [i] * 4 + [a] * 12 + [11, 12],
    ]
    ids = torch.tensor(rows)
    mask = (ids != p).long()
    mask[0, :2] = 1
    feats = torch.randn(2, 98, 80)
    out = model(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(2, 3, 56, 56), input_features=feats,
                labels=ids.masked_fill(mask == 0, IGNORE_INDEX))  # fmt: skip
    assert out.logits.shape == (4, 19, model.config.text_config.vocab_size) and torch.isfinite(out.loss)


def test_stage_freezing(model):
    def trainable_prefixes():
        return {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}

    model.set_stage("projector")
    assert trainable_prefixes() == {"mm_projector"}
    model.set_stage("finetune", train_audio_adapter=True)
    assert trainable_prefixes() == {"mm_projector", "language_model", "audio_adapter"}
    model.set_stage("continual")
    assert trainable_prefixes() == {"mm_projector", "language_model"}
    with pytest.raises(ValueError, match="stage must be"):
        model.set_stage("all")


def test_auto_classes_round_trip(model, tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    model.save_pretrained(tmp_path)
    cfg = AutoConfig.from_pretrained(tmp_path)
    assert type(cfg).__name__ == "VitaConfig" and cfg.audio_config.hidden_size == 32
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[10, 11, 12]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_config_validation():
    from paperzoo_vita.configuration import tiny_vita_config

    with pytest.raises(ValueError, match="outside the vocabulary"):
        tiny_vita_config(vocab_size=50, image_token_id=120)
    with pytest.raises(ValueError, match="must differ"):
        tiny_vita_config(image_token_id=7, audio_token_id=7)


def test_moe_aux_loss_flag(model):
    ids = torch.tensor([[10, 11, 12, 13, 14]])
    plain = model(input_ids=ids, labels=ids)
    assert plain.router_logits is None  # off, as the release (output_router_logits false)
    ce = nn.functional.cross_entropy(plain.logits[0, :-1], ids[0, 1:])
    torch.testing.assert_close(plain.loss, ce)
    model.language_model.config.output_router_logits = True
    with_aux = model(input_ids=ids, labels=ids)
    assert with_aux.router_logits is not None and with_aux.loss > ce  # + 0.02 x the load-balancing loss


def test_training_truncation_after_splicing(model):
    i = model.config.image_token_id
    ids = torch.tensor([[10, 11] + [i] * 4 + [12, 13, 14, 15]])  # 10 positions
    pixels = torch.randn(1, 3, 56, 56)
    full = model(input_ids=ids, pixel_values=pixels).logits
    model.config.model_max_length = 4  # cuts through the image's tokens, as the release may
    out = model(input_ids=ids, pixel_values=pixels, labels=ids)
    assert out.logits.shape[1] == 4
    torch.testing.assert_close(out.logits, full[:, :4])  # causal: the kept prefix is unchanged
    labels = ids[0, :4].masked_fill(ids[0, :4] == i, IGNORE_INDEX)
    expected = nn.functional.cross_entropy(full[0, :3], labels[1:], ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, expected)
    assert model(input_ids=ids, pixel_values=pixels).logits.shape[1] == 10  # without labels: no truncation
