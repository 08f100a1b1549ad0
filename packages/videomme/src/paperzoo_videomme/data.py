"""Loading the Video-MME release, validating as it goes, and writing the synthetic stand-in in its layout.

The release (Hugging Face ``lmms-lab/Video-MME``; licence: academic use only, no redistribution) unpacks to::

    <root>/videomme/test-00000-of-00001.parquet   2,700 rows, one per question
    <root>/video/<videoID>.mp4                     (a few .MP4 / .mkv; lmms-eval's cache calls it data/)
    <root>/subtitle/<videoID>.srt                  744 of the 900 videos

Columns (all strings): ``video_id`` ("001"), ``duration``, ``domain``, ``sub_category``, ``url``, ``videoID``
(file stem), ``question_id`` ("001-1"), ``task_type``, ``question``, ``options`` (four strings "A. ..."),
``answer`` (a letter). Annotations may also be JSON (a list of such rows, or the official results layout
with one object per video) or JSON Lines.

Nothing here stops a run for one bad item: a row with a wrong field, a duplicated ``question_id``, a
missing or empty video, or a missing subtitle file (when subtitles are asked for) becomes an
:class:`ItemError` with a message naming the file and the fix; rows that cannot be evaluated are left
out of the run and their videos are written as ``"missing": true`` in the official results file.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperzoo_shared.data import safe_join
from paperzoo_shared.data.errors import DataError
from paperzoo_videomme.modeling_videomme import (
    DOMAIN_SUB_CATEGORIES,
    DOMAINS,
    DURATIONS,
    OPTION_LETTERS,
    SUB_CATEGORIES,
    TASK_TYPES,
)

logger = logging.getLogger(__name__)

COLUMNS = (
    "video_id", "duration", "domain", "sub_category", "url", "videoID", "question_id", "task_type", "question",
    "options", "answer",
)  # fmt: skip
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c != "url")
ANNOTATION_CANDIDATES = (
    "videomme/test-00000-of-00001.parquet",
    "videomme/test.json",
    "videomme/test.jsonl",
    "test-00000-of-00001.parquet",
    "videomme.json",
    "questions.json",
)
VIDEO_DIRS = ("video", "data", "videos")
VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")
SUBTITLE_DIRS = ("subtitle", "subtitles")

ERROR_KINDS = {
    "bad_row": "a row with a missing or invalid field",
    "duplicate_id": "a question_id seen before (the first one is kept)",
    "inconsistent_video": "rows of one video disagree on duration/domain/sub-category",
    "missing_video": "no video file for the videoID",
    "corrupt_video": "the video file is empty or does not decode",
    "missing_subtitle": "no .srt for the video (it is evaluated without subtitles, as officially)",
    "bad_subtitle": "the .srt is unreadable (it is evaluated without subtitles)",
    "model_error": "the model failed on the question",
}


@dataclass(frozen=True)
class ItemError:
    """One problem with one item; ``dropped`` says whether the item was left out of the evaluation."""

    kind: str
    item: str
    message: str
    path: str = ""
    dropped: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "item": self.item,
            "message": self.message,
            "path": self.path,
            "dropped": self.dropped,
        }


@dataclass(frozen=True)
class Question:
    question_id: str
    task_type: str
    question: str
    options: tuple[str, ...]
    answer: str


@dataclass
class VideoEntry:
    """One video and its questions."""

    video_id: str
    videoID: str
    duration: str
    domain: str
    sub_category: str
    url: str = ""
    questions: list[Question] = field(default_factory=list)
    video_path: Path | None = None
    subtitle_path: Path | None = None
    usable: bool = True
    """False when the video is missing or corrupt: its questions are not evaluated."""

    def records(self) -> Iterator[dict[str, Any]]:
        """Flat per-question records (the parquet columns)."""
        for q in self.questions:
            yield {
                "video_id": self.video_id,
                "duration": self.duration,
                "domain": self.domain,
                "sub_category": self.sub_category,
                "url": self.url,
                "videoID": self.videoID,
                "question_id": q.question_id,
                "task_type": q.task_type,
                "question": q.question,
                "options": list(q.options),
                "answer": q.answer,
            }


@dataclass
class VideoMMEDataset:
    root: Path
    annotations: Path
    videos: list[VideoEntry]
    errors: list[ItemError]

    @property
    def num_questions(self) -> int:
        return sum(len(v.questions) for v in self.videos)

    def usable_videos(self) -> list[VideoEntry]:
        return [v for v in self.videos if v.usable]

    def records(self) -> Iterator[dict[str, Any]]:
        for video in self.videos:
            yield from video.records()

    def summary(self) -> str:
        usable = self.usable_videos()
        counts: dict[str, int] = {}
        for error in self.errors:
            counts[error.kind] = counts.get(error.kind, 0) + 1
        problems = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no problems"
        return (
            f"{len(self.videos)} videos ({len(usable)} usable), {self.num_questions} questions from "
            f"{self.annotations}; {problems}"
        )


# ----------------------------------------------------------------------------------------------------
# Reading annotation files
# ----------------------------------------------------------------------------------------------------


def _pyarrow_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def find_annotations(root: Path) -> Path:
    """The annotation file under ``root``: the release's parquet first (a JSON copy when pyarrow is missing)."""
    found = [root / c for c in ANNOTATION_CANDIDATES if (root / c).is_file()]
    if found and found[0].suffix == ".parquet" and not _pyarrow_available():
        json_files = [f for f in found if f.suffix != ".parquet"]
        if json_files:
            logger.warning("pyarrow is not installed: reading %s instead of %s", json_files[0], found[0])
            return json_files[0]
    if found:
        return found[0]
    parquet = sorted(root.glob("**/*.parquet"))
    if parquet:
        return parquet[0]
    raise DataError(
        f"no Video-MME annotations under {root}: expected one of {', '.join(ANNOTATION_CANDIDATES)} "
        "(the Hugging Face release puts videomme/test-00000-of-00001.parquet there); pass --annotations FILE."
    )


