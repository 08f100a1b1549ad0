"""Model adapters: anything that turns a batch of (frames, prompt) requests into text responses.

* :class:`TransformersVideoAdapter`: any transformers model whose processor takes ``videos=`` (or
  ``images=``) and whose chat template knows ``{"type": "video"}`` content (LLaVA-OneVision, Qwen2-VL,
  Qwen2.5-VL, LLaVA-NeXT-Video, Video-LLaVA, ...). Greedy decoding, left padding, batched.
* :class:`OpenAIChatAdapter`: an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, SGLang, hosted
  APIs). Frames are sent as base64 JPEG ``image_url`` parts before the text; requests of a batch run
  concurrently; transient errors are retried with back-off.
* :class:`CallableAdapter`: a plain Python function ``request -> str`` (or ``list[request] -> list[str]``).

Frames come first and the text second in every adapter, the order VLMEvalKit uses (the Video-MME README
does not say where frames go).
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class VideoQARequest:
    """One question put to a model."""

    question_id: str
    prompt: str
    frames: np.ndarray
    """``(T, H, W, 3)`` uint8 RGB."""
    frame_indices: list[int] = field(default_factory=list)
    fps: float = 0.0
    subtitles: list[str] | None = None
    question: str = ""
    options: list[str] = field(default_factory=list)


class VideoQAModel(Protocol):
    name: str

    def generate(self, requests: Sequence[VideoQARequest]) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...


class ModelCallError(RuntimeError):
    """A model call failed for good (after retries); the message says what to check."""


# ----------------------------------------------------------------------------------------------------
# transformers
# ----------------------------------------------------------------------------------------------------


class TransformersVideoAdapter:
    """Wraps a transformers image-text-to-text model and its processor.

    Args:
        model, processor: e.g. from :meth:`from_pretrained` or the tiny builders in
            :mod:`paperzoo_videomme.tiny`.
        max_new_tokens: generation length (lmms-eval uses 16).
        frames_as: ``"video"`` (one video content item) or ``"images"`` (one image item per frame).
        skip_special_tokens, strip_tokens: how new tokens are decoded; the tiny models keep special tokens
            (their option letters are special tokens) and strip the control tokens listed.
        system_prompt: optional system message (the official protocol has none).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "transformers",
        max_new_tokens: int = 16,
        frames_as: str = "video",
        skip_special_tokens: bool = True,
        strip_tokens: Sequence[str] = (),
        system_prompt: str | None = None,
    ) -> None:
        if frames_as not in ("video", "images"):
            raise ValueError(f"frames_as must be 'video' or 'images', got {frames_as!r}.")
        self.model = model
        self.processor = processor
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.frames_as = frames_as
        self.skip_special_tokens = skip_special_tokens
        self.strip_tokens = tuple(strip_tokens)
        self.system_prompt = system_prompt
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"  # decoder-only batched generation

    @classmethod
    def from_pretrained(
        cls, path: str, *, dtype: str = "float32", device: str = "cpu", **kwargs: Any
    ) -> TransformersVideoAdapter:
        """Load a local checkpoint folder (nothing is downloaded: ``local_files_only=True``)."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(
                path, dtype=getattr(torch, dtype), local_files_only=True
            )
        except OSError as err:
            raise ModelCallError(
                f"could not load a transformers model from {path} ({err}); pass a local folder with config.json, "
                "the weights and the processor files (download it first, e.g. with `hf download`)."
            ) from err
        return cls(model.to(device).eval(), processor, name=os.path.basename(path.rstrip("/")), **kwargs)

    def _messages(self, request: VideoQARequest) -> list[dict[str, Any]]:
        visual = (
            [{"type": "video"}] if self.frames_as == "video" else [{"type": "image"}] * len(request.frames)
        )
        messages = [{"role": "user", "content": [*visual, {"type": "text", "text": request.prompt}]}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return messages

    def generate(self, requests: Sequence[VideoQARequest]) -> list[str]:
        import torch

        texts = [
            self.processor.apply_chat_template(self._messages(r), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        if self.frames_as == "video":
            visual = {"videos": [r.frames for r in requests]}
        else:
            visual = {"images": [list(r.frames) for r in requests]}
        inputs = self.processor(text=texts, **visual, return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=self.skip_special_tokens)
        cleaned = []
        for text in decoded:
            for token in self.strip_tokens:
                text = text.replace(token, " ")
            cleaned.append(" ".join(text.split()))
        return cleaned

    def describe(self) -> dict[str, Any]:
        config = getattr(self.model, "config", None)
        return {
            "adapter": "transformers",
            "name": self.name,
            "model_type": getattr(config, "model_type", None),
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "max_new_tokens": self.max_new_tokens,
            "frames_as": self.frames_as,
        }


# ----------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP
# ----------------------------------------------------------------------------------------------------


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> str:
    """Base64 JPEG of an RGB uint8 frame."""
    import cv2

    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"could not JPEG-encode a frame of shape {frame.shape}.")
    return base64.b64encode(buffer.tobytes()).decode("ascii")


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: a server on this machine, which plain http cannot expose."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False


def check_key_transport(url: str, has_key: bool) -> None:
    """Refuse to send an API key in clear text: a key goes over https, or over http only to loopback."""
    parts = urllib.parse.urlsplit(url)
    if has_key and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"refusing to send an API key over plain http to {parts.hostname!r} ({url}): anyone on the path can "
            "read it. Use an https:// URL, a server on this machine (localhost, 127.0.0.1, ::1), or no key "
            "(unset the key's environment variable)."
        )


class OpenAIChatAdapter:
    """Client of an OpenAI-compatible chat-completions server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is appended).
        model: the model name the server expects.
        api_key: the key, or ``None`` to read ``api_key_env`` (a key is optional for local servers). A key is
            sent only over https or to a loopback server (http://127.0.0.1, ::1, localhost): any other http
            URL with a key is a ``ValueError`` before any request.
        max_tokens, temperature: generation settings (greedy by default).
        concurrency: requests in flight at once.
        max_retries, backoff_s: retries on connection errors, 429 and 5xx, with exponential back-off.
        image_detail: the ``detail`` of each image part (``"low"`` keeps hosted-API costs down).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 16,
        temperature: float = 0.0,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        image_detail: str | None = None,
        jpeg_quality: int = 90,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}.")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"openai:{model}"
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        check_key_transport(self.url, bool(self.api_key))
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.image_detail = image_detail
        self.jpeg_quality = jpeg_quality

    def payload(self, request: VideoQARequest) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        for frame in request.frames:
            image: dict[str, Any] = {"url": "data:image/jpeg;base64," + encode_jpeg(frame, self.jpeg_quality)}
            if self.image_detail:
                image["detail"] = self.image_detail
            parts.append({"type": "image_url", "image_url": image})
        parts.append({"type": "text", "text": request.prompt})
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": parts}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _post(self, body: dict[str, Any], question_id: str) -> str:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    reply = json.loads(response.read().decode("utf-8"))
                content = reply["choices"][0]["message"]["content"]
                if isinstance(content, list):  # some servers return content parts
                    content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
                return content or ""
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[:300].decode('utf-8', 'replace')}"
                if err.code != 429 and err.code < 500:
                    break  # a client error does not get better by retrying
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = f"{type(err).__name__}: {err}"
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as err:
                last = f"unexpected reply ({type(err).__name__}: {err})"
                break
        raise ModelCallError(
            f"question {question_id}: {self.url} failed after {attempt + 1} attempt(s): {last}. Check that the "
            "server is up, the model name and the API key."
        )

    def generate(self, requests: Sequence[VideoQARequest]) -> list[str]:
        bodies = [(self.payload(r), r.question_id) for r in requests]
        if self.concurrency == 1 or len(bodies) == 1:
            return [self._post(body, qid) for body, qid in bodies]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            return list(pool.map(lambda item: self._post(*item), bodies))

    def describe(self) -> dict[str, Any]:
        return {"adapter": "openai", "url": self.url, "model": self.model, "max_tokens": self.max_tokens}


