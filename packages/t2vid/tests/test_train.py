"""The fine-tuning recipe on a tiny random Idefics3: frames-to-images mapping, label masking, Collator, a
training step that lowers the loss, LoRA on the named modules only, configs (goldens worked out by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from paperzoo_t2vid.configuration import T2VidConfig
from paperzoo_t2vid.tiny import TinyIdefics3Config, build_processor, build_tiny_idefics3, vocabulary
from paperzoo_t2vid.train import (
    Collator,
    LoraSettings,
    TrainConfig,
    encode_example,
    frames_to_images,
    total_steps,
    train,
    warmup_steps,
    wrap_lora,
)

from paperzoo_shared.config import ConfigError, load_config
from paperzoo_shared.data import DataError, write_image
from paperzoo_shared.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
WORDS = vocabulary(["What word ?", "A B C D", "apple river"])


def _record(tmp_path: Path, n: int = 2, answer: str = "B", question: str = "What word ?") -> dict:
    images = {}
    for k in range(n):
        rel = f"s/frame_{k}.png"
        write_image(tmp_path / rel, np.full((32, 48, 3), 40 * k, np.uint8), channel_order="rgb")
        images[f"<image_{k:02d}>"] = rel
    placeholders = "".join(f"<image_{k:02d}>\n" for k in range(n))
    return {
        "image": images,
        "conversations": [
            {"role": "user", "content": placeholders + question},
            {"role": "assistant", "content": answer},
        ],
    }


def test_frames_follow_their_placeholders_and_tags_are_removed(tmp_path: Path) -> None:
    record = {
        "image": {"<image_01>": "b.png", "<image_00>": "a.png", "<image_02>": "c.png"},
        "conversations": [
            {"role": "user", "content": "<image_00>\n<image_01>\n<image_02>\nWhat word ?"},
            {"role": "assistant", "content": "B"},
        ],
    }
    paths, turns = frames_to_images(record, tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png"]  # placeholder order, not dict order
    assert paths[0] == tmp_path / "a.png"
    assert turns == [{"role": "user", "content": "What word ?"}, {"role": "assistant", "content": "B"}]
    # a tag without a path, a path without a tag, a tag in a later turn, a path leaving the root
    bad = json.loads(json.dumps(record))
    del bad["image"]["<image_02>"]
    with pytest.raises(UserError, match="<image_02> of the first turn"):
        frames_to_images(bad, tmp_path)
    bad = json.loads(json.dumps(record))
    bad["image"]["<image_03>"] = "d.png"
    with pytest.raises(UserError, match="<image_03> has no placeholder"):
        frames_to_images(bad, tmp_path)
    bad = json.loads(json.dumps(record))
    bad["conversations"][1]["content"] = "<image_00>\nB"
    with pytest.raises(UserError, match="only allowed in the first user turn"):
        frames_to_images(bad, tmp_path)
    bad = json.loads(json.dumps(record))
    bad["image"]["<image_00>"] = "../a.png"
    with pytest.raises(DataError, match="leaves the data root"):
        frames_to_images(bad, tmp_path)


def test_label_masking_by_hand(tmp_path: Path) -> None:
    cfg = TinyIdefics3Config()  # 64 px, patch 16, scale 2: (64/16)^2 / 4 = 4 tokens per frame
    assert cfg.image_seq_len == 4
    processor = build_processor(WORDS, cfg)
    tok = processor.tokenizer
    record = _record(tmp_path)
    official = encode_example(processor, record, tmp_path, label_mode="official")
    tokens = tok.convert_ids_to_tokens(official["input_ids"])
    frame = ["<fake_token_around_image>", "<global-img>", *["<image>"] * 4, "<fake_token_around_image>"]
    assert tokens == [
        "<|begin_of_text|>", "User", ":", *frame, *frame, "What", "word", "?", "<end_of_utterance>",
        "Assistant", ":", "B", "<end_of_utterance>",
    ]  # fmt: skip
    # official Idefics3 collator: only the 8 image tokens are -100, the prompt text is trained
    masked = [i for i, label in enumerate(official["labels"]) if label == -100]
    assert masked == [5, 6, 7, 8, 12, 13, 14, 15]
    assert official["pixel_values"].shape == (2, 3, 64, 64)
    # answer mode: only "B" and its end-of-utterance token (the last two positions) are trained
    answer = encode_example(processor, record, tmp_path, label_mode="answer")
    assert answer["input_ids"] == official["input_ids"]
    kept = [i for i, label in enumerate(answer["labels"]) if label != -100]
    assert kept == [len(tokens) - 2, len(tokens) - 1]
    assert tok.convert_ids_to_tokens([answer["labels"][i] for i in kept]) == ["B", "<end_of_utterance>"]
    # max_frames keeps 1 of 2 frames (middle of one segment: index 1)
    one = encode_example(processor, record, tmp_path, label_mode="answer", max_frames=1)
    assert one["pixel_values"].shape[0] == 1
    assert len(one["input_ids"]) == len(tokens) - 7


def test_multi_turn_answer_mode_trains_every_assistant_turn(tmp_path: Path) -> None:
    processor = build_processor(WORDS)
    record = _record(tmp_path, n=1)
    record["conversations"] += [
        {"role": "user", "content": "What word ?"},
        {"role": "assistant", "content": "C"},
    ]
    ex = encode_example(processor, record, tmp_path, label_mode="answer")
    trained = processor.tokenizer.convert_ids_to_tokens([t for t in ex["labels"] if t != -100])
    assert trained == ["B", "<end_of_utterance>", "C", "<end_of_utterance>"]


def test_collator_pads_ids_and_frames(tmp_path: Path) -> None:
    processor = build_processor(WORDS)
    a = encode_example(processor, _record(tmp_path / "a", n=1), tmp_path / "a")
    b = encode_example(processor, _record(tmp_path / "b", n=3), tmp_path / "b")
    batch = Collator(processor.tokenizer)([a, b])
    n, pad = len(a["input_ids"]), processor.tokenizer.pad_token_id
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(b["input_ids"]))
    # right padding: a's ids and labels first, then the pad id / -100; the mask marks a's n tokens
    assert batch["input_ids"][0].tolist() == a["input_ids"] + [pad] * (len(b["input_ids"]) - n)
    assert batch["labels"][0].tolist() == a["labels"] + [-100] * (len(b["input_ids"]) - n)
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(b["input_ids"]) - n)
    assert batch["input_ids"][1].tolist() == b["input_ids"] and batch["attention_mask"][1].all()
    assert batch["pixel_values"].shape == (2, 3, 3, 64, 64)
    assert float(batch["pixel_values"][0, 1:].abs().sum()) == 0.0  # padding frames are all zero
    assert batch["pixel_attention_mask"][0, 1:].sum() == 0
    assert batch["pixel_attention_mask"][1].sum() == 3 * 64 * 64


def test_steps_and_warmup_by_hand() -> None:
    cfg = TrainConfig(per_device_batch_size=2, gradient_accumulation_steps=4, epochs=1.0, warmup_ratio=0.03)
    # 30000 samples on 8 GPUs: ceil(30000 / 16) = 1875 batches, / 4 = 469 steps, warm-up ceil(14.07) = 15
    assert total_steps(cfg, 30000, world_size=8) == 469
    assert warmup_steps(cfg, 30000, world_size=8) == 15
    assert total_steps(TrainConfig(max_steps=7), 30000) == 7


def test_a_training_step_lowers_the_loss(tmp_path: Path) -> None:
    records = [_record(tmp_path, n=2, answer="B"), _record(tmp_path, n=2, answer="C", question="What ?")]
    cfg = TrainConfig(
        output_dir=str(tmp_path / "out"), max_steps=8, per_device_batch_size=2, gradient_accumulation_steps=1,
        learning_rate=1e-2, warmup_ratio=0.0, lr_scheduler="constant", logging_steps=1, weight_decay=0.0,
        label_mode="answer",
    )  # fmt: skip
    result = train(cfg, records, tmp_path, words=WORDS)
    assert len(result.losses) == 8
    assert result.losses[-1] < 0.5 * result.losses[0]


def test_lora_wraps_only_the_named_modules() -> None:
    model, _ = build_tiny_idefics3(WORDS)  # text: 2 layers 64 -> 64; vision: 1 layer 32 -> 32
    wrapped = wrap_lora(model, LoraSettings(r=8, alpha=8, target_modules=["q_proj"]))
    adapted = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in wrapped.named_parameters() if ".lora_A" in n})
    assert len(adapted) == 3 and all(n.endswith("q_proj") for n in adapted)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    # r x (in + out) per adapted linear: 2 x 8 x (64 + 64) + 8 x (32 + 32)
    assert trainable == 2 * 8 * 128 + 8 * 64
    names = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert all("lora_" in n for n in names)


def test_configs_and_deepspeed_files() -> None:
    full = load_config(T2VidConfig, CONFIGS / "full.yaml").train
    assert (full.model, full.learning_rate, full.weight_decay, full.warmup_ratio) == (
        "idefics3",
        5e-6,
        0.01,
        0.03,
    )
    assert (full.per_device_batch_size, full.gradient_accumulation_steps, full.epochs) == (2, 4, 1.0)
    assert full.bf16 and full.label_mode == "official" and not full.lora.enabled
    ds = json.loads((CONFIGS.parent / full.deepspeed).read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["scheduler"]["params"]["cos_min_ratio"] == 0.1
    plain = json.loads((CONFIGS / "deepspeed" / "zero3.json").read_text())
    assert plain["zero_optimization"]["stage"] == 3 and "offload_param" not in plain["zero_optimization"]
    with pytest.raises(ConfigError, match="label_mode"):
        load_config(T2VidConfig, CONFIGS / "smoke.yaml", overrides=["train.label_mode=prompt"])
    with pytest.raises(ConfigError, match="lora.r"):
        load_config(T2VidConfig, CONFIGS / "smoke.yaml", overrides=["train.lora.r=0"])


def test_a_missing_model_folder_is_one_error(tmp_path: Path) -> None:
    from paperzoo_t2vid.train import load_model

    with pytest.raises(UserError, match="local model folder"):
        load_model(TrainConfig(model="idefics3", model_path=str(tmp_path / "nope")))
