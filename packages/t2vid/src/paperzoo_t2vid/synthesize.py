"""The text-to-video pipeline end to end: reformat, split, filter, render in worker processes, write.

    records = read_records("LongAlpaca-reformat-8k.json")
    result = synthesize(records, SynthesisConfig(source_format="longalpaca"), "out/")
    # out/frames/LongAlpaca_00000/text_pic_00000.png ..., out/t2vid.json (multi-image schema),
    # out/fake_vid.json (the LLaVA-style intermediate), out/report.jsonl, out/summary.json

Order: the official scripts render every sample and filter afterwards; the frame count is known from the split
alone, so here the filters run first and only kept samples are rendered (same output, less work). Rendering
uses a ``ProcessPoolExecutor`` (the official script's choice) with one task per sample, a tqdm bar, and the
throughput (images per second, and per second per worker core) in the summary.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from paperzoo_t2vid.configuration import RenderConfig, SynthesisConfig
from paperzoo_t2vid.data import Report, SampleReport, write_json
from paperzoo_t2vid.modeling_t2vid import (
    REFORMATTERS,
    SampleError,
    conversation_text,
    filter_reasons,
    frame_name,
    layout_chunk,
    render_layout,
    split_tokens,
    to_multi_image,
)
from paperzoo_t2vid.text import token_counter, tokenize


@lru_cache(maxsize=4)
def load_font(path: str, size: int) -> Any:
    """A cached ``ImageFont.FreeTypeFont`` (one per worker process)."""
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


@dataclass
class RenderTask:
    sid: str
    chunks: list[str]
    out_dir: str
    render: RenderConfig


@dataclass
class RenderOutcome:
    sid: str
    n_frames: int
    overflow: list[tuple[int, str]]
    """(chunk index, reason) of every chunk that does not fit."""
    written: bool
    seconds: float
    digest: str
    """SHA-256 over the frames' pixels (a determinism check)."""
    max_text_height: float = 0.0
    """Height of the tallest text block among the sample's frames, in pixels."""


def render_sample(task: RenderTask) -> RenderOutcome:
    """Lays out every chunk of a sample; writes its frames unless a chunk overflows and the policy is drop."""
    start = time.perf_counter()
    cfg = task.render
    font = load_font(cfg.font, cfg.font_size)
    layouts = [layout_chunk(chunk, font, (cfg.width, cfg.height), cfg.margin) for chunk in task.chunks]
    overflow = [(i, layout.reason()) for i, layout in enumerate(layouts) if layout.overflow]
    write = not (overflow and cfg.on_overflow == "drop")
    digest = hashlib.sha256()
    if write:
        folder = Path(task.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for i, layout in enumerate(layouts):
            image = render_layout(layout, font)
            digest.update(image.tobytes())
            image.save(folder / frame_name(i))
    tallest = max((layout.text_height for layout in layouts), default=0.0)
    return RenderOutcome(
        task.sid, len(layouts), overflow, write, time.perf_counter() - start, digest.hexdigest(), tallest
    )


@dataclass
class SynthesisResult:
    records: list[dict[str, Any]]
    """Multi-image records of the kept samples."""
    fake_video: list[dict[str, Any]]
    """The LLaVA-style intermediate records of the kept samples (``*_chat_fake_vid.json``)."""
    report: Report
    throughput: dict[str, float] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    max_text_height: float = 0.0
    """The tallest text block of any rendered frame, in pixels (the canvas is ``render.height``)."""

    def summary(self) -> dict[str, Any]:
        return {**self.report.summary(), **self.throughput}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _source_of(sid: str) -> str:
    return sid.split("_", 1)[0]


def prepare(
    records: Sequence[Any], cfg: SynthesisConfig, report: Report
) -> list[tuple[int, dict[str, Any], list[str]]]:
    """Reformat, split and filter; returns (index, fake-video record, chunks) of the samples to render."""
    reformat = REFORMATTERS[cfg.source_format]
    count = token_counter(cfg.filter.token_counter)
    keep = []
    for index, raw in enumerate(records):
        try:
            if not isinstance(raw, Mapping):
                raise SampleError(f"a sample must be a JSON object, got {type(raw).__name__}")
            sample = reformat(raw, index)
        except SampleError as error:
            sid = str(raw.get("id", index)) if isinstance(raw, Mapping) else str(index)
            report.add(SampleReport(index, sid, "invalid", [("missing_field", str(error))]))
            continue
        chunks = split_tokens(tokenize(sample["context"], cfg.split.tokenizer), cfg.split.tokens_per_frame)
        conversations = sample["conversations"]
        reasons = filter_reasons(
            conversations,
            len(chunks),
            count(conversation_text(conversations)),
            cfg.filter.rule(_source_of(sample["id"])),
        )
        if reasons:
            report.add(SampleReport(index, sample["id"], "filtered", reasons, n_frames=len(chunks)))
            continue
        keep.append((index, sample, chunks))
    return keep


def synthesize(
    records: Sequence[Any], cfg: SynthesisConfig, out_dir: str | Path, *, write: bool = True
) -> SynthesisResult:
    """Runs the pipeline on source ``records`` and writes frames, JSON files and the report under ``out_dir``.

    Frame paths in the JSON are relative to ``out_dir`` (join them with ``safe_join``).
    """
    cfg.render.check_font()
    out_dir = Path(out_dir)
    report = Report()
    todo = prepare(records, cfg, report)
    workers = cfg.workers or available_cores()
    tasks = {
        sample["id"]: RenderTask(sample["id"], chunks, str(out_dir / "frames" / sample["id"]), cfg.render)
        for _, sample, chunks in todo
    }
    outcomes: dict[str, RenderOutcome] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="rendering", unit="sample", disable=not cfg.progress)
    if workers == 1 or len(tasks) <= 1:
        for sid, task in tasks.items():
            outcomes[sid] = render_sample(task)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(render_sample, task): sid for sid, task in tasks.items()}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                bar.update()
    bar.close()
    wall = time.perf_counter() - start
    images = sum(o.n_frames for o in outcomes.values() if o.written)

    multi, fake = [], []
    for index, sample, _ in todo:
        outcome = outcomes[sample["id"]]
        reasons = [("overflow", f"frame {i}: {why}") for i, why in outcome.overflow]
        if not outcome.written:
            report.add(SampleReport(index, sample["id"], "overflow", reasons, n_frames=outcome.n_frames))
            continue
        frames = [f"frames/{sample['id']}/{frame_name(i)}" for i in range(outcome.n_frames)]
        multi.append(to_multi_image(sample["conversations"], frames))
        fake.append({k: v for k, v in sample.items() if k != "context"})
        report.add(SampleReport(index, sample["id"], "kept", reasons, n_frames=outcome.n_frames))
    used = min(workers, max(len(tasks), 1))
    throughput = {
        "images": float(images),
        "render_wall_s": wall,
        "workers": float(used),
        "images_per_s": images / wall if wall > 0 else 0.0,
        "images_per_s_per_core": images / wall / used if wall > 0 else 0.0,
    }
    result = SynthesisResult(
        multi,
        fake,
        report,
        throughput,
        {sid: o.digest for sid, o in outcomes.items()},
        max((o.max_text_height for o in outcomes.values()), default=0.0),
    )
    if write:
        write_json(out_dir / "t2vid.json", multi)
        write_json(out_dir / "fake_vid.json", fake)
        report.write(out_dir / "report.jsonl")
        write_json(out_dir / "summary.json", result.summary())
    return result
