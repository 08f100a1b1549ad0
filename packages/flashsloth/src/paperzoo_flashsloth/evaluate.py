"""Accuracy of the miniature and the efficiency harness (tokens, FLOPs, time to first token, memory, decoding).

Efficiency quantities (FlashSloth Sec. 4: "TFLOPs, GPU memory usage, response time, throughput"; the official
repository has no measuring script, so the protocol here is ours and is stated in each function):

* visual tokens: the LLM positions an image occupies, plus the query tokens (81 + 9 = 90; HD 405 + 9 = 414).
* prefill FLOPs, formula: the per-layer estimate ``32 N C^2 + 4 N^2 C`` of Dynamic-LLaVA (Eq. 13) over the N
  visual(+query) tokens of the LLM, text tokens, vision tower and LM head excluded.
* prefill FLOPs, exact: ``torch.utils.flop_counter.FlopCounterMode`` over one whole prefill forward (vision tower,
  pooling, projector, LLM over every token, embedded query module), batch 1, logits of the last position only.
* time to first token: wall time of one prefill forward + argmax (CUDA events on GPU), median over repeats.
* peak memory: ``max_memory_allocated`` during the prefill minus the memory allocated before it (weights), with
  the peak statistics reset *before* the measured region (the Dynamic-LLaVA bench reset them right before reading).
* decoding throughput: generated tokens per second over ``new_tokens`` cached decoding steps after the prefill.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from paperzoo_flashsloth.configuration import FlashSlothConfig


@torch.no_grad()
def evaluate_accuracy(
    model: Any, dataset: Any, *, batch_size: int = 64, max_new_tokens: int = 1
) -> dict[str, float]:
    """Greedy answers (KV cache) vs the reference answer's first token; overall and per question type (%)."""
    from paperzoo_flashsloth.data import FlashSlothCollator

    model.eval()
    pad = model.config.text_config.pad_token_id or 0
    collate = FlashSlothCollator(pad, padding_side="left")
    correct: list[bool] = []
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        batch = collate([dataset[i] for i in idx])
        inputs = {
            k: batch[k]
            for k in ("input_ids", "attention_mask", "pixel_values", "question_spans", "image_features")
            if k in batch
        }
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        answers = torch.tensor([dataset.answers[i] for i in idx])
        correct += (out[:, batch["input_ids"].shape[1]].cpu() == answers).tolist()
    per_type: dict[str, list[bool]] = defaultdict(list)
    for ok, qtype in zip(correct, dataset.qtypes):
        per_type[qtype].append(ok)
    result = {"accuracy": 100.0 * sum(correct) / len(correct)}
    for qtype, oks in sorted(per_type.items()):
        result[f"accuracy_{qtype}"] = 100.0 * sum(oks) / len(oks)
    return result


# ----------------------------------------------------------------------------------------------------
# Token arithmetic and FLOPs
# ----------------------------------------------------------------------------------------------------


def token_counts(config: FlashSlothConfig) -> dict[str, int]:
    """Visual tokens per image, query tokens, their sum, and the raw features the embedded query module reads."""
    return {
        "image_tokens": config.image_seq_length,
        "query_tokens": config.num_query_tokens,
        "visual_tokens": config.vision_tokens_per_query_block,
        "embq_raw_features": config.views_per_image * config.patches_per_view
        if config.use_embedded_query
        else 0,
    }


def formula_prefill_flops(num_tokens: int, hidden_size: int, num_layers: int) -> float:
    """Dynamic-LLaVA Eq. 13 over ``num_tokens`` tokens: ``L * (32 N C^2 + 4 N^2 C)``."""
    n, c = float(num_tokens), float(hidden_size)
    return num_layers * (32 * n * c * c + 4 * n * n * c)


