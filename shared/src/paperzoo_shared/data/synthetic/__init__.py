"""Seeded synthetic data: every generator takes a ``numpy.random.Generator`` or a seed, never global state.

Shape scenes (:mod:`.shapes`, the WSOD-Shapes benchmark of huwsod.md 7.2)
    ``ShapeSceneConfig``, ``SceneObject``, ``Scene``
    ``generate_scene(rng, cfg=None) -> Scene``
    ``write_shapes_dataset(root, *, seed, splits=None, cfg=None) -> Path`` (VOC + COCO + weak labels)

Question/answer pairs (:mod:`.qa`)
    ``QAConfig``, ``QASample``, ``QUESTION_TYPES``, ``ANSWER_VOCAB``
    ``generate_qa_dataset(n_images, *, seed, cfg=None) -> list[QASample]``
    ``build_word_tokenizer(extra_special_tokens=()) -> tokenizers.Tokenizer``
    ``save_tokenizer(tokenizer, directory) -> Path``, ``to_transformers_tokenizer(tokenizer, bos_token, padding_side)``,
    ``word_level_tokenizer(words, special_tokens, split_punctuation=False)`` (a tiny model's closed vocabulary)

Videos (:mod:`.video`)
    ``VideoSceneConfig``, ``VideoSample``, ``VideoEvent``, ``VideoObject``
    ``generate_video_sample(rng, cfg=None, *, video_id="001", question_kinds=None) -> VideoSample``
    ``write_video_dataset(root, *, n_videos, seed, cfg=None) -> Path``
    ``write_srt(path, cues)``, ``read_srt(path)``, ``format_srt_time(seconds)``

Rendering primitives, the colour palette and the class list live in :mod:`.render`.
"""

from paperzoo_shared.data.synthetic.qa import (
    ANSWER_VOCAB,
    QUESTION_TYPES,
    QAConfig,
    QASample,
    build_word_tokenizer,
    generate_qa_dataset,
    save_tokenizer,
    to_transformers_tokenizer,
    word_level_tokenizer,
)
from paperzoo_shared.data.synthetic.render import COLOUR_NAMES, PALETTE, PATTERNS, SHAPE_CLASSES
from paperzoo_shared.data.synthetic.shapes import (
    Scene,
    SceneObject,
    ShapeSceneConfig,
    generate_scene,
    write_shapes_dataset,
)
from paperzoo_shared.data.synthetic.video import (
    VideoEvent,
    VideoObject,
    VideoSample,
    VideoSceneConfig,
    format_srt_time,
    generate_video_sample,
    read_srt,
    write_srt,
    write_video_dataset,
)

__all__ = [
    "ANSWER_VOCAB",
    "COLOUR_NAMES",
    "PALETTE",
    "PATTERNS",
    "QUESTION_TYPES",
    "SHAPE_CLASSES",
    "QAConfig",
    "QASample",
    "Scene",
    "SceneObject",
    "ShapeSceneConfig",
    "VideoEvent",
    "VideoObject",
    "VideoSample",
    "VideoSceneConfig",
    "build_word_tokenizer",
    "format_srt_time",
    "generate_qa_dataset",
    "generate_scene",
    "generate_video_sample",
    "read_srt",
    "save_tokenizer",
    "to_transformers_tokenizer",
    "word_level_tokenizer",
    "write_shapes_dataset",
    "write_srt",
    "write_video_dataset",
]
