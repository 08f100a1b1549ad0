"""Tensor ops of HUWSOD: ROILoopPool (box / frame / context ROI max pooling), box coding, proposal helpers.

ROILoopPool
-----------
The official op (``WSL/wsl/layers/csrc/ROILoopPool``) exists only as a CUDA kernel; its CPU kernel
returns plain RoIPool for N boxes instead of the 3N (box, frame, context) outputs, so the official code
cannot run HUWSOD on a CPU. :data:`roi_loop_pool` reimplements the CUDA semantics exactly:

* coordinates: a box ``(x1, y1, x2, y2)`` in input pixels is mapped to feature cells with
  ``round(x * spatial_scale)`` (round half away from zero, as C ``round``), all arithmetic in float32;
* **box**: Caffe RoIPool: ``roi_w = max(end - start + 1, 1)``, bin ``pw`` covers cells
  ``[floor(pw * roi_w / P), ceil((pw + 1) * roi_w / P)) + start`` clipped to the map;
* **frame**: the same bins, skipping cells *strictly* inside the inner box (the box shrunk by
  ``context_ratio`` about its centre, clipped to the image); cells on the inner box's rounded border count;
* **context**: bins of the outer box (enlarged by ``context_ratio``, clipped to the image), skipping
  cells strictly inside the box;
* every max starts at 0 (the kernel assumes non-negative post-ReLU features), so empty bins give 0 and
  negative inputs are clamped to 0.

Three implementations are registered on a :class:`paperzoo_shared.kernels.KernelOp` named
``huwsod_roi_loop_pool``: the reference (a readable loop over boxes and bins), ``triton`` (the Triton
kernel of :mod:`paperzoo_shared.kernels.roi_loop_pool` fed with this module's geometry; ``auto`` picks it
for CUDA tensors, and CPU tensors run it through Triton's interpreter when it is named) and
``vectorized`` (one gather per chunk of boxes, any device), which ``auto`` selects otherwise. The
reference and ``vectorized`` are differentiable through autograd, so ties share the gradient; the Triton
kernel sends it to the first maximum only, as the CUDA kernel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from paperzoo_shared.kernels import KernelOp, triton_available, triton_on_cuda, triton_supports

# ----------------------------------------------------------------------------------------------------
# ROILoopPool
# ----------------------------------------------------------------------------------------------------


def _check_pool_inputs(features: Tensor, rois: Tensor, output_size: int, context_ratio: float) -> None:
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"rois must be (R, 5) = (batch_index, x1, y1, x2, y2), got shape {tuple(rois.shape)}"
        )
    if output_size < 1:
        raise ValueError(f"output_size must be >= 1, got {output_size}")
    if context_ratio <= 1:
        raise ValueError(f"context_ratio must be > 1, got {context_ratio}")
    if rois.numel() and (rois[:, 0].min() < 0 or rois[:, 0].max() >= features.shape[0]):
        raise ValueError(
            f"rois batch indices must be in [0, {features.shape[0]}), got range "
            f"[{int(rois[:, 0].min())}, {int(rois[:, 0].max())}]"
        )


def _round_half_away(values: Tensor) -> Tensor:
    """C ``round`` (half away from zero) of float32 values, as integers."""
    rounded = torch.round(values)  # half to even
    frac = values - torch.trunc(values)
    halves = frac.abs() == 0.5
    rounded = torch.where(halves, torch.trunc(values) + torch.sign(values), rounded)
    return rounded.to(torch.int64)


def loop_pool_geometry(rois: Tensor, spatial_scale: float, height: int, width: int, context_ratio: float):
    """The integer cell rectangles of ROILoopPool for every box (float32 arithmetic, as the CUDA kernel).

    Returns a dict of int64 tensors of shape (R,): ``box`` = (x1, y1, x2, y2) rounded cells of the box,
    ``inner`` = those of the inner box, ``outer`` = those of the outer box (each a (R, 4) tensor).
    """
    boxes = rois[:, 1:].to(torch.float32)
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    ratio = torch.tensor(context_ratio, dtype=torch.float32)
    x1, y1, x2, y2 = boxes.unbind(1)
    w, h = x2 - x1, y2 - y1
    inner_res_w, inner_res_h = w - w / ratio, h - h / ratio
    outer_res_w, outer_res_h = w * ratio - w, h * ratio - h
    max_x = torch.tensor(1.0 * width / spatial_scale, dtype=torch.float32)
    max_y = torch.tensor(1.0 * height / spatial_scale, dtype=torch.float32)
    two = torch.tensor(2.0, dtype=torch.float32)

    def clip(v: Tensor, hi: Tensor) -> Tensor:
        return torch.minimum(torch.clamp(v, min=0.0), hi)

    inner = torch.stack(
        [
            clip(x1 + inner_res_w / two, max_x),
            clip(y1 + inner_res_h / two, max_y),
            clip(x2 - inner_res_w / two, max_x),
            clip(y2 - inner_res_h / two, max_y),
        ],
        dim=1,
    )
    outer = torch.stack(
        [
            clip(x1 - outer_res_w / two, max_x),
            clip(y1 - outer_res_h / two, max_y),
            clip(x2 + outer_res_w / two, max_x),
            clip(y2 + outer_res_h / two, max_y),
        ],
        dim=1,
    )
    return {
        "box": _round_half_away(boxes * scale),
        "inner": _round_half_away(inner * scale),
        "outer": _round_half_away(outer * scale),
    }


def _bins(start: Tensor, end: Tensor, size: int, pooled: int) -> tuple[Tensor, Tensor]:
    """Per box, the [lo, hi) cell range of each of the ``pooled`` bins along one axis, clipped to [0, size]."""
    length = torch.clamp(end - start + 1, min=1).to(torch.float32)
    bin_size = length / torch.tensor(float(pooled), dtype=torch.float32)
    p = torch.arange(pooled, dtype=torch.float32, device=start.device)
    lo = torch.floor(p[None, :] * bin_size[:, None]).to(torch.int64) + start[:, None]
    hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]).to(torch.int64) + start[:, None]
    return lo.clamp(0, size), hi.clamp(0, size)


def roi_loop_pool_reference(
    features: Tensor, rois: Tensor, spatial_scale: float, output_size: int, context_ratio: float = 1.8
) -> tuple[Tensor, Tensor, Tensor]:
    """Readable ROILoopPool: a loop over boxes and bins. Returns (box, frame, context), each (R, C, P, P)."""
    _check_pool_inputs(features, rois, output_size, context_ratio)
    num, channels, height, width = features.shape
    pooled = output_size
    feats = features.clamp(min=0)  # every max starts at 0 in the CUDA kernel
    geometry = loop_pool_geometry(rois.detach().cpu(), spatial_scale, height, width, context_ratio)
    outputs = {name: [] for name in ("box", "frame", "context")}
    zero = feats.new_zeros(channels)
    for r in range(rois.shape[0]):
        b = int(rois[r, 0])
        box = geometry["box"][r].tolist()
        inner = geometry["inner"][r].tolist()
        outer = geometry["outer"][r].tolist()
        for name, region, hole in (("box", box, None), ("frame", box, inner), ("context", outer, box)):
            rs_w, rs_h, re_w, re_h = region
            hs, he = _bins(torch.tensor([rs_h]), torch.tensor([re_h]), height, pooled)
            ws, we = _bins(torch.tensor([rs_w]), torch.tensor([re_w]), width, pooled)
            cells = []
            for ph in range(pooled):
                for pw in range(pooled):
                    h0, h1, w0, w1 = int(hs[0, ph]), int(he[0, ph]), int(ws[0, pw]), int(we[0, pw])
                    if h1 <= h0 or w1 <= w0:
                        cells.append(zero)
                        continue
                    patch = feats[b, :, h0:h1, w0:w1]
                    if hole is not None:
                        rows = torch.arange(h0, h1)
                        cols = torch.arange(w0, w1)
                        inside_h = (rows > hole[1]) & (rows < hole[3])
                        inside_w = (cols > hole[0]) & (cols < hole[2])
                        keep = ~(inside_h[:, None] & inside_w[None, :])
                        patch = patch * keep.to(patch.dtype)
                    cells.append(patch.amax(dim=(1, 2)))
            outputs[name].append(torch.stack(cells, dim=1).view(channels, pooled, pooled))
    empty = feats.new_zeros((0, channels, pooled, pooled))
    return tuple(torch.stack(outputs[n]) if outputs[n] else empty for n in ("box", "frame", "context"))


def _window_max_tables(features: Tensor, max_h: int, max_w: int) -> Tensor:
    """Rows of ``(a, b, n, y, x)``: the max of ``features[n, :, y:y+a, x:x+b]`` for a <= max_h, b <= max_w.

    Running maxima (windows reaching past the bottom/right border are never queried), stored channel-last
    and flattened to (max_h * max_w * N * H * W + 1, C); the last row is a zero sentinel for empty rectangles.
    """
    num, channels, height, width = features.shape
    cl = features.permute(0, 2, 3, 1)  # (N, H, W, C)
    if features.requires_grad:  # out-of-place (autograd-friendly) construction
        columns = [cl]
        for b in range(1, max_w):
            columns.append(torch.maximum(columns[-1], F.pad(cl[:, :, b:], (0, 0, 0, b))))
        rows = [torch.stack(columns)]  # (max_w, N, H, W, C)
        for a in range(1, max_h):
            rows.append(torch.maximum(rows[-1], F.pad(rows[0][:, :, a:], (0, 0, 0, 0, 0, a))))
        flat = torch.stack(rows).reshape(-1, channels)
        return torch.cat([flat, flat.new_zeros((1, channels))])
    # cells of windows reaching past the border are left unset: no query ever reads them
    flat = cl.new_empty((max_h * max_w * num * height * width + 1, channels))
    flat[-1] = 0.0
    table = flat[:-1].view(max_h, max_w, num, height, width, channels)
    table[0, 0] = cl
    for b in range(1, max_w):  # window b+1 = max(window b at x, column x+b)
        table[0, b, :, :, : width - b] = torch.maximum(table[0, b - 1, :, :, : width - b], cl[:, :, b:])
    for a in range(1, max_h):
        table[a, :, :, : height - a] = torch.maximum(table[a - 1, :, :, : height - a], table[0, :, :, a:])
    return flat


def _rect_rows(y0: Tensor, y1: Tensor, x0: Tensor, x1: Tensor, n: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Table row of each rectangle [y0, y1) x [x0, x1) of image n (the sentinel when empty)."""
    max_h, max_w, num, height, width = shape
    a, b = y1 - y0, x1 - x0
    empty = (a <= 0) | (b <= 0)
    plane = num * height * width
    row = ((a - 1).clamp(min=0) * max_w + (b - 1).clamp(min=0)) * plane + n * (height * width)
    row = row + y0.clamp(0, height - 1) * width + x0.clamp(0, width - 1)
    sentinel = max_h * max_w * plane
    return torch.where(empty, torch.full_like(row, sentinel), row)


