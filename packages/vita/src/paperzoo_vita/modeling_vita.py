"""VITA-1.0: the paper's new parts on top of transformers' InternViT (``InternVLVisionModel``) and Mixtral.

Pipeline (VITA, arXiv 2408.05211, Sec. 3; notes §1.2-1.4)::

    tile/frame 448x448 -> InternViT-300M last hidden state, CLS dropped: 32x32 = 1024 x 1024
                       -> x0.5 (the release's quirk), pixel shuffle 0.5: 16x16 = 256 x 4096
                       -> mlp2x_gelu projector: 256 x d_model
    16 kHz audio -> Kaldi fbank 80 (audio.py) -> global CMVN -> Conv2dSubsampling4 (x4 in time, 80 -> 19 bins)
                 -> Linear + LayerNorm + Dropout + ReLU -> x sqrt(d) + relative sinusoidal positions
                 -> N pre-norm relative-position Transformer layers -> LayerNorm
                 -> adapter: right-pad 4, Conv1d(d, 2d, k5, s2), LayerNorm(eps 1e-3), GELU, Linear(2d, d_model)
    LLM input: the prompt's token embeddings with every image / audio placeholder replaced, in order, by the
    feature tokens of the next tile / clip; Mixtral decodes.

Placeholders: the processor writes ``image_seq_length`` copies of ``config.image_token_id`` per tile and one
``config.audio_token_id`` per audio token (the layout of the released vLLM port). The official training code puts one
sentinel (-200 / -500) per image or clip in ``input_ids`` and splices variable-length blocks; the sequence the LLM sees
is the same, and with expanded placeholders transformers' ``generate`` needs no bookkeeping: the multimodal path runs
at prefill only (``pixel_values`` / ``input_features`` are dropped by ``GenerationMixin`` afterwards, and the forward
ignores them whenever the cache is not empty).

The dummy-modality trick of the release (every sample consumes one image and one audio entry, zero-length slices keep
the encoders in the graph for ZeRO-3) becomes: in training mode, a batch without images (audio) adds the projector's
(adapter's) output on a zero input, multiplied by 0, so every trainable parameter gets a (zero) gradient.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    GenerationMixin,
    InternVLVisionModel,
    MixtralForCausalLM,
    PreTrainedModel,
)
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast

from paperzoo_vita.configuration import IGNORE_INDEX, VitaAudioConfig, VitaConfig

_CACHE_KWARG = (
    "cache" if "cache" in inspect.signature(MixtralForCausalLM.forward).parameters else "past_key_values"
)
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


# ----------------------------------------------------------------------------------------------------
# Vision: pixel shuffle and projector (notes §1.2)
# ----------------------------------------------------------------------------------------------------


def pixel_shuffle(features: torch.Tensor) -> torch.Tensor:
    """``[N, h*w, C]`` on an ``h x w`` row-major grid -> ``[N, (h/2)*(w/2), 4C]``.

    Output token ``(r, c)`` concatenates the inputs ``(2r, 2c), (2r, 2c+1), (2r+1, 2c), (2r+1, 2c+1)`` (row offset
    major, column offset minor), the channel order of InternVL's ``pixel_shuffle`` with ``ps_version='v2'``."""
    n, length, channels = features.shape
    side = math.isqrt(length)
    if side * side != length or side % 2:
        raise ValueError(f"pixel_shuffle needs a square grid of even side, got {length} tokens")
    half = side // 2
    x = features.reshape(n, half, 2, half, 2, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, half * half, 4 * channels)


class VitaProjector(nn.Sequential):
    """``mlp2x_gelu``: Linear(4 x vit width -> d_model), GELU, Linear(d_model -> d_model); keys ``0`` and ``2`` as in
    the released checkpoint (``model.mm_projector.0`` / ``.2``)."""

    def __init__(self, in_dim: int, out_dim: int, act: str = "gelu"):
        super().__init__(nn.Linear(in_dim, out_dim), ACT2FN[act], nn.Linear(out_dim, out_dim))


# ----------------------------------------------------------------------------------------------------
# Audio: the "whale" encoder (notes §1.2)
# ----------------------------------------------------------------------------------------------------


