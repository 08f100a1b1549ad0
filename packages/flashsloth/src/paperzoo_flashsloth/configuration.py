"""Configuration of FlashSloth: the transformers model config and the typed experiment configs.

:class:`FlashSlothConfig` is the ``transformers`` config of the model (saved as ``config.json`` next to the
weights). Its defaults are the released model: SigLIP-so400m/384 truncated to 26 blocks (``mm_vision_select_layer
-2``), Phi-2 (2560 wide, 32 layers, partial rotary 0.4), spatial attention pooling over 3x3 windows (729 -> 81
tokens), the ``mlp2x_gelu`` projector, 9 learnable query tokens and the embedded query module at the input of
decoder layer 8 (index 7). Paper section references are to FlashSloth (CVPR 2025, arXiv 2412.04317).

The experiment dataclasses (:class:`ExperimentConfig` and its parts) are what ``configs/*.yaml`` hold; they are
loaded with :func:`paperzoo_shared.config.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import PhiConfig, PreTrainedConfig, SiglipVisionConfig

IGNORE_INDEX = -100
OFFICIAL_IMAGE_TOKEN_ID = -200  # LLaVA's placeholder id, kept by the official code
OFFICIAL_LEARNABLE_TOKEN_ID = 50295  # `<learnable>` appended to Phi-2's 50295-token vocabulary
OFFICIAL_QUERY_ANCHOR_TOKEN_ID = 764  # Phi-2 token whose embedding is added to the queries
LEARNABLE_TOKEN = "<learnable>"
IMAGE_TOKEN = "<image>"
POOLINGS = ("attention", "average", "none")
VARIANTS = ("flashsloth", "uncompressed", "avgpool", "no_embq", "hd", "hd_uncompressed")


def siglip_so400m_config(num_hidden_layers: int = 26) -> SiglipVisionConfig:
    """google/siglip-so400m-patch14-384 vision tower, truncated to ``num_hidden_layers`` blocks, no head."""
    return SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=16,
        num_channels=3,
        image_size=384,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )


def phi2_config(vocab_size: int = 51200) -> PhiConfig:
    """microsoft/phi-2 (2.7B)."""
    return PhiConfig(
        vocab_size=vocab_size,
        hidden_size=2560,
        intermediate_size=10240,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        hidden_act="gelu_new",
        max_position_embeddings=2048,
        layer_norm_eps=1e-5,
        partial_rotary_factor=0.4,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        resid_pdrop=0.1,  # microsoft/phi-2 config.json (embd_pdrop and attention_dropout are 0.0)
        embd_pdrop=0.0,
        attention_dropout=0.0,
        bos_token_id=50256,
        eos_token_id=50256,
    )


class FlashSlothConfig(PreTrainedConfig):
    r"""Configuration of :class:`~paperzoo_flashsloth.modeling_flashsloth.FlashSlothForConditionalGeneration`.

    Args:
        vision_config: SigLIP vision config (dict or ``SiglipVisionConfig``); its ``num_hidden_layers`` is the
            number of blocks kept (the official code deletes the last block and the post-layernorm/head).
        text_config: Phi config (dict or ``PhiConfig``).
        pooling: ``"attention"`` (spatial attention pooling, Sec. 3.2), ``"average"`` (the ablation) or
            ``"none"`` (no compression, every patch token reaches the LLM).
        pool_size: side of the non-overlapping pooling window (3: 27x27 -> 9x9).
        pooling_dropout: dropout inside the pooling scorer MLP (0.1 as released).
        projector_hidden_act: activation of the 2-layer projector (``mlp2x_gelu``: exact GELU).
        num_query_tokens: learnable query tokens inserted at every ``<learnable>`` (0: none).
        use_embedded_query: refine the query tokens with the embedded query module (Sec. 3.3).
        embq_layer: 0-based index of the decoder layer whose *input* the module refines (7 = "layer 8").
        embq_down_dim: width of the module's query/key space (576 as released).
        embq_num_heads: attention heads of the module (32 = Phi-2's heads, as released).
        query_anchor_token_id: token whose embedding is added to every query token (764 as released; None: no
            anchor).
        image_token_id: input id of the image placeholder, replaced by the image's tokens.
        learnable_token_id: input id of ``<learnable>``, replaced by the query tokens.
        image_hd: HD mode: every image is a global view plus ``hd_grid**2`` crops (Sec. 3.4).
        hd_grid: crops per side in HD mode (2 -> 4 crops of 384 px from a 768 px canvas).
        initializer_range: std of the normal init of the embedded query module (Phi's init, as released).
        released_hd_tower_frozen: run the vision tower under ``torch.no_grad()`` as the released code does (its
            tower ``forward`` is decorated with it), so no stage, HD included, ever updates the tower. False (the
            default) follows the paper: the HD stage trains the tower.
    """

    model_type = "flashsloth"
    sub_configs = {"vision_config": SiglipVisionConfig, "text_config": PhiConfig}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    pooling: str = "attention"
    pool_size: int = 3
    pooling_dropout: float = 0.1
    projector_hidden_act: str = "gelu"
    num_query_tokens: int = 9
    use_embedded_query: bool = True
    embq_layer: int = 7
    embq_down_dim: int = 576
    embq_num_heads: int = 32
    query_anchor_token_id: int | None = OFFICIAL_QUERY_ANCHOR_TOKEN_ID
    image_token_id: int = OFFICIAL_IMAGE_TOKEN_ID
    learnable_token_id: int = OFFICIAL_LEARNABLE_TOKEN_ID
    image_hd: bool = False
    hd_grid: int = 2
    initializer_range: float = 0.02
    released_hd_tower_frozen: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.vision_config is None:
            self.vision_config = siglip_so400m_config()
        elif isinstance(self.vision_config, dict):
            data = {k: v for k, v in self.vision_config.items() if k != "model_type"}
            self.vision_config = SiglipVisionConfig(**data)
        if self.text_config is None:
            self.text_config = phi2_config()
        elif isinstance(self.text_config, dict):
            data = {k: v for k, v in self.text_config.items() if k != "model_type"}
            self.text_config = PhiConfig(**data)
        super().__post_init__(**kwargs)
        self.check()

    # The text config answers for the whole model (generation, resize_token_embeddings, Trainer).
    def get_text_config(self, *args: Any, **kwargs: Any) -> PreTrainedConfig:
        return self.text_config

    @property
    def patches_per_side(self) -> int:
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def patches_per_view(self) -> int:
        return self.patches_per_side**2

    @property
    def views_per_image(self) -> int:
        return 1 + self.hd_grid**2 if self.image_hd else 1

    @property
    def tokens_per_view(self) -> int:
        """Visual tokens one view contributes after pooling (81 for the released model)."""
        if self.pooling == "none":
            return self.patches_per_view
        return (self.patches_per_side // self.pool_size) ** 2

    @property
    def image_seq_length(self) -> int:
        """Visual tokens one image contributes to the LLM sequence (81; HD: 405)."""
        return self.views_per_image * self.tokens_per_view

    @property
    def vision_tokens_per_query_block(self) -> int:
        """Visual tokens plus query tokens per image and question (90; HD: 414; uncompressed: 729)."""
        return self.image_seq_length + self.num_query_tokens

    def check(self) -> None:
        """Raises ``ValueError`` naming the field and the fix when the configuration cannot work."""
        vision, text = self.vision_config, self.text_config
        if self.pooling not in POOLINGS:
            raise ValueError(f"FlashSlothConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.pool_size < 1:
            raise ValueError(f"FlashSlothConfig.pool_size must be >= 1, got {self.pool_size}")
        # SigLIP's patch conv floors: 384 px / 14 px patches -> 27 patches per side (the last 6 px are unused).
        if self.pooling != "none" and self.patches_per_side % self.pool_size:
            raise ValueError(
                f"{self.patches_per_side}x{self.patches_per_side} patches cannot be cut into {self.pool_size}x"
                f"{self.pool_size} windows; choose pool_size dividing {self.patches_per_side}"
            )
        if self.num_query_tokens < 0:
            raise ValueError(f"FlashSlothConfig.num_query_tokens must be >= 0, got {self.num_query_tokens}")
        if self.use_embedded_query:
            if self.num_query_tokens == 0:
                raise ValueError(
                    "use_embedded_query=True needs num_query_tokens > 0 (the module refines them)"
                )
            if not 0 <= self.embq_layer < text.num_hidden_layers:
                raise ValueError(
                    f"FlashSlothConfig.embq_layer={self.embq_layer} is not a decoder layer index of the "
                    f"{text.num_hidden_layers}-layer LLM; use 0..{text.num_hidden_layers - 1}"
                )
            if self.embq_down_dim % self.embq_num_heads or vision.hidden_size % self.embq_num_heads:
                raise ValueError(
                    f"embq_down_dim ({self.embq_down_dim}) and the vision width ({vision.hidden_size}) must both "
                    f"be divisible by embq_num_heads ({self.embq_num_heads})"
                )
        if self.hd_grid < 1:
            raise ValueError(f"FlashSlothConfig.hd_grid must be >= 1, got {self.hd_grid}")
        if self.image_token_id == self.learnable_token_id:
            raise ValueError("image_token_id and learnable_token_id must differ")


# ----------------------------------------------------------------------------------------------------
# Experiment configs (configs/*.yaml)
# ----------------------------------------------------------------------------------------------------


@dataclass
class VisionSpec:
    """SigLIP tower of an experiment.

    Attributes:
        hidden_size: width of the tower (1152 for so400m).
        intermediate_size: MLP width (4304).
        num_layers: blocks kept (26 of so400m's 27).
        num_heads: attention heads (16).
        image_size: input side in pixels (384).
        patch_size: patch side in pixels (14).
    """

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 26
    num_heads: int = 16
    image_size: int = 384
    patch_size: int = 14

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "image_size",
            "patch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"model.vision.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"model.vision.hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}"
            )


@dataclass
class TextSpec:
    """Phi decoder of an experiment.

    Attributes:
        hidden_size: width (2560 for Phi-2).
        intermediate_size: MLP width (10240).
        num_layers: decoder layers (32).
        num_heads: attention heads (32).
        partial_rotary_factor: fraction of each head that is rotated (0.4).
        max_position_embeddings: RoPE table length (2048; Phi-2 extrapolates to 3072 in training).
    """

    hidden_size: int = 2560
    intermediate_size: int = 10240
    num_layers: int = 32
    num_heads: int = 32
    partial_rotary_factor: float = 0.4
    max_position_embeddings: int = 2048

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"model.text.hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}"
            )
        if not 0 < self.partial_rotary_factor <= 1:
            raise ValueError(
                f"model.text.partial_rotary_factor must be in (0, 1], got {self.partial_rotary_factor}"
            )
        rotary = self.hidden_size // self.num_heads * self.partial_rotary_factor
        if rotary != int(rotary) or int(rotary) % 2:
            raise ValueError(
                f"model.text: head_dim {self.hidden_size // self.num_heads} x partial_rotary_factor "
                f"{self.partial_rotary_factor} = {rotary} must be an even integer (Phi-2: 80 x 0.4 = 32)"
            )


@dataclass
class ModelSpec:
    """The FlashSloth architecture of an experiment (the released model by default).

    Attributes:
        vision: the SigLIP tower.
        text: the Phi decoder.
        pool_size: pooling window side.
        pooling_dropout: dropout in the pooling scorer.
        num_query_tokens: query tokens per ``<learnable>``.
        embq_layer: decoder layer index whose input the embedded query module refines.
        embq_down_dim: query/key width of the module.
        embq_num_heads: heads of the module.
        query_anchor_token_id: token whose embedding is added to the queries (764 in Phi-2's vocabulary);
            used when the model is assembled from Phi-2 and SigLIP folders (stage 0).
        attn_implementation: ``sdpa``, ``eager`` or ``flash_attention_2`` (the paper's choice; needs the
            ``flash-attn`` package and a CUDA GPU) for the ViT and the LLM.
    """

    vision: VisionSpec = field(default_factory=VisionSpec)
    text: TextSpec = field(default_factory=TextSpec)
    pool_size: int = 3
    pooling_dropout: float = 0.1
    num_query_tokens: int = 9
    embq_layer: int = 7
    embq_down_dim: int = 576
    embq_num_heads: int = 32
    query_anchor_token_id: int | None = OFFICIAL_QUERY_ANCHOR_TOKEN_ID
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"

    def __post_init__(self) -> None:
        check_attn_implementation(self.attn_implementation, "model.attn_implementation")
        if not 0 <= self.embq_layer < self.text.num_layers:
            raise ValueError(f"model.embq_layer {self.embq_layer} must be in 0..{self.text.num_layers - 1}")
        if (self.vision.image_size // self.vision.patch_size) % self.pool_size:
            raise ValueError(
                f"model.pool_size {self.pool_size} must divide the {self.vision.image_size // self.vision.patch_size}"
                " patches per side"
            )


ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def check_attn_implementation(name: str, where: str = "attn_implementation") -> str:
    """Raises ``ValueError`` for an unknown attention implementation, or flash-attention-2 without ``flash_attn``."""
    import importlib.util

    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"{where} must be one of {ATTN_IMPLEMENTATIONS}, got {name!r}")
    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError(
            f"{where}=flash_attention_2 needs the flash-attn package (pip install flash-attn --no-build-isolation, "
            "CUDA only); use sdpa otherwise"
        )
    return name


def variant_overrides(variant: str) -> dict[str, Any]:
    """FlashSlothConfig fields of one row of the efficiency/ablation tables."""
    table = {
        "flashsloth": {"pooling": "attention", "use_embedded_query": True, "image_hd": False},
        "uncompressed": {
            "pooling": "none",
            "num_query_tokens": 0,
            "use_embedded_query": False,
            "image_hd": False,
        },
        "avgpool": {"pooling": "average", "use_embedded_query": True, "image_hd": False},
        "no_embq": {
            "pooling": "attention",
            "num_query_tokens": 0,
            "use_embedded_query": False,
            "image_hd": False,
        },
        "hd": {"pooling": "attention", "use_embedded_query": True, "image_hd": True},
        "hd_uncompressed": {
            "pooling": "none",
            "num_query_tokens": 0,
            "use_embedded_query": False,
            "image_hd": True,
        },
    }
    if variant not in table:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return table[variant]


def build_model_config(
    spec: ModelSpec,
    *,
    variant: str = "flashsloth",
    vocab_size: int,
    image_token_id: int,
    learnable_token_id: int,
    query_anchor_token_id: int | None,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> FlashSlothConfig:
    """The :class:`FlashSlothConfig` of ``spec`` for one table row (``variant``)."""
    v, t = spec.vision, spec.text
    vision = SiglipVisionConfig(
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads,
        image_size=v.image_size,
        patch_size=v.patch_size,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )
    text = PhiConfig(
        vocab_size=vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_heads,
        hidden_act="gelu_new",
        max_position_embeddings=t.max_position_embeddings,
        partial_rotary_factor=t.partial_rotary_factor,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )
    fields = {
        "pool_size": spec.pool_size,
        "pooling_dropout": spec.pooling_dropout,
        "num_query_tokens": spec.num_query_tokens,
        "embq_layer": spec.embq_layer,
        "embq_down_dim": spec.embq_down_dim,
        "embq_num_heads": spec.embq_num_heads,
        "query_anchor_token_id": query_anchor_token_id,
        "image_token_id": image_token_id,
        "learnable_token_id": learnable_token_id,
    }
    fields.update(variant_overrides(variant))
    config = FlashSlothConfig(vision_config=vision, text_config=text, **fields)
    config._attn_implementation = spec.attn_implementation  # reaches both sub-configs (sub_configs)
    config.vision_config._attn_implementation = spec.attn_implementation
    config.text_config._attn_implementation = spec.attn_implementation
    return config


@dataclass
class DataSpec:
    """The synthetic shape-question data of the smoke/mini presets (paperzoo_shared.data.synthetic.qa).

    Attributes:
        image_size: scene side in pixels (a multiple of 4, >= 32).
        train_images: images in the training set (each asked ``questions_per_image`` questions).
        eval_images: images in the held-out evaluation set.
        questions_per_image: questions per image.
        question_types: question types asked (see ``paperzoo_shared.data.synthetic.qa.QUESTION_TYPES``).
        min_objects, max_objects: objects per scene (1..4, one per quadrant).
        turns_per_conversation: training questions about one image asked in one multi-turn conversation.
        data_seed: seed of the training set; the evaluation set uses ``data_seed + 1``.
        pattern_scale: ``pixel``: the shared generator's 2-px surface patterns (visible inside one ViT patch, so
            pooling loses nothing); ``patch``: patterns whose cells are one ViT patch (``striped``: alternate rows of
            patches, ``checkered``: alternate patches) at ``pattern_amplitude``, so a single patch shows only a
            lighter or darker shade and the pattern is in the relation between neighbouring patches, which a
            window average cancels (up to the odd cell of a 3x3 window).
        pattern_amplitude: brightness offset of the patterned cells (0..255 scale).
    """

    image_size: int = 48
    train_images: int = 600
    eval_images: int = 100
    questions_per_image: int = 3
    question_types: tuple[str, ...] = ("colour", "shape", "count", "position", "existence", "detail")
    min_objects: int = 2
    max_objects: int = 4
    turns_per_conversation: int = 1
    data_seed: int = 0
    pattern_scale: Literal["pixel", "patch"] = "pixel"
    pattern_amplitude: float = 48.0

    def __post_init__(self) -> None:
        if self.pattern_scale not in ("pixel", "patch"):
            raise ValueError(f"data.pattern_scale must be 'pixel' or 'patch', got {self.pattern_scale!r}")
        if self.train_images < 1 or self.eval_images < 1:
            raise ValueError("data.train_images and data.eval_images must be >= 1")
        if self.turns_per_conversation < 1:
            raise ValueError("data.turns_per_conversation must be >= 1")


@dataclass
class VisionPretrainSpec:
    """The miniature's stand-in for a pretrained SigLIP: dense supervised pretraining of the tiny tower on the
    training scenes (colour, shape and pattern under every patch), once, shared by every row and seed; the tower is
    then frozen as in the paper's stage II. ``steps: 0`` skips it (the tower then trains with the rest).

    Attributes:
        steps: optimizer steps.
        batch_size: images per step.
        learning_rate: peak learning rate (linear warm-up over 5 % of the steps, then cosine).
        seed: seed of the tower's initialisation and batches.
        targets: per-patch attributes the tower learns to predict (``colour``, ``shape``, ``pattern``); without
            ``pattern`` the tower is not taught to summarise a surface pattern into every patch feature.
    """

    steps: int = 0
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 1234
    targets: tuple[str, ...] = ("colour", "shape", "pattern")

    def __post_init__(self) -> None:
        bad = [t for t in self.targets if t not in ("colour", "shape", "pattern")]
        if bad or not self.targets:
            raise ValueError(
                f"vision_pretrain.targets must be a non-empty subset of colour, shape, pattern; got {bad}"
            )


@dataclass
class TrainSpec:
    """One training run through transformers' Trainer.

    Attributes:
        stage: which parameters train: ``I`` (projector + pooling), ``II`` (all but the vision tower), ``HD``
            (everything) or ``scratch`` (everything; the miniature trains from random weights).
        max_steps: optimizer steps (``-1``: ``epochs`` over the data).
        epochs: epochs when ``max_steps`` is -1.
        batch_size: per-device batch.
        grad_accumulation: gradient accumulation steps.
        learning_rate: peak learning rate (paper: 1e-3 stage I, 2e-5 stage II).
        warmup_ratio: linear warm-up fraction (0.03).
        weight_decay: AdamW weight decay (0).
        lr_scheduler: transformers scheduler name (``cosine``).
        max_grad_norm: gradient clipping (transformers' default 1.0).
        fp16: mixed precision fp16 (paper) ; bf16: bfloat16 instead.
        gradient_checkpointing: recompute activations (paper: on).
        model_max_length: longest token sequence kept (3072).
        deepspeed: path of a DeepSpeed JSON (``configs/deepspeed/zero3.json`` in the paper); empty: none.
        num_workers: dataloader workers.
    """

    stage: Literal["I", "II", "HD", "scratch"] = "scratch"
    max_steps: int = 300
    epochs: float = 1.0
    batch_size: int = 32
    grad_accumulation: int = 1
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    fp16: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False
    model_max_length: int = 3072
    deepspeed: str = ""
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"train.max_steps must be -1 (use epochs) or >= 1, got {self.max_steps}")
        if self.batch_size < 1 or self.grad_accumulation < 1:
            raise ValueError("train.batch_size and train.grad_accumulation must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if self.fp16 and self.bf16:
            raise ValueError("train.fp16 and train.bf16 are exclusive")


@dataclass
class EvalSpec:
    """Evaluation of the miniature.

    Attributes:
        batch_size: generation batch.
        latency_repeats: timed prefill repeats (median reported).
        latency_warmup: untimed warm-up repeats.
        max_new_tokens: tokens generated per answer (answers are one word).
    """

    batch_size: int = 64
    latency_repeats: int = 10
    latency_warmup: int = 2
    max_new_tokens: int = 2


@dataclass
class PathsSpec:
    """Local paths for the full configuration (nothing is downloaded).

    Attributes:
        phi2: folder of microsoft/phi-2 (``from_pretrained``).
        siglip: folder of google/siglip-so400m-patch14-384.
        init_checkpoint: a converted FlashSloth folder to start from (e.g. stage I output).
        data_json: LLaVA-style conversation JSON (558K captions for stage I, 665K mix for stage II).
        image_folder: root of the images named in ``data_json``.
        output_dir: where the trained model is written.
    """

    phi2: str = ""
    siglip: str = ""
    init_checkpoint: str = ""
    data_json: str = ""
    image_folder: str = ""
    output_dir: str = ""


@dataclass
class ExperimentConfig:
    """A whole experiment: data, model, training, evaluation, and which table rows to run.

    Attributes:
        data: synthetic data (smoke/mini).
        vision_pretrain: the miniature's tower pretraining (see :class:`VisionPretrainSpec`).
        model: architecture.
        train: training run.
        eval: evaluation.
        paths: local data and weights (full configuration).
        template: chat template: ``phi2`` (stage II/HD) or ``plain`` (stage I).
        system_prompt: system prompt of the ``phi2`` template; ``null`` keeps the official one (the miniature
            uses an empty one: the word tokenizer has no words for it).
        rows: table rows (variants) to run.
        comparisons: pre-registered paired comparisons ``"<row a> - <row b>: <metric>"`` (metric ``accuracy`` or
            ``accuracy_<question type>``), reported with a paired-t 95 % CI over the seeds; the first is the headline.
    """

    data: DataSpec = field(default_factory=DataSpec)
    vision_pretrain: VisionPretrainSpec = field(default_factory=VisionPretrainSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    paths: PathsSpec = field(default_factory=PathsSpec)
    template: Literal["phi2", "plain"] = "phi2"
    system_prompt: str | None = None
    rows: tuple[str, ...] = ("uncompressed", "avgpool", "no_embq", "flashsloth")
    comparisons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [r for r in self.rows if r not in VARIANTS]
        if bad:
            raise ValueError(f"rows: unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
        for text in self.comparisons:
            a, b, metric = parse_comparison(text)
            if a not in self.rows or b not in self.rows:
                raise ValueError(f"comparisons: {text!r} names a row not in rows {list(self.rows)}")


def parse_comparison(text: str) -> tuple[str, str, str]:
    """``"flashsloth - uncompressed: accuracy_detail"`` -> ``("flashsloth", "uncompressed", "accuracy_detail")``."""
    try:
        rows, metric = text.split(":")
        a, b = (part.strip() for part in rows.split(" - "))
    except ValueError:
        raise ValueError(f"comparisons: {text!r} must read '<row a> - <row b>: <metric>'") from None
    metric = metric.strip()
    if not metric.startswith("accuracy"):
        raise ValueError(f"comparisons: {text!r}: the metric must be accuracy or accuracy_<question type>")
    return a, b, metric
