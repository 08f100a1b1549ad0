"""Backends: one async ``generate(prompt, image) -> text`` over any model.

- :class:`OpenAIBackend`: any OpenAI-compatible chat-completions server (vLLM, SGLang, hosted services)
  through the official ``openai`` client; images go as base64 data URLs. An API key is never sent over
  plain http except to a loopback address.
- :class:`TransformersBackend`: any transformers image-text-to-text model through its Processor, chat
  template and ``generate``.
- :class:`CallableBackend`: a plain Python function ``f(prompt, image_bytes_or_None) -> str``.
- :class:`ScriptedBackend`: canned answers keyed by prompt hash (tests).

:class:`ResilientBackend` wraps any of them with a timeout, retries with exponential backoff, a rate limit,
bounded concurrency and a :class:`ResponseCache` (SQLite, keyed by model, prompt, image hash and generation
settings), so a rerun or a resumed run costs no call for anything already answered. Failed calls raise
:class:`~paperzoo_cantor.modeling_cantor.CallFailed` with kind ``timeout``, ``refusal``, ``malformed`` or
``error``; they are never cached.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import io
import ipaddress
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from paperzoo_cantor.modeling_cantor import CallFailed


class Backend(Protocol):
    """What the pipeline needs from a model."""

    name: str
    """Identifies the model in cache keys (e.g. ``openai:Qwen2-VL-7B@http://...``)."""

    async def generate(self, prompt: str, image: bytes | None) -> str: ...


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def image_mime(image: bytes) -> str:
    if image.startswith(b"\x89PNG"):
        return "image/png"
    if image.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if image[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def data_url(image: bytes) -> str:
    return f"data:{image_mime(image)};base64,{base64.b64encode(image).decode('ascii')}"


# ----------------------------------------------------------------------------------------------------
# Simple backends
# ----------------------------------------------------------------------------------------------------


@dataclass
class CallableBackend:
    """Wraps ``fn(prompt, image_bytes_or_None) -> str`` (sync or async)."""

    fn: Callable[[str, bytes | None], Any]
    name: str = "callable"

    async def generate(self, prompt: str, image: bytes | None) -> str:
        result = self.fn(prompt, image)
        if asyncio.iscoroutine(result):
            result = await result
        if not isinstance(result, str):
            raise CallFailed("malformed", f"callable returned {type(result).__name__}, not str")
        return result

    @classmethod
    def from_path(cls, spec: str) -> CallableBackend:
        """``package.module:function``."""
        module, sep, attr = spec.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"a callable backend is 'package.module:function', got {spec!r}")
        fn = getattr(importlib.import_module(module), attr)
        return cls(fn=fn, name=f"callable:{spec}")


@dataclass
class ScriptedBackend:
    """Canned responses keyed by ``sha256(prompt)`` (or by a function of prompt and image).

    ``calls`` records every (prompt, image) in order, so tests can count and inspect calls. A missing
    prompt raises ``KeyError`` (a test that forgot a script fails loudly).
    """

    responses: Mapping[str, str] = field(default_factory=dict)
    fallback: Callable[[str, bytes | None], str] | None = None
    name: str = "scripted"
    calls: list[tuple[str, bytes | None]] = field(default_factory=list)

    @classmethod
    def from_prompts(cls, pairs: Mapping[str, str], **kwargs: Any) -> ScriptedBackend:
        return cls(responses={sha256(p): r for p, r in pairs.items()}, **kwargs)

    async def generate(self, prompt: str, image: bytes | None) -> str:
        self.calls.append((prompt, image))
        key = sha256(prompt)
        if key in self.responses:
            return self.responses[key]
        if self.fallback is not None:
            return self.fallback(prompt, image)
        raise KeyError(f"no scripted response for prompt starting {prompt[:60]!r}")


# ----------------------------------------------------------------------------------------------------
# OpenAI-compatible servers
# ----------------------------------------------------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_key_transport(base_url: str, api_key: str | None) -> None:
    """Refuses to send an API key over plain http to anything but a loopback address."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--base-url must start with http:// or https://, got {base_url!r}")
    if api_key and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"refusing to send an API key over plain http to {parts.hostname}: use https:// or a loopback "
            "address (127.0.0.1, ::1, localhost), or unset the key for a server that needs none"
        )


NO_KEY = "EMPTY"
"""Sent as the bearer token when no key is configured (vLLM's convention); never a secret."""


class OpenAIBackend:
    """An OpenAI-compatible chat-completions server through the official ``openai`` client.

    The key comes from ``api_key`` or the environment variable ``api_key_env`` (default
    ``OPENAI_API_KEY``); :func:`check_key_transport` runs before any client exists. The client's own
    retries are off: :class:`ResilientBackend` retries, so a failure is classified once.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        timeout: float = 120.0,
        system_prompt: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ):
        key = api_key if api_key is not None else (os.environ.get(api_key_env) if api_key_env else None)
        check_key_transport(base_url, key)
        import openai  # light import at construction only

        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.name = f"openai:{model}"  # the cache key: the same model behind another URL (or port) is a hit
        self.settings = {"temperature": temperature, "max_tokens": max_tokens, "system": system_prompt,
                         "extra_body": self.extra_body}  # fmt: skip
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=key or NO_KEY, timeout=timeout, max_retries=0
        )

    def messages(self, prompt: str, image: bytes | None) -> list[dict[str, Any]]:
        """One user turn: the text (as in the release, prompt then image) and the image as a data URL."""
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": data_url(image)}})
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": content})
        return messages

    async def generate(self, prompt: str, image: bytes | None) -> str:
        openai = self._openai
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=self.messages(prompt, image),  # type: ignore[arg-type]
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                extra_body=self.extra_body or None,
            )
        except openai.APITimeoutError as error:
            raise CallFailed("timeout", str(error) or "request timed out") from error
        except openai.APIResponseValidationError as error:
            raise CallFailed("malformed", f"response failed validation: {error}") from error
        except openai.APIStatusError as error:
            kind = (
                "transient" if error.status_code in (408, 409, 429) or error.status_code >= 500 else "error"
            )
            raise CallFailed(kind, f"HTTP {error.status_code}: {error.message}") from error
        except openai.APIConnectionError as error:
            raise CallFailed("transient", f"connection failed: {error}") from error
        except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as error:
            raise CallFailed("malformed", f"unreadable response: {error}") from error
        return self.text_of(completion)

    async def aclose(self) -> None:
        await self._client.close()

    @staticmethod
    def text_of(completion: Any) -> str:
        """The message text; a refusal (``message.refusal`` or ``finish_reason=content_filter``) or a
        response without choices/content raises :class:`CallFailed`."""
        choices = getattr(completion, "choices", None)
        if not choices or not isinstance(choices, list):
            raise CallFailed("malformed", "response has no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise CallFailed("refusal", str(refusal))
        if getattr(choice, "finish_reason", None) == "content_filter":
            raise CallFailed("refusal", "finish_reason=content_filter")
        content = getattr(message, "content", None)
        if not isinstance(content, str):
            raise CallFailed("malformed", "message has no text content")
        return content


# ----------------------------------------------------------------------------------------------------
# transformers
# ----------------------------------------------------------------------------------------------------


class TransformersBackend:
    """Any transformers image-text-to-text model (LLaVA, Qwen2-VL, Idefics3, ...), greedy by default.

    Loads ``AutoProcessor`` and ``AutoModelForImageTextToText`` from a local path; the prompt goes through
    the processor's chat template as one user turn with the image first (the common layout of these
    templates). Calls run one at a time in a worker thread.
    """

    def __init__(
        self,
        path: str | Path,
        max_new_tokens: int = 512,
        device: str | None = None,
        dtype: str = "auto",
        generate_kwargs: Mapping[str, Any] | None = None,
        model: Any = None,
        processor: Any = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.name = f"transformers:{Path(path).name if path else 'in-memory'}"
        self._torch = torch
        self.processor = processor if processor is not None else AutoProcessor.from_pretrained(str(path))
        if model is None:
            model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = {"do_sample": False, **dict(generate_kwargs or {})}
        self.settings = {"max_new_tokens": max_new_tokens, **self.generate_kwargs}
        self._lock = threading.Lock()

    def _generate_sync(self, prompt: str, image: bytes | None) -> str:
        from PIL import Image

        content: list[dict[str, Any]] = []
        images = None
        if image is not None:
            content.append({"type": "image"})
            images = [Image.open(io.BytesIO(image)).convert("RGB")]
        content.append({"type": "text", "text": prompt})
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=images, return_tensors="pt").to(self.device)
        with self._lock, self._torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, **self.generate_kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    async def generate(self, prompt: str, image: bytes | None) -> str:
        return await asyncio.to_thread(self._generate_sync, prompt, image)


# ----------------------------------------------------------------------------------------------------
# Cache, rate limit, retries
# ----------------------------------------------------------------------------------------------------


class ResponseCache:
    """SQLite cache of successful responses, keyed by model, prompt, image hash and settings.

    Every put is committed at once (WAL journal), so a killed run keeps every answer it received.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT, created REAL)"
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, prompt: str, image: bytes | None, settings: Mapping[str, Any] | None = None) -> str:
        payload = json.dumps(
            {
                "model": model,
                "prompt": sha256(prompt),
                "image": sha256(image) if image is not None else None,
                "settings": dict(settings or {}),
            },  # fmt: skip
            sort_keys=True,
        )
        return sha256(payload)

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, model: str, response: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", (key, model, response, time.time())
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RateLimiter:
    """At most ``rate`` call starts per second (evenly spaced); ``None`` or 0 means no limit."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class CallStats:
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)


RETRYABLE = ("timeout", "transient")


class ResilientBackend:
    """A backend with a per-call timeout, retries with exponential backoff and jitter, a rate limit,
    at most ``concurrency`` calls in flight and a response cache.

    Timeouts and transient failures (connection errors, HTTP 408/409/429/5xx) are retried ``retries``
    times; refusals, malformed responses and other errors are not (the same call would fail again). After
    the last try a transient failure is reported as ``error`` and a timeout as ``timeout``. Any other
    exception of the wrapped backend (a callable that raises, a local model out of memory) is a failed
    call of kind ``error`` with the exception's type and message, so one problem fails and the run goes on.
    """

    def __init__(
        self,
        inner: Backend,
        cache: ResponseCache | None = None,
        timeout: float | None = 120.0,
        retries: int = 2,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        rate_limit: float | None = None,
        concurrency: int = 8,
        settings: Mapping[str, Any] | None = None,
        seed: int = 0,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.inner = inner
        self.name = inner.name
        self.cache = cache
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.settings = dict(settings if settings is not None else getattr(inner, "settings", {}) or {})
        self.stats = CallStats()
        self._limiter = RateLimiter(rate_limit)
        self._concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._random = random.Random(seed)

    def _sem(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._concurrency)
        return self._semaphore

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    def cache_key(self, prompt: str, image: bytes | None) -> str:
        return ResponseCache.key(self.name, prompt, image, self.settings)

    async def generate(self, prompt: str, image: bytes | None) -> str:
        key = self.cache_key(prompt, image)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return hit
        attempt = 0
        while True:
            try:
                async with self._sem():
                    await self._limiter.wait()
                    self.stats.calls += 1
                    if self.timeout:
                        text = await asyncio.wait_for(self.inner.generate(prompt, image), self.timeout)
                    else:
                        text = await self.inner.generate(prompt, image)
                break
            except asyncio.TimeoutError:
                failure = CallFailed("timeout", f"no response within {self.timeout:g} s")
            except CallFailed as error:
                failure = error
            except Exception as error:  # a callable or local model raised: this call fails, the run goes on
                failure = CallFailed("error", f"{type(error).__name__}: {error}")
            if failure.kind not in RETRYABLE or attempt >= self.retries:
                kind = "error" if failure.kind == "transient" else failure.kind
                self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1
                raise CallFailed(kind, f"{failure} (after {attempt + 1} tries)" if attempt else str(failure))
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + self._random.random() / 2)
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)
        if self.cache is not None:
            self.cache.put(key, self.name, text)
        return text
