"""Behaviour that depends on transformers 5 and on the released configuration."""

from __future__ import annotations

import pytest
import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_model
from paperzoo_flashsloth.configuration import FlashSlothConfig, ModelSpec
from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration


def test_tower_output_has_no_post_layernorm():
    """The released tower ends at its last kept block (post-layernorm replaced by identity). transformers 5's
    SiglipVisionModel owns ``post_layernorm``; under 4.x it sat on ``vision_model`` and the replacement would
    silently do nothing, so this compares against the blocks run by hand."""
    model = tiny_model()
    tower = model.vision_tower
    assert isinstance(tower.post_layernorm, torch.nn.Identity)
    pixels = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = tower.embeddings(pixels)
        for layer in tower.encoder.layers:
            out = layer(hidden, attention_mask=None)
            hidden = out[0] if isinstance(out, tuple) else out
        got = model.vision_features(pixels)
    torch.testing.assert_close(got, hidden)
    # and it really differs from the normalised output the stock tower would give
    ln = torch.nn.LayerNorm(hidden.shape[-1], eps=model.config.vision_config.layer_norm_eps)
    with torch.no_grad():
        assert float((ln(hidden) - hidden).abs().max()) > 0.1


def test_phi2_defaults_are_the_release():
    """microsoft/phi-2 config.json: resid_pdrop 0.1, embd_pdrop 0.0, attention_dropout 0.0, partial rotary 0.4."""
    text = FlashSlothConfig().text_config
    assert text.resid_pdrop == 0.1 and text.embd_pdrop == 0.0 and text.attention_dropout == 0.0
    assert (
        text.rope_parameters["partial_rotary_factor"] == 0.4
        and text.hidden_size == 2560
        and text.num_hidden_layers == 32
    )


@pytest.mark.parametrize("choice", ["eager", "sdpa"])
def test_from_pretrained_attn_implementation_reaches_both_towers(tmp_path, choice):
    tiny_model().save_pretrained(tmp_path)
    model = FlashSlothForConditionalGeneration.from_pretrained(tmp_path, attn_implementation=choice)
    assert model.vision_tower.config._attn_implementation == choice
    assert model.language_model.config._attn_implementation == choice
    assert model.decoder_layers[0].self_attn.config._attn_implementation == choice


def test_eager_and_sdpa_agree():
    a, b = tiny_model(), tiny_model(attn_implementation="sdpa")
    ids = torch.tensor([[10, 11, IMAGE_ID, 12, 13, LEARNABLE_ID, 15]])
    pixels = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            a(ids, None, pixels).logits, b(ids, None, pixels).logits, rtol=1e-4, atol=1e-5
        )


def test_flash_attention_needs_the_package():
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        assert ModelSpec(attn_implementation="flash_attention_2").attn_implementation == "flash_attention_2"
    else:
        with pytest.raises(ValueError, match="flash-attn"):
            ModelSpec(attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="attn_implementation"):
        ModelSpec(attn_implementation="flash")


@pytest.mark.parametrize("frozen", [False, True])
def test_released_hd_tower_frozen_switch(frozen):
    """The released tower forward runs under torch.no_grad(), so HD training never updates it; the switch keeps
    that, the default (the paper) lets gradients reach the tower."""
    model = tiny_model(variant="hd").train()
    model.config.released_hd_tower_frozen = frozen
    ids = torch.tensor([[10, 11, IMAGE_ID, 12, 13, LEARNABLE_ID, 15, 16]])
    pixels = torch.randn(1, 5, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    out = model(ids, torch.ones_like(ids), pixels, labels=ids)
    out.loss.backward()
    grad = model.vision_tower.embeddings.patch_embedding.weight.grad
    if frozen:
        assert grad is None
        assert model.pooling.scorer[0].weight.grad is not None  # the rest still trains
    else:
        assert grad is not None and float(grad.abs().sum()) > 0


def test_no_hook_state_survives_a_call():
    """The query module's inputs travel with the call: nothing is left on the model after a training step with
    gradient checkpointing, and a later plain call is unaffected by the earlier one."""
    model = tiny_model().train()
    model.gradient_checkpointing_enable()
    ids = torch.tensor([[10, 11, IMAGE_ID, 12, 13, LEARNABLE_ID, 15, 16]])
    pixels = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    model(ids, torch.ones_like(ids), pixels, labels=ids).loss.backward()
    assert (
        model.embedded_query.up.weight.grad is not None
        and float(model.embedded_query.up.weight.grad.abs().sum()) > 0
    )
    assert not any(k.startswith("_embq") for k in vars(model))
    model.eval()
    with torch.no_grad():
        hidden = torch.randn(1, 5, model.config.text_config.hidden_size)
        plain = model.language_model(inputs_embeds=hidden).logits
        fresh = tiny_model()
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(plain, fresh.language_model(inputs_embeds=hidden).logits)
