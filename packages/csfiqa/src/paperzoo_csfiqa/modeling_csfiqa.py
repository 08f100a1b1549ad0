"""CSFIQA: a dual-branch multi-scale encoder, selective focus attention (SFA) and a quality regressor.

Paper: "Scale Contrastive Learning with Selective Attentions for Blind Image Quality Assessment"
(arXiv 2411.09007). The full text and code are not public; what is known (notes Sec. 2.2) is: a CrossViT
encoder whose small- and large-patch branches are the two *scales*, exchanging information by CLS
cross-attention; SFA = a *filtering selector* that keeps the most quality-relevant cross-scale tokens (top-k)
and an *information focuser* that amplifies them, in the later version a frozen LLaMA-7B layer; 233M
parameters and 45 GMACs in total. Everything else is **reconstructed**; each such choice says so and why.

Layout of a forward pass (shapes for CrossViT-S/240, batch B):

    image (B, 3, 240, 240)
      -> timm CrossVit.forward_features -> small branch (B, 1+400, 192), large branch (B, 1+196, 384)
      -> per-branch projection into one token space, concatenated      (B, 596, dim)
      -> TopKSelector: score every token, keep the k best             (B, k, dim)
      -> InformationFocuser: linear in -> frozen block -> linear out, residual  (B, k, dim)
      -> mean of the focused tokens ++ both projected CLS tokens -> MLP -> quality (B,)

Beside the score the model returns what the losses need: one embedding per branch (from its CLS token) for
scale contrastive learning, and per-branch region features on a common grid for noise sample matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.crossvit import CrossVit
from timm.models.vision_transformer import Block
from torch import nn

from paperzoo_csfiqa.configuration import EncoderConfig, ModelConfig, SFAConfig

LLAMA_7B = {"block_dim": 4096, "block_heads": 32, "block_intermediate": 11008}
"""LLaMA-7B's layer shapes (hidden 4096, 32 heads, SwiGLU 11008)."""


def llama_block_parameters(hidden: int = 4096, intermediate: int = 11008) -> int:
    """Parameters of one LLaMA decoder layer: q, k, v, o (4 h^2, no bias) + SwiGLU (3 h i) + 2 RMSNorms (2 h).

    For LLaMA-7B: 4 * 4096^2 + 3 * 4096 * 11008 + 2 * 4096 = 202,383,360.
    """
    return 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden


# ---------------------------------------------------------------------------------------------------------
# The dual-branch multi-scale encoder (timm's CrossViT)
# ---------------------------------------------------------------------------------------------------------


class DualScaleEncoder(nn.Module):
    """timm's ``CrossVit`` without its classifier; returns both branches' normalised token sequences.

    Each sequence starts with the branch's CLS token, which the cross-attention of every multi-scale block
    exchanges with the other branch (CrossViT, Chen et al. 2021). The defaults are ``crossvit_small_240``.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.vit = CrossVit(
            img_size=config.img_size,
            img_scale=tuple(config.img_scale),
            patch_size=tuple(config.patch_sizes),
            embed_dim=tuple(config.embed_dims),
            depth=tuple(tuple(d) for d in config.depth),
            num_heads=tuple(config.num_heads),
            mlp_ratio=tuple(config.mlp_ratio),
            drop_path_rate=config.drop_path_rate,
            num_classes=0,
        )
        self.grids = [
            (int(config.img_size * s) // p, int(config.img_size * s) // p)
            for s, p in zip(config.img_scale, config.patch_sizes)
        ]
        """(rows, cols) of each branch's patch grid."""

    @property
    def dims(self) -> list[int]:
        return list(self.config.embed_dims)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.vit.forward_features(images)


# ---------------------------------------------------------------------------------------------------------
# Selective focus attention
# ---------------------------------------------------------------------------------------------------------


