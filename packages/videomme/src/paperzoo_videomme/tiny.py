"""Tiny, randomly initialised video MLLMs built offline (nothing downloaded), for tests and presets.

Two transformers families: Qwen2-VL (``Qwen2VLForConditionalGeneration``) and LLaVA-OneVision
(``LlavaOnevisionForConditionalGeneration``), each with a word-level tokenizer from
``paperzoo_shared.data.synthetic.qa.build_word_tokenizer``, the family's own image/video processors and a
minimal chat template. Their answers are random text: they test the pipeline, not Video-MME ability.

The shared tokenizer lower-cases ordinary words, so the option letters ``A``-``D`` are added as special
tokens (the model can then emit them) and the adapter decodes with special tokens kept, stripping only the
control tokens.
"""

from __future__ import annotations

from typing import Any

CONTROL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<image>", "<video>", "<|im_start|>", "<|im_end|>",
                  "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>")  # fmt: skip
LETTER_TOKENS = ("A", "B", "C", "D")

_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'video' %}VIDEO{% elif c['type'] == 'image' %}IMAGE"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(extra: tuple[str, ...]) -> Any:
    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    return to_transformers_tokenizer(build_word_tokenizer(extra_special_tokens=(*extra, *LETTER_TOKENS)))


def _finish(model: Any, tokenizer: Any) -> Any:
    generation = model.generation_config
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id
    return model.eval()


def build_tiny_qwen2_vl(seed: int = 0, hidden: int = 32, layers: int = 2) -> tuple[Any, Any]:
    """A ~0.1 M-parameter random Qwen2-VL and its processor (frames resized to at most 4x4 patches)."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    extra = (
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|video_pad|>",
        "<|image_pad|>",
    )
    tokenizer = _tokenizer(extra)
    vocab = tokenizer.get_vocab()
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16, "patch_size": 14, "merge_size": 2,
              "temporal_patch_size": 2}  # fmt: skip
    template = _CHAT.replace("VIDEO", "<|vision_start|><|video_pad|><|vision_end|>").replace(
        "IMAGE", "<|vision_start|><|image_pad|><|vision_end|>"
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=template,
    )
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"depth": 1, "embed_dim": hidden, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    return _finish(model, tokenizer), processor


def build_tiny_llava_onevision(seed: int = 0, hidden: int = 32, layers: int = 2) -> tuple[Any, Any]:
    """A ~0.1 M-parameter random LLaVA-OneVision (SigLIP + Qwen2) and its processor (28x28 frames)."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = _tokenizer(("<video>", "<|im_start|>", "<|im_end|>"))
    vocab = tokenizer.get_vocab()
    side = {"height": 28, "width": 28}
    template = _CHAT.replace("VIDEO", "<video>\n").replace("IMAGE", "<image>\n")
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=side, crop_size=side, image_grid_pinpoints=[[28, 28]]
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=side),
        chat_template=template,
        num_image_tokens=4,
        vision_feature_select_strategy="full",
    )
    config = LlavaOnevisionConfig(
        text_config={
            "model_type": "qwen2", "vocab_size": len(vocab), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"model_type": "siglip_vision_model", "hidden_size": hidden, "intermediate_size": 2 * hidden,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        image_token_id=vocab["<image>"],
        video_token_id=vocab["<video>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[28, 28]],
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    return _finish(model, tokenizer), processor


TINY_BUILDERS = {"tiny_qwen2_vl": build_tiny_qwen2_vl, "tiny_llava_onevision": build_tiny_llava_onevision}


def tiny_adapter(
    kind: str,
    *,
    seed: int = 0,
    max_new_tokens: int = 16,
    frames_as: str = "video",
    torch_threads: int | None = 1,
) -> Any:
    """A :class:`~paperzoo_videomme.adapters.TransformersVideoAdapter` around a tiny random model.

    ``torch_threads`` (default 1) is applied with ``torch.set_num_threads``: the matrices are so small that
    extra threads only synchronise, and on a busy 2-core machine they made generation 15x slower.
    ``None`` leaves the setting alone.
    """
    from paperzoo_videomme.adapters import TransformersVideoAdapter

    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)

    if kind not in TINY_BUILDERS:
        raise ValueError(f"unknown tiny model {kind!r}; choose one of {', '.join(TINY_BUILDERS)}.")
    model, processor = TINY_BUILDERS[kind](seed=seed)
    return TransformersVideoAdapter(
        model,
        processor,
        name=kind,
        max_new_tokens=max_new_tokens,
        frames_as=frames_as,
        skip_special_tokens=False,
        strip_tokens=CONTROL_TOKENS,
    )
