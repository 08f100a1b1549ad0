"""Object-detection metrics of weakly supervised detection: PASCAL VOC AP/mAP, CorLoc, and COCO AP.

BOX CONVENTION (read this): every box given to :class:`GroundTruthBox` and :class:`Detection` is
``(xmin, ymin, xmax, ymax)`` in **PASCAL VOC 1-based, inclusive pixel coordinates**, exactly as written in
the VOC XML files: a box covering a whole W x H image is ``(1, 1, W, H)``, and its width is
``xmax - xmin + 1``. A detector that predicts 0-based continuous boxes (detectron2, torchvision) must add 1
to ``xmin`` and ``ymin`` first, as detectron2's ``PascalVOCDetectionEvaluator`` does when it writes the
result files. :func:`voc_box_to_coco_xywh` converts to COCO ``[x, y, w, h]`` the detectron2 way.

VOC AP and CorLoc follow ``voc_eval``/``voc_eval_corloc`` of HUWSOD's ``pascal_voc_evaluation.py`` (a copy of
py-faster-rcnn's ``voc_eval``):

* IoU with the "+1" pixel convention for intersection and union;
* a detection is matched to the GT box of highest IoU among *all* GT of its class and image (difficult ones
  included) and counts only if that IoU is **strictly greater** than the threshold;
* matched difficult GT: the detection is ignored (neither TP nor FP); an already matched GT: FP (duplicate);
* ``npos`` counts the non-difficult GT; recall = cumTP / npos, precision = cumTP / max(cumTP + cumFP, eps);
* detections are processed by descending score with a **stable** sort, so tied scores keep their input
  order. The official code uses numpy's default (unstable) argsort on scores rounded to 3 decimals in its
  result files, so its order of ties is unspecified; scores are not rounded here.

Detections on images without GT of their class are false positives, as in the official code for images of
the image set (the official code raises ``KeyError`` for images outside it). A class without non-difficult
GT has no defined AP or CorLoc and raises ``ValueError`` (the official code divides by zero).

Scales: AP values are fractions in [0, 1]; **CorLoc is a percentage** in [0, 100], as papers report it.
COCO AP goes through pycocotools itself (the reference implementation; optional dependency ``coco``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]

# detectron2/HUWSOD evaluate VOC AP at IoU thresholds 50, 55, ..., 95 (percent).
_VOC_RANGE_THRESHOLDS = tuple(t / 100.0 for t in range(50, 100, 5))
_COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _validated_box(box: Sequence[float]) -> Box:
    values = tuple(float(v) for v in box)
    if len(values) != 4:
        raise ValueError(f"a box needs 4 coordinates (xmin, ymin, xmax, ymax), got {box!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    xmin, ymin, xmax, ymax = values
    if xmax < xmin or ymax < ymin:
        raise ValueError(f"box must satisfy xmin <= xmax and ymin <= ymax, got {box!r}")
    return values


@dataclass(frozen=True)
class GroundTruthBox:
    """One annotated object. ``box`` is VOC 1-based inclusive ``(xmin, ymin, xmax, ymax)``."""

    image_id: Hashable
    class_name: str
    box: Box
    difficult: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", _validated_box(self.box))
        object.__setattr__(self, "difficult", bool(self.difficult))


@dataclass(frozen=True)
class Detection:
    """One scored detection. ``box`` is VOC 1-based inclusive ``(xmin, ymin, xmax, ymax)``."""

    image_id: Hashable
    class_name: str
    score: float
    box: Box

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", _validated_box(self.box))
        score = float(self.score)
        if not math.isfinite(score):
            raise ValueError(f"detection score must be finite, got {self.score!r} (image {self.image_id!r})")
        object.__setattr__(self, "score", score)


@dataclass
class _ImageGroundTruth:
    boxes: np.ndarray  # (k, 4) VOC boxes
    difficult: np.ndarray  # (k,) bool


def _class_ground_truth(
    ground_truth: Iterable[GroundTruthBox], class_name: str
) -> tuple[dict[Hashable, _ImageGroundTruth], int]:
    """GT of one class grouped by image, and npos (the number of non-difficult GT)."""
    boxes: dict[Hashable, list[Box]] = {}
    difficult: dict[Hashable, list[bool]] = {}
    for gt in ground_truth:
        if gt.class_name == class_name:
            boxes.setdefault(gt.image_id, []).append(gt.box)
            difficult.setdefault(gt.image_id, []).append(gt.difficult)
    records = {
        image_id: _ImageGroundTruth(np.array(boxes[image_id]), np.array(difficult[image_id], dtype=bool))
        for image_id in boxes
    }
    npos = sum(int(np.count_nonzero(~r.difficult)) for r in records.values())
    return records, npos


def _sorted_class_detections(detections: Iterable[Detection], class_name: str) -> list[Detection]:
    """Detections of one class by descending score; ``sorted`` is stable, so ties keep input order."""
    return sorted((d for d in detections if d.class_name == class_name), key=lambda d: -d.score)


def _voc_iou(box: Box, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of ``gt_boxes``, VOC "+1" pixel convention."""
    ixmin = np.maximum(gt_boxes[:, 0], box[0])
    iymin = np.maximum(gt_boxes[:, 1], box[1])
    ixmax = np.minimum(gt_boxes[:, 2], box[2])
    iymax = np.minimum(gt_boxes[:, 3], box[3])
    intersection = np.maximum(ixmax - ixmin + 1.0, 0.0) * np.maximum(iymax - iymin + 1.0, 0.0)
    box_area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    gt_areas = (gt_boxes[:, 2] - gt_boxes[:, 0] + 1.0) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1.0)
    return intersection / (box_area + gt_areas - intersection)


