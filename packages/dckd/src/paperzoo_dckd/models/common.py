"""Pieces shared by the super-resolution backbones (BasicSR layout, so official weights map one to one)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""Mean colour of DIV2K, subtracted by EDSR, RCAN and SwinIR before the body (BasicSR ``rgb_mean``)."""

FeaturePosition = int | str
"""Where a backbone exposes a feature map for FAKD: ``"conv_first"``, a block/group index, ``"conv_after_body"``."""


class PixelShuffleUpsample(nn.Sequential):
    """``log2(scale)`` x (conv to 4C + PixelShuffle(2)) for powers of two, or conv to 9C + PixelShuffle(3).

    The layout (indices 0, 2, ... are convolutions) is BasicSR's ``Upsample`` so checkpoints load directly.
    """

    def __init__(self, scale: int, num_feat: int):
        layers: list[nn.Module] = []
        if scale >= 1 and scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"upscale {scale} is not supported; use a power of two or 3")
        super().__init__(*layers)


def check_positions(positions: Sequence[FeaturePosition], num_blocks: int, arch: str) -> None:
    """Validates FAKD feature positions against a backbone with ``num_blocks`` body blocks."""
    for position in positions:
        if isinstance(position, str):
            if position not in ("conv_first", "conv_after_body"):
                raise ValueError(
                    f"{arch}: unknown feature position {position!r}; use 'conv_first', 'conv_after_body' "
                    f"or a block index in 0..{num_blocks - 1}"
                )
        elif not 0 <= position < num_blocks:
            raise ValueError(f"{arch}: feature position {position} is outside the body's 0..{num_blocks - 1}")


def stage_bounds(num_blocks: int, num_stages: int, arch: str) -> list[int]:
    """Block index at which each of ``num_stages`` equal, contiguous stages of a body of ``num_blocks`` blocks
    ends (MiPKD's stage partition, e.g. 4 blocks in 2 stages -> [2, 4]); the count must divide evenly."""
    if num_stages < 1 or num_blocks % num_stages:
        raise ValueError(
            f"{arch}: a body of {num_blocks} blocks cannot be split into {num_stages} equal stages "
            "(dckd.mipkd.stages must divide the number of body blocks of teacher and student)"
        )
    size = num_blocks // num_stages
    return [size * (k + 1) for k in range(num_stages)]


class ResidualSRNet(nn.Module):
    """The EDSR / RCAN skeleton in BasicSR's layout: mean shift, ``conv_first``, a body of ``num_blocks``
    blocks, ``conv_after_body``, the global skip, the pixel-shuffle upsampler and ``conv_last``.

    FAKD reads features at ``conv_first``, at every body block (by index) and at ``conv_after_body``. Modules
    are created in BasicSR's order, so a seeded initialisation equals the original architectures'.
    """

    def __init__(
        self,
        num_in_ch: int,
        num_out_ch: int,
        num_feat: int,
        upscale: int,
        img_range: float,
        rgb_mean: Sequence[float],
        make_block: Callable[[], nn.Module],
        num_blocks: int,
    ):
        super().__init__()
        self.upscale = upscale
        self.img_range = img_range
        self.register_buffer(
            "mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[make_block() for _ in range(num_blocks)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = PixelShuffleUpsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x, ())[0]

    def forward_stages(
        self, x: torch.Tensor, num_stages: int
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """The output, the body features at the end of each of ``num_stages`` equal stages (MiPKD), and the
        state :meth:`forward_from_stage` needs (the ``conv_first`` feature of the global skip)."""
        bounds = stage_bounds(len(self.body), num_stages, type(self).__name__)
        x = (x - self.mean.to(x)) * self.img_range
        head = self.conv_first(x)
        res, feats = head, []
        for index, block in enumerate(self.body):
            res = block(res)
            if index + 1 in bounds:
                feats.append(res)
        return self._tail(res, head), feats, {"head": head}

    def forward_from_stage(
        self, feature: torch.Tensor, stage: int, num_stages: int, state: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Runs the body from the end of stage ``stage`` (1-based; ``feature`` is that stage's output, in this
        network's width) to the output, with ``state`` from :meth:`forward_stages` of this network."""
        bounds = stage_bounds(len(self.body), num_stages, type(self).__name__)
        if not 1 <= stage <= num_stages:
            raise ValueError(f"stage must be in 1..{num_stages}, got {stage}")
        res = feature
        for block in list(self.body)[bounds[stage - 1] :]:
            res = block(res)
        return self._tail(res, state["head"])

    def _tail(self, res: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        out = self.conv_last(self.upsample(self.conv_after_body(res) + head))
        return out / self.img_range + self.mean.to(out)

    def forward_features(
        self, x: torch.Tensor, positions: Sequence[FeaturePosition]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and the feature maps at ``positions`` (FAKD)."""
        check_positions(positions, len(self.body), type(self).__name__)
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


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, int, int]:
    """Pads an NCHW tensor on the bottom/right to a multiple of ``multiple`` (SwinIR test-time padding).

    Returns the padded tensor and the bottom/right padding, so the output can be cropped back.
    """
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h or pad_w:
        if mode == "reflect" and (pad_h >= height or pad_w >= width):
            mode = "replicate"  # reflect padding needs the pad to be smaller than the side
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, pad_h, pad_w