def roi_loop_pool_vectorized(
    features: Tensor,
    rois: Tensor,
    spatial_scale: float,
    output_size: int,
    context_ratio: float = 1.8,
    table_budget: int = 16_000_000,
) -> tuple[Tensor, Tensor, Tensor]:
    """Vectorised ROILoopPool through window-max tables: each bin is one table lookup (box) or the max of
    four lookups (frame: the bin's rows above/below and columns left/right of the hole; context likewise).

    One table (``max_h * max_w`` shifted maxima of the maps) serves all maps when it has at most
    ``table_budget`` elements; otherwise each map gets its own, sized by its own boxes, so memory stays
    bounded for large maps. Exact: the same integer cells as the reference.
    """
    _check_pool_inputs(features, rois, output_size, context_ratio)
    num, channels, height, width = features.shape
    pooled = output_size
    total = rois.shape[0]
    if total == 0:
        empty = features.new_zeros((0, channels, pooled, pooled))
        return empty, empty.clone(), empty.clone()
    geometry = loop_pool_geometry(rois.detach(), spatial_scale, height, width, context_ratio)
    geometry = {k: v.to(features.device) for k, v in geometry.items()}
    maps = rois[:, 0].detach().to(device=features.device, dtype=torch.int64)
    box, inner, outer = geometry["box"], geometry["inner"], geometry["outer"]
    bins = {}
    for name, region in (("box", box), ("outer", outer)):
        hs, he = _bins(region[:, 1], region[:, 3], height, pooled)
        ws, we = _bins(region[:, 0], region[:, 2], width, pooled)
        bins[name] = (hs, he, ws, we)
    clamped = features.clamp(min=0)

    def queries(name: str, hole: Tensor | None, sel: Tensor, shape: tuple[int, ...], image: Tensor) -> Tensor:
        hs, he, ws, we = (t[sel] for t in bins[name])
        y0, y1 = hs[:, :, None].expand(-1, -1, pooled), he[:, :, None].expand(-1, -1, pooled)
        x0, x1 = ws[:, None, :].expand(-1, pooled, -1), we[:, None, :].expand(-1, pooled, -1)
        image = image[:, None, None].expand(-1, pooled, pooled)
        if hole is None:
            return _rect_rows(y0, y1, x0, x1, image, shape)[..., None]
        hole = hole[sel]
        top = hole[:, 1, None, None] + 1  # rows <= hole y0 are outside the strict interior
        bottom = hole[:, 3, None, None]  # rows >= hole y1 too
        left = hole[:, 0, None, None] + 1
        right = hole[:, 2, None, None]
        parts = [
            _rect_rows(y0, torch.minimum(y1, top), x0, x1, image, shape),
            _rect_rows(torch.maximum(y0, bottom), y1, x0, x1, image, shape),
            _rect_rows(y0, y1, x0, torch.minimum(x1, left), image, shape),
            _rect_rows(y0, y1, torch.maximum(x0, right), x1, image, shape),
        ]
        return torch.stack(parts, dim=-1)

    def extent(sel: Tensor) -> tuple[int, int]:
        max_h = max(int(torch.clamp(bins[k][1][sel] - bins[k][0][sel], min=1).max()) for k in bins)
        max_w = max(int(torch.clamp(bins[k][3][sel] - bins[k][2][sel], min=1).max()) for k in bins)
        return max_h, max_w

    everything = torch.arange(total, device=features.device)
    max_h, max_w = extent(everything)
    if max_h * max_w * num * height * width * channels <= table_budget:
        groups = [(everything, torch.arange(num, device=features.device), maps)]  # one table for all maps
    else:  # one table per feature map, sized by its own boxes
        groups = []
        for m in torch.unique(maps).tolist():
            sel = torch.nonzero(maps == m).squeeze(1)
            groups.append((sel, torch.tensor([m], device=features.device), torch.zeros_like(sel)))
    pieces, order = [], []
    for sel, chosen, image in groups:
        gh, gw = extent(sel)
        table = _window_max_tables(clamped[chosen], gh, gw)
        shape = (gh, gw, len(chosen), height, width)
        index = torch.cat(
            [
                queries("box", None, sel, shape, image),
                queries("box", inner, sel, shape, image),
                queries("outer", box, sel, shape, image),
            ],
            dim=-1,
        )  # (r, P, P, 9)
        values = table[index]  # (r, P, P, 9, C)
        pieces.append(
            torch.stack(
                [values[..., 0, :], values[..., 1:5, :].amax(dim=3), values[..., 5:9, :].amax(dim=3)], dim=0
            )
        )
        order.append(sel)
    merged = torch.cat(pieces, dim=1)  # (3, R, P, P, C) in map order
    inverse = torch.empty(total, dtype=torch.int64, device=features.device)
    inverse[torch.cat(order)] = torch.arange(total, device=features.device)
    result = merged[:, inverse].permute(0, 1, 4, 2, 3)  # (3, R, C, P, P)
    return result[0], result[1], result[2]