def _check_class_names(
    detections: Sequence[Detection], ground_truth: Sequence[GroundTruthBox], class_names: Sequence[str]
) -> None:
    if len(class_names) == 0:
        raise ValueError("class_names is empty")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names has duplicates: {list(class_names)}")
    known = set(class_names)
    for what, items in (("detections", detections), ("ground truth", ground_truth)):
        unknown = sorted({item.class_name for item in items} - known)
        if unknown:
            raise ValueError(f"{what} use class names not in class_names: {unknown}")


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from a recall/precision curve (py-faster-rcnn ``voc_ap``).

    ``use_07_metric=True``: VOC2007 11-point interpolation, mean over t in {0, 0.1, ..., 1} of the maximum
    precision at recall >= t (0 if none). The thresholds are ``np.arange(0.0, 1.1, 0.1)`` exactly as in the
    official code, so e.g. the third one is 0.30000000000000004 and a recall of exactly 0.3 misses it.
    ``use_07_metric=False``: VOC2010+ area under the precision envelope (monotone from the right), summed
    where recall changes.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision must be 1-D and of equal length, got {recall.shape} and {precision.shape}"
        )
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = recall >= t
            ap += (float(np.max(precision[above])) if above.any() else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    changes = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def voc_eval_class(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruthBox],
    class_name: str,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """VOC AP of one class (py-faster-rcnn / HUWSOD ``voc_eval``); see the module docstring for the rules.

    Returns ``{"ap": float, "recall": array, "precision": array, "npos": int}``; ``recall`` and
    ``precision`` have one entry per detection of the class, in score order (ignored detections included,
    as in the official code).
    """
    records, npos = _class_ground_truth(ground_truth, class_name)
    if npos == 0:
        raise ValueError(f"class {class_name!r} has no non-difficult ground truth; its AP is undefined")
    matched = {image_id: np.zeros(len(r.boxes), dtype=bool) for image_id, r in records.items()}
    ranked = _sorted_class_detections(detections, class_name)
    tp = np.zeros(len(ranked))
    fp = np.zeros(len(ranked))
    for d, det in enumerate(ranked):
        record = records.get(det.image_id)
        if record is None:
            fp[d] = 1.0
            continue
        overlaps = _voc_iou(det.box, record.boxes)
        jmax = int(np.argmax(overlaps))
        if overlaps[jmax] > iou_threshold:
            if record.difficult[jmax]:
                continue  # ignored: neither TP nor FP
            if matched[det.image_id][jmax]:
                fp[d] = 1.0  # duplicate
            else:
                tp[d] = 1.0
                matched[det.image_id][jmax] = True
        else:
            fp[d] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / float(npos)
    # eps avoids 0/0 when the first detections are ignored (they get precision 0, as in the official code)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return {
        "ap": voc_ap(recall, precision, use_07_metric),
        "recall": recall,
        "precision": precision,
        "npos": npos,
    }


