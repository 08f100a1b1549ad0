"""The weight-renaming map on a fixture written in the released key layout (notes §1.7 vLLM renaming table)."""

from __future__ import annotations

import pytest
import torch
from paperzoo_vita.convert import convert_released_state_dict


def released_layout(model) -> dict[str, torch.Tensor]:
    """The tiny model's weights under the names of the released checkpoint, written out by hand."""
    sd = model.state_dict()
    cfg = model.config
    out = {}
    for k, v in sd.items():
        if k.startswith("language_model.model.layers."):
            layer, rest = k[len("language_model.model.layers.") :].split(".", 1)
            base = f"model.layers.{layer}."
            if rest == "mlp.experts.gate_up_proj":
                inter = cfg.text_config.intermediate_size
                for e in range(v.shape[0]):
                    out[base + f"block_sparse_moe.experts.{e}.w1.weight"] = v[e, :inter]
                    out[base + f"block_sparse_moe.experts.{e}.w3.weight"] = v[e, inter:]
            elif rest == "mlp.experts.down_proj":
                for e in range(v.shape[0]):
                    out[base + f"block_sparse_moe.experts.{e}.w2.weight"] = v[e]
            elif rest == "mlp.gate.weight":
                out[base + "block_sparse_moe.gate.weight"] = v
            else:
                out[base + rest] = v
        elif k == "language_model.lm_head.weight":
            out["lm_head.weight"] = v
        elif k.startswith("language_model.model."):
            out["model." + k[len("language_model.model.") :]] = v
        elif k.startswith("mm_projector."):
            out["model." + k] = v
    vt = "model.vision_tower.vision_tower."
    out[vt + "embeddings.class_embedding"] = sd["vision_tower.embeddings.cls_token"]
    out[vt + "embeddings.position_embedding"] = sd["vision_tower.embeddings.position_embeddings"]
    for p in ("weight", "bias"):
        out[vt + f"embeddings.patch_embedding.{p}"] = sd[
            f"vision_tower.embeddings.patch_embeddings.projection.{p}"
        ]
    for n in range(cfg.vision_config.num_hidden_layers):
        s, d = f"vision_tower.encoder.layer.{n}.", f"{vt}encoder.layers.{n}."
        for p in ("weight", "bias"):
            out[d + f"attn.qkv.{p}"] = torch.cat([sd[s + f"attention.{x}_proj.{p}"] for x in "qkv"])
            out[d + f"attn.proj.{p}"] = sd[s + f"attention.projection_layer.{p}"]
            out[d + f"norm1.{p}"] = sd[s + f"layernorm_before.{p}"]
            out[d + f"norm2.{p}"] = sd[s + f"layernorm_after.{p}"]
            out[d + f"mlp.fc1.{p}"] = sd[s + f"mlp.fc1.{p}"]
            out[d + f"mlp.fc2.{p}"] = sd[s + f"mlp.fc2.{p}"]
        out[d + "ls1"] = sd[s + "lambda_1"]
        out[d + "ls2"] = sd[s + "lambda_2"]
    ae = "model.audio_encoder."
    for p in ("weight", "bias"):
        for i in (0, 2):
            out[ae + f"encoder.enc.0.core.conv.{i}.{p}"] = sd[f"audio_encoder.subsampling.conv.{i}.{p}"]
        out[ae + f"encoder.enc.0.core.out.0.{p}"] = sd[f"audio_encoder.subsampling.out.{p}"]
        for i in (0, 1):
            out[ae + f"encoder.enc.1.embed.{i}.{p}"] = sd[f"audio_encoder.embed.{i}.{p}"]
        out[ae + f"encoder.enc.1.after_norm.{p}"] = sd[f"audio_encoder.after_norm.{p}"]
        out[ae + f"adpter.conv1d2.{p}"] = sd[f"audio_adapter.conv.{p}"]
        out[ae + f"adpter.bn2.{p}"] = sd[f"audio_adapter.norm.{p}"]
        out[ae + f"adpter.project.{p}"] = sd[f"audio_adapter.proj.{p}"]
    for n in range(cfg.audio_config.num_hidden_layers):
        s, d = f"audio_encoder.layers.{n}.", f"{ae}encoder.enc.1.encoders.{n}."
        for name in ("linear_q", "linear_k", "linear_v", "linear_out"):
            for p in ("weight", "bias"):
                out[d + f"self_attn.{name}.{p}"] = sd[s + f"self_attn.{name}.{p}"]
        out[d + "self_attn.linear_pos.weight"] = sd[s + "self_attn.linear_pos.weight"]
        out[d + "self_attn.pos_bias_u"] = sd[s + "self_attn.pos_bias_u"]
        out[d + "self_attn.pos_bias_v"] = sd[s + "self_attn.pos_bias_v"]
        for p in ("weight", "bias"):
            out[d + f"feed_forward.w_1.{p}"] = sd[s + f"feed_forward.0.{p}"]
            out[d + f"feed_forward.w_2.{p}"] = sd[s + f"feed_forward.3.{p}"]
            out[d + f"norm1.{p}"] = sd[s + f"norm1.{p}"]
            out[d + f"norm2.{p}"] = sd[s + f"norm2.{p}"]
    out[ae + "encoder.global_cmvn.mean"] = torch.randn(80)
    out[ae + "encoder.global_cmvn.istd"] = torch.rand(80) + 0.5
    out["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old checkpoints carry it; dropped
    return out


def test_released_layout_loads_strictly(model):
    from paperzoo_vita.configuration import VitaConfig
    from paperzoo_vita.modeling_vita import VitaForConditionalGeneration

    released = released_layout(model)
    assert "model.vision_tower.vision_tower.encoder.layers.0.attn.qkv.weight" in released
    converted = convert_released_state_dict(released)
    fresh = VitaForConditionalGeneration(VitaConfig.from_dict(model.config.to_dict())).eval()
    fresh.load_state_dict(converted, strict=True)
    torch.testing.assert_close(
        fresh.audio_encoder.cmvn.mean, released["model.audio_encoder.encoder.global_cmvn.mean"]
    )
    model.audio_encoder.cmvn.mean.copy_(fresh.audio_encoder.cmvn.mean)
    model.audio_encoder.cmvn.istd.copy_(fresh.audio_encoder.cmvn.istd)
    i, a = model.config.image_token_id, model.config.audio_token_id
    ids = torch.tensor([[10] + [i] * 4 + [a] * 12 + [11]])
    kwargs = dict(
        input_ids=ids, pixel_values=torch.randn(1, 3, 56, 56), input_features=torch.randn(1, 98, 80)
    )
    torch.testing.assert_close(fresh(**kwargs).logits, model(**kwargs).logits)


def test_unknown_and_incomplete_keys():
    with pytest.raises(ValueError, match="not in the released VITA-1.0 layout"):
        convert_released_state_dict({"model.something.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="incomplete experts"):
        convert_released_state_dict(
            {"model.layers.0.block_sparse_moe.experts.0.w1.weight": torch.zeros(2, 2)}
        )
