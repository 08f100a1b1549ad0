"""The command line: a known bad input is one line on stderr and exit status 2; ``--debug`` shows the traceback."""

from __future__ import annotations

import pytest
from paperzoo_dynamic_llava.cli import main


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--config", "{tmp}/missing.yaml"], "config file not found"),
        (["train", "--tiny", "--set", "train.max_steps=abc"], "expects an integer"),
        (["train", "--config", "{tmp}/broken.yaml"], "broken.yaml"),
        (["flops", "--keep-rate", "2"], "--keep-rate 2.0"),
        (["flops", "--keep-rate", "1.5"], "--keep-rate 1.5"),
        (["flops", "--keep-rate", "nan"], "--keep-rate nan"),
        (["flops", "--keep-rate", "inf"], "--keep-rate inf"),
        (["flops", "--keep-rate", "0"], "--keep-rate 0.0"),
        (["flops", "--sparse-layer", "40"], "--sparse-layer 40: must be a decoder layer index in 0"),
        (["flops", "--sparse-layer", "32"], "--sparse-layer 32"),
        (["flops", "--sparse-layer", "-1"], "--sparse-layer -1"),
        (["generate", "--model", "{tmp}", "--image", "{tmp}/x.png", "--prompt", "hi"], "no config.json"),
        (["convert", "{tmp}", "{tmp}/out", "--vision-tower", "{tmp}"], "config.json not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("train: [unclosed\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("paperzoo-dynamic-llava: error: ") and expected in err[0]
    assert "--debug" in err[1]
    with pytest.raises(Exception, match=expected.replace(".", r"\.")):
        main([*argv, "--debug"])


def test_flops_accepts_the_edges_of_the_valid_ranges(capsys):
    import json

    assert main(["flops", "--keep-rate", "1", "--sparse-layer", "31"]) == 0
    rows = json.loads(capsys.readouterr().out)["eq13_prefill_tflops"]
    assert rows["llava15_7b"]["dynamic_llava"] == rows["llava15_7b"]["dense"] == 10.07  # keep all: dense
    assert main(["flops"]) == 0
    assert json.loads(capsys.readouterr().out)["eq13_prefill_tflops"]["llava15_7b"]["dynamic_llava"] == 2.49


def _tiny_checkpoint(tiny, folder):
    from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
    from paperzoo_dynamic_llava.presets import tiny_llava_config

    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    tok = to_transformers_tokenizer(build_word_tokenizer())
    config = tiny_llava_config(tiny.MODEL, vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
                               sparse=tiny.sparse())  # fmt: skip
    DynamicLlavaForConditionalGeneration(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_generate_runs_on_the_device_and_dtype_asked(tiny, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    model = _tiny_checkpoint(tiny, tmp_path / "model")
    Image.fromarray(np.full((40, 30, 3), 200, dtype=np.uint8)).save(tmp_path / "x.png")
    args = ["generate", "--model", str(model), "--image", str(tmp_path / "x.png"), "--prompt", "what colour ?",
            "--max-new-tokens", "3"]  # fmt: skip
    assert main([*args, "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert "(bfloat16 on cpu)" in capsys.readouterr().err
    assert main([*args, "--device", "cpu", "--no-cache"]) == 0
    assert "decoded without KV cache (float32 on cpu)" in capsys.readouterr().err  # auto: the saved dtype
    assert main([*args, "--device", "nonsense"]) == 2
    assert "--device nonsense" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "no CUDA device is available here" in capsys.readouterr().err


def test_debug_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--debug" in capsys.readouterr().out
