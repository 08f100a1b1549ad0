"""Eq. 13 against the paper's reported TFLOPs (hand-checked: 32 x (32*576*4096^2 + 4*576^2*4096) = 10.07e12)."""

from __future__ import annotations

import pytest
import torch
from paperzoo_dynamic_llava.measure import (
    count_flops,
    eq13_layer_flops,
    eq13_prefill_flops,
    eq13_schedule,
    paper_tflops,
)


def test_eq13_reproduces_paper_table_10():
    assert paper_tflops("7b") == pytest.approx(10.07, abs=0.005)
    assert paper_tflops("7b", keep_rate=0.2, prune_layer=2) == pytest.approx(2.49, abs=0.005)
    assert paper_tflops("13b") == pytest.approx(19.60, abs=0.005)
    assert paper_tflops("13b", keep_rate=0.2, prune_layer=2) == pytest.approx(4.66, abs=0.005)
    assert paper_tflops("7b", keep_rate=0.25, prune_layer=3) == pytest.approx(
        3.20, abs=0.005
    )  # FastV k=3 r=0.75


def test_eq13_hand_computed_layer():
    assert eq13_layer_flops(576, 4096) == 32 * 576 * 4096**2 + 4 * 576**2 * 4096 == 314_673_463_296
    assert eq13_schedule(4, 576, keep_rate=0.2, prune_layer=2) == [576, 576, 115, 115]
    assert eq13_prefill_flops([10, 2], 8, batch=3) == 3 * (
        32 * 10 * 64 + 4 * 100 * 8 + 32 * 2 * 64 + 4 * 4 * 8
    )


def test_flop_counter_counts_a_matmul_exactly():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    assert count_flops(lambda: a @ b) == 2 * 5 * 7 * 3


def test_pruned_prefill_counts_fewer_flops(tiny):
    model = tiny.make_model()
    batch = tiny.make_prompts([28], seed=0)
    dense = count_flops(lambda: model(**batch, selection="dense", execution="prune"))
    sparse = count_flops(lambda: model(**batch, selection="dynamic", execution="prune"))
    assert sparse < dense


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_rate": 1.5}, "keep_rate 1.5"),
        ({"keep_rate": float("nan")}, "keep_rate nan"),
        ({"keep_rate": 0.0}, "keep_rate 0.0"),
        ({"prune_layer": 32}, "prune_layer 32: the model has 32 decoder layers"),
        ({"prune_layer": -1}, "prune_layer -1"),
    ],
)
def test_eq13_schedule_rejects_impossible_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        eq13_schedule(32, **kwargs)
    assert eq13_schedule(32, keep_rate=1.0, prune_layer=31) == [576] * 32
