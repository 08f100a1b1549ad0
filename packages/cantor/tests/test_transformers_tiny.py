"""TransformersBackend end to end on a tiny random Qwen2-VL saved to disk and loaded back through
AutoProcessor / AutoModelForImageTextToText (built offline; its text is random). Slow: imports the model code."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.slow

_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _save_tiny_qwen2_vl(path):
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    special = (
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    )
    tokenizer = to_transformers_tokenizer(build_word_tokenizer(extra_special_tokens=special))
    vocab = tokenizer.get_vocab()
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16, "patch_size": 14, "merge_size": 2,
              "temporal_patch_size": 2}  # fmt: skip
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=_TEMPLATE,
    )
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
                     "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    processor.save_pretrained(path)


def test_tiny_qwen2_vl_through_the_pipeline(tmp_path):
    from paperzoo_cantor.backends import TransformersBackend
    from paperzoo_cantor.fixtures import encode_image
    from paperzoo_cantor.modeling_cantor import run_cantor

    _save_tiny_qwen2_vl(tmp_path / "tiny")
    backend = TransformersBackend(tmp_path / "tiny", max_new_tokens=4, device="cpu", dtype="float32")
    text = asyncio.run(backend.generate("what is shown", encode_image("5")))
    assert isinstance(text, str)
    again = asyncio.run(backend.generate("what is shown", encode_image("5")))
    assert again == text  # greedy
    trace = asyncio.run(run_cantor(backend.generate, "what is shown", encode_image("5")))
    assert [s.role for s in trace.steps][0] == "decision" and trace.steps[-1].role == "synthesis"
    assert all(s.error is None for s in trace.steps)
