"""`paperzoo-flashsloth train` end to end from local Phi and SigLIP folders (stage 0 assembly, stage I and II through
Trainer, saving) and `generate` on the result, with tiny random backbones built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from paperzoo_flashsloth.cli import _tokenizer_with_learnable, main
from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration
from transformers import PhiConfig, PhiForCausalLM, SiglipVisionConfig, SiglipVisionModel


def _plain_word_tokenizer():
    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    return to_transformers_tokenizer(build_word_tokenizer())


def _backbones(tmp_path):
    from paperzoo_shared.data.image_io import write_image

    torch.manual_seed(0)
    phi = PhiForCausalLM(PhiConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, partial_rotary_factor=0.5, bos_token_id=2, eos_token_id=3))  # fmt: skip
    phi.save_pretrained(tmp_path / "phi2")
    _plain_word_tokenizer().save_pretrained(tmp_path / "phi2")
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                                  num_attention_heads=4, image_size=24, patch_size=4))  # fmt: skip
    siglip.save_pretrained(tmp_path / "siglip")
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    records = []
    for k in range(4):
        write_image(
            tmp_path / "images" / f"{k}.png",
            rng.integers(0, 255, (20, 28, 3), dtype=np.uint8),
            channel_order="rgb",
        )
        records.append({"image": f"{k}.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour is it?"},
                                                               {"from": "gpt", "value": "red"}]})  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(records))


def _experiment(tmp_path, stage, template, init=""):
    config = {
        "template": template,
        "system_prompt": "",
        "model": {
            "vision": {"hidden_size": 16, "intermediate_size": 32, "num_layers": 2, "num_heads": 4, "image_size": 24,
                       "patch_size": 4},
            "text": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 4, "num_heads": 4,
                     "partial_rotary_factor": 0.5},
            "num_query_tokens": 3, "embq_layer": 2, "embq_down_dim": 16, "embq_num_heads": 4,
            "query_anchor_token_id": 7,
        },
        "train": {"stage": stage, "max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "gradient_checkpointing": True},
        "paths": {"phi2": str(tmp_path / "phi2"), "siglip": str(tmp_path / "siglip"), "init_checkpoint": init,
                  "data_json": str(tmp_path / "data.json"), "image_folder": str(tmp_path / "images"),
                  "output_dir": str(tmp_path / f"out_{stage}")},
    }  # fmt: skip
    path = tmp_path / f"{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_tokenizer_gets_learnable_then_eos(tmp_path):
    words = _plain_word_tokenizer()
    words.save_pretrained(tmp_path)
    tokenizer = _tokenizer_with_learnable(str(tmp_path))
    base = len(words)
    assert tokenizer.convert_tokens_to_ids("<learnable>") == base  # 50295 for Phi-2's 50295 tokens
    assert tokenizer.eos_token == "</s>" and tokenizer.convert_tokens_to_ids("</s>") == base + 1


def test_stage_one_then_two_from_local_folders(tmp_path, capsys):
    _backbones(tmp_path)
    assert main(["train", "--config", str(_experiment(tmp_path, "I", "plain"))]) == 0
    stage1 = FlashSlothForConditionalGeneration.from_pretrained(tmp_path / "out_I")
    assert len(stage1.vision_tower.encoder.layers) == 2  # truncated from 3 blocks
    siglip = SiglipVisionModel.from_pretrained(tmp_path / "siglip")
    torch.testing.assert_close(
        stage1.vision_tower.encoder.layers[0].mlp.fc1.weight, siglip.encoder.layers[0].mlp.fc1.weight
    )
    phi = PhiForCausalLM.from_pretrained(tmp_path / "phi2")
    torch.testing.assert_close(stage1.language_model.lm_head.weight, phi.lm_head.weight)  # frozen in stage I
    assert (
        main(["train", "--config", str(_experiment(tmp_path, "II", "phi2", init=str(tmp_path / "out_I")))])
        == 0
    )
    stage2 = FlashSlothForConditionalGeneration.from_pretrained(tmp_path / "out_II")
    assert not torch.equal(stage2.language_model.lm_head.weight, phi.lm_head.weight)
    torch.testing.assert_close(
        stage2.vision_tower.encoder.layers[0].mlp.fc1.weight, siglip.encoder.layers[0].mlp.fc1.weight
    )
    for question in ("What colour is it?", ""):  # "" : <image><learnable>, an empty question span
        capsys.readouterr()
        args = ["generate", "--model", str(tmp_path / "out_II"), "--image", str(tmp_path / "images" / "0.png"),
                "--question", question, "--max-new-tokens", "3"]  # fmt: skip
        assert main(args) == 0
        assert capsys.readouterr().out.strip() == _greedy_by_hand(
            tmp_path / "out_II", tmp_path / "images" / "0.png", question, 3
        )


def _greedy_by_hand(folder, image_path, question, steps):
    """What `generate` must print, computed without generate: the phi2 prompt built by hand from the template
    pieces, full forward passes on the growing prompt, argmax, stop at eos, decode."""
    from paperzoo_flashsloth.data import preprocess_image
    from transformers import AutoTokenizer

    from paperzoo_shared.data.image_io import read_image

    model = FlashSlothForConditionalGeneration.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    cfg = model.config
    system = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."  # fmt: skip

    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    ids = enc(system + " USER: ") + [cfg.image_token_id] + enc("\n" + question)
    ids += [cfg.learnable_token_id] + enc(" ASSISTANT:")
    pixels = preprocess_image(read_image(image_path, channel_order="rgb"), cfg.vision_config.image_size)[None]
    new = []
    for _ in range(steps):
        x = torch.tensor([ids + new])
        with torch.no_grad():
            token = int(model(x, torch.ones_like(x), pixels).logits[0, -1].argmax())
        new.append(token)
        if token == tok.eos_token_id:
            break
    return tok.decode(new, skip_special_tokens=True).strip()


def test_generate_reports_a_missing_model_folder(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert (
        main(
            ["generate", "--model", str(tmp_path / "no_such_model"), "--image", str(image), "--question", "q"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "is not a local folder" in err and "Traceback" not in err and "hub" not in err.lower()


def test_train_rejects_flash_attention_without_the_package(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        return  # installed: the choice is valid
    _backbones(tmp_path)
    args = [
        "train",
        "--config",
        str(_experiment(tmp_path, "I", "plain")),
        "--attn-implementation",
        "flash_attention_2",
    ]
    assert main(args) == 2
    assert "flash-attn" in capsys.readouterr().err


@pytest.mark.parametrize("choice", ["eager", "sdpa"])
def test_train_passes_attn_implementation_to_both_towers(tmp_path, monkeypatch, choice):
    import paperzoo_flashsloth.train as train_module

    seen = {}

    def fake_train_stage(model, *args, **kwargs):  # record what the Trainer would get
        seen["vision"] = model.vision_tower.config._attn_implementation
        seen["text"] = model.language_model.config._attn_implementation
        seen["layer"] = model.decoder_layers[0].self_attn.config._attn_implementation

    monkeypatch.setattr(train_module, "train_stage", fake_train_stage)
    _backbones(tmp_path)
    for stage, init in (("I", ""), ("II", str(tmp_path / "out_I"))):
        config = _experiment(tmp_path, stage, "plain" if stage == "I" else "phi2", init=init)
        assert main(["train", "--config", str(config), "--attn-implementation", choice]) == 0
        assert seen == {"vision": choice, "text": choice, "layer": choice}, stage
