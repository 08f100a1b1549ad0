"""The frozen feature encoder of DCKD: the encoder half of a taming-transformers VQGAN, written fresh.

DCKD takes two things from a pretrained VQGAN (``VQGAN_f16_n1024``: ``ch=128, ch_mult=[1,1,2,2,4],
num_res_blocks=2, attn_resolutions=[16], z_channels=256``, codebook 1024 x 256):

* :meth:`VQGANEncoder.level_features` - the output of the *first* ResnetBlock of each of the 5 resolution
  levels (1, 1/2, 1/4, 1/8, 1/16 of the input), before any attention: the features of the dynamic contrastive
  regularization (paper Eq. 5; released ``get_feas``);
* :meth:`VQGANEncoder.encode` - the full encoder, the 1x1 ``quant_conv`` and the codebook, giving per
  position the embedding ``z`` whose squared distances to the codes feed the distribution mapping module
  (paper Eqs. 7-8).

Parameter names follow taming's (``encoder.down.{i}.block.{j}...``, ``quant_conv``,
``quantize.embedding.weight``) so the checkpoint's ``state_dict`` maps with a strict key check
(:func:`paperzoo_dckd.convert.load_vqgan_encoder`). The same class with a small configuration is the mini
preset's stand-in encoder, which :mod:`paperzoo_dckd.reproduce` trains as a VQ autoencoder on HR patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions (used at the 16x16 level of the f16 encoder)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after asymmetric (right/bottom) zero padding, as in taming."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Level(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)


class Encoder(nn.Module):
    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        z_channels: int,
        in_channels: int = 3,
        norm_groups: int = 32,
    ):
        super().__init__()
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        in_mult = (1, *ch_mult)
        res = resolution
        block_in = ch
        for level, mult in enumerate(ch_mult):
            stage = _Level()
            block_in, block_out = ch * in_mult[level], ch * mult
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, norm_groups))
                block_in = block_out
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(block_in, norm_groups))
            if level != len(ch_mult) - 1:
                stage.downsample = Downsample(block_in)
                res //= 2
            self.down.append(stage)
        self.mid = _Mid(block_in, norm_groups)
        self.norm_out = nn.GroupNorm(norm_groups, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_levels(x)[1]

    def forward_with_levels(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One pass: (the first ResnetBlock's output at every level, the encoder output)."""
        feats = []
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if i == 0:
                    feats.append(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return feats, self.conv_out(swish(self.norm_out(h)))

    def level_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The first ResnetBlock's output at every level (no attention applied to it), as in ``get_feas``."""
        feats = []
        h = self.conv_in(x)
        last = len(self.down) - 1
        for level, stage in enumerate(self.down):
            for i, block in enumerate(stage.block):
                h = block(h)
                if i == 0:
                    feats.append(h)
                    if level == last:
                        return feats  # nothing deeper is used
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            h = stage.downsample(h)
        return feats


class Codebook(nn.Module):
    """The VQ codebook (key ``quantize.embedding.weight``)."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def squared_distances(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) embeddings -> (B*H*W, M) squared L2 distances to the M codes (paper Eq. 8's d)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codes = self.embedding.weight
        return flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2.0 * flat @ codes.t()


class VQGANEncoder(nn.Module):
    """Encoder + ``quant_conv`` + codebook of a VQGAN (no decoder): DCKD's frozen feature extractor."""

    num_levels = 5

    def __init__(
        self,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        resolution: int = 256,
        z_channels: int = 256,
        embed_dim: int = 256,
        n_embed: int = 1024,
        norm_groups: int = 32,
    ):
        super().__init__()
        if len(ch_mult) != self.num_levels:
            raise ValueError(f"DCKD uses 5 encoder levels; ch_mult {list(ch_mult)} has {len(ch_mult)}")
        self.encoder = Encoder(
            ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, 3, norm_groups
        )
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantize = Codebook(n_embed, embed_dim)

    def level_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 5 multi-level features of the contrastive loss (paper Eq. 5)."""
        return self.encoder.level_features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation embedding ``quant_conv(encoder(x))``, (B, embed_dim, H/16, W/16)."""
        return self.quant_conv(self.encoder(x))

    def squared_distances(self, x: torch.Tensor) -> torch.Tensor:
        """(B*h*w, M) squared distances of every position's embedding to every code."""
        return self.quantize.squared_distances(self.embed(x))

    def levels_and_distances(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """:meth:`level_features` and :meth:`squared_distances` from one encoder pass (DCR + DMM)."""
        feats, h = self.encoder.forward_with_levels(x)
        return feats, self.quantize.squared_distances(self.quant_conv(h))
