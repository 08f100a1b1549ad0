"""The smoke preset through ``paperzoo reproduce``: the pre-registered checks hold on the smoke sizes."""

from __future__ import annotations

import json

from paperzoo_shared.cli import main as paperzoo


def test_smoke_preset(tmp_path):
    assert paperzoo(["reproduce", "cantor", "--preset", "smoke", "--out", str(tmp_path)]) == 0
    pipeline = json.loads((tmp_path / "pipeline.json").read_text())
    rows = {row["id"]: row for row in pipeline["rows"]}
    value = lambda row, metric: rows[row]["metrics"][metric]["mean"]  # noqa: E731
    for row in rows:
        assert value(row, "failures_as_injected") == 1.0, row  # P1
    # P4: the expert's reading reaches the synthesis; the fixed split keeps the "Note ..." task
    assert value("mv_cantor", "accuracy") > value("mv_direct", "accuracy")
    assert value("sqa_cantor_fixed", "calls_per_item") > value("sqa_cantor", "calls_per_item")
    # the official ScienceQA regex reads "The answer is X." only: CoT replies yes, Cantor's "Answer: X" no
    assert value("sqa_cot", "accuracy_official_regex") > value("sqa_cantor", "accuracy_official_regex")
    throughput = {row["id"]: row for row in json.loads((tmp_path / "throughput.json").read_text())["rows"]}
    assert throughput["cached_rerun"]["metrics"]["calls"]["mean"] == 0.0  # P3
    assert throughput["concurrency_1"]["metrics"]["calls"]["mean"] > 0
