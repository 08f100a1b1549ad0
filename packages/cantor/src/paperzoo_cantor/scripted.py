"""A scripted "MLLM" and a local OpenAI-compatible test server (127.0.0.1) that serves it.

The scripted model is a deterministic stand-in that lets the whole pipeline run without weights. It
recognises the role of each call from the prompt (decision, expert, synthesis, MathVista extraction,
direct or chain-of-thought answering) and answers in the formats a real model uses. Its "perception" reads
the machine-readable strip of the fixture images (:func:`paperzoo_cantor.fixtures.decode_image`) and is
right with probability ``perception_accuracy``; without an expert's reading it picks an option at random
(seeded by the prompt), or uses a ScienceQA fixture hint that names the answer. Its numbers measure the
plumbing, never Cantor.

The server speaks ``POST /v1/chat/completions`` (text + ``image_url`` data URLs) and ``GET /v1/models``,
adds ``latency`` seconds per call, counts requests, and acts on the failure tags in a prompt:
``[timeout]`` (sleeps ``hang`` seconds), ``[refuse]`` (a refusal with ``finish_reason=content_filter``),
``[malformed]`` (a 200 response whose body is not JSON), ``[http500]`` (a server error).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from paperzoo_cantor.fixtures import decode_image
from paperzoo_cantor.modeling_cantor import MODULES

_DECISION_HEAD = "You are a advanced question-answering agent"
_SYNTHESIS_HEAD = "You are a knowledgeable and skilled information integration science expert"


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _options(prompt: str) -> list[tuple[str, str]]:
    """(letter, text) pairs of ``(A) x (B) y`` (ScienceQA) or ``(A) x\\n(B) y`` (MathVista) options."""
    block = prompt
    for marker in ("Options:", "Choices:\n"):
        if marker in prompt:
            block = prompt.rsplit(marker, 1)[1]
            break
    else:
        return []
    block = block.split("\nSupplementary information:")[0].split("\nAnswer:")[0]
    found = re.findall(r"\(([A-E])\)\s*(.*?)(?=\s*\([A-E]\)|\n|$)", block)
    return [(x, t.strip()) for x, t in found]


@dataclass
class ScriptedVLM:
    """The scripted model; ``respond(prompt, image)`` returns text or raises for a failure tag."""

    perception_accuracy: float = 0.9
    seed: int = 0

    def respond(self, prompt: str, image: bytes | None) -> str:
        if prompt.rstrip().endswith("Extracted answer:"):
            return self._extract(prompt)
        if prompt.startswith(_DECISION_HEAD):
            return self._decision(prompt, image)
        if prompt.startswith(_SYNTHESIS_HEAD):
            return self._synthesis(prompt)
        for module in MODULES:
            if prompt.startswith(module + ":"):
                return self._expert(module, prompt, image)
        return self._answer(prompt, cot="step by step" in prompt)

    # -- roles -----------------------------------------------------------------------------------
    def _decision(self, prompt: str, image: bytes | None) -> str:
        question = prompt.rsplit("Question: ", 1)[-1]
        if image is None:
            return (
                " Answer: \n1. This question does not require any modules and can be answered directly "
                "based on the information provided.\n"
            )
        return (
            " Answer: \n1. The question asks about what the image shows; the hint may not cover it.\n"
            f"2. We need TextIntel Extractor to read the value shown for: {question.splitlines()[0][:40]}\n\n"
            "Modules' tasks:\n1. TextIntel Extractor: Read the value shown in the image.\n"
            "2. ObjectQuant Locator: N/A\n3. VisionIQ Analyst: Note the background colour of the image.\n"
            "4. ChartSense Expert: Not required.\n"
        )

    def _expert(self, module: str, prompt: str, image: bytes | None) -> str:
        fact = decode_image(image) if image is not None else None
        if module == "TextIntel Extractor":
            if fact is None:
                return " No text can be read."
            if _unit(self.seed, "perceive", prompt, fact) >= self.perception_accuracy:
                fact = fact + "?"  # a misreading
            return f" The image reads: {fact}"
        return " The background is light grey."

    def _synthesis(self, prompt: str) -> str:
        read = re.findall(r"The image reads: (.*)", prompt)
        query = prompt.split("\n Question:", 1)[1].split("\nSupplementary information:", 1)[0]
        options = _options(query)
        if read and not read[-1].endswith("?"):
            fact = read[-1].strip()
            for letter, text in options:
                if text == fact:
                    return f" Rationale: The TextIntel Extractor read {fact} in the image, which is option ({letter}).\nAnswer: {letter}"
            if not options:
                return f" Rationale: The TextIntel Extractor read {fact} in the image.\nAnswer: {fact}"
        return (
            " Rationale: The supplementary information is not conclusive, so I rely on my knowledge.\nAnswer: "
            + self._guess(query, options)
        )

    def _answer(self, prompt: str, cot: bool) -> str:
        options = _options(prompt)
        guess = self._guess(prompt, options)
        if cot:
            return f"Let me think about the question step by step. The answer is {guess}."
        return guess

    def _guess(self, prompt: str, options: list[tuple[str, str]]) -> str:
        hinted = re.findall(r"The \w+ is (\w+)\.", prompt)  # a ScienceQA fixture hint names the colour
        if options:
            for letter, text in options:
                if hinted and text == hinted[0]:
                    return letter
            return options[int(_unit(self.seed, "guess", prompt) * len(options))][0]
        return str(int(_unit(self.seed, "guess", prompt) * 10))

    def _extract(self, prompt: str) -> str:
        response = prompt.rsplit("\n\nExtracted answer:", 1)[0].rsplit("\n\n", 1)[-1]
        found = re.findall(r"Answer\s*:\s*(.*)", response)
        return (found[-1] if found else response).strip().strip("().")


# ----------------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (timed out) resets its connection; that is expected here, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class ScriptedServer:
    """A threaded OpenAI-compatible server on 127.0.0.1 serving a :class:`ScriptedVLM`.

    Use as a context manager; ``base_url`` is ``http://127.0.0.1:<port>/v1``; ``requests`` counts chat
    calls (per path of failure: ``failures``).
    """

    def __init__(
        self,
        model: ScriptedVLM | None = None,
        port: int = 0,
        latency: float = 0.0,
        hang: float = 5.0,
        model_name: str = "scripted-vlm",
    ):
        self.model = model or ScriptedVLM()
        self.latency = latency
        self.hang = hang
        self.model_name = model_name
        self.requests = 0
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200,
                        json.dumps(
                            {"object": "list", "data": [{"id": server.model_name, "object": "model"}]}
                        ).encode(),
                    )
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    request = json.loads(self.rfile.read(length))
                except json.JSONDecodeError:
                    self._send(400, b'{"error": {"message": "bad json"}}')
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                status, body = server.handle(request)
                self._send(status, body)

        self._httpd = _QuietServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def handle(self, request: dict[str, Any]) -> tuple[int, bytes]:
        text, image = "", None
        for message in request.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                text += content
                continue
            for part in content or []:
                if part.get("type") == "text":
                    text += part["text"]
                elif part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    image = base64.b64decode(url.split(",", 1)[1])
        with self._lock:
            self.requests += 1
        if self.latency:
            time.sleep(self.latency)
        for tag in ("[timeout]", "[refuse]", "[malformed]", "[http500]"):
            if tag in text:
                with self._lock:
                    self.failures[tag] = self.failures.get(tag, 0) + 1
                if tag == "[timeout]":
                    time.sleep(self.hang)
                    break
                if tag == "[malformed]":
                    return 200, b"<html>upstream proxy error</html>"
                if tag == "[http500]":
                    return 500, b'{"error": {"message": "internal error", "type": "server_error"}}'
                return 200, self._completion(None, refusal="I can't help with that.", finish="content_filter")
        return 200, self._completion(self.model.respond(text, image))

    def _completion(self, content: str | None, refusal: str | None = None, finish: str = "stop") -> bytes:
        return json.dumps(
            {
                "id": f"chatcmpl-{self.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": finish,
                    }  # fmt: skip
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        ).encode()

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
