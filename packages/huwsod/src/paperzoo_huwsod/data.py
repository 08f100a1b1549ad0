"""Datasets of HUWSOD: weak-label training data, evaluation ground truth, and the weak / strong augmentations.

Weak supervision is enforced by construction: :class:`TrainDataset` is built from an *image-label file*
(``image_labels_<split>.json``: categories, images and ``image_labels: {image_id: [category ids]}``, the
format WSOD-Shapes writes) and never opens an annotation with boxes. For VOC and COCO,
:func:`write_weak_labels` derives that file once from the annotations (``paperzoo-huwsod prepare``).
Only the fully supervised upper bound (``model.supervision=full``) loads boxes for training, through
:func:`load_ground_truth`, as the evaluators do.

Errors name the file and the fix (:class:`paperzoo_shared.data.errors.DataError`); with ``skip_bad`` a bad
image or annotation is logged and skipped instead.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from paperzoo_huwsod.configuration import AugmentConfig, DataConfig, ProposalConfig, resolve_class_names
from paperzoo_shared.data import safe_join
from paperzoo_shared.data.detection_formats import read_coco_json, read_voc_xml
from paperzoo_shared.data.errors import DataError, require_file
from paperzoo_shared.data.image_io import read_image
from paperzoo_shared.metrics.detection import GroundTruthBox

logger = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    """One image of a split: its id (VOC stem or str(COCO id)), file, size and weak labels (class indices)."""

    image_id: str
    path: Path
    width: int
    height: int
    labels: list[int] = field(default_factory=list)
    coco_id: int | None = None


# ----------------------------------------------------------------------------------------------------
# dataset layout
# ----------------------------------------------------------------------------------------------------


def shapes_root(cfg: DataConfig, cache_dir: Path) -> Path:
    """Generates WSOD-Shapes (once per generator setting) and returns its VOC folder ``.../VOCdevkit/SHAPES``."""
    from paperzoo_shared.config import config_hash
    from paperzoo_shared.data.synthetic.shapes import ShapeSceneConfig, write_shapes_dataset

    s = cfg.shapes
    scene = ShapeSceneConfig(
        image_size=s.image_size, size_range=(float(s.size_range[0]), float(s.size_range[1]))
    )
    splits = {"train": s.train, "val": s.val, "test": s.test}
    key = config_hash({"seed": s.seed, "scene": scene.__dict__, "splits": splits})
    base = Path(cfg.root) if cfg.root else cache_dir
    root = base / f"wsod_shapes_{key}"
    voc_dir = root / "VOCdevkit" / "SHAPES"
    done = root / ".complete"
    if not done.is_file():
        logger.info("generating WSOD-Shapes (%s images) under %s", sum(splits.values()), root)
        write_shapes_dataset(root, seed=s.seed, splits=splits, cfg=scene)
        done.write_text("ok\n")
    return voc_dir


def dataset_root(cfg: DataConfig, cache_dir: Path) -> Path:
    """The folder that holds the images, annotations and image-label files of ``cfg``."""
    if cfg.format == "shapes":
        return shapes_root(cfg, cache_dir)
    if not cfg.root:
        raise DataError(
            f"data.root is empty; set it to the {cfg.format.upper()} dataset folder (--set data.root=...)"
        )
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder; point it at the {cfg.format.upper()} dataset")
    return root


def weak_label_path(cfg: DataConfig, root: Path, split: str) -> Path:
    path = Path(cfg.weak_labels.format(split=split))
    return path if path.is_absolute() else root / path


def image_path(
    cfg: DataConfig, root: Path, split: str, file_name: str, *, source: Path | str, entry: object = None
) -> Path:
    """The image ``file_name`` read from ``source``; a name that leaves the image folder is a DataError."""
    folder = root / cfg.coco_images.format(split=split) if cfg.format == "coco" else root / "JPEGImages"
    return safe_join(folder, file_name, source=source, entry=entry)


# ----------------------------------------------------------------------------------------------------
# weak labels (the only file training opens)
# ----------------------------------------------------------------------------------------------------


def _voc_set_file(root: Path, split: str) -> Path:
    return root / "ImageSets" / "Main" / f"{split}.txt"


def _voc_ids(root: Path, split: str) -> list[str]:
    path = require_file(_voc_set_file(root, split), "VOC image set")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _voc_annotations(cfg: DataConfig, root: Path, split: str, class_names: list[str]):
    """(position in the image set, stem, parsed XML) per image of ``split``; a bad file raises, or under
    ``data.skip_bad`` is logged and skipped. An id that leaves ``Annotations/`` is always an error."""
    set_file = _voc_set_file(root, split)
    for position, stem in enumerate(_voc_ids(root, split)):
        xml = safe_join(root / "Annotations", f"{stem}.xml", source=set_file, entry=repr(stem))
        try:
            ann = read_voc_xml(xml, class_names=class_names)
        except DataError as error:
            if not cfg.skip_bad:
                raise
            logger.warning("skipping %s: %s", stem, error)
            continue
        yield position, stem, ann


def write_weak_labels(cfg: DataConfig, root: Path, split: str, *, force: bool = False) -> Path:
    """Writes ``image_labels_<split>.json`` from the VOC XML files or the COCO annotation file of ``split``.

    Labels are the classes with at least one non-difficult (VOC) / non-crowd (COCO) object, as the repo's
    loaders give (``include_difficult_labels`` adds difficult-only classes). Returns the path.
    """
    out = weak_label_path(cfg, root, split)
    if out.is_file() and not force:
        return out
    class_names = resolve_class_names(cfg)
    images, labels, categories = [], {}, []
    if cfg.format in ("voc", "shapes"):
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
        ids = {n: i + 1 for i, n in enumerate(class_names)}
        for k, stem, ann in _voc_annotations(cfg, root, split, class_names):
            image_id = k + 1
            images.append({"id": image_id, "file_name": ann.filename or f"{stem}{cfg.image_extension}",
                           "width": ann.width, "height": ann.height, "voc_id": stem})  # fmt: skip
            keep = [o for o in ann.objects if cfg.include_difficult_labels or not o.difficult]
            labels[str(image_id)] = sorted({ids[o.name] for o in keep})
    else:
        coco_file = root / cfg.coco_annotations.format(split=split)
        data = read_coco_json(coco_file)
        categories = [{"id": c["id"], "name": c["name"]} for c in data["categories"]]
        images = [{k: im[k] for k in ("id", "file_name", "width", "height")} for im in data["images"]]
        for im in images:
            labels[str(im["id"])] = []
        present: dict[str, set[int]] = {}
        for ann in data["annotations"]:
            if ann.get("iscrowd", 0) and not cfg.include_difficult_labels:
                continue
            present.setdefault(str(ann["image_id"]), set()).add(ann["category_id"])
        for key, cats in present.items():
            labels[key] = sorted(cats)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"categories": categories, "images": images, "image_labels": labels}) + "\n")
    return out


class _UnsafePath(DataError):
    """A path in a data file that leaves its folder (raised even under ``skip_bad``)."""


def load_weak_labels(
    cfg: DataConfig, root: Path, split: str, class_names: Sequence[str]
) -> list[ImageRecord]:
    """Reads the image-label file of ``split`` (see the module docstring) into :class:`ImageRecord` s.

    Raises :class:`DataError` naming the file for malformed JSON, missing keys, unknown category ids or
    category names outside ``class_names``; an image entry whose file is missing is an error too, or a
    logged skip with ``skip_bad``.
    """
    path = weak_label_path(cfg, root, split)
    if not path.is_file() and cfg.format in ("voc", "coco"):
        raise DataError(
            f"image-label file {path} does not exist; create it with `paperzoo-huwsod prepare` "
            f"(it derives the image-level labels of split {split!r} from the annotations once)"
        )
    path = require_file(path, "image-label")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"image-label file {path} is not valid JSON ({error}); re-create it") from None
    if not isinstance(data, dict) or not all(k in data for k in ("categories", "images", "image_labels")):
        raise DataError(
            f"image-label file {path} must be an object with keys categories, images, image_labels"
        )
    index = {name: i for i, name in enumerate(class_names)}
    cat_to_class = {}
    for cat in data["categories"]:
        if cat.get("name") not in index:
            raise DataError(
                f"image-label file {path}: category {cat.get('name')!r} (id {cat.get('id')}) is not a known class; "
                f"known: {list(class_names)}. Fix data.class_names or the file."
            )
        cat_to_class[cat["id"]] = index[cat["name"]]
    records = []
    for entry in data["images"]:
        try:
            key = str(entry["id"])
            cats = data["image_labels"].get(key, [])
            unknown = [c for c in cats if c not in cat_to_class]
            if unknown:
                raise DataError(f"image-label file {path}: image id {key} has unknown category ids {unknown}")
            try:
                file_path = image_path(cfg, root, split, entry["file_name"], source=path, entry=f"id {key}")
            except DataError as error:
                raise _UnsafePath(str(error)) from None  # never skipped: the file itself is wrong
            if not file_path.is_file():
                raise DataError(
                    f"image-label file {path}: image id {key} points at missing image file {file_path}"
                )
            stem = entry.get("voc_id") or Path(entry["file_name"]).stem
            records.append(
                ImageRecord(
                    image_id=stem if cfg.format != "coco" else key,
                    path=file_path,
                    width=int(entry["width"]),
                    height=int(entry["height"]),
                    labels=sorted({cat_to_class[c] for c in cats}),
                    coco_id=int(entry["id"]),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, _UnsafePath):
                raise DataError(str(error)) from None
            if isinstance(error, DataError) and cfg.skip_bad:
                logger.warning("skipping an image of %s: %s", path, error)
                continue
            if isinstance(error, DataError):
                raise
            raise DataError(f"image-label file {path}: malformed image entry {entry!r} ({error})") from None
    if not records:
        raise DataError(f"image-label file {path} lists no usable image")
    return records


# ----------------------------------------------------------------------------------------------------
# ground truth (evaluation, and the fully supervised upper bound)
# ----------------------------------------------------------------------------------------------------


@dataclass
class SplitGroundTruth:
    """Boxes of one split: VOC-convention GT for VOC AP / CorLoc, COCO dict for pycocotools, per-image boxes."""

    boxes: list[GroundTruthBox]
    coco: dict[str, Any] | None
    per_image: dict[str, list[tuple[int, tuple[float, float, float, float], bool]]]
    """image id -> [(class index, (x1, y1, x2, y2) continuous 0-based, difficult)]."""


def load_ground_truth(
    cfg: DataConfig, root: Path, split: str, class_names: Sequence[str]
) -> SplitGroundTruth:
    """Reads the boxes of ``split`` (VOC XML for voc/shapes, the COCO file for coco)."""
    boxes: list[GroundTruthBox] = []
    per_image: dict[str, list] = {}
    coco = None
    index = {name: i for i, name in enumerate(class_names)}
    if cfg.format in ("voc", "shapes"):
        for _, stem, ann in _voc_annotations(cfg, root, split, class_names):
            per_image[stem] = []
            for obj in ann.objects:
                voc_box = (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
                boxes.append(GroundTruthBox(stem, obj.name, voc_box, obj.difficult))
                continuous = (obj.xmin - 1.0, obj.ymin - 1.0, float(obj.xmax), float(obj.ymax))
                per_image[stem].append((index[obj.name], continuous, obj.difficult))
        if cfg.format == "shapes":
            coco_file = root / f"annotations_{split}.json"
            if coco_file.is_file():
                coco = read_coco_json(coco_file)
    else:
        coco = read_coco_json(root / cfg.coco_annotations.format(split=split))
        names = {c["id"]: c["name"] for c in coco["categories"]}
        for im in coco["images"]:
            per_image[str(im["id"])] = []
        for ann in coco["annotations"]:
            name = names[ann["category_id"]]
            if name not in index:
                raise DataError(
                    f"COCO file {root / cfg.coco_annotations.format(split=split)}: unknown class {name!r}"
                )
            x, y, w, h = (float(v) for v in ann["bbox"])
            difficult = bool(ann.get("iscrowd", 0))
            boxes.append(
                GroundTruthBox(str(ann["image_id"]), name, (x + 1.0, y + 1.0, x + w, y + h), difficult)
            )
            per_image[str(ann["image_id"])].append((index[name], (x, y, x + w, y + h), difficult))
    return SplitGroundTruth(boxes=boxes, coco=coco, per_image=per_image)


def read_rgb(record: ImageRecord, skip_bad: bool) -> np.ndarray | None:
    """The image as (H, W, 3) uint8 RGB; ``None`` (logged) when unreadable and ``skip_bad``."""
    try:
        return read_image(record.path, channel_order="rgb")
    except DataError as error:
        if not skip_bad:
            raise
        logger.warning("skipping unreadable image %s: %s", record.path, error)
        return None


def offline_proposals(
    records: Sequence[ImageRecord], cfg: ProposalConfig, cache_dir: Path, skip_bad: bool = False
) -> dict[str, Tensor] | None:
    """Per-image offline proposals (``proposals.external = segments``) in original-image pixels, computed once
    and kept in ``cache_dir`` (the repo likewise loads precomputed MCG boxes). ``None`` for other modes."""
    if cfg.external != "segments":
        return None
    from paperzoo_huwsod.ops import segment_boxes
    from paperzoo_shared.config import config_hash

    key = config_hash(
        {
            "scales": cfg.segment_scales,
            "sigma": cfg.segment_sigma,
            "min": cfg.segment_min_size,
            "files": [str(r.path) for r in records],
        }  # fmt: skip
    )
    path = Path(cache_dir) / f"segments_{key}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for record in records:
        array = read_rgb(record, skip_bad)
        if array is None:
            continue
        out[record.image_id] = segment_boxes(
            array, cfg.segment_scales, cfg.segment_sigma, cfg.segment_min_size, 1.0
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(path)
    return out


def map_test_boxes(
    boxes: Tensor, original: tuple[int, int], resized: tuple[int, int], flipped: bool
) -> Tensor:
    """Maps (R, 4) original-image boxes into a resized (and possibly flipped) test view."""
    b = boxes.clone().float()
    b[:, 0::2] *= resized[1] / original[1]
    b[:, 1::2] *= resized[0] / original[0]
    if flipped:
        b = torch.stack([resized[1] - b[:, 2], b[:, 1], resized[1] - b[:, 0], b[:, 3]], dim=1)
    return b


# ----------------------------------------------------------------------------------------------------
# augmentations
# ----------------------------------------------------------------------------------------------------


def resize_shortest_edge(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge`` output size."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(3, H, W) float 0-255 -> bilinear (antialiased) resize."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _gray(image: Tensor) -> Tensor:
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]


@dataclass
class WeakView:
    """The weak view of one training image and the geometry applied to it (for mapping boxes)."""

    image: Tensor  # (3, H, W) float 0-255 RGB
    crop: tuple[int, int, int, int]  # x0, y0, w, h in the original image
    scale: tuple[float, float]  # (sy, sx) from crop to output
    flipped: bool


def weak_augment(image: Tensor, cfg: AugmentConfig, rng: random.Random) -> WeakView:
    """RandomCrop (relative), ResizeShortestEdge (choice), RandomFlip, RandomBrightness, RandomSaturation."""
    _, h, w = image.shape
    ch, cw = h, w
    x0 = y0 = 0
    if cfg.crop_fraction < 1.0:
        ch, cw = int(h * cfg.crop_fraction + 0.5), int(w * cfg.crop_fraction + 0.5)
        y0 = rng.randint(0, h - ch)
        x0 = rng.randint(0, w - cw)
        image = image[:, y0 : y0 + ch, x0 : x0 + cw]
    nh, nw = resize_shortest_edge(ch, cw, rng.choice(cfg.train_scales), cfg.max_size)
    image = resize_image(image, (nh, nw))
    flipped = cfg.hflip and rng.random() < 0.5
    if flipped:
        image = image.flip(-1)
    b = rng.uniform(1.0 / cfg.brightness, cfg.brightness)
    image = (image * b).clamp(0, 255)
    s = rng.uniform(1.0 / cfg.saturation, cfg.saturation)
    image = ((1 - s) * _gray(image) + s * image).clamp(0, 255)
    return WeakView(image, (x0, y0, cw, ch), (nh / ch, nw / cw), flipped)


def strong_augment(
    image: Tensor, cfg: AugmentConfig, rng: random.Random, generator: torch.Generator
) -> Tensor:
    """Geometry-preserving strong view on top of the weak image (Unbiased-Teacher / the repo's
    ``image_strong_aug``): ColorJitter p=0.8, RandomGrayscale p=0.2, GaussianBlur(sigma 0.1-2) p=0.5, then
    three RandomErasing passes with random-noise fill. Output has exactly the input's size."""
    from torchvision.transforms.v2 import functional as TF

    x = image / 255.0
    if rng.random() < 0.8:
        bright, contrast, sat, hue = cfg.strong_color_jitter
        ops = list(range(4))
        rng.shuffle(ops)
        for op in ops:
            if op == 0 and bright > 0:
                x = TF.adjust_brightness(x, rng.uniform(max(0.0, 1 - bright), 1 + bright))
            elif op == 1 and contrast > 0:
                x = TF.adjust_contrast(x, rng.uniform(max(0.0, 1 - contrast), 1 + contrast))
            elif op == 2 and sat > 0:
                x = TF.adjust_saturation(x, rng.uniform(max(0.0, 1 - sat), 1 + sat))
            elif op == 3 and hue > 0:
                x = TF.adjust_hue(x, rng.uniform(-hue, hue))
    if rng.random() < cfg.strong_grayscale_p:
        x = _gray(x).expand(3, -1, -1).clone()
    if rng.random() < cfg.strong_blur_p:
        sigma = rng.uniform(0.1, 2.0)
        kernel = 2 * math.ceil(3 * sigma) + 1
        x = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    if cfg.strong_erasing:
        _, h, w = x.shape
        for p, scale, ratio in (
            (0.7, (0.05, 0.2), (0.3, 3.3)),
            (0.5, (0.02, 0.2), (0.1, 6.0)),
            (0.3, (0.02, 0.2), (0.05, 8.0)),
        ):
            if rng.random() >= p:
                continue
            for _ in range(10):  # torchvision RandomErasing: 10 tries to fit the box
                area = h * w * rng.uniform(*scale)
                aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
                eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if eh < h and ew < w:
                    i, j = rng.randint(0, h - eh), rng.randint(0, w - ew)
                    x = x.clone()
                    x[:, i : i + eh, j : j + ew] = torch.randn((3, eh, ew), generator=generator)
                    break
    return (x * 255.0).clamp(0, 255)


