"""SwinIR (Liang et al., ICCVW 2021) for classical super-resolution, written fresh.

Parameter names follow the official SwinIR / BasicSR layout (``layers.{i}.residual_group.blocks.{j}...``),
so ``001_classicalSR_DIV2K_s48w8_SwinIR-M_x{2,3,4}.pth`` loads after dropping the buffers that are
recomputed here (``relative_position_index``, ``attn_mask``; see :mod:`paperzoo_dckd.convert`).

DCKD configurations (paper Table 1, released ``train_SwinIR_SRx*_DCKD.yml``):
teacher ``embed_dim=180, depths=[6]*6, num_heads=[6]*6`` (11.9M), student ``embed_dim=60, depths=[6]*4,
num_heads=[6]*4`` (1.2M); both ``window_size=8, mlp_ratio=2, upsampler='pixelshuffle', resi_connection='1conv'``.

Inputs of any size are reflect-padded to a multiple of the window size inside :meth:`SwinIR.forward` and the
output is cropped back (BasicSR's ``SwinIRModel.test`` does this padding outside the network).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo_dckd.models.common import (
    DIV2K_RGB_MEAN,
    FeaturePosition,
    PixelShuffleUpsample,
    check_positions,
    pad_to_multiple,
    stage_bounds,
)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``p`` in training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the (2w-1)^2 bias table for every (query, key) pair of a window (Swin, Eq. 4)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(nW, N, N) additive mask (0 or -100) that keeps shifted windows from mixing distant regions."""
    regions = torch.zeros(1, h, w, 1)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, hs, ws, :] = label
            label += 1
    ids = window_partition(regions, window).squeeze(-1)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (heads, N, N)
        if mask is None:
            attn_bias = bias.unsqueeze(0)
        else:
            nw = mask.shape[0]
            attn_bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).repeat(bw // nw, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention and an MLP, each pre-normed and residual."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        if self.shift == 0:
            return None
        key = (h, w, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(h, w, self.window, self.shift).to(device)
        return self._masks[key]

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self._mask(h, w, x.device))
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    def __init__(self, dim, depth, num_heads, window, mlp_ratio, drop_paths: Sequence[float]):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_paths[i]
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: a stack of Swin blocks, a conv, and a skip connection."""

    def __init__(self, dim, depth, num_heads, window, mlp_ratio, drop_paths, resi_connection: str):
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window, mlp_ratio, drop_paths)
        if resi_connection == "1conv":
            self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        elif resi_connection == "3conv":
            self.conv = nn.Sequential(
                nn.Conv2d(dim, dim // 4, 3, 1, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(dim // 4, dim, 3, 1, 1),
            )
        else:
            raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).reshape(b, c, *size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class _PatchNorm(nn.Module):
    """Holds the LayerNorm after the (identity, patch size 1) patch embedding: key ``patch_embed.norm``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class SwinIR(nn.Module):
    """SwinIR for x``upscale`` super-resolution of [0, 1] RGB images.

    Args:
        embed_dim: token width (180 teacher, 60 student).
        depths, num_heads: Swin blocks and heads per RSTB.
        window_size: attention window (8 in the DCKD configs).
        mlp_ratio: MLP hidden width / embed_dim (2).
        upsampler: ``"pixelshuffle"`` (conv 64 + PixelShuffle, used for both DCKD nets) or
            ``"pixelshuffledirect"`` (one conv + PixelShuffle, SwinIR-light).
        drop_path_rate: stochastic depth, linearly increasing over blocks (official default 0.1, which the
            released configs keep).
        img_size: accepted for config compatibility; any input size works.
    """

    def __init__(
        self,
        upscale: int = 2,
        in_chans: int = 3,
        img_size: int = 48,
        window_size: int = 8,
        img_range: float = 1.0,
        depths: Sequence[int] = (6, 6, 6, 6),
        embed_dim: int = 60,
        num_heads: Sequence[int] = (6, 6, 6, 6),
        mlp_ratio: float = 2.0,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        drop_path_rate: float = 0.1,
        num_feat: int = 64,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        if embed_dim % num_heads[0] != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads[0]}")
        self.upscale, self.window_size, self.img_range, self.upsampler = (
            upscale,
            window_size,
            img_range,
            upsampler,
        )
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = _PatchNorm(embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(
                RSTB(
                    embed_dim,
                    depth,
                    heads,
                    window_size,
                    mlp_ratio,
                    rates[start : start + depth],
                    resi_connection,
                )
            )
        self.norm = nn.LayerNorm(embed_dim)
        if resi_connection == "1conv":
            self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        else:
            self.conv_after_body = nn.Sequential(
                nn.Conv2d(embed_dim, embed_dim // 4, 3, 1, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(embed_dim // 4, embed_dim // 4, 1, 1, 0),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(embed_dim // 4, embed_dim, 3, 1, 1),
            )
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            self.upsample = PixelShuffleUpsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, upscale**2 * in_chans, 3, 1, 1), nn.PixelShuffle(upscale)
            )
        else:
            raise ValueError(f"upsampler must be 'pixelshuffle' or 'pixelshuffledirect', got {upsampler!r}")
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x, ())[0]

    def forward_stages(
        self, x: torch.Tensor, num_stages: int
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
        """The output, the features (B, C, H, W) after each of ``num_stages`` equal groups of RSTBs (MiPKD), and
        the state :meth:`forward_from_stage` needs (global-skip feature, padded size, output size)."""
        bounds = stage_bounds(len(self.layers), num_stages, "SwinIR")
        height, width = x.shape[-2:]
        x, _, _ = pad_to_multiple(x, self.window_size)
        size = (x.shape[-2], x.shape[-1])
        head = self.conv_first((x - self.mean.to(x)) * self.img_range)
        b, c = head.shape[:2]
        tokens = self.patch_embed.norm(head.flatten(2).transpose(1, 2))
        feats = []
        for index, layer in enumerate(self.layers):
            tokens = layer(tokens, size)
            if index + 1 in bounds:
                feats.append(tokens.transpose(1, 2).reshape(b, c, *size))
        state = {"head": head, "size": size, "out_size": (height * self.upscale, width * self.upscale)}
        return self._tail(tokens, state), feats, state

    def forward_from_stage(
        self, feature: torch.Tensor, stage: int, num_stages: int, state: dict
    ) -> torch.Tensor:
        """Runs the RSTBs after stage ``stage`` (1-based) on ``feature`` (B, C, H, W) and the tail."""
        bounds = stage_bounds(len(self.layers), num_stages, "SwinIR")
        if not 1 <= stage <= num_stages:
            raise ValueError(f"stage must be in 1..{num_stages}, got {stage}")
        tokens = feature.flatten(2).transpose(1, 2)
        for layer in list(self.layers)[bounds[stage - 1] :]:
            tokens = layer(tokens, state["size"])
        return self._tail(tokens, state)

    def _tail(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        head = state["head"]
        b, c = head.shape[:2]
        body = self.conv_after_body(self.norm(tokens).transpose(1, 2).reshape(b, c, *state["size"]))
        x = body + head
        if self.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            out = self.upsample(x)
        out = out / self.img_range + self.mean.to(out)
        return out[..., : state["out_size"][0], : state["out_size"][1]]

    def forward_features(
        self, x: torch.Tensor, positions: Sequence[FeaturePosition]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and feature maps at ``positions`` (``conv_first``, RSTB indices, ``conv_after_body``)."""
        check_positions(positions, len(self.layers), "SwinIR")
        height, width = x.shape[-2:]
        x, _, _ = pad_to_multiple(x, self.window_size)
        size = (x.shape[-2], x.shape[-1])
        feats: dict[FeaturePosition, torch.Tensor] = {}
        x = (x - self.mean.to(x)) * self.img_range
        x = self.conv_first(x)
        feats["conv_first"] = x
        b, c = x.shape[:2]
        tokens = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for index, layer in enumerate(self.layers):
            tokens = layer(tokens, size)
            if index in positions:
                feats[index] = tokens.transpose(1, 2).reshape(b, c, *size)
        body = self.norm(tokens).transpose(1, 2).reshape(b, c, *size)
        body = self.conv_after_body(body)
        feats["conv_after_body"] = body
        x = body + x
        if self.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            out = self.upsample(x)
        out = out / self.img_range + self.mean.to(out)
        out = out[..., : height * self.upscale, : width * self.upscale]
        return out, [feats[p] for p in positions]
