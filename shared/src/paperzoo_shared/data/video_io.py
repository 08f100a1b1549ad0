"""Video probing, frame reading and writing.

Two readers sit behind one interface: decord (fast random access, what LLaVA-style video pipelines use)
and OpenCV (always installed). ``backend="auto"`` picks decord when it imports and OpenCV otherwise.

Conventions:

* Frames are returned as ``(T, H, W, 3)`` ``uint8`` **RGB**, in the order of the requested indices.
* Frame ``i`` is at ``i / fps`` seconds (:func:`frame_timestamps`); ``duration_s = num_frames / fps``.
* The OpenCV reader decodes sequentially up to the largest requested index (exact, but slow for frames
  deep into long videos); install decord (``pip install paperzoo-shared[video]``) for random access.
* :func:`write_video` encodes MPEG-4 Part 2 (fourcc ``mp4v``) in an ``.mp4`` container, the codec every
  OpenCV wheel can write and that decord, OpenCV and ffmpeg read back. H.264 (``avc1``) is not available
  in the opencv-python wheels. The codec is lossy: solid colours come back within a few levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from paperzoo_shared.data.errors import DataError, require_file

Backend = Literal["auto", "decord", "opencv"]

_DECORD_MISSING = (
    "backend='decord' needs the decord package; install it with `pip install paperzoo-shared[video]` "
    "or use backend='opencv'."
)


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts about a video file.

    Attributes:
        num_frames: number of decodable frames reported by the backend.
        fps: average frame rate.
        duration_s: ``num_frames / fps``.
        width, height: frame size in pixels.
        backend: ``"decord"`` or ``"opencv"``, the reader that produced these numbers.
    """

    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    backend: str


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "decord", "opencv"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'opencv', got {backend!r}.")
    if backend == "opencv":
        return "opencv"
    if _decord_available():
        return "decord"
    if backend == "decord":
        raise ImportError(_DECORD_MISSING)
    return "opencv"


def _unreadable(path: Path, backend: str, detail: str = "") -> DataError:
    suffix = f" ({detail})" if detail else ""
    return DataError(
        f"could not read video file {path} with {backend}{suffix}: it is empty, truncated or not a video; "
        "re-create or re-download it."
    )


def _open_decord(path: Path) -> Any:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    except Exception as err:  # decord raises RuntimeError or its own DECORDError for any bad input
        raise _unreadable(path, "decord") from err
    if len(reader) == 0:
        raise _unreadable(path, "decord", "no frames")
    return reader


def _decord_info(reader: Any, path: Path) -> VideoInfo:
    num_frames = len(reader)
    fps = float(reader.get_avg_fps())
    if not fps > 0:
        raise _unreadable(path, "decord", f"frame rate {fps}")
    try:
        height, width = reader[0].shape[:2]
    except Exception as err:
        raise _unreadable(path, "decord", "the first frame does not decode") from err
    return VideoInfo(num_frames, fps, num_frames / fps, int(width), int(height), "decord")


def _open_opencv(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise _unreadable(path, "opencv")
    return capture


def _opencv_info(capture: cv2.VideoCapture, path: Path) -> VideoInfo:
    num_frames = round(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    width = round(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = round(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if num_frames <= 0 or not fps > 0 or width <= 0 or height <= 0:
        raise _unreadable(path, "opencv", f"{num_frames} frames at {fps} fps, {width}x{height}")
    return VideoInfo(num_frames, fps, num_frames / fps, width, height, "opencv")


def probe_video(path: str | Path, backend: Backend = "auto") -> VideoInfo:
    """Return frame count, frame rate and size of a video file.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: the file is not a readable video.
        ImportError: ``backend="decord"`` and decord is not installed.
    """
    path = require_file(path, "video")
    name = _resolve_backend(backend)
    if name == "decord":
        return _decord_info(_open_decord(path), path)
    capture = _open_opencv(path)
    try:
        return _opencv_info(capture, path)
    finally:
        capture.release()


def _as_indices(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(
            f"indices must be a 1-D sequence of integers, got shape {array.shape} {array.dtype}."
        )
    return array.astype(np.int64)


def _read_opencv(capture: cv2.VideoCapture, path: Path, indices: np.ndarray, info: VideoInfo) -> np.ndarray:
    out = np.empty((len(indices), info.height, info.width, 3), dtype=np.uint8)
    wanted: dict[int, list[int]] = {}
    for slot, index in enumerate(indices.tolist()):
        wanted.setdefault(index, []).append(slot)
    for index in range(max(wanted) + 1):
        if not capture.grab():
            raise _unreadable(path, "opencv", f"decoding stopped at frame {index} of {info.num_frames}")
        if index in wanted:
            ok, frame = capture.retrieve()
            if not ok:
                raise _unreadable(path, "opencv", f"frame {index} does not decode")
            out[wanted[index]] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return out


def read_frames(
    path: str | Path, indices: Sequence[int] | np.ndarray, *, backend: Backend = "auto"
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as ``(T, H, W, 3)`` uint8 RGB.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: the file is not a readable video, or decoding fails part-way.
        IndexError: an index is outside ``[0, num_frames - 1]``.
        ImportError: ``backend="decord"`` and decord is not installed.
    """
    path = require_file(path, "video")
    index_array = _as_indices(indices)
    name = _resolve_backend(backend)
    reader = _open_decord(path) if name == "decord" else _open_opencv(path)
    try:
        info = _decord_info(reader, path) if name == "decord" else _opencv_info(reader, path)
        bad = index_array[(index_array < 0) | (index_array >= info.num_frames)]
        if bad.size:
            raise IndexError(
                f"frame indices {bad.tolist()[:5]} are out of range for video file {path}, which has "
                f"{info.num_frames} frames; valid indices are 0..{info.num_frames - 1}."
            )
        if index_array.size == 0:
            return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)
        if name == "opencv":
            return _read_opencv(reader, path, index_array, info)
        try:
            return reader.get_batch(index_array.tolist()).asnumpy()
        except Exception as err:
            raise _unreadable(path, "decord", "decoding failed part-way") from err
    finally:
        if name == "opencv":
            reader.release()


def frame_timestamps(info: VideoInfo, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Presentation time in seconds of each frame index, ``index / fps`` (float64)."""
    return np.asarray(indices, dtype=np.float64) / info.fps


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as an MPEG-4 (``mp4v``) ``.mp4`` file.

    Height and width must be even: the encoder silently crops odd sizes by one pixel. Parent
    directories are created.

    Returns:
        The path written.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"write_video writes .mp4 files; got {path}.")
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(
            f"write_video({path}) needs a non-empty (T, H, W, 3) uint8 RGB array, got {frames.shape} {frames.dtype}."
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"write_video({path}) needs an even height and width, got {height}x{width}.")
    if not fps > 0:
        raise ValueError(f"write_video({path}) needs fps > 0, got {fps}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise DataError(
            f"OpenCV could not open a mp4v writer for {path}; check that the directory is writable."
        )
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise DataError(f"OpenCV wrote no data to {path}; check the disk space and permissions.")
    return path
