"""Bad input gives clear errors that say what is wrong and how to fix it."""

from __future__ import annotations

import pytest
import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID, tiny_config, tiny_model
from paperzoo_flashsloth.configuration import FlashSlothConfig, ModelSpec, TextSpec
from paperzoo_flashsloth.convert import CheckpointLayoutError, convert_state_dict
from paperzoo_flashsloth.data import hd_views

I, L = IMAGE_ID, LEARNABLE_ID


def _pixels(n, model, views=None):
    size = model.config.vision_config.image_size
    return torch.randn(n, views, 3, size, size) if views else torch.randn(n, 3, size, size)


def test_prompt_without_learnable():
    model = tiny_model()
    ids = torch.tensor([[10, I, 12, 13, 15, 16]])
    with pytest.raises(ValueError, match=r"no '<learnable>' token .* right before 'ASSISTANT:'"):
        model(ids, None, _pixels(1, model))


def test_learnable_for_a_model_without_queries():
    model = tiny_model(variant="uncompressed")
    with pytest.raises(ValueError, match="no query tokens"):
        model(torch.tensor([[10, I, 12, L, 15]]), None, _pixels(1, model))


def test_more_images_than_placeholders():
    model = tiny_model()
    ids = torch.tensor([[10, I, 12, L, 15]])
    with pytest.raises(
        ValueError, match=r"more images than image placeholders: got 2 images for 1 placeholder"
    ):
        model(ids, None, _pixels(2, model))
    with pytest.raises(ValueError, match=r"fewer images than image placeholders: got 0 images"):
        model(torch.tensor([[10, I, 12, I, L, 15]])[:, :5], None, None)


def test_wrong_image_shapes():
    model = tiny_model()
    ids = torch.tensor([[10, I, 12, L, 15]])
    with pytest.raises(ValueError, match=r"images must be 24x24 pixels"):
        model(ids, None, torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[num_images, 3, H, W\]"):
        model(ids, None, _pixels(1, model, views=5))
    hd = tiny_model(variant="hd")
    with pytest.raises(ValueError, match=r"5 views per image"):
        hd(ids, None, _pixels(1, hd, views=3))


def test_hd_image_too_small_to_crop():
    with pytest.raises(
        ValueError, match=r"image of 20x500 px is too small for HD cropping: .* at least 28 px"
    ):
        hd_views(torch.rand(3, 500, 20) * 255)
    assert hd_views(torch.rand(3, 30, 40) * 255, crop_size=24).shape == (5, 3, 24, 24)


def test_question_spans_must_match_the_blocks():
    model = tiny_model()
    ids = torch.tensor([[10, I, 12, 13, L, 15]])
    with pytest.raises(ValueError, match=r"2 question span\(s\) for 1 '<learnable>'"):
        model(ids, None, _pixels(1, model), question_spans=torch.tensor([[[2, 4], [2, 3]]]))
    with pytest.raises(ValueError, match="covers an image"):
        model(ids, None, _pixels(1, model), question_spans=torch.tensor([[[0, 3]]]))


def test_checkpoint_from_another_layout():
    llava = {
        "model.mm_projector.0.weight": torch.zeros(2, 2),
        "model.layers.0.mlp.fc1.weight": torch.zeros(2, 2),
    }
    with pytest.raises(
        CheckpointLayoutError, match=r"not an official FlashSloth checkpoint: .* LLaVA/Imp-style"
    ):
        convert_state_dict(llava, source="ckpt/")
    ours = tiny_model().state_dict()
    with pytest.raises(CheckpointLayoutError, match="already is in this package's layout"):
        convert_state_dict(ours)
    official = {
        "model.lqformer.up_projector.weight": torch.zeros(1),
        "model.learnable_tokens.token": torch.zeros(1),
        "model.pooling.mlp.0.weight": torch.zeros(1),
        "model.mm_projector.0.weight": torch.zeros(1),
        "model.resampler.weight": torch.zeros(1),
    }
    with pytest.raises(CheckpointLayoutError, match=r"1 key\(s\) of no known FlashSloth part.*resampler"):
        convert_state_dict(official)


def test_invalid_configurations():
    with pytest.raises(ValueError, match="embq_layer=9 is not a decoder layer index"):
        FlashSlothConfig(
            vision_config=tiny_config().vision_config, text_config=tiny_config().text_config, embq_layer=9
        )
    with pytest.raises(ValueError, match="cannot be cut into 4x4 windows"):
        FlashSlothConfig(
            vision_config=tiny_config().vision_config, text_config=tiny_config().text_config, pool_size=4
        )
    with pytest.raises(ValueError, match="must be an even integer"):
        TextSpec(hidden_size=32, num_heads=4, partial_rotary_factor=0.4)
    with pytest.raises(ValueError, match=r"model.embq_layer 8"):
        ModelSpec(text=TextSpec(hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4,
                                partial_rotary_factor=0.5), embq_layer=8)  # fmt: skip