def map_boxes_to_view(boxes: Tensor, view: WeakView) -> Tensor:
    """Maps (R, 4) continuous boxes of the original image through the view's crop, resize and flip."""
    x0, y0, cw, ch = view.crop
    b = boxes.clone()
    b[:, 0::2] = (b[:, 0::2] - x0).clamp(0, cw)
    b[:, 1::2] = (b[:, 1::2] - y0).clamp(0, ch)
    sy, sx = view.scale
    height, width = view.image.shape[-2:]
    b[:, 0::2] = (b[:, 0::2] * sx).clamp(0, width)
    b[:, 1::2] = (b[:, 1::2] * sy).clamp(0, height)
    if view.flipped:
        width = view.image.shape[-1]
        b = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
    return b


def unmap_test_boxes(
    boxes: Tensor, resized: tuple[int, int], original: tuple[int, int], flipped: bool
) -> Tensor:
    """Maps (R, 4) boxes predicted on a resized (and possibly flipped) test image back to the original image."""
    b = boxes.clone()
    if flipped:
        b = torch.stack([resized[1] - b[:, 2], b[:, 1], resized[1] - b[:, 0], b[:, 3]], dim=1)
    b[:, 0::2] *= original[1] / resized[1]
    b[:, 1::2] *= original[0] / resized[0]
    return b


