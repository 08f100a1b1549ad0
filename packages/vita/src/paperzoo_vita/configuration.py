"""Configuration of VITA-1.0: the transformers model config and the typed experiment configs.

:class:`VitaConfig` is the ``transformers`` config of the model (``config.json`` beside the weights). Its defaults
are the released VITA-1.0 (notes §1.2): Mixtral 8x7B with the extended 51760-token vocabulary, InternViT-300M-448px
(last layer, CLS dropped, features x0.5 then pixel shuffle 0.5: 256 tokens x 4096 per 448 tile), the ``mlp2x_gelu``
vision projector, and the "whale" audio encoder (Conv2dSubsampling4, 24 relative-position Transformer layers of width
1024) with its strided-conv adapter to the LLM width. :func:`tiny_vita_config` builds a CPU-sized model of the same
shape laws for tests and the smoke preset.

The experiment dataclasses (:class:`ExperimentConfig` and its parts) are what ``configs/*.yaml`` hold; they are
loaded with :func:`paperzoo_shared.config.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import InternVLVisionConfig, MixtralConfig, PreTrainedConfig

IGNORE_INDEX = -100
# Placeholder ids of the released vLLM port (one id per feature token in the prompt); the training code used the
# sentinels -200 / -500 in their place (notes §1.2).
OFFICIAL_IMAGE_TOKEN_ID = 51000
OFFICIAL_AUDIO_TOKEN_ID = 51001
OFFICIAL_VOCAB_SIZE = 51760
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
AUDIO_TOKEN = "<audio>"
STATE_TOKENS = ("<1>", "<2>", "<3>")  # effective audio query, noisy audio (no reply), text query (notes §1.5)


def internvit_300m_config(**overrides: Any) -> InternVLVisionConfig:
    """OpenGVLab/InternViT-300M-448px: 24 layers, width 1024, 16 heads, MLP 4096, patch 14, 448 px, qkv bias,
    LayerNorm eps 1e-6, no qk-norm, no final norm (``use_mean_pooling`` keeps the last hidden state un-normed)."""
    values = dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        patch_size=14,
        image_size=448,
        attention_bias=True,
        use_qk_norm=False,
        layer_norm_eps=1e-6,
        norm_type="layer_norm",
        use_mean_pooling=True,
        hidden_act="gelu",
        drop_path_rate=0.0,
    )
    values.update(overrides)
    return InternVLVisionConfig(**values)


def mixtral_8x7b_config(vocab_size: int = OFFICIAL_VOCAB_SIZE, **overrides: Any) -> MixtralConfig:
    """The released VITA LLM (notes §1.2): Mixtral 8x7B with the extended vocabulary."""
    values = dict(
        vocab_size=vocab_size,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_local_experts=8,
        num_experts_per_tok=2,
        rope_theta=1e6,
        rms_norm_eps=1e-5,
        router_aux_loss_coef=0.02,
        output_router_logits=False,
        sliding_window=None,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return MixtralConfig(**values)


class VitaAudioConfig(PreTrainedConfig):
    r"""The "whale" audio encoder and its adapter (notes §1.2).

    Args:
        num_mel_bins: fbank bins (80).
        hidden_size: encoder width (1024); the subsampling convolutions have as many channels.
        num_hidden_layers: relative-position Transformer layers (24).
        num_attention_heads: heads (16, head dim 64).
        intermediate_size: ReLU FFN width (4096).
        dropout: dropout of the embedding, positions, FFN and residual paths (0.1).
        attention_dropout: dropout of the attention probabilities (0.0, the whale default).
        layer_norm_eps: LayerNorm eps of the encoder (1e-5).
        max_position_embeddings: rows of the sinusoidal relative position table (5000).
        adapter_kernel_size: kernel of the stride-2 Conv1d adapter (5).
        adapter_norm_eps: LayerNorm eps of the adapter (1e-3).
        adapter_hidden_act: activation of the adapter (``gelu``).
        sample_rate: expected sampling rate of the waveform (16000 Hz).
    """

    model_type = "vita_audio"

    num_mel_bins: int = 80
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    dropout: float = 0.1
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    max_position_embeddings: int = 5000
    adapter_kernel_size: int = 5
    adapter_norm_eps: float = 1e-3
    adapter_hidden_act: str = "gelu"
    sample_rate: int = 16000

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"VitaAudioConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.num_mel_bins < 7:
            raise ValueError(
                f"VitaAudioConfig.num_mel_bins must be >= 7 (two stride-2 convs), got {self.num_mel_bins}"
            )

    @property
    def subsampled_mel_bins(self) -> int:
        """Frequency bins left after the two k3/s2 convolutions (80 -> 39 -> 19)."""
        return ((self.num_mel_bins - 1) // 2 - 1) // 2


class VitaConfig(PreTrainedConfig):
    r"""Configuration of :class:`~paperzoo_vita.modeling_vita.VitaForConditionalGeneration`.

    Args:
        vision_config: InternViT config (``InternVLVisionConfig`` or dict); InternViT-300M-448px by default.
        text_config: Mixtral config (``MixtralConfig`` or dict); Mixtral 8x7B with vocab 51760 by default.
        audio_config: :class:`VitaAudioConfig` (or dict).
        image_token_id / audio_token_id: vocabulary ids of the placeholders; the processor writes one per feature
            token (as the released vLLM port, 51000 / 51001).
        vision_feature_scale: the release multiplies the ViT features by 0.5 *before* the pixel shuffle (§1.11).
        downsample_ratio: pixel-shuffle scale (0.5: 2x2 neighbours merged into one token of 4x the width).
        vision_feature_layer: hidden state of the tower used (-1: the last one).
        projector_hidden_act: activation of the ``mlp2x_gelu`` projector.
        initializer_range: std of the normal init of new linear layers.
        model_max_length: in training (labels given), the spliced sequence is truncated to this many positions, as
            the release truncates to ``tokenizer_model_max_length`` after splicing (6200 in its stage 1/2 scripts,
            9100 continual); ``None`` keeps everything. Generation never truncates.
    """

    model_type = "vita"
    sub_configs = {
        "vision_config": InternVLVisionConfig,
        "text_config": MixtralConfig,
        "audio_config": VitaAudioConfig,
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    image_token_id: int = OFFICIAL_IMAGE_TOKEN_ID
    audio_token_id: int = OFFICIAL_AUDIO_TOKEN_ID
    vision_feature_scale: float = 0.5
    downsample_ratio: float = 0.5
    vision_feature_layer: int = -1
    projector_hidden_act: str = "gelu"
    initializer_range: float = 0.02
    model_max_length: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.vision_config is None:
            self.vision_config = internvit_300m_config()
        elif isinstance(self.vision_config, dict):
            self.vision_config = InternVLVisionConfig(
                **{k: v for k, v in self.vision_config.items() if k != "model_type"}
            )
        if self.text_config is None:
            self.text_config = mixtral_8x7b_config()
        elif isinstance(self.text_config, dict):
            self.text_config = MixtralConfig(
                **{k: v for k, v in self.text_config.items() if k != "model_type"}
            )
        if self.audio_config is None:
            self.audio_config = VitaAudioConfig()
        elif isinstance(self.audio_config, dict):
            self.audio_config = VitaAudioConfig(
                **{k: v for k, v in self.audio_config.items() if k != "model_type"}
            )
        super().__post_init__(**kwargs)
        self.check()

    def get_text_config(self, *args: Any, **kwargs: Any) -> PreTrainedConfig:
        return self.text_config

    @property
    def patches_per_side(self) -> int:
        size = self.vision_config.image_size
        patch = self.vision_config.patch_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        return size // patch

    @property
    def image_seq_length(self) -> int:
        """LLM tokens per tile or frame: (448/14 * 0.5)^2 = 256 for the release."""
        return int(self.patches_per_side * self.downsample_ratio) ** 2

    @property
    def vision_feature_dim(self) -> int:
        """Width after the pixel shuffle: 1024 / 0.5^2 = 4096 for the release."""
        return int(self.vision_config.hidden_size / self.downsample_ratio**2)

    def check(self) -> None:
        """Raises ``ValueError`` naming the field and the fix when the configuration cannot work."""
        if self.downsample_ratio != 0.5:
            raise ValueError(
                f"VitaConfig.downsample_ratio must be 0.5 (the release), got {self.downsample_ratio}"
            )
        if self.patches_per_side % 2:
            raise ValueError(
                f"the tower gives {self.patches_per_side}x{self.patches_per_side} patches; the pixel shuffle needs an "
                "even side (image_size / patch_size)"
            )
        vocab = self.text_config.vocab_size
        for name in ("image_token_id", "audio_token_id"):
            value = getattr(self, name)
            if not 0 <= value < vocab:
                raise ValueError(f"VitaConfig.{name}={value} is outside the vocabulary (0..{vocab - 1})")
        if self.image_token_id == self.audio_token_id:
            raise ValueError("VitaConfig.image_token_id and audio_token_id must differ")


def tiny_vita_config(
    vocab_size: int = 128, image_token_id: int = 120, audio_token_id: int = 121, **kw: Any
) -> VitaConfig:
    """A CPU-sized VITA with the release's shape laws: a 2-layer 32-wide InternViT on 56 px tiles with 14 px patches
    (4x4 patches -> 2x2 = 4 tokens of width 128 after the pixel shuffle), a 2-layer 64-wide Mixtral with 4 experts,
    top-2, and a 2-layer 32-wide whale encoder on 80-bin fbank (the notes' §4.1 tiny Mixtral)."""
    vision = internvit_300m_config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=56
    )
    text = mixtral_8x7b_config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
    )
    audio = VitaAudioConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, dropout=0.0
    )
    return VitaConfig(
        vision_config=vision,
        text_config=text,
        audio_config=audio,
        image_token_id=image_token_id,
        audio_token_id=audio_token_id,
        **kw,
    )


