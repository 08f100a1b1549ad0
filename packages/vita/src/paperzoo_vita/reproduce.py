"""``paperzoo reproduce vita``: the smoke pipeline of the interaction table, and the paper's headline tables.

``interaction`` (smoke): a tiny random VITA (InternViT 2x32, Mixtral 2x64 with 4 experts, whale 2x32) trained from
scratch through transformers' Trainer on a handful of synthetic items: colour questions about paperzoo_shared's
synthetic shape images asked as text (answer ``<3> colour``), "spoken" questions whose audio is a *tone stand-in*, not
speech (``<1> colour``), and white-noise clips (``<2>``, no answer). Columns: the state-token decision (first generated
token), answer accuracy, and precision / recall of the non-awakening decision (``<2>`` against ``<1>``). It shows the
pipeline runs end to end (fbank, encoders, splicing, state-token supervision, generate); its numbers mean nothing.
The espeak-ng ``mini`` of issue 21 (real synthesized speech, seeds, CIs) is table ``omni_mini`` (:mod:`paperzoo_vita.mini`).

``vision``, ``asr``, ``language`` (full): the paper's numbers for reference; reproducing them needs the released
checkpoint and the benchmarks, which this package does not run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from paperzoo_shared.config import load_config
from paperzoo_shared.repro import ReproRequest, RowResult, TableResult
from paperzoo_vita.configuration import (
    AUDIO_TOKEN,
    IMAGE_TOKEN,
    STATE_TOKENS,
    ExperimentConfig,
    build_model_config,
)
from paperzoo_vita.data import MixtralTwoTemplate, assign_state_tokens, encode_pieces, expand_placeholders

SILENT_PROMPTS = {
    "image": "",
    "video": "",
    "lang": "",
}  # the word-level tokenizer has no words for the persona


def reproduce(request: ReproRequest) -> TableResult:
    if request.table.id == "interaction":
        return reproduce_interaction(request)
    if request.table.id == "omni_mini":
        return reproduce_mini(request)
    raise ValueError(
        f"vita table {request.table.id!r} lists the paper's numbers only: this package does not run the released checkpoint "
        "on the benchmarks (see the README)"
    )


def synthetic_items(cfg: ExperimentConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` items cycling text question / tone "spoken" question / noise clip about synthetic shape images."""
    from paperzoo_shared.data.synthetic.qa import QAConfig, generate_qa_dataset

    size = cfg.model.image_size
    qa = generate_qa_dataset(
        n, seed=seed, cfg=QAConfig(image_size=max(32, size), question_types=("colour",), questions_per_image=1,
                                  min_objects=1, max_objects=1),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    n_samples = int(cfg.data.audio_seconds * 16000)
    items = []
    for index, sample in enumerate(qa):
        kind = ("text", "query", "noise")[index % 3]
        if kind == "text":
            user, audio, inserted = f"{IMAGE_TOKEN}\n{sample.question}", None, None
        else:
            user, inserted = f"{IMAGE_TOKEN}\n{AUDIO_TOKEN}", (0 if kind == "noise" else None)
            if kind == "query":
                t = np.arange(n_samples) / 16000
                audio = 0.3 * np.sin(2 * math.pi * rng.uniform(300, 800) * t)
            else:
                audio = 0.1 * rng.standard_normal(n_samples)
        turns = assign_state_tokens([(user, sample.answer)], inserted_id=inserted, has_media=True)
        items.append(
            {"kind": kind, "image": sample.image, "audio": audio, "turns": turns, "answer": sample.answer}
        )
    return items


def encode_item(
    item: dict, tokenizer: Any, image_processor: Any, tokens_per_tile: int, generation: bool = False
) -> dict:
    from paperzoo_vita.audio import audio_token_count, waveform_to_fbank

    fbanks = []
    if item["audio"] is not None:
        fbanks.append(waveform_to_fbank(torch.as_tensor(item["audio"], dtype=torch.float32)))
    counts = [audio_token_count(f.shape[0]) for f in fbanks]
    turns = [(u, None) for u, _ in item["turns"]] if generation else item["turns"]
    pieces = MixtralTwoTemplate(SILENT_PROMPTS).pieces(turns, "image")
    pieces = [(expand_placeholders(t, [1] * t.count(IMAGE_TOKEN), counts if AUDIO_TOKEN in t else [], tokens_per_tile), s) for t, s in pieces]  # fmt: skip
    enc = encode_pieces(pieces, tokenizer)
    pixels = image_processor.tile(item["image"])
    return {"input_ids": enc.input_ids, "labels": enc.labels, "pixel_values": pixels, "fbanks": fbanks}


def run_interaction(cfg: ExperimentConfig, seed: int) -> dict[str, float]:
    from paperzoo_vita.modeling_vita import VitaForConditionalGeneration
    from paperzoo_vita.processing_vita import VitaImageProcessor
    from paperzoo_vita.tokenization import build_tiny_tokenizer
    from paperzoo_vita.train import VitaCollator, train_stage

    torch.manual_seed(seed)
    tok = build_tiny_tokenizer()
    ids = tok.convert_tokens_to_ids
    model_cfg = build_model_config(cfg.model, len(tok), ids(IMAGE_TOKEN), ids(AUDIO_TOKEN))
    model = VitaForConditionalGeneration(model_cfg)
    model.set_stage("finetune", train_audio_adapter=True)
    image_processor = VitaImageProcessor(cfg.model.image_size, max_dynamic_patch=1)
    n = model_cfg.image_seq_length
    train = [
        encode_item(i, tok, image_processor, n)
        for i in synthetic_items(cfg, cfg.data.num_train, cfg.data.seed)
    ]
    test_items = synthetic_items(cfg, cfg.data.num_eval, cfg.data.seed + 1000)
    losses = train_stage(model, train, VitaCollator(tok.pad_token_id), cfg.train.steps, cfg.train.learning_rate,
                         cfg.train.batch_size, seed=seed)  # fmt: skip
    model.eval()
    state_ids = [ids(t) for t in STATE_TOKENS]
    correct_state = correct_answer = answered = 0
    tp = fp = fn = 0
    for item in test_items:
        enc = encode_item(item, tok, image_processor, n, generation=True)
        batch = VitaCollator(tok.pad_token_id)([enc])
        with torch.no_grad():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 pixel_values=batch["pixel_values"], input_features=batch.get("input_features"),
                                 input_features_mask=batch.get("input_features_mask"), max_new_tokens=cfg.max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)  # fmt: skip
        new = out[0, batch["input_ids"].shape[1] :].tolist()
        expected_state = {"text": state_ids[2], "query": state_ids[0], "noise": state_ids[1]}[item["kind"]]
        got = new[0] if new else -1
        correct_state += int(got == expected_state)
        if item["kind"] != "noise":
            answered += 1
            correct_answer += int(len(new) > 1 and new[1] == ids(item["answer"]))
        if item["kind"] in ("query", "noise"):
            predicted_noise, is_noise = got == state_ids[1], item["kind"] == "noise"
            tp += int(predicted_noise and is_noise)
            fp += int(predicted_noise and not is_noise)
            fn += int(not predicted_noise and is_noise)
    return {
        "state_accuracy": 100.0 * correct_state / len(test_items),
        "answer_accuracy": 100.0 * correct_answer / max(answered, 1),
        "nonawake_precision": 100.0 * tp / max(tp + fp, 1),
        "nonawake_recall": 100.0 * tp / max(tp + fn, 1),
        "loss_first": losses[0] if losses else float("nan"),
        "loss_last": losses[-1] if losses else float("nan"),
    }


