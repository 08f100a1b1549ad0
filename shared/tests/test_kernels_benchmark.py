"""benchmarks/kernels_gpu.py runs end to end on tiny shapes on the CPU (Triton through its interpreter).

It never asserts speed; this checks that every measurement ran, that the Triton results equal the torch
paths' inside the run, and that the JSON it writes is what it returns.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from paperzoo_shared.kernels import MIN_TRITON, triton_version

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels_gpu.py"


def _errors(node, path="") -> list[str]:
    if isinstance(node, dict):
        found = [f"{path}: {node['error']}"] if "error" in node else []
        return found + [e for k, v in node.items() for e in _errors(v, f"{path}/{k}")]
    return []


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is only in a source checkout")
@pytest.mark.skipif(
    (triton_version() or (0,)) < MIN_TRITON, reason=f"needs Triton {'.'.join(map(str, MIN_TRITON))} or newer"
)
def test_kernel_benchmark_runs_on_tiny_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    spec = importlib.util.spec_from_file_location("kernels_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "kernels.json"
    sections = "roi,decode,split" if importlib.util.find_spec("paperzoo_huwsod") else "decode,split"
    result = module.main(
        ["--tiny", "--device", "cpu", "--repeats", "1", "--sections", sections, "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert _errors(saved) == []
    assert saved["machine"]["triton_interpreter"] is True
    for case in ("mha_float16", "mha_bfloat16", "gqa_float16"):
        decode = saved["decode_attention"][case]
        assert decode["total_tokens"] == 3 * 40 and len(set(decode["lengths"])) == 3  # ragged, same total
        assert decode["cache_mib_packed"] < decode["cache_mib_padded_to_longest"]
        assert decode["max_abs_difference_triton_vs_reference"] < 2e-2
        assert decode["triton_packed_ms"] > 0 and decode["dense_sdpa_same_total_ms"] > 0
    assert saved["decode_attention"]["gqa_float16"]["kv_heads"] == 1
    assert saved["split_k"]["auto_splits"] == 3 and saved["split_k"]["triton_split_k_auto_ms"] > 0
    if "roi" in sections:
        roi = saved["roi_loop_pool"]
        assert roi["max_abs_difference_triton_vs_vectorized"] == 0.0
        assert {"triton_forward_backward_ms", "vectorized_forward_backward_ms", "reference_forward_ms",
                "torchvision_roi_pool_3x_forward_ms"} <= set(roi)  # fmt: skip
