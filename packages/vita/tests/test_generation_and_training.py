"""Generation through GenerationMixin (streamer, multimodal path at prefill only) and a tiny training run."""

from __future__ import annotations

import threading

import numpy as np
import torch
from paperzoo_vita.processing_vita import VitaProcessor


def _processor(model, tok):
    return VitaProcessor.from_model(
        model, tok, max_dynamic_patch=12, system_prompts={"image": "", "video": "", "lang": ""}
    )


def test_processor_layout(model, tok):
    processor = _processor(model, tok)
    image = np.zeros((56, 112, 3), np.uint8)  # 2:1 -> 2 tiles + thumbnail
    wave = 0.1 * np.random.default_rng(0).standard_normal(8000)  # 1 s at 8 kHz, resampled
    inputs = processor(text=["<image>\nwhat colour ? <audio>"], images=[image], audios=[(wave, 8000)])
    ids = inputs["input_ids"][0]
    assert inputs["pixel_values"].shape == (3, 3, 56, 56)
    assert int((ids == model.config.image_token_id).sum()) == 3 * 4
    assert int((ids == model.config.audio_token_id).sum()) == 12 and inputs["input_features"].shape == (
        1,
        98,
        80,
    )
    assert tok.convert_ids_to_tokens(ids[-3:].tolist()) == ["</s>", "bot", ":"]
    video = [np.zeros((56, 56, 3), np.uint8)] * 4
    v = processor(text=["<video>\nwhat ?"], videos=[video])
    assert (
        int((v["input_ids"][0] == model.config.image_token_id).sum()) == 16
        and v["pixel_values"].shape[0] == 4
    )


def test_processor_bad_input(model, tok):
    import pytest

    processor = _processor(model, tok)
    with pytest.raises(ValueError, match="more <image> placeholders than images"):
        processor(text=["<image><image>"], images=[np.zeros((56, 56, 3), np.uint8)])
    with pytest.raises(ValueError, match="have no placeholder"):
        processor(text=["hi"], audios=[np.zeros(16000)])
    with pytest.raises(ValueError, match="too short"):
        processor(text=["<audio>"], audios=[np.zeros(800)])


def test_generate_with_streamer_and_cache(model, tok):
    from transformers import TextIteratorStreamer

    processor = _processor(model, tok)
    rng = np.random.default_rng(0)
    inputs = processor(text=["<image>\n<audio>"], images=[rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)],
                       audios=[0.1 * rng.standard_normal(16000)])  # fmt: skip
    streamer = TextIteratorStreamer(tok, skip_prompt=True)
    kwargs = dict(
        **inputs, max_new_tokens=5, do_sample=False, streamer=streamer, pad_token_id=tok.pad_token_id
    )
    thread = threading.Thread(target=model.generate, kwargs=kwargs)
    thread.start()
    chunks = list(streamer)
    thread.join(timeout=60)
    streamed = "".join(chunks)
    cached = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    prompt_len = inputs["input_ids"].shape[1]
    new = cached[0, prompt_len:]
    assert len(new) == 5 and streamed.split() == tok.decode(new).split()
    # no cache: every step reruns the multimodal prefill on the whole sequence; same greedy tokens
    uncached = model.generate(
        **inputs, max_new_tokens=5, do_sample=False, use_cache=False, pad_token_id=tok.pad_token_id
    )
    assert torch.equal(cached, uncached)


def test_decoding_step_ignores_media(model):
    from transformers import DynamicCache

    i = model.config.image_token_id
    ids = torch.tensor([[10] + [i] * 4 + [11]])
    pixels = torch.randn(1, 3, 56, 56)
    cache = DynamicCache(config=model.config.text_config)
    model(input_ids=ids, pixel_values=pixels, cache=cache, use_cache=True)
    step = torch.tensor([[12]])
    mask = torch.ones(1, 7, dtype=torch.long)
    a = model(input_ids=step, attention_mask=mask, cache=cache, use_cache=True, pixel_values=pixels).logits
    full = model(input_ids=torch.cat([ids, step], 1), pixel_values=pixels).logits[:, -1:]
    torch.testing.assert_close(a, full, atol=1e-4, rtol=1e-4)


def test_training_step_lowers_loss_and_supervises_state_token(model, tok):
    from paperzoo_vita.configuration import tiny_vita_config  # noqa: F401  (the fixture's config)
    from paperzoo_vita.data import MixtralTwoTemplate, assign_state_tokens, encode_pieces, expand_placeholders
    from paperzoo_vita.train import VitaCollator

    template = MixtralTwoTemplate({"image": "", "video": "", "lang": ""})
    rng = np.random.default_rng(0)
    samples = []
    for user, answer, inserted in (("<image>\nwhat colour ?", "red", None), ("<image>\n<audio>", "blue", None),
                                   ("<image>\n<audio>", "", 0)):  # fmt: skip
        turns = assign_state_tokens([(user, answer)], inserted_id=inserted)
        fb = [torch.randn(98, 80)] if "<audio>" in user else []
        pieces = [(expand_placeholders(t, [1] * t.count("<image>"), [12] * t.count("<audio>"), 4), s)
                  for t, s in template.pieces(turns, "image")]  # fmt: skip
        enc = encode_pieces(pieces, tok)
        samples.append({"input_ids": enc.input_ids, "labels": enc.labels,
                        "pixel_values": torch.tensor(rng.standard_normal((1, 3, 56, 56)), dtype=torch.float32),
                        "fbanks": fb})  # fmt: skip
    batch = VitaCollator(tok.pad_token_id)(samples)
    # the first supervised label of every row is its state token: <3>, <1>, <2>
    first = [row[row != -100][0].item() for row in batch["labels"]]
    assert tok.convert_ids_to_tokens(first) == ["<3>", "<1>", "<2>"]
    model.train()
    model.set_stage("finetune", train_audio_adapter=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_processor_save_and_load(model, tok, tmp_path):
    from transformers import AutoProcessor

    processor = VitaProcessor.from_model(model, tok, max_dynamic_patch=6, system_prompts={"image": "a", "video": "b", "lang": "c"}, max_frames=32)  # fmt: skip
    processor.save_pretrained(tmp_path)
    loaded = VitaProcessor.from_pretrained(tmp_path)
    assert (loaded.image_seq_length, loaded.max_frames, loaded.system_prompts["video"]) == (4, 32, "b")
    assert (loaded.image_processor.image_size, loaded.image_processor.max_dynamic_patch) == (56, 6)
    model.config.save_pretrained(tmp_path)  # with the model's config.json, the Auto class resolves it
    assert type(AutoProcessor.from_pretrained(tmp_path)).__name__ == "VitaProcessor"


def test_batched_left_padded_generate_matches_single(model, tok):
    processor = _processor(model, tok)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
    wave = 0.1 * rng.standard_normal(16000)
    texts = ["<image>\nwhat colour is the circle ?", "<audio>"]
    batch = processor(text=texts, images=[image], audios=[wave])
    lengths = batch["attention_mask"].sum(1)
    assert lengths[0] != lengths[1] and batch["attention_mask"][int(lengths.argmin()), 0] == 0  # left padding
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    together = model.generate(**batch, **kw)[:, batch["input_ids"].shape[1] :]
    alone0 = processor(text=texts[:1], images=[image])
    alone1 = processor(text=texts[1:], audios=[wave])
    assert together[0].tolist() == model.generate(**alone0, **kw)[0, alone0["input_ids"].shape[1] :].tolist()
    assert together[1].tolist() == model.generate(**alone1, **kw)[0, alone1["input_ids"].shape[1] :].tolist()
