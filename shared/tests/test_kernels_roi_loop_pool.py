"""The Triton binned max pool (ROILoopPool's core) against its readable reference, through Triton's interpreter.

Goldens: a hand-computed 1-channel case; then random cases against the reference loop (values exactly,
gradients to float32 rounding), and huwsod's whole ROILoopPool (its reference vs its ``triton`` backend) on
empty, degenerate and out-of-image boxes when huwsod is installed.
"""

from __future__ import annotations

import pytest
import torch

from paperzoo_shared.kernels import MIN_TRITON, KernelUnavailableError, triton_version, use
from paperzoo_shared.kernels.roi_loop_pool import (
    binned_max_pool,
    binned_max_pool_reference,
    binned_max_pool_triton,
)

pytestmark = pytest.mark.skipif(
    (triton_version() or (0,)) < MIN_TRITON, reason=f"needs Triton {'.'.join(map(str, MIN_TRITON))} or newer"
)


def _random_case(seed: int, n=2, c=5, h=9, w=11, r=4, k=3, p=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, c, h, w, generator=g).to(dtype)
    batch = torch.randint(0, n, (r,), generator=g)

    def ranges(size):
        lo = torch.randint(0, size + 1, (r, k, p), generator=g)
        hi = lo + torch.randint(-1, 5, (r, k, p), generator=g)  # some empty (hi <= lo) bins
        return lo.clamp(0, size), hi.clamp(0, size)

    y_lo, y_hi = ranges(h)
    x_lo, x_hi = ranges(w)
    holes = torch.randint(-1, max(h, w), (r, k, 4), generator=g)
    return feats, batch, y_lo, y_hi, x_lo, x_hi, holes


def test_hand_computed_case(triton_interpreter):
    # one 4 x 4 map, values 1..16 row-major; one bin covering rows 0-3 x cols 0-3 with the hole (0, 0, 3, 3),
    # whose strict interior is rows 1-2 x cols 1-2 (values 6, 7, 10, 11 skipped); then the 2 x 2 bins of the
    # same rectangle: maxima 6, 8, 14, 16 without a hole, and 5, 8, 14, 16 with it.
    feats = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    feats[0, 0, 3, 3] = -5.0  # negatives are clamped to 0: the bottom-right bin's max becomes 15
    batch = torch.zeros(1, dtype=torch.long)
    y_lo = torch.tensor([[[0, 2], [0, 2]]])
    y_hi = torch.tensor([[[2, 4], [2, 4]]])
    holes = torch.tensor([[[0, 0, 0, 0], [0, 0, 3, 3]]])
    out = binned_max_pool_triton(feats, batch, y_lo, y_hi, y_lo.clone(), y_hi.clone(), holes)
    assert out.shape == (2, 1, 1, 2, 2)
    assert out[0, 0, 0].tolist() == [[6.0, 8.0], [14.0, 15.0]]
    assert out[1, 0, 0].tolist() == [[5.0, 8.0], [14.0, 15.0]]
    whole = binned_max_pool_triton(
        feats, batch, torch.tensor([[[0]]]), torch.tensor([[[4]]]), torch.tensor([[[0]]]), torch.tensor([[[4]]]),
        torch.tensor([[[0, 0, 3, 3]]]),
    )  # fmt: skip
    assert whole.item() == 15.0  # 16 is negative now; 6, 7, 10, 11 are in the hole


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_and_gradients_match_the_reference(triton_interpreter, seed):
    args = _random_case(seed, c=5 + seed * 7)  # 5, 12, 19 channels: not powers of two
    feats = args[0].double().float().requires_grad_()
    ref = binned_max_pool_reference(feats, *args[1:])
    tri = binned_max_pool_triton(feats, *args[1:])
    assert torch.equal(ref, tri)
    weight = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed))
    (g_ref,) = torch.autograd.grad((ref * weight).sum(), feats)
    (g_tri,) = torch.autograd.grad((tri * weight).sum(), feats)
    assert g_ref.abs().sum() > 0
    torch.testing.assert_close(g_tri, g_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_values_equal_the_reference(triton_interpreter, dtype):
    args = _random_case(3, dtype=dtype)
    ref = binned_max_pool_reference(*args)
    tri = binned_max_pool_triton(*args)
    assert tri.dtype == dtype and torch.equal(ref, tri)  # a max is exact in any dtype


def test_ties_send_the_gradient_to_the_first_maximum(triton_interpreter):
    feats = torch.ones(1, 1, 2, 2, requires_grad=True)
    one = torch.tensor([[[0]]])
    two = torch.tensor([[[2]]])
    out = binned_max_pool_triton(feats, torch.zeros(1, dtype=torch.long), one, two, one.clone(), two.clone(),
                                 torch.zeros(1, 1, 4, dtype=torch.long))  # fmt: skip
    out.sum().backward()
    assert feats.grad.view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]  # the reference would give 0.25 each


def test_no_rois_and_dispatch(triton_interpreter, monkeypatch):
    args = _random_case(0, r=0)
    feats = args[0].requires_grad_()
    out = binned_max_pool_triton(feats, *args[1:])
    assert out.shape == (3, 0, 5, 3, 3)
    out.sum().backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))
    args = _random_case(0)
    assert binned_max_pool.select(*args)[0] == "torch"  # auto never runs the interpreter for CPU tensors
    with use("triton"):
        assert binned_max_pool.select(*args)[0] == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    with use("triton"), pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1"):
        binned_max_pool(*args)


def test_bad_ranges_are_rejected(triton_interpreter):
    feats, batch, y_lo, y_hi, x_lo, x_hi, holes = _random_case(0)
    with pytest.raises(ValueError, match="clipped"):
        binned_max_pool_triton(feats, batch, y_lo, y_hi + 20, x_lo, x_hi, holes)
    with pytest.raises(ValueError, match="holes must be"):
        binned_max_pool_triton(feats, batch, y_lo, y_hi, x_lo, x_hi, holes[:, :1])


# ---------------------------------------------------------------------------------------------- huwsod


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compiled_kernel_on_cuda(monkeypatch, dtype):
    """The compiled kernel (not the interpreter) against the reference on the GPU; auto picks it there."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("PAPERZOO_KERNELS", raising=False)
    args = [t.cuda() for t in _random_case(5, c=70, h=17, w=23, r=40, p=7, dtype=dtype)]
    feats = args[0].requires_grad_()
    assert binned_max_pool.select(feats, *args[1:])[0] == "triton"
    ref = binned_max_pool_reference(feats, *args[1:])
    tri = binned_max_pool(feats, *args[1:])
    assert torch.equal(ref, tri)
    weight = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad((ref * weight).sum(), feats)
    (g_tri,) = torch.autograd.grad((tri * weight).sum(), feats)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(g_tri.float(), g_ref.float(), rtol=tol, atol=tol)
