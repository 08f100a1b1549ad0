"""``paperzoo reproduce dynamic_llava``: the miniature of Tables 1 and 3.

Per seed: a tiny LLaVA is trained from scratch on shape questions and object descriptions (standing in for
the released LLaVA-1.5), then Dynamic-LLaVA is trained from it (one more stage with the predictors, the
paper's recipe scaled down). Four rows are evaluated on held-out images: the dense LLaVA, Dynamic-LLaVA
(vision keep 0.2, output-text keep 0.5), random pruning at the same ratios and FastV-style pruning of the
same share of image tokens at the same layer (FastV prunes no text), the last two applied to the dense model
without training, as in the paper. The dense and Dynamic-LLaVA models of a seed are trained once and cached
under ``runs/`` (git-ignored), so the rows and a resumed run reuse them.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from paperzoo_dynamic_llava.configuration import ExperimentConfig
from paperzoo_shared.config import config_hash, load_config, to_dict
from paperzoo_shared.metrics.stats import difference_ci
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult

ROW_LABELS = {
    "dense": "LLaVA (dense)",
    "dynamic": "Dynamic-LLaVA_IT (vision 0.2, text 0.5)",
    "random": "Random pruning (vision 0.2, text 0.5)",
    "fastv": "FastV-style (vision 0.2 at layer 2)",
}
PAPER_ROWS = {
    "dense": "llava15_7b",
    "dynamic": "dynamic_llava_7b_it",
    "random": "random_drop_7b",
    "fastv": "fastv_7b",
}
TABLE_METRICS = (
    "accuracy",
    "desc_word_accuracy",
    "desc_ppl",
    "eq13_mflops",
    "prefill_mflops",
    "kv_cache_kb",
    "qa_wall_s",
)


class SeedRun:
    """Data, tokenizer and the two trained models of one seed, built lazily and cached on disk."""

    def __init__(self, cfg: ExperimentConfig, seed: int, workdir: Path):
        self.cfg, self.seed, self.workdir = cfg, seed, workdir
        self._data: dict[str, Any] | None = None
        self._models: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    def data(self) -> dict[str, Any]:
        if self._data is None:
            from paperzoo_dynamic_llava.data import WordPromptBuilder, build_examples
            from paperzoo_shared.data.synthetic.qa import (
                QAConfig,
                build_word_tokenizer,
                generate_qa_dataset,
                to_transformers_tokenizer,
            )  # fmt: skip

            d, m = self.cfg.data, self.cfg.model
            tokenizer = to_transformers_tokenizer(build_word_tokenizer())
            extra = {k: tuple(v) for k, v in (("colours", d.colours), ("patterns", d.patterns)) if v}
            qa_cfg = QAConfig(image_size=m.image_size, question_types=tuple(d.question_types),
                              questions_per_image=d.questions_per_image, **extra)  # fmt: skip
            builder = WordPromptBuilder(tokenizer, (m.image_size // m.patch_size) ** 2)
            train = generate_qa_dataset(d.train_images, seed=1000 * self.seed + 1, cfg=qa_cfg)
            held_out = generate_qa_dataset(d.eval_images, seed=1000 * self.seed + 2, cfg=qa_cfg)
            evals = build_examples(
                held_out,
                builder,
                image_size=m.image_size,
                describe=True,
                with_pattern=len(qa_cfg.patterns) > 1,
            )
            self._data = {
                "qa_config": qa_cfg,
                "train_samples": train,
                "tokenizer": tokenizer,
                "train": build_examples(
                    train,
                    builder,
                    image_size=m.image_size,
                    describe=d.describe,
                    with_pattern=len(qa_cfg.patterns) > 1,
                ),
                "qa": [e for e in evals if e.qtype != "describe"],
                "describe": [e for e in evals if e.qtype == "describe"][: d.eval_description_images],
            }
        return self._data

    def _train(self, model: Any, stage: Any, *, dynamic: bool, name: str) -> Any:
        from transformers import Trainer

        from paperzoo_dynamic_llava.data import ExampleDataset, TrainCollator
        from paperzoo_dynamic_llava.train import DynamicLlavaTrainer, training_arguments

        data = self.data()
        args = training_arguments(
            self.workdir / f"trainer_{name}", per_device_train_batch_size=stage.batch_size, max_steps=stage.steps,
            learning_rate=stage.learning_rate, warmup_steps=stage.warmup_ratio, weight_decay=stage.weight_decay,
            seed=self.seed, logging_steps=max(stage.steps // 5, 1),
        )  # fmt: skip
        common = {"model": model, "args": args, "train_dataset": ExampleDataset(data["train"]),
                  "data_collator": TrainCollator(data["tokenizer"].pad_token_id)}  # fmt: skip
        if dynamic:
            trainer = DynamicLlavaTrainer(**common, predictor_lr=stage.predictor_lr,
                                          gumbel_start_tau=self.cfg.gumbel_start_tau,
                                          gumbel_end_tau=self.cfg.gumbel_end_tau)  # fmt: skip
        else:
            trainer = Trainer(**common)
        start = time.perf_counter()
        trainer.train()
        self.timings[f"train_{name}_s"] = time.perf_counter() - start
        self.timings[f"train_{name}_final_loss"] = float(
            next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), float("nan"))
        )
        return model.eval()

    def _pretrain_vision(self, model: Any) -> None:
        """The stand-in for CLIP pretraining (per-patch shape and colour classes), through the Trainer."""
        from transformers import Trainer

        from paperzoo_dynamic_llava.data import image_to_tensor, patch_labels
        from paperzoo_dynamic_llava.train import PatchLabelDataset, PatchLabelPretrainer, training_arguments
        from paperzoo_shared.data.synthetic.render import SHAPE_CLASSES

        data, m, stage = self.data(), self.cfg.model, self.cfg.vision_pretrain
        colours = tuple(data["qa_config"].colours)
        first = {}
        for s in data["train_samples"]:
            first.setdefault(s.image_id, s)
        items = [(image_to_tensor(s.image), *patch_labels(s.objects, m.image_size, m.patch_size, colours, SHAPE_CLASSES))
                 for s in first.values()]  # fmt: skip
        head = PatchLabelPretrainer(model.model.vision_tower, model.config.vision_feature_layer, len(SHAPE_CLASSES),
                                    len(colours))  # fmt: skip
        args = training_arguments(
            self.workdir / "trainer_vision", per_device_train_batch_size=stage.batch_size, max_steps=stage.steps,
            learning_rate=stage.learning_rate, warmup_steps=stage.warmup_ratio, seed=self.seed,
            logging_steps=max(stage.steps // 5, 1),
        )  # fmt: skip
        start = time.perf_counter()
        Trainer(model=head, args=args, train_dataset=PatchLabelDataset(items)).train()
        self.timings["train_vision_s"] = time.perf_counter() - start

    def dense(self) -> Any:
        """The tiny LLaVA (transformers' own ``LlavaForConditionalGeneration``), trained from scratch."""
        if "dense" not in self._models:
            from safetensors.torch import load_file, save_file
            from transformers import LlavaForConditionalGeneration

            from paperzoo_dynamic_llava.presets import tiny_llava_config

            tok = self.data()["tokenizer"]
            config = tiny_llava_config(self.cfg.model, vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
                                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id)  # fmt: skip
            torch.manual_seed(self.seed)
            model = LlavaForConditionalGeneration(config)
            key = config_hash({"model": to_dict(self.cfg.model), "data": to_dict(self.cfg.data),
                               "vision": to_dict(self.cfg.vision_pretrain), "pretrain": to_dict(self.cfg.pretrain),
                               "seed": self.seed})  # fmt: skip
            path = self.workdir / f"dense_{key}.safetensors"
            if path.is_file():
                model.load_state_dict(load_file(str(path)))
                model.eval()
            else:
                if self.cfg.vision_pretrain.steps > 0:
                    self._pretrain_vision(model)
                model.model.vision_tower.requires_grad_(False)  # LLaVA keeps its CLIP tower frozen
                model = self._train(model, self.cfg.pretrain, dynamic=False, name="dense")
                path.parent.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            self._models["dense"] = model
        return self._models["dense"]

    def sparse_model(self, trained: bool) -> Any:
        """Dynamic-LLaVA trained from the dense model, or the dense model wrapped untrained (for baselines)."""
        name = "dynamic" if trained else "wrapped"
        if name not in self._models:
            from safetensors.torch import load_file, save_file

            from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration
            from paperzoo_dynamic_llava.train import freeze_for_dynamic_training

            dense = self.dense()
            if trained:  # from_dense_llava shares the tensors: train a copy, keep the dense model intact
                dense = copy.deepcopy(dense)
            torch.manual_seed(self.seed + 1)
            model = DynamicLlavaForConditionalGeneration.from_dense_llava(dense, self.cfg.sparse_config)
            if trained:
                key = config_hash({"cfg": to_dict(self.cfg), "seed": self.seed})
                path = self.workdir / f"dynamic_{key}.safetensors"
                if path.is_file():
                    model.load_state_dict(load_file(str(path)))
                else:
                    freeze_for_dynamic_training(model, freeze_vision_tower=self.cfg.freeze_vision_tower,
                                                freeze_projector=self.cfg.freeze_projector)  # fmt: skip
                    model = self._train(model, self.cfg.dynamic, dynamic=True, name="dynamic")
                    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            self._models[name] = model.eval()
        return self._models[name]

    def evaluate(self, row: str) -> dict[str, float]:
        from paperzoo_dynamic_llava.evaluate import evaluate_row

        model = self.sparse_model(trained=row == "dynamic")
        data = self.data()
        metrics = evaluate_row(model, data["qa"], data["describe"], data["tokenizer"], selection=row,
                               batch_size=self.cfg.eval_batch_size, seed=self.seed)  # fmt: skip
        metrics.update({k: v for k, v in self.timings.items()})
        return metrics


def workdir_for(request: ReproRequest) -> Path:
    """Trained models go to ``packages/dynamic_llava/runs/<preset>`` (git-ignored) for the default results
    folder of a checkout, else beside the results (``<out>/runs``)."""
    root = request.paper.source_root()
    default = request.paper.default_results_dir(request.preset)
    if root is not None and request.out_dir.resolve() == default.resolve():
        return root / "runs" / request.preset
    return request.out_dir / "runs"


def reproduce(request: ReproRequest) -> TableResult:
    cfg = load_config(
        ExperimentConfig, request.config_dir / f"{request.preset}.yaml", overrides=request.overrides
    )
    torch.set_num_threads(cfg.threads)
    workdir = workdir_for(request)
    per_row: dict[str, dict[int, dict[str, float]]] = {row: {} for row in cfg.rows}
    for seed in request.seeds:
        run = SeedRun(cfg, seed, workdir / f"seed{seed}")
        for row in cfg.rows:
            per_row[row][seed] = request.cached(row, seed, lambda r=row, sr=run: sr.evaluate(r),
                                                fingerprint={"config": to_dict(cfg), "row": row})  # fmt: skip
    rows = [
        RowResult.from_seed_metrics(
            row,
            ROW_LABELS[row],
            {s: {k: m[k] for k in TABLE_METRICS if k in m} for s, m in per_row[row].items()},
            paper_row=PAPER_ROWS[row],
        )  # fmt: skip
        for row in cfg.rows
    ]
    return TableResult(
        rows=rows, config=cfg, notes=_notes(per_row, request.seeds), extra={"per_seed_all_metrics": per_row}
    )


def _notes(per_row: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> list[str]:
    notes = [
        "Units (miniature vs paper): accuracy = exact match on held-out shape questions (colour, shape, position, "
        "existence; chance about 35 %) vs VQAv2; description word accuracy = teacher-forced accuracy on the "
        "colour, shape and place words of object descriptions (no paper counterpart); answer PPL = teacher-forced "
        "description perplexity through the gated KV cache vs LVIS-VQA PPL; Eq. 13 in MFLOPs vs TFLOPs; KV cache "
        "in KB per sample after the description vs MB; wall time of the QA evaluation on CPU."
    ]

    def mean(row: str, key: str) -> float:
        values = [per_row[row][s][key] for s in seeds if key in per_row[row][s]]
        return sum(values) / max(len(values), 1)

    if "dense" in per_row and "dynamic" in per_row:
        notes.append(
            f"Ratios Dynamic-LLaVA / dense (means over seeds): Eq. 13 prefill FLOPs "
            f"{mean('dynamic', 'eq13_mflops') / mean('dense', 'eq13_mflops'):.2f} (paper 7B: 2.49/10.07 = 0.25), "
            f"counted prefill FLOPs {mean('dynamic', 'prefill_mflops') / mean('dense', 'prefill_mflops'):.2f}, "
            f"KV cache after a teacher-forced description {mean('dynamic', 'kv_cache_kb') / mean('dense', 'kv_cache_kb'):.2f} "
            f"(paper Table 3, 7B: 63/103 = 0.61); generated-token keep ratio {mean('dynamic', 'answer_keep_ratio'):.2f}."
        )
    if len(seeds) >= 2:
        for other in ("dense", "random", "fastv"):
            if other in per_row and "dynamic" in per_row:
                for key, name, digits in (
                    ("accuracy", "QA accuracy (points)", 1),
                    ("desc_word_accuracy", "description word accuracy (points)", 1),
                    ("desc_ppl", "description PPL", 3),
                ):
                    a = [per_row["dynamic"][s][key] for s in seeds]
                    b = [per_row[other][s][key] for s in seeds]
                    ci = difference_ci(a, b, paired=True)
                    notes.append(
                        f"Dynamic-LLaVA minus {ROW_LABELS[other]}, {name}: {ci['mean_difference']:+.{digits}f} "
                        f"(95% CI [{ci['low']:+.{digits}f}, {ci['high']:+.{digits}f}], {ci['n']} paired seeds)."
                    )
    return notes
