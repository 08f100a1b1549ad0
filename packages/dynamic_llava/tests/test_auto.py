"""A saved Dynamic-LLaVA checkpoint loads through transformers' Auto classes as the sparse model, and fails
clearly (not as a dense LLaVA that ignores the predictors) where this package is not imported."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from paperzoo_dynamic_llava.modeling_dynamic_llava import (
    DynamicLlavaConfig,
    DynamicLlavaForConditionalGeneration,
)
from transformers import AutoConfig, AutoModelForImageTextToText, LlavaForConditionalGeneration


def test_a_saved_sparse_checkpoint_loads_as_the_sparse_model(tiny, tmp_path):
    model = tiny.make_model()
    model.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "dynamic_llava"
    assert isinstance(AutoConfig.from_pretrained(str(tmp_path)), DynamicLlavaConfig)
    loaded = AutoModelForImageTextToText.from_pretrained(str(tmp_path)).eval()
    assert type(loaded) is DynamicLlavaForConditionalGeneration and loaded.sparse == model.sparse
    batch = tiny.make_prompts([28], seed=3)
    with torch.no_grad():  # the predictors came along: the same pruning and logits
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.token_index, b.token_index)
    torch.testing.assert_close(a.logits, b.logits)


def test_without_the_package_the_auto_classes_refuse_the_checkpoint(tiny, tmp_path):
    tiny.make_model().save_pretrained(str(tmp_path))
    code = (
        "import sys\n"
        "from transformers import AutoModelForImageTextToText\n"
        "try:\n"
        f"    AutoModelForImageTextToText.from_pretrained({str(tmp_path)!r})\n"
        "except (ValueError, KeyError) as e:\n"
        "    print('refused:', e)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dynamic_llava" in out.stdout


def test_a_plain_llava_config_is_converted_and_dense_llava_still_loads_the_weights(tiny):
    model = tiny.make_model()
    assert isinstance(model.config, DynamicLlavaConfig)  # tiny_llava_config gives a LlavaConfig
    dense = LlavaForConditionalGeneration(model.config)  # the subclass config serves transformers' LLaVA too
    missing, unexpected = dense.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all("score_predictor" in k for k in unexpected)