def count_flops(fn: Callable[[], Any]) -> int:
    """Exact FLOPs of ``fn()`` (matrix multiplications, convolutions, attention) via ``FlopCounterMode``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def prefill_flops_by_parts(model: Any, *, prefix_tokens: int = 32, question_tokens: int = 32) -> int:
    """Exact prefill FLOPs of one prompt (batch 1), counted part by part on inputs of the right shapes: the vision
    tower, pooling + projector, the LLM over the whole sequence (last logits only) and the embedded query module.
    Every part is shape-only, so this runs on the ``meta`` device (a 3.2B model without its weights); the
    placeholder assembly between the parts is a gather and has no FLOPs. Equals :func:`count_flops` of a real
    prefill forward (tested on the tiny model)."""
    config = model.config
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    size = config.vision_config.image_size
    views = config.views_per_image
    shape = (1, views, 3, size, size) if config.image_hd else (1, 3, size, size)
    seq = prefix_tokens + config.image_seq_length + question_tokens + config.num_query_tokens + 2
    hidden = config.text_config.hidden_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        raw = model.vision_features(torch.zeros(shape, device=device, dtype=dtype))
        model.compress(raw)
        embeds = torch.zeros(1, seq, hidden, device=device, dtype=dtype)
        model.language_model(inputs_embeds=embeds, logits_to_keep=1)
        if model.embedded_query is not None:
            q = config.num_query_tokens
            model.embedded_query(
                torch.zeros(1, q, hidden, device=device, dtype=dtype),
                torch.zeros(1, question_tokens, hidden, device=device, dtype=dtype),
                torch.ones(1, question_tokens, device=device, dtype=torch.bool),
                raw,
                torch.ones(1, raw.shape[1], device=device, dtype=torch.bool),
            )
    return int(counter.get_total_flops())


def dummy_inputs(
    config: FlashSlothConfig,
    batch_size: int,
    *,
    question_tokens: int = 32,
    prefix_tokens: int = 32,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A synthetic prompt per sample: ``prefix`` text (system prompt + ``USER:``), one image, a question of
    ``question_tokens`` tokens, ``<learnable>`` (when the model has queries) and ``ASSISTANT:`` (2 tokens)."""
    gen = torch.Generator().manual_seed(seed)
    vocab = config.text_config.vocab_size
    special = {config.image_token_id, config.learnable_token_id}
    low = 10

    def text(n: int) -> list[int]:
        ids = torch.randint(low, vocab, (n,), generator=gen).tolist()
        return [t if t not in special else low for t in ids]

    rows, spans = [], []
    for _ in range(batch_size):
        ids = text(prefix_tokens) + [config.image_token_id]
        q_start = len(ids)
        ids += text(question_tokens)
        spans.append([[q_start, len(ids)]])
        if config.num_query_tokens:
            ids.append(config.learnable_token_id)
        ids += text(2)
        rows.append(ids)
    input_ids = torch.tensor(rows, device=device)
    size = config.vision_config.image_size
    shape = (
        (batch_size, config.views_per_image, 3, size, size)
        if config.image_hd
        else (batch_size, 3, size, size)
    )
    pixel_values = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    out = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": pixel_values,
    }
    if config.num_query_tokens:
        out["question_spans"] = torch.tensor(spans, device=device)
    return out


# ----------------------------------------------------------------------------------------------------
# Timing and memory
# ----------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], *, repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Wall times of ``fn()`` in ms (CUDA events on GPU, ``perf_counter`` on CPU), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak CUDA memory of ``fn()`` above what was allocated before (weights); ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)  # reset before the measured region
    base = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def first_token_fn(model: Any, inputs: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    """The work of time-to-first-token: vision encoding, assembly, one prefill forward, argmax."""

    @torch.no_grad()
    def run() -> torch.Tensor:
        out = model(**inputs, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].argmax(-1)

    return run


@torch.no_grad()
def decode_throughput(
    model: Any, inputs: dict[str, torch.Tensor], *, new_tokens: int, device: torch.device
) -> dict[str, float]:
    """Prefill once into a KV cache, then time ``new_tokens`` single-token steps (greedy, no early stop)."""
    assembled, ctx = model.prepare_multimodal(
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs.get("pixel_values"),
        question_spans=inputs.get("question_spans"),
        padding_side="left",
    )
    cache = model.new_cache()
    mask, positions = assembled.attention_mask, assembled.position_ids
    out = model._run_language_model(
        assembled.inputs_embeds, embq=ctx, attention_mask=mask, position_ids=positions, cache=cache,
        use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    token = out.logits[:, -1].argmax(-1)
    embed = model.get_input_embeddings()
    pos = positions[:, -1:]
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(new_tokens):
        pos = pos + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model._run_language_model(
            embed(token)[:, None], embq=None, attention_mask=mask, position_ids=pos, cache=cache,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        token = out.logits[:, -1].argmax(-1)
    _sync(device)
    seconds = time.perf_counter() - t0
    batch = token.shape[0]
    return {
        "decode_tokens_per_s": batch * new_tokens / seconds,
        "decode_ms_per_step": 1000.0 * seconds / new_tokens,
    }


def efficiency_row(
    model: Any,
    *,
    batch_sizes: tuple[int, ...] = (1, 8),
    question_tokens: int = 32,
    prefix_tokens: int = 32,
    repeats: int = 10,
    warmup: int = 3,
    new_tokens: int = 32,
    count_exact_flops: bool = True,
) -> dict[str, Any]:
    """Every efficiency quantity of one model variant (see the module docstring)."""
    config = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    row: dict[str, Any] = dict(token_counts(config))
    text = config.text_config
    row["prefill_tflops_formula"] = (
        formula_prefill_flops(row["visual_tokens"], text.hidden_size, text.num_hidden_layers) / 1e12
    )
    if count_exact_flops:
        one = dummy_inputs(
            config,
            1,
            question_tokens=question_tokens,
            prefix_tokens=prefix_tokens,
            device=device,
            dtype=dtype,
        )
        row["prefill_tflops_exact"] = count_flops(first_token_fn(model, one)) / 1e12
    for bs in batch_sizes:
        inputs = dummy_inputs(
            config,
            bs,
            question_tokens=question_tokens,
            prefix_tokens=prefix_tokens,
            device=device,
            dtype=dtype,
        )
        run = first_token_fn(model, inputs)
        times = time_ms(run, repeats=repeats, warmup=warmup, device=device)
        row[f"ttft_ms_bs{bs}"] = statistics.median(times)
        row[f"ttft_ms_bs{bs}_all"] = times
        memory = peak_memory_bytes(run, device)
        row[f"prefill_peak_mem_gb_bs{bs}"] = None if memory is None else memory / 2**30
        if new_tokens:
            for key, value in decode_throughput(model, inputs, new_tokens=new_tokens, device=device).items():
                row[f"{key}_bs{bs}"] = value
    return row