def topk_tokens(tokens: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest-scoring tokens per image, in descending score order, and their indices.

    tokens (B, N, D), scores (B, N) -> (B, k, D), (B, k). Ties keep the lower index first (stable sort).
    """
    if not 1 <= k <= tokens.shape[1]:
        raise ValueError(f"k must be in [1, {tokens.shape[1]}], got {k}")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    picked = torch.gather(tokens, 1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return picked, order


class TopKSelector(nn.Module):
    """SFA's filtering selector: a learned score per cross-scale token; the top-k tokens go on.

    Reconstructed: the paper's scoring function is not public (reviewers describe "top-k masking"). A
    LayerNorm + linear scorer is the smallest learnable choice; multiplying each kept token by
    ``sigmoid(score)`` gives the scorer a gradient (hard top-k alone has none), as in DynamicViT-style pruning.
    Tokens that are not kept receive no gradient.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)

    def forward(self, tokens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (B, N, D) -> kept (B, k, D) weighted by their gate, indices (B, k), scores (B, N)."""
        scores = self.score(self.norm(tokens)).squeeze(-1)
        kept, indices = topk_tokens(tokens, scores, k)
        gate = torch.sigmoid(torch.gather(scores, 1, indices)).unsqueeze(-1)
        return kept * gate, indices, scores


class FrozenLlamaBlock(nn.Module):
    """One LLaMA decoder layer (transformers' ``LlamaDecoderLayer``) used as a frozen visual layer.

    As in "Frozen Transformers in Language Models Are Effective Visual Encoder Layers" (Pang et al., ICLR
    2024), which the ICLR version of CSFIQA follows: no causal mask (the selected tokens have no order;
    reconstructed), rotary positions 0..k-1 in descending-score order.
    """

    def __init__(self, hidden: int, heads: int, intermediate: int):
        super().__init__()
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

        config = LlamaConfig(
            hidden_size=hidden,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            intermediate_size=intermediate,
            num_hidden_layers=1,
            vocab_size=32000,  # unused: only one decoder layer is built, no embeddings
        )
        config._attn_implementation = "sdpa"
        self.layer = LlamaDecoderLayer(config, layer_idx=0)
        self.layer.self_attn.is_causal = False
        self.rotary = LlamaRotaryEmbedding(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0).expand(x.shape[0], -1)
        cos_sin = self.rotary(x, positions)
        return self.layer(x, position_ids=positions, position_embeddings=cos_sin)


def build_frozen_block(config: SFAConfig) -> nn.Module:
    """The focuser's frozen block: LLaMA-shaped, a small timm ViT block, or identity (ablation switch).

    Random weights come from ``config.block_seed`` (real LLaMA weights are not available offline; a
    ``block_checkpoint`` loads one layer's state dict strictly). Every parameter is frozen.
    """
    if config.frozen_block == "identity":
        return nn.Identity()
    with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's random stream
        torch.manual_seed(config.block_seed)
        if config.frozen_block == "llama":
            block: nn.Module = FrozenLlamaBlock(
                config.block_dim, config.block_heads, config.block_intermediate
            )
        else:
            block = Block(dim=config.block_dim, num_heads=config.block_heads, mlp_ratio=4.0, qkv_bias=True)
    if config.block_checkpoint is not None:
        state = torch.load(config.block_checkpoint, map_location="cpu", weights_only=True)
        target = block.layer if isinstance(block, FrozenLlamaBlock) else block
        target.load_state_dict(state, strict=True)
    for parameter in block.parameters():
        parameter.requires_grad_(False)
    return block


class InformationFocuser(nn.Module):
    """SFA's information focuser: ``x + W_out(block(W_in x))`` with a frozen ``block``.

    The trainable linear adapters around a frozen LLM layer follow Pang et al. (ICLR 2024); the residual is
    reconstructed (it keeps the ``identity`` switch a plain linear adapter, so the ablation isolates the block).
    The frozen block stays in eval mode whatever ``train()`` is called with.
    """

    def __init__(self, dim: int, config: SFAConfig):
        super().__init__()
        width = dim if config.frozen_block == "identity" else config.block_dim
        self.proj_in = nn.Linear(dim, width)
        self.block = build_frozen_block(config)
        self.proj_out = nn.Linear(width, dim)

    def train(self, mode: bool = True) -> InformationFocuser:
        super().train(mode)
        self.block.eval()
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.proj_out(self.block(self.proj_in(tokens)))


def num_kept(config: SFAConfig, num_tokens: int) -> int:
    """k of the selector: ``top_k`` if set (capped at the token count), else ``ceil(keep_ratio * N)``."""
    if config.top_k is not None:
        return min(config.top_k, num_tokens)
    return max(1, math.ceil(config.keep_ratio * num_tokens))


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


@dataclass
class CSFIQAOutput:
    score: torch.Tensor
    """(B,) predicted quality (on the normalised MOS scale, higher is better)."""
    embeddings: tuple[torch.Tensor, torch.Tensor]
    """(B, E) per branch (small, large): the contrastive embeddings of the CLS tokens (not normalised)."""
    regions: tuple[torch.Tensor, torch.Tensor]
    """(B, G*G, E) per branch: region features on the common NSM grid (not normalised)."""
    kept_indices: torch.Tensor | None = None
    """(B, k) indices into the concatenated [small; large] patch tokens that SFA kept (None without SFA)."""
    token_scores: torch.Tensor | None = None
    """(B, N) the selector's scores."""


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class CSFIQA(nn.Module):
    """The full model (see the module docstring for the data flow)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = DualScaleEncoder(config.encoder)
        dim = config.sfa.dim
        self.token_proj = nn.ModuleList(
            nn.Identity() if d == dim else nn.Linear(d, dim) for d in self.encoder.dims
        )
        if config.use_sfa:
            self.selector = TopKSelector(dim)
            self.focuser = InformationFocuser(dim, config.sfa)
        # Reconstructed: the head reads the focused tokens (mean) and both branches' CLS tokens.
        self.head = _mlp(3 * dim, config.head_hidden, 1)
        # Reconstructed: SimCLR-style 2-layer projection heads, one per scale, for SCL and NSM.
        self.contrast_proj = nn.ModuleList(_mlp(d, d, config.embed_dim) for d in self.encoder.dims)

    @property
    def num_tokens(self) -> int:
        return sum(r * c for r, c in self.encoder.grids)

    def regions(self, patch_tokens: torch.Tensor, branch: int) -> torch.Tensor:
        """(B, N_b, D_b) patch tokens -> (B, G*G, E) region embeddings: mean over each cell of a G x G grid."""
        rows, cols = self.encoder.grids[branch]
        grid = patch_tokens.transpose(1, 2).reshape(patch_tokens.shape[0], -1, rows, cols)
        pooled = F.adaptive_avg_pool2d(grid, self.config.nsm_grid).flatten(2).transpose(1, 2)
        return self.contrast_proj[branch](pooled)

    def forward(self, images: torch.Tensor) -> CSFIQAOutput:
        branches = self.encoder(images)
        cls = [proj(x[:, 0]) for proj, x in zip(self.token_proj, branches)]
        patches = [x[:, 1:] for x in branches]
        tokens = torch.cat([proj(p) for proj, p in zip(self.token_proj, patches)], dim=1)
        kept_indices = token_scores = None
        if self.config.use_sfa:
            k = num_kept(self.config.sfa, tokens.shape[1])
            kept, kept_indices, token_scores = self.selector(tokens, k)
            pooled = self.focuser(kept).mean(dim=1)
        else:
            pooled = tokens.mean(dim=1)
        score = self.head(torch.cat([pooled, *cls], dim=-1)).squeeze(-1)
        embeddings = tuple(proj(x[:, 0]) for proj, x in zip(self.contrast_proj, branches))
        regions = tuple(self.regions(p, b) for b, p in enumerate(patches))
        return CSFIQAOutput(score, embeddings, regions, kept_indices, token_scores)


# ---------------------------------------------------------------------------------------------------------
# Parameter and MAC accounting
# ---------------------------------------------------------------------------------------------------------


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: CSFIQA) -> dict[str, int]:
    """Parameters per part (encoder, SFA selector/adapters/frozen block, heads) and in total."""
    parts = {
        "encoder": count_parameters(model.encoder),
        "token_proj": count_parameters(model.token_proj),
        "head": count_parameters(model.head),
        "contrast_proj": count_parameters(model.contrast_proj),
    }
    if model.config.use_sfa:
        parts["selector"] = count_parameters(model.selector)
        parts["focuser_adapters"] = count_parameters(model.focuser.proj_in) + count_parameters(
            model.focuser.proj_out
        )
        parts["frozen_block"] = count_parameters(model.focuser.block)
    parts["total"] = count_parameters(model)
    parts["trainable"] = count_parameters(model, trainable_only=True)
    return parts


def count_macs(model: nn.Module, images: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass: half the FLOPs torch's ``FlopCounterMode`` counts
    (matmuls, convolutions, attention). Works on the meta device, so the full model needs no memory."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() // 2


def build_model(config: ModelConfig) -> CSFIQA:
    return CSFIQA(config)
