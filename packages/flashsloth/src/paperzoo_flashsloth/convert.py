"""Released FlashSloth checkpoints (official layout, local folder) -> this package's layout.

The official ``FlashSlothForCausalLM`` (Tongbo/FlashSloth-3.2B, Tongbo/FlashSloth_HD-3.2B) keeps everything under
``model.``: the Phi decoder (``model.embed_tokens``, ``model.layers.N``, ``model.final_layernorm``), the SigLIP tower
(``model.vision_tower.vision_tower.vision_model.*``), ``model.pooling.mlp.{0,3}``, ``model.mm_projector.{0,2}``,
``model.learnable_tokens.token`` and ``model.lqformer.*``; plus ``lm_head``. Nothing is downloaded: point
:func:`convert_checkpoint` at a folder you already have.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PhiConfig

from paperzoo_flashsloth.configuration import (
    OFFICIAL_IMAGE_TOKEN_ID,
    OFFICIAL_LEARNABLE_TOKEN_ID,
    OFFICIAL_QUERY_ANCHOR_TOKEN_ID,
    FlashSlothConfig,
    phi2_config,
    siglip_so400m_config,
)

# (official prefix, our prefix), first match wins; the order puts the specific prefixes before `model.`.
KEY_RULES: tuple[tuple[str, str], ...] = (
    ("model.vision_tower.vision_tower.vision_model.", "vision_tower."),
    ("model.pooling.mlp.0.", "pooling.scorer.0."),
    ("model.pooling.mlp.3.", "pooling.scorer.3."),
    ("model.mm_projector.0.", "projector.linear_1."),
    ("model.mm_projector.2.", "projector.linear_2."),
    ("model.learnable_tokens.token", "query_tokens"),
    ("model.lqformer.down_projector_learnable_text.", "embedded_query.down_text."),
    ("model.lqformer.down_projector_image.", "embedded_query.down_image."),
    ("model.lqformer.up_projector.", "embedded_query.up."),
    ("model.lqformer.layers.0.ln_q.", "embedded_query.ln_query."),
    ("model.lqformer.layers.0.ln_text.", "embedded_query.ln_text."),
    ("model.lqformer.layers.0.ln_kv.", "embedded_query.ln_image."),
    ("model.lqformer.layers.0.t2q_attn.", "embedded_query.text_to_query."),
    ("model.lqformer.layers.0.i2q_attn.", "embedded_query.image_to_query."),
    ("model.embed_tokens.", "language_model.model.embed_tokens."),
    ("model.layers.", "language_model.model.layers."),
    ("model.final_layernorm.", "language_model.model.final_layernorm."),
    ("lm_head.", "language_model.lm_head."),
)
# Buffers and modules the official model carries but ours does not need.
IGNORED_KEYS = (
    re.compile(r".*rotary_emb\.inv_freq$"),
    re.compile(r".*embeddings\.position_ids$"),
    re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\.(post_layernorm|head)\."),
)
REQUIRED_MARKERS = (
    "model.lqformer.",
    "model.learnable_tokens.token",
    "model.pooling.mlp.",
    "model.mm_projector.",
)


class CheckpointLayoutError(ValueError):
    """The checkpoint is not in the official FlashSloth layout (or does not fit the configuration)."""


def _guess_layout(keys: list[str]) -> str:
    if any(k.startswith(("language_model.", "embedded_query.")) for k in keys):
        return "it already is in this package's layout: load it with FlashSlothForConditionalGeneration.from_pretrained"
    if any(k.startswith("transformer.h.") for k in keys):
        return "it looks like a Phi-2 checkpoint of the original remote-code layout (transformer.h.N)"
    if any(k.startswith("model.mm_projector.") for k in keys):
        return "it looks like a LLaVA/Imp-style multimodal checkpoint without FlashSloth's query modules"
    if any(k.startswith("model.layers.") for k in keys):
        return "it looks like a text-only decoder checkpoint"
    return "no known layout matches"


def convert_state_dict(
    official: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Renames an official state dict to ours; raises :class:`CheckpointLayoutError` for another layout."""
    keys = list(official)
    missing = [m for m in REQUIRED_MARKERS if not any(k.startswith(m) for k in keys)]
    if missing:
        raise CheckpointLayoutError(
            f"{source} is not an official FlashSloth checkpoint: no key starts with {', '.join(missing)} "
            f"({len(keys)} keys, e.g. {keys[:3]}); {_guess_layout(keys)}"
        )
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in official.items():
        if any(p.match(key) for p in IGNORED_KEYS):
            continue
        for old, new in KEY_RULES:
            if key.startswith(old):
                converted[new + key[len(old) :]] = value
                break
        else:
            unknown.append(key)
    extra_layers = [k for k in keys if re.match(r"model\.lqformer\.layers\.[1-9]", k)]
    if extra_layers:
        raise CheckpointLayoutError(
            f"{source} has a multi-layer LQFormer ({extra_layers[0]}); the released model and this package use one layer"
        )
    if unknown:
        raise CheckpointLayoutError(
            f"{source}: {len(unknown)} key(s) of no known FlashSloth part, e.g. {unknown[:5]}"
        )
    return converted