def voc_map(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruthBox],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """Mean VOC AP over ``class_names`` (unweighted). Returns ``{"map": float, "per_class": {name: ap}}``.

    ``use_07_metric=True`` is the VOC2007 test protocol; detectron2 uses the area metric for VOC2012.
    """
    _check_class_names(detections, ground_truth, class_names)
    per_class = {
        name: voc_eval_class(detections, ground_truth, name, iou_threshold, use_07_metric)["ap"]
        for name in class_names
    }
    return {"map": float(np.mean(list(per_class.values()))), "per_class": per_class}


def voc_ap_range(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruthBox],
    class_names: Sequence[str],
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """VOC mAP at IoU 0.50:0.05:0.95, as HUWSOD's ``PascalVOCDetectionEvaluator_WSL`` reports it.

    Returns ``{"AP": mean over the 10 thresholds, "AP50": the classic VOC mAP, "AP75": ...,
    "per_threshold": {0.5: mAP, 0.55: mAP, ...}}`` as fractions (the repository prints them x100).
    """
    per_threshold = {
        t: voc_map(detections, ground_truth, class_names, t, use_07_metric)["map"]
        for t in _VOC_RANGE_THRESHOLDS
    }
    return {
        "AP": float(np.mean(list(per_threshold.values()))),
        "AP50": per_threshold[0.5],
        "AP75": per_threshold[0.75],
        "per_threshold": per_threshold,
    }


