"""benchmarks/dynamic_llava_gpu.py runs end to end on a tiny config on CPU with left padding and uneven
per-sample caches (it never asserts speed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "dynamic_llava_gpu.py"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is only in a source checkout")
def test_gpu_benchmark_script_runs_on_tiny_config_with_uneven_caches(tmp_path):
    spec = importlib.util.spec_from_file_location("dynamic_llava_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    args = ["--size", "tiny", "--out", str(out), "--decode-tokens", "6", "--decode-tokens-b1", "3",
            "--nocache-tokens", "2", "--reference-generate", "--repeats", "4", "--batch-sizes", "1,3",
            "--compile"]  # fmt: skip
    result = module.main(args)
    saved = json.loads(out.read_text())
    assert saved["size"] == "tiny" and saved == json.loads(json.dumps(result))
    assert saved["command"].endswith(" ".join(args))
    assert set(saved["prefill"]) >= {"ours_dense_b1", "ours_dynamic_b3", "ratio_dynamic_over_dense_b3"}
    decode = saved["decode"]
    expected = {f"ours_{s}_{c}_b3" for s in ("dense", "dynamic") for c in ("dynamic_cache", "static_cache",
                "static_cache_compiled", "no_cache")} | {"transformers_dense_dynamic_cache_b3",
                "transformers_dense_static_cache_b3", "ours_dynamic_static_cache_b1"}  # fmt: skip
    assert expected <= set(decode) and not [k for k, v in decode.items() if "error" in v]
    dyn = decode["ours_dynamic_dynamic_cache_b3"]
    # uneven caches: per-sample random keep decisions (5 decoding steps), and left padding
    assert dyn["new_tokens"] == 6 and len(set(dyn["output_text_kept_per_sample"])) > 1
    dense = decode["ours_dense_dynamic_cache_b3"]
    assert dense["output_text_kept_per_sample"] == [5, 5, 5]
    lengths = dense["cached_tokens_last_layer_per_sample"]
    assert len(set(lengths)) == 3 and lengths[0] == module.TEXT_TOKENS + 16 + 5  # sample 0 is unpadded
    # the static cache and the compiled static step hold exactly what the dynamic cache holds
    for kind in ("static_cache", "static_cache_compiled"):
        assert (
            decode[f"ours_dynamic_{kind}_b3"]["cached_tokens_last_layer_per_sample"]
            == dyn["cached_tokens_last_layer_per_sample"]
        )
    assert dyn["kv_cache_gib"] < dense["kv_cache_gib"]
    assert all(
        {"per_step_ms", "one_token_ms", "total_ms", "peak_above_weights_gib"} <= set(r)
        for r in decode.values()
    )
    assert decode["transformers_dense_static_cache_b3"]["new_tokens"] == 6
    assert "error" not in saved["prefill"]["transformers_dense_b3"]
    assert saved["flops"]["eq13_dynamic_tflops"] < saved["flops"]["eq13_dense_tflops"]
    assert saved["flops"]["counted_dynamic_tflops"] < saved["flops"]["counted_dense_tflops"]
    assert saved["targets"]["decode_per_step_b3_static_compiled_over_bandwidth_floor"]["value"] is None  # CPU