class GlobalCMVN(nn.Module):
    """``(x - mean) * istd`` with per-bin statistics of the training set (buffers; identity until loaded)."""

    def __init__(self, num_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_bins))
        self.register_buffer("istd", torch.ones(num_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd


class Conv2dSubsampling4(nn.Module):
    """Conv2d(1 -> d, k3, s2), ReLU, Conv2d(d -> d, k3, s2), ReLU, then Linear(d * F' -> d) over (channel, freq).
    Time and frequency shrink as ``(n - 1) // 2`` twice: 80 bins -> 39 -> 19."""

    def __init__(self, num_bins: int, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, dim, 3, 2), nn.ReLU(), nn.Conv2d(dim, dim, 3, 2), nn.ReLU())
        freq = ((num_bins - 1) // 2 - 1) // 2
        self.out = nn.Linear(dim * freq, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))  # [B, d, T', F']
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, mask[:, 2::2][:, 2::2]


class RelPositionalEncoding(nn.Module):
    """Scales the input by sqrt(d) and returns the first ``T`` rows of the sinusoidal table as positions (WeNet's
    legacy relative encoding: the attention uses ``pos_emb`` of length T, no rel-shift)."""

    def __init__(self, dim: int, max_len: int = 5000, dropout: float = 0.1):
        super().__init__()
        self.scale = math.sqrt(dim)
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)
        self.register_buffer("table", table, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] > self.table.shape[0]:
            raise ValueError(
                f"audio of {x.shape[1]} encoder frames exceeds the {self.table.shape[0]}-row position table "
                f"(about {self.table.shape[0] * 0.04:.0f} s); split the clip"
            )
        pos = self.table[None, : x.shape[1]].to(x.dtype)
        return self.dropout(x * self.scale), self.dropout(pos)


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL position terms (WeNet legacy form, as the release):
    ``scores = ((q + u) k^T + (q + v) (W_p p)^T) / sqrt(d_k)``; padded keys masked before and after the softmax."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.d_k = heads, dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.heads, self.d_k)
        k = self.linear_k(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos).view(pos.shape[0], t, self.heads, self.d_k).transpose(1, 2)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        scores = (ac + bd) / math.sqrt(self.d_k)
        masked = ~key_mask[:, None, None, :]
        scores = scores.masked_fill(masked, torch.finfo(torch.float16).min)
        attn = torch.softmax(scores, dim=-1).masked_fill(masked, 0.0)
        out = torch.matmul(self.dropout(attn), v).transpose(1, 2).reshape(b, t, -1)
        return self.linear_out(out)


