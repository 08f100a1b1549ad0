"""LLaVA configs: the real LLaVA-1.5 7B/13B shapes (for random-weight measurements) and tiny ones (tests, mini)."""

from __future__ import annotations

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

from paperzoo_dynamic_llava.configuration import SparseConfig, TinyModelConfig

# LLaVA-1.5: CLIP ViT-L/14 @336 (576 patch tokens from layer -2), mlp2x_gelu, Vicuna-7B/13B (llava-hf vocab 32064).
LLAVA15_TEXT = {
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
    },
    "13b": {
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
    },
}


def llava15_config(size: str = "7b", sparse: SparseConfig | None = None) -> LlavaConfig:
    """The llava-hf/llava-1.5-{7b,13b}-hf architecture (random weights are enough for FLOPs, latency, memory)."""
    if size not in LLAVA15_TEXT:
        raise ValueError(f"size must be one of {sorted(LLAVA15_TEXT)}, got {size!r}")
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
    )  # fmt: skip
    text = LlamaConfig(
        **LLAVA15_TEXT[size], num_key_value_heads=LLAVA15_TEXT[size]["num_attention_heads"], vocab_size=32064,
        max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=32000, image_seq_length=576,
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )  # fmt: skip
    if sparse is not None:
        config.sparse_config = sparse.to_dict()
    return config


def tiny_llava_config(
    model: TinyModelConfig | None = None,
    *,
    vocab_size: int = 64,
    image_token_id: int = 4,
    pad_token_id: int = 0,
    bos_token_id: int = 2,
    eos_token_id: int = 3,
    sparse: SparseConfig | None = None,
    num_key_value_heads: int | None = None,
) -> LlavaConfig:
    """A small CLIP tower + mlp2x_gelu + Llama LLaVA for CPU tests and the mini preset."""
    m = model or TinyModelConfig()
    vision = CLIPVisionConfig(
        hidden_size=m.vision_hidden, intermediate_size=4 * m.vision_hidden, num_hidden_layers=m.vision_layers,
        num_attention_heads=m.vision_heads, image_size=m.image_size, patch_size=m.patch_size, projection_dim=32,
    )  # fmt: skip
    text = LlamaConfig(
        hidden_size=m.text_hidden, intermediate_size=m.text_intermediate, num_hidden_layers=m.text_layers,
        num_attention_heads=m.text_heads, num_key_value_heads=num_key_value_heads or m.text_heads,
        vocab_size=vocab_size, max_position_embeddings=m.max_position_embeddings, pad_token_id=pad_token_id,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, rms_norm_eps=1e-5,
    )  # fmt: skip
    n_patches = (m.image_size // m.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token_id, image_seq_length=n_patches,
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )  # fmt: skip
    if sparse is not None:
        config.sparse_config = sparse.to_dict()
    return config
