"""§4.1 T2Vid 2: the renderer (geometry, determinism, overflow)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from paperzoo_t2vid.configuration import RenderConfig, SynthesisConfig
from paperzoo_t2vid.embedded import long_documents
from paperzoo_t2vid.modeling_t2vid import layout_chunk, render_chunk, split_tokens, wrap_words
from paperzoo_t2vid.synthesize import synthesize
from paperzoo_t2vid.text import tokenize


def test_wrap_and_layout_by_hand(mono) -> None:  # type: ignore[no-untyped-def]
    # each word costs 10 * (len + 1) px; width 448 - 40 = 408 px
    text = "aaaa " * 12  # 50 px per word: 8 words = 400 px fit, the 9th does not
    assert wrap_words(text, mono, 408) == ["aaaa " * 7 + "aaaa", "aaaa aaaa aaaa aaaa"]
    layout = layout_chunk(text, mono)
    assert layout.heights == (20.0, 20.0)
    assert layout.ys == ((448 - 40) / 2, (448 - 40) / 2 + 20)  # vertically centred, no leading
    assert layout.x == 20 and not layout.overflow


def test_overflow_is_detected_and_explained(mono) -> None:  # type: ignore[no-untyped-def]
    tall = layout_chunk("aaaa " * 8 * 23, mono)  # 23 lines of 20 px = 460 px > 448
    assert len(tall.lines) == 23 and tall.overflow_height and not tall.overflow_width
    assert "460 px tall > canvas 448 px" in tall.reason()
    fits = layout_chunk("aaaa " * 8 * 22, mono)  # 440 px: fits
    assert not fits.overflow
    wide = layout_chunk("b" * 41 + " c", mono)  # 410 px word on its own line
    assert wide.lines == ("b" * 41, "c") and wide.overflow_width and not wide.overflow_height


def test_frame_size_margins_and_centring(font) -> None:  # type: ignore[no-untyped-def]
    chunk = split_tokens(tokenize(long_documents("longalpaca", 1, 0)[0]["context"]), 115)[0]
    image, layout = render_chunk(chunk, font)
    assert image.size == (448, 448) and image.mode == "RGB"
    ink = np.asarray(image.convert("L")) < 128
    cols = np.flatnonzero(ink.any(axis=0))
    rows = np.flatnonzero(ink.any(axis=1))
    assert cols.min() >= 20 and cols.max() <= 428
    top, bottom = rows.min(), 447 - rows.max()
    assert abs(top - bottom) <= max(layout.heights)
    assert not layout.overflow


def test_render_is_deterministic(font) -> None:  # type: ignore[no-untyped-def]
    chunk = "The quick brown fox jumps over the lazy dog , again and again ."
    first = hashlib.sha256(render_chunk(chunk, font)[0].tobytes()).hexdigest()
    second = hashlib.sha256(render_chunk(chunk, font)[0].tobytes()).hexdigest()
    other = hashlib.sha256(render_chunk(chunk + " !", font)[0].tobytes()).hexdigest()
    assert first == second != other


def test_115_tokens_of_prose_fit_at_size_20_and_serial_equals_parallel(font_path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    docs = long_documents("longalpaca", 4, 1, (500, 900))
    serial = synthesize(docs, SynthesisConfig(workers=1, progress=False), tmp_path / "a")
    parallel = synthesize(docs, SynthesisConfig(workers=2, progress=False), tmp_path / "b")
    assert serial.digests == parallel.digests and len(serial.digests) == 4
    assert serial.report.summary()["overflow"] == 0
    assert 0 < serial.max_text_height <= 448
    a = (tmp_path / "a" / serial.records[0]["image"]["<image_00>"]).read_bytes()
    b = (tmp_path / "b" / parallel.records[0]["image"]["<image_00>"]).read_bytes()
    assert a == b  # the PNG files, byte for byte


def test_overflowing_sample_is_dropped_and_reported(font_path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    long_words = " ".join(["incomprehensibilities"] * 115)
    docs = [{"context": long_words, "question": "Why?", "answer": "Because."}]
    drop = synthesize(docs, SynthesisConfig(workers=1, progress=False), tmp_path / "drop")
    assert drop.records == [] and drop.report.summary()["overflow"] == 1
    assert drop.report.samples[0].reasons[0][0] == "overflow"
    assert not (tmp_path / "drop" / "frames" / "LongAlpaca_00000").exists()
    keep_cfg = SynthesisConfig(render=RenderConfig(on_overflow="keep"), workers=1, progress=False)
    keep = synthesize(docs, keep_cfg, tmp_path / "keep")
    assert len(keep.records) == 1 and keep.report.samples[0].reasons[0][0] == "overflow"


def test_missing_font_is_one_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SynthesisConfig(render=RenderConfig(font=str(tmp_path / "Arial.ttf")), progress=False)
    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core"):
        synthesize([], cfg, tmp_path / "out")
