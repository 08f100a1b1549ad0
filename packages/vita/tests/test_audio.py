"""Audio frontend and encoder: frame and token counts (notes §1.2 worked values), the Kaldi fbank against
torchaudio's (fixture), exact encoder output shapes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from paperzoo_vita.audio import (
    audio_token_count,
    kaldi_fbank,
    kaldi_mel_banks,
    num_fbank_frames,
    povey_window,
    resample,
    waveform_to_fbank,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("seconds", "frames", "tokens"), [(1, 98, 12), (2, 198, 24), (10, 998, 124), (30, 2998, 374)]
)
def test_frame_and_token_counts(seconds, frames, tokens):
    assert num_fbank_frames(seconds * 16000) == frames
    assert audio_token_count(frames) == tokens


def test_short_clips():
    assert num_fbank_frames(399) == 0 and num_fbank_frames(400) == 1
    assert audio_token_count(0) == 0
    assert kaldi_fbank(torch.zeros(100)).shape == (0, 80)


def test_fbank_matches_torchaudio_fixture():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make", FIXTURES / "make_fbank_goldens.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    golden = json.loads((FIXTURES / "fbank_goldens.json").read_text())
    ours = kaldi_fbank(make.signal())
    assert list(ours.shape) == golden["shape"] == [58, 80]
    torch.testing.assert_close(ours[golden["rows"]], torch.tensor(golden["values"]), atol=2e-4, rtol=1e-5)


def test_hand_computed_pieces():
    # Povey window: (0.5 - 0.5 cos(2 pi n / 399))^0.85 -> 0 at the ends, 1 in the middle of an odd window
    w = povey_window(5)
    assert w[0] == 0 and w[2] == pytest.approx(1.0) and w[1] == pytest.approx(0.5**0.85)
    # mel banks: 2 bins over 20 Hz .. 8 kHz, centres at 1/3 and 2/3 of the mel range
    banks = kaldi_mel_banks(2, 512, 16000.0)
    mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    lo, hi = mel(20), mel(8000)
    centre0 = lo + (hi - lo) / 3
    k = 40  # bin 40 = 1250 Hz
    m = mel(40 * 16000 / 512)
    expected = min(
        (m - lo) / (centre0 - lo), (lo + 2 * (hi - lo) / 3 - m) / (lo + 2 * (hi - lo) / 3 - centre0)
    )
    assert banks[0, k].item() == pytest.approx(max(0.0, expected), rel=1e-9)
    assert banks.shape == (2, 257) and banks[:, 256].abs().sum() == 0  # Nyquist column unused


def test_resampled_not_rejected():
    t8 = torch.arange(8000) / 8000
    wave = 0.5 * torch.sin(2 * math.pi * 300 * t8)
    fb8 = waveform_to_fbank(wave, sample_rate=8000)
    assert fb8.shape == (98, 80)  # 1 s at any rate gives the 16 kHz frame count
    up = resample(wave, 8000, 16000)
    ref = 0.5 * torch.sin(2 * math.pi * 300 * torch.arange(16000) / 16000)
    assert (up - ref)[100:-100].abs().max() < 5e-3


def test_encoder_output_shapes_tiny(model):
    feats = torch.randn(2, 198, 80)
    mask = torch.ones(2, 198, dtype=torch.bool)
    mask[1, 98:] = False  # a 1 s clip padded to 2 s
    enc, enc_mask = model.audio_encoder(feats, mask)
    assert enc.shape == (2, 48, 32) and enc_mask.shape == (2, 48)  # ((198-1)//2-1)//2 = 48, width 32
    assert enc_mask.sum(1).tolist() == [48, 23]  # ((98-1)//2-1)//2 = 23
    tokens, tok_mask = model.audio_adapter(enc, enc_mask)
    assert tokens.shape == (2, 24, 64) and tok_mask.sum(1).tolist() == [
        24,
        12,
    ]  # LLM width 64; 24 / 12 tokens


def test_encoder_output_shapes_real_size():
    from paperzoo_vita.configuration import VitaAudioConfig
    from paperzoo_vita.modeling_vita import Conv2dSubsampling4, WhaleAdapter

    cfg = VitaAudioConfig()
    with torch.device("meta"):
        sub = Conv2dSubsampling4(80, 1024)
        adapter = WhaleAdapter(cfg, 4096)
        x, mask = sub(torch.empty(1, 998, 80), torch.ones(1, 998, dtype=torch.bool))
        y, _ = adapter(x)
    assert sub.out.in_features == 19456 and tuple(x.shape) == (1, 248, 1024) and tuple(mask.shape) == (1, 248)
    assert tuple(y.shape) == (1, 124, 4096)
    assert adapter.conv.weight.shape == (2048, 1024, 5) and adapter.norm.eps == 1e-3


def test_silent_clip_is_defined():
    # digital silence: every power is 0, so every log-mel value sits at the floor log(float32 eps)
    fb = waveform_to_fbank(torch.zeros(16000))
    assert fb.shape == (98, 80)
    torch.testing.assert_close(fb, torch.full((98, 80), math.log(torch.finfo(torch.float32).eps)))
