"""Model adapters: one interface, ``generate(samples) -> responses``, over any model that can read VEGA.

* :class:`TransformersAdapter`: a transformers multimodal model with its own Processor and chat template
  (Qwen2-VL family, LLaVA-style models, the tiny models of :mod:`paperzoo_vega.tiny`). The interleaved
  context becomes one user turn whose content alternates text and ``{"type": "image"}`` parts in context
  order; generation goes through ``model.generate`` (greedy by default; any ``GenerationConfig`` option).
* :class:`QwenVLChatAdapter`: the official path, Qwen-VL-Chat's remote-code ``model.chat(tokenizer, query)``
  with the query in its native ``Picture k: <img>path</img>`` form (paths made absolute).
* :class:`OpenAIAdapter`: an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, hosted APIs),
  images sent inline as base64 data URLs, several requests in flight.
* :class:`CallableAdapter`: any ``fn(query: str, images: list[Path]) -> str``.

Prompts are built by :func:`paperzoo_vega.modeling_vega.build_query` (``official`` or ``paper`` style).
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from paperzoo_vega.data import VegaSample
from paperzoo_vega.modeling_vega import build_query, split_context


class Adapter(Protocol):
    name: str

    def generate(self, samples: Sequence[VegaSample]) -> list[str]: ...


def sample_query(sample: VegaSample, style: str = "official") -> str:
    """The sample's whole query text (release placeholders kept)."""
    return build_query(sample.task, sample.context, sample.question, style=style)  # type: ignore[arg-type]


def chat_messages(sample: VegaSample, style: str = "official") -> list[dict[str, Any]]:
    """One user turn with the interleaved content in order: text parts and ``{"type": "image"}`` parts."""
    content: list[dict[str, Any]] = []
    for segment in split_context(sample_query(sample, style)):
        if segment.kind == "text":
            content.append({"type": "text", "text": segment.text})
        else:
            content.append({"type": "image"})
    return [{"role": "user", "content": content}]


def load_images(sample: VegaSample) -> list[Any]:
    """The sample's images as RGB PIL images, in context order."""
    from PIL import Image

    out = []
    for path in sample.images:
        with Image.open(path) as image:
            out.append(image.convert("RGB"))
    return out


def encode_prompts(
    processor: Any, samples: Sequence[VegaSample], style: str = "official"
) -> tuple[list[str], list[Any]]:
    """Chat-template prompt strings and the flat list of images they reference, in order."""
    texts, images = [], []
    for sample in samples:
        texts.append(
            processor.apply_chat_template(
                chat_messages(sample, style), add_generation_prompt=True, tokenize=False
            )
        )
        images.extend(load_images(sample))
    return texts, images


class TransformersAdapter:
    """A transformers multimodal model with its Processor; batched, left-padded greedy ``generate``."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "transformers",
        style: str = "official",
        max_new_tokens: int = 64,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.processor, self.name, self.style = model, processor, name, style
        self.max_new_tokens = max_new_tokens
        self.generation_kwargs = {"do_sample": False, **(generation_kwargs or {})}
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, dtype: str = "auto", device: str = "cpu", **kwargs: Any
    ) -> TransformersAdapter:
        """Load a local checkpoint (any ``AutoModelForImageTextToText`` model and its ``AutoProcessor``)."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        return cls(model, AutoProcessor.from_pretrained(path), name=Path(path).name, **kwargs)

    def generate(self, samples: Sequence[VegaSample]) -> list[str]:
        import torch

        texts, images = encode_prompts(self.processor, samples, self.style)
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, **self.generation_kwargs
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in decoded]


class QwenVLChatAdapter:
    """Qwen-VL-Chat as ``eval/IITC.py`` runs it: ``model.chat(tokenizer, query=..., history=None)``."""

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str = "qwen-vl-chat", style: str = "official"
    ) -> None:
        self.model, self.tokenizer, self.name, self.style = model, tokenizer, name, style

    def generate(self, samples: Sequence[VegaSample]) -> list[str]:
        out = []
        for sample in samples:
            query = sample_query(sample, self.style)
            for rel, absolute in zip(sample.image_paths, sample.images):
                query = query.replace(f"<img>{rel}</img>", f"<img>{absolute}</img>")
            response, _history = self.model.chat(self.tokenizer, query=query, history=None)
            out.append(response)
        return out


class OpenAIAdapter:
    """An OpenAI-compatible ``/chat/completions`` endpoint; ``concurrency`` requests in flight."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        style: str = "official",
        max_tokens: int = 512,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        retries: int = 2,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.style, self.max_tokens = model, style, max_tokens
        self.api_key = os.environ.get(api_key_env, "")
        self.concurrency, self.timeout_s, self.retries = concurrency, timeout_s, retries
        self.name = f"openai:{model}"

    def _content(self, sample: VegaSample) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        images = iter(sample.images)
        for segment in split_context(sample_query(sample, self.style)):
            if segment.kind == "text":
                parts.append({"type": "text", "text": segment.text})
            else:
                path = next(images)
                mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
        return parts

    def _one(self, sample: VegaSample) -> str:
        body = json.dumps({
            "model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": self._content(sample)}],
        }).encode()  # fmt: skip
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                    return json.loads(reply.read())["choices"][0]["message"]["content"] or ""
            except (OSError, KeyError, json.JSONDecodeError):
                if attempt == self.retries:
                    raise
                time.sleep(2**attempt)
        raise AssertionError("unreachable")

    def generate(self, samples: Sequence[VegaSample]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, samples))


class CallableAdapter:
    """Wrap ``fn(query, images) -> response``."""

    def __init__(
        self, fn: Callable[[str, list[Path]], str], *, name: str = "callable", style: str = "official"
    ) -> None:
        self.fn, self.name, self.style = fn, name, style

    def generate(self, samples: Sequence[VegaSample]) -> list[str]:
        return [self.fn(sample_query(s, self.style), list(s.images)) for s in samples]
