"""Ragged decode attention: the Triton kernels (one pass and split-K, through Triton's interpreter) against
the masked-SDPA reference, and the reference against a hand-written softmax per sample.

Cases: cache lengths 0, 1 and unequal across the batch; grouped-query heads (1, 2 and 4 queries per
key/value head); head dims 24 and 80 (not powers of two); float32, float16 and bfloat16; padded and packed
layouts; a padded buffer whose slots past each length hold NaN (so a kernel that reads a padded slot fails).
"""

from __future__ import annotations

import math

import pytest
import torch

from paperzoo_shared.kernels import MIN_TRITON, KernelUnavailableError, triton_version, use
from paperzoo_shared.kernels.gated_decode_attention import (
    choose_num_splits,
    gated_decode_attention,
    gated_decode_attention_reference,
    gated_decode_attention_triton,
)

pytestmark = pytest.mark.skipif(
    (triton_version() or (0,)) < MIN_TRITON, reason=f"needs Triton {'.'.join(map(str, MIN_TRITON))} or newer"
)

TOLERANCE = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _case(lengths, heads=4, kv_heads=2, d=24, slots=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    slots = slots or max(max(lengths), 1) + 3
    q = torch.randn(b, heads, d, generator=g).to(dtype)
    k = torch.randn(b, kv_heads, slots, d, generator=g).to(dtype)
    v = torch.randn(b, kv_heads, slots, d, generator=g).to(dtype)
    return q, k, v, torch.tensor(lengths)


def _poisoned(k, lengths):
    """A copy whose slots past each sample's length hold NaN: a kernel that loads one returns NaN."""
    k = k.clone()
    pad = torch.arange(k.shape[2], device=k.device)[None, :] >= lengths[:, None]
    k[pad[:, None].expand_as(k[..., 0])] = float("nan")
    return k


def _by_hand(q, k, v, lengths):
    """softmax(q K^T / sqrt(d)) V per sample and query head, in float64, over the sample's own keys."""
    b, h, d = q.shape
    groups = h // k.shape[1]
    out = torch.zeros(b, h, d, dtype=torch.float64)
    for i in range(b):
        n = int(lengths[i])
        for j in range(h):
            if n == 0:
                continue
            keys = k[i, j // groups, :n].double()
            weights = torch.softmax(keys @ q[i, j].double() / math.sqrt(d), dim=0)
            out[i, j] = weights @ v[i, j // groups, :n].double()
    return out


def test_reference_equals_a_softmax_by_hand():
    q, k, v, lengths = _case([0, 1, 5, 9], heads=6, kv_heads=3)
    ref = gated_decode_attention_reference(q, k, v, lengths)
    assert not ref.isnan().any()
    torch.testing.assert_close(ref.double(), _by_hand(q, k, v, lengths), rtol=1e-5, atol=1e-5)
    assert torch.equal(ref[0], torch.zeros_like(ref[0]))  # no keys: zeros
    torch.testing.assert_close(ref[1], v[1, :, 0].repeat_interleave(2, dim=0))  # one key: its value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("splits", [1, 3])
def test_triton_matches_the_reference(triton_interpreter, dtype, splits):
    q, k, v, lengths = _case([0, 1, 70, 150, 33], heads=8, kv_heads=2, dtype=dtype)
    ref = gated_decode_attention_reference(q, k, v, lengths)
    tri = gated_decode_attention_triton(
        q, _poisoned(k, lengths), _poisoned(v, lengths), lengths, num_splits=splits
    )
    assert tri.dtype == dtype and not tri.isnan().any()
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(tri.float(), ref.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(tri.double(), _by_hand(q, k, v, lengths), rtol=4 * tol, atol=4 * tol)


@pytest.mark.parametrize(("heads", "kv_heads", "d"), [(3, 3, 80), (4, 1, 24), (2, 1, 16)])
def test_group_sizes_and_head_dims(triton_interpreter, heads, kv_heads, d):
    q, k, v, lengths = _case([7, 1, 64, 65], heads=heads, kv_heads=kv_heads, d=d, seed=heads)
    ref = gated_decode_attention_reference(q, k, v, lengths)
    for splits in (1, 2):
        tri = gated_decode_attention_triton(
            q, _poisoned(k, lengths), _poisoned(v, lengths), lengths, num_splits=splits
        )
        torch.testing.assert_close(tri, ref, rtol=2e-6, atol=2e-6)


def test_packed_layout_and_strided_views(triton_interpreter):
    q, k, v, lengths = _case([3, 0, 90, 12])
    ref = gated_decode_attention_reference(q, k, v, lengths)
    # packed: every sample's kept tokens back to back, (T, H_kv, d), in a shuffled sample order
    order = [2, 0, 3, 1]
    rows_k = [k[i, :, : int(lengths[i])].transpose(0, 1) for i in order]
    rows_v = [v[i, :, : int(lengths[i])].transpose(0, 1) for i in order]
    starts = torch.zeros(4, dtype=torch.long)
    offset = 0
    for i, part in zip(order, rows_k):
        starts[i] = offset
        offset += part.shape[0]
    kp, vp = torch.cat(rows_k), torch.cat(rows_v)
    for splits in (1, 2):
        tri = gated_decode_attention_triton(q, kp, vp, lengths, starts=starts, num_splits=splits)
        torch.testing.assert_close(tri, ref, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(gated_decode_attention_reference(q, kp, vp, lengths, starts=starts), ref)
    # a slot-major buffer seen as (B, H_kv, S, d): the kernel follows the strides
    k_t, v_t = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (k, v))
    assert not k_t.is_contiguous()
    tri = gated_decode_attention_triton(q, k_t, v_t, lengths, num_splits=1)
    torch.testing.assert_close(tri, ref, rtol=2e-6, atol=2e-6)


def test_dispatch_and_errors(triton_interpreter, monkeypatch):
    q, k, v, lengths = _case([4, 2])
    assert gated_decode_attention.select(q, k, v, lengths)[0] == "torch"  # auto: CUDA only
    with use("triton"):
        assert gated_decode_attention.select(q, k, v, lengths)[0] == "triton"
        with pytest.raises(ValueError, match="multiple of key/value heads"):
            gated_decode_attention(q[:, :3], k, v, lengths)
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setenv("PAPERZOO_KERNELS", "triton")
    with pytest.raises(KernelUnavailableError, match="need CUDA tensors.*TRITON_INTERPRET=1"):
        gated_decode_attention(q, k, v, lengths)
    monkeypatch.setenv("PAPERZOO_KERNELS", "auto")
    assert torch.equal(
        gated_decode_attention(q, k, v, lengths), gated_decode_attention_reference(q, k, v, lengths)
    )


def test_split_heuristic():
    assert choose_num_splits(8, 32, 4000) == 1  # 256 programs already fill the GPU
    assert choose_num_splits(1, 8, 400) == 1  # short caches: one pass
    assert choose_num_splits(1, 8, 8000) == 32  # 8 -> 264 programs, capped by 8000 / 256 = 32 chunks
    assert choose_num_splits(2, 8, 1000) == 4  # capped by ceil(1000 / 256)


@pytest.mark.slow
def test_long_ragged_caches(triton_interpreter):
    q, k, v, lengths = _case([1000, 3, 517, 0, 2049, 64], heads=8, kv_heads=2, d=64, dtype=torch.float16)
    ref = gated_decode_attention_reference(q, k, v, lengths)
    for splits in (1, None, 8):
        tri = gated_decode_attention_triton(q, k, v, lengths, num_splits=splits)
        torch.testing.assert_close(tri.float(), ref.float(), rtol=2e-3, atol=2e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("splits", [1, 4, None])
def test_compiled_kernels_on_cuda(monkeypatch, dtype, splits):
    """The compiled kernels against the reference on the GPU, 7B-like heads, ragged lengths up to 3000."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("PAPERZOO_KERNELS", raising=False)
    q, k, v, lengths = (
        t.cuda() for t in _case([0, 1, 3000, 517, 64, 2049], heads=32, kv_heads=8, d=128, dtype=dtype)
    )
    assert gated_decode_attention.select(q, k, v, lengths)[0] == "triton"
    ref = gated_decode_attention_reference(q, k, v, lengths)
    tri = gated_decode_attention_triton(
        q, _poisoned(k, lengths), _poisoned(v, lengths), lengths, num_splits=splits
    )
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(tri.float(), ref.float(), rtol=tol, atol=tol)
