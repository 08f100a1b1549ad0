"""Inference with multi-scale + flip test-time augmentation, and evaluation through paperzoo_shared's metrics.

Detections are predicted in 0-based continuous pixel coordinates of the original image and handed to the
metrics in VOC's 1-based inclusive convention the detectron2 way (``xmin + 1``, ``ymin + 1``, ``xmax``,
``ymax``). TTA follows the repo's ``GeneralizedRCNNWithTTAUNION``: run every (scale, flip), map the boxes
back, take the union and apply class-wise NMS with the test thresholds.

Metrics (all from :mod:`paperzoo_shared.metrics.detection`, in percent): VOC07 11-point mAP@0.5
(``map07``), VOC area mAP@0.5 (``map_area``), CorLoc on the training images (``corloc``), and pycocotools
AP, AP50 and AP75 (``ap``, ``ap50``, ``ap75``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

from paperzoo_huwsod.configuration import EvalConfig, HeadConfig
from paperzoo_huwsod.data import (
    ImageRecord,
    SplitGroundTruth,
    map_test_boxes,
    pad_batch,
    read_rgb,
    resize_image,
    resize_shortest_edge,
)
from paperzoo_huwsod.data import unmap_test_boxes as unmap_boxes
from paperzoo_huwsod.modeling_huwsod import HUWSOD
from paperzoo_shared.metrics.detection import (
    Detection,
    coco_eval,
    corloc,
    voc_ap_range,
    voc_box_to_coco_xywh,
    voc_map,
    voc_to_coco,
)

logger = logging.getLogger(__name__)


@dataclass
class ImageDetections:
    """Detections of one image: boxes (D, 4) continuous 0-based original-image pixels, scores, class indices."""

    image_id: str
    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


def views(eval_cfg: EvalConfig, tta: bool) -> list[tuple[int, bool]]:
    """(short side, flipped) of every test view."""
    if tta:
        flips = [False, True] if eval_cfg.tta_flip else [False]
        return [(s, f) for s in eval_cfg.tta_scales for f in flips]
    return [(s, False) for s in eval_cfg.scales]


def merge_views(
    boxes: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    classes: Sequence[torch.Tensor],
    head: HeadConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Union of the detections of all views, class-wise NMS, top-k (the repo's TTA union)."""
    b, s, c = torch.cat(list(boxes)), torch.cat(list(scores)), torch.cat(list(classes))
    if len(boxes) > 1:
        keep = batched_nms(b, s, c, head.test_nms)[: head.test_topk]
        b, s, c = b[keep], s[keep], c[keep]
    return b, s, c


