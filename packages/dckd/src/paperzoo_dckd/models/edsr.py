"""EDSR (Lim et al., CVPRW 2017) in BasicSR's layout: residual blocks without batch norm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo_dckd.models.common import DIV2K_RGB_MEAN, FeaturePosition, PixelShuffleUpsample, check_positions


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


class EDSR(nn.Module):
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
        super().__init__()
        self.upscale = upscale
        self.img_range = img_range
        self.register_buffer(
            "mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = PixelShuffleUpsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x, ())[0]

    def forward_features(
        self, x: torch.Tensor, positions: Sequence[FeaturePosition]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and the feature maps at ``positions`` (FAKD)."""
        check_positions(positions, len(self.body), "EDSR")
        feats: dict[FeaturePosition, torch.Tensor] = {}
        x = (x - self.mean.to(x)) * self.img_range
        x = self.conv_first(x)
        feats["conv_first"] = x
        res = x
        for index, block in enumerate(self.body):
            res = block(res)
            feats[index] = res
        res = self.conv_after_body(res)
        feats["conv_after_body"] = res
        out = self.conv_last(self.upsample(res + x))
        return out / self.img_range + self.mean.to(x), [feats[p] for p in positions]
