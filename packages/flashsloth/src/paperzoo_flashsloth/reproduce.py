"""``paperzoo reproduce flashsloth``: the miniature of the main table and the real-size token/FLOP table.

``main`` (smoke, mini): tiny FlashSloth against a tiny uncompressed LLaVA-style baseline (every patch token, no
query module), average pooling in place of the learned pooling, and the learned pooling without the query
module, all trained from scratch through transformers' Trainer on paperzoo_shared's synthetic shape questions
(colour, shape, count, position, existence, and fine-detail surface patterns that vanish under average pooling).
Columns: accuracy, visual tokens, prefill FLOPs (exact count, batch 1), prefill latency (CPU, batch 1).

``efficiency`` (smoke, mini, full): the real-size (3.2B) model's visual tokens and prefill FLOPs, by formula and
by exact count over a forward on the meta device (shapes only: no weights, no memory). Time and memory need a GPU:
``benchmarks/flashsloth_gpu.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import tempfile
from typing import Any

import torch

from paperzoo_flashsloth.configuration import (
    LEARNABLE_TOKEN,
    ExperimentConfig,
    FlashSlothConfig,
    build_model_config,
    parse_comparison,
    variant_overrides,
)
from paperzoo_shared.config import config_hash, load_config, to_dict
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult

ROW_LABELS = {
    "uncompressed": "Uncompressed LLaVA-style baseline (all patch tokens, no query module)",
    "avgpool": "Average pooling + embedded query",
    "no_embq": "Spatial attention pooling, no query module",
    "flashsloth": "FlashSloth (spatial attention pooling + embedded query)",
    "hd": "FlashSloth-HD (global view + 2x2 crops)",
    "hd_uncompressed": "HD uncompressed (5 views x all patch tokens)",
}
PAPER_ROWS = {
    "uncompressed": "uncompressed",
    "avgpool": "avgpool",
    "no_embq": "no_embq",
    "flashsloth": "flashsloth",
    "hd": "flashsloth_hd",
    "hd_uncompressed": "hd_uncompressed",
}
WORD_TOKENIZER_EXTRAS = (LEARNABLE_TOKEN, "USER", "ASSISTANT")


def _paper_row(request: ReproRequest, variant: str) -> str | None:
    row = PAPER_ROWS.get(variant)
    return row if row in {r.id for r in request.table.rows} else None


def reproduce(request: ReproRequest) -> TableResult:
    if request.table.id == "main":
        return reproduce_main(request)
    if request.table.id == "efficiency":
        return reproduce_efficiency(request)
    raise ValueError(f"flashsloth has no table {request.table.id!r}")


# ----------------------------------------------------------------------------------------------------
# main: the miniature
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MiniData:
    tokenizer: Any
    train: list
    test: list
    image_token_id: int
    learnable_token_id: int
    anchor_token_id: int
    pad_token_id: int
    eos_token_id: int


@functools.lru_cache(maxsize=4)
def _mini_data(
    image_size: int,
    train_images: int,
    eval_images: int,
    qpi: int,
    types: tuple,
    objects: tuple,
    seed: int,
    pattern_scale: str = "pixel",
    amplitude: float = 48.0,
    patch_size: int = 8,
):
    from paperzoo_shared.data.synthetic.qa import (
        QAConfig,
        build_word_tokenizer,
        generate_qa_dataset,
        to_transformers_tokenizer,
    )

    tokenizer = to_transformers_tokenizer(build_word_tokenizer(extra_special_tokens=WORD_TOKENIZER_EXTRAS))
    cfg = QAConfig(
        image_size=image_size,
        question_types=types,
        questions_per_image=qpi,
        min_objects=objects[0],
        max_objects=objects[1],
        pattern_amplitude=amplitude if pattern_scale == "pixel" else 0.0,
    )
    train = generate_qa_dataset(train_images, seed=seed, cfg=cfg)
    test = generate_qa_dataset(eval_images, seed=seed + 1, cfg=cfg)
    if pattern_scale == "patch":
        from paperzoo_flashsloth.train import patch_scale_patterns

        scale = train[0].image.shape[0] / image_size if train else 1.0
        for samples in (train, test):
            patch_scale_patterns(samples, max(1, round(patch_size * scale)), amplitude)
    ids = tokenizer.convert_tokens_to_ids
    return MiniData(
        tokenizer=tokenizer,
        train=train,
        test=test,
        image_token_id=ids("<image>"),
        learnable_token_id=ids(LEARNABLE_TOKEN),
        anchor_token_id=ids("."),  # a punctuation token, as the official anchor (Phi-2 id 764)
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def mini_data(cfg: ExperimentConfig) -> MiniData:
    d = cfg.data
    return _mini_data(
        d.image_size,
        d.train_images,
        d.eval_images,
        d.questions_per_image,
        tuple(d.question_types),
        (d.min_objects, d.max_objects),
        d.data_seed,
        d.pattern_scale,
        d.pattern_amplitude,
        cfg.model.vision.patch_size * d.image_size // cfg.model.vision.image_size,
    )


def model_config(cfg: ExperimentConfig, data: MiniData, variant: str) -> FlashSlothConfig:
    return build_model_config(
        cfg.model,
        variant=variant,
        vocab_size=len(data.tokenizer),
        image_token_id=data.image_token_id,
        learnable_token_id=data.learnable_token_id,
        query_anchor_token_id=data.anchor_token_id,
        pad_token_id=data.pad_token_id,
        eos_token_id=data.eos_token_id,
    )


def _key(cfg: ExperimentConfig, *parts: str) -> str:
    return config_hash({p: to_dict(getattr(cfg, p)) for p in parts})


def _pixels(samples: list, size: int, hd: bool, grid: int, patch: int) -> dict[int, torch.Tensor]:
    from paperzoo_flashsloth.data import hd_views, preprocess_image

    out: dict[int, torch.Tensor] = {}
    for s in samples:
        if s.image_id not in out:
            out[s.image_id] = hd_views(s.image, size, grid, patch) if hd else preprocess_image(s.image, size)
    return out


_TOWERS: dict[str, dict[str, torch.Tensor]] = {}
_FEATURES: dict[tuple[str, bool], tuple[dict, dict]] = {}
_DATASETS: dict[tuple[str, bool, bool], tuple[Any, Any]] = {}


def pretrained_tower(cfg: ExperimentConfig) -> dict[str, torch.Tensor] | None:
    """State dict of the tiny tower after dense attribute pretraining (once per data/model/pretraining config)."""
    spec = cfg.vision_pretrain
    if spec.steps <= 0:
        return None
    key = _key(cfg, "data", "model", "vision_pretrain")
    if key not in _TOWERS:
        from transformers import set_seed

        from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration
        from paperzoo_flashsloth.train import patch_attribute_targets, pretrain_vision_tower

        data = mini_data(cfg)
        size, patch = cfg.model.vision.image_size, cfg.model.vision.patch_size
        pixels = _pixels(data.train, size, False, 2, patch)
        images = torch.stack([pixels[k] for k in sorted(pixels)])
        set_seed(spec.seed)
        tower = FlashSlothForConditionalGeneration(model_config(cfg, data, "flashsloth")).vision_tower
        print(
            f"[flashsloth] pretraining the tiny vision tower: {spec.steps} steps", file=sys.stderr, flush=True
        )
        targets = patch_attribute_targets(data.train, size, patch)
        losses = pretrain_vision_tower(
            tower,
            images,
            {k: v for k, v in targets.items() if k in spec.targets},
            steps=spec.steps,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            seed=spec.seed,
        )
        print(f"[flashsloth] tower loss {losses[0]:.3f} -> {losses[-1]:.3f}", file=sys.stderr, flush=True)
        _TOWERS[key] = {k: v.detach().clone() for k, v in tower.state_dict().items()}
    return _TOWERS[key]


@torch.no_grad()
def tower_features(cfg: ExperimentConfig, model: Any, hd: bool) -> tuple[dict, dict]:
    """Raw features of every train and test image through the frozen pretrained tower (computed once)."""
    key = (_key(cfg, "data", "model", "vision_pretrain"), hd)
    if key not in _FEATURES:
        data = mini_data(cfg)
        size, patch = cfg.model.vision.image_size, cfg.model.vision.patch_size
        result = []
        for samples in (data.train, data.test):
            pixels = _pixels(samples, size, hd, model.config.hd_grid, patch)
            ids = sorted(pixels)
            feats = {}
            for start in range(0, len(ids), 256):
                chunk = ids[start : start + 256]
                out = model.vision_features(torch.stack([pixels[i] for i in chunk]))
                feats.update({i: f.clone() for i, f in zip(chunk, out)})
            result.append(feats)
        _FEATURES[key] = (result[0], result[1])
    return _FEATURES[key]


def datasets(
    cfg: ExperimentConfig, add_learnable: bool, hd: bool = False, model: Any = None
) -> tuple[Any, Any]:
    """Training (multi-turn) and evaluation (one question per prompt) datasets, built once per configuration.
    With a pretrained tower they carry the tower's cached features instead of pixels."""
    from paperzoo_flashsloth.data import ChatTemplate, ShapeQADataset

    frozen = pretrained_tower(cfg) is not None
    key = (_key(cfg, "data", "model", "vision_pretrain") + str(cfg.system_prompt), add_learnable, hd)
    if key not in _DATASETS:
        data = mini_data(cfg)
        template = ChatTemplate.phi2(
            system=cfg.system_prompt if cfg.system_prompt is not None else "", sep2="<eos>"
        )
        kw = dict(
            image_size=cfg.model.vision.image_size,
            image_token_id=data.image_token_id,
            learnable_token_id=data.learnable_token_id,
            add_learnable=add_learnable,
            patch_size=cfg.model.vision.patch_size,
            hd=hd,
        )
        train_feats = test_feats = None
        if frozen:
            train_feats, test_feats = tower_features(cfg, model, hd)
        train = ShapeQADataset(
            data.train,
            data.tokenizer,
            template,
            with_answers=True,
            turns=cfg.data.turns_per_conversation,
            image_features=train_feats.__getitem__ if frozen else None,
            **kw,
        )
        test = ShapeQADataset(
            data.test,
            data.tokenizer,
            template,
            with_answers=False,
            image_features=test_feats.__getitem__ if frozen else None,
            **kw,
        )
        _DATASETS[key] = (train, test)
    return _DATASETS[key]


