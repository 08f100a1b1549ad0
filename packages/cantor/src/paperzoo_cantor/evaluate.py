"""Run Cantor (or a direct / chain-of-thought baseline) over ScienceQA or MathVista and score it.

A run folder holds ``records.jsonl`` (one line per problem, appended and fsynced as each finishes: the
trace of every call, the status, the extraction and the verdict), ``cache.sqlite`` (every successful
response, keyed by model, prompt, image hash and settings), ``config.json`` and ``scores.json``. A killed
run started again with the same folder skips the problems already recorded and answers every call it had
already received from the cache, so nothing is lost and nothing is paid twice.

A failed call (timeout, refusal, malformed response, other error) is recorded in the problem's trace and
status and the run goes on; the failed step stands as the release's ``" "``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from paperzoo_cantor.backends import (
    Backend,
    CallableBackend,
    OpenAIBackend,
    ResilientBackend,
    ResponseCache,
    TransformersBackend,
)
from paperzoo_cantor.benchmarks import mathvista, scienceqa
from paperzoo_cantor.configuration import BackendConfig, EvalConfig
from paperzoo_cantor.modeling_cantor import (
    CallFailed,
    CantorConfig,
    CantorTrace,
    Step,
    load_prompts,
    parse_response,
    run_cantor,
)
from paperzoo_shared.data import DataError
from paperzoo_shared.errors import UserError

RECORDS = "records.jsonl"
CACHE = "cache.sqlite"

SCIENCEQA_COT_SUFFIX = '\nThink step by step, then end your reply with "The answer is X." where X is the letter of the correct option.'
MATHVISTA_COT_SUFFIX = "\nLet's think step by step."


@dataclass
class BenchItem:
    """One problem, benchmark-neutral."""

    pid: str
    image: Path | None
    cantor_query: str
    direct_prompt: str
    cot_prompt: str
    choices: tuple[str, ...] | None
    problem: dict[str, Any]
    """The release's problem fields (what the scorer reads)."""


