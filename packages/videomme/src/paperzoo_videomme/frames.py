"""Frame and subtitle extraction per video, in parallel worker processes.

:func:`decode_video` is what a worker runs for one video: probe it, pick the frame indices with the
configured sampler, decode them (decord through ``paperzoo_shared.data.video_io``), optionally shrink
them, and compute the subtitle lines of the configured mode. Every failure becomes an
:class:`~paperzoo_videomme.data.ItemError` in the result, never an exception, so one corrupt file cannot
end a run. :class:`FrameLoader` feeds jobs to a process pool with bounded prefetch and yields results in
job order. This module imports no torch, so worker processes start quickly.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paperzoo_shared.data.errors import DataError
from paperzoo_shared.data.video_io import probe_video, read_frames
from paperzoo_videomme.data import ItemError
from paperzoo_videomme.modeling_videomme import (
    LMMS_EVAL_NO_SUBTITLES,
    SUBTITLE_MODES,
    full_subtitle_lines,
    lmms_eval_subtitle_lines,
    official_subtitle_lines,
    parse_srt,
    read_srt_text,
    sample_frame_indices,
)


@dataclass(frozen=True)
class DecodeJob:
    """Everything a worker needs for one video (picklable)."""

    video_key: str
    video_path: str
    subtitle_path: str | None = None
    sampler: str = "official"
    num_frames: int = 8
    target_fps: float = 1.0
    max_frames: int | None = None
    subtitles: str = "none"
    lmms_eval_subtitle_frames: int = 32
    backend: str = "auto"
    max_side: int | None = None


@dataclass
class DecodedVideo:
    video_key: str
    frames: np.ndarray | None = None
    indices: list[int] = field(default_factory=list)
    num_frames: int = 0
    fps: float = 0.0
    backend: str = ""
    subtitles: list[str] | None = None
    error: ItemError | None = None
    """Set when the video could not be read: its questions are not evaluated."""
    subtitle_error: ItemError | None = None
    """Set when the subtitle file could not be read: the video is evaluated without subtitles."""
    seconds: float = 0.0


def _shrink(frames: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    height, width = frames.shape[1:3]
    scale = max_side / max(height, width)
    if scale >= 1:
        return frames
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])


def subtitle_lines(job: DecodeJob, indices: list[int], num_frames: int, fps: float) -> list[str] | None:
    """The subtitle lines of ``job.subtitles`` mode for these frames (``None`` for mode ``"none"``)."""
    if job.subtitles == "none":
        return None
    if job.subtitles not in SUBTITLE_MODES:
        raise ValueError(
            f"unknown subtitle mode {job.subtitles!r}; choose one of {', '.join(SUBTITLE_MODES)}."
        )
    if job.subtitle_path is None:
        return [LMMS_EVAL_NO_SUBTITLES] if job.subtitles == "lmms_eval" else []
    content = read_srt_text(job.subtitle_path)
    if job.subtitles == "official":
        return official_subtitle_lines(parse_srt(content), indices, fps)
    if job.subtitles == "lmms_eval":
        return lmms_eval_subtitle_lines(content, num_frames, fps, job.lmms_eval_subtitle_frames)
    return full_subtitle_lines(content)


def decode_video(job: DecodeJob) -> DecodedVideo:
    """Decode one video's frames and subtitles; failures are returned as error records."""
    start = time.perf_counter()
    out = DecodedVideo(job.video_key)
    try:
        info = probe_video(job.video_path, backend=job.backend)
        out.num_frames, out.fps, out.backend = info.num_frames, info.fps, info.backend
        out.indices = sample_frame_indices(
            job.sampler,
            info.num_frames,
            k=job.num_frames,
            video_fps=info.fps,
            target_fps=job.target_fps,
            max_frames=job.max_frames,
        )
        frames = read_frames(job.video_path, out.indices, backend=job.backend)
        out.frames = _shrink(frames, job.max_side) if job.max_side else frames
    except (DataError, IndexError, ValueError, ImportError, RuntimeError) as err:
        out.error = ItemError(
            "corrupt_video", job.video_key, f"video {job.video_key}: {err}", str(job.video_path)
        )
        out.frames = None
        out.seconds = time.perf_counter() - start
        return out
    try:
        out.subtitles = subtitle_lines(job, out.indices, out.num_frames, out.fps)
    except (DataError, ValueError, IndexError) as err:
        out.subtitles = [] if job.subtitles != "none" else None
        out.subtitle_error = ItemError(
            "bad_subtitle", job.video_key,
            f"subtitle file {job.subtitle_path} could not be read ({err}); the video is evaluated without "
            "subtitles. Fix the file (UTF-8 SubRip) and rerun.", str(job.subtitle_path), dropped=False,
        )  # fmt: skip
    out.seconds = time.perf_counter() - start
    return out


class FrameLoader:
    """Yields :func:`decode_video` results in job order, decoding ahead in ``num_workers`` processes.

    ``num_workers=0`` decodes in the calling process. At most ``prefetch`` (default ``2 * num_workers``)
    jobs are in flight, which bounds the memory held by decoded frames. ``start_method`` defaults to
    ``"spawn"`` (safe with torch and threads in the parent; the workers import only numpy, OpenCV and decord).
    """

    def __init__(
        self, num_workers: int = 0, *, prefetch: int | None = None, start_method: str = "spawn"
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        self.num_workers = num_workers
        self.prefetch = prefetch or max(1, 2 * num_workers)
        self.start_method = start_method

    def imap(self, jobs: Iterable[DecodeJob]) -> Iterator[DecodedVideo]:
        if self.num_workers == 0:
            for job in jobs:
                yield decode_video(job)
            return
        context = multiprocessing.get_context(self.start_method)
        pending: deque[Future[DecodedVideo]] = deque()
        iterator = iter(jobs)
        with ProcessPoolExecutor(max_workers=self.num_workers, mp_context=context) as pool:
            for job in iterator:
                pending.append(pool.submit(decode_video, job))
                if len(pending) >= self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def jobs_for(videos: Iterable[object], **protocol: object) -> list[DecodeJob]:
    """Decode jobs for :class:`~paperzoo_videomme.data.VideoEntry` objects with the protocol settings."""
    jobs = []
    for video in videos:
        subtitle_path = getattr(video, "subtitle_path", None)
        jobs.append(
            DecodeJob(
                video_key=video.videoID,  # type: ignore[attr-defined]
                video_path=str(Path(video.video_path)),  # type: ignore[attr-defined]
                subtitle_path=str(subtitle_path) if subtitle_path is not None else None,
                **protocol,  # type: ignore[arg-type]
            )
        )
    return jobs
