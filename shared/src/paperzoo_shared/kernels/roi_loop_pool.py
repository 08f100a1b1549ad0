"""Binned max pooling with an excluded hole: the core of ROILoopPool (ContextLocNet's box / frame / context).

For every roi ``r`` and region kind ``k`` the caller gives the integer cell range of each output bin,
``[y_lo, y_hi) x [x_lo, x_hi)`` per row/column bin (already clipped to the map), and a hole rectangle
``(x1, y1, x2, y2)`` whose *strict* interior (``x1 < x < x2`` and ``y1 < y < y2``) is skipped. Each output is
the max over the bin's remaining cells of ``features[batch_index[r], c]``, starting from 0 (the CUDA kernel
of ROILoopPool assumes post-ReLU features), so empty bins give 0 and negative values are clamped to 0.

ROILoopPool maps onto it with three kinds per box: box (the box's Caffe RoIPool bins, no hole), frame (the
same bins, hole = the box shrunk by the context ratio) and context (the enlarged box's bins, hole = the
box); huwsod computes that geometry and registers :func:`binned_max_pool_triton` on its op.

Two implementations behind the op :data:`binned_max_pool`:

* :func:`binned_max_pool_reference`: a readable loop over rois, kinds and bins (autograd through ``amax``,
  so tied maxima share the gradient);
* :func:`binned_max_pool_triton`: one program per (roi, kind, channel block) holding all ``P * P`` bins of
  that region as a ``[bins, channels]`` tile over a channels-last copy of the features (coalesced channel
  reads, contiguous ``P * P`` output rows). The forward records the flat cell index of the first maximum in
  row-major scan order (as the CUDA kernel, strict ``>``); the backward scatters the output gradient to it
  with atomic adds in float32. Values and gradients equal the reference's except where maxima tie exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import KernelOp, triton_available, triton_interpreting, triton_on_cuda, triton_supports


def _check(features: Tensor, batch_index: Tensor, y_lo: Tensor, y_hi: Tensor, x_lo: Tensor, x_hi: Tensor,
           holes: Tensor) -> None:  # fmt: skip
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got shape {tuple(features.shape)}")
    if batch_index.dim() != 1:
        raise ValueError(f"batch_index must be (R,), got shape {tuple(batch_index.shape)}")
    r = batch_index.shape[0]
    if y_lo.dim() != 3 or y_lo.shape[0] != r:
        raise ValueError(f"bin ranges must be (R, K, P) with R={r}, got shape {tuple(y_lo.shape)}")
    for name, t in (("y_hi", y_hi), ("x_lo", x_lo), ("x_hi", x_hi)):
        if t.shape != y_lo.shape:
            raise ValueError(f"{name} must have the shape of y_lo {tuple(y_lo.shape)}, got {tuple(t.shape)}")
    if holes.shape != (r, y_lo.shape[1], 4):
        raise ValueError(f"holes must be (R, K, 4) = {(r, y_lo.shape[1], 4)}, got {tuple(holes.shape)}")
    if r and (int(batch_index.min()) < 0 or int(batch_index.max()) >= features.shape[0]):
        raise ValueError(f"batch_index must be in [0, {features.shape[0]})")
    height, width = features.shape[2:]
    for name, t, size in (("y_lo", y_lo, height), ("y_hi", y_hi, height), ("x_lo", x_lo, width), ("x_hi", x_hi, width)):  # fmt: skip
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > size):
            raise ValueError(f"{name} must be clipped to [0, {size}]")


def binned_max_pool_reference(
    features: Tensor,
    batch_index: Tensor,
    y_lo: Tensor,
    y_hi: Tensor,
    x_lo: Tensor,
    x_hi: Tensor,
    holes: Tensor,
) -> Tensor:
    """Readable loop. Returns ``(K, R, C, P, P)``: kind-major, so ``out[k]`` is one region's pooled features."""
    _check(features, batch_index, y_lo, y_hi, x_lo, x_hi, holes)
    rois, kinds, pooled = y_lo.shape
    channels = features.shape[1]
    feats = features.clamp(min=0)
    zero = feats.new_zeros(channels)
    out = []
    for k in range(kinds):
        per_roi = []
        for r in range(rois):
            n = int(batch_index[r])
            hx1, hy1, hx2, hy2 = holes[r, k].tolist()
            cells = []
            for ph in range(pooled):
                for pw in range(pooled):
                    h0, h1 = int(y_lo[r, k, ph]), int(y_hi[r, k, ph])
                    w0, w1 = int(x_lo[r, k, pw]), int(x_hi[r, k, pw])
                    if h1 <= h0 or w1 <= w0:
                        cells.append(zero)
                        continue
                    rows = torch.arange(h0, h1, device=features.device)
                    cols = torch.arange(w0, w1, device=features.device)
                    in_hole = ((rows > hy1) & (rows < hy2))[:, None] & ((cols > hx1) & (cols < hx2))[None, :]
                    patch = feats[n, :, h0:h1, w0:w1] * (~in_hole).to(feats.dtype)  # skipped cells count as 0
                    cells.append(patch.amax(dim=(1, 2)))
            per_roi.append(torch.stack(cells, dim=1).view(channels, pooled, pooled))
        out.append(torch.stack(per_roi) if per_roi else feats.new_zeros((0, channels, pooled, pooled)))
    return torch.stack(out) if out else feats.new_zeros((0, rois, channels, pooled, pooled))


