"""Convert checkpoints in the original LLaVA layout (liuhaotian/llava-v1.5-{7b,13b}, Osilly's Dynamic-LLaVA)
into the llava-hf layout that :class:`DynamicLlavaForConditionalGeneration` and transformers load.

The original layout is a ``LlavaLlamaForCausalLM``: a Llama state dict (``model.layers.*``, ``lm_head``) plus
``model.mm_projector.{0,2}`` and, for Dynamic-LLaVA, ``model.image_score_predictor.*`` and
``model.output_text_score_predictor.*``; the CLIP tower is not in the checkpoint (``mm_vision_tower`` names it)
and the image placeholder (-200) is not a vocabulary entry. The llava-hf layout adds an ``<image>`` token at
the end of the vocabulary (index = the original vocabulary size; llava-hf pads 32000 -> 32064) and keeps the
tower inside the checkpoint. New embedding rows are the mean of the existing rows.

Weights are read with safetensors or ``torch.load(weights_only=True)``; nothing is unpickled.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import torch

from paperzoo_dynamic_llava.configuration import SparseConfig
from paperzoo_shared.errors import UserError

KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.vision_tower\.vision_tower\.", "model.vision_tower."),
    (r"^model\.image_score_predictor\.", "image_score_predictor."),
    (r"^model\.output_text_score_predictor\.", "output_text_score_predictor."),
    (r"^model\.(embed_tokens|layers|norm)\.", r"model.language_model.\1."),
    (r"^lm_head\.", "lm_head."),
)
DROPPED = (r"\.rotary_emb\.inv_freq$", r"^model\.instruct_score_predictor\.")
"""RoPE buffers (recomputed) and the disabled instruct predictor."""


def map_original_key(key: str) -> str | None:
    """The llava-hf name of an original-layout key, or None when the key is dropped."""
    if any(re.search(pattern, key) for pattern in DROPPED):
        return None
    for pattern, replacement in KEY_RULES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    raise ValueError(f"unexpected key {key!r} in an original-layout LLaVA checkpoint")


def load_state_dict_files(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of ``*.safetensors`` (preferred) or ``*.bin`` files in a checkpoint directory."""
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for f in files:
            state.update(load_file(str(f)))
        return state
    files = sorted(p for p in directory.glob("*.bin") if p.name != "training_args.bin")
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors or *.bin weight files")
    for f in files:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def is_original_layout(config: dict[str, Any]) -> bool:
    return "mm_projector_type" in config or "mm_vision_tower" in config


