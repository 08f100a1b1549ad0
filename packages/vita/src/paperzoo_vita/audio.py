"""Audio frontend of VITA: 16 kHz waveform -> 80-bin Kaldi-compatible log-mel fbank (notes §1.2).

The release calls ``torchaudio.compliance.kaldi.fbank(wave * 2**15, num_mel_bins=80, frame_length=25,
frame_shift=10, dither=..., energy_floor=0.0, sample_frequency=16000)``. No torchaudio wheel matches the torch of this
project (torch 2.14; the registry's newest torchaudio is 2.11.1 and pins its own torch), so :func:`kaldi_fbank` is a
from-scratch implementation of Kaldi's ``compute-fbank-feats`` defaults used there: snip-edges framing, optional dither,
DC removal, pre-emphasis 0.97, Povey window, FFT size rounded up to a power of two, power spectrum, Kaldi's triangular
mel banks (20 Hz to Nyquist, mel = 1127 ln(1 + f / 700)), log with a floor at float32 eps. The test suite compares it
with numbers written by torchaudio 2.11.1's ``kaldi.fbank`` (``tests/fixtures/make_fbank_goldens.py``).

Token counts (notes §1.2): fbank frames ``T = 1 + (N - 400) // 160``; after the x4 subsampling ``((T - 1) // 2 - 1)
// 2``; after the stride-2 adapter ``(x - 1) // 2 + 1``: 1 s -> 98 -> 12, 2 s -> 198 -> 24, 10 s -> 998 -> 124.
"""

from __future__ import annotations

import math

import torch

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
EPS = torch.finfo(torch.float32).eps
WAVE_SCALE = 2**15  # the release scales [-1, 1] floats to 16-bit range before the fbank


def num_fbank_frames(
    num_samples: int, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT
) -> int:
    """Frames of Kaldi's snip-edges framing: 0 when the clip is shorter than one frame."""
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_shift


def encoder_output_length(fbank_frames: int) -> int:
    """Frames after Conv2dSubsampling4 (two k3/s2 convolutions)."""
    return max(0, ((fbank_frames - 1) // 2 - 1) // 2)


def adapter_output_length(encoder_frames: int) -> int:
    """Tokens after the right-padded k5/s2 Conv1d adapter."""
    return (encoder_frames - 1) // 2 + 1 if encoder_frames > 0 else 0


def audio_token_count(fbank_frames: int) -> int:
    """LLM tokens of a clip with ``fbank_frames`` fbank frames (12 per second, 12.5 in the limit)."""
    return adapter_output_length(encoder_output_length(fbank_frames))


def mel_scale(freq: torch.Tensor | float) -> torch.Tensor:
    return 1127.0 * torch.log1p(torch.as_tensor(freq, dtype=torch.float64) / 700.0)


def kaldi_mel_banks(
    num_bins: int, fft_size: int, sample_rate: float, low_freq: float = LOW_FREQ, high_freq: float = 0.0
) -> torch.Tensor:
    """``[num_bins, fft_size // 2 + 1]`` triangular filters, triangles in the mel domain (Kaldi ``MelBanks``);
    the Nyquist column is zero as in Kaldi (which uses only the first ``fft_size // 2`` bins)."""
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    half = fft_size // 2
    bin_freqs = torch.arange(half, dtype=torch.float64) * sample_rate / fft_size
    mel = mel_scale(bin_freqs)
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float64)[:, None]
    left, center, right = (
        mel_low + index * delta,
        mel_low + (index + 1) * delta,
        mel_low + (index + 2) * delta,
    )
    up = (mel[None] - left) / (center - left)
    down = (right - mel[None]) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.cat([banks, banks.new_zeros(num_bins, 1)], dim=1)


def povey_window(length: int) -> torch.Tensor:
    """Kaldi's default window: a Hann window (periodic=False) raised to the power 0.85."""
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))).pow(0.85)


def kaldi_fbank(
    wave: torch.Tensor,
    num_mel_bins: int = 80,
    sample_rate: int = SAMPLE_RATE,
    frame_length: int = FRAME_LENGTH,
    frame_shift: int = FRAME_SHIFT,
    dither: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log-mel fbank ``[T, num_mel_bins]`` (float32) of a 1-D waveform already in Kaldi's 16-bit scale.

    Matches ``torchaudio.compliance.kaldi.fbank`` with its defaults (``snip_edges=True``, ``remove_dc_offset=True``,
    ``preemphasis_coefficient=0.97``, ``window_type='povey'``, ``round_to_power_of_two=True``, ``use_power=True``,
    ``use_log_fbank=True``, ``low_freq=20``, ``high_freq=0``) and ``energy_floor=0``. A clip shorter than one frame
    gives ``[0, num_mel_bins]``.
    """
    if wave.dim() != 1:
        raise ValueError(f"kaldi_fbank expects a 1-D waveform, got shape {tuple(wave.shape)}")
    frames_n = num_fbank_frames(wave.numel(), frame_length, frame_shift)
    if frames_n == 0:
        return wave.new_zeros(0, num_mel_bins, dtype=torch.float32)
    x = wave.to(torch.float64)
    frames = x.as_strided((frames_n, frame_length), (frame_shift, 1)).clone()
    if dither != 0.0:
        frames = frames + dither * torch.randn(frames.shape, generator=generator, dtype=torch.float64)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # Kaldi replicates the first sample
    frames = frames - PREEMPHASIS * previous
    frames = frames * povey_window(frame_length)[None]
    fft_size = 1 << (frame_length - 1).bit_length()
    spectrum = torch.fft.rfft(frames, n=fft_size).abs().pow(2)
    mel = spectrum @ kaldi_mel_banks(num_mel_bins, fft_size, float(sample_rate)).T
    return torch.log(torch.clamp(mel, min=EPS)).to(torch.float32)


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited (windowed-sinc, Hann, 6 zero crossings) resampling of a 1-D waveform; identity at equal rates."""
    if orig_rate == new_rate:
        return wave
    if orig_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {orig_rate}")
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    cutoff = min(up, down) * 0.99
    width = 6
    n_out = math.ceil(wave.numel() * up / down)
    t = torch.arange(n_out, dtype=torch.float64) * down / up  # input-sample positions of the outputs
    offsets = torch.arange(-width * down // min(up, down) - 1, width * down // min(up, down) + 2)
    idx = torch.floor(t)[:, None] + offsets[None]
    dist = (t[:, None] - idx) * cutoff / down
    window = torch.where(dist.abs() <= width, 0.5 + 0.5 * torch.cos(math.pi * dist / width), torch.zeros(()))
    kernel = torch.sinc(dist) * window * cutoff / down
    valid = (idx >= 0) & (idx < wave.numel())
    samples = wave.to(torch.float64)[idx.clamp(0, wave.numel() - 1).long()] * valid
    return (samples * kernel).sum(1).to(wave.dtype)


def waveform_to_fbank(
    wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, dither: float = 0.0, num_mel_bins: int = 80
) -> torch.Tensor:
    """The release's frontend: mono float waveform in [-1, 1] at any rate -> 16 kHz -> x 2^15 -> Kaldi fbank.

    Stereo input ``[C, N]`` is averaged to mono; another sample rate is resampled, not rejected."""
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.dim() == 2:
        wave = wave.mean(0)
    if wave.dim() != 1:
        raise ValueError(f"audio must be [samples] or [channels, samples], got shape {tuple(wave.shape)}")
    wave = resample(wave, int(sample_rate), SAMPLE_RATE)
    return kaldi_fbank(wave * WAVE_SCALE, num_mel_bins=num_mel_bins, dither=dither)
