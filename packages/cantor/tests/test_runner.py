"""The runner: failures recorded per problem while the run goes on; a killed run resumes from its records
and cache with no lost problem and no call paid twice (beyond the one in flight at the kill)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paperzoo_cantor.backends import CallableBackend
from paperzoo_cantor.configuration import BackendConfig, EvalConfig
from paperzoo_cantor.evaluate import RECORDS, read_records, run_eval
from paperzoo_cantor.fixtures import write_mathvista, write_scienceqa
from paperzoo_cantor.modeling_cantor import CallFailed, load_prompts
from paperzoo_cantor.scripted import ScriptedServer
from paperzoo_cantor.trace_html import write_pages

FAILURES = {1: "[timeout]", 2: "[refuse]", 3: "[malformed]", 5: "[http500]"}


def _cfg(root, base_url, timeout=0.5, **kwargs):
    backend = BackendConfig(
        kind="openai", model="scripted-vlm", base_url=base_url, timeout=timeout, retries=1, backoff=0.01
    )
    return EvalConfig(benchmark="scienceqa", data_root=str(root), backend=backend, **kwargs)


def test_failures_are_recorded_per_problem_and_the_run_goes_on(tmp_path):
    root = write_scienceqa(tmp_path / "sqa", n=8, failures=FAILURES)
    with ScriptedServer(hang=2.0) as server:
        summary = run_eval(_cfg(root, server.base_url), tmp_path / "run", progress=False)
    records = read_records(tmp_path / "run" / RECORDS)
    assert len(records) == 8
    status = {pid: r["status"] for pid, r in records.items()}
    assert status["1001"] == "timeout" and status["1002"] == "refusal"
    assert status["1003"] == "malformed" and status["1005"] == "error"
    assert [status[p] for p in ("1000", "1004", "1006", "1007")] == ["ok"] * 4
    assert summary["status"] == {"ok": 4, "timeout": 1, "refusal": 1, "malformed": 1, "error": 1}
    refused = records["1002"]
    assert refused["errors"][0].startswith("decision: refusal")
    assert (
        refused["trace"]["decision"] == " \n"
    )  # the release's " " for a failed call (+ split_task's newline)
    assert summary["run"]["failed_calls"]["timeout"] >= 1
    # every problem is scored (a failed one through the seeded random fallback)
    assert summary["scores"]["option_match"]["Avg"] >= 0
    index = write_pages(tmp_path / "run")
    page = (index.parent / "1002.html").read_text()
    assert "refusal" in page and "decision" in page


def test_an_in_process_backend_that_hangs_refuses_returns_junk_or_raises_fails_one_problem(tmp_path):
    """The same per-problem recording for a callable / local-model backend (no server): a call past the
    timeout, a refusal, a reply that is not text, an exception inside the model, and a synthesis reply
    without the "Answer:" field each fail their problem only; every problem is recorded and scored."""
    root = write_scienceqa(
        tmp_path / "sqa",
        n=6,
        failures={1: "[slow]", 2: "[refuse]", 3: "[junk]", 4: "[crash]", 5: "[noanswer]"},
    )
    decision_prompt = load_prompts().decision_prompt

    async def model(prompt, image):
        if "[slow]" in prompt:
            await asyncio.sleep(5)
        if "[refuse]" in prompt:
            raise CallFailed("refusal", "blocked by the safety filter")
        if "[junk]" in prompt:
            return {"choices": []}
        if "[crash]" in prompt:
            raise RuntimeError("CUDA out of memory")
        if prompt.startswith(decision_prompt):
            return "Answer: look at it\n\nModules' tasks:\n1. VisionIQ Analyst: Which colour is it?\n"
        if prompt.startswith("VisionIQ Analyst: "):
            return " It is the first option."
        if "[noanswer]" in prompt:
            return "I cannot decide."
        return "Rationale: the expert says so.\nAnswer: (A)"

    cfg = EvalConfig(
        benchmark="scienceqa", data_root=str(root),
        backend=BackendConfig(kind="callable", model="tests:model", timeout=0.3, retries=0),
    )  # fmt: skip
    summary = run_eval(cfg, tmp_path / "run", inner=CallableBackend(model), progress=False)
    records = read_records(tmp_path / "run" / RECORDS)
    assert {pid: r["status"] for pid, r in records.items()} == {
        "1000": "ok", "1001": "timeout", "1002": "refusal", "1003": "malformed", "1004": "error",
        "1005": "malformed",
    }  # fmt: skip
    # the tag is in the query, so the decision and the synthesis call of a tagged problem fail
    assert records["1001"]["errors"] == [
        "decision: timeout: no response within 0.3 s",
        "synthesis: timeout: no response within 0.3 s",
    ]
    assert records["1002"]["errors"][0] == "decision: refusal: blocked by the safety filter"
    assert records["1003"]["errors"][0] == "decision: malformed: callable returned dict, not str"
    assert records["1004"]["errors"][0] == "decision: error: RuntimeError: CUDA out of memory"
    assert records["1005"]["errors"] == ["synthesis: malformed: no 'Answer:' field in the response"]
    # a failed problem still ran its pipeline: the failed decision stands as " " and has no sub-task
    assert records["1004"]["trace"]["sub-tasks"] == [] and records["1004"]["response"] == " "
    assert records["1005"]["trace"]["sub-answers"] == [" It is the first option."]
    assert records["1000"]["response"] == "Rationale: the expert says so.\nAnswer: (A)"
    assert summary["recorded"] == 6 and summary["status"] == {
        "ok": 1,
        "timeout": 1,
        "refusal": 1,
        "malformed": 2,
        "error": 1,
    }
    assert all(r["prediction"]["option_match"] in (0, 1, 2) for r in records.values())  # each one scored
    assert summary["run"]["failed_calls"] == {"timeout": 2, "refusal": 2, "malformed": 2, "error": 2}


def test_retry_failed_reruns_only_failed_problems(tmp_path):
    root = write_scienceqa(tmp_path / "sqa", n=4, failures={2: "[refuse]"})
    with ScriptedServer() as server:
        run_eval(_cfg(root, server.base_url), tmp_path / "run", progress=False)
        before = server.requests
        again = run_eval(_cfg(root, server.base_url, retry_failed=True), tmp_path / "run", progress=False)
        assert again["run"]["new_items"] == 1
        # the refused decision and synthesis calls are tried again; nothing else is asked
        assert server.requests - before == 2


def test_mathvista_run_uses_the_llm_extraction(tmp_path):
    root = write_mathvista(tmp_path / "mv", n=5)
    with ScriptedServer() as server:
        cfg = _cfg(root, server.base_url, method="direct")
        cfg.benchmark = "mathvista"
        summary = run_eval(cfg, tmp_path / "run", progress=False)
    records = read_records(tmp_path / "run" / RECORDS)
    roles = {pid: [s["role"] for s in r["trace"]["steps"]] for pid, r in records.items()}
    # the scripted direct answer "A" for a multiple-choice problem is ruled; free-form "0" is an int
    # (rules) for the integer problem, and goes to the LLM extraction for the others
    assert roles["1"] == ["direct", "extraction"] and roles["2"] == ["direct"]
    assert summary["scores"]["official"]["ALL"] >= 0


def _records_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_killed_run_resumes_with_no_lost_problem(tmp_path):
    n = 10
    root = write_scienceqa(tmp_path / "sqa", n=n)
    with ScriptedServer(latency=0.1) as fresh:
        run_eval(
            _cfg(root, fresh.base_url, item_concurrency=1, timeout=10), tmp_path / "fresh", progress=False
        )
        full_cost = fresh.requests
    out = tmp_path / "run"
    with ScriptedServer(latency=0.1) as server:
        cmd = [sys.executable, "-m", "paperzoo_cantor", "eval", "--benchmark", "scienceqa", "--data-root", str(root),
               "--backend", "openai", "--base-url", server.base_url, "--model", "scripted-vlm", "--timeout", "10",
               "--item-concurrency", "1", "--out", str(out), "--no-progress"]  # fmt: skip
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while _records_count(out / RECORDS) < 3 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        if child.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {child.stderr.read().decode()[-2000:]}")
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stderr.close()
        killed_at = _records_count(out / RECORDS)
        assert 3 <= killed_at < n
        paid_before = server.requests
        summary = run_eval(_cfg(root, server.base_url, item_concurrency=1, timeout=10), out, progress=False)
        paid_total = server.requests
    records = read_records(out / RECORDS)
    assert sorted(records) == sorted(str(1000 + i) for i in range(n))
    assert summary["recorded"] == n and summary["run"]["new_items"] == n - killed_at
    lines = [json.loads(x)["pid"] for x in (out / RECORDS).read_text().splitlines()]
    assert len(lines) == len(set(lines)) == n  # each problem recorded once
    # every answer received before the kill came from the cache: at most the call in flight is paid twice
    assert paid_before < full_cost
    assert full_cost <= paid_total <= full_cost + 1
    # the resumed records equal a fresh run's (deterministic model, same prompts)
    fresh_records = read_records(tmp_path / "fresh" / RECORDS)
    assert {p: r["response"] for p, r in records.items()} == {
        p: r["response"] for p, r in fresh_records.items()
    }
