"""benchmarks/dynamic_llava_gpu.py runs end to end on a tiny config on CPU (it never asserts speed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "dynamic_llava_gpu.py"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is only in a source checkout")
def test_gpu_benchmark_script_runs_on_tiny_config(tmp_path):
    spec = importlib.util.spec_from_file_location("dynamic_llava_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    args = ["--size", "tiny", "--out", str(out), "--decode-tokens", "6", "--decode-tokens-b1", "4",
            "--reference-generate", "--repeats", "4", "--batch-sizes", "1,2"]  # fmt: skip
    result = module.main(args)
    saved = json.loads(out.read_text())
    assert saved["size"] == "tiny" and saved == json.loads(json.dumps(result))
    assert set(saved["prefill"]) >= {"ours_dense_b1", "ours_dynamic_b2", "ratio_dynamic_over_dense_b2"}
    decode = saved["decode"]["ours_dynamic_b2"]
    assert decode["new_tokens"] == 6 and decode["output_text_keep_rate"] == pytest.approx(0.6, abs=0.11)
    assert saved["decode"]["transformers_generate_b2"]["new_tokens"] == 6  # transformers' own generate
    assert "error" not in saved["prefill"]["transformers_dense_b2"]
    assert saved["flops"]["eq13_dynamic_tflops"] < saved["flops"]["eq13_dense_tflops"]
    assert saved["flops"]["counted_dynamic_tflops"] < saved["flops"]["counted_dense_tflops"]
