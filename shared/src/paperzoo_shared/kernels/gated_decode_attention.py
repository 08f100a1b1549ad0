"""Decode attention over a gated (ragged) KV cache: one query token per sample, grouped-query heads.

Dynamic-LLaVA's decoding writes a token to the KV cache only when its predictor keeps it, so every sample
has its own number of cached tokens. :data:`gated_decode_attention` computes, for every sample ``b`` and
query head ``h`` (key/value head ``h // (H / H_kv)``)::

    out[b, h] = softmax(q[b, h] . K_b^T * scale) V_b        over the L_b = lengths[b] cached tokens of b

with two cache layouts:

* padded buffers ``k, v: (B, H_kv, S, d)`` (any strides; slot ``s`` of sample ``b`` is valid iff
  ``s < lengths[b]``), what :class:`paperzoo_dynamic_llava.modeling_dynamic_llava.GatedKVCache` keeps;
* packed tokens ``k, v: (T, H_kv, d)`` with ``starts: (B,)`` (sample ``b`` owns rows
  ``starts[b] .. starts[b] + lengths[b]``), whose memory is proportional to the kept tokens.

A sample with ``lengths[b] == 0`` gets zeros. Implementations:

* the reference: the padded cache sliced to ``max_length``, heads repeated, ``F.scaled_dot_product_attention``
  with a key mask (exactly what dynamic_llava computed before; a packed cache is gathered to padded first);
* ``triton``: one program per (sample, key/value head) holds that head's whole query group as the rows of
  a tile and loops over the sample's own ``L_b`` keys only (no padded position is loaded or computed),
  online softmax in float32 (Flash-Attention style), ``tl.dot`` for ``q K^T`` and ``p V``;
* the split-K variant (flash-decoding, ``num_splits > 1``): each (sample, head, split) program reduces one
  chunk of the keys to a partial (max, sum, weighted values); a second kernel combines the splits with their
  log-sum-exp weights. It fills the GPU when ``B * H_kv`` programs are too few for long caches.
  ``num_splits=None`` picks it from the shapes (:func:`choose_num_splits`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from . import KernelOp, triton_available, triton_interpreting, triton_on_cuda, triton_supports

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _check(q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, starts: Tensor | None) -> None:
    if q.dim() != 3:
        raise ValueError(f"q must be (B, H, d): one query token per sample, got shape {tuple(q.shape)}")
    b, h, d = q.shape
    packed = starts is not None
    if k.dim() != (3 if packed else 4) or k.shape != v.shape:
        layout = "(T, H_kv, d) with starts" if packed else "(B, H_kv, S, d)"
        raise ValueError(f"k and v must both be {layout}, got {tuple(k.shape)} and {tuple(v.shape)}")
    h_kv, dk = (k.shape[1], k.shape[2]) if packed else (k.shape[1], k.shape[3])
    if dk != d or (not packed and k.shape[0] != b):
        raise ValueError(f"k/v {tuple(k.shape)} do not match q {tuple(q.shape)}")
    if h_kv == 0 or h % h_kv:
        raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({h_kv})")
    if lengths.shape != (b,) or (packed and starts.shape != (b,)):
        raise ValueError(f"lengths (and starts) must be (B,) = ({b},), got {tuple(lengths.shape)}")


def _as_padded(
    k: Tensor, v: Tensor, lengths: Tensor, starts: Tensor, max_length: int
) -> tuple[Tensor, Tensor]:
    """A packed (T, H_kv, d) cache gathered to (B, H_kv, max_length, d) (slots past a sample's length: row 0)."""
    slot = torch.arange(max_length, device=k.device)
    rows = torch.where(slot[None, :] < lengths[:, None], starts[:, None] + slot[None, :], 0)
    return k[rows].permute(0, 2, 1, 3), v[rows].permute(0, 2, 1, 3)


def gated_decode_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lengths: Tensor,
    *,
    starts: Tensor | None = None,
    max_length: int | None = None,
    scale: float | None = None,
    num_splits: int | None = None,
) -> Tensor:
    """Masked SDPA over the padded cache. ``max_length`` (>= every length; the host often knows it) avoids a
    device synchronisation. ``num_splits`` is the Triton split count, ignored here. Returns ``(B, H, d)``."""
    _check(q, k, v, lengths, starts)
    if max_length is None:
        max_length = int(lengths.max()) if lengths.numel() else 0
    if starts is not None:
        k, v = _as_padded(k, v, lengths, starts, max_length)
    k, v = k[:, :, :max_length], v[:, :, :max_length]
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    visible = torch.arange(max_length, device=q.device)[None, :] < lengths[:, None]  # (B, S)
    out = F.scaled_dot_product_attention(q[:, :, None], k, v, attn_mask=visible[:, None, None], scale=scale)
    out = out[:, :, 0]
    return torch.where((lengths > 0)[:, None, None], out, torch.zeros_like(out))  # no keys: zeros, not NaN


