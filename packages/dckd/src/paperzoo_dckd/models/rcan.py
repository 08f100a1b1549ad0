"""RCAN (Zhang et al., ECCV 2018) in BasicSR's layout: residual groups of channel-attention blocks.

DCKD's RCAN teacher has 10 groups x 20 blocks (15.6M parameters at x4) and its student 10 groups x 6 blocks
(5.2M). Official RCAN checkpoints (``RCAN_BIX{2,3,4}.pt``, EDSR-PyTorch layout) are mapped by
:func:`paperzoo_dckd.convert.convert_official_rcan`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo_dckd.models.common import DIV2K_RGB_MEAN, ResidualSRNet


class ChannelAttention(nn.Module):
    """Squeeze (global average pool) and excite (two 1x1 convs and a sigmoid)."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel-attention block: conv - ReLU - conv - CA, added to the input."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.rcab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.rcab(x) * self.res_scale


class ResidualGroup(nn.Module):
    """``num_block`` RCABs and a conv, with a skip connection around the group."""

    def __init__(self, num_feat: int, num_block: int, squeeze_factor: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.residual_group = nn.Sequential(
            *[RCAB(num_feat, squeeze_factor, res_scale) for _ in range(num_block)]
        )
        self.conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.residual_group(x))


class RCAN(ResidualSRNet):
    """RCAN for x``upscale`` super-resolution of [0, 1] RGB images (``img_range`` 255 as in BasicSR)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_group: int = 10,
        num_block: int = 20,
        squeeze_factor: int = 16,
        upscale: int = 4,
        res_scale: float = 1.0,
        img_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ):
        super().__init__(
            num_in_ch,
            num_out_ch,
            num_feat,
            upscale,
            img_range,
            rgb_mean,
            lambda: ResidualGroup(num_feat, num_block, squeeze_factor, res_scale),
            num_group,
        )
