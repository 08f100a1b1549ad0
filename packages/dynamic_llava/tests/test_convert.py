"""The original-layout converter, on a tiny state dict written by hand in liuhaotian's / Osilly's key layout."""

from __future__ import annotations

import json

import pytest
import torch
from paperzoo_dynamic_llava.configuration import SparseConfig
from paperzoo_dynamic_llava.convert import convert_original_checkpoint, map_original_key
from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
from safetensors.torch import save_file
from transformers import CLIPVisionModel, LlavaForConditionalGeneration

ORIGINAL_VOCAB = (
    40  # the tiny model's vocabulary is 48 = 40 words + <image> at 40, padded to a multiple of 16
)


def _original_layout(model: DynamicLlavaForConditionalGeneration) -> dict[str, torch.Tensor]:
    """Our weights renamed to the original LlavaLlamaForCausalLM names (written independently of convert.py)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("model.vision_tower."):
            continue  # the original checkpoints do not carry the CLIP tower
        if key.startswith("model.language_model."):
            new = "model." + key[len("model.language_model.") :]
        elif key.startswith("model.multi_modal_projector.linear_1."):
            new = "model.mm_projector.0." + key.rsplit(".", 1)[1]
        elif key.startswith("model.multi_modal_projector.linear_2."):
            new = "model.mm_projector.2." + key.rsplit(".", 1)[1]
        elif "score_predictor" in key:
            new = "model." + key
        else:
            new = key
        if new in ("model.embed_tokens.weight", "lm_head.weight"):
            value = value[:ORIGINAL_VOCAB]
        out[new] = value.clone()
    out["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old checkpoints store RoPE buffers
    return out


def _write_original(tmp_path, model, *, sparse: bool):
    src = tmp_path / "original"
    src.mkdir()
    text = model.config.text_config
    config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava",
        "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "max_position_embeddings": text.max_position_embeddings,
        "rms_norm_eps": text.rms_norm_eps, "hidden_act": "silu", "vocab_size": ORIGINAL_VOCAB,
        "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": 32,
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "image_aspect_ratio": "pad",
    }  # fmt: skip
    if sparse:
        config["sparse_config"] = {
            **model.sparse.to_dict(),
            "instruct_keep_rate": 0.7,
            "instruct_len_for_training": 25,
        }
    (src / "config.json").write_text(json.dumps(config))
    weights = _original_layout(model)
    names = sorted(weights)
    half = len(names) // 2  # two shards
    save_file(
        {k: weights[k].contiguous() for k in names[:half]}, str(src / "model-00001-of-00002.safetensors")
    )
    save_file(
        {k: weights[k].contiguous() for k in names[half:]}, str(src / "model-00002-of-00002.safetensors")
    )
    tower = tmp_path / "clip"
    clip = CLIPVisionModel(model.config.vision_config)
    clip.load_state_dict({k[len("model.vision_tower.") :]: v for k, v in model.state_dict().items()
                          if k.startswith("model.vision_tower.")})  # fmt: skip
    clip.save_pretrained(str(tower))
    return src, tower


def _tiny_with_image_id_40(tiny):
    model = tiny.make_model()
    model.config.image_token_index = ORIGINAL_VOCAB
    return model


def _prompt(tiny):
    batch = tiny.make_prompts([28, 24], seed=11)
    batch["input_ids"] = batch["input_ids"].clamp(max=ORIGINAL_VOCAB - 1)
    batch["input_ids"][:, :] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], 0)
    image = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    for b, n in enumerate([28, 24]):
        start = batch["input_ids"].shape[1] - n + 2
        image[b, start : start + 16] = True
    batch["input_ids"][image] = ORIGINAL_VOCAB
    return batch


def test_dynamic_llava_original_checkpoint_converts_to_identical_model(tiny, tmp_path):
    model = _tiny_with_image_id_40(tiny)
    src, tower = _write_original(tmp_path, model, sparse=True)
    out = convert_original_checkpoint(src, tmp_path / "hf", vision_tower=tower, pad_vocab_to=16)
    converted = DynamicLlavaForConditionalGeneration.from_pretrained(str(out)).eval()
    assert converted.config.image_token_index == ORIGINAL_VOCAB
    assert converted.config.text_config.vocab_size == 48
    assert converted.sparse == model.sparse
    ours, theirs = converted.state_dict(), model.state_dict()
    for key, value in theirs.items():
        if key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            torch.testing.assert_close(ours[key][:ORIGINAL_VOCAB], value[:ORIGINAL_VOCAB])
            torch.testing.assert_close(
                ours[key][ORIGINAL_VOCAB:], value[:ORIGINAL_VOCAB].mean(0).expand(8, -1)
            )
        else:
            torch.testing.assert_close(ours[key], value, msg=key)
    batch = _prompt(tiny)
    with torch.no_grad():  # same kept tokens, same logits over the original vocabulary
        a = model(**batch, execution="prune")
        b = converted(**batch, execution="prune")
    assert torch.equal(a.token_index, b.token_index)
    torch.testing.assert_close(a.logits[..., :ORIGINAL_VOCAB], b.logits[..., :ORIGINAL_VOCAB])


def test_llava15_original_checkpoint_converts_to_dense_llava_hf(tiny, tmp_path):
    model = _tiny_with_image_id_40(tiny)
    src, tower = _write_original(tmp_path, model, sparse=False)
    for f in src.glob("*.safetensors"):  # a plain LLaVA-1.5 has no predictors
        from safetensors.torch import load_file

        kept = {k: v for k, v in load_file(str(f)).items() if "score_predictor" not in k}
        save_file(kept, str(f))
    out = convert_original_checkpoint(src, tmp_path / "hf", vision_tower=tower, pad_vocab_to=16)
    dense = LlavaForConditionalGeneration.from_pretrained(str(out)).eval()
    with pytest.raises(ValueError, match="from_dense_llava"):
        DynamicLlavaForConditionalGeneration.from_pretrained(str(out))
    dynamic = DynamicLlavaForConditionalGeneration.from_dense_llava(
        str(out), SparseConfig(d_model=32, nhead=4)
    )
    batch = _prompt(tiny)
    with torch.no_grad():
        ref = model(**batch, selection="dense").logits[..., :ORIGINAL_VOCAB]
        positions = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)  # left padding
        hf = dense(**batch, position_ids=positions).logits[..., :ORIGINAL_VOCAB]
        ours = dynamic(**batch, selection="dense").logits[..., :ORIGINAL_VOCAB]
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(hf[real], ref[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_converter_rejects_wrong_inputs(tiny, tmp_path):
    model = _tiny_with_image_id_40(tiny)
    src, tower = _write_original(tmp_path, model, sparse=True)
    with pytest.raises(ValueError, match="vision_tower"):
        convert_original_checkpoint(src, tmp_path / "a")
    hf = tmp_path / "hf_dir"
    model.save_pretrained(str(hf))
    with pytest.raises(ValueError, match="not an original-layout"):
        convert_original_checkpoint(hf, tmp_path / "b", vision_tower=tower)
    with pytest.raises(ValueError, match="unexpected key"):
        map_original_key("model.something_else.weight")
    assert map_original_key("model.layers.3.self_attn.rotary_emb.inv_freq") is None
    assert map_original_key("model.mm_projector.2.bias") == "model.multi_modal_projector.linear_2.bias"


def _dtypes(folder) -> set[torch.dtype]:
    from safetensors.torch import load_file

    return {  # (the original layout's RoPE buffer, dropped by the converter, is fp32)
        t.dtype
        for f in folder.glob("*.safetensors")
        for k, t in load_file(str(f)).items()
        if "inv_freq" not in k
    }


def test_convert_writes_the_source_dtype_unless_told(tiny, tmp_path, capsys):
    from paperzoo_dynamic_llava.cli import main

    model = _tiny_with_image_id_40(tiny).half()  # the released checkpoints are fp16
    src, tower = _write_original(tmp_path, model, sparse=True)
    assert _dtypes(src) == {torch.float16}
    assert (
        main(
            [
                "convert",
                str(src),
                str(tmp_path / "same"),
                "--vision-tower",
                str(tower),
                "--pad-vocab-to",
                "16",
            ]
        )
        == 0
    )
    assert _dtypes(tmp_path / "same") == {torch.float16}
    converted = DynamicLlavaForConditionalGeneration.from_pretrained(str(tmp_path / "same"))
    assert converted.dtype == torch.float16
    torch.testing.assert_close(
        converted.lm_head.weight[:ORIGINAL_VOCAB], model.lm_head.weight[:ORIGINAL_VOCAB]
    )
    args = ["convert", str(src), str(tmp_path / "f32"), "--vision-tower", str(tower), "--pad-vocab-to", "16"]
    assert main([*args, "--dtype", "float32"]) == 0
    assert _dtypes(tmp_path / "f32") == {torch.float32}


def test_a_sentencepiece_tokenizer_without_its_dependencies_names_the_extra(tiny, tmp_path, monkeypatch):
    import paperzoo_dynamic_llava.convert as convert

    from paperzoo_shared.errors import UserError

    model = _tiny_with_image_id_40(tiny)
    src, tower = _write_original(tmp_path, model, sparse=True)
    (src / "tokenizer.model").write_bytes(
        b"\x00"
    )  # liuhaotian's checkpoints ship only the SentencePiece model
    monkeypatch.setattr(convert, "_importable", lambda name: name != "sentencepiece")
    with pytest.raises(
        UserError, match=r"needs sentencepiece: pip install 'paperzoo-dynamic-llava\[convert\]'"
    ):
        convert_original_checkpoint(src, tmp_path / "hf", vision_tower=tower, pad_vocab_to=16)
