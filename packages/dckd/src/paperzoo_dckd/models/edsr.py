"""EDSR (Lim et al., CVPRW 2017) in BasicSR's layout: residual blocks without batch norm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo_dckd.models.common import DIV2K_RGB_MEAN, ResidualSRNet


class ResidualBlockNoBN(nn.Module):
    """conv - ReLU - conv, scaled by ``res_scale`` and added to the input."""

    def __init__(self, num_feat: int, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class EDSR(ResidualSRNet):
    """EDSR for x``upscale`` super-resolution of [0, 1] RGB images.

    Args:
        num_feat: width (64 for EDSR-M / the DUKD student, 256 for EDSR-L).
        num_block: residual blocks (16 for M, 32 for L).
        upscale: 2, 3, 4 (or any power of two).
        res_scale: residual scaling (0.1 for EDSR-L).
        img_range: the body sees ``(x - mean) * img_range`` (255 in BasicSR's EDSR).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
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
            lambda: ResidualBlockNoBN(num_feat, res_scale),
            num_block,
        )
