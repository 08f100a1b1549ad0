"""Readers for the VEGA release: IITC and ITA JSON Lines and the image folder.

Release layout (README of zhourax/VEGA; Hugging Face ``zhourax977/VEGA``, MIT)::

    IITC_4k_{train,test}.json  IITC_8k_{train,test}.json          one JSON object per line
    ITA_3picture_{C,E,F}_train.json  ITA_3picture_test.json  (and 5picture)
    test_imgs/<arxiv id>/<figure file>  train_imgs/...              paths in the records are relative to here

IITC record: ``id, title, caption, context, question, answer, image_paths, truth_fig_idx`` (0-based index of
the correct image in ``image_paths``). ITA record: ``id`` (list of arXiv ids), ``image_paths, context,
answer``. In ``context`` every image is ``Picture k: <img>relative/path</img>``.

Every path read from a record is joined to the image root with :func:`paperzoo_shared.data.safe_join`, so a
path that leaves the root is refused. Problems (malformed line, missing field, a path leaving the root, a
missing image, context and ``image_paths`` disagreeing) name the file and line. ``on_error="raise"`` stops at
the first; ``"skip"`` drops the record and keeps the problem in :attr:`VegaDataset.problems`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from paperzoo_shared.data import safe_join
from paperzoo_shared.data.errors import DataError, DataFileNotFoundError
from paperzoo_vega.modeling_vega import Task, check_context

log = logging.getLogger(__name__)

IITC_FIELDS: tuple[str, ...] = (
    "id", "title", "caption", "context", "question", "answer", "image_paths", "truth_fig_idx",
)  # fmt: skip
ITA_FIELDS: tuple[str, ...] = ("id", "image_paths", "context", "answer")

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class VegaSample:
    """One record of a VEGA file, validated, with its image paths resolved under the image root."""

    task: Task
    key: str
    """``<file name>:<line>``: unique within a run (ids repeat: one paper gives several IITC questions)."""
    id: str | list[str]
    context: str
    answer: str
    image_paths: list[str]
    images: list[Path]
    question: str | None = None
    truth_fig_idx: int | None = None
    title: str = ""
    caption: str = ""
    line: int = 0
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    """The record as read (what an output line repeats, with ``response`` added)."""


@dataclass
class VegaDataset:
    """The samples of one file and the problems of the records that were skipped."""

    path: Path
    task: Task
    samples: list[VegaSample]
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[VegaSample]:
        return iter(self.samples)


def task_of_file(path: str | Path) -> Task | None:
    """``iitc``/``ita`` from a release file name (``IITC_4k_test.json``, ``ITA_3picture_test.json``)."""
    name = Path(path).name.lower()
    if name.startswith("iitc"):
        return "iitc"
    if name.startswith("ita"):
        return "ita"
    return None


def _task_of_record(record: Mapping[str, Any]) -> Task:
    return "iitc" if "truth_fig_idx" in record or "question" in record else "ita"


def parse_record(
    record: Any,
    task: Task,
    *,
    image_root: Path,
    source: Path,
    line: int,
    check_images: bool = True,
) -> VegaSample:
    """Validate one decoded record; raise :class:`DataError` naming ``source:line`` on any problem."""
    where = f"{source}:{line}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    required = IITC_FIELDS if task == "iitc" else ITA_FIELDS
    missing = [name for name in required if name not in record]
    if missing:
        raise DataError(f"{where}: {task.upper()} record lacks {', '.join(missing)}")
    for name in ("context", "answer") + (("question",) if task == "iitc" else ()):
        if not isinstance(record[name], str):
            raise DataError(f"{where}: {name!r} must be a string, got {type(record[name]).__name__}")
    paths = record["image_paths"]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise DataError(f"{where}: 'image_paths' must be a list of strings")
    disagreement = check_context(record["context"], paths)
    if disagreement is not None:
        raise DataError(f"{where}: {disagreement}")
    images = [safe_join(image_root, p, source=source, entry=f"line {line}") for p in paths]
    if check_images:
        for rel, image in zip(paths, images):
            if not image.is_file():
                raise DataFileNotFoundError(f"{where}: image {rel!r} not found under {image_root}")
    truth = None
    if task == "iitc":
        try:
            truth = int(record["truth_fig_idx"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: truth_fig_idx {record['truth_fig_idx']!r} is not an integer") from None
        if not 0 <= truth < len(paths):
            raise DataError(f"{where}: truth_fig_idx {truth} is outside image_paths (0..{len(paths) - 1})")
    return VegaSample(
        task=task,
        key=f"{source.name}:{line}",
        id=record["id"],
        context=record["context"],
        answer=record["answer"],
        image_paths=list(paths),
        images=images,
        question=record.get("question") if task == "iitc" else None,
        truth_fig_idx=truth,
        title=str(record.get("title", "")),
        caption=str(record.get("caption", "")),
        line=line,
        record=record,
    )


def read_vega_jsonl(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    task: Task | None = None,
    on_error: OnError = "raise",
    check_images: bool = True,
    limit: int | None = None,
) -> VegaDataset:
    """Read an IITC or ITA file of the release.

    ``image_root`` is the folder the records' paths are relative to (the unzipped ``imgs/``, holding
    ``test_imgs/`` and ``train_imgs/``); by default the file's own folder. ``task`` defaults to the file name
    (``IITC_*``/``ITA_*``), else to the first record's fields. ``limit`` keeps the first N valid samples.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"VEGA file {path} does not exist")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise DataFileNotFoundError(f"image root {root} is not a folder")
    task = task or task_of_file(path)
    samples: list[VegaSample] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(
                        f"{path}:{line_number}: not valid JSON ({err.msg}, column {err.colno})"
                    ) from None
                if task is None and isinstance(record, dict):
                    task = _task_of_record(record)
                samples.append(
                    parse_record(
                        record,
                        task or "iitc",
                        image_root=root,
                        source=path,
                        line=line_number,
                        check_images=check_images,
                    )  # fmt: skip
                )
            except DataError as err:
                if on_error == "raise":
                    raise
                problems.append(str(err))
                log.warning("skipped %s", err)
            if limit is not None and len(samples) >= limit:
                break
    if task is None:
        raise DataError(f"{path}: no records")
    return VegaDataset(path=path, task=task, samples=samples, problems=problems)


def write_jsonl(path: str | Path, records: list[Mapping[str, Any]]) -> Path:
    """Write records as the release does: one ``json.dumps(..., ensure_ascii=False)`` per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


__all__ = [
    "IITC_FIELDS",
    "ITA_FIELDS",
    "VegaDataset",
    "VegaSample",
    "parse_record",
    "read_vega_jsonl",
    "task_of_file",
    "write_jsonl",
]