# ----------------------------------------------------------------------------------------------------
# Triton
# ----------------------------------------------------------------------------------------------------


def _kernels():
    """The jitted kernels, defined on first use (Triton is imported only when a Triton backend runs), once
    per mode: ``@triton.jit`` reads ``TRITON_INTERPRET`` when it defines a kernel."""
    mode = triton_interpreting()
    if mode in _KERNELS:
        return _KERNELS[mode]
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(
        feat_ptr, batch_ptr, ylo_ptr, yhi_ptr, xlo_ptr, xhi_ptr, hole_ptr, out_ptr, arg_ptr,
        R, K, C, H, W,
        P: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, SAVE_ARG: tl.constexpr,
    ):  # fmt: skip
        rk = tl.program_id(0)  # roi * K + kind
        r = rk // K
        k = rk % K
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < C
        bins = tl.arange(0, BLOCK_B)
        b_ok = bins < P * P
        ph = bins // P
        pw = bins % P
        n = tl.load(batch_ptr + r).to(tl.int64)
        ylo = tl.load(ylo_ptr + rk * P + ph, mask=b_ok, other=0)
        yhi = tl.load(yhi_ptr + rk * P + ph, mask=b_ok, other=0)
        xlo = tl.load(xlo_ptr + rk * P + pw, mask=b_ok, other=0)
        xhi = tl.load(xhi_ptr + rk * P + pw, mask=b_ok, other=0)
        hx1 = tl.load(hole_ptr + rk * 4)
        hy1 = tl.load(hole_ptr + rk * 4 + 1)
        hx2 = tl.load(hole_ptr + rk * 4 + 2)
        hy2 = tl.load(hole_ptr + rk * 4 + 3)
        span_h = tl.max(yhi - ylo, axis=0)  # the tallest / widest bin bounds the scan
        span_w = tl.max(xhi - xlo, axis=0)
        best = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)  # every max starts at 0
        arg = tl.full((BLOCK_B, BLOCK_C), -1, dtype=tl.int32)
        for dy in range(0, span_h):
            y = ylo + dy
            for dx in range(0, span_w):
                x = xlo + dx
                in_hole = (y > hy1) & (y < hy2) & (x > hx1) & (x < hx2)
                cell_ok = b_ok & (y < yhi) & (x < xhi) & (~in_hole)
                cell = y * W + x
                offs = (n * H * W + cell.to(tl.int64))[:, None] * C + c[None, :]
                v = tl.load(feat_ptr + offs, mask=cell_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
                better = v > best  # strict: the first maximum in scan order wins, as the CUDA kernel
                best = tl.where(better, v, best)
                arg = tl.where(better, cell[:, None], arg)
        # output layout (K, R, C, P * P): each channel's P * P bins are contiguous
        out_offs = ((k * R + r).to(tl.int64) * C + c[None, :]) * (P * P) + bins[:, None]
        ok = b_ok[:, None] & c_ok[None, :]
        tl.store(out_ptr + out_offs, best.to(out_ptr.dtype.element_ty), mask=ok)
        if SAVE_ARG:
            tl.store(arg_ptr + out_offs, arg, mask=ok)

    @triton.jit
    def backward_kernel(
        grad_out_ptr, arg_ptr, batch_ptr, grad_feat_ptr,
        R, K, C, H, W,
        P: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        rk = tl.program_id(0)
        r = rk // K
        k = rk % K
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        bins = tl.arange(0, BLOCK_B)
        ok = (bins < P * P)[:, None] & (c < C)[None, :]
        n = tl.load(batch_ptr + r).to(tl.int64)
        offs = ((k * R + r).to(tl.int64) * C + c[None, :]) * (P * P) + bins[:, None]
        arg = tl.load(arg_ptr + offs, mask=ok, other=-1)
        g = tl.load(grad_out_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        hit = ok & (arg >= 0)
        target = (n * H * W + arg.to(tl.int64)) * C + c[None, :]  # channels-last float32 gradient
        tl.atomic_add(grad_feat_ptr + tl.where(hit, target, 0), g, mask=hit)

    _KERNELS[mode] = (forward_kernel, backward_kernel)
    return _KERNELS[mode]


_KERNELS: dict[bool, tuple] = {}


def _launch_shape(pooled: int, channels: int) -> tuple[int, int]:
    import triton

    block_b = triton.next_power_of_2(pooled * pooled)
    block_c = max(16, min(triton.next_power_of_2(channels), max(16, 4096 // block_b)))
    return block_b, block_c


class _BinnedMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, batch_index, y_lo, y_hi, x_lo, x_hi, holes):  # type: ignore[override]
        forward_kernel, _ = _kernels()
        num, channels, height, width = features.shape
        rois, kinds, pooled = y_lo.shape
        out = features.new_empty((kinds, rois, channels, pooled, pooled))
        save = features.requires_grad
        arg = torch.empty(out.shape if save else (1,), dtype=torch.int32, device=features.device)
        if rois and kinds and channels:
            cl = features.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C): channels are the fast axis
            as_i32 = lambda t: t.to(device=features.device, dtype=torch.int32).contiguous()  # noqa: E731
            block_b, block_c = _launch_shape(pooled, channels)
            grid = (rois * kinds, -(-channels // block_c))
            forward_kernel[grid](
                cl, as_i32(batch_index), as_i32(y_lo), as_i32(y_hi), as_i32(x_lo), as_i32(x_hi), as_i32(holes),
                out, arg, rois, kinds, channels, height, width,
                P=pooled, BLOCK_B=block_b, BLOCK_C=block_c, SAVE_ARG=save,
            )  # fmt: skip
        ctx.save_for_backward(arg, batch_index.to(device=features.device, dtype=torch.int32).contiguous())
        ctx.shape = features.shape
        ctx.dtype = features.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        _, backward_kernel = _kernels()
        arg, batch_index = ctx.saved_tensors
        num, channels, height, width = ctx.shape
        kinds, rois, _, pooled, _ = grad_out.shape
        grad_cl = torch.zeros((num, height, width, channels), dtype=torch.float32, device=grad_out.device)
        if rois and kinds and channels:
            block_b, block_c = _launch_shape(pooled, channels)
            grid = (rois * kinds, -(-channels // block_c))
            backward_kernel[grid](
                grad_out.contiguous(), arg, batch_index, grad_cl, rois, kinds, channels, height, width,
                P=pooled, BLOCK_B=block_b, BLOCK_C=block_c,
            )  # fmt: skip
        grad = grad_cl.permute(0, 3, 1, 2).to(ctx.dtype).contiguous()
        return grad, None, None, None, None, None, None


def binned_max_pool_triton(
    features: Tensor,
    batch_index: Tensor,
    y_lo: Tensor,
    y_hi: Tensor,
    x_lo: Tensor,
    x_hi: Tensor,
    holes: Tensor,
) -> Tensor:
    """The Triton kernel (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``); same result layout as
    :func:`binned_max_pool_reference`. Differentiable in ``features`` (first maximum takes the gradient)."""
    _check(features, batch_index, y_lo, y_hi, x_lo, x_hi, holes)
    if features.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"features must be float32, float16 or bfloat16, got {features.dtype}")
    return _BinnedMaxPool.apply(features, batch_index, y_lo, y_hi, x_lo, x_hi, holes)


binned_max_pool = KernelOp("binned_max_pool", reference=binned_max_pool_reference)
binned_max_pool.register_backend(
    "triton",
    load=binned_max_pool_triton,
    is_available=triton_available,
    supports=triton_supports,
    auto_select=triton_on_cuda,
)