@torch.no_grad()
def predict(
    model: HUWSOD,
    records: Sequence[ImageRecord],
    eval_cfg: EvalConfig,
    *,
    tta: bool,
    size_divisibility: int = 8,
    skip_bad: bool = False,
    progress: bool = False,
    proposals: dict[str, torch.Tensor] | None = None,
) -> list[ImageDetections]:
    """Detections for ``records`` (single scale, or TTA: ``tta_scales`` x flip). ``proposals`` holds the
    offline proposals in original-image pixels when the model uses them (mapped into every view)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[ImageDetections] = []
    batch_size = max(1, eval_cfg.batch_size)
    iterator: Iterable[int] = range(0, len(records), batch_size)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(list(iterator), desc="predict", leave=False)
    test_views = views(eval_cfg, tta)
    for start in iterator:
        chunk = records[start : start + batch_size]
        images = []
        for record in chunk:
            array = read_rgb(record, skip_bad)
            images.append(
                None
                if array is None
                else torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
            )
        kept = [(r, im) for r, im in zip(chunk, images) if im is not None]
        if not kept:
            continue
        per_image: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in kept]
        for short, flipped in test_views:
            resized = []
            for _, im in kept:
                h, w = im.shape[1:]
                size = resize_shortest_edge(h, w, short, eval_cfg.max_size)
                x = resize_image(im, size)
                resized.append(x.flip(-1) if flipped else x)
            batch, sizes = pad_batch(resized, size_divisibility)
            external = None
            if proposals is not None:
                external = [
                    map_test_boxes(proposals[r.image_id], tuple(im.shape[1:]), size, flipped).to(device)
                    for (r, im), size in zip(kept, sizes)
                ]
            results = (
                model.inference(batch.to(device), sizes, external)
                if external is not None
                else model.inference(batch.to(device), sizes)
            )
            for i, ((_, im), result, size) in enumerate(zip(kept, results, sizes)):
                boxes = unmap_boxes(result["boxes"].cpu(), size, tuple(im.shape[1:]), flipped)
                per_image[i].append((boxes, result["scores"].cpu(), result["classes"].cpu()))
        for (record, _), dets in zip(kept, per_image):
            b, s, c = merge_views(
                [d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets], model.cfg.head
            )
            out.append(ImageDetections(record.image_id, b, s, c))
    return out


def to_voc_detections(dets: Sequence[ImageDetections], class_names: Sequence[str]) -> list[Detection]:
    """Continuous 0-based boxes -> shared VOC-convention detections (x + 1, y + 1, x2, y2; at least 1 px)."""
    result = []
    for image in dets:
        for box, score, cls in zip(image.boxes.tolist(), image.scores.tolist(), image.classes.tolist()):
            x1, y1 = box[0] + 1.0, box[1] + 1.0
            x2, y2 = max(box[2], x1), max(box[3], y1)
            result.append(Detection(image.image_id, class_names[cls], float(score), (x1, y1, x2, y2)))
    return result


def coco_results(
    dets: Sequence[Detection],
    records: Sequence[ImageRecord],
    coco_gt: dict[str, Any],
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Shared VOC-convention detections -> a COCO results list against the split's COCO file."""
    coco_id = {r.image_id: r.coco_id for r in records}
    names = {c["name"]: c["id"] for c in coco_gt["categories"]}
    file_ids = {Path(im["file_name"]).stem: im["id"] for im in coco_gt["images"]}
    out = []
    for d in dets:
        image_id = file_ids.get(str(d.image_id), coco_id.get(d.image_id))
        out.append(
            {
                "image_id": image_id,
                "category_id": names[d.class_name],
                "bbox": voc_box_to_coco_xywh(d.box),
                "score": d.score,
            }
        )
    return out


def detection_metrics(
    dets: Sequence[Detection],
    gt: SplitGroundTruth,
    class_names: Sequence[str],
    records: Sequence[ImageRecord],
) -> dict[str, float]:
    """VOC07 / area mAP@0.5, VOC07 mAP at IoU .50:.05:.95 (``map07_5095``, what the repo's
    ``PascalVOCDetectionEvaluator_WSL`` prints as AP) and COCO AP / AP50 / AP75 of one split, in percent."""
    evaluated = {r.image_id for r in records}
    boxes = [g for g in gt.boxes if str(g.image_id) in evaluated]
    metrics = {
        "map07": 100.0 * voc_map(dets, boxes, class_names, 0.5, use_07_metric=True)["map"],
        "map_area": 100.0 * voc_map(dets, boxes, class_names, 0.5, use_07_metric=False)["map"],
        "map07_5095": 100.0 * voc_ap_range(dets, boxes, class_names, use_07_metric=True)["AP"],
    }
    if gt.coco is not None:
        coco_gt = gt.coco
        results = coco_results(dets, records, coco_gt, class_names)
    else:
        coco_gt, results = voc_to_coco(boxes, dets, class_names)
    stats = coco_eval(coco_gt, results)
    metrics.update({"ap": 100.0 * stats["AP"], "ap50": 100.0 * stats["AP50"], "ap75": 100.0 * stats["AP75"]})
    return metrics


def corloc_metric(dets: Sequence[Detection], gt: SplitGroundTruth, class_names: Sequence[str]) -> float:
    """CorLoc (percent) of the top detection per class on the (training) images."""
    return corloc(dets, gt.boxes, class_names)["corloc"]


def proposal_recall(
    proposals: Sequence[torch.Tensor], gt: SplitGroundTruth, image_ids: Sequence[str], iou: float = 0.5
) -> float:
    """Fraction (percent) of non-difficult GT boxes covered by some proposal at IoU >= ``iou``."""
    from torchvision.ops import box_iou

    hit = total = 0
    for boxes, image_id in zip(proposals, image_ids):
        objs = [o[1] for o in gt.per_image.get(image_id, []) if not o[2]]
        if not objs:
            continue
        g = torch.tensor(objs, dtype=torch.float32)
        total += len(objs)
        if len(boxes):
            hit += int((box_iou(g, boxes.float().cpu()).max(dim=1).values >= iou).sum())
    return 100.0 * hit / max(total, 1)