def config_from_official(
    official_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    vision_config: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> FlashSlothConfig:
    """Our config from the official ``config.json`` (a Phi config with ``mm_*`` fields) and the tensor shapes.

    The official config does not describe the vision tower (it is loaded from the SigLIP folder), so the tower is
    SigLIP-so400m/384 with the checkpoint's number of blocks unless ``vision_config`` says otherwise. ``overrides``
    set FlashSlothConfig fields (token ids, ...)."""
    text_fields = phi2_config().to_dict()
    text_fields.pop("rope_parameters", None)
    text_fields["partial_rotary_factor"], text_fields["rope_theta"] = 0.4, 10000.0
    for field in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "layer_norm_eps",
        "max_position_embeddings",
        "bos_token_id",
        "eos_token_id",
        "hidden_act",
        "partial_rotary_factor",
        "rope_theta",
    ):
        if official_config.get(field) is not None:
            text_fields[field] = official_config[field]
    if official_config.get("num_key_value_heads") is None:
        text_fields["num_key_value_heads"] = text_fields["num_attention_heads"]
    text = PhiConfig(
        **{k: v for k, v in text_fields.items() if k not in ("model_type", "transformers_version")}
    )
    layer_ids = {
        int(m.group(1))
        for k in state_dict
        if (m := re.match(r"model\.vision_tower\.vision_tower\.vision_model\.encoder\.layers\.(\d+)\.", k))
    }
    vision = siglip_so400m_config(num_hidden_layers=max(layer_ids) + 1 if layer_ids else 26)
    vision.hidden_size = int(official_config.get("mm_hidden_size", vision.hidden_size))
    for key, value in (vision_config or {}).items():
        setattr(vision, key, value)
    queries = state_dict.get("model.learnable_tokens.token")
    down = state_dict.get("model.lqformer.down_projector_image.weight")
    fields: dict[str, Any] = dict(
        pooling="attention",
        pool_size=3,
        num_query_tokens=int(queries.shape[0]) if queries is not None else 9,
        use_embedded_query=True,
        embq_layer=7,
        embq_down_dim=int(down.shape[0]) if down is not None else 576,
        embq_num_heads=int(text.num_attention_heads),
        query_anchor_token_id=OFFICIAL_QUERY_ANCHOR_TOKEN_ID,
        image_token_id=OFFICIAL_IMAGE_TOKEN_ID,
        learnable_token_id=OFFICIAL_LEARNABLE_TOKEN_ID,
        image_hd=bool(official_config.get("image_hd", False)),
    )
    fields.update(overrides)
    return FlashSlothConfig(vision_config=vision, text_config=text, **fields)


def load_official_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (``*.safetensors`` or ``pytorch_model*.bin``, sharded or not)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    files = sorted(folder.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for file in files:
            state.update(load_file(str(file)))
        return state
    files = sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.safetensors or pytorch_model*.bin weights")
    for file in files:
        state.update(torch.load(file, map_location="cpu", weights_only=True))
    return state


def expected_shapes(config: FlashSlothConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of our model for ``config`` (built on the meta device: no memory, no init)."""
    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration

    with torch.device("meta"):
        model = FlashSlothForConditionalGeneration(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_against_config(state: Mapping[str, torch.Tensor], config: FlashSlothConfig, *, source: str) -> None:
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointLayoutError(
            f"{source} does not fit the configuration: {len(missing)} missing key(s) {missing[:4]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:4]}"
        )
    wrong = [
        (k, tuple(state[k].shape), shape) for k, shape in expected.items() if tuple(state[k].shape) != shape
    ]
    if wrong:
        key, got, want = wrong[0]
        raise CheckpointLayoutError(f"{source}: {key} has shape {got}, the configuration needs {want}")


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: torch.dtype | None = None,
    vision_config: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> FlashSlothConfig:
    """Converts an official checkpoint folder to one ``FlashSlothForConditionalGeneration.from_pretrained`` reads
    (``config.json`` + ``model.safetensors``; tokenizer files are copied). Returns the config."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: the official checkpoint folder holds a config.json"
        )
    official_config = json.loads(config_path.read_text())
    official = load_official_weights(src)
    state = convert_state_dict(official, source=str(src))
    config = config_from_official(official_config, official, vision_config=vision_config, **overrides)
    check_against_config(state, config, source=str(src))
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    dst.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(dst)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(dst / "model.safetensors"),
        metadata={"format": "pt"},
    )
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return config
