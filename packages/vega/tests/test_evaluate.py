"""The resumable runner and the adapters (tiny transformers model, OpenAI-compatible endpoint, callable)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from paperzoo_vega.adapters import CallableAdapter, OpenAIAdapter, TransformersAdapter
from paperzoo_vega.evaluate import run_evaluation
from paperzoo_vega.scoring import read_output_file


class Scripted:
    """Answers with the reference for every other sample; can be told to die after n samples."""

    name = "scripted"

    def __init__(self, die_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.die_after = die_after

    def generate(self, samples):
        out = []
        for s in samples:
            if self.die_after is not None and len(self.seen) >= self.die_after:
                raise KeyboardInterrupt("killed")
            self.seen.append(s.key)
            out.append(s.answer if len(self.seen) % 2 else "no idea")
        return out


def test_killed_run_resumes_without_redoing(tiny_release, tmp_path: Path) -> None:
    iitc = tiny_release[0]
    n = len(iitc)
    first = Scripted(die_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(iitc, first, tmp_path, batch_size=2, progress=False)
    assert len(read_output_file(tmp_path / "responses.jsonl")) == 4  # two full batches were written
    with (tmp_path / "responses.jsonl").open("a") as f:  # a torn line, as a kill mid-write leaves
        f.write('{"id": "x", "respo')
    second = Scripted()
    summary = run_evaluation(iitc, second, tmp_path, batch_size=2, progress=False)
    assert second.seen == [s.key for s in iitc.samples[4:]]
    assert (summary.resumed, summary.generated) == (4, n - 4)
    lines = read_output_file(tmp_path / "responses.jsonl")
    assert len(lines) == n and len({r["vega_key"] for r in lines}) == n
    # the reference for samples 1,3,5.. of the first run (0,2 of 0-3) and of the second run
    expected_right = sum(1 for i in range(n) if (i < 4 and i % 2 == 0) or (i >= 4 and (i - 4) % 2 == 0))
    assert summary.scores["picture_acc"] == pytest.approx(expected_right / n)
    third = Scripted()
    assert run_evaluation(iitc, third, tmp_path, progress=False).generated == 0 and third.seen == []
    assert json.loads((tmp_path / "scores.json").read_text())["n"] == n


def test_tiny_transformers_batched_equals_single(tiny_release) -> None:
    from paperzoo_vega.tiny import build_tiny_qwen2_vl, corpus_vocabulary

    iitc, ita = tiny_release
    model, processor = build_tiny_qwen2_vl(corpus_vocabulary(list(iitc) + list(ita)), seed=1)
    adapter = TransformersAdapter(model.eval(), processor, max_new_tokens=6)
    samples = [iitc.samples[0], ita.samples[0], iitc.samples[1]]  # different lengths: left padding matters
    batched = adapter.generate(samples)
    single = [adapter.generate([s])[0] for s in samples]
    assert batched == single
    assert all(isinstance(r, str) and "<|im_end|>" not in r for r in batched)


class _Handler(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        parts = body["messages"][0]["content"]
        n_images = sum(p["type"] == "image_url" for p in parts)
        reply = json.dumps({"choices": [{"message": {"content": f"[Picture {n_images}] seen"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def test_openai_adapter_sends_interleaved_images(tiny_release) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        adapter = OpenAIAdapter(f"http://127.0.0.1:{server.server_port}/v1", "m", concurrency=3)
        samples = tiny_release[0].samples[:4]
        responses = adapter.generate(samples)
    finally:
        server.shutdown()
    assert responses == [f"[Picture {len(s.images)}] seen" for s in samples]
    body = next(b for b in _Handler.bodies if samples[0].question in b["messages"][0]["content"][-1]["text"])
    parts = body["messages"][0]["content"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert (
        images[0] == "data:image/png;base64," + base64.b64encode(samples[0].images[0].read_bytes()).decode()
    )
    assert parts[0]["text"].endswith("Picture 1: ") and body["temperature"] == 0


def test_callable_adapter_gets_native_query(tiny_release) -> None:
    sample = tiny_release[0].samples[0]
    adapter = CallableAdapter(lambda query, images: f"{len(images)} {query.count('<img>')}")
    assert adapter.generate([sample]) == [f"{len(sample.images)} {len(sample.images)}"]
