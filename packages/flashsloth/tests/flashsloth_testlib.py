"""Tiny random FlashSloth models shared by the tests (imported by name: tests/ is put on sys.path by conftest)."""

from __future__ import annotations

import torch
from paperzoo_flashsloth.configuration import ModelSpec, TextSpec, VisionSpec, build_model_config

IMAGE_ID = 5
LEARNABLE_ID = 6
ANCHOR_ID = 7
EOS_ID = 2
VOCAB = 40


def tiny_spec(**overrides) -> ModelSpec:
    """24 px images, 4 px patches: 6x6 patches, pooled 3x3 -> 2x2 = 4 tokens; 4-layer Phi, query module at 2."""
    fields = dict(
        vision=VisionSpec(
            hidden_size=16, intermediate_size=32, num_layers=2, num_heads=4, image_size=24, patch_size=4
        ),
        text=TextSpec(
            hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4, partial_rotary_factor=0.5
        ),
        pool_size=3,
        num_query_tokens=3,
        embq_layer=2,
        embq_down_dim=16,
        embq_num_heads=4,
        attn_implementation="eager",
    )
    fields.update(overrides)
    return ModelSpec(**fields)


def tiny_config(variant: str = "flashsloth", **overrides):
    config = build_model_config(
        tiny_spec(**overrides),
        variant=variant,
        vocab_size=VOCAB,
        image_token_id=IMAGE_ID,
        learnable_token_id=LEARNABLE_ID,
        query_anchor_token_id=ANCHOR_ID,
        pad_token_id=0,
        eos_token_id=EOS_ID,
    )
    config.pooling_dropout = 0.0
    return config


def tiny_model(variant: str = "flashsloth", seed: int = 0, **overrides):
    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration

    torch.manual_seed(seed)
    return FlashSlothForConditionalGeneration(tiny_config(variant, **overrides)).eval()
