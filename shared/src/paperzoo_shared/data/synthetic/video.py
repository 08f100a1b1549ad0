"""Short videos of moving shapes with temporal multiple-choice questions and SRT subtitles.

Each video has 2-4 shapes of distinct classes and colours on a static smooth-noise background. Shapes
appear one after another (at least ``appear_gap_s`` apart), each moves in a straight line left, right, up
or down, some leave before the end, and exactly one changes colour part-way and stays to the end. The
event log (:class:`VideoEvent`) records all of it.

Questions use the Video-MME record fields (``question_id``, ``task_type``, ``question``, ``options``
prefixed ``"A. "``.. ``"D. "``, ``answer`` letter) and real Video-MME task-type names:

=================== ======================== ===============================================
kind                task_type                needs
=================== ======================== ===============================================
first_appearance    Temporal Perception      the order of appearance (time)
motion_direction    Action Recognition       two or more frames of one shape (time)
count               Counting Problem         the whole video: shapes that left are counted too
final_colour        Attribute Perception     the end of the video; the first colour is an option
presence            Object Recognition       any frame where the shape is visible
narration           Information Synopsis     the subtitles only: the narrated object is never drawn
=================== ======================== ===============================================

Subtitles carry one narration cue stating what is "behind the screen" plus one cue per appear, recolour
and leave event: generic filler lines by default (so visual questions cannot be answered from text), or
descriptions of the events with ``narrate_events=True``.

:func:`write_video_dataset` writes ``videos/<videoID>.mp4`` (:func:`~paperzoo_shared.data.video_io.write_video`,
mp4v), ``subtitles/<videoID>.srt``, ``questions.json`` (flat per-question records with the Video-MME
parquet columns; ``domain`` is ``"Film & Television"``, ``sub_category`` ``"Animation"``, ``url`` empty) and
``meta.json``. Video ``i`` (0-based) is drawn from a generator seeded with ``(seed, i)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo_shared.data.errors import DataError, require_file
from paperzoo_shared.data.synthetic.render import (
    COLOUR_NAMES,
    SHAPE_CLASSES,
    ShapeSpec,
    draw_shape,
    finish,
    sample_geometry,
    sample_rgb,
    shape_coverage,
    smooth_background,
)
from paperzoo_shared.data.video_io import write_video

GENERATOR_VERSION = "1.0.0"
TASK_TYPES: dict[str, str] = {
    "first_appearance": "Temporal Perception",
    "motion_direction": "Action Recognition",
    "count": "Counting Problem",
    "final_colour": "Attribute Perception",
    "presence": "Object Recognition",
    "narration": "Information Synopsis",
}
"""Question kind -> Video-MME task type."""
QUESTION_KINDS: tuple[str, ...] = tuple(TASK_TYPES)
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
NARRATION_OBJECTS: tuple[str, ...] = ("star", "heart", "hexagon", "diamond", "arrow", "moon")
"""Objects the narration mentions; none of them is ever drawn."""
FILLER_LINES: tuple[str, ...] = (
    "Keep watching.",
    "Look closely now.",
    "Something changes.",
    "Pay attention.",
)
DOMAIN = "Film & Television"
SUB_CATEGORY = "Animation"
LETTERS = "ABCD"


@dataclass(frozen=True)
class VideoSceneConfig:
    """Parameters of one synthetic video.

    Attributes:
        width, height: frame size (even, for the mp4v encoder).
        fps: frame rate.
        duration_range_s: video length, uniform, rounded to whole frames.
        min_shapes, max_shapes: shapes per video (distinct classes, at most 6); fewer when the video is
            too short to separate their appearances by ``appear_gap_s``.
        size_range: nominal shape size in pixels.
        appear_gap_s: minimum time between two appearances.
        min_visible_s: minimum time a shape stays visible.
        leave_prob: probability that a shape (other than the one changing colour) leaves early.
        travel_fraction_range: distance travelled as a fraction of the free span along the motion axis.
        cue_duration_s: longest subtitle cue.
        narrate_events: describe events in the subtitles instead of using filler lines.
        questions_per_video: questions per video in :func:`write_video_dataset` (kinds round-robin).
        question_kinds: kinds to ask, from :data:`QUESTION_KINDS`.
        duration_buckets_s: ``(a, b)``: ``short`` below ``a`` seconds, ``medium`` below ``b``, else ``long``.
        colours: palette names shapes may take.
        supersampling: anti-aliasing samples per pixel side.
        noise_std: Gaussian pixel noise per frame (0 disables it).
    """

    width: int = 64
    height: int = 64
    fps: float = 8.0
    duration_range_s: tuple[float, float] = (4.0, 12.0)
    min_shapes: int = 2
    max_shapes: int = 4
    size_range: tuple[float, float] = (12.0, 20.0)
    appear_gap_s: float = 1.0
    min_visible_s: float = 1.5
    leave_prob: float = 0.5
    travel_fraction_range: tuple[float, float] = (0.4, 0.9)
    cue_duration_s: float = 1.5
    narrate_events: bool = False
    questions_per_video: int = 3
    question_kinds: tuple[str, ...] = QUESTION_KINDS
    duration_buckets_s: tuple[float, float] = (6.0, 9.0)
    colours: tuple[str, ...] = COLOUR_NAMES
    supersampling: int = 2
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 32:
            raise ValueError(f"width and height must be even and >= 32, got {self.width}x{self.height}.")
        if not self.fps > 0 or self.appear_gap_s * self.fps < 1:
            raise ValueError(
                f"need fps > 0 and appear_gap_s >= 1 / fps, got fps={self.fps}, gap={self.appear_gap_s}."
            )
        if not 1 <= self.min_shapes <= self.max_shapes <= len(SHAPE_CLASSES):
            raise ValueError(
                f"need 1 <= min_shapes <= max_shapes <= 6, got {self.min_shapes}, {self.max_shapes}."
            )
        lo, hi = self.duration_range_s
        if not 0 < lo <= hi or lo < self.min_visible_s + (self.min_shapes - 1) * self.appear_gap_s:
            raise ValueError(
                f"duration_range_s {self.duration_range_s} must be positive and leave room for min_shapes "
                f"appearances {self.appear_gap_s} s apart plus min_visible_s."
            )
        if 2 * (0.71 * self.size_range[1] + 1) >= min(self.width, self.height) / 1.5:
            raise ValueError(
                f"size_range {self.size_range} leaves no room to move in {self.width}x{self.height}."
            )
        if len(set(self.colours)) < max(4, self.max_shapes + 1) or not set(self.colours) <= set(COLOUR_NAMES):
            raise ValueError(f"colours must be at least max(4, max_shapes + 1) names from {COLOUR_NAMES}.")
        bad = [k for k in self.question_kinds if k not in QUESTION_KINDS]
        if bad or not self.question_kinds or self.questions_per_video < 1:
            raise ValueError(
                f"unknown or empty question_kinds {bad} (choose from {QUESTION_KINDS}) or questions_per_video < 1."
            )


@dataclass(frozen=True)
class VideoObject:
    """One moving shape. Frames ``appear_frame <= f < end_frame`` show it at ``start + velocity * (f - appear_frame)``."""

    label: str
    colour: str
    rgb: tuple[int, int, int]
    final_colour: str
    final_rgb: tuple[int, int, int]
    recolour_frame: int | None
    appear_frame: int
    end_frame: int
    start: tuple[float, float]
    velocity: tuple[float, float]
    direction: str
    size: float
    aspect: float
    angle: float
    inner: float

    def spec_at(self, frame: int) -> ShapeSpec:
        """The shape as drawn in ``frame`` (which must be within its lifetime)."""
        steps = frame - self.appear_frame
        changed = self.recolour_frame is not None and frame >= self.recolour_frame
        return ShapeSpec(
            self.label,
            self.start[0] + self.velocity[0] * steps,
            self.start[1] + self.velocity[1] * steps,
            self.size,
            self.aspect,
            self.angle,
            self.inner,
            self.final_colour if changed else self.colour,
            self.final_rgb if changed else self.rgb,
        )


@dataclass(frozen=True)
class VideoEvent:
    """Something that happens at ``frame`` (``time_s = frame / fps``).

    ``kind`` is ``appear`` (``value`` = colour), ``move`` (``value`` = direction, at the appearance),
    ``recolour`` (``value`` = new colour) or ``disappear`` (``value`` empty).
    """

    frame: int
    time_s: float
    kind: str
    shape: str
    value: str


@dataclass(frozen=True)
class VideoSample:
    """A rendered video with its ground truth.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: frame rate; the video lasts ``T / fps`` seconds.
        events: the event log, sorted by frame.
        subtitles: ``(start_s, end_s, text)`` cues, sorted and non-overlapping.
        questions: Video-MME question records (``question_id``, ``task_type``, ``question``, ``options``,
            ``answer``).
        objects: the shapes.
        hidden_object: what the narration says is behind the screen (never drawn).
    """

    frames: np.ndarray
    fps: float
    events: tuple[VideoEvent, ...]
    subtitles: tuple[tuple[float, float, str], ...]
    questions: tuple[dict[str, Any], ...]
    objects: tuple[VideoObject, ...]
    hidden_object: str

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


def _choice(rng: np.random.Generator, items: Sequence[Any], size: int) -> list[Any]:
    return [items[int(i)] for i in rng.choice(len(items), size=size, replace=False)]


def _sample_objects(rng: np.random.Generator, cfg: VideoSceneConfig, n_frames: int) -> list[VideoObject]:
    fps = cfg.fps
    available = max(0.0, n_frames / fps - cfg.min_visible_s)
    n = int(rng.integers(cfg.min_shapes, cfg.max_shapes + 1))
    n = max(1, min(n, math.floor(available / cfg.appear_gap_s) + 1))
    labels = _choice(rng, SHAPE_CLASSES, n)
    colours = _choice(rng, cfg.colours, n + 1)  # the last one is the recolour target
    # Sorted uniform offsets plus i * gap: appearances at least appear_gap_s apart, all within `available`.
    offsets = np.sort(rng.uniform(0.0, available - (n - 1) * cfg.appear_gap_s, size=n))
    appear_frames = [math.ceil((offsets[i] + i * cfg.appear_gap_s) * fps - 1e-9) for i in range(n)]
    min_visible = math.ceil(cfg.min_visible_s * fps)
    recolour_index = int(rng.integers(n))

    objects = []
    for i, (label, colour, appear) in enumerate(zip(labels, colours, appear_frames)):
        end = n_frames
        if i != recolour_index and n_frames - appear > min_visible and rng.random() < cfg.leave_prob:
            end = int(rng.integers(appear + min_visible, n_frames))
        recolour_frame, final_colour = None, colour
        if i == recolour_index:
            span = n_frames - appear
            recolour_frame = appear + int(rng.integers(math.ceil(span / 3), span * 2 // 3 + 1))
            final_colour = colours[-1]
        size = float(rng.uniform(*cfg.size_range))
        aspect, angle, inner = sample_geometry(rng, label)
        radius = ShapeSpec(label, 0, 0, size, aspect, angle, inner, colour, (0, 0, 0)).radius
        direction = DIRECTIONS[int(rng.integers(4))]
        horizontal = direction in ("left", "right")
        extent = cfg.width if horizontal else cfg.height
        lo, hi = radius + 1.0, extent - radius - 1.0
        distance = float(rng.uniform(*cfg.travel_fraction_range)) * (hi - lo)
        forward = direction in ("right", "down")
        along = float(rng.uniform(lo, hi - distance)) if forward else float(rng.uniform(lo + distance, hi))
        other = cfg.height if horizontal else cfg.width
        across = float(rng.uniform(radius + 1.0, other - radius - 1.0))
        speed = distance / max(end - appear - 1, 1) * (1.0 if forward else -1.0)
        start = (along, across) if horizontal else (across, along)
        velocity = (speed, 0.0) if horizontal else (0.0, speed)
        objects.append(
            VideoObject(
                label=label,
                colour=colour,
                rgb=sample_rgb(rng, colour),
                final_colour=final_colour,
                final_rgb=sample_rgb(rng, final_colour),
                recolour_frame=recolour_frame,
                appear_frame=appear,
                end_frame=end,
                start=start,
                velocity=velocity,
                direction=direction,
                size=size,
                aspect=aspect,
                angle=angle,
                inner=inner,
            )
        )
    return objects


def _event_log(objects: list[VideoObject], n_frames: int, fps: float) -> tuple[VideoEvent, ...]:
    events = []
    for obj in objects:
        events.append(VideoEvent(obj.appear_frame, obj.appear_frame / fps, "appear", obj.label, obj.colour))
        events.append(VideoEvent(obj.appear_frame, obj.appear_frame / fps, "move", obj.label, obj.direction))
        if obj.recolour_frame is not None:
            events.append(
                VideoEvent(
                    obj.recolour_frame, obj.recolour_frame / fps, "recolour", obj.label, obj.final_colour
                )
            )
        if obj.end_frame < n_frames:
            events.append(VideoEvent(obj.end_frame, obj.end_frame / fps, "disappear", obj.label, ""))
    return tuple(sorted(events, key=lambda e: e.frame))


def _subtitles(
    rng: np.random.Generator,
    events: tuple[VideoEvent, ...],
    hidden: str,
    n_frames: int,
    cfg: VideoSceneConfig,
) -> tuple[tuple[float, float, str], ...]:
    lines: list[tuple[int, str]] = []
    for event in events:
        if event.kind == "move":
            continue
        if not cfg.narrate_events:
            text = FILLER_LINES[int(rng.integers(len(FILLER_LINES)))]
        elif event.kind == "appear":
            text = f"A {event.value} {event.shape} appears."
        elif event.kind == "recolour":
            text = f"The {event.shape} turns {event.value}."
        else:
            text = f"The {event.shape} leaves."
        lines.append((event.frame, text))
    fact_frame = int(rng.integers(0, max(1, n_frames - round(cfg.cue_duration_s * cfg.fps))))
    lines.append((fact_frame, f"Behind the screen there is a {hidden}."))
    lines.sort(key=lambda line: line[0])  # stable: same-frame lines keep their order

    merged: list[tuple[int, str]] = []
    for frame, text in lines:
        if merged and merged[-1][0] == frame:
            merged[-1] = (frame, f"{merged[-1][1]} {text}")
        else:
            merged.append((frame, text))
    duration = n_frames / cfg.fps
    cues = []
    for i, (frame, text) in enumerate(merged):
        start = frame / cfg.fps
        end = min(start + cfg.cue_duration_s, duration)
        if i + 1 < len(merged):
            end = min(end, merged[i + 1][0] / cfg.fps)
        cues.append((start, end, text))
    return tuple(cues)


def _mcq(rng: np.random.Generator, answer: str, distractors: Sequence[str]) -> tuple[list[str], str]:
    values = [answer, *_choice(rng, [d for d in dict.fromkeys(distractors) if d != answer], 3)]
    order = rng.permutation(4)
    options = [f"{LETTERS[slot]}. {values[int(i)]}" for slot, i in enumerate(order)]
    return options, LETTERS[int(np.flatnonzero(order == 0)[0])]


def _question(
    rng: np.random.Generator, kind: str, objects: list[VideoObject], hidden: str, cfg: VideoSceneConfig
) -> tuple[str, list[str], str]:
    labels = [obj.label for obj in objects]
    absent = [c for c in SHAPE_CLASSES if c not in labels]
    if kind == "first_appearance":
        first = min(objects, key=lambda o: o.appear_frame).label
        options, answer = _mcq(rng, first, labels + absent)
        return "Which shape appears first in the video?", options, answer
    if kind == "motion_direction":
        obj = objects[int(rng.integers(len(objects)))]
        options, answer = _mcq(rng, obj.direction, DIRECTIONS)
        return f"In which direction does the {obj.label} move?", options, answer
    if kind == "count":
        numbers = [str(k) for k in range(1, len(SHAPE_CLASSES) + 1)]
        options, answer = _mcq(rng, str(len(objects)), numbers)
        return "How many different shapes appear during the video?", options, answer
    if kind == "final_colour":
        obj = next(o for o in objects if o.recolour_frame is not None)
        others = [c for c in cfg.colours if c not in (obj.colour, obj.final_colour)]
        distractors = [obj.colour, *_choice(rng, others, 2)]
        options, answer = _mcq(rng, obj.final_colour, distractors)
        return f"What colour is the {obj.label} at the end of the video?", options, answer
    if kind == "presence":
        never_seen = absent + [o for o in NARRATION_OBJECTS if o != hidden]
        options, answer = _mcq(rng, labels[int(rng.integers(len(labels)))], _choice(rng, never_seen, 3))
        return "Which of these shapes appears in the video?", options, answer
    if kind == "narration":
        options, answer = _mcq(rng, hidden, NARRATION_OBJECTS)
        return "According to the narration, what is behind the screen?", options, answer
    raise ValueError(f"unknown question kind {kind!r}; choose from {QUESTION_KINDS}.")


def render_frames(
    rng: np.random.Generator, objects: Sequence[VideoObject], n_frames: int, cfg: VideoSceneConfig
) -> np.ndarray:
    """Draw ``objects`` over a static smooth-noise background: ``(n_frames, H, W, 3)`` uint8 RGB."""
    background = smooth_background(rng, cfg.height, cfg.width)
    frames = np.empty((n_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
    for frame in range(n_frames):
        canvas = background.copy()
        for obj in objects:
            if obj.appear_frame <= frame < obj.end_frame:
                spec = obj.spec_at(frame)
                draw_shape(canvas, spec, shape_coverage(spec, cfg.height, cfg.width, cfg.supersampling))
        frames[frame] = finish(canvas, rng, cfg.noise_std)
    return frames


def generate_video_sample(
    rng: np.random.Generator,
    cfg: VideoSceneConfig | None = None,
    *,
    video_id: str = "001",
    question_kinds: Sequence[str] | None = None,
) -> VideoSample:
    """Draw one video, its events, subtitles and questions (ids ``"<video_id>-1"``, ...).

    ``question_kinds`` defaults to ``cfg.question_kinds`` (one question per kind).
    """
    cfg = cfg or VideoSceneConfig()
    n_frames = max(1, round(float(rng.uniform(*cfg.duration_range_s)) * cfg.fps))
    objects = _sample_objects(rng, cfg, n_frames)
    hidden = NARRATION_OBJECTS[int(rng.integers(len(NARRATION_OBJECTS)))]
    events = _event_log(objects, n_frames, cfg.fps)
    subtitles = _subtitles(rng, events, hidden, n_frames, cfg)
    questions = []
    for j, kind in enumerate(cfg.question_kinds if question_kinds is None else question_kinds):
        text, options, answer = _question(rng, kind, objects, hidden, cfg)
        questions.append(
            {
                "question_id": f"{video_id}-{j + 1}",
                "task_type": TASK_TYPES[kind],
                "question": text,
                "options": options,
                "answer": answer,
            }
        )
    frames = render_frames(rng, objects, n_frames, cfg)
    return VideoSample(frames, cfg.fps, events, subtitles, tuple(questions), tuple(objects), hidden)


def format_srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` with milliseconds rounded: ``3723.5 -> "01:02:03,500"``."""
    total_ms = round(seconds * 1000)
    if total_ms < 0:
        raise ValueError(f"SRT times must be >= 0, got {seconds}.")
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def write_srt(path: str | Path, subtitles: Sequence[tuple[float, float, str]]) -> Path:
    """Write ``(start_s, end_s, text)`` cues as a SubRip file (cues numbered from 1), creating parent dirs."""
    path = Path(path)
    blocks = []
    for number, (start, end, text) in enumerate(subtitles, start=1):
        if not 0 <= start <= end:
            raise ValueError(
                f"cue {number} for {path} has start {start} and end {end}; need 0 <= start <= end."
            )
        lines = text.strip("\n").split("\n")
        if not text.strip() or any(not line.strip() for line in lines):
            raise ValueError(
                f"cue {number} for {path} has empty text or a blank line, which SRT cannot hold."
            )
        blocks.append(
            f"{number}\n{format_srt_time(start)} --> {format_srt_time(end)}\n" + "\n".join(lines) + "\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


_TIMING = re.compile(
    r"^\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})(?:\s.*)?$"
)


def read_srt(path: str | Path) -> list[tuple[float, float, str]]:
    """Read a SubRip file as ``(start_s, end_s, text)`` cues; multi-line text is joined with ``"\\n"``.

    Accepts a UTF-8 BOM, CRLF line ends, ``.`` as the millisecond separator and text tags (kept as is).

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: a cue has no valid timing line, naming the file and the cue.
    """
    path = require_file(path, "subtitle")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"subtitle file {path} is not UTF-8 ({err}); convert it to UTF-8.") from None
    cues = []
    blocks = re.split(r"\n[ \t]*\n", content.replace("\r\n", "\n").replace("\r", "\n").strip())
    for number, block in enumerate((b for b in blocks if b.strip()), start=1):
        lines = block.strip("\n").split("\n")
        timing_at = 1 if len(lines) > 1 and "-->" not in lines[0] else 0
        match = _TIMING.match(lines[timing_at])
        if match is None:
            raise DataError(
                f"subtitle file {path}: cue {number} has no valid 'HH:MM:SS,mmm --> HH:MM:SS,mmm' line "
                f"(found {lines[timing_at]!r}); fix or remove the cue."
            )
        g = [int(v) for v in match.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + int(match.group(4).ljust(3, "0")) / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + int(match.group(8).ljust(3, "0")) / 1000
        if end < start:
            raise DataError(f"subtitle file {path}: cue {number} ends before it starts; fix its timing.")
        cues.append((start, end, "\n".join(lines[timing_at + 1 :])))
    return cues


def duration_bucket(duration_s: float, buckets_s: tuple[float, float]) -> str:
    """``"short"``, ``"medium"`` or ``"long"`` by the ``(short_below, medium_below)`` thresholds."""
    if duration_s < buckets_s[0]:
        return "short"
    return "medium" if duration_s < buckets_s[1] else "long"


def write_video_dataset(
    root: str | Path, *, n_videos: int, seed: int, cfg: VideoSceneConfig | None = None
) -> Path:
    """Generate ``n_videos`` videos with subtitles and questions under ``root`` and return ``root``.

    Video ``i`` gets ``video_id`` ``"%03d" % (i + 1)``, ``videoID`` ``"shapes-" + video_id`` and
    ``cfg.questions_per_video`` questions whose kinds cycle through ``cfg.question_kinds`` over the dataset.
    """
    cfg = cfg or VideoSceneConfig()
    root = Path(root)
    records: list[dict[str, Any]] = []
    videos = []
    kinds = cfg.question_kinds
    q = cfg.questions_per_video
    for i in range(n_videos):
        video_id = f"{i + 1:03d}"
        video_key = f"shapes-{video_id}"
        sample = generate_video_sample(
            np.random.default_rng([seed, i]),
            cfg,
            video_id=video_id,
            question_kinds=[kinds[(i * q + j) % len(kinds)] for j in range(q)],
        )
        write_video(root / "videos" / f"{video_key}.mp4", sample.frames, sample.fps)
        write_srt(root / "subtitles" / f"{video_key}.srt", sample.subtitles)
        bucket = duration_bucket(sample.duration_s, cfg.duration_buckets_s)
        header = {"video_id": video_id, "duration": bucket, "domain": DOMAIN, "sub_category": SUB_CATEGORY}
        records.extend(
            {**header, "url": "", "videoID": video_key, **question} for question in sample.questions
        )
        videos.append(
            {
                "video_id": video_id,
                "videoID": video_key,
                "duration": bucket,
                "duration_s": sample.duration_s,
                "num_frames": len(sample.frames),
                "fps": sample.fps,
            }
        )
    (root / "questions.json").write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    meta = {
        "name": "synthetic shape videos",
        "generator": "paperzoo_shared.data.synthetic.video",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_videos": n_videos,
        "config": dataclasses.asdict(cfg),
        "task_types": TASK_TYPES,
        "videos": videos,
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return root
