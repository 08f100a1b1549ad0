"""``paperzoo reproduce huwsod``: the VOC07 table (mini: its miniature on WSOD-Shapes).

Every (row, seed) goes through ``request.cached`` so a killed run resumes; training runs also resume from
their last checkpoint. Large files (generated data, stage-0 backbone, checkpoints) live in a cache folder
(``$PAPERZOO_HUWSOD_CACHE``, default ``~/.cache/paperzoo-huwsod``), never in ``results/``.

Rows: the baselines without a detector (whole-image boxes scored by the stage-0 classifier, random boxes)
and the detectors of :data:`~paperzoo_huwsod.configuration.METHODS`. Model selection never looks at the
test split: the final iterate is evaluated (the repository keeps the checkpoint with the best *test* AP50;
we implement no checkpoint selection at all, on val or on test).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paperzoo_huwsod.configuration import METHOD_LABELS, HUWSODConfig, apply_method, resolve_class_names
from paperzoo_huwsod.data import (
    dataset_root,
    load_ground_truth,
    load_weak_labels,
    offline_proposals,
    weak_label_path,
    write_weak_labels,
)
from paperzoo_huwsod.evaluate import (
    ImageDetections,
    corloc_metric,
    detection_metrics,
    predict,
    proposal_recall,
    to_voc_detections,
)
from paperzoo_shared.config import config_hash, from_dict, load_config, to_dict
from paperzoo_shared.metrics.stats import difference_ci
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult

logger = logging.getLogger(__name__)

PAPER_ROW = {"huwsod": "huwsod_wsr18"}
METRICS = ("map07", "map_area", "map07_5095", "corloc", "ap", "ap50", "ap75")


def cache_root() -> Path:
    return Path(os.environ.get("PAPERZOO_HUWSOD_CACHE", Path.home() / ".cache" / "paperzoo-huwsod"))


def split_records(config: HUWSODConfig, root: Path, split: str, class_names: Sequence[str]):
    """Image records of an evaluation split (its image-label file, derived from the annotations if missing)."""
    if config.data.format in ("voc", "coco") and not weak_label_path(config.data, root, split).is_file():
        write_weak_labels(config.data, root, split)
    return load_weak_labels(config.data, root, split, class_names)


def class_names_of(config: HUWSODConfig, root: Path) -> list[str]:
    names = resolve_class_names(config.data)
    if names:
        return names
    import json

    data = json.loads(weak_label_path(config.data, root, config.data.train_splits[0]).read_text())
    return [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]


def evaluate_detections(
    config: HUWSODConfig,
    root: Path,
    class_names: Sequence[str],
    predict_fn,
) -> dict[str, float]:
    """Test-split mAP / COCO AP and CorLoc on the CorLoc splits, for a ``predict_fn(records) -> detections``."""
    dcfg = config.data
    records = split_records(config, root, dcfg.test_split, class_names)
    gt = load_ground_truth(dcfg, root, dcfg.test_split, class_names)
    metrics = detection_metrics(to_voc_detections(predict_fn(records), class_names), gt, class_names, records)
    for k, split in enumerate(dcfg.corloc_splits):
        recs = split_records(config, root, split, class_names)
        gt_split = load_ground_truth(dcfg, root, split, class_names)
        value = corloc_metric(to_voc_detections(predict_fn(recs), class_names), gt_split, class_names)
        metrics["corloc" if k == 0 else f"corloc_{split}"] = value
    return metrics


# ----------------------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------------------


def _whole_image(config: HUWSODConfig, root: Path, class_names: list[str], stage0: Path) -> dict[str, float]:
    """One whole-image box per class, scored by the stage-0 image classifier's sigmoid."""
    from paperzoo_huwsod.data import pad_batch, read_rgb
    from paperzoo_huwsod.train import Stage0Classifier

    state = torch.load(stage0, map_location="cpu", weights_only=True)
    clf = Stage0Classifier(config, len(class_names))
    clf.backbone.load_state_dict(state["backbone"])
    clf.fc.load_state_dict(state["fc"])
    clf.eval()

    @torch.no_grad()
    def run(records):
        out = []
        for start in range(0, len(records), 32):
            chunk = records[start : start + 32]
            arrays = [read_rgb(r, config.data.skip_bad) for r in chunk]
            pairs = [
                (r, torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float())
                for r, a in zip(chunk, arrays)
                if a is not None
            ]
            batch, sizes = pad_batch([im for _, im in pairs], 8)
            probs = torch.sigmoid(clf(batch, sizes))
            for (r, im), p in zip(pairs, probs):
                h, w = im.shape[1:]
                k = len(class_names)
                boxes = torch.tensor([[0.0, 0.0, float(w), float(h)]]).repeat(k, 1)
                out.append(ImageDetections(r.image_id, boxes, p, torch.arange(k)))
        return out

    return evaluate_detections(config, root, class_names, run)


