"""Tiny random LLaVA models shared by the tests (no download: CLIP tower + Llama built from configs)."""

from __future__ import annotations

import pytest
import torch
from paperzoo_dynamic_llava.configuration import SparseConfig, TinyModelConfig
from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
from paperzoo_dynamic_llava.presets import tiny_llava_config

VOCAB = 48
IMAGE_ID = 4
PAD_ID = 0
TINY = TinyModelConfig(
    image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
    text_hidden=64, text_layers=4, text_heads=4, text_intermediate=128, max_position_embeddings=96,
)  # fmt: skip


def tiny_sparse(**overrides) -> SparseConfig:
    base = {
        "d_model": 32,
        "nhead": 4,
        "dim_feedforward": 64,
        "vision_keep_rate": 0.25,
        "output_text_len_for_training": 4,
    }
    base.update(overrides)
    return SparseConfig(**base)


def make_model(
    seed: int = 0, *, kv_heads: int | None = None, **sparse_overrides
) -> DynamicLlavaForConditionalGeneration:
    """A tiny Dynamic-LLaVA whose random text predictor drops some generated tokens and keeps others."""
    torch.manual_seed(seed)
    cfg = tiny_llava_config(TINY, vocab_size=VOCAB, image_token_id=IMAGE_ID, sparse=tiny_sparse(**sparse_overrides),
                            num_key_value_heads=kv_heads)  # fmt: skip
    model = DynamicLlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # unit-variance layers so that the random text predictor's decisions vary by token
        for module in model.output_text_score_predictor.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 1.5 / module.in_features**0.5)
    return model


def make_prompts(lengths: list[int], seed: int = 0, n_patches: int = 16) -> dict[str, torch.Tensor]:
    """Left-padded prompts ``<bos> text <image>*P text`` of the given total lengths, with images."""
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    ids = torch.full((len(lengths), n), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(lengths), n), dtype=torch.long)
    for i, length in enumerate(lengths):
        seq = torch.randint(5, VOCAB, (length,), generator=g)
        seq[0] = 2
        seq[2 : 2 + n_patches] = IMAGE_ID
        ids[i, n - length :] = seq
        mask[i, n - length :] = 1
    pixels = torch.randn(len(lengths), 3, TINY.image_size, TINY.image_size, generator=g)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


@pytest.fixture
def model() -> DynamicLlavaForConditionalGeneration:
    return make_model()


class Tiny:
    """The helpers above, handed to tests through the ``tiny`` fixture (importlib mode: tests cannot import
    conftest)."""

    VOCAB, IMAGE_ID, PAD_ID, MODEL = VOCAB, IMAGE_ID, PAD_ID, TINY
    make_model = staticmethod(make_model)
    make_prompts = staticmethod(make_prompts)
    sparse = staticmethod(tiny_sparse)


@pytest.fixture
def tiny() -> type[Tiny]:
    return Tiny


def pytest_configure(config):
    # One thread: on a shared 2-core machine, OpenMP threads spinning against other processes make tiny
    # models an order of magnitude slower.
    torch.set_num_threads(1)
