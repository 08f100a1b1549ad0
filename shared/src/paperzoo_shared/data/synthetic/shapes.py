"""WSOD-Shapes: procedurally generated detection scenes written in real VOC and COCO layouts.

This is the stand-in benchmark of ``huwsod.md`` section 7.2: 128x128 RGB images with 1-4 objects of six
classes (circle, square, triangle, ring, cross, ellipse) on a smooth-noise background with clutter that
never belongs to an object class (line stripes, irregular blobs), deterministic from a seed.

Object conventions:

* Colours come from the named :data:`~paperzoo_shared.data.synthetic.render.PALETTE`, drawn independently
  of the class (so classes overlap fully in HSV).
* Objects lie fully inside the image (``truncated`` is always 0), the unoccluded (amodal) boxes of any
  two objects have IoU at most ``max_iou`` (0.3), and objects drawn later occlude earlier ones.
* The VOC box is the extent of the **visible** mask (VOC's labelling rule), 1-based inclusive.
* ``difficult`` is set when the nominal size is below ``difficult_min_size`` (14 px) or more than
  ``difficult_occlusion`` (50 %) of the object is hidden. A small share of objects is drawn deliberately
  small (``small_object_prob``) so the evaluator's ignore logic is exercised.

:func:`write_shapes_dataset` writes::

    <root>/VOCdevkit/SHAPES/
        JPEGImages/<id>.png              lossless PNG despite the VOC folder name
        Annotations/<id>.xml             VOC XML (1-based inclusive boxes)
        ImageSets/Main/{train,val,trainval,test}.txt
        annotations_<split>.json         COCO; difficult objects are iscrowd=1 ignore regions
        image_labels_<split>.json        weak labels only (no boxes): classes with a non-difficult object
        meta.json                        generator version, seed, config, classes, per-class counts

Image ids are global integers ``1..N`` over train, val, test in that order; file stems are ``%06d``.
Each image is drawn from its own generator seeded with ``(seed, split, index within split)``, so a
split's images do not depend on the sizes of the other splits.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo_shared.data.detection_formats import (
    VocAnnotation,
    VocObject,
    voc_box_to_coco_bbox,
    write_coco_json,
    write_voc_xml,
)
from paperzoo_shared.data.image_io import write_image
from paperzoo_shared.data.synthetic.render import (
    COLOUR_NAMES,
    PATTERNS,
    SHAPE_CLASSES,
    Coverage,
    ShapeSpec,
    draw_blob,
    draw_shape,
    draw_stripes,
    finish,
    sample_geometry,
    sample_rgb,
    shape_coverage,
    smooth_background,
)

GENERATOR_VERSION = "1.0.0"
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_SPLITS: dict[str, int] = {"train": 2000, "val": 300, "test": 500}


@dataclass(frozen=True)
class ShapeSceneConfig:
    """Parameters of one WSOD-Shapes scene; the defaults are the benchmark's.

    Attributes:
        image_size: side of the square image in pixels.
        min_objects, max_objects: number of objects drawn per image (uniform); fewer are kept when
            placement under the IoU and visibility constraints fails ``max_placement_attempts`` times.
        size_range: nominal object size in pixels (see :class:`~.render.ShapeSpec`), uniform.
        small_object_prob: probability that an object is instead drawn from ``small_size_range``.
        small_size_range: sizes of deliberately small objects; below ``difficult_min_size`` they are
            marked difficult.
        difficult_min_size: nominal size below which an object is difficult.
        difficult_occlusion: hidden fraction above which an object is difficult.
        min_visible_fraction: placements hiding more than ``1 - this`` of any object are rejected.
        max_iou: maximum IoU between the (unoccluded) boxes of any two objects.
        repeat_class_prob: probability that an image with >= 2 objects repeats a class (about 15 % of
            all images with the defaults); otherwise classes are distinct while possible.
        background_clutter: draw ``clutter_range`` stripes/blobs on the background.
        clutter_range: inclusive range of the number of clutter items.
        noise_std: Gaussian pixel noise added last (0 disables it).
        colours: palette names objects may take.
        patterns: surface patterns objects may take (``"plain"`` only for WSOD-Shapes).
        pattern_amplitude: contrast of patterned surfaces.
        supersampling: anti-aliasing samples per pixel side.
        max_placement_attempts: tries per object before it is dropped.
    """

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    size_range: tuple[float, float] = (16.0, 56.0)
    small_object_prob: float = 0.06
    small_size_range: tuple[float, float] = (9.0, 14.0)
    difficult_min_size: float = 14.0
    difficult_occlusion: float = 0.5
    min_visible_fraction: float = 0.2
    max_iou: float = 0.3
    repeat_class_prob: float = 0.2
    background_clutter: bool = True
    clutter_range: tuple[int, int] = (2, 5)
    noise_std: float = 2.0
    colours: tuple[str, ...] = COLOUR_NAMES
    patterns: tuple[str, ...] = ("plain",)
    pattern_amplitude: float = 48.0
    supersampling: int = 4
    max_placement_attempts: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}."
            )
        for name in ("size_range", "small_size_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}.")
        if 2 * (0.71 * max(self.size_range[1], self.small_size_range[1]) + 1) >= self.image_size:
            raise ValueError(
                f"size_range {self.size_range} is too large for image_size {self.image_size}; objects must fit."
            )
        if not 0 < self.max_iou <= 1:
            raise ValueError(f"max_iou must be in (0, 1], got {self.max_iou}.")
        unknown = [c for c in self.colours if c not in COLOUR_NAMES] + [
            p for p in self.patterns if p not in PATTERNS
        ]
        if unknown or not self.colours or not self.patterns:
            raise ValueError(
                f"unknown or empty colours/patterns {unknown}; colours: {COLOUR_NAMES}, patterns: {PATTERNS}."
            )
        if self.supersampling < 1:
            raise ValueError(f"supersampling must be >= 1, got {self.supersampling}.")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object with its ground truth.

    Attributes:
        label: class name, one of :data:`~.render.SHAPE_CLASSES`.
        box: visible extent as VOC ``(xmin, ymin, xmax, ymax)``, 1-based inclusive.
        amodal_box: extent of the whole (unoccluded) shape, same convention; the IoU cap applies to it.
        difficult: too small or mostly occluded (see the module docstring).
        colour: palette name; ``rgb`` is the exact colour drawn.
        center: ``(x, y)`` shape centre in continuous pixel coordinates (0-based).
        size: nominal size in pixels.
        visible_fraction: share of the object's mask not covered by later objects.
        pattern: surface pattern (:data:`~.render.PATTERNS`), ``"plain"`` unless the config allows others.
        mask: visible binary mask, ``(H, W)`` bool.
    """

    label: str
    box: tuple[int, int, int, int]
    amodal_box: tuple[int, int, int, int]
    difficult: bool
    colour: str
    rgb: tuple[int, int, int]
    center: tuple[float, float]
    size: float
    visible_fraction: float
    pattern: str
    mask: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class Scene:
    """A rendered image (``(H, W, 3)`` uint8 RGB) and its objects in drawing order."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two 1-based inclusive boxes (VOC's +1 convention)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1)


def compose_scene(
    rng: np.random.Generator,
    background: np.ndarray,
    specs: list[ShapeSpec],
    coverages: list[Coverage],
    *,
    noise_std: float,
    pattern_amplitude: float,
    difficult_min_size: float = 0.0,
    difficult_occlusion: float = 1.0,
) -> Scene:
    """Draw ``specs`` in order over ``background`` and derive each object's visible mask, box and flags."""
    height, width = background.shape[:2]
    canvas = background.copy()
    for spec, coverage in zip(specs, coverages):
        draw_shape(canvas, spec, coverage, pattern_amplitude)
    masks = [coverage.full_mask(height, width) for coverage in coverages]
    occluded = np.zeros((height, width), dtype=bool)
    objects: list[SceneObject] = []
    for spec, mask in zip(reversed(specs), reversed(masks)):
        visible = mask & ~occluded
        occluded |= mask
        fraction = float(visible.sum() / mask.sum())
        objects.append(
            SceneObject(
                label=spec.label,
                box=_mask_box(visible),
                amodal_box=_mask_box(mask),
                difficult=spec.size < difficult_min_size or 1.0 - fraction > difficult_occlusion,
                colour=spec.colour,
                rgb=spec.rgb,
                center=(spec.cx, spec.cy),
                size=spec.size,
                visible_fraction=fraction,
                pattern=spec.pattern,
                mask=visible,
            )
        )
    return Scene(image=finish(canvas, rng, noise_std), objects=tuple(reversed(objects)))