def _random_boxes(config: HUWSODConfig, root: Path, class_names: list[str], seed: int) -> dict[str, float]:
    """``random_boxes_per_image`` uniformly random boxes (side >= 8 px) with random classes and scores."""

    def run(records):
        rng = np.random.default_rng(seed)
        out = []
        for r in records:
            n = config.random_boxes_per_image
            x = np.sort(rng.uniform(0, r.width, size=(n, 2)), axis=1)
            y = np.sort(rng.uniform(0, r.height, size=(n, 2)), axis=1)
            x[:, 1] = np.minimum(np.maximum(x[:, 1], x[:, 0] + 8), r.width)
            y[:, 1] = np.minimum(np.maximum(y[:, 1], y[:, 0] + 8), r.height)
            boxes = torch.tensor(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1), dtype=torch.float32)
            out.append(
                ImageDetections(
                    r.image_id,
                    boxes,
                    torch.tensor(rng.uniform(size=n), dtype=torch.float32),
                    torch.tensor(rng.integers(0, len(class_names), size=n)),
                )
            )
        return out

    return evaluate_detections(config, root, class_names, run)


def run_detector(
    config: HUWSODConfig,
    method: str,
    seed: int,
    run_dir: Path,
    data_cache: Path,
    stage0: Path | None,
    progress: bool,
) -> dict[str, float]:
    """Trains ``method`` (resuming) and evaluates the final iterate (or the val-selected one)."""
    from paperzoo_huwsod.train import StepProgress, fit, load_model

    cfg = apply_method(config, method)
    cfg.train.seed = seed
    bars = [] if progress else [StepProgress(f"{method} seed {seed}", _worker_slot())]
    weights = fit(
        cfg, run_dir, cache_dir=data_cache, backbone_weights=stage0, progress=progress, callbacks=bars
    )
    model, class_names = load_model(cfg, weights)
    root = dataset_root(cfg.data, data_cache)
    skip = cfg.data.skip_bad

    def run(records, tta=False):
        proposals = offline_proposals(records, cfg.model.proposals, data_cache, skip)
        return predict(
            model,
            records,
            cfg.eval,
            tta=tta,
            size_divisibility=cfg.augment.size_divisibility,
            skip_bad=skip,
            proposals=proposals,
        )

    metrics = evaluate_detections(cfg, root, class_names, run)
    sources = [
        name
        for name, on in (
            ("rpn", cfg.model.rpn.enabled),
            ("ae", cfg.model.ae.enabled),
            ("external", cfg.model.proposals.external != "none"),
        )
        if on
    ]
    if sources:
        records = split_records(cfg, root, cfg.data.test_split, class_names)
        gt = load_ground_truth(cfg.data, root, cfg.data.test_split, class_names)
        offline = offline_proposals(records, cfg.model.proposals, data_cache, skip)
        same_size = all(r.height == min(r.height, r.width) == cfg.eval.scales[0] for r in records)
        if same_size:  # proposals are in input pixels: only comparable to GT when the test scale is native
            from paperzoo_huwsod.data import pad_batch, read_rgb

            for source in sources:
                props, ids = [], []
                for start in range(0, len(records), 32):
                    chunk = records[start : start + 32]
                    ims = [
                        torch.from_numpy(np.ascontiguousarray(read_rgb(r, False))).permute(2, 0, 1).float()
                        for r in chunk
                    ]
                    batch, sizes = pad_batch(ims, cfg.augment.size_divisibility)
                    external = [offline[r.image_id] for r in chunk] if offline is not None else None
                    props += model.proposal_boxes(batch, sizes, source, external)
                    ids += [r.image_id for r in chunk]
                metrics[f"{source}_recall50"] = proposal_recall(props, gt, ids)
    if cfg.eval.tta is False and method == "huwsod":
        records = split_records(cfg, root, cfg.data.test_split, class_names)
        gt = load_ground_truth(cfg.data, root, cfg.data.test_split, class_names)
        dets = to_voc_detections(run(records, tta=True), class_names)
        tta = detection_metrics(dets, gt, class_names, records)
        metrics["map07_tta"] = tta["map07"]
        metrics["ap50_tta"] = tta["ap50"]
    return metrics


def _worker_slot() -> int:
    """0 in the main process, k - 1 in the k-th pool worker: the row of its progress bar."""
    identity = mp.current_process()._identity  # set by multiprocessing.Pool for its workers
    return max(0, identity[0] - 1) if identity else 0


def _job(args: tuple[dict[str, Any], str, int, str, str, str | None]) -> tuple[str, int, dict[str, float]]:
    """A (row, seed) in a worker process (single-threaded)."""
    config_dict, method, seed, run_dir, data_cache, stage0 = args
    torch.set_num_threads(1)
    config = from_dict(HUWSODConfig, config_dict)
    metrics = run_row(config, method, seed, Path(run_dir), Path(data_cache), Path(stage0) if stage0 else None)
    return method, seed, metrics


