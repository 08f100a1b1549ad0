"""Model adapters: two transformers families (tiny random configs built offline), the OpenAI-compatible
client against a local test server on 127.0.0.1, and plain callables."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from paperzoo_videomme.adapters import (
    CallableAdapter,
    ModelCallError,
    OpenAIChatAdapter,
    VideoQARequest,
    subtitle_reader,
)
from paperzoo_videomme.configuration import ProtocolConfig
from paperzoo_videomme.data import load_videomme
from paperzoo_videomme.evaluate import run_evaluation
from paperzoo_videomme.modeling_videomme import build_prompt


def _requests(n: int = 3, frames: int = 4) -> list[VideoQARequest]:
    rng = np.random.default_rng(0)
    options = ["A. circle", "B. square", "C. ring", "D. cross"]
    return [
        VideoQARequest(
            question_id=f"q{i}",
            prompt=build_prompt(
                "official", "Which shape appears first in the video?" + " really" * i, options
            ),
            frames=rng.integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8),
            options=options,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["tiny_qwen2_vl", "tiny_llava_onevision"])
def test_tiny_transformers_families_generate_in_batches(kind: str) -> None:
    from paperzoo_videomme.tiny import CONTROL_TOKENS, tiny_adapter

    adapter = tiny_adapter(kind, seed=0, max_new_tokens=6)
    requests = _requests(3)
    batched = adapter.generate(requests)  # prompts of different lengths: left padding
    assert len(batched) == 3 and all(isinstance(r, str) and r for r in batched)
    assert not any(token in text for text in batched for token in CONTROL_TOKENS)
    assert adapter.generate(requests[:1]) == batched[:1]  # greedy: batching does not change an answer
    described = adapter.describe()
    assert described["parameters"] < 200_000 and described["model_type"] in ("qwen2_vl", "llava_onevision")
    images = tiny_adapter(kind, seed=0, max_new_tokens=2, frames_as="images").generate(_requests(1, frames=2))
    assert len(images) == 1


class _Server:
    """A local OpenAI-compatible stub: checks the request and answers with the number of images it got."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail_next = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.bodies.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if owner.fail_next:
                    owner.fail_next -= 1
                    self._send(503, {"error": "busy"})
                elif body["model"] == "unknown":
                    self._send(404, {"error": "no such model"})
                else:
                    parts = body["messages"][0]["content"]
                    images = sum(p["type"] == "image_url" for p in parts)
                    self._send(200, {"choices": [{"message": {"content": f"B ({images} images)"}}]})

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_client_against_a_local_server() -> None:
    with _Server() as server:
        client = OpenAIChatAdapter(
            server.url, "served-model", api_key="test-key", concurrency=3, backoff_s=0.01
        )
        requests = _requests(3, frames=5)
        assert client.generate(requests) == ["B (5 images)"] * 3
        body = server.bodies[0]
        assert body["path"] == "/v1/chat/completions" and body["auth"] == "Bearer test-key"
        assert body["model"] == "served-model" and body["temperature"] == 0.0 and body["max_tokens"] == 16
        parts = body["messages"][0]["content"]
        assert [p["type"] for p in parts] == ["image_url"] * 5 + ["text"]  # frames first, then the prompt
        assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert sorted(b["messages"][0]["content"][-1]["text"] for b in server.bodies) == sorted(
            r.prompt for r in requests
        )

        server.fail_next = 2  # transient errors are retried with back-off
        assert client.generate(requests[:1]) == ["B (5 images)"]
        lost = OpenAIChatAdapter(server.url, "unknown", backoff_s=0.01)
        before = len(server.bodies)
        with pytest.raises(ModelCallError, match="HTTP 404.*no such model"):
            lost.generate(requests[:1])
        assert len(server.bodies) == before + 1  # a client error is not retried


def test_openai_client_in_a_run_with_an_unreachable_server(synthetic_root: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = OpenAIChatAdapter(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.01, timeout_s=2)
    dataset = load_videomme(synthetic_root, limit_videos=1)
    summary = run_evaluation(dataset, dead, ProtocolConfig(num_frames=2), tmp_path, progress=False)
    assert summary.answered_now == 0 and [e.kind for e in summary.errors] == ["model_error"] * 3
    assert "Check that the server is up" in summary.errors[0].message


def test_callables() -> None:
    request = _requests(1)[0]
    assert CallableAdapter(lambda r: "C").generate([request]) == ["C"]
    batched = CallableAdapter(lambda rs: ["D"] * len(rs), batched=True)
    assert batched.generate(_requests(2)) == ["D", "D"]
    loaded = CallableAdapter.from_path("paperzoo_videomme.adapters:subtitle_reader")
    request.subtitles = ["Behind the screen there is a ring."]
    assert loaded.generate([request]) == ["The best answer is C."]
    request.subtitles = None
    assert subtitle_reader(request) == "The best answer is A."
    with pytest.raises(ValueError, match="module:function"):
        CallableAdapter.from_path("no_colon")
    with pytest.raises(ModelCallError, match="returned 1 responses for 2"):
        CallableAdapter(lambda rs: ["A"], batched=True).generate(_requests(2))


@pytest.mark.gpu
def test_tiny_model_on_cuda() -> None:
    """On a GPU runner: the transformers adapter moves the inputs to the model's device."""
    from paperzoo_videomme.tiny import tiny_adapter

    gpu = tiny_adapter("tiny_llava_onevision", seed=0, max_new_tokens=4)
    gpu.model.to("cuda")
    out = gpu.generate(_requests(2))
    assert len(out) == 2 and all(isinstance(text, str) and text for text in out)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8000/v1",
        "http://api.example.com/v1",
        "http://128.0.0.1/v1",
        "http://localhost.evil.com/v1",
    ],
)
def test_a_key_over_plain_http_to_another_host_is_refused_before_any_request(url, monkeypatch) -> None:
    def no_request(*args, **kwargs):
        raise AssertionError("a request was sent")

    monkeypatch.setattr("urllib.request.urlopen", no_request)
    with pytest.raises(ValueError, match="refusing to send an API key over plain http"):
        OpenAIChatAdapter(url, "m", api_key="secret")
    monkeypatch.setenv("VIDEOMME_TEST_KEY", "secret")  # a key from the environment is refused too
    with pytest.raises(ValueError, match="over plain http"):
        OpenAIChatAdapter(url, "m", api_key_env="VIDEOMME_TEST_KEY")
    monkeypatch.delenv("VIDEOMME_TEST_KEY")
    assert OpenAIChatAdapter(url, "m", api_key_env="VIDEOMME_TEST_KEY").api_key == ""  # no key: allowed


@pytest.mark.parametrize(
    "url",
    ["https://api.example.com/v1", "https://10.0.0.5/v1", "http://127.0.0.1:8000/v1", "http://127.8.9.10/v1",
     "http://[::1]:8000/v1", "http://localhost:8000/v1", "http://LOCALHOST/v1"],
)  # fmt: skip
def test_a_key_over_https_or_to_loopback_is_allowed(url) -> None:
    assert OpenAIChatAdapter(url, "m", api_key="secret").api_key == "secret"