# ----------------------------------------------------------------------------------------------------
# Experiment configs (configs/*.yaml)
# ----------------------------------------------------------------------------------------------------


@dataclass
class ModelSize:
    """Sizes of the model built from random weights (smoke) or read from ``paths`` (full)."""

    vision_hidden_size: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 64
    image_size: int = 56
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate_size: int = 128
    num_experts: int = 4
    experts_per_token: int = 2
    audio_hidden_size: int = 32
    audio_layers: int = 2
    audio_heads: int = 4
    audio_intermediate_size: int = 64
    real_size: bool = False
    """True: the released sizes (InternViT-300M, Mixtral 8x7B, whale 24x1024); the fields above are ignored."""


@dataclass
class DataConfig:
    num_train: int = 24
    """synthetic conversations for the smoke training run"""
    num_eval: int = 12
    seed: int = 0
    audio_seconds: float = 1.0
    max_dynamic_patch: int = 12
    """1..12 tiles (+ thumbnail) per image; 1 for the real-time demo"""
    max_frames: int = 16
    min_frames: int = 4
    text_gets_state_token: bool = False
    """the release gives pure-text samples no <3> (notes §1.5); True adds it"""


@dataclass
class TrainConfig:
    steps: int = 30
    learning_rate: float = 5e-3
    batch_size: int = 8
    seed: int = 0


