"""Tests of paperzoo_shared.data.video_io on a tiny video written by the test."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from paperzoo_shared.data import (
    DataError,
    DataFileNotFoundError,
    VideoInfo,
    frame_timestamps,
    probe_video,
    read_frames,
    write_video,
)

# 12 distinct solid RGB colours, one per frame.
COLOURS = np.array(
    [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [0, 255, 255],
        [255, 0, 255],
        [128, 128, 128],
        [255, 255, 255],
        [0, 0, 0],
        [255, 128, 0],
        [128, 0, 255],
        [0, 128, 64],
    ],
    dtype=np.uint8,
)
FPS = 8.0
TOLERANCE = 12  # mp4v is lossy; solid colours come back within a few levels

HAS_DECORD = importlib.util.find_spec("decord") is not None
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed (paperzoo-shared[video])")
BACKENDS = ["opencv", pytest.param("decord", marks=needs_decord)]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = np.broadcast_to(COLOURS[:, None, None, :], (12, 32, 32, 3)).copy()
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, FPS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probe(video, backend):
    info = probe_video(video, backend=backend)
    assert info == VideoInfo(num_frames=12, fps=8.0, duration_s=1.5, width=32, height=32, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_all_frames_rgb(video, backend):
    frames = read_frames(video, range(12), backend=backend)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    mean = frames.reshape(12, -1, 3).mean(axis=1)
    assert np.abs(mean - COLOURS).max() <= TOLERANCE
    assert np.abs(frames.astype(int) - COLOURS[:, None, None, :]).max() <= TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_selection_order_and_repeats(video, backend):
    indices = [11, 0, 5, 5, 3]
    frames = read_frames(video, np.array(indices), backend=backend)
    assert frames.shape == (5, 32, 32, 3)
    assert np.abs(frames[:, 16, 16].astype(int) - COLOURS[indices]).max() <= TOLERANCE
    np.testing.assert_array_equal(frames[2], frames[3])
    assert read_frames(video, [], backend=backend).shape == (0, 32, 32, 3)


@needs_decord
def test_backends_agree(video):
    np.testing.assert_allclose(
        read_frames(video, [2, 7], backend="decord"), read_frames(video, [2, 7], backend="opencv"), atol=2
    )


def test_frame_timestamps():
    info = VideoInfo(num_frames=12, fps=8.0, duration_s=1.5, width=32, height=32, backend="opencv")
    np.testing.assert_array_equal(frame_timestamps(info, [0, 4, 11]), [0.0, 0.5, 1.375])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [[12], [0, -1]])
def test_out_of_range(video, backend, bad):
    with pytest.raises(IndexError, match=r"clip\.mp4.*0\.\.11"):
        read_frames(video, bad, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_garbage_and_truncated_files(video, tmp_path, backend):
    with pytest.raises(DataFileNotFoundError, match="missing.mp4"):
        probe_video(tmp_path / "missing.mp4", backend=backend)
    with pytest.raises(DataFileNotFoundError, match="missing.mp4"):
        read_frames(tmp_path / "missing.mp4", [0], backend=backend)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    for path in (garbage, truncated):
        with pytest.raises(DataError, match=path.name):
            probe_video(path, backend=backend)
        with pytest.raises(DataError, match=path.name):
            read_frames(path, [0], backend=backend)


def test_explicit_decord_missing_and_auto_fallback(video, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    with pytest.raises(ImportError, match=r"paperzoo-shared\[video\]"):
        probe_video(video, backend="decord")
    assert probe_video(video).backend == "opencv"


@needs_decord
def test_auto_prefers_decord(video):
    assert probe_video(video).backend == "decord"


def test_write_video_validation(tmp_path):
    ok = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), dtype=np.uint8), 8)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", ok.astype(np.float32), 8)
    with pytest.raises(ValueError, match=".mp4"):
        write_video(tmp_path / "f.avi", ok, 8)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "f.mp4", ok, 0)
