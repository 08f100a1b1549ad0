"""The transformers conventions: FlashSlothProcessor builds the prompt with <image> and <learnable>, the Auto classes
resolve model_type "flashsloth", and `model.generate` samples and streams text through TextIteratorStreamer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from paperzoo_flashsloth.configuration import ModelSpec, TextSpec, VisionSpec, build_model_config
from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration
from paperzoo_flashsloth.processing_flashsloth import FlashSlothImageProcessor, FlashSlothProcessor
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, TextIteratorStreamer


@pytest.fixture(scope="module")
def tiny(word_tokenizer):
    tok = word_tokenizer
    ids = tok.convert_tokens_to_ids
    spec = ModelSpec(
        vision=VisionSpec(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=4, image_size=24, patch_size=4),
        text=TextSpec(hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4, partial_rotary_factor=0.5),
        num_query_tokens=3, embq_layer=2, embq_down_dim=16, embq_num_heads=4, attn_implementation="eager",
    )  # fmt: skip
    config = build_model_config(spec, vocab_size=len(tok), image_token_id=ids("<image>"),
                                learnable_token_id=ids("<learnable>"), query_anchor_token_id=ids("."),
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = FlashSlothForConditionalGeneration(config).eval()
    processor = FlashSlothProcessor.from_model(model, tok, system_prompt="", answer_end="<eos>")
    return model, processor


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (30, 20, 3), dtype=np.uint8)


def test_prompt_layout(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    inputs = processor(images=[_image()], text=["what colour is the square"])
    ids = inputs["input_ids"][0].tolist()
    image_id, learnable_id = model.config.image_token_id, model.config.learnable_token_id
    assert ids.count(image_id) == 1 and ids.count(learnable_id) == 1
    # USER: <image> \n question <learnable> ASSISTANT:
    q_start, q_end = inputs["question_spans"][0, 0].tolist()
    assert tok.decode(ids[q_start:q_end]).split() == ["what", "colour", "is", "the", "square"]
    assert ids.index(image_id) < q_start and q_end == ids.index(learnable_id)
    assert (
        tok.decode(ids[ids.index(learnable_id) + 1 :]).split()[0] == "ASSISTANT"
    )  # <learnable> ends the turn
    assert inputs["pixel_values"].shape == (1, 3, 24, 24)


def test_left_padding_and_text_only_samples(tiny):
    model, processor = tiny
    inputs = processor(
        images=[_image(), None], text=["what colour is the square", "how many circles are there"]
    )
    mask = inputs["attention_mask"]
    assert inputs["pixel_values"].shape[0] == 1  # the text-only sample brings no image
    assert (mask[:, -1] == 1).all()  # left padding: every row ends with its last token
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 1


def test_image_processor_matches_the_siglip_recipe():
    """Bicubic resize, then (x / 255 - 0.5) / 0.5: a constant image stays constant, 255 maps to 1, 0 to -1."""
    proc = FlashSlothImageProcessor(image_size=24)
    white = np.full((30, 20, 3), 255, dtype=np.uint8)
    black = np.zeros((30, 20, 3), dtype=np.uint8)
    out = proc([white, black])["pixel_values"]
    torch.testing.assert_close(out[0], torch.ones(3, 24, 24))
    torch.testing.assert_close(out[1], -torch.ones(3, 24, 24))
    hd = FlashSlothImageProcessor(image_size=24, image_hd=True, hd_grid=2, patch_size=4)(white)[
        "pixel_values"
    ]
    assert hd.shape == (1, 5, 3, 24, 24)


def test_auto_classes_and_processor_round_trip(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "FlashSlothConfig"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, FlashSlothForConditionalGeneration)
    again = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(again, FlashSlothProcessor)
    assert again.system_prompt == "" and again.image_token_id == model.config.image_token_id
    a = processor(images=[_image()], text=["what colour is the square"])
    b = again(images=[_image()], text=["what colour is the square"])
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**b).logits, model(**a).logits)


def test_generate_samples_and_streams_through_the_processor(tiny):
    model, processor = tiny
    inputs = processor(images=[_image()], text=["what colour is the square"])
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(**inputs, max_new_tokens=6, do_sample=True, temperature=1.5, top_p=0.95, streamer=streamer,
                  eos_token_id=None, pad_token_id=processor.tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(3)
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=model.generate(**kwargs)))
    thread.start()
    streamed = "".join(streamer)
    thread.join()
    new = result["out"][0, inputs["input_ids"].shape[1] :]
    assert new.numel() == 6
    assert streamed.split() == processor.tokenizer.decode(new, skip_special_tokens=True).split()
    torch.manual_seed(3)
    again = model.generate(**{k: v for k, v in kwargs.items() if k != "streamer"})
    assert torch.equal(again, result["out"])  # seeded sampling is reproducible


def test_empty_question_generates(tiny):
    """`<image><learnable>`: the question span is empty and the module attends to no text (as the official code)."""
    model, processor = tiny
    inputs = processor(images=[_image()], text=[""])
    assert (inputs["question_spans"][0, 0, 1] - inputs["question_spans"][0, 0, 0]) == 0
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2
