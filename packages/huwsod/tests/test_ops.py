"""ROILoopPool against an independent brute-force loop, box coding, sliding windows, components."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from paperzoo_huwsod.ops import (
    BoxCoder,
    component_boxes,
    roi_loop_pool,
    roi_loop_pool_reference,
    roi_loop_pool_vectorized,
    sliding_window_boxes,
)

from paperzoo_shared.kernels import use

F32 = np.float32


def _c_round(value: float) -> int:
    """C ``round``: half away from zero."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def brute_force_loop_pool(feat: np.ndarray, rois: np.ndarray, scale: float, pooled: int, ratio: float):
    """Transcription of the CUDA kernel's semantics, written independently with Python loops and numpy float32."""
    num, channels, height, width = feat.shape
    out = np.zeros((3, len(rois), channels, pooled, pooled), dtype=np.float32)
    s, r = F32(scale), F32(ratio)
    max_x, max_y = F32(1.0 * width / scale), F32(1.0 * height / scale)

    def clip(v, hi):
        return min(max(v, F32(0)), hi)

    for n, roi in enumerate(rois):
        b = int(roi[0])
        x1, y1, x2, y2 = (F32(v) for v in roi[1:])
        w, h = x2 - x1, y2 - y1
        irw, irh = w - w / r, h - h / r
        orw, orh = w * r - w, h * r - h
        inner = [clip(x1 + irw / F32(2), max_x), clip(y1 + irh / F32(2), max_y),
                 clip(x2 - irw / F32(2), max_x), clip(y2 - irh / F32(2), max_y)]  # fmt: skip
        outer = [clip(x1 - orw / F32(2), max_x), clip(y1 - orh / F32(2), max_y),
                 clip(x2 + orw / F32(2), max_x), clip(y2 + orh / F32(2), max_y)]  # fmt: skip
        box_cells = [_c_round(float(v * s)) for v in (x1, y1, x2, y2)]
        inner_cells = [_c_round(float(v * s)) for v in inner]
        outer_cells = [_c_round(float(v * s)) for v in outer]
        for part, region, hole in (
            (0, box_cells, None),
            (1, box_cells, inner_cells),
            (2, outer_cells, box_cells),
        ):
            sw, sh, ew, eh = region
            roi_w, roi_h = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
            bin_w, bin_h = F32(roi_w) / F32(pooled), F32(roi_h) / F32(pooled)
            for ph in range(pooled):
                for pw in range(pooled):
                    hs = min(max(int(np.floor(F32(ph) * bin_h)) + sh, 0), height)
                    he = min(max(int(np.ceil(F32(ph + 1) * bin_h)) + sh, 0), height)
                    ws = min(max(int(np.floor(F32(pw) * bin_w)) + sw, 0), width)
                    we = min(max(int(np.ceil(F32(pw + 1) * bin_w)) + sw, 0), width)
                    for c in range(channels):
                        best = 0.0
                        for yy in range(hs, he):
                            for xx in range(ws, we):
                                if hole is not None and hole[1] < yy < hole[3] and hole[0] < xx < hole[2]:
                                    continue
                                best = max(best, float(feat[b, c, yy, xx]))
                        out[part, n, c, ph, pw] = best
    return out


def _random_rois(gen: torch.Generator, count: int, num: int, width: float, height: float) -> torch.Tensor:
    x1 = torch.rand(count, generator=gen) * width
    y1 = torch.rand(count, generator=gen) * height
    w = torch.rand(count, generator=gen) * width * 0.8 + 0.5
    h = torch.rand(count, generator=gen) * height * 0.8 + 0.5
    rois = torch.stack(
        [
            torch.randint(0, num, (count,), generator=gen).float(),
            x1,
            y1,
            (x1 + w).clamp(max=width),
            (y1 + h).clamp(max=height),
        ],
        dim=1,
    )
    # exact half-cell coordinates exercise C's round-half-away-from-zero
    rois[:4, 1:] = torch.tensor(
        [[4.0, 12.0, 20.0, 36.0], [0.0, 0.0, width, height], [3.5, 3.5, 3.5, 3.5], [12.0, 4.0, 28.0, 44.0]]
    )
    return rois


@pytest.mark.parametrize("pooled", [1, 3, 7])
def test_roi_loop_pool_matches_brute_force(pooled):
    gen = torch.Generator().manual_seed(pooled)
    feats = torch.randn(2, 3, 7, 9, generator=gen)  # negative values: the kernel's max starts at 0
    rois = _random_rois(gen, 14, 2, 9 * 8.0, 7 * 8.0)
    expected = brute_force_loop_pool(feats.numpy(), rois.numpy(), 0.125, pooled, 1.8)
    for impl in (roi_loop_pool_reference, roi_loop_pool_vectorized):
        got = impl(feats, rois, 0.125, pooled, 1.8)
        for part in range(3):
            np.testing.assert_array_equal(
                got[part].numpy(), expected[part], err_msg=f"{impl.__name__} part {part}"
            )