def corloc(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruthBox],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Correct localization in percent (HUWSOD ``voc_eval_corloc``; Deselaers et al. 2012).

    Per class: the denominator is the number of images with at least one non-difficult GT of the class; in
    each of them the highest-scoring detection of the class (stable sort) is correct when its IoU with
    *any* GT of the class, difficult included, is strictly greater than ``iou_threshold`` ("+1" IoU).
    Images without a detection of the class count as failures; images whose instances of the class are
    all difficult, or that have none, are skipped. Computed on the training images in WSOD papers.

    Returns ``{"corloc": mean over classes in percent, "per_class": {name: percent}}``.
    """
    _check_class_names(detections, ground_truth, class_names)
    per_class: dict[str, float] = {}
    for name in class_names:
        records, _ = _class_ground_truth(ground_truth, name)
        positive_images = {image_id for image_id, r in records.items() if not r.difficult.all()}
        if not positive_images:
            raise ValueError(f"class {name!r} has no image with non-difficult ground truth; CorLoc undefined")
        evaluated: set[Hashable] = set()
        correct = 0
        for det in _sorted_class_detections(detections, name):
            if det.image_id in evaluated or det.image_id not in positive_images:
                continue
            evaluated.add(det.image_id)
            if np.max(_voc_iou(det.box, records[det.image_id].boxes)) > iou_threshold:
                correct += 1
        per_class[name] = 100.0 * correct / len(positive_images)
    return {"corloc": float(np.mean(list(per_class.values()))), "per_class": per_class}


def voc_box_to_coco_xywh(box: Sequence[float]) -> list[float]:
    """VOC 1-based inclusive ``(xmin, ymin, xmax, ymax)`` to COCO ``[x, y, w, h]``, the detectron2 way.

    detectron2's VOC loader subtracts 1 from ``xmin`` and ``ymin`` only (pixel indices -> continuous
    coordinates), and COCO export takes ``w = xmax - x``: ``[1, 1, 10, 10]`` -> ``[0, 0, 10, 10]``, so
    the COCO area (100) equals the VOC "+1" area. (A naive ``w = xmax - xmin`` would give 9 x 9.)
    """
    xmin, ymin, xmax, ymax = _validated_box(box)
    x, y = xmin - 1.0, ymin - 1.0
    return [x, y, xmax - x, ymax - y]


def voc_to_coco(
    ground_truth: Sequence[GroundTruthBox],
    detections: Sequence[Detection],
    class_names: Sequence[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO ground-truth dict and COCO results list from VOC-convention boxes, for :func:`coco_eval`.

    Boxes are converted with :func:`voc_box_to_coco_xywh`; ``area = w * h``; image ids become 1, 2, ... in
    order of first appearance (GT first, the original id kept as ``file_name``); category ids are
    ``class_names`` positions + 1. Difficult GT become ordinary instances (``iscrowd=0``), as in
    detectron2's VOC loader. Images that only have detections are listed too, so those detections are FPs.
    """
    _check_class_names(detections, ground_truth, class_names)
    image_index: dict[Hashable, int] = {}
    for item in [*ground_truth, *detections]:
        image_index.setdefault(item.image_id, len(image_index) + 1)
    category_id = {name: i + 1 for i, name in enumerate(class_names)}
    annotations = []
    for k, gt in enumerate(ground_truth):
        bbox = voc_box_to_coco_xywh(gt.box)
        annotations.append(
            {
                "id": k + 1,
                "image_id": image_index[gt.image_id],
                "category_id": category_id[gt.class_name],
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
        )
    gt_dict = {
        "images": [{"id": index, "file_name": str(image_id)} for image_id, index in image_index.items()],
        "categories": [{"id": category_id[name], "name": name} for name in class_names],
        "annotations": annotations,
    }
    results = [
        {
            "image_id": image_index[det.image_id],
            "category_id": category_id[det.class_name],
            "bbox": voc_box_to_coco_xywh(det.box),
            "score": det.score,
        }
        for det in detections
    ]
    return gt_dict, results


def _load_coco_ground_truth(gt: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(gt, (str, os.PathLike)):
        with open(gt, encoding="utf-8") as f:
            dataset = json.load(f)
    else:
        dataset = copy.deepcopy(dict(gt))  # COCOeval writes "ignore" flags into the GT annotations
    for key in ("images", "annotations", "categories"):
        if key not in dataset:
            raise ValueError(f"COCO ground truth has no {key!r} list")
    required = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
    for i, ann in enumerate(dataset["annotations"]):
        missing = [key for key in required if key not in ann]
        if missing:
            raise ValueError(f"COCO ground-truth annotation {i} lacks {missing}")
    return dataset


def _validated_coco_results(results: Sequence[Mapping[str, Any]], image_ids: set[Any]) -> list[dict]:
    checked = []
    for i, det in enumerate(results):
        missing = [key for key in ("image_id", "category_id", "bbox", "score") if key not in det]
        if missing:
            raise ValueError(f"COCO detection {i} lacks {missing}")
        if not math.isfinite(float(det["score"])):
            raise ValueError(f"COCO detection {i} has a non-finite score {det['score']!r}")
        if len(det["bbox"]) != 4 or det["bbox"][2] < 0 or det["bbox"][3] < 0:
            raise ValueError(
                f"COCO detection {i} needs bbox [x, y, w, h] with w, h >= 0, got {det['bbox']!r}"
            )
        if det["image_id"] not in image_ids:
            raise ValueError(f"COCO detection {i} refers to image_id {det['image_id']!r}, not in the GT")
        checked.append(copy.deepcopy(dict(det)))  # loadRes adds id/area/segmentation in place
    return checked


def coco_eval(
    gt_coco_dict_or_path: Mapping[str, Any] | str | os.PathLike[str],
    detections_coco_list: Sequence[Mapping[str, Any]],
) -> dict[str, float]:
    """COCO box AP through pycocotools ``COCOeval(..., "bbox")`` (as detectron2's ``COCOEvaluator``).

    ``detections_coco_list`` is a COCO results list ``[{image_id, category_id, bbox: [x, y, w, h], score}]``.
    Returns fractions ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` = ``stats[0:6]`` (AP@[.50:.05:.95],
    IoU >= threshold matches, no "+1", 101-point interpolation, maxDets 100). pycocotools' -1 ("no GT in
    this area range") becomes ``nan`` (detectron2 does the same). An empty detection list gives AP 0 for
    every range that has GT instead of pycocotools' crash in ``loadRes``. pycocotools' printing is silenced.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = _load_coco_ground_truth(gt_coco_dict_or_path)
    results = _validated_coco_results(detections_coco_list, {image["id"] for image in dataset["images"]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": copy.deepcopy(dataset["images"]),
                "categories": copy.deepcopy(dataset["categories"]),
                "annotations": [],
            }
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {
        name: float(value) if value >= 0 else float("nan")
        for name, value in zip(_COCO_STAT_NAMES, evaluator.stats[: len(_COCO_STAT_NAMES)])
    }
