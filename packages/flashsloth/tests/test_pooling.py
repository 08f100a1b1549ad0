"""Spatial attention pooling (Sec. 3.2): window softmax, constant scorer = average pooling, vectorised = loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from paperzoo_flashsloth.modeling_flashsloth import AveragePooling, SpatialAttentionPooling, to_windows


def loop_pooling(pool: SpatialAttentionPooling, x: torch.Tensor, p: int) -> torch.Tensor:
    """An independent loop over the windows, as the official AttentionPooling.forward computes it."""
    b, n, d = x.shape
    side = int(round(n**0.5))
    grid = x.view(b, side, side, d)
    out = []
    for i in range(0, side, p):
        for j in range(0, side, p):
            region = grid[:, i : i + p, j : j + p, :].reshape(b, -1, d)
            alpha = torch.softmax(pool.scorer(region), dim=1)
            out.append((alpha * region).sum(dim=1))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("side,p", [(6, 3), (27, 3), (8, 2)])
def test_vectorised_equals_loop(side, p):
    torch.manual_seed(0)
    pool = SpatialAttentionPooling(8, pool_size=p, dropout=0.0).eval()
    x = torch.randn(2, side * side, 8)
    got = pool(x)
    assert got.shape == (2, (side // p) ** 2, 8)
    torch.testing.assert_close(got, loop_pooling(pool, x, p), rtol=1e-5, atol=1e-6)


def test_729_tokens_become_81():
    pool = SpatialAttentionPooling(4, pool_size=3, dropout=0.0)
    assert pool(torch.randn(1, 729, 4)).shape == (1, 81, 4)


def test_window_weights_sum_to_one():
    torch.manual_seed(1)
    pool = SpatialAttentionPooling(8, pool_size=3, dropout=0.0)
    weights = pool.window_weights(to_windows(torch.randn(3, 36, 8), 3))
    assert weights.shape == (3, 4, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert (weights > 0).all()


def test_constant_scorer_equals_average_pooling():
    torch.manual_seed(2)
    pool = SpatialAttentionPooling(8, pool_size=3, dropout=0.0)
    with torch.no_grad():  # the scorer's last layer ignores its input: every logit is 0.7
        pool.scorer[3].weight.zero_()
        pool.scorer[3].bias.fill_(0.7)
    x = torch.randn(2, 81, 8)
    reference = F.avg_pool2d(x.view(2, 9, 9, 8).permute(0, 3, 1, 2), kernel_size=3)
    reference = reference.permute(0, 2, 3, 1).reshape(2, 9, 8)
    torch.testing.assert_close(pool(x), reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(AveragePooling(3)(x), reference, rtol=1e-5, atol=1e-6)


def test_window_order_is_raster_and_row_major():
    x = torch.arange(36.0).view(1, 36, 1)  # token t holds value t on a 6x6 grid
    windows = to_windows(x, 3)[0, :, :, 0]
    assert windows[0].tolist() == [0, 1, 2, 6, 7, 8, 12, 13, 14]
    assert windows[1].tolist() == [3, 4, 5, 9, 10, 11, 15, 16, 17]
    assert windows[2, 0].item() == 18


@pytest.mark.parametrize("n,p", [(30, 3), (49, 3)])
def test_bad_grids_are_refused(n, p):
    with pytest.raises(ValueError, match="square|windows"):
        SpatialAttentionPooling(4, pool_size=p)(torch.randn(1, n, 4))