@dataclass
class PathsConfig:
    """Local folders of the full preset (nothing is downloaded)."""

    checkpoint: str = ""
    data_json: str = ""
    image_folder: str = ""
    audio_folder: str = ""
    video_folder: str = ""
    output_dir: str = ""


@dataclass
class ComparisonSpec:
    """One pre-registered comparison of the mini (``configs/mini.yaml``): ``a - b`` over seeds with a 95 % Student-t
    interval, paired when ``b`` names a metric, one-sample against ``reference`` (a fixed rule's value) otherwise."""

    id: str
    a: str
    b: str = ""
    reference: float | None = None
    expect: Literal["greater", "less"] = "greater"
    """the direction registered before the run: ``greater`` (a - b > 0) or ``less``"""
    label: str = ""


@dataclass
class SpeechConfig:
    """The espeak-ng miniature (issue 21): spoken and text questions about synthetic two-shape images, noise and
    background-talk clips that should get ``<2>``. Every clip's voice, rate, pitch, text and gain come from the seed."""

    colours: list[str] = field(default_factory=lambda: ["red", "green", "blue", "yellow"])
    """the objects' palette (paperzoo_shared's colour names; at least 4)"""
    train_per_kind: int = 300
    """training items of each kind (text question, spoken question, noise, background talk)"""
    eval_per_kind: int = 150
    voices: list[str] = field(default_factory=lambda: ["en-us", "en-gb"])
    rates: list[int] = field(default_factory=lambda: [140, 170])
    """espeak-ng ``-s`` words per minute"""
    pitches: list[int] = field(default_factory=lambda: [40, 60])
    """espeak-ng ``-p`` (0-99)"""
    speech_peak: tuple[float, float] = (0.3, 0.9)
    """peak amplitude range of a spoken question"""
    talk_peak: tuple[float, float] = (0.15, 0.6)
    """peak amplitude range of a background-talk clip"""
    talk_sentences: list[str] = field(default_factory=lambda: ["the train leaves at noon"])
    noise_rms: tuple[float, float] = (0.02, 0.2)
    noise_seconds: tuple[float, float] = (1.0, 2.5)
    train_encoders: bool = True
    """the paper starts from a pretrained InternViT and audio encoder and freezes both; random encoders of a mini
    learn nothing frozen, so the mini trains them with the LLM (a stated divergence)"""
    comparisons: list[ComparisonSpec] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    model: ModelSize = field(default_factory=ModelSize)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    max_new_tokens: int = 4
    template: str = "mixtral_two"


def build_model_config(
    size: ModelSize, vocab_size: int, image_token_id: int, audio_token_id: int
) -> VitaConfig:
    """The :class:`VitaConfig` of an experiment's model section."""
    if size.real_size:
        return VitaConfig(
            text_config=mixtral_8x7b_config(vocab_size=vocab_size),
            image_token_id=image_token_id,
            audio_token_id=audio_token_id,
        )
    vision = internvit_300m_config(
        hidden_size=size.vision_hidden_size,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        intermediate_size=size.vision_intermediate_size,
        image_size=size.image_size,
    )
    text = mixtral_8x7b_config(
        vocab_size=vocab_size,
        hidden_size=size.text_hidden_size,
        intermediate_size=size.text_intermediate_size,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads,
        num_local_experts=size.num_experts,
        num_experts_per_tok=size.experts_per_token,
        max_position_embeddings=4096,
        rope_theta=10000.0,
    )
    audio = VitaAudioConfig(
        hidden_size=size.audio_hidden_size,
        num_hidden_layers=size.audio_layers,
        num_attention_heads=size.audio_heads,
        intermediate_size=size.audio_intermediate_size,
        dropout=0.0,
    )
    return VitaConfig(
        vision_config=vision,
        text_config=text,
        audio_config=audio,
        image_token_id=image_token_id,
        audio_token_id=audio_token_id,
    )
