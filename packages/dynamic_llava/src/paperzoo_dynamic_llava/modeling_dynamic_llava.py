"""Dynamic-LLaVA on transformers' LLaVA classes: the paper's new parts in one file.

``DynamicLlavaForConditionalGeneration`` is a ``LlavaForConditionalGeneration`` (CLIP/SigLIP tower,
``mlp2x_gelu`` projector, Llama decoder; same weights and state-dict keys as llava-hf) plus two predictors,
and runs the decoder itself, layer by layer, reusing each layer's own projections, norms and MLP:

* layers ``< sparse_layer`` are dense; at the input of ``sparse_layer`` (paper Sec. 3.2, l = 2) the image
  predictor scores the image tokens and the output-text predictor scores generated tokens; the decision
  holds for every later layer;
* **training** (``execution="mask"``): hard Gumbel-softmax decisions with straight-through gradients
  (Eq. 7-8) applied as key-side weights in a MaskedSoftmax attention (Eq. 9-10), plus the keep-ratio
  losses (Eq. 11-12);
* **prefill** and **decoding without KV cache** (``execution="prune"``): dropped tokens are physically
  removed; kept tokens keep their original RoPE positions;
* **decoding with KV cache** (:class:`GatedKVCache`): each new token attends to the cache and itself, and
  its K/V enters the caches of layers ``>= sparse_layer`` only if the output-text predictor keeps it.

Every path carries per-sample real-token masks, positions and cache lengths, so left-padded batches give the
per-sample results in every layer (the official code drops the attention mask after layer 0).
Token selection can also be ``dense``, ``random`` or ``fastv`` (the paper's baselines) on the same code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration
from transformers.models.llava.modeling_llava import LlavaModel, LlavaPreTrainedModel
from transformers.utils import ModelOutput

from paperzoo_dynamic_llava.configuration import SELECTIONS, SparseConfig
from paperzoo_shared.kernels.gated_decode_attention import gated_decode_attention

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------------
# The predictors (paper Sec. 3.2, Fig. 2; official VisionPredictor / TextPredictor). Index 0 = keep.
# ----------------------------------------------------------------------------------------------------


class _ViTAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _ViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _ViTBlock(nn.Module):
    """Pre-LN ViT block (timm layout: qkv without bias, no layer scale, no drop path)."""

    def __init__(self, dim: int, num_heads: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _ViTAttention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), _ViTMlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImagePredictor(nn.Module):
    """Scores image tokens from their hidden states at the input of ``sparse_layer``.

    LN -> Linear(C, d) -> GELU; ViT blocks; the last d/2 channels are averaged over kept tokens into a
    global vector concatenated to the first d/2 (local) channels; MLP d -> d/2 -> d/4 -> 2.
    """

    def __init__(self, input_dim: int, cfg: SparseConfig):
        super().__init__()
        d = cfg.d_model
        self.down_mlp = nn.Sequential(nn.LayerNorm(input_dim), nn.Linear(input_dim, d), nn.GELU())
        self.transformer = nn.Sequential(
            *[_ViTBlock(d, cfg.nhead, cfg.dim_feedforward) for _ in range(cfg.num_layers)]
        )
        self.output_mlp = nn.Sequential(
            nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, d // 4), nn.GELU(), nn.Linear(d // 4, 2)
        )

    def forward(self, x: torch.Tensor, prev_keep: torch.Tensor | None = None) -> torch.Tensor:
        prev = torch.ones_like(x[..., :1]) if prev_keep is None else prev_keep
        y = self.transformer(self.down_mlp(x) * prev)
        half = y.shape[-1] // 2
        global_ = (y[..., half:] * prev).sum(1, keepdim=True) / prev.sum(1, keepdim=True)
        return self.output_mlp(torch.cat([y[..., :half], global_.expand_as(y[..., half:])], dim=-1))


class OutputTextPredictor(nn.Module):
    """Per-token MLP (no cross-token operation, so a decoding step can decide alone): LN, C -> d -> d/2 -> d/4 -> 2."""

    def __init__(self, input_dim: int, cfg: SparseConfig):
        super().__init__()
        d = cfg.d_model
        self.output_mlp = nn.Sequential(
            nn.LayerNorm(input_dim), nn.Linear(input_dim, d), nn.GELU(),
            nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, d // 4), nn.GELU(), nn.Linear(d // 4, 2),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_mlp(x)


def init_predictor_(module: nn.Module, std: float = 0.02) -> None:
    """Official initialisation of the new predictors (transformers' default): Linear N(0, std), zero bias,
    LayerNorm ones/zeros."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()


def hard_gumbel_keep(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 7-8: a {0, 1} keep decision from 2-way logits by hard Gumbel-softmax; backward is the soft sample's."""
    return F.gumbel_softmax(F.log_softmax(logits.float(), dim=-1), tau=tau, hard=True)[..., 0]


def gumbel_tau_at(step: int, max_steps: int, start: float, end: float) -> float:
    """Exponential temperature decay over training (official ``CustomCallback.on_step_begin``)."""
    return start * (end / start) ** (step / max(max_steps, 1))


# ----------------------------------------------------------------------------------------------------
# Attention: dense (SDPA) and MaskedSoftmax (Eq. 9-10)
# ----------------------------------------------------------------------------------------------------


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def masked_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    visible: torch.Tensor,
    policy: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Eq. 9-10: softmax over visible keys, each key j weighted by ``policy[j]`` (1 on the diagonal, so a
    dropped token still attends to itself and still gets an LM loss); fp32 after max subtraction.

    q, k, v: ``(B, H, N, d)``; visible: ``(B, N, N)`` bool (causal and padding); policy: ``(B, N)``.
    Gradients flow into ``policy`` (the straight-through estimator needs them).
    """
    n = k.shape[-2]
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    eye = torch.eye(n, dtype=torch.bool, device=q.device)
    weight = torch.where(eye, torch.ones_like(policy[:, None, :]), policy[:, None, :].float())  # (B, N, N)
    attn = scores.exp() * weight[:, None]
    attn = (attn + (eps / n) * visible[:, None].float()) / (attn.sum(dim=-1, keepdim=True) + eps)
    return attn.to(v.dtype) @ v


# ----------------------------------------------------------------------------------------------------
# KV cache gated per token, with per-sample lengths
# ----------------------------------------------------------------------------------------------------


class GatedKVCache:
    """Per-layer K/V buffers ``(B, H_kv, capacity, d)`` with per-sample lengths.

    Only kept tokens are written (padding is never written), left-aligned per sample, so slot ``s`` of
    sample ``b`` is valid iff ``s < lengths[layer][b]``. ``next_position`` is each sample's true absolute
    position (count of real tokens seen), used for RoPE whatever was dropped. The longest length per layer is
    also tracked on the host, so reading and one-token writes need no device synchronisation.
    """

    def __init__(self, num_layers: int, grow_chunk: int = 64):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.lengths: list[torch.Tensor | None] = [None] * num_layers
        self.longest: list[int] = [0] * num_layers
        self.next_position: torch.Tensor | None = None
        self.grow_chunk = grow_chunk

    def read(self, layer: int, batch: int, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        """The valid part of a layer's cache: keys, values (sliced to the longest sample) and a validity mask."""
        if self.keys[layer] is None:
            return None, None, torch.zeros(batch, 0, dtype=torch.bool, device=device)
        n = self.longest[layer]
        valid = torch.arange(n, device=device)[None, :] < self.lengths[layer][:, None]
        return self.keys[layer][:, :, :n], self.values[layer][:, :, :n], valid

    def _reserve(self, layer: int, k: torch.Tensor, v: torch.Tensor, need: int) -> None:
        b, h, _, d = k.shape
        if self.keys[layer] is None:
            self.keys[layer] = k.new_zeros(b, h, need + self.grow_chunk, d)
            self.values[layer] = v.new_zeros(b, h, need + self.grow_chunk, d)
            self.lengths[layer] = torch.zeros(b, dtype=torch.long, device=k.device)
        elif need > self.keys[layer].shape[2]:
            extra = need - self.keys[layer].shape[2] + self.grow_chunk
            self.keys[layer] = torch.cat([self.keys[layer], k.new_zeros(b, h, extra, d)], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v.new_zeros(b, h, extra, d)], dim=2)

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, longest: int | None = None
    ) -> None:
        """Appends the kept new tokens (``keep``: ``(B, n)`` bool) of ``k, v`` ``(B, H_kv, n, d)``.

        ``longest`` (the longest length after the write, when the caller knows it) avoids a synchronisation.
        """
        b, h, n, d = k.shape
        if n == 1:  # decoding: write every sample's token at its length, advance only where kept
            self._reserve(layer, k, v, self.longest[layer] + 1)
            rows = torch.arange(b, device=k.device)
            slots = self.lengths[layer]
            self.keys[layer][rows, :, slots] = k[:, :, 0]
            self.values[layer][rows, :, slots] = v[:, :, 0]
            self.lengths[layer] = slots + keep[:, 0].long()
        else:
            counts = keep.sum(1)
            self._reserve(layer, k, v, self.longest[layer] + int(counts.max()))
            length = self.lengths[layer]
            rows, cols = keep.nonzero(as_tuple=True)
            slots = (length[:, None] + keep.long().cumsum(1) - 1)[rows, cols]
            self.keys[layer][rows, :, slots] = k[rows, :, cols]
            self.values[layer][rows, :, slots] = v[rows, :, cols]
            self.lengths[layer] = length + counts
        self.longest[layer] = int(self.lengths[layer].max()) if longest is None else longest

    def cached_tokens(self) -> torch.Tensor:
        """``(num_layers, B)`` number of cached tokens per layer and sample."""
        return torch.stack([length for length in self.lengths if length is not None])

    def nbytes(self) -> int:
        """Bytes of the valid K/V entries (what a compact cache needs), summed over layers and samples."""
        total = 0
        for k, length in zip(self.keys, self.lengths):
            if k is not None:
                total += int(length.sum()) * 2 * k.shape[1] * k.shape[3] * k.element_size()
        return total

    def allocated_nbytes(self) -> int:
        return sum(2 * k.numel() * k.element_size() for k in self.keys if k is not None)


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------