def run_row(
    config: HUWSODConfig,
    method: str,
    seed: int,
    run_dir: Path,
    data_cache: Path,
    stage0: Path | None,
    progress: bool = False,
) -> dict[str, float]:
    torch.manual_seed(seed)
    random.seed(seed)
    root = dataset_root(config.data, data_cache)
    class_names = class_names_of(config, root)
    if method == "whole_image":
        if stage0 is None:
            raise ValueError(
                "the whole_image row scores boxes with the stage-0 classifier; set model.backbone.pretrain_iters"
            )
        return _whole_image(config, root, class_names, stage0)
    if method == "random_boxes":
        return _random_boxes(config, root, class_names, seed)
    return run_detector(config, method, seed, run_dir, data_cache, stage0, progress)


# ----------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------


def _ci_sentence(rows: dict[str, dict[int, dict[str, float]]], a: str, b: str, metric: str) -> str | None:
    if a not in rows or b not in rows:
        return None
    seeds = sorted(set(rows[a]) & set(rows[b]))
    if len(seeds) < 2:
        return None
    va = [rows[a][s][metric] for s in seeds]
    vb = [rows[b][s][metric] for s in seeds]
    ci = difference_ci(va, vb, paired=True)
    return (
        f"{METHOD_LABELS[a]} minus {METHOD_LABELS[b]}, {metric}: {ci['mean_difference']:+.2f} "
        f"(95% CI [{ci['low']:+.2f}, {ci['high']:+.2f}], paired over {len(seeds)} seeds)"
    )


def _fraction_sentence(
    rows: dict[str, dict[int, dict[str, float]]], a: str, b: str, metric: str
) -> str | None:
    """``a`` as a fraction of ``b``: the ratio of their means over the seeds both have, and each seed's ratio."""
    if a not in rows or b not in rows:
        return None
    seeds = sorted(set(rows[a]) & set(rows[b]))
    mean_b = float(np.mean([rows[b][s][metric] for s in seeds])) if seeds else 0.0
    if mean_b <= 0:
        return None
    mean_a = float(np.mean([rows[a][s][metric] for s in seeds]))
    per_seed = ", ".join(
        f"{rows[a][s][metric] / rows[b][s][metric]:.2f}" if rows[b][s][metric] > 0 else "n/a" for s in seeds
    )
    return (
        f"{METHOD_LABELS[a]} as a fraction of {METHOD_LABELS[b]}, {metric}: {mean_a / mean_b:.2f} "
        f"(mean {mean_a:.2f} / {mean_b:.2f} over {len(seeds)} seeds; per seed {per_seed})"
    )


