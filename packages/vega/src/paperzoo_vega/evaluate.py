"""A resumable evaluation runner: responses for every sample of a VEGA file, then the official scores.

``<out>/responses.jsonl`` holds one line per finished sample, as the official scripts write it (the input
record plus ``response``) with the sample's ``vega_key`` (``file:line``) added. A run that is killed keeps
every finished line; the next run with the same ``out`` reads them back, drops a torn last line, and asks
the model only for the samples that are missing. Unlike the official scripts (append mode, so a rerun
silently scores duplicates), each sample is scored once. ``<out>/scores.json`` gets the scores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperzoo_vega.adapters import Adapter
from paperzoo_vega.data import VegaDataset, VegaSample
from paperzoo_vega.scoring import score_records

KEY = "vega_key"


@dataclass
class EvalSummary:
    scores: dict[str, float]
    out_dir: Path
    generated: int
    resumed: int
    seconds: float


def read_finished(path: Path) -> dict[str, dict[str, Any]]:
    """Finished records by key; a torn (unparseable) last line is cut off the file."""
    if not path.is_file():
        return {}
    finished: dict[str, dict[str, Any]] = {}
    good_bytes = 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
                if not raw.endswith(b"\n"):
                    raise ValueError("torn line")
            except ValueError:
                break
            finished[record[KEY]] = record
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return finished


def run_evaluation(
    dataset: VegaDataset | Sequence[VegaSample],
    adapter: Adapter,
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> EvalSummary:
    """Generate the missing responses (resuming), then score every sample once with the official rules."""
    from tqdm.auto import tqdm

    samples = list(dataset)
    if not samples:
        raise ValueError("nothing to evaluate: the dataset has no samples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    task = samples[0].task
    if any(s.task != task for s in samples):
        raise ValueError("a run evaluates one task; got IITC and ITA samples together")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "responses.jsonl"
    finished = read_finished(path)
    wanted = {s.key for s in samples}
    resumed = len(wanted & finished.keys())
    todo = [s for s in samples if s.key not in finished]
    start = time.perf_counter()
    with (
        path.open("a", encoding="utf-8") as handle,
        tqdm(
            total=len(samples), initial=resumed, desc=f"{task.upper()} {adapter.name}", disable=not progress
        ) as bar,
    ):
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            responses = adapter.generate(batch)
            if len(responses) != len(batch):
                raise RuntimeError(
                    f"adapter {adapter.name} returned {len(responses)} responses for {len(batch)}"
                )
            for sample, response in zip(batch, responses):
                record = {**sample.record, "response": response, KEY: sample.key}
                finished[sample.key] = record
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
    records = [finished[s.key] for s in samples]
    scores = score_records(task, records)
    seconds = time.perf_counter() - start
    (out / "scores.json").write_text(
        json.dumps({"task": task, "model": adapter.name, **scores}, indent=2) + "\n", encoding="utf-8"
    )
    return EvalSummary(scores=scores, out_dir=out, generated=len(todo), resumed=resumed, seconds=seconds)