# ----------------------------------------------------------------------------------------------------
# Triton
# ----------------------------------------------------------------------------------------------------


def _kernels():
    """The jitted kernels, defined on first use, once per mode (``@triton.jit`` reads TRITON_INTERPRET)."""
    mode = triton_interpreting()
    if mode in _KERNELS:
        return _KERNELS[mode]
    import triton
    import triton.language as tl

    @triton.jit
    def partial_kernel(
        q_ptr, k_ptr, v_ptr, len_ptr, start_ptr,
        out_ptr, m_ptr, l_ptr,
        sm_scale, chunk,
        s_qb, s_qh, s_qd,
        s_kb, s_kh, s_ks, s_kd,
        s_vb, s_vh, s_vs, s_vd,
        G, D, SPLITS,
        BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
        PRECISION: tl.constexpr, FINAL: tl.constexpr, UPCAST: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0)
        hk = tl.program_id(1)
        split = tl.program_id(2)
        length = tl.load(len_ptr + b)
        start = tl.load(start_ptr + b).to(tl.int64)
        lo = split * chunk
        hi = tl.minimum(lo + chunk, length)  # this sample's own keys only: nothing past its length
        g = tl.arange(0, BLOCK_G)
        dd = tl.arange(0, BLOCK_D)
        g_ok = g < G
        d_ok = dd < D
        heads = hk * G + g  # the query heads of this key/value head
        q = tl.load(
            q_ptr + b.to(tl.int64) * s_qb + heads[:, None] * s_qh + dd[None, :] * s_qd,
            mask=g_ok[:, None] & d_ok[None, :], other=0.0,
        )  # fmt: skip
        if UPCAST:
            q = q.to(tl.float32)
        k_base = k_ptr + b.to(tl.int64) * s_kb + hk.to(tl.int64) * s_kh + start * s_ks
        v_base = v_ptr + b.to(tl.int64) * s_vb + hk.to(tl.int64) * s_vh + start * s_vs
        m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
        for n0 in range(lo, hi, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            n_ok = n < hi
            kv_mask = n_ok[:, None] & d_ok[None, :]
            k = tl.load(k_base + n[:, None].to(tl.int64) * s_ks + dd[None, :] * s_kd, mask=kv_mask, other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * sm_scale  # (G, N) float32
            s = tl.where(n_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(v_base + n[:, None].to(tl.int64) * s_vs + dd[None, :] * s_vd, mask=kv_mask, other=0.0)
            if UPCAST:
                v = v.to(tl.float32)
            p = p.to(v_ptr.dtype.element_ty)  # the probabilities enter p V in the cache's dtype
            if UPCAST:
                p = p.to(tl.float32)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=PRECISION)
            m_i = m_new
        row = (b * (tl.num_programs(1) * G) + heads).to(tl.int64)  # (B, H) flattened
        ok = g_ok[:, None] & d_ok[None, :]
        if FINAL:  # one split: normalise and write the output (B, H, D)
            out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
            tl.store(out_ptr + row[:, None] * D + dd[None, :], out.to(out_ptr.dtype.element_ty), mask=ok)
        else:  # partials (B, H, SPLITS, D) and (B, H, SPLITS), float32
            tl.store(out_ptr + (row[:, None] * SPLITS + split) * D + dd[None, :], acc, mask=ok)
            tl.store(m_ptr + row * SPLITS + split, m_i, mask=g_ok)
            tl.store(l_ptr + row * SPLITS + split, l_i, mask=g_ok)

    @triton.jit
    def combine_kernel(
        part_ptr, m_ptr, l_ptr, out_ptr, D, SPLITS,
        BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)  # one (sample, query head)
        s = tl.arange(0, BLOCK_S)
        dd = tl.arange(0, BLOCK_D)
        s_ok = s < SPLITS
        m = tl.load(m_ptr + row * SPLITS + s, mask=s_ok, other=float("-inf"))
        l = tl.load(l_ptr + row * SPLITS + s, mask=s_ok, other=0.0)
        m_all = tl.max(m, axis=0)
        m_safe = tl.where(m_all == float("-inf"), 0.0, m_all)  # every split empty (length 0)
        w = tl.where(m == float("-inf"), 0.0, tl.exp(m - m_safe))
        part = tl.load(
            part_ptr + (row * SPLITS + s[:, None]) * D + dd[None, :],
            mask=s_ok[:, None] & (dd < D)[None, :], other=0.0,
        )  # fmt: skip
        total = tl.sum(w * l, axis=0)
        out = tl.sum(w[:, None] * part, axis=0) / tl.where(total > 0, total, 1.0)
        tl.store(out_ptr + row * D + dd, out.to(out_ptr.dtype.element_ty), mask=dd < D)

    _KERNELS[mode] = (partial_kernel, combine_kernel)
    return _KERNELS[mode]


_KERNELS: dict[bool, tuple] = {}

BLOCK_N = 64  # keys per inner step
CHUNK_MIN = 256  # the smallest split-K chunk worth a program


def choose_num_splits(batch: int, kv_heads: int, max_length: int, programs: int = 264) -> int:
    """Split-K only when the ``batch * kv_heads`` programs are fewer than the SMs (``programs / 2``: an
    H100 has 132) and the cache is long: then enough splits to reach about ``programs`` (2 per SM), with
    chunks of at least 256 keys."""
    base = batch * kv_heads
    if 2 * base >= programs or max_length <= 2 * CHUNK_MIN:
        return 1
    return max(1, min(math.ceil(programs / base), math.ceil(max_length / CHUNK_MIN)))


def gated_decode_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lengths: Tensor,
    *,
    starts: Tensor | None = None,
    max_length: int | None = None,
    scale: float | None = None,
    num_splits: int | None = None,
) -> Tensor:
    """The Triton kernels (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``); same arguments and
    result as :func:`gated_decode_attention_reference`. ``num_splits=1`` is the one-pass kernel."""
    _check(q, k, v, lengths, starts)
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one of {DTYPES}, got {q.dtype}, {k.dtype}, {v.dtype}")
    import triton

    partial_kernel, combine_kernel = _kernels()
    batch, heads, d = q.shape
    h_kv = k.shape[1]
    groups = heads // h_kv
    out = torch.empty((batch, heads, d), dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    lengths32 = lengths.to(device=q.device, dtype=torch.int32).contiguous()
    if starts is None:
        starts32 = torch.zeros(batch, dtype=torch.int32, device=q.device)
        k_strides, v_strides = k.stride(), v.stride()
    else:
        starts32 = starts.to(device=q.device, dtype=torch.int32).contiguous()
        k_strides = (0, k.stride(1), k.stride(0), k.stride(2))  # (batch, head, slot, dim)
        v_strides = (0, v.stride(1), v.stride(0), v.stride(2))
    if max_length is None:
        max_length = int(lengths.max())
    if num_splits is None:
        num_splits = choose_num_splits(batch, h_kv, max_length)
    # chunks are whole BLOCK_N steps; a split starting past a sample's length does nothing
    chunk = max(BLOCK_N, triton.cdiv(triton.cdiv(max(max_length, 1), num_splits), BLOCK_N) * BLOCK_N)
    num_splits = max(1, triton.cdiv(max(max_length, 1), chunk))
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    block_g = max(16, triton.next_power_of_2(groups))  # tl.dot needs >= 16 rows
    block_d = max(16, triton.next_power_of_2(d))
    # Triton 3.8's interpreter gets tl.dot of bfloat16 tiles wrong (checked: errors of 1e10 on a 16 x 16
    # product), so under the interpreter bfloat16 tiles are multiplied in float32 after the same roundings
    # (p is still rounded to bfloat16 first); on the GPU the dots take the bfloat16 tiles directly.
    upcast = triton_interpreting() and q.dtype == torch.bfloat16
    precision = "ieee" if q.dtype == torch.float32 or upcast else "tf32"  # (ignored for 16-bit inputs)
    common = dict(BLOCK_G=block_g, BLOCK_N=BLOCK_N, BLOCK_D=block_d, PRECISION=precision, UPCAST=upcast)
    grid = (batch, h_kv, num_splits)
    if num_splits == 1:
        partial_kernel[grid](
            q, k, v, lengths32, starts32, out, out, out, scale, chunk,
            *q.stride(), *k_strides, *v_strides, groups, d, 1, FINAL=True, **common,
        )  # fmt: skip
        return out
    part = torch.empty((batch, heads, num_splits, d), dtype=torch.float32, device=q.device)
    m = torch.empty((batch, heads, num_splits), dtype=torch.float32, device=q.device)
    l = torch.empty_like(m)
    partial_kernel[grid](
        q, k, v, lengths32, starts32, part, m, l, scale, chunk,
        *q.stride(), *k_strides, *v_strides, groups, d, num_splits, FINAL=False, **common,
    )  # fmt: skip
    combine_kernel[(batch * heads,)](
        part, m, l, out, d, num_splits, BLOCK_S=triton.next_power_of_2(num_splits), BLOCK_D=block_d
    )
    return out


def _triton_supports(q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, **kwargs) -> tuple[bool, str]:
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        return False, f"dtypes {q.dtype}/{k.dtype}/{v.dtype} (needs one of fp16, bf16, fp32 for all three)"
    if q.shape[-1] > 256:
        return False, f"head dim {q.shape[-1]} > 256"
    return triton_supports(q, k, v, lengths, *(t for t in kwargs.values() if isinstance(t, Tensor)))


gated_decode_attention = KernelOp("gated_decode_attention", reference=gated_decode_attention_reference)
gated_decode_attention.register_backend(
    "triton",
    load=gated_decode_attention_triton,
    is_available=triton_available,
    supports=_triton_supports,
    auto_select=triton_on_cuda,
)
