"""``paperzoo reproduce dckd --preset smoke|mini|full``: Table 2 (with the Table 5 ablation rows).

* ``smoke``: the whole pipeline in seconds on tiny crops (tests use it).
* ``mini``: "skim-SR x2", a miniature of Tables 2 and 5 on the scikit-image images: a small EDSR-like
  teacher is trained first, a small VQ autoencoder stands in for the pretrained VQGAN, then each row
  (Scratch, Logits, MCLIR, MiPKD, DCKD, DCKD -DCR, DCKD -DMM; FAKD and the Fig. 8b check when listed in the
  config) trains a small student per seed. Teacher and encoder are trained once and cached in ``<out>/runs/``.
* ``full``: the paper's configuration given DIV2K, the benchmark sets and the official teacher and VQGAN
  weights (``configs/full/<variant>.yaml``; choose with ``--set variant=rcan_x4``). Table 3 (GoPro
  deblurring: ``nafnet_gopro``, ``restormer_gopro``) and Table 4 (Rain13K deraining: ``restormer_rain13k``)
  run at ``full`` only, with ``--table table3`` / ``--table table4``; so do the RCAN x2 ablations of Table 6
  (degradation type), Table 7 (loss weights) and Fig. 8a (number of negatives), one variant per setting
  (:data:`ABLATION_TABLES`, ``--table table6 --set variant=rcan_x2_table6_blur``).

Every (row, seed) goes through ``request.cached``; every training run resumes from its ``last.ckpt`` and a
finished one is reloaded from its ``final.pt``. With ``parallel_jobs: 2`` the runs go to two worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from paperzoo_dckd.configuration import METHOD_LABELS, METHODS, ExperimentConfig
from paperzoo_shared.config import ConfigError, config_hash, load_config, parse_override
from paperzoo_shared.metrics.stats import difference_ci
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult, atomic_write_json

NEEDS_ENCODER = {m for m, uses in METHODS.items() if uses["dcr"] or uses["dmm"] or uses["mclir"]}

RESTORATION_TABLES: dict[str, tuple[str, ...]] = {
    "table3": ("nafnet_gopro", "restormer_gopro"),
    "table4": ("restormer_rain13k",),
}
"""The ``full`` variants of the deblurring (Table 3) and deraining (Table 4) tables; the first is the default."""

ABLATION_TABLES: dict[str, tuple[str, ...]] = {
    "table6": ("rcan_x2_table6_noise", "rcan_x2_table6_blur", "rcan_x2_table6_resize", "rcan_x2_table6_mix"),
    "table7": (
        "rcan_x2_table7_default",
        "rcan_x2_table7_dcl001",
        "rcan_x2_table7_dcl1",
        "rcan_x2_table7_ce1e4",
        "rcan_x2_table7_ce1e2",
    ),
    "fig8a": (
        "rcan_x2_fig8a_n5",
        "rcan_x2_fig8a_n3",
        "rcan_x2_fig8a_n4",
        "rcan_x2_fig8a_n6",
        "rcan_x2_fig8a_n7",
    ),
}
"""The ablations of the RCAN x2 DCKD run (Table 6: degradation type; Table 7: loss weights; Fig. 8a: number of
negatives), one ``full`` variant (``configs/full/<variant>.yaml``) per setting; the first, the paper's default
setting, is the default. Run one setting per invocation (``--table table6 --set variant=rcan_x2_table6_blur``),
each with its own ``--out``, as for Tables 3 and 4."""

VARIANT_TABLES: dict[str, tuple[str, ...]] = {**RESTORATION_TABLES, **ABLATION_TABLES}
"""Every table whose ``full`` variants are listed; every other file of configs/full/ is a Table 2 variant."""


def table_of_variant(variant: str) -> str:
    return next((t for t, names in VARIANT_TABLES.items() if variant in names), "table2")


def config_path(request: ReproRequest) -> Path:
    """``<preset>.yaml``, or for ``full`` the file ``full/X.yaml`` of ``--set variant=X`` (it must belong to
    the table being run); without a variant, ``full.yaml`` (Table 2) or the table's first variant."""
    if request.preset == "full":
        table = request.table.id if request.table is not None else "table2"
        for override in request.overrides:
            key, value = parse_override(override)
            if key == "variant" and value:
                path = request.config_dir / "full" / f"{value}.yaml"
                if not path.is_file():
                    variants = sorted(
                        p.stem
                        for p in (request.config_dir / "full").glob("*.yaml")
                        if p.stem[0] != "_" and table_of_variant(p.stem) == table
                    )
                    raise ConfigError(f"no full config {path}; valid variants: {', '.join(variants)}")
                if table_of_variant(str(value)) != table:
                    owner = table_of_variant(str(value))
                    raise ConfigError(
                        f"full variant {value!r} reproduces {owner}, not {table}; run "
                        f"`paperzoo reproduce dckd --preset full --table {owner} --set variant={value}`"
                    )
                return path
        if table in VARIANT_TABLES:
            return request.config_dir / "full" / f"{VARIANT_TABLES[table][0]}.yaml"
    return request.config_dir / f"{request.preset}.yaml"