class WhaleLayer(nn.Module):
    """Pre-norm block: ``x + Drop(Attn(LN(x)))``, then ``x + Drop(FFN(LN(x)))``, ReLU FFN."""

    def __init__(self, cfg: VitaAudioConfig):
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.self_attn = RelPositionAttention(d, cfg.num_attention_heads, cfg.attention_dropout)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(d, cfg.intermediate_size),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.intermediate_size, d),
        )
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.norm1(x), mask, pos))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class WhaleAudioEncoder(nn.Module):
    """CMVN -> Conv2dSubsampling4 -> embedding -> relative positions -> layers -> final LayerNorm."""

    def __init__(self, cfg: VitaAudioConfig):
        super().__init__()
        d = cfg.hidden_size
        self.cmvn = GlobalCMVN(cfg.num_mel_bins)
        self.subsampling = Conv2dSubsampling4(cfg.num_mel_bins, d)
        self.embed = nn.Sequential(
            nn.Linear(d, d), nn.LayerNorm(d, eps=cfg.layer_norm_eps), nn.Dropout(cfg.dropout), nn.ReLU()
        )
        self.pos_enc = RelPositionalEncoding(d, cfg.max_position_embeddings, cfg.dropout)
        self.layers = nn.ModuleList(WhaleLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.after_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features [B, T, bins]``, ``mask [B, T]`` (True on real frames) -> ``[B, T', d]``, ``[B, T']``."""
        x, mask = self.subsampling(self.cmvn(features), mask)
        x, pos = self.pos_enc(self.embed(x))
        for layer in self.layers:
            x = layer(x, mask, pos)
        return self.after_norm(x), mask


class WhaleAdapter(nn.Module):
    """The audio connector as released (``CNNSubsampling``, single-conv branch): right-pad ``k - 1``, Conv1d(d -> 2d,
    k, stride 2), LayerNorm(2d, eps 1e-3), GELU, Linear(2d -> d_model); the mask keeps every second frame."""

    def __init__(self, cfg: VitaAudioConfig, out_dim: int):
        super().__init__()
        d, k = cfg.hidden_size, cfg.adapter_kernel_size
        self.kernel_size = k
        self.conv = nn.Conv1d(d, 2 * d, k, stride=2)
        self.norm = nn.LayerNorm(2 * d, eps=cfg.adapter_norm_eps)
        self.act = ACT2FN[cfg.adapter_hidden_act]
        self.proj = nn.Linear(2 * d, out_dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = F.pad(x.transpose(1, 2), (0, self.kernel_size - 1))
        x = self.proj(self.act(self.norm(self.conv(x).transpose(1, 2))))
        return x, (mask[:, 0::2] if mask is not None else None)


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------


@dataclass
class VitaCausalLMOutputWithPast(CausalLMOutputWithPast):
    router_logits: tuple | None = None


class VitaPreTrainedModel(PreTrainedModel):
    config_class = VitaConfig
    base_model_prefix = "vita"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["MixtralDecoderLayer", "InternVLVisionLayer", "WhaleLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, RelPositionAttention):
            nn.init.xavier_uniform_(module.pos_bias_u)
            nn.init.xavier_uniform_(module.pos_bias_v)
        elif isinstance(module, GlobalCMVN):
            module.mean.zero_()
            module.istd.fill_(1.0)
        elif isinstance(module, RelPositionalEncoding):
            pass  # a fixed table


def load_global_cmvn(model: VitaForConditionalGeneration, path: str) -> None:
    """Loads WeNet-style ``global_cmvn`` JSON statistics (``mean_stat``, ``var_stat``, ``frame_num``), as shipped
    beside the release's audio encoder: ``mean = sum / n``, ``istd = 1 / sqrt(max(sumsq / n - mean^2, 1e-20))``."""
    import json

    with open(path) as handle:
        stats = json.load(handle)
    try:
        n = float(stats["frame_num"])
        total = torch.tensor(stats["mean_stat"], dtype=torch.float64)
        squares = torch.tensor(stats["var_stat"], dtype=torch.float64)
    except KeyError as error:
        raise ValueError(
            f"{path}: global_cmvn JSON needs mean_stat, var_stat and frame_num; missing {error}"
        ) from error
    mean = total / n
    var = torch.clamp(squares / n - mean * mean, min=1e-20)
    cmvn = model.audio_encoder.cmvn
    if mean.shape != cmvn.mean.shape:
        raise ValueError(f"{path}: {mean.shape[0]} bins, the model has {cmvn.mean.shape[0]}")
    cmvn.mean.copy_(mean.to(cmvn.mean.dtype))
    cmvn.istd.copy_((1.0 / var.sqrt()).to(cmvn.istd.dtype))


class VitaForConditionalGeneration(VitaPreTrainedModel, GenerationMixin):
    """InternViT + mlp2x projector + whale encoder/adapter + Mixtral.

    Inputs: ``input_ids`` with expanded placeholders (see the module doc), ``pixel_values [N, 3, H, W]`` (all tiles
    and frames of the batch in the order of their placeholders, sample by sample), ``input_features [A, T, 80]``
    (fbank of every clip, in placeholder order) with ``input_features_mask [A, T]`` (1 on real frames).
    """

    def __init__(self, config: VitaConfig):
        super().__init__(config)
        self.vision_tower = InternVLVisionModel(config.vision_config)
        self.mm_projector = VitaProjector(
            config.vision_feature_dim, config.text_config.hidden_size, config.projector_hidden_act
        )
        self.audio_encoder = WhaleAudioEncoder(config.audio_config)
        self.audio_adapter = WhaleAdapter(config.audio_config, config.text_config.hidden_size)
        self.language_model = MixtralForCausalLM(config.text_config)
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

    # ---- encoders ------------------------------------------------------------------------------------

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, image_seq_length, d_model]`` (256 x 4096 per 448 tile for the release)."""
        out = self.vision_tower(
            pixel_values=pixel_values, output_hidden_states=self.config.vision_feature_layer != -1
        )
        hidden = (
            out.last_hidden_state
            if self.config.vision_feature_layer == -1
            else out.hidden_states[self.config.vision_feature_layer]
        )
        features = hidden[:, 1:]  # drop CLS
        features = pixel_shuffle(features * self.config.vision_feature_scale)
        return self.mm_projector(features)

    def encode_audio(
        self, input_features: torch.Tensor, input_features_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[A, T, bins]`` fbank -> ``[A, T'', d_model]`` tokens and their mask ``[A, T'']`` (bool)."""
        if input_features_mask is None:
            input_features_mask = torch.ones(
                input_features.shape[:2], dtype=torch.bool, device=input_features.device
            )
        x, mask = self.audio_encoder(input_features, input_features_mask.bool())
        return self.audio_adapter(x, mask)

    # ---- splicing -------------------------------------------------------------------------------------

    def splice(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The LLM input embeddings: text embeddings with the placeholder positions overwritten, in reading order
        (row by row), by the image tokens then (independently) by the audio tokens."""
        cfg = self.config
        image_pos = input_ids == cfg.image_token_id
        audio_pos = input_ids == cfg.audio_token_id
        embeds = self.get_input_embeddings()(input_ids)
        n_image_slots, n_audio_slots = int(image_pos.sum()), int(audio_pos.sum())
        if pixel_values is not None and pixel_values.shape[0] > 0:
            image_tokens = self.encode_images(pixel_values.to(embeds.dtype)).reshape(-1, embeds.shape[-1])
            if image_tokens.shape[0] != n_image_slots:
                raise ValueError(
                    f"{pixel_values.shape[0]} tiles/frames give {image_tokens.shape[0]} image tokens but the prompt "
                    f"has {n_image_slots} image placeholders ({cfg.image_seq_length} per tile); every <image> needs "
                    "one tile and every tile one <image>"
                )
            embeds = embeds.masked_scatter(image_pos[..., None], image_tokens.to(embeds.dtype))
        else:
            if n_image_slots:
                raise ValueError(
                    f"the prompt has {n_image_slots} image placeholders but no pixel_values were given"
                )
            if self.training:
                dummy = self.mm_projector(embeds.new_zeros(1, cfg.vision_feature_dim)).sum()
                embeds = embeds + 0.0 * dummy
        if input_features is not None and input_features.shape[0] > 0:
            tokens, mask = self.encode_audio(input_features.to(embeds.dtype), input_features_mask)
            audio_tokens = tokens[mask]
            if audio_tokens.shape[0] != n_audio_slots:
                raise ValueError(
                    f"{input_features.shape[0]} audio clips give {audio_tokens.shape[0]} audio tokens but the prompt "
                    f"has {n_audio_slots} audio placeholders; every <audio> needs one clip and every clip one <audio>"
                )
            embeds = embeds.masked_scatter(audio_pos[..., None], audio_tokens.to(embeds.dtype))
        else:
            if n_audio_slots:
                raise ValueError(
                    f"the prompt has {n_audio_slots} audio placeholders but no input_features were given"
                )
            if self.training:
                dummy = self.audio_adapter(embeds.new_zeros(1, 1, cfg.audio_config.hidden_size))[0].sum()
                embeds = embeds + 0.0 * dummy
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache=None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> VitaCausalLMOutputWithPast:
        """Training / prefill (placeholders in ``input_ids`` and media) or one decoding step (non-empty cache: media
        are ignored). Labels on placeholder positions are ignored whatever the caller wrote there."""
        if cache is None:
            cache = kwargs.pop("past_key_values", None)
        prefill = cache is None or cache.get_seq_length() == 0
        if inputs_embeds is None:
            if prefill:
                inputs_embeds = self.splice(input_ids, pixel_values, input_features, input_features_mask)
            else:
                inputs_embeds = self.get_input_embeddings()(input_ids)
        if labels is not None and input_ids is not None:
            media = (input_ids == self.config.image_token_id) | (input_ids == self.config.audio_token_id)
            labels = labels.masked_fill(media, IGNORE_INDEX)
        limit = self.config.model_max_length
        if labels is not None and prefill and limit is not None and inputs_embeds.shape[1] > limit:
            # the release truncates the spliced sequence (media features included) to the training length
            inputs_embeds, labels = inputs_embeds[:, :limit], labels[:, :limit]
            attention_mask = attention_mask[:, :limit] if attention_mask is not None else None
            position_ids = position_ids[:, :limit] if position_ids is not None else None
        if cache is not None:
            kwargs[_CACHE_KWARG] = cache
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return VitaCausalLMOutputWithPast(
            loss=out.loss,
            logits=out.logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            router_logits=getattr(out, "router_logits", None),
            **{_CACHE_FIELD: getattr(out, _CACHE_FIELD, None)},
        )

    def prepare_inputs_for_generation(self, input_ids, *args, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        cache = inputs.get(_CACHE_KWARG, inputs.get("past_key_values"))
        if cache is not None and cache.get_seq_length() > 0:  # media only at prefill
            for key in ("pixel_values", "input_features", "input_features_mask"):
                inputs.pop(key, None)
        return inputs

    # ---- training stages (notes §1.6) -----------------------------------------------------------------

    def set_stage(self, stage: str, train_audio_adapter: bool = False) -> None:
        """``projector``: only the vision projector trains (stage 1, lr 5e-4); ``finetune``: LLM + projector
        (+ the audio adapter when ``train_audio_adapter``; stage 2, lr 2e-5); ``continual``: LLM + projector,
        adapter frozen. The vision tower and the audio encoder are always frozen."""
        if stage not in ("projector", "finetune", "continual"):
            raise ValueError(f"stage must be projector, finetune or continual, got {stage!r}")
        self.requires_grad_(False)
        self.mm_projector.requires_grad_(True)
        if stage in ("finetune", "continual"):
            self.language_model.requires_grad_(True)
        if stage == "finetune" and train_audio_adapter:
            self.audio_adapter.requires_grad_(True)


AutoConfig.register(VitaConfig.model_type, VitaConfig, exist_ok=True)
AutoConfig.register(VitaAudioConfig.model_type, VitaAudioConfig, exist_ok=True)
AutoModel.register(VitaConfig, VitaForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(VitaConfig, VitaForConditionalGeneration, exist_ok=True)
