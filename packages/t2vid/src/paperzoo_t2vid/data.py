"""File IO of the pipeline: source JSON readers, the per-sample report, the JSON writer and real-video
extraction (decord through ``paperzoo_shared.data.video_io``).

Nothing is dropped silently: every sample that does not reach the output gets a :class:`SampleReport` with
its reason, and :class:`Report.summary` counts them by status and reason code.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo_shared.data import DataError, probe_video, read_frames, safe_join, write_image
from paperzoo_shared.data.errors import require_file
from paperzoo_t2vid.modeling_t2vid import SampleError, one_fps_indices, seq_frames, to_multi_image

STATUSES = ("kept", "invalid", "filtered", "overflow", "corrupt")


@dataclass
class SampleReport:
    """What happened to one source sample."""

    index: int
    id: str
    status: str
    """kept | invalid (missing/ill-typed fields) | filtered (a filter rule) | overflow (text did not fit a
    frame) | corrupt (unreadable video)."""
    reasons: list[tuple[str, str]] = field(default_factory=list)
    """(code, message) pairs."""
    n_frames: int = 0


@dataclass
class Report:
    """Every sample's fate and the counts."""

    samples: list[SampleReport] = field(default_factory=list)

    def add(self, sample: SampleReport) -> None:
        if sample.status not in STATUSES:
            raise ValueError(f"unknown status {sample.status!r}")
        self.samples.append(sample)

    def summary(self) -> dict[str, Any]:
        statuses = Counter(s.status for s in self.samples)
        reasons = Counter(code for s in self.samples if s.status != "kept" for code, _ in s.reasons)
        return {
            "total": len(self.samples),
            **{status: statuses.get(status, 0) for status in STATUSES},
            "reasons": dict(sorted(reasons.items())),
        }

    def write(self, path: str | Path) -> Path:
        """One JSON line per sample, then nothing else (the summary goes to ``summary.json``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for sample in sorted(self.samples, key=lambda s: s.index):
                handle.write(json.dumps(asdict(sample), ensure_ascii=False) + "\n")
        return path


def read_records(path: str | Path) -> list[Any]:
    """A JSON list or a JSON-lines file of records (a DataError names the file and line)."""
    path = require_file(path, "source JSON")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error})") from error
        return list(data)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}: not valid JSON ({error})") from error
    return records


def write_json(path: str | Path, data: Any) -> Path:
    """Writes JSON atomically (a temporary file, then a rename), indented as the release files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def validate_multi_image(records: Sequence[Any], root: str | Path, *, source: str | Path) -> None:
    """Checks a multi-image JSON against the schema and that every frame path stays inside ``root`` and
    exists (paths are joined with :func:`safe_join`)."""
    for i, record in enumerate(records):
        where = f"{source} (entry {i})"
        if not isinstance(record, Mapping) or set(record) != {"image", "conversations"}:
            raise DataError(f"{where}: a record has exactly the keys 'image' and 'conversations'")
        images, turns = record["image"], record["conversations"]
        if not isinstance(images, Mapping) or not images:
            raise DataError(f"{where}: 'image' must be a non-empty mapping of <image_xx> to paths")
        keys = list(images)
        expected = [f"<image_{k:02d}>" for k in range(len(keys))]
        if keys != expected:
            raise DataError(f"{where}: image keys must be {expected[0]}..{expected[-1]} in order")
        first = turns[0]["content"] if turns else ""
        if not first.startswith("".join(k + "\n" for k in keys)):
            raise DataError(f"{where}: the first user turn must start with the placeholders, one per line")
        for j, turn in enumerate(turns):
            if turn.get("role") != ("user" if j % 2 == 0 else "assistant") or not isinstance(
                turn.get("content"), str
            ):
                raise DataError(f"{where}: turn {j} must be a {'user' if j % 2 == 0 else 'assistant'} turn")
        for value in images.values():
            path = safe_join(root, value, source=source, entry=i)
            if not path.is_file():
                raise DataError(f"{where}: frame {value} does not exist under {root}")


# ----------------------------------------------------------------------------------------------------
# Real videos
# ----------------------------------------------------------------------------------------------------


@dataclass
class VideoSample:
    """The outcome of extracting one video's frames."""

    frame_paths: list[str]
    """Relative to the output root."""
    n_extracted: int
    """Frames of the 1 fps extraction, before the 24-frame sampling."""


def extract_video(
    video_path: Path,
    out_dir: Path,
    rel_dir: str,
    *,
    rate: float = 1.0,
    num_frames: int = 24,
    backend: str = "auto",
) -> VideoSample:
    """1 fps frames (nearest frame to each second), then :func:`seq_frames` middle-of-segment sampling; only
    the sampled frames are decoded and written (``frame_0001.png``.. as ffmpeg names them)."""
    info = probe_video(video_path, backend=backend)  # type: ignore[arg-type]
    grid = one_fps_indices(info.num_frames, info.fps, rate)
    if not grid:
        raise DataError(f"{video_path}: no frames to extract")
    chosen = seq_frames(len(grid), min(len(grid), num_frames))
    frames = read_frames(video_path, [grid[i] for i in chosen], backend=backend)  # type: ignore[arg-type]
    paths = []
    for second, frame in zip(chosen, frames, strict=True):
        rel = f"{rel_dir}/frame_{second + 1:04d}.png"
        write_image(out_dir / rel, np.ascontiguousarray(frame), channel_order="rgb")
        paths.append(rel)
    return VideoSample(paths, len(grid))


def convert_videos(
    records: Iterable[Any],
    video_root: str | Path,
    out_dir: str | Path,
    *,
    source: str | Path,
    rate: float = 1.0,
    num_frames: int = 24,
    backend: str = "auto",
) -> tuple[list[dict[str, Any]], Report]:
    """LLaVA-style video records (``video``, ``conversations`` [{from, value}]) to the multi-image schema.

    Paths in ``video`` are joined to ``video_root`` with :func:`safe_join`; a record without the fields, a
    missing or corrupt video is reported (status ``invalid`` or ``corrupt``) and counted.
    """
    out_dir = Path(out_dir)
    report = Report()
    output: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        sid = str(record.get("id", index)) if isinstance(record, Mapping) else str(index)
        try:
            if not isinstance(record, Mapping) or not isinstance(record.get("video"), str):
                raise SampleError("missing field 'video' (a path relative to the video root)")
            turns = record.get("conversations")
            if (
                not isinstance(turns, list)
                or not turns
                or not all(isinstance(t, Mapping) and isinstance(t.get("value"), str) for t in turns)
            ):
                raise SampleError("missing field 'conversations' (a list of {from, value} turns)")
        except SampleError as error:
            report.add(SampleReport(index, sid, "invalid", [("missing_field", str(error))]))
            continue
        try:
            path = safe_join(video_root, record["video"], source=source, entry=sid)
            stem = os.path.splitext(record["video"])[0].replace(os.sep, "_").replace("/", "_")
            extracted = extract_video(
                path, out_dir, f"frames/{stem}", rate=rate, num_frames=num_frames, backend=backend
            )
        except (DataError, OSError, RuntimeError) as error:
            report.add(SampleReport(index, sid, "corrupt", [("video", " ".join(str(error).split()))]))
            continue
        output.append(to_multi_image(turns, extracted.frame_paths))
        report.add(SampleReport(index, sid, "kept", n_frames=len(extracted.frame_paths)))
    return output, report