def read_annotation_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows (dicts) of a parquet, JSON or JSONL annotation file. Parquet needs pyarrow (``pip install
    paperzoo-videomme[parquet]``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist; check --data / --annotations.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ImportError(
                f"reading {path} needs pyarrow: `pip install 'paperzoo-videomme[parquet]'` (or convert the "
                "parquet to JSON)."
            ) from err
        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises ArrowInvalid and OSError subclasses
            raise DataError(
                f"annotation file {path} is not a readable parquet file ({err}); re-download it."
            ) from err
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"annotation file {path} is not valid UTF-8 JSON ({err}); fix or re-create it."
        ) from err
    if not isinstance(rows, list):
        raise DataError(f"annotation file {path} must hold a list of rows, got {type(rows).__name__}.")
    flat = []
    for row in rows:  # the official results layout nests the questions under each video
        if isinstance(row, Mapping) and "questions" in row and "question_id" not in row:
            header = {k: v for k, v in row.items() if k != "questions"}
            header.setdefault("videoID", header.get("video_id", ""))
            flat.extend({**header, **q} for q in row["questions"])
        else:
            flat.append(row)
    return flat


def _row_problem(row: Mapping[str, Any]) -> str | None:
    if not isinstance(row, Mapping):
        return f"is a {type(row).__name__}, not a mapping"
    missing = [c for c in REQUIRED_COLUMNS if c not in row or row[c] is None]
    if missing:
        return f"lacks {', '.join(missing)}"
    options = row["options"]
    if (
        not isinstance(options, (list, tuple))
        or len(options) != 4
        or not all(isinstance(o, str) for o in options)
    ):
        return f"has options {options!r}; expected four strings 'A. ...' .. 'D. ...'"
    if row["answer"] not in OPTION_LETTERS:
        return f"has answer {row['answer']!r}; expected one of A, B, C, D"
    for column, valid in (("duration", DURATIONS), ("domain", DOMAINS), ("sub_category", SUB_CATEGORIES),
                          ("task_type", TASK_TYPES)):  # fmt: skip
        if row[column] not in valid:
            return f"has {column} {row[column]!r}, which no Video-MME scorer knows; valid: {', '.join(valid)}"
    if row["sub_category"] not in DOMAIN_SUB_CATEGORIES[row["domain"]]:
        return f"has sub_category {row['sub_category']!r}, which is not in domain {row['domain']!r}"
    return None


def resolve_video(
    root: Path, video_dir: Path | None, key: str, *, source: str | Path = "annotations", entry: object = None
) -> Path | None:
    """The video file of ``key`` (a ``videoID`` read from ``source``), or ``None``. A ``key`` that would leave
    the video folder (``../x``, an absolute path) is a :class:`DataError` naming ``source`` and ``entry``."""
    directories = [video_dir] if video_dir is not None else [root / d for d in VIDEO_DIRS]
    for directory in directories:
        for extension in VIDEO_EXTENSIONS:
            candidate = safe_join(directory, f"{key}{extension}", source=source, entry=entry)
            if candidate.is_file():
                return candidate
    return None


