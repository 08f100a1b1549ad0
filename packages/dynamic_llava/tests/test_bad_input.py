"""Bad input gives a clear error, never a silent wrong answer."""

from __future__ import annotations

import math

import pytest
import torch
from paperzoo_dynamic_llava.configuration import ExperimentConfig, SparseConfig
from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
from transformers import LlavaConfig, LlavaForConditionalGeneration


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, math.nan])
def test_keep_ratio_outside_0_1_is_rejected(rate):
    with pytest.raises(ValueError, match=r"keep ratio in \(0, 1\]"):
        SparseConfig(vision_keep_rate=rate)
    with pytest.raises(ValueError, match="output_text_keep_rate"):
        SparseConfig(output_text_keep_rate=rate)


def test_keep_ratio_one_is_allowed():
    assert SparseConfig(vision_keep_rate=1.0, output_text_keep_rate=1.0).vision_keep_rate == 1.0


@pytest.mark.parametrize("delta", [-1, 1])
def test_prompt_with_more_or_fewer_image_tokens_than_images(tiny, delta):
    model = tiny.make_model()
    batch = tiny.make_prompts([30], seed=0)
    ids = batch["input_ids"]
    image = (ids[0] == tiny.IMAGE_ID).nonzero().squeeze(1)
    if delta < 0:
        ids[0, image[-1]] = 7
    else:
        ids[0, image[-1] + 1] = tiny.IMAGE_ID
    with pytest.raises(ValueError, match="image tokens do not match images"):
        model(**batch)


def test_images_without_image_tokens_and_two_images_for_one_sample(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([30], seed=0)
    with pytest.raises(ValueError, match="1 images were given|2 images were given"):
        model(batch["input_ids"], torch.cat([batch["pixel_values"]] * 2), batch["attention_mask"])
    no_image = batch["input_ids"].masked_fill(batch["input_ids"] == tiny.IMAGE_ID, 7)
    with pytest.raises(ValueError, match="image tokens do not match"):
        model(no_image, batch["pixel_values"], batch["attention_mask"])


def test_checkpoint_without_sparsification_fields(tiny, tmp_path):
    model = tiny.make_model()
    config = LlavaConfig.from_dict({k: v for k, v in model.config.to_dict().items() if k != "sparse_config"})
    LlavaForConditionalGeneration(config).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="no 'sparse_config'.*from_dense_llava"):
        DynamicLlavaForConditionalGeneration.from_pretrained(str(tmp_path))
    model.config.sparse_config = {**model.sparse.to_dict(), "not_a_field": 1}
    with pytest.raises(ValueError, match="unknown key 'not_a_field'"):
        DynamicLlavaForConditionalGeneration(model.config)


def test_sequence_over_the_context_length(tiny):
    model = tiny.make_model()  # max_position_embeddings = 96
    batch = tiny.make_prompts([100], seed=0)
    with pytest.raises(ValueError, match="over the context length"):
        model(**batch)
    ok = tiny.make_prompts([80], seed=0)
    with pytest.raises(ValueError, match="exceeds the context length"):
        model.sparse_generate(**ok, max_new_tokens=20)


def test_other_invalid_settings(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([30], seed=0)
    with pytest.raises(ValueError, match="selection must be one of"):
        model(**batch, selection="h2o")
    with pytest.raises(ValueError, match="inference only"):
        model(**batch, selection="random", execution="mask")
    with pytest.raises(ValueError, match="not implemented"):
        SparseConfig(use_instruct_predictor=True)
    with pytest.raises(ValueError, match="sparse_layer"):
        tiny.make_model(sparse_layer=9)
    with pytest.raises(ValueError, match="unknown rows"):
        ExperimentConfig(rows=("dense", "h2o"))
    with pytest.raises(ValueError, match="cache_kind must be"):
        model.sparse_generate(**batch, cache_kind="paged")
    with pytest.raises(ValueError, match="text_keep_pattern must be"):
        model.sparse_generate(**batch, text_keep_pattern="half")
