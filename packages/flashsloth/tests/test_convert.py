"""Converting a checkpoint in the official key layout (a tiny one, built here) to this package's model."""

from __future__ import annotations

import json

import pytest
import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_model
from paperzoo_flashsloth.convert import CheckpointLayoutError, convert_checkpoint, convert_state_dict
from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration

EMBQ = {
    "down_text": "down_projector_learnable_text",
    "down_image": "down_projector_image",
    "up": "up_projector",
    "ln_query": "layers.0.ln_q",
    "ln_text": "layers.0.ln_text",
    "ln_image": "layers.0.ln_kv",
    "text_to_query": "layers.0.t2q_attn",
    "image_to_query": "layers.0.i2q_attn",
}


def to_official(state):
    """The official FlashSlothForCausalLM key names, written out independently of convert.py."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "vision_tower":
            out[f"model.vision_tower.vision_tower.vision_model.{rest}"] = value
        elif key == "query_tokens":
            out["model.learnable_tokens.token"] = value
        elif head == "pooling":
            out["model.pooling.mlp." + rest.removeprefix("scorer.")] = value
        elif head == "projector":
            layer, _, param = rest.partition(".")
            out[f"model.mm_projector.{ {'linear_1': 0, 'linear_2': 2}[layer] }.{param}"] = value
        elif head == "embedded_query":
            module, _, param = rest.partition(".")
            out[f"model.lqformer.{EMBQ[module]}.{param}"] = value
        elif key.startswith("language_model.model."):
            out["model." + key.removeprefix("language_model.model.")] = value
        elif key.startswith("language_model.lm_head."):
            out[key.removeprefix("language_model.")] = value
        else:
            raise AssertionError(key)
    # buffers the official (transformers 4.38) modules carry
    out["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    out["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(36)[None]
    return out


def test_state_dict_round_trip():
    model = tiny_model()
    ours = model.state_dict()
    converted = convert_state_dict(to_official(ours))
    assert set(converted) == set(ours)
    for key in ours:
        assert torch.equal(converted[key], ours[key]), key


def _official_folder(tmp_path, model, fmt):
    text = model.config.text_config
    config = {
        "model_type": "flashsloth",
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "partial_rotary_factor": 0.5,
        "rope_theta": 10000.0,
        "layer_norm_eps": 1e-5,
        "mm_hidden_size": model.config.vision_config.hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "image_hd": False,
        "bos_token_id": 2,
        "eos_token_id": 2,
    }
    src = tmp_path / "official"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(config))
    official = to_official(model.state_dict())
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in official.items()}, str(src / "model.safetensors"))
    else:
        torch.save(official, src / "pytorch_model.bin")
    (src / "tokenizer_config.json").write_text("{}")
    return src


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_folder_conversion_gives_the_same_model(tmp_path, fmt):
    model = tiny_model()
    src = _official_folder(tmp_path, model, fmt)
    vision = {k: getattr(model.config.vision_config, k) for k in
              ("intermediate_size", "num_attention_heads", "image_size", "patch_size")}  # fmt: skip
    # the released model refines the queries at layer index 7; the 4-layer test model does it at 2
    config = convert_checkpoint(
        src, tmp_path / "ours", vision_config=vision, query_anchor_token_id=7, embq_layer=2
    )
    assert (config.image_token_id, config.learnable_token_id) == (-200, 50295)  # the official ids
    assert (tmp_path / "ours" / "tokenizer_config.json").is_file()
    loaded = FlashSlothForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    ids = torch.tensor([[10, 11, IMAGE_ID, 12, 13, LEARNABLE_ID, 15]])
    official_ids = ids.clone()
    official_ids[ids == IMAGE_ID] = -200
    official_ids[ids == LEARNABLE_ID] = 50295
    pixels = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(official_ids, None, pixels).logits, model(ids, None, pixels).logits)


def test_a_tower_that_does_not_fit_is_reported(tmp_path):
    src = _official_folder(tmp_path, tiny_model(), "safetensors")
    with pytest.raises(CheckpointLayoutError, match="shape"):
        convert_checkpoint(
            src, tmp_path / "ours", vision_config={"patch_size": 4}, query_anchor_token_id=7, embq_layer=2
        )
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_checkpoint(tmp_path, tmp_path / "x")
