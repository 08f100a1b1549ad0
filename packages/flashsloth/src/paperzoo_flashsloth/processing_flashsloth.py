"""FlashSloth's processor: SigLIP preprocessing (base or HD views), the ``phi2`` chat template with ``<image>`` and
one ``<learnable>`` at the end of every user turn, question spans, and left-padded batching.

    processor = FlashSlothProcessor.from_model(model, tokenizer)
    inputs = processor(images=[image], text=["What colour is the square?"])
    out = model.generate(**inputs, max_new_tokens=32, do_sample=True, streamer=TextIteratorStreamer(tokenizer))

``text`` holds one question per sample (the prompt then asks it about the sample's image) or, per sample, a list
of ``(user, answer)`` turns (``answer=None`` for the last, the one to generate); ``<image>`` in a user message
places the image there. The official code inserts ``<learnable>`` right before every ``ASSISTANT:``
(``llava_arch.py`` / the data pipeline); :class:`~paperzoo_flashsloth.data.ChatTemplate` does the same and records
the token span of each question, which the embedded query module reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoImageProcessor, AutoProcessor, BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.processing_utils import ProcessorMixin

from paperzoo_flashsloth.configuration import (
    IMAGE_TOKEN,
    LEARNABLE_TOKEN,
    OFFICIAL_IMAGE_TOKEN_ID,
    FlashSlothConfig,
)
from paperzoo_flashsloth.data import (
    ChatTemplate,
    FlashSlothCollator,
    _as_tensors,
    hd_views,
    preprocess_image,
)


class FlashSlothImageProcessor(BaseImageProcessor):
    """SigLIP preprocessing (bicubic resize to ``image_size``, mean/std 0.5), or the HD views (global view + a
    ``hd_grid`` x ``hd_grid`` grid of crops of the mean-padded square canvas) when ``image_hd``."""

    model_input_names = ["pixel_values"]

    def __init__(
        self, image_size: int = 384, image_hd: bool = False, hd_grid: int = 2, patch_size: int = 14, **kwargs
    ):
        super().__init__()
        self.image_size = image_size
        self.image_hd = image_hd
        self.hd_grid = hd_grid
        self.patch_size = patch_size

    @classmethod
    def from_model_config(cls, config: FlashSlothConfig) -> FlashSlothImageProcessor:
        vision = config.vision_config
        return cls(vision.image_size, config.image_hd, config.hd_grid, vision.patch_size)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if self.image_hd:
            views = [hd_views(im, self.image_size, self.hd_grid, self.patch_size) for im in images]
        else:
            views = [preprocess_image(im, self.image_size) for im in images]
        return BatchFeature({"pixel_values": torch.stack(views)}, tensor_type=return_tensors)


Turn = tuple[str, str | None]


class FlashSlothProcessor(ProcessorMixin):
    """Image processor + tokenizer + the FlashSloth prompt layout (``<image>`` and ``<learnable>`` placement).

    Args:
        image_processor: a :class:`FlashSlothImageProcessor`.
        tokenizer: the Phi-2 tokenizer with ``<learnable>`` added (``paperzoo-flashsloth train`` saves one).
        image_token_id: the id the model replaces by an image's tokens (LLaVA's -200 for released checkpoints).
        add_learnable: put ``<learnable>`` after every user turn (False for a model without query tokens).
        system_prompt: the ``phi2`` system prompt; ``None`` keeps the official one.
        answer_end: text ending every answer (the official ``</s>``).
    """

    def __init__(
        self,
        image_processor: FlashSlothImageProcessor,
        tokenizer: Any,
        image_token_id: int = OFFICIAL_IMAGE_TOKEN_ID,
        add_learnable: bool = True,
        system_prompt: str | None = None,
        answer_end: str = "</s>",
        **kwargs,
    ):
        self.image_token_id = image_token_id
        self.add_learnable = add_learnable
        self.system_prompt = system_prompt
        self.answer_end = answer_end
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model(cls, model_or_config: Any, tokenizer: Any, **kwargs) -> FlashSlothProcessor:
        """The processor matching a model (its image size, HD mode, placeholder ids and query tokens)."""
        config = getattr(model_or_config, "config", model_or_config)
        learnable = tokenizer.convert_tokens_to_ids(LEARNABLE_TOKEN)
        if config.num_query_tokens > 0 and learnable != config.learnable_token_id:
            raise ValueError(
                f"the tokenizer's '{LEARNABLE_TOKEN}' has id {learnable}, the model expects "
                f"{config.learnable_token_id}; load the tokenizer saved with the model"
            )
        return cls(
            FlashSlothImageProcessor.from_model_config(config),
            tokenizer,
            image_token_id=config.image_token_id,
            add_learnable=config.num_query_tokens > 0,
            **kwargs,
        )

    @property
    def template(self) -> ChatTemplate:
        return ChatTemplate.phi2(system=self.system_prompt, sep2=self.answer_end)

    def _turns(self, sample: str | Sequence[Turn], has_image: bool) -> list[Turn]:
        if isinstance(sample, str):
            user = sample if (IMAGE_TOKEN in sample or not has_image) else f"{IMAGE_TOKEN}\n{sample}"
            return [(user, None)]
        turns = [(u, a) for u, a in sample]
        if has_image and not any(IMAGE_TOKEN in u for u, _ in turns):
            turns[0] = (f"{IMAGE_TOKEN}\n{turns[0][0]}", turns[0][1])
        return turns

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | Sequence[Sequence[Turn]] | None = None,
        *,
        padding_side: str = "left",
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """``input_ids``, ``attention_mask``, ``question_spans`` and (with images) ``pixel_values`` for
        ``model.generate`` / ``model(...)``. ``images``: one image per sample (``None`` for a text-only sample)."""
        if text is None:
            raise ValueError("FlashSlothProcessor needs text: a question (or a list of turns) per sample")
        samples = [text] if isinstance(text, str) or (text and isinstance(text[0], tuple)) else list(text)
        if images is None:
            images = [None] * len(samples)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) != len(samples):
            raise ValueError(f"got {len(images)} image(s) for {len(samples)} prompt(s); give one per prompt")
        learnable = self.tokenizer.convert_tokens_to_ids(LEARNABLE_TOKEN)
        items = []
        for sample, image in zip(samples, images):
            turns = self._turns(sample, image is not None)
            n_marks = sum(u.count(IMAGE_TOKEN) for u, _ in turns)
            if n_marks != (image is not None):
                raise ValueError(f"a prompt with an image needs exactly one '{IMAGE_TOKEN}', got {n_marks}")
            enc = self.template.encode(
                turns,
                self.tokenizer,
                image_token_id=self.image_token_id,
                learnable_token_id=learnable,
                add_learnable=self.add_learnable,
            )
            pixels = None if image is None else self.image_processor(image)["pixel_values"][0]
            items.append(_as_tensors(enc, pixels))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = FlashSlothCollator(pad, padding_side=padding_side)(items)
        batch.pop("labels")
        return BatchFeature(dict(batch), tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


AutoImageProcessor.register(FlashSlothConfig, FlashSlothImageProcessor, exist_ok=True)
AutoProcessor.register(FlashSlothConfig, FlashSlothProcessor, exist_ok=True)
