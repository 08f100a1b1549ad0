"""Token arithmetic (90 and 414), the FLOP formula, the exact counter, and the real model's size."""

from __future__ import annotations

import pytest
import torch
from flashsloth_testlib import tiny_model
from paperzoo_flashsloth.configuration import FlashSlothConfig, variant_overrides
from paperzoo_flashsloth.evaluate import count_flops, efficiency_row, formula_prefill_flops, token_counts


@pytest.mark.parametrize(
    "variant,image,total",
    [("flashsloth", 81, 90), ("hd", 405, 414), ("uncompressed", 729, 729), ("hd_uncompressed", 3645, 3645),
     ("no_embq", 81, 81), ("avgpool", 81, 90)],
)  # fmt: skip
def test_token_arithmetic(variant, image, total):
    config = FlashSlothConfig(**variant_overrides(variant))
    counts = token_counts(config)
    assert (counts["image_tokens"], counts["visual_tokens"]) == (image, total)
    assert config.patches_per_side == 27  # 384 px / 14 px patches, floored


def test_embedded_query_reads_every_raw_view():
    assert token_counts(FlashSlothConfig())["embq_raw_features"] == 729
    assert token_counts(FlashSlothConfig(image_hd=True))["embq_raw_features"] == 5 * 729


@pytest.mark.parametrize("tokens,tflops", [(729, 5.07), (90, 0.61), (3645, 28.8), (414, 2.83)])
def test_formula_values(tokens, tflops):
    # 32 layers x (32 N C^2 + 4 N^2 C), C = 2560: the values of the paper notes (Sec. 2.6)
    assert formula_prefill_flops(tokens, 2560, 32) / 1e12 == pytest.approx(
        tflops, abs=0.006 if tflops < 10 else 0.06
    )


def test_exact_counter_on_a_linear_layer():
    layer = torch.nn.Linear(16, 8)
    assert count_flops(lambda: layer(torch.randn(5, 16))) == 2 * 5 * 16 * 8


def test_real_model_has_3_2_billion_parameters():
    from paperzoo_flashsloth.convert import expected_shapes

    shapes = expected_shapes(FlashSlothConfig())
    total = sum(torch.Size(s).numel() for s in shapes.values())
    assert 3.15e9 < total < 3.25e9
    assert shapes["query_tokens"] == (9, 2560)
    assert shapes["embedded_query.image_to_query.v_proj.weight"] == (1152, 1152)
    assert shapes["embedded_query.down_text.weight"] == (576, 2560)
    assert shapes["projector.linear_1.weight"] == (2560, 1152)
    assert sum(1 for k in shapes if k.endswith("layer_norm1.weight")) == 26  # SigLIP truncated to 26 blocks


def test_efficiency_row_on_cpu():
    model = tiny_model()
    row = efficiency_row(
        model, batch_sizes=(1, 2), question_tokens=4, prefix_tokens=3, repeats=1, warmup=0, new_tokens=2
    )
    assert row["visual_tokens"] == 7 and row["image_tokens"] == 4
    assert row["prefill_tflops_exact"] > 0 and row["ttft_ms_bs2"] > 0
    assert row["prefill_peak_mem_gb_bs1"] is None  # CPU: no CUDA allocator statistics
    assert row["decode_tokens_per_s_bs2"] > 0


@pytest.mark.parametrize("variant", ["flashsloth", "uncompressed", "hd"])
def test_flops_by_parts_equal_a_real_prefill(variant):
    from paperzoo_flashsloth.evaluate import dummy_inputs, first_token_fn, prefill_flops_by_parts

    model = tiny_model(variant=variant)
    inputs = dummy_inputs(model.config, 1, question_tokens=5, prefix_tokens=4)
    assert prefill_flops_by_parts(model, prefix_tokens=4, question_tokens=5) == count_flops(
        first_token_fn(model, inputs)
    )


def test_real_size_flops_on_the_meta_device():
    from paperzoo_flashsloth.reproduce import real_size_flops

    row = real_size_flops("flashsloth")
    assert row["visual_tokens"] == 90 and row["tflops_formula"] == pytest.approx(0.607, abs=1e-3)
    assert 1.0 < row["tflops_exact"] < 2.0  # vision tower (~0.75) + LLM over 156 tokens
