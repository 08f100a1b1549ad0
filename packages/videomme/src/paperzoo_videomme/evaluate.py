"""The evaluation runner: data -> frames and subtitles (worker processes) -> prompts -> model -> scores.

A run writes, under its output folder:

* ``run.json``: the settings and their fingerprint; a rerun with other settings is refused.
* ``responses.jsonl``: append-only, one line per answered question (flushed as it goes). A rerun skips
  every question that already has a line without an error, so a killed run resumes where it stopped.
* ``results.json``: the official results file (valid JSON, current keys, ``"missing"`` per video), which
  the official ``eval_your_results(..., skip_missing=True)`` scores.
* ``scores.json``: the scores under each requested rule, with breakdowns; ``report.txt``: the official
  printout of the headline rule; ``errors.json``: every item problem of the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperzoo_shared.config import config_hash, to_dict
from paperzoo_shared.repro import atomic_write_json, atomic_write_text
from paperzoo_videomme.adapters import ModelCallError, VideoQAModel, VideoQARequest
from paperzoo_videomme.configuration import ProtocolConfig
from paperzoo_videomme.data import ItemError, VideoEntry, VideoMMEDataset
from paperzoo_videomme.frames import DecodedVideo, FrameLoader, jobs_for
from paperzoo_videomme.modeling_videomme import build_prompt
from paperzoo_videomme.scoring import (
    SCORING_RULES,
    official_report_text,
    score_records,
    write_official_results,
)

logger = logging.getLogger(__name__)
RESPONSES = "responses.jsonl"


class RunMismatchError(ValueError):
    """The output folder holds responses of a run with other settings."""


@dataclass
class EvalSummary:
    out_dir: Path
    scores: dict[str, dict[str, Any]]
    errors: list[ItemError]
    answered_now: int
    skipped_done: int
    seconds: float
    decode_seconds: float
    model_seconds: float
    records: list[dict[str, Any]] = field(repr=False, default_factory=list)

    def headline(self, rule: str | None = None) -> dict[str, Any]:
        rule = rule or next(iter(self.scores))
        return self.scores[rule]


def protocol_jobs_kwargs(protocol: ProtocolConfig) -> dict[str, Any]:
    return {
        "sampler": protocol.frame_sampler,
        "num_frames": protocol.num_frames,
        "target_fps": protocol.target_fps,
        "max_frames": protocol.max_frames or None,
        "subtitles": protocol.subtitles,
        "lmms_eval_subtitle_frames": protocol.lmms_eval_subtitle_frames,
        "backend": protocol.decode_backend,
        "max_side": protocol.max_side or None,
    }


def read_responses(path: Path) -> dict[str, dict[str, Any]]:
    """The finished lines of an append-only responses file (a line cut off by a kill is ignored)."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "question_id" in record:
            if record.get("error"):
                done.pop(record["question_id"], None)  # a failed try does not count as done
            else:
                done[record["question_id"]] = record
    return done


class _Appender:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("a", encoding="utf-8") as handle:
                handle.write("\n")  # end a line cut off by a kill, so the next record starts cleanly
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _check_run(out_dir: Path, settings: dict[str, Any], overwrite: bool) -> str:
    fingerprint = config_hash(settings)
    run_file = out_dir / "run.json"
    if run_file.is_file() and not overwrite:
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != fingerprint:
            changed = sorted(
                key for key in set(previous.get("settings", {})) | set(settings)
                if previous.get("settings", {}).get(key) != settings.get(key)
            )  # fmt: skip
            raise RunMismatchError(
                f"{out_dir} holds responses of a run with other settings (changed: {', '.join(changed)}); "
                "use another output folder, or pass overwrite=True (--overwrite) to start afresh."
            )
    if overwrite:
        for name in (RESPONSES, "run.json", "results.json", "scores.json", "report.txt", "errors.json"):
            (out_dir / name).unlink(missing_ok=True)
    atomic_write_json(run_file, {"fingerprint": fingerprint, "settings": settings})
    return fingerprint