def read_captions(path: str) -> dict[str, str]:
    """pid -> caption from ScienceQA's ``data/captions.json`` (``{"model": ..., "captions": {pid: text}}``),
    MathVista's ``data/texts/captions_bard.json`` (``{"model": ..., "texts": {pid: text}}``) or a plain
    ``{pid: text}`` object; ``{}`` for no path."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: a captions file is a JSON object (pid -> caption), got {type(data).__name__}"
        )
    for key in ("captions", "texts"):
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    return {str(pid): text for pid, text in data.items() if isinstance(text, str)}


def load_items(cfg: EvalConfig) -> list[BenchItem]:
    if not cfg.data_root:
        raise UserError(
            "no data root: pass --data-root (the release's data/scienceqa or MathVista data folder)"
        )
    captions = read_captions(cfg.captions)
    limit = cfg.limit or None
    items: list[BenchItem] = []
    if cfg.benchmark == "scienceqa":
        for it in scienceqa.load_scienceqa(cfg.data_root, "test", image_only=cfg.image_only, limit=limit):
            caption = captions.get(it.pid, "")
            qcm = scienceqa.qcm_prompt(it, caption)
            items.append(
                BenchItem(
                    pid=it.pid,
                    image=it.image,
                    cantor_query=scienceqa.cantor_query(it, caption, cfg.cantor.query_with_context),
                    direct_prompt=qcm,
                    cot_prompt=qcm.removesuffix("Answer:").rstrip() + SCIENCEQA_COT_SUFFIX,
                    choices=it.choices,
                    problem=dict(it.raw),
                )
            )
    else:
        for it in mathvista.load_mathvista(cfg.data_root, limit=limit):
            query = it.query
            caption = mathvista.refine_caption(captions.get(it.pid, ""))
            if caption:  # build_query.py's "Image description: ..." line, after the official query
                query = f"{query}\nImage description: {caption}"
            items.append(
                BenchItem(
                    pid=it.pid,
                    image=it.image,
                    cantor_query=query if cfg.cantor.query_with_context else it.question,
                    direct_prompt=query,
                    cot_prompt=query + MATHVISTA_COT_SUFFIX,
                    choices=it.choices,
                    problem=it.as_problem(),
                )
            )
    return items


def build_backend(
    cfg: BackendConfig, cache: ResponseCache | None, inner: Backend | None = None
) -> ResilientBackend:
    """The configured backend, wrapped with timeout, retries, rate limit, concurrency and the cache."""
    if cfg.kind == "same":
        raise ValueError("backend kind 'same' names no model")
    if inner is None:
        if cfg.kind == "openai":
            if not cfg.base_url or not cfg.model:
                raise UserError("the openai backend needs --base-url and --model")
            inner = OpenAIBackend(
                cfg.model, cfg.base_url, api_key_env=cfg.api_key_env, temperature=cfg.temperature,
                max_tokens=cfg.max_tokens, timeout=cfg.timeout or 600.0,
            )  # fmt: skip
        elif cfg.kind == "transformers":
            if not cfg.model:
                raise UserError("the transformers backend needs --model PATH (a local checkpoint folder)")
            inner = TransformersBackend(cfg.model, max_new_tokens=cfg.max_tokens)
        elif cfg.kind == "callable":
            inner = CallableBackend.from_path(cfg.model)
        else:
            from paperzoo_cantor.scripted import ScriptedVLM

            vlm = ScriptedVLM()
            inner = CallableBackend(vlm.respond, name="scripted-vlm")
    return ResilientBackend(
        inner, cache=cache, timeout=cfg.timeout or None, retries=cfg.retries, backoff=cfg.backoff,
        rate_limit=cfg.rate_limit or None, concurrency=cfg.concurrency,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# One problem
# ----------------------------------------------------------------------------------------------------


def _read_image(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise DataError(f"image not found: {path}") from error


async def _single(backend: ResilientBackend, role: str, prompt: str, image: bytes | None) -> CantorTrace:
    trace = CantorTrace(query=prompt)
    start = time.monotonic()
    step = Step(role=role, prompt=prompt, response="")
    try:
        step.response = await backend.generate(prompt, image)
    except CallFailed as error:
        step.error = f"{error.kind}: {error}"
        step.response = " "
    step.seconds = time.monotonic() - start
    trace.steps.append(step)
    trace.response = step.response
    return trace


def _status(trace: CantorTrace, method: str) -> tuple[str, list[str]]:
    errors = [f"{s.role}: {s.error}" for s in trace.steps if s.error]
    if errors:
        return next(s.error for s in trace.steps if s.error).split(":", 1)[0], errors  # type: ignore[union-attr]
    if method == "cantor" and not parse_response(trace.response).well_formed:
        return "malformed", ["synthesis: malformed: no 'Answer:' field in the response"]
    return "ok", []


def _trace_dict(trace: CantorTrace) -> dict[str, Any]:
    return {**trace.as_decision_json(), "steps": [dataclasses.asdict(s) for s in trace.steps]}


async def run_item(
    item: BenchItem,
    cfg: EvalConfig,
    backend: ResilientBackend,
    cantor: CantorConfig,
    expert_backend: ResilientBackend | None = None,
) -> dict[str, Any]:
    image = _read_image(item.image)
    model_image = image if cfg.cantor.images else None
    if cfg.method == "cantor":
        trace = await run_cantor(
            backend.generate, item.cantor_query, image, cantor, load_prompts(cantor.prompt_version),
            expert_generate=expert_backend.generate if expert_backend is not None else None,
        )  # fmt: skip
    elif cfg.method == "direct":
        trace = await _single(backend, "direct", item.direct_prompt, model_image)
    else:
        trace = await _single(backend, "cot", item.cot_prompt, model_image)
    record: dict[str, Any] = {"pid": item.pid, "benchmark": cfg.benchmark, "method": cfg.method,
                              "status": "", "errors": [], "response": trace.response}  # fmt: skip
    if cfg.benchmark == "mathvista":
        record.update(await _mathvista_verdict(item, cfg, backend, trace))
    else:
        record.update(
            scienceqa_verdict(
                trace.response, item.choices or (), int(item.problem["answer"]), item.pid, cfg.seed
            )
        )
    record["status"], record["errors"] = _status(trace, cfg.method)  # after the extraction call, if any
    record["trace"] = _trace_dict(trace)
    return record


def option_index(response: str, choices: tuple[str, ...] | list[str]) -> int | None:
    """Our ScienceQA matcher: the official ``The answer is X.`` when it occurs exactly once, else the
    ``Answer:`` field (or the whole reply) matched to a letter or an option's text."""
    official = scienceqa.extract_official(response)
    if official != "FAILED" and scienceqa.OPTIONS.index(official) < len(choices):
        return scienceqa.OPTIONS.index(official)
    return scienceqa.match_option(parse_response(response).answer, choices)


def scienceqa_verdict(
    response: str, choices: tuple[str, ...], answer: int, pid: str, seed: int
) -> dict[str, Any]:
    """Both ScienceQA readings of a reply. An unreadable answer takes ``get_pred_idx``'s random option,
    drawn from ``random.Random(f"{seed}:{pid}")`` (per problem, so resuming changes nothing)."""
    letter = scienceqa.extract_official(response)
    official = scienceqa.pred_index(letter, len(choices), random.Random(f"{seed}:{pid}:official"))
    matched = option_index(response, choices)
    option = (
        matched if matched is not None else random.Random(f"{seed}:{pid}:option").choice(range(len(choices)))
    )
    return {
        "extraction": {"official_regex": letter, "option_match": matched},
        "prediction": {"official_regex": official, "option_match": option},
        "correct": {"official_regex": official == answer, "option_match": option == answer},
    }