# ----------------------------------------------------------------------------------------------------
# torch datasets
# ----------------------------------------------------------------------------------------------------


class TrainDataset(Dataset):
    """Training images with their image-level labels; weak (and strong) views; boxes only when given.

    ``gt`` is passed only for the fully supervised upper bound; the weakly supervised rows never receive it.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        augment: AugmentConfig,
        *,
        two_views: bool,
        skip_bad: bool = False,
        gt: SplitGroundTruth | None = None,
        proposals: dict[str, Tensor] | None = None,
        seed: int = 0,
    ):
        self.proposals = proposals
        self.records = records
        self.augment = augment
        self.two_views = two_views
        self.skip_bad = skip_bad
        self.gt = gt
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """Record ``index`` with the augmentation of draw ``index`` (see :meth:`sample`)."""
        return self.sample(index, sample_seed(self.seed, index))

    def sample(self, index: int, seed: int) -> dict[str, Any] | None:
        """Record ``index`` with its augmentation drawn from ``seed`` alone (no global random stream), so a
        sample is a function of its position in the stream: a resumed run and its worker processes see the
        uninterrupted run's samples."""
        record = self.records[index]
        array = read_rgb(record, self.skip_bad)
        if array is None:
            return None
        rng = random.Random(seed)
        generator = torch.Generator().manual_seed(seed & 0xFFFFFFFF)
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
        view = weak_augment(image, self.augment, rng)
        sample: dict[str, Any] = {
            "weak": view.image,
            "labels": list(record.labels),
            "image_id": record.image_id,
        }
        if self.two_views:
            sample["strong"] = strong_augment(view.image, self.augment, rng, generator)
        if self.proposals is not None:
            sample["proposals"] = map_boxes_to_view(self.proposals[record.image_id], view)
        if self.gt is not None:
            objects = [o for o in self.gt.per_image.get(record.image_id, []) if not o[2]]
            boxes = torch.tensor([o[1] for o in objects], dtype=torch.float32).view(-1, 4)
            classes = torch.tensor([o[0] for o in objects], dtype=torch.int64)
            mapped = map_boxes_to_view(boxes, view)
            keep = ((mapped[:, 2] - mapped[:, 0]) > 1) & ((mapped[:, 3] - mapped[:, 1]) > 1)
            sample["gt_boxes"], sample["gt_classes"] = mapped[keep], classes[keep]
        return sample


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of stream position ``position`` of a run seeded ``seed`` (SeedSequence mixing)."""
    return _mix(seed, position)


def _mix(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> 2)


class SampleStream(Dataset):
    """The training stream as a step-indexed dataset: position ``p`` is record ``order(p // n)[p % n]`` of
    ``dataset`` (a fresh permutation per epoch, from ``seed`` and the epoch), augmented with
    :func:`sample_seed` ``(seed, p)``. Together with :class:`StepSampler` the batch of step ``s`` depends on
    ``(seed, s)`` only: it is the same after a resume, for any ``num_workers`` and any DDP world size."""

    def __init__(self, dataset: TrainDataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(_mix(self.seed, epoch, 1))  # 3 words: never a sample seed
            self._orders = {epoch: torch.randperm(len(self.dataset), generator=gen).tolist()}
        return self._orders[epoch]

    def __getitem__(self, position: int) -> dict[str, Any] | None:
        epoch, k = divmod(int(position), len(self.dataset))
        return self.dataset.sample(self.order(epoch)[k], sample_seed(self.seed, int(position)))


class StepSampler(torch.utils.data.Sampler[int]):
    """Stream positions of steps ``start_step .. total_steps - 1``: step ``s`` of rank ``r`` (of ``world``)
    takes positions ``s * B + r * per_device + j``, ``B = per_device * world``. ``start_step`` is the step a
    resumed run restarts at (Lightning restarts a non-stateful loader from its beginning)."""

    def __init__(self, start_step: int, total_steps: int, per_device: int):
        if not 0 <= start_step <= total_steps:
            raise ValueError(f"start step {start_step} is outside [0, {total_steps}]")
        self.start_step, self.total_steps, self.per_device = start_step, total_steps, per_device

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.per_device

    def __iter__(self):
        dist = torch.distributed
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        rank = dist.get_rank() if world > 1 else 0
        per, batch = self.per_device, self.per_device * world
        for step in range(self.start_step, self.total_steps):
            for j in range(per):
                yield step * batch + rank * per + j


def pad_batch(images: list[Tensor], divisibility: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """Zero-pads (3, H, W) images to a common size divisible by ``divisibility``."""
    sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    h = int(math.ceil(h / divisibility) * divisibility)
    w = int(math.ceil(w / divisibility) * divisibility)
    batch = images[0].new_zeros((len(images), 3, h, w))
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1], : im.shape[2]] = im
    return batch, sizes


class Collate:
    """Pads the views of a training batch; drops samples that were skipped (``None``)."""

    def __init__(self, divisibility: int):
        self.divisibility = divisibility

    def __call__(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        samples = [s for s in samples if s is not None]
        if not samples:
            raise DataError("every image of a training batch was unreadable (skip_bad); check the dataset")
        weak, sizes = pad_batch([s["weak"] for s in samples], self.divisibility)
        batch: dict[str, Any] = {"weak": weak, "sizes": sizes, "labels": [s["labels"] for s in samples]}
        if "strong" in samples[0]:
            batch["strong"], _ = pad_batch([s["strong"] for s in samples], self.divisibility)
        if "proposals" in samples[0]:
            batch["proposals"] = [s["proposals"] for s in samples]
        if "gt_boxes" in samples[0]:
            batch["gt"] = [{"boxes": s["gt_boxes"], "classes": s["gt_classes"]} for s in samples]
        return batch