def convert_original_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    vision_tower: str | Path | None = None,
    sparse: SparseConfig | None = None,
    pad_vocab_to: int = 64,
    dtype: torch.dtype | None = None,
) -> Path:
    """Writes a llava-hf checkpoint to ``out`` and returns it.

    ``vision_tower`` is a local CLIP vision directory (``CLIPVisionModel`` layout, e.g. a download of
    openai/clip-vit-large-patch14-336), needed unless the checkpoint carries the tower's weights. The sparse
    settings come from the checkpoint's ``sparse_config`` (official Dynamic-LLaVA), else from ``sparse``; with
    neither, a dense LLaVA checkpoint is written. ``dtype`` defaults to the source's (the dtype of its LM head:
    fp16 for the released 7B/13B, so the output is as large as the input, not twice); the model is built in it.
    """
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration

    src, out = Path(src), Path(out)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: point src at the original checkpoint directory")
    raw = json.loads(config_path.read_text())
    if not is_original_layout(raw):
        raise ValueError(
            f"{config_path} has no mm_vision_tower / mm_projector_type: it is not an original-layout LLaVA "
            "checkpoint (a llava-hf directory loads directly with from_pretrained / from_dense_llava)"
        )
    if raw.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ValueError(
            f"{config_path}: mm_projector_type {raw['mm_projector_type']!r} is not supported (mlp2x_gelu only)"
        )
    state = load_state_dict_files(src)
    if "lm_head.weight" not in state:
        raise ValueError(
            f"{src}: no lm_head.weight in the weight files: not a LlavaLlamaForCausalLM checkpoint"
        )
    dtype = dtype or state["lm_head.weight"].dtype
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new = map_original_key(key)
        if new is not None:
            mapped[new] = tensor

    has_tower = any(k.startswith("model.vision_tower.") for k in mapped)
    if has_tower and vision_tower is None:
        raise ValueError("the checkpoint carries vision tower weights but no tower config: pass vision_tower")
    if vision_tower is None:
        raise ValueError(
            f"{src} holds no vision tower weights (original LLaVA loads {raw.get('mm_vision_tower')!r} separately); "
            "pass vision_tower=<local CLIP vision directory>"
        )
    tower = CLIPVisionModel.from_pretrained(str(vision_tower))
    vision_config = CLIPVisionConfig.from_dict(tower.config.to_dict())
    if not has_tower:
        mapped.update({f"model.vision_tower.{k}": v for k, v in tower.state_dict().items()})

    vocab = int(raw["vocab_size"])
    new_vocab = -(-(vocab + 1) // pad_vocab_to) * pad_vocab_to
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        weight = mapped[key]
        if weight.shape[0] != vocab:
            raise ValueError(f"{key} has {weight.shape[0]} rows but config vocab_size is {vocab}")
        extra = weight.float().mean(0, keepdim=True).to(weight.dtype).expand(new_vocab - vocab, -1)
        mapped[key] = torch.cat([weight, extra], dim=0)

    llama_keys = {
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "max_position_embeddings", "rms_norm_eps", "hidden_act", "bos_token_id", "eos_token_id", "pad_token_id",
        "rope_theta", "initializer_range", "attention_bias", "mlp_bias",
    }  # fmt: skip
    text_config = LlamaConfig(
        **{k: v for k, v in raw.items() if k in llama_keys and v is not None}, vocab_size=new_vocab
    )
    select = raw.get("mm_vision_select_feature", "patch")
    n_patches = (vision_config.image_size // vision_config.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config, text_config=text_config, image_token_index=vocab,
        image_seq_length=n_patches, vision_feature_layer=int(raw.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if select == "patch" else "full", projector_hidden_act="gelu",
    )  # fmt: skip
    official_sparse = raw.get("sparse_config")
    if official_sparse is not None:
        sparse = SparseConfig.from_dict(dict(official_sparse), source=f"{config_path}: sparse_config")
    has_predictors = any("score_predictor" in k for k in mapped)
    if sparse is None and has_predictors:
        raise ValueError(f"{src} has predictor weights but no sparse_config: pass sparse=SparseConfig(...)")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the output dtype: no fp32 copy of a 7B model in memory
    try:
        if sparse is not None:
            config.sparse_config = sparse.to_dict()
            model = DynamicLlavaForConditionalGeneration(config)
        else:
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    expected = set(model.state_dict())
    missing = sorted(expected - set(mapped))
    if missing and not all("score_predictor" in k for k in missing):
        raise ValueError(f"converted checkpoint lacks {missing[0]} (and {len(missing) - 1} more)")
    unexpected = sorted(set(mapped) - expected)
    if unexpected:
        raise ValueError(f"converted checkpoint has unexpected key {unexpected[0]}")
    model.load_state_dict(mapped, strict=False)  # missing: only new predictors (initialised N(0, 0.02))
    model = model.to(dtype)  # (buffers too)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    _convert_tokenizer(src, out)
    return out


def _convert_tokenizer(src: Path, out: Path) -> None:
    """Adds ``<image>`` to the checkpoint's tokenizer when one is present (as llava-hf does). A SentencePiece
    ``tokenizer.model`` without ``tokenizer.json`` (the liuhaotian checkpoints) needs the ``convert`` extra."""
    if not any(
        (src / name).is_file() for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
    ):
        return
    if (src / "tokenizer.model").is_file() and not (src / "tokenizer.json").is_file():
        missing = [m for m in ("sentencepiece", "google.protobuf") if not _importable(m)]
        if missing:
            raise UserError(
                f"{src / 'tokenizer.model'} is a SentencePiece tokenizer; reading it needs "
                f"{' and '.join(m.replace('google.', '') for m in missing)}: "
                "pip install 'paperzoo-dynamic-llava[convert]'"
            )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(src))
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.save_pretrained(str(out))


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent
        return False
