"""A tiny, randomly initialised Idefics3 built offline from a transformers config (nothing downloaded).

The model is transformers' own ``Idefics3ForConditionalGeneration`` and ``Idefics3Processor`` (the paper's
second base model, Idefics3-8B-Llama3, natively supported by transformers) with a small config, Idefics3's
chat template and a word-level tokenizer over a closed vocabulary (``tokenizers.pre_tokenizers.Whitespace``:
words and runs of punctuation). ``do_image_splitting=False`` as in the official fine-tune, so every frame is
one global image of ``image_seq_len`` tokens (169 for the 8B model; ``(side / patch)^2 / scale^2`` here).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<unk>", "<|begin_of_text|>", "<eos>", "<fake_token_around_image>", "<image>",
    "<end_of_utterance>", "<global-img>",
)  # fmt: skip

CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
"""Idefics3-8B-Llama3's chat template (``User:<image>...text<end_of_utterance>\\nAssistant: ...``)."""


@dataclass(frozen=True)
class TinyIdefics3Config:
    """Size of the tiny Idefics3 (defaults: about 0.1 M parameters)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vision_hidden: int = 32
    vision_layers: int = 1
    image_side: int = 64
    """Frames are resized to ``image_side`` px (longest edge), one global image each (no splitting)."""
    patch: int = 16
    scale_factor: int = 2

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must divide by heads and heads by kv_heads")
        if self.image_side % (self.patch * self.scale_factor):
            raise ValueError(
                f"image_side must be a multiple of patch x scale_factor = {self.patch * self.scale_factor}, "
                f"got {self.image_side}"
            )

    @property
    def image_seq_len(self) -> int:
        """Tokens per frame: ``(side / patch)^2 / scale_factor^2`` (169 for Idefics3-8B at 364 px / 14)."""
        return (self.image_side // self.patch) ** 2 // self.scale_factor**2


def vocabulary(texts: Iterable[str]) -> list[str]:
    """Sorted distinct tokens (``Whitespace`` pre-tokenizer: ``\\w+`` and punctuation runs) of ``texts``,
    with the chat template's role words."""
    import re

    words = {"User", "Assistant", ":"}
    for text in texts:
        words.update(re.findall(r"\w+|[^\w\s]+", text))
    return sorted(words - set(SPECIAL_TOKENS))


def build_tokenizer(words: Iterable[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` plus Idefics3's special tokens."""
    from paperzoo_shared.data.synthetic.qa import to_transformers_tokenizer, word_level_tokenizer

    core = word_level_tokenizer(words, SPECIAL_TOKENS, split_punctuation=True)
    return to_transformers_tokenizer(core, bos_token="<|begin_of_text|>")


def build_processor(words: Iterable[str], cfg: TinyIdefics3Config | None = None) -> Any:
    """``Idefics3Processor`` with the tiny tokenizer and ``do_image_splitting=False``."""
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    cfg = cfg or TinyIdefics3Config()
    side = {"longest_edge": cfg.image_side}
    image_processor = Idefics3ImageProcessor(do_image_splitting=False, size=side, max_image_size=side)
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(words),
        image_seq_len=cfg.image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_idefics3(
    words: Iterable[str], cfg: TinyIdefics3Config | None = None, seed: int = 0
) -> tuple[Any, Any]:
    """A randomly initialised tiny ``Idefics3ForConditionalGeneration`` and its ``Idefics3Processor``."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    cfg = cfg or TinyIdefics3Config()
    processor = build_processor(words, cfg)
    tok = processor.tokenizer
    config = Idefics3Config(
        vision_config={
            "hidden_size": cfg.vision_hidden, "intermediate_size": 2 * cfg.vision_hidden,
            "num_hidden_layers": cfg.vision_layers, "num_attention_heads": 2, "image_size": cfg.image_side,
            "patch_size": cfg.patch,
        },
        text_config={
            "model_type": "llama", "vocab_size": len(tok), "hidden_size": cfg.hidden,
            "intermediate_size": 2 * cfg.hidden, "num_hidden_layers": cfg.layers,
            "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.kv_heads,
            "max_position_embeddings": 4096, "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        },
        scale_factor=cfg.scale_factor,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    generation = model.generation_config
    generation.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_utterance>")]
    generation.pad_token_id = tok.pad_token_id
    generation.bos_token_id = tok.bos_token_id
    return model, processor