def _requests(
    video: VideoEntry, decoded: DecodedVideo, protocol: ProtocolConfig, todo: set[str]
) -> Iterator[VideoQARequest]:
    for question in video.questions:
        if question.question_id not in todo:
            continue
        prompt = build_prompt(
            protocol.prompt_style,
            question.question,
            question.options,
            decoded.subtitles,
            post_prompt=protocol.post_prompt or None,
        )
        yield VideoQARequest(
            question_id=question.question_id,
            prompt=prompt,
            frames=decoded.frames,  # type: ignore[arg-type]
            frame_indices=list(decoded.indices),
            fps=decoded.fps,
            subtitles=decoded.subtitles,
            question=question.question,
            options=list(question.options),
        )


def run_evaluation(
    dataset: VideoMMEDataset,
    model: VideoQAModel,
    protocol: ProtocolConfig,
    out_dir: str | Path,
    *,
    batch_size: int = 4,
    num_workers: int = 0,
    rules: Sequence[str] = tuple(SCORING_RULES),
    progress: bool = True,
    overwrite: bool = False,
    extra_settings: dict[str, Any] | None = None,
) -> EvalSummary:
    """Evaluate ``model`` on ``dataset`` with ``protocol``; resumable (see the module docstring)."""
    if protocol.decode_backend == "decord":
        try:
            import decord  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "protocol.decode_backend is 'decord' but decord is not installed: `pip install decord` "
                "(x86_64 wheels) or use decode_backend 'auto'/'opencv'."
            ) from err
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "protocol": to_dict(protocol),
        "model": model.describe(),
        "annotations": str(dataset.annotations),
        **(extra_settings or {}),
    }
    _check_run(out_dir, settings, overwrite)
    done = read_responses(out_dir / RESPONSES)
    errors: list[ItemError] = list(dataset.errors)
    pending = [v for v in dataset.usable_videos() if any(q.question_id not in done for q in v.questions)]
    todo = {q.question_id for v in pending for q in v.questions if q.question_id not in done}
    skipped = sum(1 for v in dataset.usable_videos() for q in v.questions if q.question_id in done)
    missing_videos = {v.video_id for v in dataset.videos if not v.usable}
    start = time.perf_counter()
    decode_seconds = model_seconds = 0.0
    answered = 0
    appender = _Appender(out_dir / RESPONSES)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(todo), unit="q", desc=f"videomme {model.name}", disable=not progress, dynamic_ncols=True
    )
    batch: list[tuple[VideoQARequest, DecodedVideo, VideoEntry]] = []

    def flush() -> None:
        nonlocal model_seconds, answered
        if not batch:
            return
        requests = [item[0] for item in batch]
        t0 = time.perf_counter()
        try:
            responses: list[str | None] = list(model.generate(requests))
            if len(responses) != len(requests):
                raise ModelCallError(
                    f"{model.name} returned {len(responses)} responses for {len(requests)} requests"
                )
            failures: list[str | None] = [None] * len(requests)
        except Exception as err:  # isolate the failing request: retry one by one
            logger.warning("batch of %d failed (%s); retrying one by one", len(requests), err)
            responses, failures = [], []
            for request in requests:
                try:
                    responses.append(model.generate([request])[0])
                    failures.append(None)
                except Exception as single:  # recorded per item; the run goes on
                    responses.append(None)
                    failures.append(f"{type(single).__name__}: {single}")
        model_seconds += time.perf_counter() - t0
        for (request, decoded, video), response, failure in zip(batch, responses, failures):
            record = {
                "question_id": request.question_id,
                "video_id": video.video_id,
                "videoID": video.videoID,
                "response": response if response is not None else "",
                "frame_indices": request.frame_indices,
                "num_frames": decoded.num_frames,
                "fps": decoded.fps,
                "backend": decoded.backend,
                "subtitle_lines": None if decoded.subtitles is None else len(decoded.subtitles),
                "prompt": request.prompt,
            }
            if failure:
                record["error"] = failure
                errors.append(ItemError("model_error", request.question_id, f"{model.name}: {failure}"))
            else:
                done[request.question_id] = record
                answered += 1
            appender.write(record)
        bar.update(len(batch))
        batch.clear()

    try:
        loader = FrameLoader(num_workers)
        by_key = {v.videoID: v for v in pending}
        for decoded in loader.imap(jobs_for(pending, **protocol_jobs_kwargs(protocol))):
            decode_seconds += decoded.seconds
            video = by_key[decoded.video_key]
            if decoded.error is not None:
                errors.append(decoded.error)
                missing_videos.add(video.video_id)
                bar.update(sum(1 for q in video.questions if q.question_id in todo))
                continue
            if decoded.subtitle_error is not None:
                errors.append(decoded.subtitle_error)
            for request in _requests(video, decoded, protocol, todo):
                batch.append((request, decoded, video))
                if len(batch) >= batch_size:
                    flush()
        flush()
    finally:
        bar.close()
        appender.close()

    records = []
    for record in dataset.records():
        answer = done.get(record["question_id"])
        records.append({**record, "response": answer["response"] if answer else ""})
    answered_records = [r for r in records if r["question_id"] in done]
    write_official_results(out_dir / "results.json", records, missing_videos)
    scores = {rule: score_records(answered_records, rule, durations=_durations(dataset)) for rule in rules}
    atomic_write_json(out_dir / "scores.json", scores)
    if rules:
        atomic_write_text(out_dir / "report.txt", official_report_text(scores[rules[0]], task_types=True))
    atomic_write_json(out_dir / "errors.json", [e.to_dict() for e in errors])
    seconds = time.perf_counter() - start
    return EvalSummary(
        out_dir, scores, errors, answered, skipped, seconds, decode_seconds, model_seconds, records
    )