def _claims(rows: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    """Which of the paper notes' small-scale claims (sec. 7.4) the numbers support; stated, not tuned for."""

    def mean(row: str, metric: str) -> float | None:
        if row not in rows:
            return None
        vals = [m[metric] for m in rows[row].values() if metric in m]
        return float(np.mean(vals)) if vals else None

    notes = []
    checks = [
        ("C1 (MIL localises beyond trivial baselines)", "wsddn", ["whole_image", "random_boxes"], "map07"),
        ("C2 (online refinement improves WSDDN)", "oicr", ["wsddn"], "map07"),
        ("C3 (regression + MIST improve precise localisation)", "oicr_reg_mist", ["oicr"], "ap75"),
        (
            "C5/C10 (HUWSOD without offline proposals vs OICR+reg+MIST with them)",
            "huwsod",
            ["oicr_reg_mist"],
            "map07",
        ),
        ("C10 (gap to the fully supervised upper bound)", "fully_supervised", ["huwsod"], "map07"),
    ]
    for name, row, others, metric in checks:
        value = mean(row, metric)
        refs = [(o, mean(o, metric)) for o in others]
        if value is None or any(v is None for _, v in refs):
            continue
        # paired 95% CIs of (row - reference) over seeds: a claim holds only when every interval is above 0
        cis = []
        for other, _ in refs:
            seeds = sorted(set(rows[row]) & set(rows[other]))
            if len(seeds) >= 2:
                a = [rows[row][s][metric] for s in seeds]
                cis.append(difference_ci(a, [rows[other][s][metric] for s in seeds], paired=True))
        if len(cis) < len(refs):
            verdict = "not decided (fewer than 2 paired seeds)"
        elif all(ci["low"] > 0 for ci in cis):
            verdict = "holds at this scale (every paired 95% CI above 0)"
        elif any(ci["high"] < 0 for ci in cis):
            verdict = "does not hold at this scale (a paired 95% CI below 0)"
        else:
            verdict = "not decided at this scale (a paired 95% CI includes 0)"
        ref_text = ", ".join(f"{METHOD_LABELS[o]} {v:.2f}" for o, v in refs)
        notes.append(f"{name}: {METHOD_LABELS[row]} {metric} {value:.2f} vs {ref_text} -> {verdict}.")
    recalls = []
    for row in rows:
        for source in ("external", "rpn", "ae"):
            value = mean(row, f"{source}_recall50")
            if value is not None:
                recalls.append(f"{METHOD_LABELS[row]} {source} {value:.1f} %")
    if recalls:
        notes.append(
            "Proposal recall at IoU 0.5 on the test split (mean over seeds): " + "; ".join(recalls) + "."
        )
    return notes


def reproduce(request: ReproRequest) -> TableResult:
    preset = request.preset
    config = load_config(HUWSODConfig, request.config_dir / f"{preset}.yaml", overrides=request.overrides)
    if config.data.format != "shapes" and not config.data.root:
        raise ValueError(
            f"preset {preset} reads {config.data.format.upper()} from data.root; pass it with "
            "`--set data.root=/path/to/VOCdevkit/VOC2007` (and, for COCO, see configs/full_coco.yaml)"
        )
    base = cache_root() / preset / config_hash(config)
    data_cache = cache_root() / "data"
    root = dataset_root(config.data, data_cache)
    class_names = class_names_of(config, root)
    stage0 = None
    needs_stage0 = any(r != "random_boxes" for r in config.rows)
    if not config.model.backbone.weights and config.model.backbone.pretrain_iters > 0 and needs_stage0:
        # one stage-0 backbone shared by every row and seed (as one ImageNet model is shared in the paper)
        from paperzoo_huwsod.train import StepProgress, pretrain_backbone

        stage0 = pretrain_backbone(
            config, base / "stage0.pt", data_cache, callbacks=[StepProgress("stage-0 backbone")]
        )
    per_row: dict[str, dict[int, dict[str, float]]] = {}
    jobs = []
    for row in config.rows:
        for seed in request.seeds:
            row_cfg = apply_method(config, row)
            row_cfg.train.seed = seed
            fingerprint = {
                "row": row,
                "seed": seed,
                "config": to_dict(row_cfg),
                "stage0": str(stage0 is not None),
            }
            key = config_hash(fingerprint)
            done = request.ledger.get(row, seed, key) if request.ledger is not None else None
            if done is not None:
                per_row.setdefault(row, {})[seed] = done
            else:
                run_dir = base / "runs" / f"{row}_seed{seed}"
                jobs.append(
                    (
                        row,
                        seed,
                        key,
                        (
                            to_dict(config),
                            row,
                            seed,
                            str(run_dir),
                            str(data_cache),
                            str(stage0) if stage0 else None,
                        ),
                    )
                )
    workers = min(config.workers, len(jobs))
    if workers > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            keys = {(row, seed): key for row, seed, key, _ in jobs}
            for method, seed, metrics in pool.imap_unordered(_job, [j[3] for j in jobs]):
                per_row.setdefault(method, {})[seed] = request.cached(
                    method, seed, lambda m=metrics: m, fingerprint=keys[(method, seed)]
                )
    else:
        for row, seed, key, args in jobs:
            per_row.setdefault(row, {})[seed] = request.cached(
                row, seed, lambda a=args: _job(a)[2], fingerprint=key
            )
    rows = [
        RowResult.from_seed_metrics(row, METHOD_LABELS[row], per_row[row], paper_row=PAPER_ROW.get(row))
        for row in config.rows
    ]
    notes = [
        "Miniature on WSOD-Shapes (synthetic, 6 classes); the paper's figures are VOC07 test mAP@0.5 with TTA and "
        "CorLoc on voc_2007_train for ResNet-WS-18 (repository README) and are not comparable in magnitude."
    ]
    for a, b, metric in (
        ("huwsod", "oicr_reg_mist", "map07"),
        ("oicr_reg_mist", "oicr", "ap75"),
        ("oicr", "wsddn", "map07"),
        ("wsddn", "whole_image", "map07"),
        # mini-long's pre-registered ladder: each self-training row minus the row above it
        ("oicr_reg_mist_consistency", "oicr_reg_mist", "map07"),
        ("oicr_reg_mist_consistency_ema", "oicr_reg_mist_consistency", "map07"),
    ):
        sentence = _ci_sentence(per_row, a, b, metric)
        if sentence:
            notes.append(sentence)
    sentence = _fraction_sentence(per_row, "huwsod", "oicr_reg_mist_consistency_ema", "map07")
    if sentence:
        notes.append(sentence)
    notes += _claims(per_row)
    return TableResult(rows=rows, config=config, notes=notes, extra={"class_names": class_names})