def roi_loop_pool_triton(
    features: Tensor, rois: Tensor, spatial_scale: float, output_size: int, context_ratio: float = 1.8
) -> tuple[Tensor, Tensor, Tensor]:
    """ROILoopPool through the shared Triton kernel: the geometry and bins above, then one launch for the
    three regions (box: no hole; frame: box bins, hole = inner box; context: outer bins, hole = box)."""
    from paperzoo_shared.kernels.roi_loop_pool import binned_max_pool_triton

    _check_pool_inputs(features, rois, output_size, context_ratio)
    height, width = features.shape[2:]
    geometry = loop_pool_geometry(rois.detach(), spatial_scale, height, width, context_ratio)
    box, inner, outer = (geometry[k].to(features.device) for k in ("box", "inner", "outer"))
    ranges = []
    for region in (box, box, outer):
        y_lo, y_hi = _bins(region[:, 1], region[:, 3], height, output_size)
        x_lo, x_hi = _bins(region[:, 0], region[:, 2], width, output_size)
        ranges.append((y_lo, y_hi, x_lo, x_hi))
    y_lo, y_hi, x_lo, x_hi = (torch.stack(parts, dim=1) for parts in zip(*ranges))  # (R, 3, P) each
    holes = torch.stack([torch.zeros_like(box), inner, box], dim=1)  # (0, 0, 0, 0) has no interior
    maps = rois[:, 0].detach().to(device=features.device, dtype=torch.int64)
    pooled = binned_max_pool_triton(features, maps, y_lo, y_hi, x_lo, x_hi, holes)
    return pooled[0], pooled[1], pooled[2]