def _sample_labels(rng: np.random.Generator, n: int, repeat_prob: float) -> list[str]:
    """``n`` class names: distinct while possible, with one forced repeat with probability ``repeat_prob``."""
    k = len(SHAPE_CLASSES)
    repeat = n >= 2 and rng.random() < repeat_prob
    n_distinct = min(n - 1 if repeat else n, k)
    labels = [int(i) for i in rng.choice(k, size=n_distinct, replace=False)]
    labels += [int(i) for i in rng.choice(labels, size=n - n_distinct)]
    return [SHAPE_CLASSES[i] for i in rng.permutation(labels)]


def _visible_fractions(masks: list[np.ndarray]) -> list[float]:
    occluded = np.zeros_like(masks[0])
    fractions = []
    for mask in reversed(masks):
        fractions.append(float((mask & ~occluded).sum() / mask.sum()))
        occluded |= mask
    return fractions[::-1]


def generate_scene(rng: np.random.Generator, cfg: ShapeSceneConfig | None = None) -> Scene:
    """Draw one WSOD-Shapes scene from ``rng`` (see the module docstring for the rules)."""
    cfg = cfg or ShapeSceneConfig()
    size_px = cfg.image_size
    background = smooth_background(rng, size_px, size_px)
    if cfg.background_clutter:
        for _ in range(int(rng.integers(cfg.clutter_range[0], cfg.clutter_range[1] + 1))):
            (draw_stripes if rng.random() < 0.5 else draw_blob)(background, rng)

    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    specs: list[ShapeSpec] = []
    coverages: list[Coverage] = []
    masks: list[np.ndarray] = []
    boxes: list[tuple[int, int, int, int]] = []
    for label in _sample_labels(rng, n_objects, cfg.repeat_class_prob):
        for _ in range(cfg.max_placement_attempts):
            small = rng.random() < cfg.small_object_prob
            size = float(rng.uniform(*(cfg.small_size_range if small else cfg.size_range)))
            aspect, angle, inner = sample_geometry(rng, label)
            colour = cfg.colours[int(rng.integers(len(cfg.colours)))]
            pattern = cfg.patterns[int(rng.integers(len(cfg.patterns)))]
            probe = ShapeSpec(label, 0.0, 0.0, size, aspect, angle, inner, colour, (0, 0, 0), pattern)
            margin = probe.radius + 1.0
            cx, cy = rng.uniform(margin, size_px - margin, size=2)
            spec = dataclasses.replace(probe, cx=float(cx), cy=float(cy), rgb=sample_rgb(rng, colour))
            coverage = shape_coverage(spec, size_px, size_px, cfg.supersampling)
            mask = coverage.full_mask(size_px, size_px)
            if not mask.any():
                continue
            box = _mask_box(mask)
            if any(_box_iou(box, other) > cfg.max_iou for other in boxes):
                continue
            if min(_visible_fractions([*masks, mask])) < cfg.min_visible_fraction:
                continue
            specs.append(spec)
            coverages.append(coverage)
            masks.append(mask)
            boxes.append(box)
            break
    return compose_scene(
        rng,
        background,
        specs,
        coverages,
        noise_std=cfg.noise_std,
        pattern_amplitude=cfg.pattern_amplitude,
        difficult_min_size=cfg.difficult_min_size,
        difficult_occlusion=cfg.difficult_occlusion,
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_shapes_dataset(
    root: str | Path,
    *,
    seed: int,
    splits: Mapping[str, int] | None = None,
    cfg: ShapeSceneConfig | None = None,
) -> Path:
    """Generate WSOD-Shapes under ``root`` and return the VOC dataset directory ``root/VOCdevkit/SHAPES``.

    Args:
        root: output directory (created).
        seed: the only source of randomness; equal seeds and configs give byte-identical files.
        splits: images per split, keys among ``train``, ``val``, ``test`` (default 2000/300/500).
            ``trainval.txt`` is written when both ``train`` and ``val`` are present.
        cfg: scene parameters (default :class:`ShapeSceneConfig`).
    """
    cfg = cfg or ShapeSceneConfig()
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or any(n < 0 for n in splits.values()):
        raise ValueError(f"splits must map names among {SPLITS} to counts >= 0, got {splits}.")
    voc_dir = Path(root) / "VOCdevkit" / "SHAPES"
    image_dir, ann_dir, set_dir = (
        voc_dir / "JPEGImages",
        voc_dir / "Annotations",
        voc_dir / "ImageSets" / "Main",
    )
    for directory in (image_dir, ann_dir, set_dir):
        directory.mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)
    ]
    category_id = {name: i + 1 for i, name in enumerate(SHAPE_CLASSES)}

    image_id = 0
    annotation_id = 0
    stems: dict[str, list[str]] = {}
    split_meta: dict[str, Any] = {}
    for split_index, split in enumerate(SPLITS):
        if split not in splits:
            continue
        images, annotations, weak = [], [], {}
        objects_per_class = dict.fromkeys(SHAPE_CLASSES, 0)
        difficult_per_class = dict.fromkeys(SHAPE_CLASSES, 0)
        images_per_class = dict.fromkeys(SHAPE_CLASSES, 0)
        repeated = 0
        stems[split] = []
        for index in range(splits[split]):
            image_id += 1
            stem = f"{image_id:06d}"
            scene = generate_scene(np.random.default_rng([seed, split_index, index]), cfg)
            write_image(image_dir / f"{stem}.png", scene.image, channel_order="rgb")
            voc_objects = [
                VocObject(obj.label, *obj.box, difficult=obj.difficult, truncated=False)
                for obj in scene.objects
            ]
            write_voc_xml(
                ann_dir / f"{stem}.xml",
                VocAnnotation(f"{stem}.png", cfg.image_size, cfg.image_size, 3, voc_objects, folder="SHAPES"),
            )
            images.append(
                {
                    "id": image_id,
                    "file_name": f"{stem}.png",
                    "width": cfg.image_size,
                    "height": cfg.image_size,
                }
            )
            for obj in scene.objects:
                annotation_id += 1
                bbox = voc_box_to_coco_bbox(*obj.box)
                annotations.append(
                    {
                        "id": annotation_id,
                        "image_id": image_id,
                        "category_id": category_id[obj.label],
                        "bbox": bbox,
                        "area": bbox[2] * bbox[3],
                        "iscrowd": int(obj.difficult),
                    }
                )
                objects_per_class[obj.label] += 1
                difficult_per_class[obj.label] += int(obj.difficult)
            labels = [obj.label for obj in scene.objects]
            for label in set(labels):
                images_per_class[label] += 1
            repeated += len(set(labels)) < len(labels)
            weak[str(image_id)] = sorted(
                {category_id[obj.label] for obj in scene.objects if not obj.difficult}
            )
            stems[split].append(stem)

        write_coco_json(
            voc_dir / f"annotations_{split}.json",
            images,
            annotations,
            categories,
            info={"description": f"WSOD-Shapes {split}", "version": GENERATOR_VERSION, "seed": seed},
        )
        _write_json(
            voc_dir / f"image_labels_{split}.json",
            {"categories": categories, "images": images, "image_labels": weak},
        )
        (set_dir / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems[split]), encoding="utf-8")
        split_meta[split] = {
            "images": splits[split],
            "objects_per_class": objects_per_class,
            "difficult_per_class": difficult_per_class,
            "images_per_class": images_per_class,
            "images_with_repeated_class": repeated,
        }
    if "train" in stems and "val" in stems:
        (set_dir / "trainval.txt").write_text(
            "".join(f"{s}\n" for s in stems["train"] + stems["val"]), encoding="utf-8"
        )

    _write_json(
        voc_dir / "meta.json",
        {
            "name": "WSOD-Shapes",
            "generator": "paperzoo_shared.data.synthetic.shapes",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "classes": list(SHAPE_CLASSES),
            "category_ids": category_id,
            "config": dataclasses.asdict(cfg),
            "coco_difficult": "difficult objects are COCO annotations with iscrowd=1 (ignore regions)",
            "box_convention": "VOC xml: 1-based inclusive; COCO json: [xmin-1, ymin-1, w, h]",
            "splits": split_meta,
        },
    )
    return voc_dir
