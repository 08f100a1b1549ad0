"""Tiny Qwen2-VL models built offline from a transformers config (nothing downloaded), for tests and presets.

The model is transformers' own ``Qwen2VLForConditionalGeneration`` (the Qwen2-VL family is the modern
successor of VEGA's base model Qwen-VL-Chat and takes interleaved images natively), with a small config,
the family's own ``Qwen2VLProcessor`` / ``Qwen2VLImageProcessor`` and a word-level tokenizer over a closed
vocabulary. The tokenizer splits on whitespace only and is case-sensitive, and decoding joins tokens with
single spaces, so a generated ``[Picture 2](Figure. 3) shows a red circle .`` comes back exactly as the
synthetic corpus writes it (the official scorers are case- and bracket-sensitive).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<unk>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2-VL's chat layout (``<|im_start|>role ... <|im_end|>``, images as vision_start/pad/end), minimal."""


@dataclass(frozen=True)
class TinyConfig:
    """Size of the tiny Qwen2-VL (defaults: about 0.2 M parameters)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vision_depth: int = 1
    image_side: int = 56
    """Images are resized to ``image_side`` x ``image_side`` pixels: (side/14)^2 patches, /4 after merging."""

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must divide by heads and heads by kv_heads")
        if self.image_side % 28:
            raise ValueError(
                f"image_side must be a multiple of 28 (patch 14 x merge 2), got {self.image_side}"
            )


def vocabulary(texts: Iterable[str]) -> list[str]:
    """Sorted distinct whitespace tokens of ``texts`` (the chat template's role names included)."""
    words = {"user", "assistant", "system"}
    for text in texts:
        words.update(text.split())
    return sorted(words - set(SPECIAL_TOKENS))


def corpus_vocabulary(samples: Iterable[Any], styles: Iterable[str] = ("official", "paper")) -> list[str]:
    """The words a tiny model must read or write for ``samples``: the queries' text (image placeholders
    removed, as the chat template sees them) in every prompt style, and the answers."""
    from paperzoo_vega.adapters import sample_query
    from paperzoo_vega.modeling_vega import split_context

    texts = []
    styles = tuple(styles)
    for sample in samples:
        for style in styles:
            texts.extend(seg.text for seg in split_context(sample_query(sample, style)) if seg.kind == "text")
        texts.append(sample.answer)
    return vocabulary(texts)


def build_tokenizer(words: Iterable[str]) -> Any:
    """A case-sensitive whitespace WordLevel tokenizer as a ``PreTrainedTokenizerFast`` (built offline),
    padding on the left (for batched generation)."""
    from paperzoo_shared.data.synthetic.qa import to_transformers_tokenizer, word_level_tokenizer

    return to_transformers_tokenizer(word_level_tokenizer(words, SPECIAL_TOKENS), padding_side="left")


def build_tiny_qwen2_vl(
    words: Iterable[str], cfg: TinyConfig | None = None, seed: int = 0
) -> tuple[Any, Any]:
    """A randomly initialised tiny ``Qwen2VLForConditionalGeneration`` and its ``Qwen2VLProcessor``."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )

    cfg = cfg or TinyConfig()
    tokenizer = build_tokenizer(words)
    vocab = tokenizer.get_vocab()
    pixels = cfg.image_side * cfg.image_side
    image_processor = Qwen2VLImageProcessor(
        min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    try:  # transformers 5 builds a video processor when none is given; 4.x accepts None
        processor = Qwen2VLProcessor(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
        )
    except (TypeError, ValueError):
        from transformers import Qwen2VLVideoProcessor

        processor = Qwen2VLProcessor(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
            video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
        )  # fmt: skip
    head_dim = cfg.hidden // cfg.heads
    section = head_dim // 2
    mrope = [section // 4, section // 4, section - 2 * (section // 4)]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": cfg.hidden, "intermediate_size": 2 * cfg.hidden,
            "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads,
            "num_key_value_heads": cfg.kv_heads, "max_position_embeddings": 8192,
            "rope_scaling": {"type": "mrope", "mrope_section": mrope},
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id, "tie_word_embeddings": True,
        },
        vision_config={
            "depth": cfg.vision_depth, "embed_dim": cfg.hidden, "hidden_size": cfg.hidden, "num_heads": 2,
            "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    generation = model.generation_config
    generation.eos_token_id = [tokenizer.eos_token_id, vocab["<|im_end|>"]]
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id
    return model, processor
