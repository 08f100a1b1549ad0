"""Evaluation of one token-selection row: QA accuracy, teacher-forced description PPL with the gated KV cache,
KV-cache size, prefill FLOPs (counted and Eq. 13) and wall time.

The PPL follows the official long-text protocol (``model_lvis_for_ppl``): teacher-force the reference answer
token by token through the KV cache, average the next-token NLL per sample, exponentiate per sample, and
average over samples. The KV-cache size is read per sample right after its own last answer token.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from paperzoo_dynamic_llava.data import Example, collate_prompts
from paperzoo_dynamic_llava.measure import count_flops, eq13_prefill_flops
from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration, GatedKVCache


@torch.no_grad()
def qa_accuracy(
    model: DynamicLlavaForConditionalGeneration, examples: list[Example], tokenizer: Any, *, selection: str,
    batch_size: int, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Exact match of the first generated word against the single-word answer, overall and per type."""
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc=f"QA ({selection})", unit="batch", leave=False, dynamic_ncols=True):
        chunk = examples[start : start + batch_size]
        batch = collate_prompts(chunk, tokenizer.pad_token_id)
        out = model.sparse_generate(**batch, max_new_tokens=1, selection=selection, seed=seed + start,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        for ex, seq in zip(chunk, out["sequences"]):
            pred = tokenizer.convert_ids_to_tokens(int(seq[0]))
            correct[ex.qtype] = correct.get(ex.qtype, 0) + int(pred == ex.answer)
            total[ex.qtype] = total.get(ex.qtype, 0) + 1
    result = {f"accuracy_{k}": 100.0 * correct[k] / total[k] for k in sorted(total)}
    result["accuracy"] = 100.0 * sum(correct.values()) / max(sum(total.values()), 1)
    return result


@torch.no_grad()
def teacher_forced_answers(
    model: DynamicLlavaForConditionalGeneration, examples: list[Example], *, selection: str, batch_size: int,
    pad_id: int = 0, seed: int = 0, content_ids: set[int] | None = None,
) -> dict[str, float]:  # fmt: skip
    """PPL of the reference answers decoded through the gated KV cache, the cache each sample ends with, and
    the teacher-forced accuracy on ``content_ids`` (the description's colour, pattern, shape and place words)."""
    ppls, kv_bytes, cached_last, kept_ratio = [], [], [], []
    content_hits, content_total = 0, 0
    batches = range(0, len(examples), batch_size)
    for start in tqdm(
        batches, desc=f"descriptions ({selection})", unit="batch", leave=False, dynamic_ncols=True
    ):
        chunk = examples[start : start + batch_size]
        batch = collate_prompts(chunk, pad_id)
        b = len(chunk)
        answers = [torch.tensor(e.answer_ids) for e in chunk]
        lengths = torch.tensor([len(a) for a in answers])
        steps = int(lengths.max())
        gold = torch.full((b, steps), pad_id, dtype=torch.long)
        for i, a in enumerate(answers):
            gold[i, : len(a)] = a
        cache = GatedKVCache(len(model.language_model.layers))
        cache.next_position = batch["attention_mask"].sum(1).long()
        rand = model.make_random_selection(b, seed + start, gold.device) if selection == "random" else None
        out = model(**batch, selection=selection, execution="prune", cache=cache, random_selection=rand)
        last = (out.real.long() * torch.arange(out.real.shape[1])).argmax(1)
        logits = out.logits[torch.arange(b), last]
        nll = torch.zeros(b)
        snapshot = cache.cached_tokens().clone()  # for one-token answers: nothing is decoded
        kept = torch.zeros(b)
        is_content = torch.zeros_like(gold, dtype=torch.bool)
        if content_ids:
            is_content = torch.isin(gold, torch.tensor(sorted(content_ids)))
        for t in range(steps):
            nll += F.cross_entropy(logits.float(), gold[:, t], reduction="none") * (t < lengths)
            counted = is_content[:, t] & (t < lengths)
            content_hits += int(((logits.argmax(-1) == gold[:, t]) & counted).sum())
            content_total += int(counted.sum())
            if t == steps - 1:
                break
            logits, keep = model.decode_step(gold[:, t], cache, selection, rand)
            kept += keep.float() * (t < lengths - 1)
            ended = (
                t + 1
            ) == lengths - 1  # the cache a sample ends with holds every answer token but the last
            snapshot[:, ended] = cache.cached_tokens()[:, ended]
        k0, v0 = cache.layers[0].keys, cache.layers[0].values
        per_token = k0.shape[1] * (k0.shape[3] + v0.shape[3]) * k0.element_size()
        for i in range(b):
            ppls.append(math.exp(float(nll[i]) / int(lengths[i])))
            kv_bytes.append(float(snapshot[:, i].sum()) * per_token)
            cached_last.append(float(snapshot[-1, i]))
            kept_ratio.append(float(kept[i]) / max(int(lengths[i]) - 1, 1))
    n = max(len(ppls), 1)
    return {
        "ppl": sum(ppls) / n,
        "kv_cache_kb": sum(kv_bytes) / n / 1024,
        "cached_tokens_last_layer": sum(cached_last) / n,
        "answer_keep_ratio": sum(kept_ratio) / n,
        "desc_word_accuracy": 100.0 * content_hits / max(content_total, 1),
    }


def content_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the description words that carry visual content: colours, patterns, shapes, sides."""
    from paperzoo_shared.data.synthetic.render import COLOUR_NAMES, PATTERNS, SHAPE_CLASSES

    words = [*COLOUR_NAMES, *PATTERNS, *SHAPE_CLASSES, "top", "bottom", "left", "right"]
    return {int(i) for i in tokenizer.convert_tokens_to_ids(words)}


def prefill_flops(model: DynamicLlavaForConditionalGeneration, example: Example, *, selection: str) -> float:
    """Counted FLOPs (``torch.utils.flop_counter``) of one prefill: vision tower, projector, predictors, decoder."""
    batch = collate_prompts([example])
    return count_flops(lambda: model(**batch, selection=selection, execution="prune"))


def eq13_for_row(model: DynamicLlavaForConditionalGeneration, selection: str) -> float:
    """Paper Eq. 13 (image tokens only) for this model's shapes and the row's vision keep rate."""
    cfg = model.config.text_config
    n = model.num_image_tokens
    l = model.sparse.sparse_layer
    kept = n if selection == "dense" else max(int(n * model.sparse.vision_keep_rate), 1)
    tokens = [n] * l + [kept] * (cfg.num_hidden_layers - l)
    return eq13_prefill_flops(tokens, cfg.hidden_size)


def evaluate_row(
    model: DynamicLlavaForConditionalGeneration, qa: list[Example], descriptions: list[Example], tokenizer: Any,
    *, selection: str, batch_size: int, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Every column of the miniature table for one row."""
    model.eval()
    start = time.perf_counter()
    metrics = qa_accuracy(model, qa, tokenizer, selection=selection, batch_size=batch_size, seed=seed)
    metrics["qa_wall_s"] = time.perf_counter() - start
    if descriptions:
        content = content_token_ids(tokenizer)
        tf = teacher_forced_answers(model, descriptions, selection=selection, batch_size=batch_size,
                                    pad_id=tokenizer.pad_token_id, seed=seed, content_ids=content)  # fmt: skip
        metrics.update({"desc_ppl": tf["ppl"], "kv_cache_kb": tf["kv_cache_kb"],
                        "desc_word_accuracy": tf["desc_word_accuracy"],
                        "cached_tokens_last_layer": tf["cached_tokens_last_layer"],
                        "answer_keep_ratio": tf["answer_keep_ratio"]})  # fmt: skip
    metrics["prefill_mflops"] = prefill_flops(model, qa[0], selection=selection) / 1e6
    metrics["eq13_mflops"] = eq13_for_row(model, selection) / 1e6
    return metrics