def test_roi_loop_pool_parts_differ_and_context_excludes_box():
    feats = torch.zeros(1, 1, 10, 10)
    feats[0, 0, 4:6, 4:6] = 5.0  # inside the box's strict interior
    feats[0, 0, 0, 0] = 1.0  # outside the box, inside the outer box
    rois = torch.tensor([[0.0, 16.0, 16.0, 56.0, 56.0]])  # cells 2..7
    box, frame, context = roi_loop_pool_vectorized(feats, rois, 0.125, 1, 1.8)
    assert box.item() == 5.0
    assert frame.item() == 0.0  # the peak is strictly inside the inner box
    assert context.item() == 1.0


def test_roi_loop_pool_gradients_match_reference():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(2, 4, 6, 8, generator=gen)
    rois = _random_rois(gen, 10, 2, 64.0, 48.0)
    grads = []
    for impl in (roi_loop_pool_reference, roi_loop_pool_vectorized):
        feats = base.clone().requires_grad_(True)
        outs = impl(feats, rois, 0.125, 3, 1.8)
        weights = [
            torch.rand(o.shape, generator=torch.Generator().manual_seed(k)) for k, o in enumerate(outs)
        ]
        (grad,) = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), feats)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_kernel_op_dispatch_and_empty_input(monkeypatch):
    # `auto` is the default under test; a PAPERZOO_KERNELS set in the caller's shell would override it
    for name in ("PAPERZOO_KERNELS", "PAPERZOO_KERNELS_HUWSOD_ROI_LOOP_POOL"):
        monkeypatch.delenv(name, raising=False)
    feats = torch.rand(1, 2, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 31.0, 31.0]])
    assert roi_loop_pool.select(feats, rois, 0.125, 2)[0] == "vectorized"
    with use("torch", op="huwsod_roi_loop_pool"):
        assert roi_loop_pool.select(feats, rois, 0.125, 2)[0] == "torch"
        ref = roi_loop_pool(feats, rois, 0.125, 2)
    for a, b in zip(ref, roi_loop_pool(feats, rois, 0.125, 2)):
        torch.testing.assert_close(a, b)
    empty = roi_loop_pool(feats, torch.zeros(0, 5), 0.125, 2)
    assert all(t.shape == (0, 2, 2, 2) for t in empty)
    with pytest.raises(ValueError, match="batch indices"):
        roi_loop_pool(feats, torch.tensor([[3.0, 0, 0, 8, 8]]), 0.125, 2)


def test_box_coder_round_trip_and_known_deltas():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    dst = torch.tensor([[5.0, 10.0, 25.0, 30.0]])
    deltas = coder.get_deltas(src, dst)
    # centres (5, 10) -> (15, 20); sizes (10, 20) -> (20, 20)
    torch.testing.assert_close(
        deltas, torch.tensor([[10.0 * 10 / 10, 10.0 * 10 / 20, 5 * math.log(2.0), 0.0]])
    )
    torch.testing.assert_close(coder.apply_deltas(deltas, src), dst)


def test_sliding_windows_inside_image_and_include_whole_image():
    boxes = sliding_window_boxes(100, 120, [30.0, 60.0], [1.0], 0.5, 10.0)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 120).all() and (boxes[:, 3] <= 100).all()
    assert any(torch.equal(b, torch.tensor([0.0, 0.0, 120.0, 100.0])) for b in boxes)
    assert ((boxes[:, 2] - boxes[:, 0]) > 10).all()


def test_component_boxes_eight_connectivity_and_min_size():
    mask = np.zeros((8, 8), dtype=bool)
    mask[1, 1] = mask[2, 2] = True  # diagonal neighbours: one component with 8-connectivity
    mask[5:8, 4:8] = True  # 12 cells
    boxes = component_boxes(mask, min_component=3)
    assert boxes == [(5, 4, 8, 8)]  # the 2-cell component is below min(3, 12)
    assert sorted(component_boxes(mask, min_component=1)) == [(1, 1, 3, 3), (5, 4, 8, 8)]
    assert component_boxes(np.zeros((4, 4), dtype=bool), 1) == []


def test_vectorized_per_map_tables_equal_the_shared_table():
    gen = torch.Generator().manual_seed(3)
    feats = torch.rand(3, 4, 9, 11, generator=gen)
    rois = _random_rois(gen, 25, 3, 88.0, 72.0)
    shared = roi_loop_pool_vectorized(feats, rois, 0.125, 3, 1.8)
    per_map = roi_loop_pool_vectorized(feats, rois, 0.125, 3, 1.8, table_budget=0)
    for a, b in zip(shared, per_map):
        torch.testing.assert_close(a, b)