def load_experiment(request: ReproRequest) -> ExperimentConfig:
    return load_config(ExperimentConfig, config_path(request), overrides=request.overrides)


# ---------------------------------------------------------------------------------------------------------
# Jobs (run in this process, or in worker processes when parallel_jobs > 1)
# ---------------------------------------------------------------------------------------------------------


def _device(config: ExperimentConfig) -> str:
    import torch

    return (
        "cuda" if torch.cuda.is_available() and config.train.accelerator in ("auto", "gpu", "cuda") else "cpu"
    )


def _set_threads(config: ExperimentConfig) -> None:
    import torch

    if config.train.threads:
        torch.set_num_threads(config.train.threads)


def evaluate_all(config: ExperimentConfig, model, test_sets) -> dict[str, float]:
    """``{"<set>/psnr": ..., "<set>/ssim": ...}`` over every test set."""
    from paperzoo_dckd.evaluate import evaluate

    metrics = {}
    for set_name, pairs in test_sets.items():
        result = evaluate(
            model,
            pairs,
            config.data.scale,
            device=_device(config),
            y_channel=config.evaluation.y_channel,
            crop_border=config.evaluation.crop_border,
            max_images=config.eval_max_images,
        )
        metrics[f"{set_name}/psnr"] = result["psnr"]
        metrics[f"{set_name}/ssim"] = result["ssim"]
    return metrics


def student_job(config, method, seed, run_dir, teacher, encoder, train_pairs, test_sets) -> dict[str, float]:
    """Trains one (method, seed) (or reloads it) and evaluates it."""
    from paperzoo_dckd.train import train_student

    _set_threads(config)
    student, _ = train_student(config, method, seed, run_dir, teacher, encoder, train_pairs)
    return evaluate_all(config, student, test_sets)


def fig8b_job(config, step, run_dir, teacher, encoder, train_pairs) -> list[dict[str, float]]:
    """DCKD with a constant history step ``step``, tracking the PSNR of history outputs vs the student."""
    from paperzoo_dckd.train import train_student

    _set_threads(config)
    fig = config.fig8b
    run = dataclasses.replace(
        config,
        dckd=dataclasses.replace(config.dckd, history_steps=[step], history_period=10**9),
        train=dataclasses.replace(config.train, iterations=fig.iterations),
    )
    _, curve = train_student(
        run, "dckd", fig.seed, run_dir, teacher, encoder, train_pairs, track_every=fig.track_every
    )
    return curve


def encoder_job(config, run_dir, train_pairs):
    from paperzoo_dckd.train import train_encoder

    _set_threads(config)
    return train_encoder(config, run_dir, train_pairs)


def teacher_job(config, run_dir, train_pairs):
    from paperzoo_dckd.train import train_teacher

    _set_threads(config)
    return train_teacher(config, run_dir, train_pairs)


class _Inline:
    """A job run on demand in this process (the serial stand-in for a Future)."""

    def __init__(self, fn, args):
        self.fn, self.args, self.done, self.value = fn, args, False, None

    def result(self):
        if not self.done:
            self.value, self.done = self.fn(*self.args), True
        return self.value


