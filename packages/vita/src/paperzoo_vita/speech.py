"""Real speech for the mini: espeak-ng synthesis, cached outside the results, and the noise clips.

espeak-ng is a system program (Debian: ``apt-get install -y espeak-ng``); :func:`require_espeak` is the one place that
looks for it and says how to install it. A clip is a pure function of (espeak-ng version, voice, rate, pitch, text):
the 22,050 Hz output is resampled to 16 kHz with :func:`paperzoo_vita.audio.resample` and stored as ``.npy`` under
:func:`cache_dir` (``$PAPERZOO_VITA_CACHE``, else ``~/.cache/paperzoo-vita/espeak``), so a rerun reads it back.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

from paperzoo_shared.errors import UserError

ESPEAK_MISSING = (
    "espeak-ng is not installed (the vita mini synthesizes its spoken questions with it): "
    "install it with `apt-get install -y espeak-ng` (Debian/Ubuntu) and rerun"
)


def require_espeak() -> str:
    """The path of ``espeak-ng``, or a :class:`UserError` with :data:`ESPEAK_MISSING`."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise UserError(ESPEAK_MISSING)
    return path


@lru_cache(maxsize=1)
def espeak_version() -> str:
    out = subprocess.run([require_espeak(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cache_dir() -> Path:
    return Path(os.environ.get("PAPERZOO_VITA_CACHE", Path.home() / ".cache" / "paperzoo-vita")) / "espeak"


def read_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV bytes -> float32 waveform in [-1, 1) and its sample rate."""
    with wave.open(io.BytesIO(data)) as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise ValueError(
                f"expected mono 16-bit WAV, got {handle.getnchannels()} channels of {handle.getsampwidth()} bytes"
            )
        rate = handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def synthesize(text: str, voice: str, rate: int, pitch: int, cache: Path | None = None) -> np.ndarray:
    """espeak-ng speaking ``text`` as a 16 kHz float32 waveform with the leading and trailing silence espeak adds
    trimmed; read from / written to the cache."""
    import torch

    from paperzoo_vita.audio import SAMPLE_RATE, resample

    key = hashlib.sha256(repr((espeak_version(), voice, rate, pitch, text)).encode()).hexdigest()[:32]
    path = (cache or cache_dir()) / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    run = subprocess.run(
        [require_espeak(), "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=False,
    )
    if run.returncode != 0 or not run.stdout:
        raise UserError(f"espeak-ng failed on voice {voice!r}: {run.stderr.decode(errors='replace').strip()}")
    samples, sr = read_wav_bytes(run.stdout)
    voiced = np.flatnonzero(np.abs(samples) > 1e-3)
    if voiced.size == 0:
        raise UserError(f"espeak-ng produced silence for {text!r} with voice {voice!r}")
    samples = samples[voiced[0] : voiced[-1] + 1]
    out = resample(torch.from_numpy(samples.copy()), sr, SAMPLE_RATE).numpy().astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def coloured_noise(rng: np.random.Generator, n: int, colour: str, rms: float) -> np.ndarray:
    """White (flat spectrum) or brown (integrated white, high-passed by removing the mean) noise at ``rms``."""
    x = rng.standard_normal(n)
    if colour == "brown":
        x = np.cumsum(x)
        x = x - np.linspace(x[0], x[-1], n)  # no drift: the ends meet
    elif colour != "white":
        raise ValueError(f"noise colour must be white or brown, got {colour!r}")
    x = x - x.mean()
    return (x * (rms / max(float(np.sqrt(np.mean(x**2))), 1e-12))).astype(np.float32)


def scale_peak(x: np.ndarray, peak: float) -> np.ndarray:
    return (x * (peak / max(float(np.abs(x).max()), 1e-12))).astype(np.float32)
