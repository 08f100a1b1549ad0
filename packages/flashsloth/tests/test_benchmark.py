"""benchmarks/flashsloth_gpu.py runs end to end on CPU with the tiny configuration."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "flashsloth_gpu.py"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is only in a source checkout")
def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("flashsloth_gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    args = ["--tiny", "--device", "cpu", "--out", str(out), "--repeats", "1", "--warmup", "0", "--new-tokens", "2",
            "--batch-sizes", "1,2", "--question-tokens", "4", "--prefix-tokens", "3"]  # fmt: skip
    assert module.main(args) == 0
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"uncompressed", "flashsloth", "hd_uncompressed", "hd"}
    tokens = {v: r["visual_tokens"] for v, r in result["rows"].items()}
    assert tokens == {"uncompressed": 36, "flashsloth": 7, "hd_uncompressed": 180, "hd": 23}
    rows = result["rows"]
    assert rows["flashsloth"]["prefill_tflops_exact"] < rows["uncompressed"]["prefill_tflops_exact"]
    assert "ttft_flashsloth_over_uncompressed_bs2" in result["ratios"]
    # the variants share the backbones: only the compression modules differ in size
    assert rows["uncompressed"]["parameters"] < rows["flashsloth"]["parameters"]