def resolve_subtitle(
    root: Path,
    subtitle_dir: Path | None,
    key: str,
    *,
    source: str | Path = "annotations",
    entry: object = None,
) -> Path | None:
    """The ``.srt`` of ``key`` or ``None``; checked as in :func:`resolve_video`."""
    directories = [subtitle_dir] if subtitle_dir is not None else [root / d for d in SUBTITLE_DIRS]
    for directory in directories:
        candidate = safe_join(directory, f"{key}.srt", source=source, entry=entry)
        if candidate.is_file():
            return candidate
    return None


def load_videomme(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    video_dir: str | Path | None = None,
    subtitle_dir: str | Path | None = None,
    subtitles: bool = False,
    durations: Sequence[str] | None = None,
    limit_videos: int | None = None,
    probe: bool = False,
    probe_backend: str = "auto",
) -> VideoMMEDataset:
    """Load the release under ``root``, recording every problem instead of stopping.

    Args:
        root: the folder holding ``videomme/``, ``video/`` and ``subtitle/``.
        annotations: the parquet/JSON/JSONL file (default: found under ``root``).
        video_dir, subtitle_dir: override the folders (default: ``video``/``data``/``videos`` and
            ``subtitle``/``subtitles`` under ``root``).
        subtitles: record a ``missing_subtitle`` problem for videos without an .srt (they are still
            evaluated, without a subtitle block, as the official protocol does for 156 videos).
        durations: keep only these duration buckets.
        limit_videos: keep the first N videos (in file order) after filtering.
        probe: open every video now (``probe_video``) to find corrupt files before the run; otherwise
            corrupt files are found when their frames are decoded, which also becomes an error record.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"Video-MME root {root} is not a folder; pass the folder that holds videomme/ and video/."
        )
    path = Path(annotations) if annotations is not None else find_annotations(root)
    rows = read_annotation_rows(path)
    video_dir = Path(video_dir) if video_dir is not None else None
    subtitle_dir = Path(subtitle_dir) if subtitle_dir is not None else None
    if video_dir is None and not any((root / d).is_dir() for d in VIDEO_DIRS):
        logger.warning(
            "no video folder (%s) under %s: every video will be missing", "/".join(VIDEO_DIRS), root
        )
    errors: list[ItemError] = []
    videos: dict[str, VideoEntry] = {}
    first_row: dict[str, str] = {}  # videoID -> where it was first read, for path errors
    seen_questions: set[str] = set()
    keep = set(durations) if durations else None
    for index, row in enumerate(rows):
        label = f"{path.name} row {index}"
        problem = _row_problem(row)
        qid = str(row.get("question_id", f"row{index}")) if isinstance(row, Mapping) else f"row{index}"
        if problem:
            errors.append(
                ItemError("bad_row", qid, f"{label} ({qid}) {problem}; fix the annotation file.", str(path))
            )
            continue
        if keep is not None and row["duration"] not in keep:
            continue
        if qid in seen_questions:
            errors.append(
                ItemError(
                    "duplicate_id",
                    qid,
                    f"{label}: question_id {qid} appears again; the first row is kept.",
                    str(path),
                )
            )
            continue
        seen_questions.add(qid)
        key = str(row["videoID"])
        video = videos.get(key)
        if video is None:
            if limit_videos is not None and len(videos) >= limit_videos:
                continue
            first_row[key] = f"row {index}, question_id {qid}, videoID {key!r}"
            video = videos[key] = VideoEntry(
                video_id=str(row["video_id"]),
                videoID=key,
                duration=row["duration"],
                domain=row["domain"],
                sub_category=row["sub_category"],
                url=str(row.get("url") or ""),
            )
        elif (video.duration, video.domain, video.sub_category, video.video_id) != (
            row["duration"], row["domain"], row["sub_category"], str(row["video_id"])
        ):  # fmt: skip
            errors.append(
                ItemError(
                    "inconsistent_video",
                    qid,
                    f"{label}: question {qid} of video {key} disagrees with the video's first row on "
                    "video_id/duration/domain/sub_category; the question is left out.",
                    str(path),
                )  # fmt: skip
            )
            continue
        video.questions.append(
            Question(qid, row["task_type"], str(row["question"]), tuple(row["options"]), row["answer"])
        )

    for video in videos.values():
        video.video_path = resolve_video(
            root, video_dir, video.videoID, source=path, entry=first_row[video.videoID]
        )
        where = video_dir or root / VIDEO_DIRS[0]
        if video.video_path is None:
            video.usable = False
            errors.append(
                ItemError(
                    "missing_video",
                    video.videoID,
                    f"video {video.videoID} (video_id {video.video_id}, {len(video.questions)} questions) has no "
                    f"file {where}/{video.videoID}.mp4 (nor .MP4/.mkv); unzip the video archives there.",
                    str(where),
                )  # fmt: skip
            )
        elif video.video_path.stat().st_size == 0:
            video.usable = False
            errors.append(
                ItemError(
                    "corrupt_video",
                    video.videoID,
                    f"video file {video.video_path} is empty; re-extract it from the archive.",
                    str(video.video_path),
                )  # fmt: skip
            )
        elif probe:
            from paperzoo_shared.data.video_io import probe_video

            try:
                probe_video(video.video_path, backend=probe_backend)
            except DataError as err:
                video.usable = False
                errors.append(ItemError("corrupt_video", video.videoID, str(err), str(video.video_path)))
        video.subtitle_path = resolve_subtitle(
            root, subtitle_dir, video.videoID, source=path, entry=first_row[video.videoID]
        )
        if subtitles and video.subtitle_path is None and video.usable:
            where = subtitle_dir or root / SUBTITLE_DIRS[0]
            errors.append(
                ItemError(
                    "missing_subtitle",
                    video.videoID,
                    f"video {video.videoID} has no subtitle file {where}/{video.videoID}.srt; it is evaluated "
                    "without a subtitle block (as officially: 156 of the 900 videos have none).",
                    str(where),
                    dropped=False,
                )  # fmt: skip
            )
    for error in errors:
        logger.warning("%s: %s", error.kind, error.message)
    return VideoMMEDataset(root=root, annotations=path, videos=list(videos.values()), errors=errors)


# ----------------------------------------------------------------------------------------------------
# The synthetic stand-in, written in the release's layout
# ----------------------------------------------------------------------------------------------------

RELEASE_FONT = '<font color="white" size=".72c">{}</font>'


def _wrap_srt_in_font(path: Path) -> None:
    """Wrap every text line of a SubRip file as the release does (``<font color="white" size=".72c">``)."""
    out = []
    text_line = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if "-->" in line:
            text_line = True
            out.append(line)
        elif not line.strip():
            text_line = False
            out.append(line)
        elif text_line:
            out.append(RELEASE_FONT.format(line))
        else:
            out.append(line)
    path.write_text("\n".join(out), encoding="utf-8")


def write_parquet_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Write ``rows`` with the release's columns as parquet; ``False`` if pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    columns = {c: [row.get(c, "") for row in rows] for c in COLUMNS}
    schema = pa.schema([(c, pa.list_(pa.string()) if c == "options" else pa.string()) for c in COLUMNS])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path)
    return True


def write_synthetic_release(
    root: str | Path,
    *,
    n_videos: int,
    seed: int,
    scene: Mapping[str, Any] | None = None,
    spread_categories: bool = True,
    parquet: bool = True,
) -> Path:
    """Generate moving-shape videos (``paperzoo_shared.data.synthetic.video``) in the release layout.

    Writes ``root/videomme/test-00000-of-00001.parquet`` (when pyarrow is installed) and always
    ``root/videomme/test.json`` (the same rows), ``root/video/<videoID>.mp4`` and
    ``root/subtitle/<videoID>.srt`` with each text line in the release's ``<font ...>`` tag.
    ``spread_categories`` assigns video ``i`` the ``i``-th of the 30 sub-categories (and its domain)
    round-robin, so every breakdown has entries; the generator itself labels all of them "Animation".
    ``scene`` overrides fields of ``VideoSceneConfig``. Returns ``root``.
    """
    from paperzoo_shared.data.synthetic.video import VideoSceneConfig, write_video_dataset

    root = Path(root)
    cfg = VideoSceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in (scene or {}).items()})
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root))
    try:
        write_video_dataset(staging, n_videos=n_videos, seed=seed, cfg=cfg)
        rows = json.loads((staging / "questions.json").read_text(encoding="utf-8"))
        pairs = [(domain, sub) for domain, subs in DOMAIN_SUB_CATEGORIES.items() for sub in subs]
        order = {key: i for i, key in enumerate(dict.fromkeys(row["videoID"] for row in rows))}
        for row in rows:
            if spread_categories:
                row["domain"], row["sub_category"] = pairs[order[row["videoID"]] % len(pairs)]
            row["url"] = row.get("url") or ""
        for name, target in (("videos", "video"), ("subtitles", "subtitle")):
            (root / target).mkdir(exist_ok=True)
            for file in sorted((staging / name).iterdir()):
                shutil.move(str(file), root / target / file.name)
        for srt in (root / "subtitle").glob("*.srt"):
            _wrap_srt_in_font(srt)
        annotations = root / "videomme"
        annotations.mkdir(exist_ok=True)
        (annotations / "test.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        if parquet:
            write_parquet_rows(annotations / "test-00000-of-00001.parquet", rows)
        shutil.move(str(staging / "meta.json"), root / "meta.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