class JobRunner:
    """Submits jobs to ``workers`` spawned processes, or runs them inline when ``workers`` is 1."""

    def __init__(self, workers: int):
        self.pool = None
        if workers > 1:
            self.pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args) if self.pool is not None else _Inline(fn, args)

    def close(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


def _log(message: str) -> None:
    print(f"[dckd] {message}", file=sys.stderr, flush=True)


def submit_fig8b(runner: JobRunner, config: ExperimentConfig, run_dir: Path, teacher, encoder, train_pairs):
    """Submits the two Fig. 8b runs (small and large history step); returns {label: future}."""
    fig = config.fig8b
    return {
        f"{label} (s = {step})": runner.submit(
            fig8b_job, config, step, run_dir / f"fig8b_{label}_step{step}", teacher, encoder, train_pairs
        )
        for label, step in (("small", fig.small_step), ("large", fig.large_step))
    }


def run_fig8b(config: ExperimentConfig, run_dir: Path, teacher, encoder, train_pairs, out_png: Path | None):
    """Both Fig. 8b runs (in parallel when ``parallel_jobs`` > 1) and the plot; returns the curves."""
    runner = JobRunner(min(2, config.parallel_jobs))
    try:
        futures = submit_fig8b(runner, config, run_dir, teacher, encoder, train_pairs)
        curves = {label: future.result() for label, future in futures.items()}
    finally:
        runner.close()
    if out_png is not None:
        plot_fig8b(curves, out_png)
    return curves


def plot_fig8b(curves: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Two panels: PSNR(history on clean LR) - PSNR(student), and the same for the degraded inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for label, curve in curves.items():
        steps = [c["iteration"] for c in curve]
        axes[0].plot(steps, [c["history_clean"] - c["student"] for c in curve], marker="o", ms=3, label=label)
        axes[1].plot(
            steps, [c["history_degraded"] - c["student"] for c in curve], marker="o", ms=3, label=label
        )
    axes[0].set_title("history model on the clean LR (negative 1)")
    axes[1].set_title("history model on the degraded LRs (negatives 2..N)")
    for ax in axes:
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR-Y(history) − PSNR-Y(student) (dB)")
        ax.legend(title="history update step")
        ax.grid(alpha=0.3)
    fig.suptitle("Fig. 8b mechanism: how far the negatives lag behind the anchor")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------


def row_fingerprint(config: ExperimentConfig, method: str, seed: int) -> str:
    """The ledger key of a (row, seed): what trains and evaluates it."""
    from paperzoo_dckd.configuration import fingerprint_dict
    from paperzoo_dckd.train import training_fingerprint

    payload = {
        "config": training_fingerprint(config),
        "eval_max_images": config.eval_max_images,
        "method": method,
        "seed": seed,
    }
    evaluation = fingerprint_dict(config).get("evaluation")
    if evaluation is not None:  # a non-default metric convention (absent from the SR fingerprints)
        payload["evaluation"] = evaluation
    return config_hash(payload)


def _train_only(request, config, run_dir, train_pairs, methods, need_teacher, need_encoder) -> TableResult:
    """A DDP worker process (LOCAL_RANK/NODE_RANK > 0) started by Lightning's script launcher: it reaches the
    same training run as rank 0 (finished runs load from their final.pt) and exits after that fit."""
    from paperzoo_dckd.train import build_encoder, build_teacher, train_student

    encoder = build_encoder(config, run_dir / "encoder", lambda: train_pairs) if need_encoder else None
    teacher = build_teacher(config, run_dir / "teacher", lambda: train_pairs) if need_teacher else None
    for seed in request.seeds:  # the order in which rank 0 trains them (seed-major, as :func:`reproduce`)
        for method in methods:
            if request.ledger is not None and request.ledger.get(
                method, seed, row_fingerprint(config, method, seed)
            ):
                continue
            train_student(
                config, method, seed, run_dir / method / f"seed{seed}", teacher, encoder, train_pairs
            )
    raise SystemExit(0)


def _paper_row(config: ExperimentConfig, request: ReproRequest, method: str, test_set: str) -> str | None:
    """The tables.yaml row shown beside (method, test set): from ``paper_rows``, else
    ``<variant>_<set>_<method>`` when the table has it."""
    if method in config.paper_rows:
        return config.paper_rows[method]
    guess = f"{config.variant}_{test_set.lower()}_{method}"
    return guess if guess in {row.id for row in request.table.rows} else None


def reproduce(request: ReproRequest) -> TableResult:
    from paperzoo_dckd.train import build_from_config, is_rank_zero, load_test_sets, load_train_pairs

    config = load_experiment(request)
    _set_threads(config)
    run_dir = request.out_dir / "runs"
    methods = [m for m in config.methods if m != "teacher"]
    need_teacher = "teacher" in config.methods or any(m != "scratch" for m in methods) or config.fig8b.enabled
    need_encoder = any(m in NEEDS_ENCODER for m in methods) or config.fig8b.enabled
    train_pairs = load_train_pairs(config)
    if not is_rank_zero():
        return _train_only(request, config, run_dir, train_pairs, methods, need_teacher, need_encoder)
    test_sets = load_test_sets(config)
    runner = JobRunner(config.parallel_jobs)
    try:
        # The frozen networks: from their checkpoints (full preset) or trained here first (mini, smoke).
        encoder_future = teacher_future = None
        if need_encoder:
            if config.encoder.checkpoint is not None:
                encoder = build_from_config(config.encoder, None, "encoder").eval()
            else:
                encoder_future = runner.submit(encoder_job, config, run_dir / "encoder", train_pairs)
        if need_teacher:
            if config.teacher.checkpoint is not None:
                teacher = build_from_config(config.teacher, config.data.scale, "teacher").eval()
            else:
                teacher_future = runner.submit(teacher_job, config, run_dir / "teacher", train_pairs)
        encoder = encoder_future.result() if encoder_future else (encoder if need_encoder else None)
        teacher = teacher_future.result() if teacher_future else (teacher if need_teacher else None)

        fingerprints = {(m, s): row_fingerprint(config, m, s) for m in config.methods for s in request.seeds}
        # seed-major: a run stopped part-way has every row of its first seeds (each finished (row, seed) is
        # in the ledger and in runs/), not a few rows with every seed
        futures = {}
        for seed in request.seeds:
            for method in methods:
                ledger = request.ledger
                if ledger is not None and ledger.get(method, seed, fingerprints[(method, seed)]) is not None:
                    continue
                futures[(method, seed)] = runner.submit(
                    student_job,
                    config,
                    method,
                    seed,
                    run_dir / method / f"seed{seed}",
                    teacher,
                    encoder,
                    train_pairs,
                    test_sets,
                )
        fig8b_futures = {}
        if config.fig8b.enabled:
            fig8b_futures = submit_fig8b(runner, config, run_dir, teacher, encoder, train_pairs)

        per_method: dict[str, dict[int, dict[str, float]]] = {method: {} for method in config.methods}
        teacher_metrics: dict[str, dict[str, float]] = {}
        for seed in request.seeds:
            for method in config.methods:
                start = time.perf_counter()
                if method == "teacher":

                    def compute():  # one teacher for every seed: evaluated once
                        if "teacher" not in teacher_metrics:
                            teacher_metrics["teacher"] = evaluate_all(config, teacher, test_sets)
                        return teacher_metrics["teacher"]
                else:
                    compute = futures[(method, seed)].result if (method, seed) in futures else None
                values = request.cached(method, seed, compute, fingerprint=fingerprints[(method, seed)])
                per_method[method][seed] = values
                scores = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k.endswith("psnr"))
                _log(
                    f"{request.preset}: {method} seed {seed}: {scores} ({time.perf_counter() - start:.0f} s waited)"
                )
        curves = {label: future.result() for label, future in fig8b_futures.items()} or None
    except BaseException:
        runner.close(cancel=True)
        raise
    runner.close()

    rows = []
    for method, per_seed in per_method.items():
        for set_name in test_sets:
            metrics = {
                seed: {"psnr": values[f"{set_name}/psnr"], "ssim": values[f"{set_name}/ssim"]}
                for seed, values in per_seed.items()
            }
            row_id = method if len(test_sets) == 1 else f"{method}_{set_name.lower()}"
            label = METHOD_LABELS[method] + ("" if len(test_sets) == 1 else f", {set_name}")
            note = (
                "one teacher shared by every seed" if method == "teacher" and len(request.seeds) > 1 else ""
            )
            rows.append(
                RowResult.from_seed_metrics(
                    row_id, label, metrics, paper_row=_paper_row(config, request, method, set_name), note=note
                )
            )

    notes = _notes(config, request, per_method, list(test_sets))
    extra: dict[str, Any] = {"timing": _timings(run_dir)}
    cpu = sum(t.get("cpu_s", 0.0) for t in extra["timing"].values())
    if cpu:
        notes.append(
            f"Training CPU time summed over the {len(extra['timing'])} training runs in {run_dir.name}/: {cpu:.0f} s "
            f"(each run uses {config.train.threads or 'the default number of'} torch thread(s); "
            f"{config.parallel_jobs} run(s) at a time)."
        )
    if "dckd" in methods and request.preset != "full":
        diagnostics = _dckd_gradients(
            config, run_dir / "dckd" / f"seed{request.seeds[0]}", teacher, encoder, train_pairs
        )
        if diagnostics is not None:
            extra["dckd_gradients"] = diagnostics
            notes.append(_gradient_note(diagnostics, request.seeds[0]))
    if encoder is not None and request.preset != "full" and config.encoder.checkpoint is None:
        from paperzoo_dckd.geometry import codebook_usage, encoder_patches

        usage = codebook_usage(encoder, encoder_patches(config))
        extra["codebook_usage"] = usage
        notes.append(
            f"Stand-in codebook on 32 held-out HR patches: {usage['codes_used']} of {usage['codes']} codes used; "
            f"mean entropy of the DMM distributions {usage['entropy']:.2f} nats (uniform: {usage['max_entropy']:.2f})."
        )
    if curves is not None:
        png = plot_fig8b(curves, request.out_dir / "fig8b.png")
        atomic_write_json(run_dir / "fig8b_curves.json", curves)
        extra["fig8b"] = curves
        notes.append(_fig8b_note(curves, png))
    return TableResult(rows=rows, config=config, notes=notes, extra=extra)


def _dckd_gradients(config, run, teacher, encoder, train_pairs) -> dict[str, dict[str, float]] | None:
    """Gradient norms of DCKD's loss terms for the trained student (EMA) and its final history model, on a
    fixed batch of training patches."""
    import torch

    from paperzoo_dckd.convert import load_weights
    from paperzoo_dckd.data import PatchDataset
    from paperzoo_dckd.modeling_dckd import Distiller, gradient_diagnostics
    from paperzoo_dckd.train import build_from_config

    if not (run / "final.pt").is_file() or not (run / "history.pt").is_file():
        return None
    student = build_from_config(
        dataclasses.replace(config.student, checkpoint=None), config.data.scale, "student"
    )
    load_weights(student, run / "final.pt", "ours", arch="student")
    distiller = Distiller(student, teacher, encoder, "dckd", config.dckd, config.train.ema_decay, seed=0)
    load_weights(distiller.history, run / "history.pt", "ours", arch="history")
    dataset = PatchDataset(train_pairs, config.data.scale, config.train.lr_patch, 8, seed=2024)
    items = [dataset[i] for i in range(config.train.batch_size)]
    lq, gt = (torch.stack([item[key] for item in items]) for key in ("lq", "gt"))
    return gradient_diagnostics(distiller, lq, gt)


def _gradient_note(diagnostics: dict[str, dict[str, float]], seed: int) -> str:
    rec = diagnostics["rec"]["grad_norm"]
    parts = [
        f"{name} {d['grad_norm'] / rec:.3g}x (cos {d['cos_with_rec']:+.2f})"
        for name, d in diagnostics.items()
        if name != "rec"
    ]
    return (
        f"Gradient norms of DCKD's weighted loss terms relative to L_rec's, for the trained DCKD student (seed {seed}) "
        "with its final history model, on a fixed batch of training patches (cosine with L_rec's gradient in "
        "brackets): " + ", ".join(parts) + "."
    )


def _timings(run_dir: Path) -> dict[str, Any]:
    """Wall/CPU seconds of every training run found in the run folder (from its done.json)."""
    import json

    timings = {}
    for done in sorted(run_dir.glob("**/done.json")):
        try:
            timing = json.loads(done.read_text()).get("timing")
        except json.JSONDecodeError:
            continue
        if timing:
            timings[str(done.parent.relative_to(run_dir))] = timing
    return timings


def _psnr_label(config: ExperimentConfig) -> str:
    return "PSNR-Y" if config.evaluation.y_channel else "PSNR-RGB"


def _difference_note(
    rows: dict[str, dict[int, dict[str, float]]], a: str, b: str, set_name: str, psnr_label: str = "PSNR-Y"
) -> str | None:
    """'A - B' in PSNR with a paired 95% CI over seeds, and a plain verdict."""
    if a not in rows or b not in rows:
        return None
    seeds = sorted(set(rows[a]) & set(rows[b]))
    key = f"{set_name}/psnr"
    label_b = f"({METHOD_LABELS[b]})" if "−" in METHOD_LABELS[b] else METHOD_LABELS[b]
    if len(seeds) < 2:
        return (
            f"{METHOD_LABELS[a]} − {label_b} ({set_name}): needs at least 2 seeds for a confidence interval."
        )
    ci = difference_ci([rows[a][s][key] for s in seeds], [rows[b][s][key] for s in seeds], paired=True)
    if ci["low"] > 0:
        verdict = f"{METHOD_LABELS[a]} beats {METHOD_LABELS[b]} here (the interval excludes 0)"
    elif ci["high"] < 0:
        verdict = f"{METHOD_LABELS[a]} is worse than {METHOD_LABELS[b]} here (the interval excludes 0)"
    else:
        verdict = f"{METHOD_LABELS[a]} does not beat {METHOD_LABELS[b]} here: the interval includes 0"
    return (
        f"{METHOD_LABELS[a]} − {label_b} ({set_name}, {psnr_label}): {ci['mean_difference']:+.3f} dB, "
        f"95% CI [{ci['low']:+.3f}, {ci['high']:+.3f}], paired over {ci['n']} seeds, p = {ci['p_value']:.3f}. "
        f"{verdict}."
    )


def _notes(config, request, per_method, set_names) -> list[str]:
    notes = []
    if request.preset != "full":
        notes.append(
            f"Miniature on stand-in data (skim-SR x{config.data.scale}: 6 scikit-image training images, 6 test "
            "images, MATLAB-bicubic LR), small EDSR-like teacher and student, a small VQ autoencoder trained here "
            "instead of the pretrained VQGAN; short training. Paper values (RCAN x2, Urban100; the -DCR/-DMM rows "
            "are Table 5's '+DMM only' and '+DCR only'; MCLIR's is Table 8's SwinIR-light x4 Urban100; MiPKD is a "
            "reconstruction from its paper) are for reference "
            "only and not comparable in magnitude."
        )
    for set_name in set_names:
        pairs = [("dckd", "logits"), ("dckd", "scratch"), ("logits", "scratch"), ("fakd", "logits")]
        pairs += [("dckd", "mclir"), ("mclir", "scratch"), ("dckd", "mipkd"), ("mipkd", "logits")]
        pairs += [("dckd", "dckd_no_dcr"), ("dckd", "dckd_no_dmm")]
        for a, b in pairs:
            note = _difference_note(per_method, a, b, set_name, _psnr_label(config))
            if note:
                notes.append(note)
        if "teacher" in per_method and "scratch" in per_method:
            teacher = _mean(per_method["teacher"], f"{set_name}/psnr")
            scratch = _mean(per_method["scratch"], f"{set_name}/psnr")
            notes.append(
                f"Teacher − Scratch ({set_name}, {_psnr_label(config)}): {teacher - scratch:+.3f} dB "
                "(the room KD can use)."
            )
    return notes


def _mean(per_seed: dict[int, dict[str, float]], key: str) -> float:
    values = [v[key] for v in per_seed.values()]
    return sum(values) / len(values) if values else math.nan


def _fig8b_note(curves: dict[str, list[dict[str, float]]], png: Path) -> str:
    parts = []
    for label, curve in curves.items():
        if not curve:
            continue
        gaps = [c["history_clean"] - c["student"] for c in curve]
        half = gaps[len(gaps) // 2 :]
        parts.append(f"{label}: mean gap {sum(half) / len(half):+.2f} dB over the second half of training")
    return (
        f"Fig. 8b mechanism check ({png.name}): PSNR-Y of the history model's output on the clean LR minus the "
        "student's, on a fixed batch of training patches; " + "; ".join(parts) + "."
    )
