"""The ``mini`` preset (issue 21): a tiny omni VITA trained on real synthesized speech, with pre-registered comparisons.

Items (``configs/mini.yaml``, section ``speech``), four kinds in equal numbers, each with a synthetic image of two
shapes of distinct classes and colours (paperzoo_shared's shape-QA generator, question type ``colour``):

* ``text``: ``<image>\\n What colour is the circle?`` -> ``<3> red``;
* ``spoken``: ``<image>\\n<audio>`` with espeak-ng speaking that question -> ``<1> red``;
* ``noise``: ``<image>\\n<audio>`` with white or brown noise -> ``<2>`` (the ``inserted_id`` turn: stay silent);
* ``talk``: ``<image>\\n<audio>`` with espeak-ng speaking a declarative background sentence -> ``<2>``.

The question names one of the two shapes, so no rule that ignores the question beats 50 % answer accuracy. Training
is VITA's stage-2 recipe (LLM + projector + audio adapter through transformers' Trainer) with the encoders trained
too (random encoders learn nothing frozen) and the global CMVN computed from the training clips, as the release's
``global_cmvn`` comes from its training set. The first generated token is the state decision, the second the answer.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paperzoo_vita.configuration import (
    AUDIO_TOKEN,
    IMAGE_TOKEN,
    STATE_TOKENS,
    ComparisonSpec,
    ExperimentConfig,
    build_model_config,
)
from paperzoo_vita.data import assign_state_tokens

KINDS = ("text", "spoken", "noise", "talk")
EXPECTED_STATE = {
    "text": STATE_TOKENS[2],
    "spoken": STATE_TOKENS[0],
    "noise": STATE_TOKENS[1],
    "talk": STATE_TOKENS[1],
}
EVAL_SEED_OFFSET = 10_000


def _bar(iterable: Any, desc: str, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, mininterval=5.0, leave=False)


def mini_items(
    cfg: ExperimentConfig, per_kind: int, seed: int, cache: Path | None = None
) -> list[dict[str, Any]]:
    """``4 * per_kind`` items cycling text / spoken / noise / talk; deterministic given ``seed`` (and espeak-ng)."""
    from paperzoo_shared.data.synthetic.qa import QAConfig, generate_qa_dataset
    from paperzoo_vita.speech import coloured_noise, require_espeak, scale_peak, synthesize

    require_espeak()
    sp = cfg.speech
    qa = generate_qa_dataset(
        len(KINDS) * per_kind, seed=seed,
        cfg=QAConfig(image_size=cfg.model.image_size, question_types=("colour",), questions_per_image=1,
                     min_objects=2, max_objects=2, colours=tuple(sp.colours)),
    )  # fmt: skip
    rng = np.random.default_rng([seed, 21])
    items = []
    for index, sample in enumerate(_bar(qa, f"mini items (seed {seed})")):
        kind = KINDS[index % len(KINDS)]
        voice, rate, pitch = sp.voices[rng.integers(len(sp.voices))], sp.rates[rng.integers(len(sp.rates))], sp.pitches[rng.integers(len(sp.pitches))]  # fmt: skip
        audio = None
        if kind == "spoken":
            audio = scale_peak(
                synthesize(sample.question, voice, rate, pitch, cache), rng.uniform(*sp.speech_peak)
            )
        elif kind == "talk":
            sentence = sp.talk_sentences[rng.integers(len(sp.talk_sentences))]
            audio = scale_peak(synthesize(sentence, voice, rate, pitch, cache), rng.uniform(*sp.talk_peak))
        elif kind == "noise":
            n = int(rng.uniform(*sp.noise_seconds) * 16000)
            audio = coloured_noise(rng, n, ("white", "brown")[rng.integers(2)], rng.uniform(*sp.noise_rms))
        user = f"{IMAGE_TOKEN}\n{sample.question}" if kind == "text" else f"{IMAGE_TOKEN}\n{AUDIO_TOKEN}"
        turns = assign_state_tokens(
            [(user, sample.answer)], inserted_id=0 if kind in ("noise", "talk") else None, has_media=True
        )
        items.append({
            "kind": kind, "image": sample.image, "audio": audio, "turns": turns, "answer": sample.answer,
            "colours": tuple(o.colour for o in sample.objects),
        })  # fmt: skip
    return items


def score(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The table's columns from one seed's evaluation records ``{"kind", "state", "answer", "truth", "colours"}``
    (``state`` and ``answer`` are the first and second generated tokens as strings; "" when not generated).

    ``*_accuracy``: % of the kind's items whose answer token is the right colour; ``*_in_image``: % whose answer
    names one of the image's two colours (the question-blind ceiling is 50 % accuracy at 100 % in-image).
    Non-awakening over the audio items (spoken, noise, talk), positive = ``<2>``: precision (0 when nothing is
    predicted ``<2>``), recall, recall per negative kind, the awake rate of spoken questions (not ``<2>``) and the
    balanced accuracy of the decision, the mean of the recall and the awake rate (50 for the always-``<1>`` rule)."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {k: [] for k in KINDS}
    for r in records:
        by_kind[r["kind"]].append(r)
    missing = [k for k, rs in by_kind.items() if not rs]
    if missing:
        raise ValueError(f"scoring needs items of every kind; none of {missing}")

    def pct(hits: int, total: int) -> float:
        return 100.0 * hits / total if total else 0.0

    silent = STATE_TOKENS[1]
    out = {}
    for kind in ("text", "spoken"):
        rs = by_kind[kind]
        out[f"{kind}_accuracy"] = pct(sum(r["answer"] == r["truth"] for r in rs), len(rs))
        out[f"{kind}_in_image"] = pct(sum(r["answer"] in r["colours"] for r in rs), len(rs))
    out["state_accuracy"] = pct(sum(r["state"] == EXPECTED_STATE[r["kind"]] for r in records), len(records))
    negatives = by_kind["noise"] + by_kind["talk"]
    tp = sum(r["state"] == silent for r in negatives)
    fp = sum(r["state"] == silent for r in by_kind["spoken"])
    out["nonawake_precision"] = pct(tp, tp + fp)
    out["nonawake_recall"] = pct(tp, len(negatives))
    for kind in ("noise", "talk"):
        out[f"recall_{kind}"] = pct(sum(r["state"] == silent for r in by_kind[kind]), len(by_kind[kind]))
    out["awake_rate"] = pct(len(by_kind["spoken"]) - fp, len(by_kind["spoken"]))
    out["decision_balanced_accuracy"] = (out["nonawake_recall"] + out["awake_rate"]) / 2
    return out


def compare(
    specs: Sequence[ComparisonSpec], per_seed: Mapping[int, Mapping[str, float]]
) -> list[dict[str, Any]]:
    """Each pre-registered comparison: mean of ``a - b`` (or ``a - reference``) over the seeds with its 95 %
    Student-t interval (``paperzoo_shared.metrics.stats.difference_ci``, paired by seed), the registered direction
    and whether the interval lies wholly on that side."""
    from paperzoo_shared.metrics.stats import difference_ci

    seeds = sorted(per_seed)
    out = []
    for spec in specs:
        a = [per_seed[s][spec.a] for s in seeds]
        if spec.b:
            b = [per_seed[s][spec.b] for s in seeds]
            against = spec.b
        elif spec.reference is not None:
            b = [spec.reference] * len(seeds)
            against = f"{spec.reference:g}"
        else:
            raise ValueError(f"comparison {spec.id}: give b (a metric) or reference (a number)")
        ci = difference_ci(a, b, paired=True)
        holds = ci["low"] > 0 if spec.expect == "greater" else ci["high"] < 0
        out.append({
            "id": spec.id, "label": spec.label, "a": spec.a, "b": against, "expect": spec.expect,
            "mean_difference": ci["mean_difference"], "low": ci["low"], "high": ci["high"],
            "half_width": (ci["high"] - ci["low"]) / 2, "n": ci["n"], "holds": bool(holds),
        })  # fmt: skip
    return out


def comparison_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        side = "> 0" if r["expect"] == "greater" else "< 0"
        verdict = "holds" if r["holds"] else "not shown (the interval reaches the other side of 0)"
        lines.append(
            f"{r['id']}: {r['a']} - {r['b']} = {r['mean_difference']:+.1f} "
            f"(95% CI [{r['low']:+.1f}, {r['high']:+.1f}], n = {r['n']} seeds); registered {side}: {verdict}"
            + (f". {r['label']}" if r["label"] else "")
        )
    return lines


def set_global_cmvn(model: Any, fbanks: Sequence[torch.Tensor]) -> None:
    """Per-bin mean and 1/std of the training clips' fbank frames into the encoder's CMVN buffers (the release's
    ``global_cmvn`` statistics come from its training set; :func:`modeling_vita.load_global_cmvn` reads them)."""
    frames = torch.cat([f.to(torch.float64) for f in fbanks])
    mean = frames.mean(0)
    std = frames.var(0, unbiased=False).clamp(min=1e-20).sqrt()
    cmvn = model.audio_encoder.cmvn
    cmvn.mean.copy_(mean.to(cmvn.mean.dtype))
    cmvn.istd.copy_((1.0 / std).to(cmvn.istd.dtype))


def run_mini(cfg: ExperimentConfig, seed: int, cache: Path | None = None) -> dict[str, float]:
    """Trains one tiny VITA on ``seed``'s items and scores it on held-out items (images, voices and clips of seed
    ``seed + 10000``) and, as ``seen_*``, on as many of its training items."""
    from paperzoo_vita.modeling_vita import VitaForConditionalGeneration
    from paperzoo_vita.processing_vita import VitaImageProcessor
    from paperzoo_vita.reproduce import encode_item
    from paperzoo_vita.tokenization import build_tiny_tokenizer
    from paperzoo_vita.train import VitaCollator, train_stage

    torch.manual_seed(seed)
    tok = build_tiny_tokenizer()
    ids = tok.convert_tokens_to_ids
    model = VitaForConditionalGeneration(
        build_model_config(cfg.model, len(tok), ids(IMAGE_TOKEN), ids(AUDIO_TOKEN))
    )
    model.set_stage("finetune", train_audio_adapter=True)
    if cfg.speech.train_encoders:
        model.vision_tower.requires_grad_(True)
        model.audio_encoder.requires_grad_(True)
    image_processor = VitaImageProcessor(cfg.model.image_size, max_dynamic_patch=1)
    n_tile = model.config.image_seq_length
    train_items = mini_items(cfg, cfg.speech.train_per_kind, seed, cache)
    eval_items = mini_items(cfg, cfg.speech.eval_per_kind, seed + EVAL_SEED_OFFSET, cache)
    train = [encode_item(i, tok, image_processor, n_tile) for i in train_items]
    seen_items = train_items[: len(eval_items)]
    del train_items  # the encoded copies are what training reads
    set_global_cmvn(model, [f for t in train for f in t["fbanks"]])
    collator = VitaCollator(tok.pad_token_id)
    losses = train_stage(model, train, collator, cfg.train.steps, cfg.train.learning_rate, cfg.train.batch_size, seed=seed)  # fmt: skip
    model.eval()

    def evaluate(items: Sequence[dict[str, Any]], desc: str) -> list[dict[str, Any]]:
        records = []
        for item in _bar(items, desc):
            batch = collator([encode_item(item, tok, image_processor, n_tile, generation=True)])
            with torch.no_grad():
                out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     pixel_values=batch["pixel_values"], input_features=batch.get("input_features"),
                                     input_features_mask=batch.get("input_features_mask"), max_new_tokens=2,
                                     do_sample=False, pad_token_id=tok.pad_token_id)  # fmt: skip
            new = tok.convert_ids_to_tokens(out[0, batch["input_ids"].shape[1] :].tolist())
            records.append({
                "kind": item["kind"], "state": new[0] if new else "", "answer": new[1] if len(new) > 1 else "",
                "truth": item["answer"], "colours": item["colours"],
            })  # fmt: skip
        return records

    records = evaluate(eval_items, f"mini evaluation (seed {seed})")
    seen = score(evaluate(seen_items, f"mini training items (seed {seed})"))
    metrics = score(records)
    # the same columns on as many training items: a gap to the held-out ones is memorisation, not learning
    metrics.update({f"seen_{k}": seen[k] for k in ("text_accuracy", "spoken_accuracy", "text_in_image")})
    metrics["loss_first"] = losses[0] if losses else float("nan")
    metrics["loss_last"] = losses[-1] if losses else float("nan")
    return metrics