roi_loop_pool = KernelOp("huwsod_roi_loop_pool", reference=roi_loop_pool_reference)
roi_loop_pool.register_backend(
    "triton",
    load=roi_loop_pool_triton,
    is_available=triton_available,
    supports=triton_supports,
    auto_select=triton_on_cuda,
)
roi_loop_pool.register_backend("vectorized", load=roi_loop_pool_vectorized, is_available=lambda: True)


# ----------------------------------------------------------------------------------------------------
# boxes
# ----------------------------------------------------------------------------------------------------

_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """detectron2's Box2BoxTransform: deltas (dx, dy, dw, dh) scaled by ``weights``; dw/dh clamped."""

    def __init__(self, weights: tuple[float, float, float, float] | list[float]):
        self.weights = tuple(float(w) for w in weights)

    def get_deltas(self, src: Tensor, target: Tensor) -> Tensor:
        wx, wy, ww, wh = self.weights
        src_w, src_h = src[:, 2] - src[:, 0], src[:, 3] - src[:, 1]
        src_x, src_y = src[:, 0] + 0.5 * src_w, src[:, 1] + 0.5 * src_h
        tgt_w, tgt_h = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
        tgt_x, tgt_y = target[:, 0] + 0.5 * tgt_w, target[:, 1] + 0.5 * tgt_h
        return torch.stack(
            [
                wx * (tgt_x - src_x) / src_w,
                wy * (tgt_y - src_y) / src_h,
                ww * torch.log(tgt_w / src_w),
                wh * torch.log(tgt_h / src_h),
            ],
            dim=1,
        )

    def apply_deltas(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """``deltas`` (R, 4k), ``boxes`` (R, 4) -> (R, 4k) boxes."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=_SCALE_CLAMP)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=_SCALE_CLAMP)
        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        out = torch.stack(
            [pred_x - 0.5 * pred_w, pred_y - 0.5 * pred_h, pred_x + 0.5 * pred_w, pred_y + 0.5 * pred_h],
            dim=-1,
        )
        return out.reshape(deltas.shape)


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """Clips (..., 4) boxes to [0, width] x [0, height] (detectron2 ``Boxes.clip``)."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def nonempty(boxes: Tensor, threshold: float) -> Tensor:
    """Boxes whose width and height are both > threshold (detectron2 ``Boxes.nonempty``)."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def sliding_window_boxes(
    height: int, width: int, sizes: list[float], ratios: list[float], step: float, min_size: float
) -> Tensor:
    """A fixed multi-scale grid of windows inside an image (our stand-in for offline proposals).

    For each side ``s`` and ratio ``r`` (h / w) the window is ``w = s / sqrt(r)``, ``h = s * sqrt(r)`` (area
    ``s^2``), placed every ``step * w`` / ``step * h`` pixels so that the last window touches the border;
    windows are clipped to the image, deduplicated, and those not larger than ``min_size`` dropped. The whole
    image is always included.
    """
    boxes = [[0.0, 0.0, float(width), float(height)]]
    for size in sizes:
        for ratio in ratios:
            bw = min(size / math.sqrt(ratio), width)
            bh = min(size * math.sqrt(ratio), height)
            nx = max(1, int(math.ceil((width - bw) / max(step * bw, 1.0))) + 1)
            ny = max(1, int(math.ceil((height - bh) / max(step * bh, 1.0))) + 1)
            xs = np.linspace(0.0, width - bw, nx)
            ys = np.linspace(0.0, height - bh, ny)
            for y in ys:
                for x in xs:
                    boxes.append([float(x), float(y), float(x + bw), float(y + bh)])
    tensor = torch.tensor(boxes, dtype=torch.float32)
    tensor = torch.unique(torch.round(tensor * 4) / 4, dim=0)
    keep = nonempty(tensor, min_size)
    whole = (tensor[:, 2] - tensor[:, 0] >= width) & (tensor[:, 3] - tensor[:, 1] >= height)
    return tensor[keep | whole]


def segment_boxes(
    image: np.ndarray, scales: list[float], sigma: float, min_size: int, min_box: float
) -> Tensor:
    """Offline proposals from Felzenszwalb segmentation (``skimage.segmentation.felzenszwalb``), our small
    stand-in for selective search / MCG: the bounding box of every segment at each scale, plus the whole
    image; boxes not larger than ``min_box`` pixels are dropped. Returns (R, 4) continuous boxes.
    """
    from scipy import ndimage
    from skimage.segmentation import felzenszwalb

    height, width = image.shape[:2]
    boxes = [(0.0, 0.0, float(width), float(height))]
    for scale in scales:
        segments = felzenszwalb(image, scale=float(scale), sigma=sigma, min_size=int(min_size))
        for region in ndimage.find_objects(segments + 1):
            if region is not None:
                rows, cols = region
                boxes.append((float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)))
    tensor = torch.unique(torch.tensor(boxes, dtype=torch.float32), dim=0)
    keep = nonempty(tensor, min_box)
    whole = (tensor[:, 2] - tensor[:, 0] >= width) & (tensor[:, 3] - tensor[:, 1] >= height)
    return tensor[keep | whole]


def component_boxes(mask: np.ndarray, min_component: int) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (row0, col0, row1, col1; ends exclusive) of the 8-connected components of ``mask``.

    Components with fewer than ``min(min_component, largest component)`` cells are dropped, as the repo's
    AE head does with ``skimage.measure.label`` (full connectivity) and ``regionprops``.
    """
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    threshold = min(int(min_component), int(sizes.max()))
    boxes = []
    for index, region in enumerate(ndimage.find_objects(labels)):
        if region is None or sizes[index] < threshold:
            continue
        rows, cols = region
        boxes.append((rows.start, cols.start, rows.stop, cols.stop))
    return boxes
