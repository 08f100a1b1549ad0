"""Video reading on files the test writes, multi-turn packing, CMVN statistics (hand-computed goldens)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from paperzoo_vita.data import VitaRecord, estimate_tokens, load_video_frames, pack_records

from paperzoo_shared.data.errors import DataError
from paperzoo_shared.data.video_io import write_video


@pytest.mark.parametrize(("seconds", "fps", "expected"), [(2, 10, 4), (7, 10, 7), (40, 5, 16)])
def test_video_frames_from_files(tmp_path, seconds, fps, expected):
    frames = np.zeros((seconds * fps, 64, 64, 3), np.uint8)
    frames[:, :, :, 0] = (np.arange(seconds * fps) % 256)[:, None, None]
    path = write_video(tmp_path / "v.mp4", frames, fps)
    out = load_video_frames(path)
    assert out.shape == (expected, 64, 64, 3)


def test_video_32_frames_for_videomme(tmp_path):
    path = write_video(tmp_path / "v.mp4", np.zeros((200, 64, 64, 3), np.uint8), 5)  # 40 s at 5 fps
    assert load_video_frames(path, max_frames=32).shape[0] == 32


def test_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(DataError):
        load_video_frames(bad)


def test_cost_model():
    # 100 text tokens + 2 tiles + a 3 s clip (rounded up to 4 s -> 50 tokens)
    assert estimate_tokens(100, 2, [3.0]) == 100 + 512 + 50
    assert estimate_tokens(10, 0, [2.0, 0.5]) == 10 + 25 + 25


def test_pack_records():
    recs = [VitaRecord(id=str(i), turns=[(f"q{i}", f"a{i}")], audios=[Path(f"{i}.wav")]) for i in range(5)]
    recs[3].inserted_id = 0
    packs = pack_records(recs, [3000, 3000, 3000, 3000, 7000], concat_size=6000, seed=0)
    order = np.random.default_rng(0).permutation(5).tolist()
    # every pack keeps the shuffled order and stays within 6000 (the 7000 record alone)
    flat = [int(x) for p in packs for x in p.id.split("+")]
    assert flat == order
    for p in packs:
        ids = [int(x) for x in p.id.split("+")]
        assert sum([3000, 3000, 3000, 3000, 7000][i] for i in ids) <= 6000 or len(ids) == 1
        assert [t[0] for t in p.turns] == [f"q{i}" for i in ids]
        assert p.audios == [Path(f"{i}.wav") for i in ids]
        if 3 in ids:
            assert p.inserted_id == 2 * ids.index(3)


def test_load_global_cmvn(model, tmp_path):
    from paperzoo_vita.modeling_vita import load_global_cmvn

    # 4 frames with values 1, 2, 3, 6 in every bin: mean 3, var (1+4+9+36)/4 - 9 = 3.5
    stats = {"mean_stat": [12.0] * 80, "var_stat": [50.0] * 80, "frame_num": 4}
    path = tmp_path / "global_cmvn"
    path.write_text(json.dumps(stats))
    load_global_cmvn(model, str(path))
    torch.testing.assert_close(model.audio_encoder.cmvn.mean, torch.full((80,), 3.0))
    torch.testing.assert_close(model.audio_encoder.cmvn.istd, torch.full((80,), 3.5**-0.5))
    path.write_text(json.dumps({"mean_stat": [1.0]}))
    with pytest.raises(ValueError, match="needs mean_stat"):
        load_global_cmvn(model, str(path))


def test_processor_reads_a_video_file(model, tok, tmp_path):
    from paperzoo_vita.processing_vita import VitaProcessor

    path = write_video(tmp_path / "v.mp4", np.zeros((70, 64, 64, 3), np.uint8), 10)  # 7 s -> 7 frames
    processor = VitaProcessor.from_model(model, tok, system_prompts={"image": "", "video": "", "lang": ""})
    out = processor(text=["<video>\nwhat ?"], videos=[str(path)])
    assert out["pixel_values"].shape == (7, 3, 56, 56)
    assert int((out["input_ids"][0] == model.config.image_token_id).sum()) == 7 * 4
