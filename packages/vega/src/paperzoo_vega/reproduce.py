"""``paperzoo reproduce vega``: the multi-task miniature (smoke, mini) and the official evaluation (full)."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from paperzoo_shared.config import load_config, to_dict
from paperzoo_shared.metrics.stats import difference_ci
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult
from paperzoo_vega.configuration import RowConfig, VegaConfig
from paperzoo_vega.construct import BuildConfig, build_dataset
from paperzoo_vega.data import VegaDataset, read_vega_jsonl
from paperzoo_vega.scoring import read_output_file, score_iitc, score_ita
from paperzoo_vega.synthetic import COLOURS, KINDS, generate_documents

PERCENT = ("picture_acc", "ita_acc")
_ENCODED: dict[str, dict[str, Any]] = {}


def load_preset(request: ReproRequest) -> VegaConfig:
    return load_config(VegaConfig, request.config_dir / f"{request.preset}.yaml", overrides=request.overrides)


def reproduce(request: ReproRequest) -> TableResult:
    cfg = load_preset(request)
    if request.table.id != "iitc":
        raise ValueError(f"vega has no table {request.table.id!r}")
    if request.preset == "full":
        return _full(request, cfg)
    return _mini(request, cfg)


# ----------------------------------------------------------------------------------------------------
# smoke / mini
# ----------------------------------------------------------------------------------------------------


def build_synthetic_release(cfg: VegaConfig, work: Path) -> dict[str, VegaDataset]:
    """Train and test IITC/ITA files built by the construction tool from the synthetic corpus."""
    build = BuildConfig(
        budget=cfg.construction.budget,
        image_tokens=cfg.construction.image_tokens,
        max_images=cfg.construction.max_images,
        ita_pictures=tuple(cfg.construction.ita_pictures),
        seed=0,
    )
    out: dict[str, VegaDataset] = {}
    c = cfg.corpus
    for split, n, seed in (
        ("train", c.train_documents, c.train_seed),
        ("test", c.test_documents, c.test_seed),
    ):
        docs, images = generate_documents(
            work / split, n_documents=n, seed=seed, split=split,
            figures_per_document=tuple(c.figures_per_document),  # type: ignore[arg-type]
            filler_paragraphs=c.filler_paragraphs, image_size=c.image_size,
        )  # fmt: skip
        build_dataset(
            docs, images, work / split / "release", build, split=split, scale_name="mini", progress=False
        )
        out[f"iitc_{split}"] = read_vega_jsonl(
            work / split / "release" / f"IITC_mini_{split}.json", image_root=images
        )
        n_ita = cfg.construction.ita_pictures[0]
        out[f"ita_{split}"] = read_vega_jsonl(
            work / split / "release" / f"ITA_{n_ita}picture_{split}.json", image_root=images
        )
    return out


def chance_responses(samples: list[Any], seed: int, *, ita: bool = False) -> list[str]:
    """Format-perfect random answers: a uniformly random picture (with its caption's figure number for
    IITC), a random colour and kind; for ITA a random permutation."""
    rng = random.Random(seed)
    out = []
    for sample in samples:
        k = len(sample.image_paths)
        if ita:
            order = rng.sample(range(1, k + 1), k)
            out.append(" ".join(f"T{t}:[Picture {p}]" for t, p in enumerate(order, start=1)))
            continue
        pick = rng.randrange(1, k + 1)
        after = sample.context.split(f"Picture {pick}: <img>")[1]
        number = after.split("Figure. ", 1)[1].split(" ", 1)[0]
        colour, kind = rng.choice(list(COLOURS)), rng.choice(KINDS)
        out.append(f"[Picture {pick}](Figure. {number}) shows a {colour} {kind} .")
    return out


def _metrics(iitc_records: list[dict], ita_records: list[dict]) -> dict[str, float]:
    iitc = score_iitc(iitc_records)
    return {
        "picture_acc": 100.0 * iitc["picture_acc"],
        "rouge_l": iitc["rouge_l"],
        "rouge_l_standard": iitc["rouge_l_standard"],
        "bleu": iitc["bleu"],
        "ita_acc": 100.0 * score_ita(ita_records)["accuracy"],
    }


def run_row(
    row: RowConfig, cfg: VegaConfig, data: dict[str, VegaDataset], seed: int, work: Path
) -> dict[str, float]:
    """Train (unless ``chance``) and evaluate one row at one seed."""
    test_iitc, test_ita = list(data["iitc_test"]), list(data["ita_test"])
    if not any(w > 0 for w in row.weights.values()):
        iitc = [{**s.record, "response": r} for s, r in zip(test_iitc, chance_responses(test_iitc, seed))]
        ita = [
            {**s.record, "response": r} for s, r in zip(test_ita, chance_responses(test_ita, seed, ita=True))
        ]
        return _metrics(iitc, ita)
    import torch

    from paperzoo_vega.adapters import TransformersAdapter
    from paperzoo_vega.evaluate import run_evaluation
    from paperzoo_vega.tiny import TinyConfig, build_tiny_qwen2_vl, corpus_vocabulary
    from paperzoo_vega.train import TrainArgs, TrainingMixture, train

    torch.set_num_threads(cfg.model.torch_threads)
    m, t = cfg.model, cfg.train
    words = corpus_vocabulary(
        [s for key in ("iitc_train", "ita_train", "iitc_test", "ita_test") for s in data[key]],
        styles=(m.prompt_style,),
    )
    model, processor = build_tiny_qwen2_vl(
        words, TinyConfig(hidden=m.hidden, layers=m.layers, heads=m.heads, kv_heads=m.kv_heads,
                          image_side=cfg.corpus.image_size), seed=seed,
    )  # fmt: skip
    mixture = TrainingMixture()
    for part, weight in row.weights.items():
        mixture.add(part, data[f"{part}_train"].samples, weight)
    examples = mixture.draw(t.steps * t.batch_size, seed=seed)
    args = TrainArgs(
        output_dir=str(work / f"train-{row.id}-{seed}"), max_steps=t.steps, per_device_batch_size=t.batch_size,
        learning_rate=t.learning_rate, warmup_ratio=t.warmup_ratio, seed=seed, logging_steps=max(1, t.steps // 4),
    )  # fmt: skip
    # the processor depends only on the corpus words, so every row and seed shares the encoded examples
    cache = _ENCODED.setdefault(json.dumps([words, m.prompt_style, cfg.corpus.image_size]), {})
    model = train(model, processor, examples, args, style=m.prompt_style, progress=cfg.progress, cache=cache)
    adapter = TransformersAdapter(
        model, processor, name=row.id, style=m.prompt_style, max_new_tokens=m.max_new_tokens
    )
    runs = {}
    for task in ("iitc", "ita"):
        summary = run_evaluation(
            data[f"{task}_test"], adapter, work / f"eval-{row.id}-{seed}-{task}",
            batch_size=m.eval_batch_size, progress=cfg.progress,
        )  # fmt: skip
        runs[task] = read_output_file(summary.out_dir / "responses.jsonl")
    return _metrics(runs["iitc"], runs["ita"])


def _mini(request: ReproRequest, cfg: VegaConfig) -> TableResult:
    if not cfg.rows:
        raise ValueError(f"configs/{request.preset}.yaml has no rows")
    work = Path(tempfile.mkdtemp(prefix="vega-mini-"))
    per_row: dict[str, dict[int, dict[str, float]]] = {row.id: {} for row in cfg.rows}
    data: dict[str, VegaDataset] = {}
    try:
        for seed in request.seeds:
            for row in cfg.rows:
                fingerprint = {"row": to_dict(row), "corpus": to_dict(cfg.corpus), "model": to_dict(cfg.model),
                               "train": to_dict(cfg.train), "construction": to_dict(cfg.construction)}  # fmt: skip

                def compute(row: RowConfig = row, seed: int = seed) -> dict[str, float]:
                    if not data:
                        data.update(build_synthetic_release(cfg, work))
                    return run_row(row, cfg, data, seed, work)

                per_row[row.id][seed] = request.cached(row.id, seed, compute, fingerprint=fingerprint)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        RowResult.from_seed_metrics(
            row.id, row.label, per_row[row.id], paper_row="vega_base_4k" if row.id == "multi" else None
        )
        for row in cfg.rows
    ]
    notes = [
        "Miniature on a synthetic stand-in (rendered shapes and bar charts, template text), not the VEGA data: "
        "the paper's numbers (VEGA-Base-4k, Qwen-VL-Chat 7B on IITC-4k) stand beside it for reference only.",
    ]
    for a, b, metric in cfg.comparisons:
        if a in per_row and b in per_row and len(request.seeds) >= 2:
            ci = difference_ci(
                [per_row[a][s][metric] for s in request.seeds], [per_row[b][s][metric] for s in request.seeds],
                paired=True,
            )  # fmt: skip
            unit = " pp" if metric in PERCENT else ""
            digits = 1 if metric in PERCENT else 3
            verdict = "excludes 0" if ci["low"] > 0 or ci["high"] < 0 else "includes 0: no claim"
            notes.append(
                f"{a} − {b}, {metric}: {ci['mean_difference']:+.{digits}f}{unit} (95% CI [{ci['low']:+.{digits}f}, "
                f"{ci['high']:+.{digits}f}], paired over {ci['n']} seeds; {verdict})."
            )
    return TableResult(rows=rows, config=cfg, notes=notes)


# ----------------------------------------------------------------------------------------------------
# full: the official evaluation of a local checkpoint on the release
# ----------------------------------------------------------------------------------------------------


def _full(request: ReproRequest, cfg: VegaConfig) -> TableResult:
    from paperzoo_shared.errors import UserError
    from paperzoo_vega.adapters import TransformersAdapter
    from paperzoo_vega.evaluate import run_evaluation

    f = cfg.full
    if not f.data_root or not f.model_path:
        raise UserError(
            "the full preset needs the release and a model: --set full.data_root=/data/VEGA "
            "--set full.model_path=/ckpt/model (see configs/full.yaml)"
        )
    adapter = TransformersAdapter.from_pretrained(
        f.model_path, dtype=f.dtype, device=f.device, style=f.prompt_style, max_new_tokens=f.max_new_tokens
    )
    metrics: dict[str, float] = {}
    for name in f.test_files:
        dataset = read_vega_jsonl(Path(f.data_root) / name, on_error="skip")
        summary = run_evaluation(
            dataset, adapter, request.out_dir / "runs" / Path(name).stem, batch_size=f.batch_size
        )
        if dataset.task == "iitc":
            metrics.update({k: summary.scores[k] for k in ("rouge_l", "rouge_l_standard", "bleu")})
            metrics["picture_acc"] = 100.0 * summary.scores["picture_acc"]
        else:
            metrics["ita_acc"] = 100.0 * summary.scores["accuracy"]
    row = RowResult.from_seed_metrics("vega_base_4k", f"{Path(f.model_path).name}", {request.seeds[0]: metrics},
                                      paper_row="vega_base_4k")  # fmt: skip
    return TableResult(
        rows=[row], config=cfg, notes=[f"files: {', '.join(f.test_files)}; prompt {f.prompt_style}"]
    )


__all__ = ["build_synthetic_release", "chance_responses", "reproduce", "run_row"]
