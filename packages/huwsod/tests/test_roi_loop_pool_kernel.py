"""huwsod's ROILoopPool through paperzoo_shared's Triton kernel (under TRITON_INTERPRET=1 on the CPU): the
same outputs and gradients as the package's reference, and the dispatcher's choice on the CPU."""

from __future__ import annotations

import pytest
import torch
from paperzoo_huwsod import ops

from paperzoo_shared.kernels import MIN_TRITON, triton_version, use

pytestmark = pytest.mark.skipif(
    (triton_version() or (0,)) < MIN_TRITON, reason=f"needs Triton {'.'.join(map(str, MIN_TRITON))} or newer"
)


def _huwsod_boxes():
    # image 64 x 48 pixels (stride 8: an 8 x 6 map); empty, degenerate, edge, beyond-the-image and large boxes
    return torch.tensor(
        [
            [0, 8.0, 8.0, 40.0, 32.0],
            [1, 0.0, 0.0, 63.0, 47.0],
            [0, 20.0, 20.0, 20.0, 20.0],  # a point
            [1, 30.0, 5.0, 29.0, 40.0],  # x2 < x1
            [0, -30.0, -10.0, 90.0, 70.0],  # beyond the image on every side
            [1, 50.0, 40.0, 200.0, 100.0],  # starts inside, ends far outside
            [0, 3.0, 3.0, 4.9, 44.0],  # one column wide
            [1, 12.4, 12.5, 36.5, 28.5],  # half-pixel coordinates (C round, half away from zero)
        ]
    )


@pytest.mark.parametrize("pooled", [1, 3, 7])
def test_huwsod_roi_loop_pool_matches_its_reference(triton_interpreter, pooled):
    g = torch.Generator().manual_seed(pooled)
    feats = torch.randn(2, 6, 6, 8, generator=g).requires_grad_()
    rois = _huwsod_boxes()
    ref = ops.roi_loop_pool_reference(feats, rois, 0.125, pooled, 1.8)
    with use("triton", op="huwsod_roi_loop_pool"):
        assert ops.roi_loop_pool.select(feats, rois, 0.125, pooled, 1.8)[0] == "triton"
        tri = ops.roi_loop_pool(feats, rois, 0.125, pooled, 1.8)
    weights = [torch.randn(t.shape, generator=g) for t in ref]
    for a, b in zip(ref, tri):
        assert torch.equal(a, b)
    (g_ref,) = torch.autograd.grad(sum((t * w).sum() for t, w in zip(ref, weights)), feats)
    (g_tri,) = torch.autograd.grad(sum((t * w).sum() for t, w in zip(tri, weights)), feats)
    torch.testing.assert_close(g_tri, g_ref, rtol=1e-6, atol=1e-6)
    assert tri[2][4].abs().sum() == 0  # the box covering the whole image has no context left


def test_huwsod_auto_keeps_the_vectorised_path_on_cpu(triton_interpreter):
    feats = torch.rand(1, 2, 4, 4)
    assert ops.roi_loop_pool.select(feats, _huwsod_boxes()[:1], 0.125, 2)[0] == "vectorized"


@pytest.mark.slow
def test_huwsod_paper_like_sizes(triton_interpreter):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 24, 20, 25, generator=g)
    xy = torch.rand(60, 2, generator=g) * torch.tensor([200.0, 160.0])
    wh = torch.rand(60, 2, generator=g) * 120 + 4
    rois = torch.cat([torch.randint(0, 2, (60, 1), generator=g).float(), xy, xy + wh], dim=1)
    ref = ops.roi_loop_pool_vectorized(feats, rois, 0.125, 7, 1.8)
    tri = ops.roi_loop_pool_triton(feats, rois, 0.125, 7, 1.8)
    for a, b in zip(ref, tri):
        assert torch.equal(a, b)