def run_variant(cfg: ExperimentConfig, variant: str, seed: int) -> dict[str, float]:
    """Trains one variant with one seed and measures it (accuracy, tokens, FLOPs, latency)."""
    from transformers import set_seed

    from paperzoo_flashsloth.data import ChatTemplate, FlashSlothCollator, ShapeQADataset
    from paperzoo_flashsloth.evaluate import count_flops, evaluate_accuracy, first_token_fn, time_ms
    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration
    from paperzoo_flashsloth.train import train_stage

    data = mini_data(cfg)
    mcfg = model_config(cfg, data, variant)
    tower = pretrained_tower(cfg)
    set_seed(seed)
    model = FlashSlothForConditionalGeneration(mcfg)
    if tower is not None:
        model.vision_tower.load_state_dict(tower)
        if cfg.train.stage not in ("I", "II"):
            raise ValueError("a pretrained (frozen, cached) tower needs train.stage I or II")
    add_learnable = mcfg.num_query_tokens > 0
    train_set, test_set = datasets(cfg, add_learnable, hd=mcfg.image_hd, model=model.eval())
    model.train()
    label = f"{variant} seed {seed}"
    with tempfile.TemporaryDirectory(prefix="flashsloth-") as out_dir:
        logs = train_stage(
            model,
            train_set,
            FlashSlothCollator(data.pad_token_id),
            cfg.train,
            out_dir,
            seed=seed,
            progress=label,
        )
    metrics = evaluate_accuracy(
        model, test_set, batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens
    )
    print(f"[{label}] accuracy {metrics['accuracy']:.1f}%", file=sys.stderr, flush=True)
    losses = [r["loss"] for r in logs if "loss" in r]
    if losses:
        metrics["final_train_loss"] = float(losses[-1])
    # efficiency of the first evaluation prompt at batch 1, from pixels (the tower included)
    template = ChatTemplate.phi2(
        system=cfg.system_prompt if cfg.system_prompt is not None else "", sep2="<eos>"
    )
    one_set = ShapeQADataset(
        data.test[:1],
        data.tokenizer,
        template,
        image_size=cfg.model.vision.image_size,
        image_token_id=data.image_token_id,
        learnable_token_id=data.learnable_token_id,
        add_learnable=add_learnable,
        with_answers=False,
        hd=mcfg.image_hd,
        patch_size=cfg.model.vision.patch_size,
    )
    one = FlashSlothCollator(data.pad_token_id, padding_side="left")([one_set[0]])
    inputs = {k: one[k] for k in ("input_ids", "attention_mask", "pixel_values", "question_spans")}
    model.eval()
    run = first_token_fn(model, inputs)
    metrics["mflops"] = count_flops(run) / 1e6
    times = time_ms(
        run, repeats=cfg.eval.latency_repeats, warmup=cfg.eval.latency_warmup, device=torch.device("cpu")
    )
    metrics["latency_ms"] = sorted(times)[len(times) // 2]
    metrics["visual_tokens"] = float(mcfg.vision_tokens_per_query_block)
    return metrics


def reproduce_main(request: ReproRequest) -> TableResult:
    from paperzoo_shared.metrics.stats import difference_ci

    cfg = load_config(ExperimentConfig, request.config_dir / f"{request.preset}.yaml", request.overrides)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rows, per_variant = [], {}
    for variant in cfg.rows:
        fingerprint = {
            "experiment": {k: v for k, v in to_dict(cfg).items() if k != "rows"},
            "variant": variant,
        }
        per_seed = {
            seed: request.cached(
                variant, seed, lambda v=variant, s=seed: run_variant(cfg, v, s), fingerprint=fingerprint
            )
            for seed in request.seeds
        }
        per_variant[variant] = per_seed
        rows.append(
            RowResult.from_seed_metrics(
                variant, ROW_LABELS[variant], per_seed, paper_row=_paper_row(request, variant)
            )
        )
    notes = [
        "Miniature on synthetic shape questions (paperzoo_shared.data.synthetic.qa), every model trained from "
        f"random weights for {cfg.train.max_steps} steps of batch {cfg.train.batch_size}; the paper's accuracy column "
        "is GQA and its numbers come from the released 3.2B models, so only the direction of the comparison is "
        "meaningful. Latency: CPU, batch 1, median prefill (vision + LLM) on a shared machine, so it is noisy.",
    ]
    seeds = list(request.seeds)
    comparisons = {}
    if len(seeds) >= 2:
        for k, text in enumerate(cfg.comparisons):
            a_row, b_row, metric = parse_comparison(text)
            a = [per_variant[a_row][s].get(metric) for s in seeds]
            b = [per_variant[b_row][s].get(metric) for s in seeds]
            if None in a or None in b:
                notes.append(f"{text}: metric missing in a row, not computed.")
                continue
            ci = difference_ci(a, b, paired=True)
            comparisons[text] = {**ci, "half_width": (ci["high"] - ci["low"]) / 2, "n_seeds": len(seeds)}
            notes.append(
                f"{'Headline' if k == 0 else 'Pre-registered'} {a_row} - {b_row}, {metric}: "
                f"{ci['mean_difference']:+.1f} points (95% CI [{ci['low']:+.1f}, {ci['high']:+.1f}], "
                f"{len(seeds)} paired seeds; smallest detectable difference ~ +/-{(ci['high'] - ci['low']) / 2:.1f})."
            )
    per_type = {
        variant: {
            key: sum(per_seed[s][key] for s in seeds) / len(seeds)
            for key in sorted(per_seed[seeds[0]])
            if key.startswith("accuracy_")
        }
        for variant, per_seed in per_variant.items()
    }
    return TableResult(
        rows=rows,
        config=cfg,
        notes=notes,
        extra={"mean_accuracy_per_question_type": per_type, "comparisons": comparisons},
    )


# ----------------------------------------------------------------------------------------------------
# efficiency: real-size token arithmetic and FLOPs, on the meta device
# ----------------------------------------------------------------------------------------------------


def real_size_flops(variant: str, *, question_tokens: int = 32, prefix_tokens: int = 32) -> dict[str, float]:
    """Visual tokens and prefill TFLOPs (formula; exact count on the meta device) of the 3.2B model."""
    from paperzoo_flashsloth.evaluate import formula_prefill_flops, prefill_flops_by_parts
    from paperzoo_flashsloth.modeling_flashsloth import FlashSlothForConditionalGeneration

    config = FlashSlothConfig(**variant_overrides(variant))
    config.vision_config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    with torch.device("meta"):
        model = FlashSlothForConditionalGeneration(config).eval()
    text = config.text_config
    n = config.vision_tokens_per_query_block
    return {
        "visual_tokens": float(n),
        "tflops_formula": formula_prefill_flops(n, text.hidden_size, text.num_hidden_layers) / 1e12,
        "tflops_exact": prefill_flops_by_parts(
            model, prefix_tokens=prefix_tokens, question_tokens=question_tokens
        )
        / 1e12,
    }


def reproduce_efficiency(request: ReproRequest) -> TableResult:
    rows = []
    variants = ("uncompressed", "flashsloth", "hd_uncompressed", "hd")
    for variant in variants:
        per_seed = {
            seed: request.cached(
                variant, seed, lambda v=variant: real_size_flops(v), fingerprint={"v": variant, "q": 32}
            )
            for seed in request.seeds
        }
        rows.append(
            RowResult.from_seed_metrics(
                variant, ROW_LABELS[variant], per_seed, paper_row=_paper_row(request, variant)
            )
        )
    notes = [
        "Real-size FlashSloth (SigLIP-so400m/384 truncated to 26 blocks + Phi-2), one image and a 32-token question "
        "after a 32-token system prompt. Formula: Dynamic-LLaVA Eq. 13 over the visual (+query) tokens only. Exact: "
        "FlopCounterMode over the whole prefill (vision tower, pooling, projector, every LLM token, embedded query "
        "module) run on the meta device, so no weights are needed. The paper reports token counts (90, 414); its "
        "TFLOPs table is not available to us."
    ]
    return TableResult(rows=rows, config={"question_tokens": 32, "prefix_tokens": 32}, notes=notes)
