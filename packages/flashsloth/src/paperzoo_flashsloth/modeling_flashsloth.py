"""FlashSloth: the paper's new parts on top of transformers' SigLIP vision tower and Phi decoder.

Pipeline of one image and one question (FlashSloth, CVPR 2025, Sec. 3; Fig. 2)::

    pixels -> SigLIP (26 blocks) -> 27x27 = 729 patch features F (1152-d)
           -> spatial attention pooling (Sec. 3.2): softmax-weighted sum inside each 3x3 window -> 81 tokens
           -> mlp2x_gelu projector -> 81 LLM tokens
    LLM input: [system] USER: [81 visual tokens] [question] [9 query tokens] ASSISTANT: [answer]
    at the input of decoder layer 8 (index 7), prefill only, the embedded query module (Sec. 3.3) refines the 9
    query states: text->query attention over the question's hidden states, then image->query attention with
    keys from the down-projected *uncompressed* features F and values F itself; up-projection; residual.

HD mode (Sec. 3.4): every image is a global 384 view plus 4 crops of a 768 canvas: 5 x 81 = 405 visual tokens
(+ 9 queries = 414), and the embedded query module sees 5 x 729 = 3645 raw features.

Decoding reuses the KV cache: the query states were refined once, in the prefill pass. Generation is transformers'
``GenerationMixin.generate`` (greedy, sampling, beams, streamers): the prefill forward assembles the sequence and
returns its attention mask and positions, which :meth:`_update_model_kwargs_for_generation` carries into the
decoding steps (the prompt's ids hold one placeholder per image, the cache the assembled sequence).

The embedded query module is not a stateful hook: its inputs (:class:`_EmbQContext`) travel as a keyword argument
through ``PhiForCausalLM -> PhiModel -> decoder layer`` (transformers passes extra keyword arguments down), and a
stateless forward pre-hook on every decoder layer pops it; the layer ``embq_layer`` applies it to its input. Nothing
outlives the call, and under gradient checkpointing (which wraps the layer's ``forward``, inside the hook) the
recomputation reuses the refined input.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    DynamicCache,
    GenerationMixin,
    PhiForCausalLM,
    PreTrainedModel,
    SiglipVisionModel,
)
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast

from paperzoo_flashsloth.configuration import IGNORE_INDEX, FlashSlothConfig

# transformers renamed the cache argument of the decoder from `past_key_values` to `cache` in 5.2x; speak both.
_CACHE_KWARG = (
    "cache" if "cache" in inspect.signature(PhiForCausalLM.forward).parameters else "past_key_values"
)
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


# ----------------------------------------------------------------------------------------------------
# Spatial attention pooling (Sec. 3.2)
# ----------------------------------------------------------------------------------------------------


class TorchInitLinear(nn.Linear):
    """A Linear that keeps PyTorch's default init under transformers' ``post_init`` (the released projector and
    pooling scorer are built outside transformers' init, so they have PyTorch's kaiming-uniform init)."""


def to_windows(features: torch.Tensor, pool_size: int) -> torch.Tensor:
    """``[B, S*S, D]`` raster-ordered patch features -> ``[B, (S/p)^2, p*p, D]`` non-overlapping windows.

    Windows are in raster order; inside a window tokens are row-major (the official loop's order).
    """
    batch, n, dim = features.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(
            f"pooling needs a square grid of patch tokens, got {n} tokens (not a perfect square)"
        )
    if side % pool_size:
        raise ValueError(f"a {side}x{side} patch grid cannot be cut into {pool_size}x{pool_size} windows")
    g = side // pool_size
    x = features.reshape(batch, g, pool_size, g, pool_size, dim)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, g * g, pool_size * pool_size, dim)


class SpatialAttentionPooling(nn.Module):
    """SAP: a shared scorer MLP gives one logit per patch; softmax inside each window; weighted sum.

    The official ``AttentionPooling`` loops over the 81 windows in Python; this is the same computation on all
    windows at once (tests compare it with an independent loop).
    """

    def __init__(self, dim: int, pool_size: int = 3, dropout: float = 0.1):
        super().__init__()
        self.pool_size = pool_size
        self.scorer = nn.Sequential(
            TorchInitLinear(dim, dim), nn.ReLU(), nn.Dropout(dropout), TorchInitLinear(dim, 1)
        )

    def window_weights(self, windows: torch.Tensor) -> torch.Tensor:
        """Softmax weights ``[B, G, p*p]`` of the tokens of each window (each row sums to 1)."""
        logits = self.scorer(windows).squeeze(-1)
        return torch.softmax(logits.float(), dim=-1).to(windows.dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        windows = to_windows(features, self.pool_size)
        weights = self.window_weights(windows)
        return torch.einsum("bgk,bgkd->bgd", weights, windows)


class AveragePooling(nn.Module):
    """The ablation: plain average of each window (the official ``AveragePooling``, 3x3 here)."""

    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return to_windows(features, self.pool_size).mean(dim=2)


class NoPooling(nn.Module):
    """The uncompressed baseline: every patch token reaches the LLM."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class MultiModalProjector(nn.Module):
    """``mlp2x_gelu``: Linear(vision -> text), GELU, Linear(text -> text), applied after pooling."""

    def __init__(self, vision_dim: int, text_dim: int, act: str = "gelu"):
        super().__init__()
        self.linear_1 = TorchInitLinear(vision_dim, text_dim)
        self.act = ACT2FN[act]
        self.linear_2 = TorchInitLinear(text_dim, text_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


# ----------------------------------------------------------------------------------------------------
# Embedded query module (Sec. 3.3; the official "LQFormer" with one layer)
# ----------------------------------------------------------------------------------------------------


class QueryAttention(nn.Module):
    """Multi-head cross-attention without output projection: queries/keys in a small space, values kept wide.

    Scores are computed in fp32; masked keys get -1e4 (the official value). A row whose keys are all masked
    returns exactly 0 (attention over an empty set), so a block's result never depends on batch padding.
    """

    def __init__(self, qk_dim: int, value_in_dim: int, value_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(qk_dim, qk_dim)
        self.k_proj = nn.Linear(qk_dim, qk_dim)
        self.v_proj = nn.Linear(value_in_dim, value_dim)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        m, q_len, _ = query.shape
        k_len = key.shape[1]
        h = self.num_heads
        qk_head = self.q_proj.out_features // h
        v_head = self.v_proj.out_features // h
        # explicit head widths (not -1): an empty question gives k_len = 0, which the official code also accepts
        q = self.q_proj(query).view(m, q_len, h, qk_head).transpose(1, 2)
        k = self.k_proj(key).view(m, k_len, h, qk_head).transpose(1, 2)
        v = self.v_proj(value).view(m, k_len, h, v_head).transpose(1, 2)
        # scaled by the query/key head width (official: sqrt(down_head_dim)), not the value head width
        scores = torch.matmul(q.float(), k.float().transpose(2, 3)) / math.sqrt(qk_head)
        scores = scores.masked_fill(~key_mask[:, None, None, :], -1e4)
        weights = torch.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(m, q_len, -1)
        return out * key_mask.any(dim=-1).to(out.dtype)[:, None, None]


class EmbeddedQuery(nn.Module):
    """Refines the query tokens' hidden states with the question text, then with the raw visual features.

    Shapes (M query blocks, Q queries, T text tokens, K raw visual tokens, C LLM width, V vision width, d down):
    ``queries [M, Q, C]``, ``text [M, T, C]`` + ``text_mask [M, T]``, ``image [M, K, V]`` + ``image_mask [M, K]``.
    Returns ``[M, Q, C]``: ``queries + up(attn_image(attn_text(LN(down(queries)), LN(down(text))), LN(down_v(image)),
    image))``; blocks with no image before them are returned unchanged (the official ``output * 0``).
    """

    def __init__(self, text_dim: int, vision_dim: int, down_dim: int, num_heads: int):
        super().__init__()
        self.down_text = nn.Linear(text_dim, down_dim)  # shared by the queries and the question text
        self.down_image = nn.Linear(vision_dim, down_dim)
        self.ln_query = nn.LayerNorm(down_dim)
        self.ln_text = nn.LayerNorm(down_dim)
        self.ln_image = nn.LayerNorm(down_dim)
        self.text_to_query = QueryAttention(down_dim, down_dim, down_dim, num_heads)
        self.image_to_query = QueryAttention(down_dim, vision_dim, vision_dim, num_heads)
        self.up = nn.Linear(vision_dim, text_dim)

    def forward(
        self,
        queries: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        image: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        q = self.ln_query(self.down_text(queries))
        t = self.ln_text(self.down_text(text))
        x = self.text_to_query(q, t, t, text_mask)
        keys = self.ln_image(self.down_image(image))
        x = self.image_to_query(x, keys, image, image_mask)
        has_image = image_mask.any(dim=-1).to(queries.dtype)[:, None, None]
        return queries + self.up(x) * has_image


# ----------------------------------------------------------------------------------------------------
# Sequence assembly: placeholders -> visual tokens and query tokens, with question-span bookkeeping
# ----------------------------------------------------------------------------------------------------


@dataclass
class QueryLayout:
    """Where the query blocks and their questions sit in the assembled (padded) sequence.

    Attributes:
        sample: ``[M]`` batch row of each query block.
        start: ``[M]`` position of each block's first query token.
        text_index: ``[M, T]`` positions of each block's question tokens (0 where ``text_mask`` is False).
        text_mask: ``[M, T]`` valid question tokens.
        images: ``[M, I]`` global image indices visible to each block (0 where ``image_mask`` is False).
        image_mask: ``[M, I]`` valid entries of ``images``.
    """

    sample: torch.Tensor
    start: torch.Tensor
    text_index: torch.Tensor
    text_mask: torch.Tensor
    images: torch.Tensor
    image_mask: torch.Tensor

    @property
    def num_blocks(self) -> int:
        return int(self.sample.numel())


@dataclass
class AssembledBatch:
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    layout: QueryLayout
    lengths: list[int]


@dataclass
class _EmbQContext:
    """What the embedded query module needs at the input of decoder layer ``layer`` (one forward call)."""

    layout: QueryLayout
    raw_features: torch.Tensor  # [num_images, K, V]
    layer: int = -1
    apply: Callable[[torch.Tensor, QueryLayout, torch.Tensor], torch.Tensor] | None = None


EMBQ_KWARG = "flashsloth_embedded_query"


def _embedded_query_pre_hook(layer_index: int, module: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook of every decoder layer: pops the context (so attention never sees it) and, at the configured
    layer, replaces the layer's input hidden states by the refined ones."""
    ctx = kwargs.pop(EMBQ_KWARG, None)
    if ctx is None or ctx.layer != layer_index:
        return args, kwargs
    if args:
        return (ctx.apply(args[0], ctx.layout, ctx.raw_features), *args[1:]), kwargs
    kwargs["hidden_states"] = ctx.apply(kwargs["hidden_states"], ctx.layout, ctx.raw_features)
    return args, kwargs


@dataclass
class FlashSlothCausalLMOutputWithPast(CausalLMOutputWithPast):
    """transformers' causal-LM output plus, for a prefill (placeholder) forward, the assembled sequence's
    ``attention_mask`` and ``position_ids`` (``None`` for a decoding step)."""

    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None


def default_question_spans(
    ids: Sequence[int], image_token_id: int, learnable_token_id: int
) -> list[tuple[int, int]]:
    """Question span of every ``<learnable>`` when the caller gives none: the tokens between the previous
    image placeholder or ``<learnable>`` (or the start) and this ``<learnable>``. The chat template computes
    exact spans (user text only); this fallback is for raw prompts."""
    spans, last = [], -1
    for i, token in enumerate(ids):
        if token == learnable_token_id:
            spans.append((last + 1, i))
        if token in (image_token_id, learnable_token_id):
            last = i
    return spans


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------


class FlashSlothPreTrainedModel(PreTrainedModel):
    config_class = FlashSlothConfig
    base_model_prefix = "flashsloth"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["PhiDecoderLayer", "SiglipEncoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        # As released: the projector and the pooling scorer keep PyTorch's default init (they are built outside
        # transformers' init), the embedded query module gets Phi's N(0, 0.02), the queries kaiming-uniform.
        std = self.config.initializer_range
        if isinstance(module, TorchInitLinear):
            module.reset_parameters()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, FlashSlothForConditionalGeneration) and module.query_tokens is not None:
            nn.init.kaiming_uniform_(module.query_tokens, a=math.sqrt(5))


class FlashSlothForConditionalGeneration(FlashSlothPreTrainedModel, GenerationMixin):
    """SigLIP + pooling + projector + query tokens + embedded query module + Phi.

    ``input_ids`` hold one ``config.image_token_id`` per image (replaced by its visual tokens) and one
    ``config.learnable_token_id`` per user turn (replaced by the query tokens). ``pixel_values`` is
    ``[num_images, 3, H, W]`` (HD: ``[num_images, 1 + grid^2, 3, H, W]``, global view first), images in the
    order their placeholders appear, row by row. ``question_spans`` (optional) is ``[B, K, 2]`` with the
    ``[start, end)`` token range of the question of each ``<learnable>`` in the sample's own (unpadded) ids,
    ``-1`` rows for absent blocks; without it :func:`default_question_spans` is used.
    """

    def __init__(
        self,
        config: FlashSlothConfig,
        vision_tower: SiglipVisionModel | None = None,
        language_model: PhiForCausalLM | None = None,
    ):
        super().__init__(config)
        vision_cfg, text_cfg = config.vision_config, config.text_config
        self.vision_tower = vision_tower if vision_tower is not None else SiglipVisionModel(vision_cfg)
        # The released model uses the last hidden state of the truncated tower, without post-layernorm.
        self.vision_tower.post_layernorm = nn.Identity()
        if config.pooling == "attention":
            self.pooling = SpatialAttentionPooling(
                vision_cfg.hidden_size, config.pool_size, config.pooling_dropout
            )
        elif config.pooling == "average":
            self.pooling = AveragePooling(config.pool_size)
        else:
            self.pooling = NoPooling()
        self.projector = MultiModalProjector(
            vision_cfg.hidden_size, text_cfg.hidden_size, config.projector_hidden_act
        )
        if config.num_query_tokens > 0:
            self.query_tokens = nn.Parameter(torch.empty(config.num_query_tokens, text_cfg.hidden_size))
        else:
            self.register_parameter("query_tokens", None)
        if config.use_embedded_query:
            self.embedded_query = EmbeddedQuery(
                text_cfg.hidden_size, vision_cfg.hidden_size, config.embq_down_dim, config.embq_num_heads
            )
        else:
            self.embedded_query = None
        self.language_model = language_model if language_model is not None else PhiForCausalLM(text_cfg)
        for index, layer in enumerate(self.decoder_layers):
            layer.register_forward_pre_hook(
                functools.partial(_embedded_query_pre_hook, index), with_kwargs=True
            )
        self.post_init()

    # ---- plumbing shared with transformers -------------------------------------------------------------

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.model.layers

    # ---- vision ---------------------------------------------------------------------------------------

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw (pre-pooling) tower features ``[N, views * patches, V]`` of ``pixel_values`` (see the class doc)."""
        cfg = self.config
        expected_ndim = 5 if cfg.image_hd else 4
        if pixel_values.ndim != expected_ndim:
            layout = "[num_images, views, 3, H, W]" if cfg.image_hd else "[num_images, 3, H, W]"
            raise ValueError(
                f"pixel_values must be {layout} for image_hd={cfg.image_hd}, got shape {tuple(pixel_values.shape)}"
            )
        num_images = pixel_values.shape[0]
        views = pixel_values.shape[1] if cfg.image_hd else 1
        if cfg.image_hd and views != cfg.views_per_image:
            raise ValueError(
                f"HD pixel_values need {cfg.views_per_image} views per image (global + {cfg.hd_grid}x{cfg.hd_grid} "
                f"crops), got {views}; build them with paperzoo_flashsloth.data.hd_views"
            )
        flat = pixel_values.reshape(num_images * views, *pixel_values.shape[-3:])
        size = cfg.vision_config.image_size
        if flat.shape[-2:] != (size, size):
            raise ValueError(f"images must be {size}x{size} pixels, got {tuple(flat.shape[-2:])}")
        dtype = self.vision_tower.get_input_embeddings().weight.dtype
        # The released tower's forward is decorated with @torch.no_grad() (clip_encoder.py), so even the HD stage,
        # which the paper says trains the tower, never sends it a gradient; `released_hd_tower_frozen` keeps that.
        frozen = torch.no_grad() if cfg.released_hd_tower_frozen else contextlib.nullcontext()
        with frozen:
            raw = self.vision_tower(pixel_values=flat.to(dtype)).last_hidden_state  # [N*views, 729, V]
        return raw.reshape(num_images, views * raw.shape[1], raw.shape[-1])

    def compress(self, raw: torch.Tensor) -> torch.Tensor:
        """Pooling per view + projector: ``[N, views * patches, V]`` -> LLM tokens ``[N, image_seq_length, C]``."""
        cfg = self.config
        expected = cfg.views_per_image * cfg.patches_per_view
        if raw.ndim != 3 or raw.shape[1] != expected or raw.shape[2] != cfg.vision_config.hidden_size:
            raise ValueError(
                f"image features must be [num_images, {expected}, {cfg.vision_config.hidden_size}] (the tower's "
                f"last hidden state, {cfg.views_per_image} view(s)), got {tuple(raw.shape)}"
            )
        num_images, views = raw.shape[0], cfg.views_per_image
        pooled = self.pooling(raw.reshape(num_images * views, cfg.patches_per_view, raw.shape[-1]))
        tokens = self.projector(pooled)
        return tokens.reshape(num_images, views * tokens.shape[1], tokens.shape[-1])

    def encode_images(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the LLM tokens ``[N, image_seq_length, C]`` and the raw features ``[N, views*729, V]``."""
        raw = self.vision_features(pixel_values)
        return self.compress(raw), raw

    def query_embeddings(self) -> torch.Tensor:
        """The ``[Q, C]`` query tokens as inserted: the parameters plus the anchor token's embedding."""
        queries = self.query_tokens
        if self.config.query_anchor_token_id is not None:
            anchor = torch.tensor([self.config.query_anchor_token_id], device=queries.device)
            queries = queries + self.get_input_embeddings()(anchor).to(queries.dtype)
        return queries

    # ---- assembly -------------------------------------------------------------------------------------

    def assemble(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        image_tokens: torch.Tensor | None,
        *,
        labels: torch.Tensor | None = None,
        question_spans: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> AssembledBatch:
        """Replaces placeholders by visual and query tokens and records where queries and questions sit.

        Vectorised over the batch: every input token gets a length (1, the image's token count, or the number of
        queries; 0 for padding), a cumulative sum gives its first position in the new sequence, and one gather from
        a table ``[padding row; text embeddings; image tokens; query tokens]`` builds the batch."""
        cfg = self.config
        device = input_ids.device
        batch, width = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        valid = attention_mask.bool()
        embed = self.get_input_embeddings()
        ref = (
            embed.weight
        )  # dtype only: under ZeRO-3 the weight is a placeholder outside its module's forward
        hidden = cfg.text_config.hidden_size
        num_q = cfg.num_query_tokens
        n_img = image_tokens.shape[1] if image_tokens is not None else 0
        num_images = image_tokens.shape[0] if image_tokens is not None else 0
        is_image = (input_ids == cfg.image_token_id) & valid
        is_query = (input_ids == cfg.learnable_token_id) & valid
        is_text = valid & ~is_image & ~is_query
        placeholders = int(is_image.sum())
        if placeholders != num_images:
            more = "more images than" if num_images > placeholders else "fewer images than"
            raise ValueError(
                f"{more} image placeholders: got {num_images} images for {placeholders} placeholder(s) "
                f"(token id {cfg.image_token_id}) in input_ids; put one '<image>' in the prompt per image"
            )
        queries_per_sample = is_query.sum(1)
        if num_q == 0 and bool(queries_per_sample.any()):
            b = int(queries_per_sample.nonzero()[0])
            raise ValueError(
                f"sample {b} contains '<learnable>' (id {cfg.learnable_token_id}) but this model has no query "
                "tokens (num_query_tokens=0); remove it from the prompt"
            )
        if num_q > 0 and not bool(queries_per_sample.all()):
            b = int((queries_per_sample == 0).nonzero()[0])
            raise ValueError(
                f"sample {b} has no '<learnable>' token (id {cfg.learnable_token_id}): FlashSloth expects one at "
                "the end of every user turn, right before 'ASSISTANT:'; build prompts with "
                "paperzoo_flashsloth.data.ChatTemplate"
            )

        # new positions
        lengths = is_text.long() + is_image.long() * n_img + is_query.long() * num_q
        new_start = torch.cumsum(lengths, 1) - lengths
        totals = lengths.sum(1)
        max_len = int(totals.max())
        offset = (max_len - totals) if padding_side == "left" else torch.zeros_like(totals)
        new_start = new_start + offset[:, None]

        # source rows of every output position
        text_rows = torch.cumsum(is_text.flatten().long(), 0).view(
            batch, width
        )  # 1-based rank of text tokens
        image_rank = torch.cumsum(is_image.flatten().long(), 0).view(batch, width) - 1
        image_base = 1 + int(is_text.sum())
        query_base = image_base + num_images * n_img
        first_row = torch.where(
            is_text,
            text_rows,
            torch.where(is_image, image_base + image_rank * n_img, torch.full_like(text_rows, query_base)),
        )
        token_len = lengths.flatten()
        keep = token_len > 0
        starts = new_start.flatten()[keep]
        rows_start = first_row.flatten()[keep]
        sample_of = torch.arange(batch, device=device)[:, None].expand(batch, width).flatten()[keep]
        token_len = token_len[keep]
        within = torch.arange(int(token_len.sum()), device=device) - torch.repeat_interleave(
            torch.cumsum(token_len, 0) - token_len, token_len
        )
        out_b = torch.repeat_interleave(sample_of, token_len)
        out_pos = torch.repeat_interleave(starts, token_len) + within
        index = torch.zeros(batch, max_len, dtype=torch.long, device=device)
        index[out_b, out_pos] = torch.repeat_interleave(rows_start, token_len) + within

        parts = [
            torch.zeros(1, hidden, dtype=ref.dtype, device=device),
            embed(input_ids[is_text]).to(ref.dtype),
        ]
        if image_tokens is not None:
            parts.append(image_tokens.reshape(-1, image_tokens.shape[-1]).to(ref.dtype))
        if num_q:
            parts.append(self.query_embeddings().to(ref.dtype))
        embeds = torch.cat(parts)[index]

        positions_range = torch.arange(max_len, device=device)[None]
        mask = ((positions_range >= offset[:, None]) & (positions_range < (offset + totals)[:, None])).long()
        positions = (positions_range - offset[:, None]).clamp(min=0) * mask
        new_labels = None
        if labels is not None:
            new_labels = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.long, device=device)
            rows, cols = is_text.nonzero(as_tuple=True)
            new_labels[rows, new_start[rows, cols]] = labels[rows, cols]

        layout = self._query_layout(input_ids, valid, is_image, is_query, new_start, question_spans)
        return AssembledBatch(embeds, mask, positions, new_labels, layout, totals.tolist())

    def _query_layout(
        self,
        input_ids: torch.Tensor,
        valid: torch.Tensor,
        is_image: torch.Tensor,
        is_query: torch.Tensor,
        new_start: torch.Tensor,
        question_spans: torch.Tensor | None,
    ) -> QueryLayout:
        """Query blocks, their question tokens and their images, all as tensors (no per-sample loop)."""
        device = input_ids.device
        batch, width = input_ids.shape
        block_b, block_i = is_query.nonzero(as_tuple=True)  # row-major: blocks in order within each sample
        m = block_b.numel()
        first_valid = valid.long().argmax(1)  # spans index the sample's own (unpadded) ids
        special = is_image | is_query
        if question_spans is not None:
            spans_ok = question_spans[..., 0] >= 0
            count = spans_ok.sum(1)
            per_sample = is_query.sum(1)
            if not torch.equal(count, per_sample):
                b = int((count != per_sample).nonzero()[0])
                raise ValueError(
                    f"sample {b}: {int(count[b])} question span(s) for {int(per_sample[b])} '<learnable>' token(s); "
                    "give one [start, end) span per query block"
                )
            spans = question_spans[spans_ok]  # [M, 2], same order as the blocks
            start = spans[:, 0] + first_valid[block_b]
            end = spans[:, 1] + first_valid[block_b]
        else:  # fallback: from the previous image or <learnable> (or the start) to this <learnable>
            marks = torch.where(special, torch.arange(width, device=device), torch.full_like(input_ids, -1))
            prev = torch.cummax(marks, 1).values
            prev = torch.cat([torch.full_like(prev[:, :1], -1), prev[:, :-1]], 1)
            start = torch.maximum(prev[block_b, block_i] + 1, first_valid[block_b])
            end = block_i
        if m and bool(((start > end) | (end > block_i) | (start < first_valid[block_b])).any()):
            k = int(((start > end) | (end > block_i) | (start < first_valid[block_b])).nonzero()[0])
            b = int(block_b[k])
            raise ValueError(
                f"sample {b}: question span {(int(start[k] - first_valid[b]), int(end[k] - first_valid[b]))} must lie "
                f"before its '<learnable>' at {int(block_i[k] - first_valid[b])}"
            )
        specials_before = torch.cumsum(torch.cat([torch.zeros_like(special[:, :1]), special], 1).long(), 1)
        if m and bool((specials_before[block_b, end] - specials_before[block_b, start] > 0).any()):
            k = int((specials_before[block_b, end] - specials_before[block_b, start] > 0).nonzero()[0])
            b = int(block_b[k])
            raise ValueError(
                f"sample {b}: question span {(int(start[k] - first_valid[b]), int(end[k] - first_valid[b]))} "
                "covers an image or '<learnable>' token"
            )
        span_len = end - start
        max_t = int(span_len.max()) if m else 0
        steps = torch.arange(max_t, device=device)[None]
        text_mask = steps < span_len[:, None]
        src = (start[:, None] + steps).clamp(max=width - 1)
        text_index = torch.where(text_mask, new_start[block_b[:, None], src], torch.zeros_like(src))
        # images visible to each block: the images of its sample placed before it
        img_b, img_i = is_image.nonzero(as_tuple=True)
        visible = (img_b[None, :] == block_b[:, None]) & (
            img_i[None, :] < block_i[:, None]
        )  # [M, num_images]
        count = visible.sum(1)
        max_i = max(int(count.max()) if m else 0, 1)
        order = torch.sort(visible.long(), dim=1, descending=True, stable=True).indices[:, :max_i]
        image_mask = torch.arange(max_i, device=device)[None] < count[:, None]
        images = torch.where(image_mask, order, torch.zeros_like(order))
        if images.shape[1] < max_i:  # no image in the batch at all
            images = torch.zeros(m, max_i, dtype=torch.long, device=device)
        return QueryLayout(
            sample=block_b,
            start=new_start[block_b, block_i],
            text_index=text_index,
            text_mask=text_mask,
            images=images,
            image_mask=image_mask,
        )

    # ---- the embedded query hook ------------------------------------------------------------------------

    def apply_embedded_query(
        self, hidden: torch.Tensor, layout: QueryLayout, raw_features: torch.Tensor
    ) -> torch.Tensor:
        """Refines the query positions of ``hidden`` (the input of decoder layer ``embq_layer``); other
        positions are returned unchanged (out of place)."""
        if layout.num_blocks == 0:
            return hidden
        num_q = self.config.num_query_tokens
        q_pos = layout.start[:, None] + torch.arange(num_q, device=hidden.device)
        rows = layout.sample[:, None]
        queries = hidden[rows.expand_as(q_pos), q_pos]
        text = hidden[rows.expand_as(layout.text_index), layout.text_index]
        text = text * layout.text_mask[..., None].to(text.dtype)
        k_per_image = raw_features.shape[1]
        image = raw_features[layout.images].to(hidden.dtype)  # [M, I, K, V]
        image = image.reshape(image.shape[0], -1, image.shape[-1])
        image_mask = layout.image_mask[:, :, None].expand(-1, -1, k_per_image).reshape(image.shape[0], -1)
        refined = self.embedded_query(queries, text, layout.text_mask, image, image_mask)
        return hidden.index_put((rows.expand_as(q_pos), q_pos), refined.to(hidden.dtype))

    def _run_language_model(self, inputs_embeds: torch.Tensor, *, embq: _EmbQContext | None, **kwargs):
        """The Phi decoder on assembled embeddings; ``embq`` (prefill only) reaches the decoder layers' pre-hooks."""
        if "cache" in kwargs:
            kwargs[_CACHE_KWARG] = kwargs.pop("cache")
        if embq is not None and self.embedded_query is not None:
            embq.layer, embq.apply = self.config.embq_layer, self.apply_embedded_query
            kwargs[EMBQ_KWARG] = embq
        return self.language_model(inputs_embeds=inputs_embeds, **kwargs)

    def prepare_multimodal(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        question_spans: torch.Tensor | None = None,
        padding_side: str = "right",
        image_features: torch.Tensor | None = None,
    ) -> tuple[AssembledBatch, _EmbQContext | None]:
        """Vision encoding + assembly; returns the LLM inputs and the embedded query context.

        ``image_features`` (instead of ``pixel_values``) are precomputed tower outputs, e.g. cached while the tower
        is frozen (stage II)."""
        image_tokens = raw = None
        if pixel_values is not None and image_features is not None:
            raise ValueError(
                "pass either pixel_values or image_features (precomputed tower outputs), not both"
            )
        if image_features is not None and image_features.shape[0] > 0:
            raw = image_features
            image_tokens = self.compress(raw)
        elif pixel_values is not None and pixel_values.shape[0] > 0:
            image_tokens, raw = self.encode_images(pixel_values)
        assembled = self.assemble(
            input_ids,
            attention_mask,
            image_tokens,
            labels=labels,
            question_spans=question_spans,
            padding_side=padding_side,
        )
        ctx = None
        if self.embedded_query is not None:
            if raw is None:  # text-only batch: keep the module in the graph with a zero contribution
                raw = torch.zeros(1, 1, self.config.vision_config.hidden_size, device=input_ids.device)
                assembled.layout.image_mask.zero_()
            ctx = _EmbQContext(assembled.layout, raw)
        return assembled, ctx

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        question_spans: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache=None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        image_features: torch.Tensor | None = None,
        padding_side: str | None = None,
        **kwargs,
    ) -> FlashSlothCausalLMOutputWithPast:
        """Training / prefill forward (placeholders in ``input_ids``) or, with a non-empty ``cache``, one decoding
        step (``input_ids`` = the new tokens, ``attention_mask`` / ``position_ids`` of the assembled sequence, as
        ``generate`` passes them). Returns transformers' causal-LM output over the assembled sequence, with its
        ``attention_mask`` and ``position_ids`` at prefill. ``image_features``: precomputed tower outputs instead of
        ``pixel_values``. ``padding_side``: where the assembled sequence is padded (default: ``left`` when a cache is
        used, so the last position of every row is its last token; ``right`` for training)."""
        if cache is None:
            cache = kwargs.pop("past_key_values", None)
        if cache is not None and cache.get_seq_length() > 0:  # decoding: the query module ran at prefill
            embeds = self.get_input_embeddings()(input_ids)
            out = self._run_language_model(
                embeds, embq=None, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                use_cache=True if use_cache is None else use_cache, logits_to_keep=logits_to_keep, labels=labels,
                **kwargs,
            )  # fmt: skip
            return FlashSlothCausalLMOutputWithPast(
                loss=out.loss, logits=out.logits, hidden_states=out.hidden_states, attentions=out.attentions,
                **{_CACHE_FIELD: _out_cache(out)},
            )  # fmt: skip
        if padding_side is None:
            padding_side = "left" if (cache is not None or use_cache) else "right"
        assembled, ctx = self.prepare_multimodal(
            input_ids, attention_mask, pixel_values, labels, question_spans, padding_side=padding_side,
            image_features=image_features,
        )  # fmt: skip
        if cache is not None:
            kwargs["cache"] = cache
        out = self._run_language_model(
            assembled.inputs_embeds,
            embq=ctx,
            attention_mask=assembled.attention_mask,
            position_ids=assembled.position_ids,
            labels=assembled.labels,
            use_cache=bool(use_cache),
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return FlashSlothCausalLMOutputWithPast(
            loss=out.loss, logits=out.logits, hidden_states=out.hidden_states, attentions=out.attentions,
            attention_mask=assembled.attention_mask, position_ids=assembled.position_ids,
            **{_CACHE_FIELD: _out_cache(out)},
        )  # fmt: skip

    # ---- generation (transformers' GenerationMixin) ---------------------------------------------------------

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.language_model.config)

    def prepare_inputs_for_generation(self, input_ids, *args, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        inputs["padding_side"] = "left"  # every row's last position must be its last token
        return inputs

    def _update_model_kwargs_for_generation(
        self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1
    ):
        """After the prefill, the cache holds the *assembled* sequence (visual and query tokens in place of the
        placeholders): decoding steps continue its attention mask and positions, not the prompt's."""
        assembled_mask = outputs.get("attention_mask")
        assembled_positions = outputs.get("position_ids")
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        cache = model_kwargs.get("cache", model_kwargs.get("past_key_values"))
        if assembled_mask is not None and cache is not None:
            new = torch.arange(1, num_new_tokens + 1, device=assembled_positions.device)[None]
            model_kwargs["attention_mask"] = torch.cat(
                [assembled_mask, assembled_mask.new_ones(assembled_mask.shape[0], num_new_tokens)], dim=-1
            )
            model_kwargs["position_ids"] = torch.cat(
                [assembled_positions, assembled_positions[:, -1:] + new], dim=-1
            )
        return model_kwargs


def _out_cache(out):
    """The cache of a transformers output (``cache`` from 5.2x on, ``past_key_values`` before)."""
    return getattr(out, _CACHE_FIELD, None)


# Auto classes: AutoConfig / AutoModel / AutoModelForImageTextToText resolve model_type "flashsloth" once this module
# is imported (``import paperzoo_flashsloth`` exposes it lazily).
AutoConfig.register(FlashSlothConfig.model_type, FlashSlothConfig, exist_ok=True)
AutoModel.register(FlashSlothConfig, FlashSlothForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(FlashSlothConfig, FlashSlothForConditionalGeneration, exist_ok=True)