@dataclass
class TokenState:
    """Per-token bookkeeping that travels with the hidden states through pruning (all ``(B, N)``)."""

    real: torch.Tensor  # bool, False for padding (and for the tail slots of compacted rows)
    image: torch.Tensor  # bool, image tokens
    answer: torch.Tensor  # bool, output-text tokens (training answers, or tokens generated so far)
    position: torch.Tensor  # long, original RoPE position
    index: torch.Tensor  # long, index in the input sequence
    rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin at ``position`` (computed once)
    visible: torch.Tensor | None = None  # (B, N, N) bool: real earlier keys and the token itself

    def gather(self, idx: torch.Tensor, real: torch.Tensor) -> TokenState:
        g = lambda t: t.gather(1, idx)  # noqa: E731
        return TokenState(real, g(self.image) & real, g(self.answer) & real, g(self.position), g(self.index))

    def visibility(self) -> torch.Tensor:
        if self.visible is None:
            n = self.real.shape[1]
            ar = torch.arange(n, device=self.real.device)
            causal = ar[None, :] <= ar[:, None]
            self.visible = (self.real[:, None, :] & causal[None]) | torch.eye(
                n, dtype=torch.bool, device=ar.device
            )[None]
        return self.visible


@dataclass
class DynamicLlavaOutput(ModelOutput):
    """What :meth:`DynamicLlavaForConditionalGeneration.forward` returns (a transformers ``ModelOutput``)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    image_ratio_loss: torch.Tensor | None = None
    text_ratio_loss: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    """(B, N) float over input positions: 1 kept, 0 dropped after ``sparse_layer`` (mask and prune paths)."""
    token_index: torch.Tensor | None = None
    """(B, N') input position of every output row (prune path: the kept tokens; mask path: arange)."""
    real: torch.Tensor | None = None
    """(B, N') which output rows are real tokens."""
    image_keep_ratio: torch.Tensor | None = None
    text_keep_ratio: torch.Tensor | None = None
    cache: GatedKVCache | None = None


@dataclass
class RandomSelection:
    """Fixed random scores for the ``random`` baseline, so re-runs of one generation agree."""

    image_scores: torch.Tensor  # (B, N_image)
    text_uniform: torch.Tensor  # (B, max_positions): a token at position p is kept iff value < keep rate


class DynamicLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """LLaVA with Dynamic-LLaVA's vision and output-text context sparsification.

    ``config`` is a ``LlavaConfig`` whose extra attribute ``sparse_config`` holds :class:`SparseConfig`
    fields (the official repository stores the same mapping under the same name).
    """

    accepts_loss_kwargs = False  # the loss is a per-batch token mean (as in the official code)

    def __init__(self, config: LlavaConfig):
        raw = getattr(config, "sparse_config", None)
        if not isinstance(raw, dict):
            raise ValueError(
                "the LLaVA config has no 'sparse_config' mapping (Dynamic-LLaVA's sparsification fields); it is a "
                "dense LLaVA checkpoint: start from it with DynamicLlavaForConditionalGeneration.from_dense_llava"
                "(path, SparseConfig(...)), or set config.sparse_config = SparseConfig().to_dict()"
            )
        sparse = SparseConfig.from_dict(raw, source="config.sparse_config")
        n_layers = config.text_config.num_hidden_layers
        if sparse.sparse_layer >= n_layers:
            raise ValueError(f"sparse_layer {sparse.sparse_layer} must be < the decoder's {n_layers} layers")
        LlavaPreTrainedModel.__init__(self, config)
        self.model = LlavaModel(config)
        hidden = config.text_config.hidden_size
        self.lm_head = nn.Linear(hidden, config.text_config.vocab_size, bias=False)
        self.image_score_predictor = ImagePredictor(hidden, sparse)
        self.output_text_score_predictor = OutputTextPredictor(hidden, sparse)
        self.sparse = sparse
        self.gumbel_tau = 1.0
        self.post_init()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dense_llava(cls, path_or_model: Any, sparse: SparseConfig | None = None, **kwargs: Any):
        """Starts Dynamic-LLaVA from a dense LLaVA: a llava-hf directory (loaded by transformers' own
        ``LlavaForConditionalGeneration``, so its key conversions apply) or a loaded model, whose tensors are
        shared, not copied (training the result changes that model too: pass a ``copy.deepcopy`` to keep it).
        The predictors are new, initialised N(0, 0.02) as in the official code."""
        sparse = sparse or SparseConfig()
        dense = path_or_model
        if not isinstance(dense, LlavaForConditionalGeneration):
            dense = LlavaForConditionalGeneration.from_pretrained(path_or_model, **kwargs)
        config = LlavaConfig.from_dict(dense.config.to_dict())
        config.sparse_config = sparse.to_dict()
        with torch.device("meta"):
            model = cls(config)
        missing, unexpected = model.load_state_dict(dense.state_dict(), strict=False, assign=True)
        bad = [k for k in missing if "score_predictor" not in k] + list(unexpected)
        if bad:
            raise ValueError(
                f"the dense LLaVA does not match the Dynamic-LLaVA layout; first mismatched key: {bad[0]}"
            )
        param = next(dense.parameters())
        for name in ("image_score_predictor", "output_text_score_predictor"):
            module = getattr(model, name).to_empty(device=param.device).to(param.dtype)
            init_predictor_(module, config.text_config.initializer_range)
        for name, buffer in dense.named_buffers():  # non-persistent buffers (RoPE) are not in the state dict
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, buffer)
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"tensors left uninitialised while wrapping the dense LLaVA: {left[:3]}")
        model.train(dense.training)
        return model

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    @property
    def image_token_id(self) -> int:
        return int(self.config.image_token_index)

    @property
    def num_image_tokens(self) -> int:
        vc = self.config.vision_config
        n = (vc.image_size // vc.patch_size) ** 2
        return n + (1 if self.config.vision_feature_select_strategy == "full" else 0)

    # ------------------------------------------------------------------ inputs
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Vision tower (feature layer, CLS dropped for "default") and projector: ``(n_images, P, C)``."""
        tower = self.model.vision_tower
        dtype = next(tower.parameters()).dtype
        out = tower(pixel_values.to(dtype), output_hidden_states=True)
        layers = self.config.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else list(layers)
        feats = [out.hidden_states[i] for i in layers]
        if self.config.vision_feature_select_strategy == "default":
            feats = [f[:, 1:] for f in feats]
        return self.model.multi_modal_projector(torch.cat(feats, dim=-1))

    def _embed(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, TokenState]:
        b, n = input_ids.shape
        image = input_ids == self.image_token_id
        per_sample = image.sum(1)
        p = self.num_image_tokens
        n_images = 0 if pixel_values is None else pixel_values.shape[0]
        if ((per_sample != 0) & (per_sample != p)).any() or int((per_sample > 0).sum()) != n_images:
            raise ValueError(
                f"image tokens do not match images: the samples hold {per_sample.tolist()} image tokens "
                f"(id {self.image_token_id}) and {n_images} images were given; every sample needs either no "
                f"image or exactly one image written as {p} consecutive image tokens (one image per sample)"
            )
        ids = input_ids.masked_fill(image, 0)
        embeds = self.model.get_input_embeddings()(ids)
        if n_images:
            feats = self.encode_images(pixel_values).to(embeds.dtype)
            embeds = embeds.masked_scatter(image[..., None], feats.reshape(-1, feats.shape[-1]))
        real = torch.ones_like(image) if attention_mask is None else attention_mask.bool()
        if (image & ~real).any():
            raise ValueError("attention_mask masks out image tokens; padding must not cover the image")
        position = (real.long().cumsum(1) - 1).clamp(min=0)
        max_pos = self.config.text_config.max_position_embeddings
        if int(real.sum(1).max()) > max_pos:
            raise ValueError(
                f"a sequence has {int(real.sum(1).max())} tokens, over the context length "
                f"max_position_embeddings={max_pos}; shorten the prompt or the generation"
            )
        index = torch.arange(n, device=input_ids.device).expand(b, n)
        return embeds, TokenState(real, image, torch.zeros_like(image), position, index)

    @staticmethod
    def answer_mask_from_labels(labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Output text = the last assistant turn: every real token after the last ignored label (official rule)."""
        n = labels.shape[1]
        idx = torch.arange(n, device=labels.device).expand_as(labels)
        ignored = (labels == IGNORE_INDEX) & real
        last_ignored = torch.where(ignored, idx, torch.full_like(idx, -1)).amax(1, keepdim=True)
        return (idx > last_ignored) & real

    # ------------------------------------------------------------------ the decoder
    def _layer(
        self,
        i: int,
        h: torch.Tensor,
        st: TokenState,
        *,
        policy: torch.Tensor | None = None,
        cache: GatedKVCache | None = None,
        write: torch.Tensor | None = None,
        longest: int | None = None,
        last_query_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One Llama decoder layer with our masks: keys visible iff real and earlier (or self), or cached."""
        layer = self.language_model.layers[i]
        attn = layer.self_attn
        b, n, _ = h.shape
        hd = attn.head_dim
        x = layer.input_layernorm(h)
        q = attn.q_proj(x).view(b, n, -1, hd).transpose(1, 2)
        k = attn.k_proj(x).view(b, n, -1, hd).transpose(1, 2)
        v = attn.v_proj(x).view(b, n, -1, hd).transpose(1, 2)
        if st.rope is None:
            st.rope = self.language_model.rotary_emb(v, st.position)
        cos, sin = st.rope
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        visible = st.visibility()
        out = None
        if cache is not None and n == 1 and cache.keys[i] is not None:
            # decoding: the token is written at its sample's slot first (kept or not; a dropped one is simply
            # not counted and is overwritten later), so attention reads the buffer in place, without a copy
            before, span = cache.lengths[i], cache.longest[i] + 1
            cache.write(i, k, v, write if write is not None else st.real, longest)
            if policy is None and not last_query_attention:
                # one query per sample over its own before + 1 slots, through paperzoo_shared's dispatcher:
                # its reference is the masked SDPA below; on CUDA a Triton kernel that reads no padded slot
                out = gated_decode_attention(
                    q[:, :, 0], cache.keys[i], cache.values[i], before + 1, max_length=span
                )[:, :, None]
            else:
                k, v = cache.keys[i][:, :, :span], cache.values[i][:, :, :span]
                visible = (torch.arange(span, device=h.device)[None, :] <= before[:, None])[:, None, :]
        elif cache is not None:
            past_k, past_v, past_valid = cache.read(i, b, h.device)
            cache.write(i, k, v, write if write is not None else st.real, longest)
            if past_k is not None:
                k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
                visible = torch.cat([past_valid[:, None, :].expand(b, n, -1), visible], dim=2)
        if out is None:
            groups = q.shape[1] // k.shape[1]
            k, v = _repeat_kv(k, groups), _repeat_kv(v, groups)
            if policy is None:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None])
            else:
                out = masked_softmax_attention(q, k, v, visible, policy, self.sparse.masked_softmax_eps)
        h = h + attn.o_proj(out.transpose(1, 2).reshape(b, n, -1))
        h = h + layer.mlp(layer.post_attention_layernorm(h))
        received = None
        if last_query_attention:  # FastV: head-averaged attention of the last real token at this layer
            rows = torch.arange(b, device=h.device)
            last = (st.real.long() * torch.arange(n, device=h.device)).argmax(1)
            s = (q[rows, :, last][:, :, None] @ k.transpose(-1, -2) / math.sqrt(hd)).squeeze(2)
            s = s.masked_fill(~visible[rows, last][:, None], float("-inf"))
            received = s.softmax(-1).mean(1)[:, -n:]
        return h, received

    def _run_layers(self, i0: int, i1: int, h: torch.Tensor, st: TokenState, **kw: Any) -> torch.Tensor:
        for i in range(i0, i1):
            if self._checkpointing() and self.training:
                h = torch.utils.checkpoint.checkpoint(
                    lambda x, j=i: self._layer(j, x, st, **kw)[0], h, use_reentrant=False
                )
            else:
                h = self._layer(i, h, st, **kw)[0]
        return h

    def _checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.language_model.layers)

    def _image_logits(self, h: torch.Tensor, st: TokenState) -> tuple[torch.Tensor, torch.Tensor]:
        """Image predictor over the samples that have an image: logits ``(B_img, P, 2)`` and their row ids."""
        rows = st.image.any(1).nonzero(as_tuple=True)[0]
        x = h[rows][st.image[rows]].view(len(rows), -1, h.shape[-1])
        return self.image_score_predictor(x), rows

    def _image_keep(self, h, st, selection, fastv_scores, rand) -> torch.Tensor:
        """Inference image decision: the top int(P * r_I) by score, over positions ``(B, N)`` (bool)."""
        keep = torch.zeros_like(st.image)
        rows = st.image.any(1).nonzero(as_tuple=True)[0]
        if len(rows) == 0:
            return keep
        p = self.num_image_tokens
        k = max(int(p * self.sparse.vision_keep_rate), 1)
        if selection == "dynamic":
            scores = F.log_softmax(self._image_logits(h, st)[0].float(), dim=-1)[..., 0]
        elif selection == "random":
            scores = rand.image_scores[rows]
        else:  # fastv: attention the last token pays to each image token in the previous layer
            scores = fastv_scores[rows][st.image[rows]].view(len(rows), p)
        top = scores.topk(k, dim=1).indices
        chosen = torch.zeros(len(rows), p, dtype=torch.bool, device=h.device).scatter_(1, top, True)
        sub = keep[rows]
        sub[st.image[rows]] = chosen.reshape(-1)
        keep[rows] = sub
        return keep

    def _text_keep(self, h, st, selection, rand) -> torch.Tensor:
        """Inference output-text decision (bool ``(B, N)``, True off the answer): logit_keep > logit_drop."""
        if selection == "dynamic" and self.sparse.sparsify_output_text:
            logits = self.output_text_score_predictor(h).float()
            decide = logits[..., 0] > logits[..., 1]
        elif selection == "random":
            decide = rand.text_uniform.gather(1, st.position) < self.sparse.output_text_keep_rate
        else:
            decide = torch.ones_like(st.real)
        return decide | ~st.answer

    @staticmethod
    def _compact(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Order-preserving gather indices of the kept positions, right-padded: ``(B, max kept)`` and its mask."""
        counts = keep.sum(1)
        idx = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, : int(counts.max())]
        real = torch.arange(idx.shape[1], device=keep.device)[None] < counts[:, None]
        return idx, real

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        answer_mask: torch.Tensor | None = None,
        selection: str | None = None,
        execution: str | None = None,
        cache: GatedKVCache | None = None,
        random_selection: RandomSelection | None = None,
        last_logits_only: bool = False,
    ) -> DynamicLlavaOutput:
        """Training (``execution="mask"``, the default in train mode) or inference prefill / no-cache step
        (``"prune"``, the default in eval mode).

        ``answer_mask`` marks output-text tokens (from ``labels`` when given: the last assistant turn). In the
        prune path the last real token of each sample is always kept and logits are returned only for kept
        rows (``token_index`` maps them back). ``cache`` (prune path only) is filled with the kept K/V.
        ``last_logits_only`` (prune path) computes the LM head for each sample's last real token only.
        """
        selection = selection or ("dynamic" if self.sparse.use_vision_predictor else "dense")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        execution = execution or ("mask" if self.training else "prune")
        if execution not in ("mask", "prune"):
            raise ValueError(f"execution must be 'mask' or 'prune', got {execution!r}")
        if execution == "mask" and selection in ("random", "fastv"):
            raise ValueError("the random and FastV baselines run at inference only (execution='prune')")
        h, st = self._embed(input_ids, pixel_values, attention_mask)
        if labels is not None:
            answer_mask = self.answer_mask_from_labels(labels, st.real)
        if answer_mask is not None:
            st.answer = answer_mask.bool() & st.real & ~st.image
        l = self.sparse.sparse_layer
        if selection == "random" and random_selection is None:
            random_selection = self.make_random_selection(input_ids.shape[0], seed=0, device=h.device)
        h = self._run_layers(0, l - 1 if selection == "fastv" and l > 0 else l, h, st, cache=cache)
        fastv_scores = None
        if selection == "fastv" and l > 0:
            h, fastv_scores = self._layer(l - 1, h, st, cache=cache, last_query_attention=True)
        if execution == "mask":
            return self._forward_mask(h, st, labels, selection)
        # ---- prune path: decide, physically remove, continue with original positions
        out = DynamicLlavaOutput()
        if selection != "dense" and (st.image.any() or st.answer.any()):
            image_keep = self._image_keep(h, st, selection, fastv_scores, random_selection) | ~st.image
            text_keep = self._text_keep(h, st, selection, random_selection)
            last = (st.real.long() * torch.arange(h.shape[1], device=h.device)).argmax(1)
            newest = torch.zeros_like(st.real).scatter_(1, last[:, None], True)
            keep = image_keep & (text_keep | newest)
            keep_pos = keep
            idx, real = self._compact(keep)
            h = h.gather(1, idx[..., None].expand(-1, -1, h.shape[-1]))
            st = st.gather(idx, real & st.real.gather(1, idx))
        else:
            keep_pos = torch.ones_like(st.real)
        h = self._run_layers(l, len(self.language_model.layers), h, st, cache=cache)
        out.keep, out.cache = keep_pos.float(), cache
        if last_logits_only:
            rows = torch.arange(h.shape[0], device=h.device)
            last = (st.real.long() * torch.arange(h.shape[1], device=h.device)).argmax(1)
            h, out.token_index = h[rows, last][:, None], st.index[rows, last][:, None]
            out.real = torch.ones_like(out.token_index, dtype=torch.bool)
        else:
            out.token_index, out.real = st.index, st.real
        out.logits = self.lm_head(self.language_model.norm(h))
        return out

    def _forward_mask(self, h: torch.Tensor, st: TokenState, labels: torch.Tensor | None, selection: str):
        """Training path: decisions become a key-side policy over the full sequence (Eq. 9-12)."""
        sp = self.sparse
        policy = torch.ones(st.real.shape, dtype=h.dtype if h.dtype.is_floating_point else torch.float,
                            device=h.device)  # fmt: skip
        out = DynamicLlavaOutput()
        img_ratio = txt_ratio = None
        if selection == "dynamic" and sp.use_vision_predictor and st.image.any():
            logits, rows = self._image_logits(h, st)
            if self.training:
                m_img = hard_gumbel_keep(logits, self.gumbel_tau)
            else:  # deterministic eval: the inference top-k
                k = max(int(logits.shape[1] * sp.vision_keep_rate), 1)
                top = F.log_softmax(logits.float(), -1)[..., 0].topk(k, dim=1).indices
                m_img = torch.zeros(logits.shape[:2], device=h.device).scatter_(1, top, 1.0)
            img_ratio = m_img.mean(1)
            full = torch.ones(len(rows), st.image.shape[1], dtype=m_img.dtype, device=h.device)
            full = full.masked_scatter(st.image[rows], m_img)
            policy = policy.index_copy(0, rows, full.to(policy.dtype))
            out.image_ratio_loss = ((sp.vision_keep_rate - img_ratio) ** 2).mean()
        if selection == "dynamic" and sp.sparsify_output_text and st.answer.any():
            logits = self.output_text_score_predictor(h)
            m_txt = hard_gumbel_keep(logits, self.gumbel_tau) if self.training else (
                (logits[..., 0] > logits[..., 1]).float()
            )  # fmt: skip
            length = st.answer.sum(1)
            short = length < sp.output_text_len_for_training
            if self.training:  # answers shorter than LEN_OT are kept whole (official "for stable training")
                m_txt = torch.where(short[:, None], torch.ones_like(m_txt), m_txt)
            has = length > 0
            txt_ratio = (m_txt * st.answer).sum(1) / length.clamp(min=1)
            target = torch.where(
                short, txt_ratio.detach(), torch.full_like(txt_ratio, sp.output_text_keep_rate)
            )
            out.text_ratio_loss = (((target - txt_ratio) ** 2) * has).sum() / st.real.shape[0]
            policy = torch.where(st.answer, m_txt.to(policy.dtype), policy)
        n = len(self.language_model.layers)
        h = self._run_layers(sp.sparse_layer, n, h, st, policy=policy)
        logits = self.lm_head(self.language_model.norm(h))
        out.logits, out.keep, out.token_index, out.real = logits, policy, st.index, st.real
        out.image_keep_ratio, out.text_keep_ratio = img_ratio, txt_ratio
        if labels is not None:
            out.lm_loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )  # fmt: skip
            out.loss = out.lm_loss
            for extra in (out.image_ratio_loss, out.text_ratio_loss):
                if extra is not None:
                    out.loss = out.loss + sp.mask_loss_weight * extra
        return out

    # ------------------------------------------------------------------ generation
    def make_random_selection(self, batch: int, seed: int, device: torch.device) -> RandomSelection:
        g = torch.Generator().manual_seed(seed)
        max_pos = self.config.text_config.max_position_embeddings
        return RandomSelection(
            torch.rand(batch, self.num_image_tokens, generator=g).to(device),
            torch.rand(batch, max_pos, generator=g).to(device),
        )

    def decode_step(
        self,
        token: torch.Tensor,
        cache: GatedKVCache,
        selection: str = "dynamic",
        random_selection: RandomSelection | None = None,
        text_keep_override: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step with the gated KV cache: logits ``(B, V)`` and the keep decision ``(B,)``.

        Layers ``< sparse_layer`` always cache the token; at ``sparse_layer`` the output-text predictor (or the
        baseline's rule, or ``text_keep_override``) decides whether layers ``>= sparse_layer`` cache it.
        """
        b = token.shape[0]
        h = self.model.get_input_embeddings()(token.view(b, 1))
        ones = torch.ones(b, 1, dtype=torch.bool, device=h.device)
        st = TokenState(ones, ~ones, ones, cache.next_position.view(b, 1), cache.next_position.view(b, 1))
        if int(cache.next_position.max()) >= self.config.text_config.max_position_embeddings:
            raise ValueError(
                "generation reached the context length max_position_embeddings="
                f"{self.config.text_config.max_position_embeddings}; lower max_new_tokens"
            )
        l = self.sparse.sparse_layer
        n_layers = len(self.language_model.layers)
        h = self._run_layers(0, l, h, st, cache=cache, longest=cache.longest[0] + 1 if l else None)
        if text_keep_override is not None:
            keep = text_keep_override.view(b, 1).bool()
        else:
            keep = self._text_keep(h, st, selection, random_selection)
        longest = None
        if cache.lengths[l] is not None:  # one synchronisation per step for all sparse layers
            longest = int((cache.lengths[l] + keep.view(b).long()).max())
        h = self._run_layers(l, n_layers, h, st, cache=cache, write=keep, longest=longest)
        cache.next_position = cache.next_position + 1
        return self.lm_head(self.language_model.norm(h))[:, -1], keep.view(b)

    @torch.no_grad()
    def sparse_generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        selection: str = "dynamic",
        use_cache: bool = True,
        eos_token_id: int | None = None,
        pad_token_id: int = 0,
        seed: int = 0,
        text_keep_pattern: str | None = None,
    ) -> dict[str, Any]:
        """Greedy generation with Dynamic-LLaVA's three inference modes (prefill pruning, then decoding with
        the gated KV cache or by re-running the pruned context without cache).

        ``text_keep_pattern="alternate"`` forces output-text decisions keep/drop/keep/... (exactly 50 %; the
        GPU benchmark uses it, as random predictors give an arbitrary rate). Returns ``sequences`` (new tokens,
        ``(B, T)``), ``cache`` and per-step ``text_keep`` decisions.
        """
        b = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prompt_len = int(attention_mask.sum(1).max())
        max_pos = self.config.text_config.max_position_embeddings
        if prompt_len + max_new_tokens > max_pos:
            raise ValueError(
                f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds the context length "
                f"max_position_embeddings={max_pos}"
            )
        rand = self.make_random_selection(b, seed, input_ids.device) if selection == "random" else None
        done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        tokens, keeps = [], []
        if use_cache:
            cache = GatedKVCache(len(self.language_model.layers))
            cache.next_position = attention_mask.sum(1).long()
            out = self.forward(input_ids, pixel_values, attention_mask, selection=selection, execution="prune",
                               cache=cache, random_selection=rand, last_logits_only=True)  # fmt: skip
            logits = out.logits[:, 0]
            for step in range(max_new_tokens):
                nxt = logits.argmax(-1).masked_fill(done, pad_token_id)
                tokens.append(nxt)
                if eos_token_id is not None:
                    done = done | (nxt == eos_token_id)
                if bool(done.all()) or step == max_new_tokens - 1:
                    break
                override = None
                if text_keep_pattern == "alternate":
                    override = torch.full((b,), step % 2 == 0, device=input_ids.device)
                logits, keep = self.decode_step(nxt, cache, selection, rand, override)
                keeps.append(keep)
            return {"sequences": torch.stack(tokens, 1), "cache": cache, "text_keep": keeps}
        # without KV cache: re-run prompt + generated tokens, generated ones are output text
        ids, mask = input_ids, attention_mask
        answer = torch.zeros_like(input_ids, dtype=torch.bool)
        for _ in range(max_new_tokens):
            out = self.forward(ids, pixel_values, mask, answer_mask=answer, selection=selection, execution="prune",
                               random_selection=rand, last_logits_only=True)  # fmt: skip
            nxt = out.logits[:, 0].argmax(-1).masked_fill(done, pad_token_id)
            tokens.append(nxt)
            if eos_token_id is not None:
                done = done | (nxt == eos_token_id)
            if bool(done.all()):
                break
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(nxt[:, None])], 1)
            answer = torch.cat([answer, torch.ones_like(nxt[:, None], dtype=torch.bool)], 1)
        return {"sequences": torch.stack(tokens, 1), "cache": None, "text_keep": keeps, "last_forward": out}

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Greedy ``generate`` with transformers' calling convention; returns prompt + new tokens.

        Accepts ``selection``, ``use_cache``, ``eos_token_id``, ``pad_token_id``, ``seed``; sampling and beam
        search are not supported.
        """
        allowed = {"selection", "use_cache", "eos_token_id", "pad_token_id", "seed", "text_keep_pattern"}
        unknown = sorted(set(kwargs) - allowed - {"do_sample", "num_beams"})
        if unknown or kwargs.pop("do_sample", False) or kwargs.pop("num_beams", 1) != 1:
            raise ValueError(
                f"only greedy generation is supported; unsupported arguments: {unknown or 'sampling/beams'}"
            )
        if kwargs.get("eos_token_id") is None:
            kwargs["eos_token_id"] = self.config.text_config.eos_token_id
        res = self.sparse_generate(input_ids, pixel_values, attention_mask, max_new_tokens, **kwargs)
        return torch.cat([input_ids, res["sequences"]], dim=1)
