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
* **decoding with KV cache** (:class:`GatedKVCache`, a transformers ``Cache``, so ``generate()`` with any strategy
  decodes sparsely; :class:`StaticGatedKVCache` for ``torch.compile`` / CUDA graphs): each new token attends to the
  cache and itself, and its K/V enters the caches of layers ``>= sparse_layer`` only if the output-text
  predictor keeps it.

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
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, LlavaConfig, LlavaForConditionalGeneration
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.models.llava.modeling_llava import LlavaModel, LlavaPreTrainedModel
from transformers.utils import ModelOutput

from paperzoo_dynamic_llava.configuration import SELECTIONS, SparseConfig
from paperzoo_shared.kernels.gated_decode_attention import gated_decode_attention

IGNORE_INDEX = -100
# what transformers' generate hands prepare_inputs_for_generation beside the model inputs
_GENERATE_BOOKKEEPING = frozenset(
    {"use_cache", "is_first_iteration", "output_attentions", "output_hidden_states"}
)


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


class GatedKVLayer(CacheLayerMixin):
    """One decoder layer's gated cache: K/V buffers ``(B, H_kv, capacity, d)`` and per-sample ``lengths``.

    Only kept tokens are counted (padding is never written), left-aligned per sample, so slot ``s`` of sample
    ``b`` is valid iff ``s < lengths[b]``. ``longest`` (the longest length, tracked on the host) lets reading and
    one-token writes run without a device synchronisation; the buffers grow by ``grow_chunk`` slots when full.
    """

    is_compileable = False
    is_croppable = False  # a dropped token leaves no trace, so a rollback cannot be undone per token

    def __init__(self, grow_chunk: int = 64):
        super().__init__()
        self.lengths: torch.Tensor | None = None
        self.longest = 0
        self.grow_chunk = grow_chunk

    def lazy_initialization(
        self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int = 0
    ) -> None:
        b, h, _, d = key_states.shape
        self.device = key_states.device
        self.keys = key_states.new_zeros(b, h, capacity, d)
        self.values = value_states.new_zeros(b, h, capacity, value_states.shape[-1])
        self.lengths = torch.zeros(b, dtype=torch.long, device=key_states.device)
        self.is_initialized = True

    def _reserve(self, k: torch.Tensor, v: torch.Tensor, need: int) -> None:
        if not self.is_initialized:
            self.lazy_initialization(k, v, need + self.grow_chunk)
        elif need > self.keys.shape[2]:
            b, h, _, d = self.keys.shape
            extra = need - self.keys.shape[2] + self.grow_chunk
            self.keys = torch.cat([self.keys, self.keys.new_zeros(b, h, extra, d)], dim=2)
            self.values = torch.cat(
                [self.values, self.values.new_zeros(b, h, extra, self.values.shape[3])], dim=2
            )

    def read(self, batch: int, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        """The valid part: keys, values (sliced to the longest sample) and a validity mask ``(B, longest)``."""
        if not self.is_initialized:
            return None, None, torch.zeros(batch, 0, dtype=torch.bool, device=device)
        n = self.longest
        valid = torch.arange(n, device=device)[None, :] < self.lengths[:, None]
        return self.keys[:, :, :n], self.values[:, :, :n], valid

    def decode_span(self) -> int:
        """Slots a decoding step's attention reads (every sample's length after writing its token is within)."""
        return self.longest + 1

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        keep: torch.Tensor | None = None,
        longest: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends the kept new tokens (``keep``: ``(B, n)`` bool, default all) of ``key_states, value_states``
        ``(B, H_kv, n, d)``; returns the whole buffers (valid slots: ``lengths``).

        One token per sample (decoding) is written at each sample's length whether kept or not, and the length
        advances only where kept (a dropped token is overwritten by the next). ``longest`` (the longest length
        after the write, when the caller knows it) avoids a synchronisation.
        """
        k, v = key_states, value_states
        b, _, n, _ = k.shape
        keep = torch.ones(b, n, dtype=torch.bool, device=k.device) if keep is None else keep
        if n == 1:
            self._reserve(k, v, self.longest + 1)
            rows = torch.arange(b, device=k.device)
            self.keys[rows, :, self.lengths] = k[:, :, 0]
            self.values[rows, :, self.lengths] = v[:, :, 0]
            self.lengths = self.lengths + keep[:, 0].long()
        else:
            counts = keep.sum(1)
            self._reserve(k, v, self.longest + int(counts.max()))
            rows, cols = keep.nonzero(as_tuple=True)
            slots = (self.lengths[:, None] + keep.long().cumsum(1) - 1)[rows, cols]
            self.keys[rows, :, slots] = k[rows, :, cols]
            self.values[rows, :, slots] = v[rows, :, cols]
            self.lengths = self.lengths + counts
        self.longest = int(self.lengths.max()) if longest is None else longest
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.longest if self.is_initialized else 0

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.keys = self.values = self.lengths = None
        self.longest = 0
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(
            "a gated KV cache cannot be cropped: dropped tokens were never stored, so the last n steps are not the "
            "last n slots (assisted or speculative decoding is not supported)"
        )

    def _select(self, index: torch.Tensor) -> None:
        if self.is_initialized:
            index = index.to(self.keys.device)
            self.keys, self.values = self.keys[index], self.values[index]
            self.lengths = self.lengths[index]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._select(beam_idx)  # ``longest`` stays an upper bound of the selected lengths

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._select(torch.arange(self.keys.shape[0], device=self.keys.device).repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._select(indices)

    def nbytes(self) -> int:
        """Bytes of the valid K/V entries (what a compact cache needs), summed over samples."""
        if not self.is_initialized:
            return 0
        per_token = (
            self.keys.shape[1] * (self.keys.shape[3] + self.values.shape[3]) * self.keys.element_size()
        )
        return int(self.lengths.sum()) * per_token

    def allocated_nbytes(self) -> int:
        if not self.is_initialized:
            return 0
        return self.keys.numel() * self.keys.element_size() + self.values.numel() * self.values.element_size()


class StaticGatedKVLayer(GatedKVLayer):
    """The static-capacity layer: buffers of ``max_cache_len`` slots allocated once (at the prefill), written in
    place; a decoding step reads all ``max_cache_len`` slots under the per-sample ``lengths`` mask, so its shapes
    never change and it makes no host synchronisation (``torch.compile(fullgraph=True)``, CUDA graphs)."""

    is_compileable = True

    def __init__(self, max_cache_len: int):
        super().__init__(grow_chunk=0)
        self.max_cache_len = max_cache_len

    def lazy_initialization(
        self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int = 0
    ) -> None:
        super().lazy_initialization(key_states, value_states, self.max_cache_len)
        if not torch.compiler.is_compiling():  # fixed addresses: in-place writes do not break CUDA graphs
            for t in (self.keys, self.values, self.lengths):
                torch._dynamo.mark_static_address(t)

    def _reserve(self, k: torch.Tensor, v: torch.Tensor, need: int) -> None:
        if not self.is_initialized:
            self.lazy_initialization(k, v)
        if need > self.max_cache_len:
            raise ValueError(
                f"the static gated KV cache holds {self.max_cache_len} tokens per sample and {need} are needed; "
                "make it with a larger max_cache_len (prompt length + max_new_tokens)"
            )

    def decode_span(self) -> int:
        return self.max_cache_len

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        keep: torch.Tensor | None = None,
        longest: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`GatedKVLayer.update`; one token per sample is written in place with no check and no
        synchronisation (the cache checks the room on the host, from the steps taken, before the step)."""
        if key_states.shape[2] != 1 or not self.is_initialized:
            return super().update(key_states, value_states, keep, longest)
        b = key_states.shape[0]
        keep = torch.ones(b, 1, dtype=torch.bool, device=key_states.device) if keep is None else keep
        rows = torch.arange(b, device=key_states.device)
        self.keys[rows, :, self.lengths] = key_states[:, :, 0]
        self.values[rows, :, self.lengths] = value_states[:, :, 0]
        self.lengths.add_(keep[:, 0].long())
        return self.keys, self.values

    def get_max_length(self) -> int:
        return self.max_cache_len

    def _select(self, index: torch.Tensor) -> None:
        if self.is_initialized:  # in place: the buffers keep their addresses
            index = index.to(self.keys.device)
            self.keys.copy_(self.keys[index])
            self.values.copy_(self.values[index])
            self.lengths.copy_(self.lengths[index])

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError(
            "a static gated KV cache has a fixed batch; make it after expanding the batch"
        )

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("a static gated KV cache has a fixed batch")


class GatedKVCache(Cache):
    """Dynamic-LLaVA's KV cache gated per token, as a transformers ``Cache`` (one :class:`GatedKVLayer` per
    decoder layer), so that ``model.generate()`` (greedy, sampling, beam search, streamers, stopping criteria)
    decodes sparsely: layers ``< sparse_layer`` cache every token, layers ``>= sparse_layer`` only the tokens
    the output-text predictor keeps (paper Sec. 3.3).

    Besides the layers it holds ``next_position`` (``(B,)``: each sample's true absolute position, the count of
    its real tokens seen, used for RoPE whatever was dropped), ``seen_tokens`` (input columns consumed, what
    ``generate`` reads as :meth:`get_seq_length`; the stored counts are ``cached_tokens()``, per layer and
    sample) and, for the ``random`` baseline, the fixed random scores of its rows.
    """

    def __init__(self, num_layers: int, grow_chunk: int = 64, layers: list[GatedKVLayer] | None = None):
        super().__init__(
            layers=layers if layers is not None else [GatedKVLayer(grow_chunk) for _ in range(num_layers)]
        )
        self.next_position: torch.Tensor | None = None
        self.seen_tokens = 0
        self.random_selection: RandomSelection | None = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def check_room(self, max_positions: int) -> None:
        """Before a decoding step, on the host: the context length (one synchronisation for this cache)."""
        if int(self.next_position.max()) >= max_positions:
            raise ValueError(
                f"generation reached the context length max_position_embeddings={max_positions}; lower max_new_tokens"
            )

    def _rows(self, index: torch.Tensor) -> None:
        self.next_position = self.next_position[index.to(self.next_position.device)]
        if self.random_selection is not None:
            self.random_selection = self.random_selection.select(index)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        if self.next_position is not None:
            self._rows(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.next_position is not None:
            self._rows(torch.arange(len(self.next_position)).repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        if self.next_position is not None:
            self._rows(indices)

    def reset(self) -> None:
        super().reset()
        self.next_position, self.seen_tokens, self.random_selection = None, 0, None

    # per-layer views, the 0.1 API (paperzoo_shared's kernel test reads them)
    @property
    def keys(self) -> list[torch.Tensor | None]:
        return [layer.keys for layer in self.layers]

    @property
    def values(self) -> list[torch.Tensor | None]:
        return [layer.values for layer in self.layers]

    @property
    def lengths(self) -> list[torch.Tensor | None]:
        return [layer.lengths for layer in self.layers]

    @property
    def longest(self) -> list[int]:
        return [layer.longest for layer in self.layers]

    def cached_tokens(self) -> torch.Tensor:
        """``(num_layers, B)`` number of cached tokens per layer and sample."""
        return torch.stack([layer.lengths for layer in self.layers if layer.is_initialized])

    def nbytes(self) -> int:
        """Bytes of the valid K/V entries (what a compact cache needs), summed over layers and samples."""
        return sum(layer.nbytes() for layer in self.layers)

    def allocated_nbytes(self) -> int:
        return sum(layer.allocated_nbytes() for layer in self.layers)


class StaticGatedKVCache(GatedKVCache):
    """The gated cache with preallocated per-sample slots (:class:`StaticGatedKVLayer`, ``max_cache_len`` per
    sample: prompt columns + new tokens is always enough), a ``lengths`` tensor per layer and in-place writes.
    A decoding step makes no host synchronisation, so it traces whole under ``torch.compile(fullgraph=True)``
    and can be captured as a CUDA graph; the room is checked on the host from ``seen_tokens``."""

    def __init__(self, num_layers: int, max_cache_len: int):
        super().__init__(num_layers, layers=[StaticGatedKVLayer(max_cache_len) for _ in range(num_layers)])
        self.max_cache_len = max_cache_len
        self.decode_attention: Any = None

    def select_attention(self, num_heads: int) -> None:
        """Picks the decode-attention implementation (``paperzoo_shared``'s dispatcher: Triton on CUDA, else the
        reference) once, on the host after the prefill, for these buffers: the dispatcher's environment reads and
        logging stay out of the compiled step."""
        layer = self.layers[0]
        q = layer.keys.new_zeros(layer.keys.shape[0], num_heads, layer.keys.shape[3])
        self.decode_attention = gated_decode_attention.select(
            q, layer.keys, layer.values, layer.lengths, max_length=self.max_cache_len
        )[1]

    def check_room(self, max_positions: int) -> None:
        if self.seen_tokens >= self.max_cache_len:
            raise ValueError(
                f"the static gated KV cache is full ({self.max_cache_len} columns seen); make it with a larger "
                "max_cache_len (prompt length + max_new_tokens)"
            )
        # seen_tokens bounds every position and is known without a synchronisation
        if self.seen_tokens >= max_positions:
            super().check_room(max_positions)


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

    def select(self, index: torch.Tensor) -> RandomSelection:
        """The rows ``index`` (beam search reorders and expands the batch)."""
        index = index.to(self.image_scores.device)
        return RandomSelection(self.image_scores[index], self.text_uniform[index])


@strict
class DynamicLlavaConfig(LlavaConfig):
    """A ``LlavaConfig`` with ``model_type = "dynamic_llava"`` and the ``sparse_config`` mapping (the
    :class:`SparseConfig` fields; the official repository stores the same mapping under the same name).

    Its own model type is what makes a saved Dynamic-LLaVA checkpoint load through the Auto classes as the sparse
    model (registered when this module is imported) and fail clearly without this package, instead of loading as
    a dense LLaVA that ignores the predictors.
    """

    model_type = "dynamic_llava"
    sparse_config: dict | None = None

    @classmethod
    def from_llava(cls, config: LlavaConfig | dict[str, Any]) -> DynamicLlavaConfig:
        """The same settings (and ``sparse_config`` if present) from a ``LlavaConfig`` or its dict."""
        data = dict(config if isinstance(config, dict) else config.to_dict())
        data.pop("model_type", None)
        return cls.from_dict(data)


class DynamicLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """LLaVA with Dynamic-LLaVA's vision and output-text context sparsification.

    ``config`` is a :class:`DynamicLlavaConfig`, or a ``LlavaConfig`` with a ``sparse_config`` attribute (it is
    converted, so that the checkpoint saved from this model has the ``dynamic_llava`` model type).
    """

    config_class = DynamicLlavaConfig
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
        if not isinstance(config, DynamicLlavaConfig):
            config = DynamicLlavaConfig.from_llava(config)
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
        self._compiled_decode = None  # compile_decode() sets it
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
        config = DynamicLlavaConfig.from_llava(dense.config)
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
        layer_cache = cache.layers[i] if cache is not None else None
        if layer_cache is not None and n == 1 and layer_cache.is_initialized:
            # decoding: the token is written at its sample's slot first (kept or not; a dropped one is simply
            # not counted and is overwritten later), so attention reads the buffer in place, without a copy
            attend, span = layer_cache.lengths + 1, layer_cache.decode_span()
            layer_cache.update(k, v, write if write is not None else st.real, longest)
            if policy is None and not last_query_attention:
                # one query per sample over its own lengths + 1 slots, through paperzoo_shared's dispatcher:
                # its reference is the masked SDPA below; on CUDA a Triton kernel that reads no padded slot
                attention = getattr(cache, "decode_attention", None) or gated_decode_attention
                out = attention(q[:, :, 0], layer_cache.keys, layer_cache.values, attend, max_length=span)[
                    :, :, None
                ]
            else:
                k, v = layer_cache.keys[:, :, :span], layer_cache.values[:, :, :span]
                visible = (torch.arange(span, device=h.device)[None, :] < attend[:, None])[:, None, :]
        elif layer_cache is not None:
            past_k, past_v, past_valid = layer_cache.read(b, h.device)
            layer_cache.update(k, v, write if write is not None else st.real, longest)
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
        return_dict: bool = True,
    ) -> DynamicLlavaOutput | tuple:
        """Training (``execution="mask"``, the default in train mode) or inference prefill / no-cache step
        (``"prune"``, the default in eval mode).

        ``answer_mask`` marks output-text tokens (from ``labels`` when given: the last assistant turn). In the
        prune path the last real token of each sample is always kept and logits are returned only for kept
        rows (``token_index`` maps them back). ``cache`` (prune path only) is filled with the kept K/V.
        ``last_logits_only`` (prune path) computes the LM head for each sample's last real token only. A cache
        that already holds a prefill takes one token per sample: a decoding step (:meth:`decode_step`; what
        ``generate`` calls), logits ``(B, 1, V)``. ``return_dict=False`` returns the output's non-None fields as
        a tuple.
        """
        out = self._forward(input_ids, pixel_values, attention_mask, labels, answer_mask, selection, execution,
                            cache, random_selection, last_logits_only)  # fmt: skip
        return out if return_dict else out.to_tuple()

    def _forward(
        self, input_ids, pixel_values, attention_mask, labels, answer_mask, selection, execution, cache,
        random_selection, last_logits_only,
    ) -> DynamicLlavaOutput:  # fmt: skip
        selection = selection or ("dynamic" if self.sparse.use_vision_predictor else "dense")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        execution = execution or ("mask" if self.training else "prune")
        if execution not in ("mask", "prune"):
            raise ValueError(f"execution must be 'mask' or 'prune', got {execution!r}")
        if execution == "mask" and selection in ("random", "fastv"):
            raise ValueError("the random and FastV baselines run at inference only (execution='prune')")
        if cache is not None and execution != "prune":
            raise ValueError("a gated KV cache is filled by the inference path (execution='prune')")
        if cache is not None and cache.get_seq_length() > 0:
            if input_ids.shape[1] != 1:
                raise ValueError(
                    f"the gated KV cache already holds a prefill: decode one token per sample, got {input_ids.shape[1]}"
                )
            logits, keep = self.decode_step(input_ids[:, 0], cache, selection, random_selection)
            return DynamicLlavaOutput(logits=logits[:, None], keep=keep[:, None].float(), cache=cache)
        h, st = self._embed(input_ids, pixel_values, attention_mask)
        if labels is not None:
            answer_mask = self.answer_mask_from_labels(labels, st.real)
        if answer_mask is not None:
            st.answer = answer_mask.bool() & st.real & ~st.image
        l = self.sparse.sparse_layer
        if selection == "random" and random_selection is None:
            random_selection = self.make_random_selection(input_ids.shape[0], seed=0, device=h.device)
        if cache is not None:  # the prefill: true positions continue from the real token counts
            cache.next_position, cache.random_selection = st.real.sum(1), random_selection
            cache.seen_tokens = input_ids.shape[1]
            if cache.is_compileable:
                torch._dynamo.mark_static_address(cache.next_position)
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
        if cache is not None and cache.is_compileable:
            cache.select_attention(self.config.text_config.num_attention_heads)
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
        baseline's rule, or ``text_keep_override``) decides whether layers ``>= sparse_layer`` cache it. The host
        part (the room check, ``seen_tokens``) is here; the tensors are :meth:`decode_graph` (compiled, for a
        static cache, after :meth:`compile_decode`). ``random_selection`` defaults to the cache's.
        """
        cache.check_room(self.config.text_config.max_position_embeddings)
        step = self._compiled_decode if self._compiled_decode is not None and cache.is_compileable else None
        rand = random_selection if random_selection is not None else cache.random_selection
        logits, keep = (step or self.decode_graph)(token, cache, selection, rand, text_keep_override)
        cache.seen_tokens += 1
        return logits, keep

    def decode_graph(
        self,
        token: torch.Tensor,
        cache: GatedKVCache,
        selection: str,
        random_selection: RandomSelection | None,
        text_keep_override: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tensor part of :meth:`decode_step`. With a :class:`StaticGatedKVCache` it makes no host
        synchronisation and changes no shape (what ``torch.compile(fullgraph=True)`` and CUDA graphs capture);
        with the dynamic cache it synchronises once, for the longest length of the sparse layers."""
        b = token.shape[0]
        h = self.model.get_input_embeddings()(token.view(b, 1))
        ones = torch.ones(b, 1, dtype=torch.bool, device=h.device)
        st = TokenState(ones, ~ones, ones, cache.next_position.view(b, 1), cache.next_position.view(b, 1))
        l = self.sparse.sparse_layer
        n_layers = len(self.language_model.layers)
        static = cache.is_compileable
        dense_longest = cache.layers[0].longest + 1 if l and not static else None
        h = self._run_layers(0, l, h, st, cache=cache, longest=dense_longest)
        if text_keep_override is not None:
            keep = text_keep_override.view(b, 1).bool()
        else:
            keep = self._text_keep(h, st, selection, random_selection)
        longest = None
        if (
            not static and cache.layers[l].is_initialized
        ):  # one synchronisation per step for the sparse layers
            longest = int((cache.layers[l].lengths + keep.view(b).long()).max())
        h = self._run_layers(l, n_layers, h, st, cache=cache, write=keep, longest=longest)
        cache.next_position.add_(1)  # in place: a static address for CUDA graphs
        return self.lm_head(self.language_model.norm(h))[:, -1], keep.view(b)

    def compile_decode(self, **compile_kwargs: Any):
        """Compiles :meth:`decode_graph` with ``torch.compile(fullgraph=True, **compile_kwargs)``; later decoding
        steps with a :class:`StaticGatedKVCache` (``sparse_generate(cache_kind="static")`` or ``generate(cache=
        StaticGatedKVCache(...))``) run it. ``mode="reduce-overhead"`` captures CUDA graphs on a GPU."""
        self._compiled_decode = torch.compile(self.decode_graph, fullgraph=True, **compile_kwargs)
        return self._compiled_decode

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
        cache_kind: str = "dynamic",
    ) -> dict[str, Any]:
        """The package's reference greedy decode loop, with Dynamic-LLaVA's three inference modes (prefill pruning,
        then decoding with the gated KV cache or by re-running the pruned context without cache).

        ``cache_kind`` is ``"dynamic"`` (:class:`GatedKVCache`) or ``"static"`` (:class:`StaticGatedKVCache` of
        prompt columns + ``max_new_tokens`` slots). ``text_keep_pattern="alternate"`` forces output-text decisions
        keep/drop/keep/... (exactly 50 %); ``"random"`` keeps each generated token of each sample with probability
        1/2 from a generator seeded by ``seed`` (uneven per-sample caches; the benchmark uses both, as random
        predictors give an arbitrary rate). Returns ``sequences`` (new tokens, ``(B, T)``), ``cache`` and
        per-step ``text_keep`` decisions.
        """
        if cache_kind not in ("dynamic", "static"):
            raise ValueError(f"cache_kind must be 'dynamic' or 'static', got {cache_kind!r}")
        if text_keep_pattern not in (None, "alternate", "random"):
            raise ValueError(
                f"text_keep_pattern must be None, 'alternate' or 'random', got {text_keep_pattern!r}"
            )
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
            n_layers = len(self.language_model.layers)
            if cache_kind == "static":
                cache = StaticGatedKVCache(n_layers, input_ids.shape[1] + max_new_tokens)
            else:
                cache = GatedKVCache(n_layers)
            out = self.forward(input_ids, pixel_values, attention_mask, selection=selection, execution="prune",
                               cache=cache, random_selection=rand, last_logits_only=True)  # fmt: skip
            logits = out.logits[:, 0]
            pattern = None
            if text_keep_pattern == "alternate":
                pattern = (torch.arange(max_new_tokens) % 2 == 0)[None].expand(b, -1)
            elif text_keep_pattern == "random":
                pattern = torch.rand(b, max_new_tokens, generator=torch.Generator().manual_seed(seed)) < 0.5
            for step in range(max_new_tokens):
                nxt = logits.argmax(-1).masked_fill(done, pad_token_id)
                tokens.append(nxt)
                if eos_token_id is not None:
                    done = done | (nxt == eos_token_id)
                if bool(done.all()) or step == max_new_tokens - 1:
                    break
                override = None if pattern is None else pattern[:, step].to(input_ids.device)
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

    # ------------------------------------------------------------------ transformers' generate
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: GatedKVCache | None = None,
        selection: str | None = None,
        **kwargs: Any,
    ):
        """transformers' ``generate`` (greedy, sampling, beam search, streamers, stopping criteria, logits
        processors) with Dynamic-LLaVA's inference: the prompt is pruned at the prefill, then each step decodes
        with a gated KV cache: a fresh :class:`GatedKVCache` unless ``cache`` is given (a fresh
        :class:`StaticGatedKVCache` of at least prompt columns + ``max_new_tokens`` slots, times ``num_beams`` rows,
        for the static variant). With ``use_cache=False`` each step re-runs the pruned context, the generated
        tokens being output text. ``selection`` is one of dense / dynamic / random / fastv."""
        config = kwargs.get("generation_config") or self.generation_config
        if cache is None and kwargs.get("use_cache", config.use_cache):
            cache = GatedKVCache(len(self.language_model.layers))
        if cache is not None and not isinstance(cache, GatedKVCache):
            raise ValueError(
                f"Dynamic-LLaVA decodes with a GatedKVCache or StaticGatedKVCache, got {type(cache).__name__}"
            )
        if cache is not None and cache.get_seq_length():
            raise ValueError("pass a fresh gated KV cache to generate: this one already holds a sequence")
        return super().generate(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                                cache=cache, selection=selection, prompt_length=input_ids.shape[1], **kwargs)  # fmt: skip

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        next_sequence_length: int | None = None,
        cache: GatedKVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        selection: str | None = None,
        prompt_length: int | None = None,
        random_selection: RandomSelection | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """What ``generate`` passes to :meth:`forward`: the prompt with its images at the prefill, then the newest
        token with the gated cache; without a cache the whole sequence, its columns from ``prompt_length`` on
        being output text. The rest of ``generate``'s bookkeeping (``use_cache``, ``is_first_iteration``, ...)
        is not an input of this forward."""
        unknown = sorted(set(kwargs) - _GENERATE_BOOKKEEPING)
        if unknown:
            raise ValueError(f"Dynamic-LLaVA's generate does not take {unknown}")
        inputs: dict[str, Any] = {"selection": selection, "random_selection": random_selection}
        if cache is not None and cache.get_seq_length() > 0:
            return {**inputs, "input_ids": input_ids[:, -1:], "cache": cache}
        inputs.update(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, cache=cache,
                      execution="prune", last_logits_only=True)  # fmt: skip
        if cache is None and prompt_length is not None:
            inputs["answer_mask"] = (
                torch.arange(input_ids.shape[1], device=input_ids.device) >= prompt_length
            )[None].expand_as(input_ids)
        return inputs

    def _valid_auto_compile_criteria(self, model_kwargs: dict[str, Any], generation_config: Any) -> bool:
        """``generate`` never compiles the whole forward (the prefill prunes with data-dependent shapes): with a
        static cache, :meth:`compile_decode` compiles exactly the decoding step."""
        return False


AutoConfig.register(DynamicLlavaConfig.model_type, DynamicLlavaConfig, exist_ok=True)
AutoModelForImageTextToText.register(DynamicLlavaConfig, DynamicLlavaForConditionalGeneration, exist_ok=True)