def reproduce_interaction(request: ReproRequest) -> TableResult:
    if request.preset != "smoke":
        raise ValueError(
            "the interaction table runs at the smoke preset only; the mini is table omni_mini (--preset mini)"
        )
    cfg = load_config(ExperimentConfig, request.config_dir / f"{request.preset}.yaml", request.overrides)
    per_seed = {
        seed: request.cached("tiny_vita", seed, lambda s=seed: run_interaction(cfg, s), cfg)
        for seed in request.seeds
    }
    row = RowResult.from_seed_metrics(
        "tiny_vita",
        "Tiny random VITA, synthetic items (tone stand-in for speech; smoke, numbers mean nothing)",
        per_seed,
    )
    return TableResult(
        rows=[row],
        config=cfg,
        notes=[
            "Smoke pipeline check on synthetic data: a tone stands in for spoken questions and white noise for "
            "background audio; these are not the paper's experiments and the numbers are not comparable to it.",
        ],
    )


def reproduce_mini(request: ReproRequest) -> TableResult:
    """The espeak-ng mini (:mod:`paperzoo_vita.mini`): one row over the seeds, the pre-registered comparisons of
    ``configs/mini.yaml`` under the table."""
    from paperzoo_vita.mini import compare, comparison_lines, run_mini
    from paperzoo_vita.speech import require_espeak

    require_espeak()
    cfg = load_config(ExperimentConfig, request.config_dir / f"{request.preset}.yaml", request.overrides)
    per_seed = {
        seed: request.cached("tiny_vita", seed, lambda s=seed: run_mini(cfg, s), cfg)
        for seed in request.seeds
    }
    row = RowResult.from_seed_metrics(
        "tiny_vita", "Tiny VITA trained from scratch (espeak-ng speech, synthetic two-shape images)", per_seed
    )
    notes = [
        "Answer accuracy: the colour of the shape the question names; two shapes per image, so 50 % is the best a "
        "question-blind rule can do. Non-awakening: `<2>` (stay silent) against `<1>` over the audio items "
        "(spoken questions, noise, background talk); the always-`<1>` rule has recall 0, awake rate 100, balanced "
        "accuracy 50 and no precision (it never says `<2>`).",
    ]
    comparisons = []
    if len(per_seed) >= 2:
        comparisons = compare(cfg.speech.comparisons, per_seed)
        notes.append(
            "Pre-registered comparisons (configs/mini.yaml), mean over seeds with 95 % paired t-intervals:"
        )
        notes.extend(f"- {line}" for line in comparison_lines(comparisons))
    return TableResult(rows=[row], config=cfg, notes=notes, extra={"comparisons": comparisons})