def _durations(dataset: VideoMMEDataset) -> list[str]:
    from paperzoo_videomme.modeling_videomme import DURATIONS

    present = {v.duration for v in dataset.videos}
    return [d for d in DURATIONS if d in present] or list(DURATIONS)


def summary_line(summary: EvalSummary, rule: str = "official") -> str:
    scores = summary.scores.get(rule) or summary.headline()
    overall = scores["overall"]
    per = ", ".join(
        f"{d} {100 * block['accuracy']:.1f}% ({block['correct']}/{block['total']})"
        for d, block in scores["by_duration"].items()
    )
    return (
        f"{scores['rule']}: overall {100 * overall['accuracy']:.1f}% ({overall['correct']}/{overall['total']}, "
        f"{overall['unparsed']} unparsed); {per}"
    )


def build_model(cfg: Any) -> VideoQAModel:
    """The model of a :class:`~paperzoo_videomme.configuration.ModelConfig`."""
    from paperzoo_videomme.adapters import (
        CallableAdapter,
        OpenAIChatAdapter,
        TransformersVideoAdapter,
        subtitle_reader,
    )

    if cfg.kind in ("tiny_qwen2_vl", "tiny_llava_onevision"):
        from paperzoo_videomme.tiny import tiny_adapter

        return tiny_adapter(
            cfg.kind, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens, frames_as=cfg.frames_as
        )
    if cfg.kind == "subtitle_reader":
        return CallableAdapter(subtitle_reader, name="subtitle_reader")
    if cfg.kind == "callable":
        if not cfg.path:
            raise ValueError("model.kind=callable needs model.path='package.module:function'.")
        return CallableAdapter.from_path(cfg.path)
    if cfg.kind == "transformers":
        if not cfg.path:
            raise ValueError("model.kind=transformers needs model.path, a local checkpoint folder.")
        return TransformersVideoAdapter.from_pretrained(
            cfg.path,
            dtype=cfg.dtype,
            device=cfg.device,
            max_new_tokens=cfg.max_new_tokens,
            frames_as=cfg.frames_as,
        )
    if cfg.kind == "openai":
        if not cfg.base_url or not cfg.model_name:
            raise ValueError("model.kind=openai needs model.base_url and model.model_name.")
        return OpenAIChatAdapter(
            cfg.base_url,
            cfg.model_name,
            api_key_env=cfg.api_key_env,
            max_tokens=cfg.max_new_tokens,
            concurrency=cfg.batch_size,
            timeout_s=cfg.timeout_s,
        )
    raise ValueError(f"unknown model kind {cfg.kind!r}")