# ----------------------------------------------------------------------------------------------------
# A plain callable
# ----------------------------------------------------------------------------------------------------


class CallableAdapter:
    """A Python function as a model: ``fn(request) -> str``, or with ``batched=True``
    ``fn(list[request]) -> list[str]``."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, batched: bool = False) -> None:
        self.fn = fn
        self.batched = batched
        self.name = name or getattr(fn, "__name__", "callable")

    @classmethod
    def from_path(cls, spec: str, **kwargs: Any) -> CallableAdapter:
        """``"package.module:function"``."""
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise ValueError(f"a callable model is given as 'module:function', got {spec!r}.")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import {spec!r}: {err}") from err
        return cls(fn, name=spec, **kwargs)

    def generate(self, requests: Sequence[VideoQARequest]) -> list[str]:
        if self.batched:
            out = list(self.fn(list(requests)))
            if len(out) != len(requests):
                raise ModelCallError(
                    f"{self.name} returned {len(out)} responses for {len(requests)} requests."
                )
            return [str(o) for o in out]
        return [str(self.fn(r)) for r in requests]

    def describe(self) -> dict[str, Any]:
        return {"adapter": "callable", "name": self.name}


def subtitle_reader(request: VideoQARequest) -> str:
    """A blind baseline that reads only the subtitles: the option whose text appears in them, else A.

    On the synthetic set it answers the narration ("Information Synopsis") questions whenever the
    narration cue is among the subtitles the protocol selected, and guesses otherwise, so its score
    measures how much subtitle text each alignment rule lets through. It never looks at the frames.
    """
    text = " ".join(request.subtitles or []).lower()
    words = set(text.replace(".", " ").replace(",", " ").split())
    for option in request.options:
        letter, _, value = option.partition(". ")
        if value and value.lower() in words:
            return f"The best answer is {letter}."
    return "The best answer is A."
