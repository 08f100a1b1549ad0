"""``paperzoo reproduce videomme``: the pipeline and parity tables (smoke, mini) and the main table (full)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from paperzoo_shared.config import load_config, to_dict
from paperzoo_shared.metrics.stats import difference_ci
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult
from paperzoo_videomme.configuration import ModelConfig, ProtocolConfig, VideoMMEConfig
from paperzoo_videomme.data import load_videomme, write_synthetic_release
from paperzoo_videomme.evaluate import build_model, run_evaluation
from paperzoo_videomme.modeling_videomme import DURATIONS, extract_answer
from paperzoo_videomme.responses import RESPONSE_STYLES, simulate_responses
from paperzoo_videomme.scoring import SCORING_RULES, score_records


def load_preset(request: ReproRequest) -> VideoMMEConfig:
    return load_config(
        VideoMMEConfig, request.config_dir / f"{request.preset}.yaml", overrides=request.overrides
    )


def reproduce(request: ReproRequest) -> TableResult:
    cfg = load_preset(request)
    if request.table.id == "parity":
        return _parity(request, cfg)
    if request.table.id == "pipeline":
        return _pipeline(request, cfg)
    if request.table.id == "main":
        return _main(request, cfg)
    raise ValueError(f"videomme has no table {request.table.id!r}")


def _synthetic(cfg: VideoMMEConfig, work: Path, seed: int, n_videos: int | None = None) -> Path:
    root = work / f"synthetic-seed{seed}-n{n_videos or cfg.synthetic.n_videos}"
    if not (root / "videomme" / "test.json").is_file():
        write_synthetic_release(
            root, n_videos=n_videos or cfg.synthetic.n_videos, seed=seed, scene=cfg.synthetic.scene()
        )
    return root


def _pct(block: dict[str, Any]) -> float:
    return 100.0 * block["accuracy"]


# ----------------------------------------------------------------------------------------------------
# parity: one fixed set of responses, every scoring rule
# ----------------------------------------------------------------------------------------------------


def _parity(request: ReproRequest, cfg: VideoMMEConfig) -> TableResult:
    per_rule: dict[str, dict[int, dict[str, float]]] = {rule: {} for rule in SCORING_RULES}
    n_videos = 4 * cfg.synthetic.n_videos  # questions only: no decoding, so a larger set is cheap
    fingerprint = {"synthetic": to_dict(cfg.synthetic), "parity": to_dict(cfg.parity), "n_videos": n_videos}
    with tempfile.TemporaryDirectory(prefix="videomme-parity-") as tmp:
        for seed in request.seeds:
            memo: dict[str, dict[str, float]] = {}  # all rules are scored at once; each is cached on its own
            for rule in SCORING_RULES:

                def compute(rule: str = rule, seed: int = seed, memo: dict = memo) -> dict[str, float]:
                    if not memo:
                        memo.update(_parity_scores(cfg, Path(tmp), seed, n_videos))
                    return memo[rule]

                per_rule[rule][seed] = request.cached(rule, seed, compute, fingerprint=fingerprint)
    rows = [
        RowResult.from_seed_metrics(rule, f"{rule} ({SCORING_RULES[rule].source})", per_rule[rule])
        for rule in SCORING_RULES
    ]
    notes = [
        f"Responses: {cfg.parity.correct_prob:.0%} aimed at the right letter, styles drawn with weights "
        + ", ".join(f"{k} {v:g}" for k, v in cfg.parity.styles.items())
        + f" ({n_videos * 3} questions per seed, synthetic stand-in, seeds {', '.join(map(str, request.seeds))}).",
        _style_table(),
    ]
    if len(request.seeds) >= 2:
        for rule in ("lmms_eval", "vlmevalkit"):
            ci = difference_ci(
                [per_rule[rule][s]["overall"] for s in request.seeds],
                [per_rule["official"][s]["overall"] for s in request.seeds],
                paired=True,
            )
            notes.append(
                f"{rule} − official: {ci['mean_difference']:+.1f} pp (95% CI [{ci['low']:+.1f}, {ci['high']:+.1f}], "
                f"paired over {ci['n']} seeds)."
            )
    return TableResult(rows=rows, config=cfg, notes=notes)


def _parity_scores(cfg: VideoMMEConfig, work: Path, seed: int, n_videos: int) -> dict[str, dict[str, float]]:
    dataset = load_videomme(_synthetic(cfg, work, seed, n_videos))
    records = simulate_responses(
        list(dataset.records()), seed=seed, styles=cfg.parity.styles, correct_prob=cfg.parity.correct_prob
    )
    out = {}
    for rule in SCORING_RULES:
        scores = score_records(records, rule)
        overall = scores["overall"]
        out[rule] = {
            "overall": _pct(overall),
            **{d: _pct(scores["by_duration"][d]) for d in DURATIONS},
            "denominator": 100.0 * overall["total"] / overall["questions"],
        }
    for rule in SCORING_RULES:
        out[rule]["delta"] = out[rule]["overall"] - out["official"]["overall"]
    return out


def _style_table() -> str:
    """How each rule reads each response style (intended letter C, option text "circle")."""
    options = ["A. square", "B. ring", "C. circle", "D. cross"]
    rules = list(SCORING_RULES)
    lines = [
        "| style | response (intended C) | " + " | ".join(rules) + " |",
        "|---|---|" + "---|" * len(rules),
    ]
    for style, render in RESPONSE_STYLES.items():
        response = render("C", options)
        record = {"question": "Which shape appears first in the video?", "options": options}
        cells = []
        for rule in rules:
            letter = extract_answer(response, SCORING_RULES[rule].extractor, record)
            if letter == "Z":
                letter = "Z (wrong)"
            cells.append(letter if letter else ("dropped" if SCORING_RULES[rule].drop_unparsed else "wrong"))
        lines.append(f"| {style} | `{response}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# pipeline: the whole evaluation on the synthetic set
# ----------------------------------------------------------------------------------------------------


def _pipeline(request: ReproRequest, cfg: VideoMMEConfig) -> TableResult:
    if not cfg.pipeline:
        raise ValueError(f"configs/{request.preset}.yaml has no pipeline rows; add some under `pipeline:`.")
    per_row: dict[str, dict[int, dict[str, float]]] = {row.id: {} for row in cfg.pipeline}
    timing: dict[str, list[float]] = {}
    work = Path(tempfile.mkdtemp(prefix="videomme-pipeline-"))
    try:
        for seed in request.seeds:
            for row in cfg.pipeline:
                protocol = ProtocolConfig(
                    **{
                        **to_dict(cfg.protocol),
                        "subtitles": row.subtitles,
                        "frame_sampler": row.frame_sampler,
                        "prompt_style": row.prompt_style,
                    }  # fmt: skip
                )
                model_cfg = ModelConfig(**{**to_dict(cfg.model), "kind": row.model, "seed": seed})
                fingerprint = {"row": to_dict(row), "protocol": to_dict(protocol), "model": to_dict(model_cfg),
                               "synthetic": to_dict(cfg.synthetic)}  # fmt: skip

                def compute(row: Any = row, protocol: ProtocolConfig = protocol, model_cfg: ModelConfig = model_cfg,
                            seed: int = seed) -> dict[str, float]:  # fmt: skip
                    dataset = load_videomme(
                        _synthetic(cfg, work, seed), subtitles=protocol.subtitles != "none"
                    )
                    summary = run_evaluation(
                        dataset,
                        build_model(model_cfg),
                        protocol,
                        work / f"run-{row.id}-seed{seed}",
                        batch_size=model_cfg.batch_size,
                        num_workers=cfg.run.num_workers,
                        rules=("official", "lmms_eval"),
                        progress=cfg.run.progress,
                    )
                    official = summary.scores["official"]
                    lines = [r["subtitle_lines"] or 0 for r in _responses(summary.out_dir)]
                    timing.setdefault(row.id, []).append(summary.seconds)
                    return {
                        **{
                            d: _pct(official["by_duration"][d])
                            for d in DURATIONS
                            if d in official["by_duration"]
                        },
                        "overall": _pct(official["overall"]),
                        "synopsis": _pct(official["overall"]["task_type"]["Information Synopsis"]),
                        "answered": 100.0
                        * official["overall"]["total"]
                        / max(1, official["overall"]["questions"]),
                        "overall_lmms": _pct(summary.scores["lmms_eval"]["overall"]),
                        "subtitle_lines": sum(lines) / max(1, len(lines)),
                    }

                per_row[row.id][seed] = request.cached(row.id, seed, compute, fingerprint=fingerprint)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [RowResult.from_seed_metrics(row.id, row.label, per_row[row.id]) for row in cfg.pipeline]
    notes = [
        f"Synthetic stand-in in the release layout: {cfg.synthetic.n_videos} videos × 3 questions per seed "
        f"({cfg.synthetic.size}×{cfg.synthetic.size} px, {cfg.synthetic.fps:g} fps, "
        f"{cfg.synthetic.duration_range_s[0]:g}-{cfg.synthetic.duration_range_s[1]:g} s; short/medium/long = below "
        f"{cfg.synthetic.duration_buckets_s[0]:g} s / below {cfg.synthetic.duration_buckets_s[1]:g} s / longer). "
        f"Frames: {cfg.protocol.frame_sampler} sampler, {cfg.protocol.num_frames} per video; prompts as in each row.",
        "Accuracy is the official rule (unparsable responses dropped; 0.0 when nothing was answered); "
        "'Answered %' is the share the official rule counted. The tiny models are random: their numbers test "
        "the pipeline, not Video-MME ability. The subtitle reader never sees frames: it answers the narration "
        "(Information Synopsis) questions when the protocol's subtitles contain the narration cue.",
    ]
    if timing:
        notes.append(
            "Wall time per row and seed (s): "
            + ", ".join(f"{k} {sum(v) / len(v):.1f}" for k, v in timing.items())
            + " (rows restored from the ledger are not timed)."
        )
    return TableResult(rows=rows, config=cfg, notes=notes)


def _responses(out_dir: Path) -> list[dict[str, Any]]:
    from paperzoo_videomme.evaluate import RESPONSES, read_responses

    return list(read_responses(out_dir / RESPONSES).values())


# ----------------------------------------------------------------------------------------------------
# main: the paper's table on the real release
# ----------------------------------------------------------------------------------------------------


def _main(request: ReproRequest, cfg: VideoMMEConfig) -> TableResult:
    if not cfg.data.root:
        raise ValueError(
            "the full preset evaluates the real Video-MME release: pass --set data.root=/path/to/Video-MME "
            "(the folder with videomme/test-00000-of-00001.parquet, video/ and subtitle/) and set the models "
            "in configs/full.yaml (e.g. --set full_rows.video_llava.path=/ckpt/Video-LLaVA-7B-hf)."
        )
    rows, notes = [], []
    out_root = request.out_dir / "runs"
    for paper_row in request.table.rows:
        model_cfg = cfg.full_rows.get(paper_row.id)
        configured = model_cfg is not None and (
            model_cfg.path or (model_cfg.base_url and model_cfg.model_name)
        )
        if not configured:
            notes.append(f"{paper_row.label}: skipped (no model configured in full_rows.{paper_row.id}).")
            continue
        base = cfg.full_protocol.get(paper_row.id, cfg.protocol)
        per_seed = {}
        for seed in request.seeds:

            def compute(
                paper_row: Any = paper_row, model_cfg: ModelConfig = model_cfg, base: ProtocolConfig = base
            ) -> dict[str, float]:
                metrics = {}
                for suffix, subtitles in (("wo", "none"), ("w", "official")):
                    protocol = ProtocolConfig(**{**to_dict(base), "subtitles": subtitles})
                    dataset = load_videomme(
                        cfg.data.root,
                        annotations=cfg.data.annotations or None,
                        durations=cfg.data.durations,
                        limit_videos=cfg.data.limit_videos or None,
                        subtitles=subtitles != "none",
                        probe=cfg.data.probe,
                    )
                    summary = run_evaluation(
                        dataset,
                        build_model(model_cfg),
                        protocol,
                        out_root / f"{paper_row.id}-{suffix}",
                        batch_size=model_cfg.batch_size,
                        num_workers=cfg.run.num_workers,
                        rules=tuple(cfg.run.scoring_rules),
                        progress=cfg.run.progress,
                    )
                    scores = (
                        summary.scores["official"] if "official" in summary.scores else summary.headline()
                    )
                    for duration, block in scores["by_duration"].items():
                        metrics[f"{duration}_{suffix}"] = _pct(block)
                    metrics[f"overall_{suffix}"] = _pct(scores["overall"])
                return metrics

            per_seed[seed] = request.cached(
                paper_row.id,
                seed,
                compute,
                fingerprint={
                    "model": to_dict(model_cfg),
                    "protocol": to_dict(base),
                    "data": to_dict(cfg.data),
                },  # fmt: skip
            )
        rows.append(
            RowResult.from_seed_metrics(paper_row.id, paper_row.label, per_seed, paper_row=paper_row.id)
        )
    if not rows:
        raise ValueError(
            "no row of the main table has a model configured; set full_rows.<row>.path (transformers) or "
            "full_rows.<row>.base_url and .model_name (OpenAI-compatible) in configs/full.yaml or with --set."
        )
    return TableResult(rows=rows, config=cfg, notes=notes)
