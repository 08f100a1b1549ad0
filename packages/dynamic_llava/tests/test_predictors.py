"""The image predictor's forward on a case computed by hand (paper Fig. 2 / official ``VisionPredictor``):
local half per token, global half averaged over the kept tokens, concatenated local-then-global."""

from __future__ import annotations

import math

import pytest
import torch
from paperzoo_dynamic_llava.configuration import SparseConfig
from paperzoo_dynamic_llava.modeling_dynamic_llava import ImagePredictor


def _gelu(z: float) -> float:  # exact (erf) GELU, nn.GELU's default
    return 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))


def _hand_predictor() -> ImagePredictor:
    """Input 2 channels, d = 4. LayerNorm (ones/zeros), then channel 0 = gelu(n0) and channel 2 = gelu(2 n0) of
    the normalised input channel n0;
    the ViT block's residual branches are zeroed (identity); the output MLP reads [local 0, global 0] into
    s = gelu(local) - 2 gelu(global), and the logits are (gelu(s), -gelu(s))."""
    torch.manual_seed(0)
    p = ImagePredictor(2, SparseConfig(d_model=4, nhead=2, dim_feedforward=8, num_layers=1))
    with torch.no_grad():
        for param in p.parameters():
            param.zero_()
        p.down_mlp[0].weight.fill_(1.0)
        p.down_mlp[1].weight[0, 0] = 1.0
        p.down_mlp[1].weight[2, 0] = 2.0
        for block in p.transformer:
            block.norm1.weight.fill_(1.0)
            block.norm2.weight.fill_(1.0)  # attn.proj and mlp.fc2 stay zero: the block is the identity
        first, second, third = p.output_mlp[0], p.output_mlp[2], p.output_mlp[4]
        first.weight[0, 0] = 1.0  # local channel 0
        first.weight[1, 2] = 1.0  # global channel 0 (channel 2 of the concatenation)
        second.weight[0] = torch.tensor([1.0, -2.0])
        third.weight[:, 0] = torch.tensor([1.0, -1.0])
    return p


def _expected(tokens: list[tuple[float, float]], keep: list[float]) -> list[tuple[float, float]]:
    eps = 1e-5  # nn.LayerNorm's
    normalised = [(a - (a + b) / 2) / math.sqrt(((a - b) / 2) ** 2 + eps) for a, b in tokens]  # LN, channel 0
    y0 = [_gelu(n) * k for n, k in zip(normalised, keep)]  # down_mlp(x) * prev_keep, channel 0 (local half)
    y2 = [_gelu(2.0 * n) * k for n, k in zip(normalised, keep)]  # channel 2 (global half)
    glob = sum(v * k for v, k in zip(y2, keep)) / sum(keep)  # averaged over the kept tokens only
    out = []
    for u in y0:
        s = _gelu(_gelu(u) - 2.0 * _gelu(glob))
        out.append((s, -s))
    return out


@pytest.mark.parametrize("keep", [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
def test_image_predictor_forward_equals_the_hand_computation(keep):
    tokens = [(1.0, 0.0), (0.0, 1.0), (3.0, -1.0)]
    predictor = _hand_predictor()
    x = torch.tensor([tokens])
    prev = torch.tensor(keep)[None, :, None]
    with torch.no_grad():
        got = predictor(x, None if keep == [1.0, 1.0, 1.0] else prev)[0]
    torch.testing.assert_close(got, torch.tensor(_expected(tokens, keep)), atol=1e-6, rtol=1e-6)