async def _mathvista_verdict(
    item: BenchItem, cfg: EvalConfig, backend: ResilientBackend, trace: CantorTrace
) -> dict[str, Any]:
    problem = item.problem
    response = trace.response
    if cfg.extractor == "answer_field":
        parsed = parse_response(response)
        field_text = parsed.answer if parsed.well_formed else response
        ruled = mathvista.extract_by_rules(field_text, problem, cfg.quick_extract)
        extraction = ruled if ruled is not None else field_text
    else:

        async def llm(prompt: str) -> str:
            step = await _single(backend, "extraction", prompt, None)
            trace.steps.append(step.steps[0])
            if step.steps[0].error:
                raise CallFailed("error", step.steps[0].error)
            return step.response

        extraction = await mathvista.extract_answer(
            response, problem, llm if cfg.extractor == "llm" else None, cfg.quick_extract
        )
    prediction = mathvista.normalize_extracted_answer(
        extraction, problem["choices"], problem["question_type"], problem["answer_type"], problem["precision"]
    )
    return {
        "extraction": extraction,
        "prediction": prediction,
        "correct": mathvista.is_correct(prediction, problem["answer"]),
    }


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """pid -> the last complete record (a line cut off by a kill is skipped)."""
    records: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[str(record["pid"])] = record
    return records


def _append(handle: Any, record: Mapping[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def run_config_dict(cfg: EvalConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


async def run_eval_async(
    cfg: EvalConfig, out: str | Path, inner: Backend | None = None, progress: bool = True
) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(run_config_dict(cfg), indent=2))
    items = load_items(cfg)
    cache = ResponseCache(out / CACHE)
    backend = build_backend(cfg.backend, cache, inner)
    expert_backend = None if cfg.expert_backend.kind == "same" else build_backend(cfg.expert_backend, cache)
    cantor = CantorConfig(
        prompt_version=cfg.cantor.prompt_version, split_mode=cfg.cantor.split_mode,  # type: ignore[arg-type]
        decision_image=cfg.cantor.images, synthesis_image=cfg.cantor.images,
    )  # fmt: skip
    done = read_records(out / RECORDS)
    todo = [it for it in items if it.pid not in done or (cfg.retry_failed and done[it.pid]["status"] != "ok")]
    semaphore = asyncio.Semaphore(cfg.item_concurrency)
    start = time.monotonic()
    bar = tqdm(total=len(todo), desc=f"{cfg.method} on {cfg.benchmark}", disable=not progress, unit="item")
    with (out / RECORDS).open("a", encoding="utf-8") as handle:

        async def one(item: BenchItem) -> None:
            async with semaphore:
                record = await run_item(item, cfg, backend, cantor, expert_backend)
            _append(handle, record)
            done[item.pid] = record
            bar.update(1)

        try:
            await asyncio.gather(*(one(it) for it in todo))
        finally:
            bar.close()
            await backend.aclose()
            if expert_backend is not None:
                await expert_backend.aclose()
            cache.close()
    wall = time.monotonic() - start
    records = [done[it.pid] for it in items if it.pid in done]
    summary = {
        "benchmark": cfg.benchmark,
        "method": cfg.method,
        "problems": len(items),
        "recorded": len(records),
        "run": {
            "new_items": len(todo),
            "wall_s": wall,
            "items_per_s": len(todo) / wall if wall > 0 else None,
            "calls": backend.stats.calls,
            "cache_hits": backend.stats.cache_hits,
            "retries": backend.stats.retries,
            "failed_calls": dict(backend.stats.failures),
        },  # fmt: skip
        "status": dict(Counter(r["status"] for r in records)),
        "scores": score_records(cfg.benchmark, items, records),
    }
    (out / "scores.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_eval(
    cfg: EvalConfig, out: str | Path, inner: Backend | None = None, progress: bool = True
) -> dict[str, Any]:
    return asyncio.run(run_eval_async(cfg, out, inner, progress))


def score_records(benchmark: str, items: list[BenchItem], records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Table 1 (ScienceQA, both readings) or Table 3 (MathVista) accuracies from the records."""
    problems = {it.pid: it.problem for it in items}
    if benchmark == "scienceqa":
        out: dict[str, Any] = {}
        for reading in ("official_regex", "option_match"):
            preds = {r["pid"]: r["prediction"][reading] for r in records}
            subset = {pid: {**problems[pid], "split": None} for pid in preds}
            out[reading] = scienceqa.score(subset, preds, split=None)
        out["unreadable"] = {
            "official_regex": sum(r["extraction"]["official_regex"] == "FAILED" for r in records),
            "option_match": sum(r["extraction"]["option_match"] is None for r in records),
        }
        return out
    correct = {r["pid"]: bool(r["correct"]) for r in records}
    return {"official": mathvista.score([problems[pid] for pid in correct], correct)}
