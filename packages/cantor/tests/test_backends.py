"""Backends: the API-key transport guard, the OpenAI client against the local scripted server (images as
data URLs, refusals, malformed bodies, server errors, timeouts), retries, cache, rate limit, concurrency."""

from __future__ import annotations

import asyncio
import time

import pytest
from paperzoo_cantor.backends import (
    CallableBackend,
    OpenAIBackend,
    RateLimiter,
    ResilientBackend,
    ResponseCache,
    check_key_transport,
    data_url,
    is_loopback,
)
from paperzoo_cantor.fixtures import decode_image, encode_image
from paperzoo_cantor.modeling_cantor import CallFailed


@pytest.mark.parametrize(
    ("url", "key", "ok"),
    [
        ("http://10.0.0.5:8000/v1", "sk-secret", False),
        ("http://api.example.com/v1", "sk-secret", False),
        ("http://127.0.0.1:8000/v1", "sk-secret", True),
        ("http://127.8.9.1:8000/v1", "sk-secret", True),
        ("http://[::1]:8000/v1", "sk-secret", True),
        ("http://localhost:8000/v1", "sk-secret", True),
        ("https://api.example.com/v1", "sk-secret", True),
        ("http://10.0.0.5:8000/v1", None, True),  # no key: nothing to leak
        ("http://10.0.0.5:8000/v1", "", True),
        ("ftp://example.com/v1", None, False),
    ],
)
def test_key_transport_guard(url, key, ok):
    if ok:
        check_key_transport(url, key)
    else:
        with pytest.raises(ValueError):
            check_key_transport(url, key)


def test_key_from_the_environment_is_guarded_too(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret")
    with pytest.raises(ValueError, match="plain http"):
        OpenAIBackend("m", "http://192.168.1.20:8000/v1", api_key_env="MY_KEY")
    monkeypatch.delenv("MY_KEY")
    OpenAIBackend("m", "http://192.168.1.20:8000/v1", api_key_env="MY_KEY")  # no key: allowed


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("127.0.0.1.example.com") and not is_loopback("10.0.0.1") and not is_loopback(None)


def test_image_round_trip_through_a_data_url():
    png = encode_image("42")
    assert data_url(png).startswith("data:image/png;base64,")
    assert decode_image(png) == "42"
    assert decode_image(b"not an image") is None


def _openai(server, **kwargs):
    return OpenAIBackend("scripted-vlm", server.base_url, api_key="sk-local", **kwargs)


def test_openai_backend_against_the_scripted_server(scripted_server):
    backend = _openai(scripted_server)
    reply = asyncio.run(backend.generate("TextIntel Extractor: Read the value.", encode_image("17")))
    assert reply in (" The image reads: 17", " The image reads: 17?")
    assert scripted_server.requests == 1


@pytest.mark.parametrize(
    ("tag", "kind"), [("[refuse]", "refusal"), ("[malformed]", "malformed"), ("[http500]", "error")]
)
def test_failures_are_classified(scripted_server, tag, kind):
    backend = ResilientBackend(_openai(scripted_server), retries=2, backoff=0.01)
    with pytest.raises(CallFailed) as caught:
        asyncio.run(backend.generate(f"Question {tag}", None))
    assert caught.value.kind == kind
    # only the transient server error is retried
    assert scripted_server.requests == (3 if tag == "[http500]" else 1)
    assert backend.stats.failures == {kind: 1}


def test_timeout_is_retried_then_recorded(scripted_server):
    backend = ResilientBackend(_openai(scripted_server), timeout=0.3, retries=1, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(CallFailed) as caught:
        asyncio.run(backend.generate("Question [timeout]", None))
    assert caught.value.kind == "timeout" and "after 2 tries" in str(caught.value)
    assert time.monotonic() - start < 2.5
    assert scripted_server.requests == 2


def test_cache_makes_a_rerun_free(tmp_path, scripted_server):
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = ResilientBackend(_openai(scripted_server), cache=cache)
    a = asyncio.run(first.generate("What is 2+2? (A) 4 (B) 5", None))
    cache.close()
    cache = ResponseCache(tmp_path / "c.sqlite")  # a new process would open it like this
    second = ResilientBackend(_openai(scripted_server), cache=cache)
    assert asyncio.run(second.generate("What is 2+2? (A) 4 (B) 5", None)) == a
    assert scripted_server.requests == 1 and second.stats.cache_hits == 1
    # a different image, model setting or prompt is a different key
    keys = {
        ResponseCache.key("m", "p", None),
        ResponseCache.key("m", "p", b"x"),
        ResponseCache.key("m", "p", None, {"temperature": 0.7}),
        ResponseCache.key("m2", "p", None),
        ResponseCache.key("m", "p2", None),
    }
    assert len(keys) == 5


def test_failed_calls_are_not_cached(tmp_path):
    calls = []

    def flaky(prompt, image):
        calls.append(prompt)
        if len(calls) == 1:
            raise CallFailed("refusal", "no")
        return "fine"

    backend = ResilientBackend(CallableBackend(flaky), cache=ResponseCache(tmp_path / "c.sqlite"))
    with pytest.raises(CallFailed):
        asyncio.run(backend.generate("p", None))
    assert asyncio.run(backend.generate("p", None)) == "fine"
    assert asyncio.run(backend.generate("p", None)) == "fine" and len(calls) == 2


def test_concurrency_is_bounded():
    state = {"now": 0, "peak": 0}

    async def slow(prompt, image):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return prompt

    backend = ResilientBackend(CallableBackend(slow), concurrency=3)

    async def many():
        return await asyncio.gather(*(backend.generate(str(i), None) for i in range(12)))

    assert asyncio.run(many()) == [str(i) for i in range(12)]
    assert state["peak"] == 3


def test_rate_limit_spaces_call_starts():
    async def starts():
        limiter = RateLimiter(20.0)  # one start per 50 ms
        stamps = []

        async def one():
            await limiter.wait()
            stamps.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(5)))
        return stamps

    stamps = sorted(asyncio.run(starts()))
    assert stamps[-1] - stamps[0] >= 4 * 0.05 * 0.9


def test_callable_backend_checks_its_output():
    with pytest.raises(CallFailed, match="not str"):
        asyncio.run(CallableBackend(lambda p, i: None).generate("p", None))
    backend = CallableBackend.from_path("paperzoo_cantor.scripted:_unit")
    assert backend.name == "callable:paperzoo_cantor.scripted:_unit"
    with pytest.raises(ValueError, match="module:function"):
        CallableBackend.from_path("nocolon")
