"""Weight renaming from the released VITA-1.0 checkpoint layout to :class:`VitaForConditionalGeneration`.

The released training checkpoint (``VITAMixtralForCausalLM``; the layout the vLLM port's ``load_weights`` reads) names
its weights as follows; :func:`convert_released_state_dict` maps them (``N`` a layer, ``E`` an expert)::

    model.embed_tokens.*                               -> language_model.model.embed_tokens.*
    model.layers.N.{self_attn,input_layernorm,post_attention_layernorm}.*  -> language_model.model.layers.N.(same)
    model.layers.N.block_sparse_moe.gate.weight         -> language_model.model.layers.N.mlp.gate.weight
    model.layers.N.block_sparse_moe.experts.E.w1 / w3   -> ...mlp.experts.gate_up_proj[E] = cat(w1, w3)  (transformers 5)
    model.layers.N.block_sparse_moe.experts.E.w2        -> ...mlp.experts.down_proj[E]
    model.norm.weight, lm_head.weight                   -> language_model.model.norm.weight, language_model.lm_head.weight
    model.mm_projector.{0,2}.*                          -> mm_projector.{0,2}.*
    model.vision_tower.vision_tower.  (InternViT's own names)  -> vision_tower.  (transformers' InternVLVisionModel)
        embeddings.class_embedding -> embeddings.cls_token; embeddings.patch_embedding -> embeddings.patch_embeddings
        .projection; embeddings.position_embedding -> embeddings.position_embeddings; encoder.layers.N.attn.qkv ->
        encoder.layer.N.attention.{q,k,v}_proj (split in thirds); attn.proj -> attention.projection_layer;
        ls1 / ls2 -> lambda_1 / lambda_2; norm1 / norm2 -> layernorm_before / layernorm_after; mlp.fc1 / fc2 same
    model.audio_encoder.encoder.enc.0.core.conv.{0,2}   -> audio_encoder.subsampling.conv.{0,2}
    model.audio_encoder.encoder.enc.0.core.out.0        -> audio_encoder.subsampling.out
    model.audio_encoder.encoder.enc.1.embed.{0,1}       -> audio_encoder.embed.{0,1}
    model.audio_encoder.encoder.enc.1.encoders.N.       -> audio_encoder.layers.N.  (feed_forward.w_1 / w_2 ->
                                                           feed_forward.0 / 3; self_attn, norm1, norm2 same)
    model.audio_encoder.encoder.enc.1.after_norm        -> audio_encoder.after_norm
    *global_cmvn.{mean,istd}                             -> audio_encoder.cmvn.{mean,istd}
    model.audio_encoder.adpter.{conv1d2,bn2,project}    -> audio_adapter.{conv,norm,proj}

Only the names above are verified against the official sources (the vLLM port's renaming table and the whale module
definitions); no released checkpoint was available to this project, so the test runs on a fixture written in that
layout from a tiny model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

_LLM = "language_model.model."
_VISION_RULES = [
    (r"^embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"^embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
    (r"^embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"^encoder\.layers\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.projection_layer."),
    (r"^encoder\.layers\.(\d+)\.ls1$", r"encoder.layer.\1.lambda_1"),
    (r"^encoder\.layers\.(\d+)\.ls2$", r"encoder.layer.\1.lambda_2"),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"encoder.layer.\1.layernorm_before."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"encoder.layer.\1.layernorm_after."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"encoder.layer.\1.mlp."),
]
_AUDIO_RULES = [
    (r"^encoder\.enc\.0\.core\.conv\.", "audio_encoder.subsampling.conv."),
    (r"^encoder\.enc\.0\.core\.out\.0\.", "audio_encoder.subsampling.out."),
    (r"^encoder\.enc\.1\.embed\.", "audio_encoder.embed."),
    (r"^encoder\.enc\.1\.encoders\.(\d+)\.feed_forward\.w_1\.", r"audio_encoder.layers.\1.feed_forward.0."),
    (r"^encoder\.enc\.1\.encoders\.(\d+)\.feed_forward\.w_2\.", r"audio_encoder.layers.\1.feed_forward.3."),
    (r"^encoder\.enc\.1\.encoders\.(\d+)\.", r"audio_encoder.layers.\1."),
    (r"^encoder\.enc\.1\.after_norm\.", "audio_encoder.after_norm."),
    (r"^adpter\.conv1d2\.", "audio_adapter.conv."),
    (r"^adpter\.bn2\.", "audio_adapter.norm."),
    (r"^adpter\.project\.", "audio_adapter.proj."),
]
_EXPERT = re.compile(r"^model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")


def _apply(rules: list[tuple[str, str]], name: str) -> str | None:
    for pattern, target in rules:
        new, n = re.subn(pattern, target, name)
        if n:
            return new
    return None


def convert_released_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released key layout -> this package's; raises ``ValueError`` listing keys it does not know."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    unknown = []
    for name, tensor in state.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if m := _EXPERT.match(name):
            experts.setdefault((int(m[1]), m[3]), {})[int(m[2])] = tensor
            continue
        if name.endswith("global_cmvn.mean") or name.endswith("global_cmvn.istd"):
            out["audio_encoder.cmvn." + name.rsplit(".", 1)[1]] = tensor
            continue
        if name.startswith("model.vision_tower.vision_tower."):
            rest = name[len("model.vision_tower.vision_tower.") :]
            qkv = re.match(r"^encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$", rest)
            if qkv:
                for part, chunk in zip("qkv", tensor.chunk(3, dim=0)):
                    out[f"vision_tower.encoder.layer.{qkv[1]}.attention.{part}_proj.{qkv[2]}"] = chunk.clone()
                continue
            new = _apply(_VISION_RULES, rest)
            if new is None:
                unknown.append(name)
            else:
                out["vision_tower." + new] = tensor
            continue
        if name.startswith("model.audio_encoder."):
            new = _apply(_AUDIO_RULES, name[len("model.audio_encoder.") :])
            if new is None:
                unknown.append(name)
            else:
                out[new] = tensor
            continue
        if name.startswith("model.mm_projector."):
            out[name[len("model.") :]] = tensor
        elif name.startswith("lm_head."):
            out["language_model." + name] = tensor
        elif re.match(r"^model\.layers\.\d+\.block_sparse_moe\.gate\.", name):
            out[_LLM + name[len("model.") :].replace(".block_sparse_moe.", ".mlp.")] = tensor
        elif re.match(
            r"^model\.(embed_tokens|norm|layers\.\d+\.(self_attn|input_layernorm|post_attention_layernorm))\.",
            name,
        ):
            out[_LLM + name[len("model.") :]] = tensor
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"{len(unknown)} keys are not in the released VITA-1.0 layout, e.g. {unknown[:3]}")
    layers = sorted({layer for layer, _ in experts})
    for layer in layers:
        w1, w2, w3 = (experts.get((layer, w), {}) for w in ("w1", "w2", "w3"))
        n = len(w1)
        if not (n == len(w2) == len(w3)) or sorted(w1) != list(range(n)):
            raise ValueError(
                f"layer {layer}: incomplete experts (w1 {sorted(w1)}, w2 {sorted(w2)}, w3 {sorted(w3)})"
            )
        prefix = f"{_LLM}layers.{layer}.mlp.experts."
        out[prefix + "gate_up_proj"] = torch.stack([torch.cat([w1[e], w3[e]], dim=0) for e in range(n)])
        out[prefix + "down_proj"] = torch.stack([w2[e] for e in range(n)])
    return out
