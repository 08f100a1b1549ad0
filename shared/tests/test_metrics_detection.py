"""VOC AP / CorLoc / COCO AP: the golden cases of huwsod.md section 7.3 and an independent voc_eval port."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paperzoo_shared.metrics import (
    Detection,
    GroundTruthBox,
    coco_eval,
    corloc,
    voc_ap,
    voc_ap_range,
    voc_box_to_coco_xywh,
    voc_eval_class,
    voc_map,
    voc_to_coco,
)

pytest.importorskip("pycocotools")

# ---------------------------------------------------------------------------------------------------------
# Independent numpy port of py-faster-rcnn voc_eval / HUWSOD voc_eval_corloc, written from the protocol
# description (huwsod.md section 3.1-3.2) on plain arrays: boxes as an (n, 4) array, scores as a vector.


def ref_iou(bb: np.ndarray, gts: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(gts[:, 2], bb[2]) - np.maximum(gts[:, 0], bb[0]) + 1, 0, None)
    h = np.clip(np.minimum(gts[:, 3], bb[3]) - np.maximum(gts[:, 1], bb[1]) + 1, 0, None)
    inter = w * h
    area_d = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
    area_g = (gts[:, 2] - gts[:, 0] + 1) * (gts[:, 3] - gts[:, 1] + 1)
    return inter / (area_d + area_g - inter)


def ref_ap(rec: np.ndarray, prec: np.ndarray, use_07: bool) -> float:
    if use_07:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            total += (prec[rec >= t].max() if (rec >= t).any() else 0.0) / 11.0
        return total
    r = np.concatenate(([0.0], rec, [1.0]))
    p = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    idx = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def ref_voc_eval(gt_by_image, dets, thresh, use_07):
    """gt_by_image: {image: (boxes (k,4), difficult (k,))}; dets: list of (image, score, box)."""
    npos = sum(int((~d).sum()) for _, d in gt_by_image.values())
    used = {img: np.zeros(len(b), bool) for img, (b, _) in gt_by_image.items()}
    order = np.argsort(-np.array([s for _, s, _ in dets]), kind="stable")
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for rank, k in enumerate(order):
        img, _, box = dets[k]
        boxes, difficult = gt_by_image.get(img, (np.zeros((0, 4)), np.zeros(0, bool)))
        best = -np.inf
        if len(boxes):
            ious = ref_iou(np.asarray(box, float), boxes)
            best, j = ious.max(), ious.argmax()
        if best > thresh:
            if difficult[j]:
                continue
            if used[img][j]:
                fp[rank] = 1
            else:
                tp[rank] = 1
                used[img][j] = True
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(float).eps)
    return rec, prec, ref_ap(rec, prec, use_07)


def ref_corloc(gt_by_image, dets, thresh):
    positives = [img for img, (_, d) in gt_by_image.items() if (~d).any()]
    order = np.argsort(-np.array([s for _, s, _ in dets]), kind="stable")
    seen, hits = set(), 0
    for k in order:
        img, _, box = dets[k]
        if img in seen or img not in positives:
            continue
        seen.add(img)
        hits += ref_iou(np.asarray(box, float), gt_by_image[img][0]).max() > thresh
    return 100.0 * hits / len(positives)


def random_dataset(seed: int, classes=("cat", "dog", "car"), n_images=10):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for i in range(n_images):
        image = f"img{i:02d}"
        for _ in range(rng.integers(1, 5)):
            cls = classes[rng.integers(len(classes))]
            x0, y0 = rng.integers(1, 200, 2)
            w, h = rng.integers(5, 120, 2)
            box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
            gts.append(GroundTruthBox(image, cls, box, difficult=bool(rng.random() < 0.2)))
            for _ in range(rng.integers(0, 3)):  # jittered hits, sometimes duplicates
                jitter = rng.normal(0, 0.15 * min(w, h), 4)
                jb = np.round(np.array(box) + jitter, 1)
                jb[2:] = np.maximum(jb[2:], jb[:2])
                dets.append(Detection(image, cls, float(rng.random()), tuple(jb)))
        for _ in range(rng.integers(0, 3)):  # background false positives
            x0, y0 = rng.uniform(1, 250, 2)
            w, h = rng.uniform(3, 80, 2)
            cls = classes[rng.integers(len(classes))]
            dets.append(Detection(image, cls, float(rng.random()), (x0, y0, x0 + w, y0 + h)))
    return gts, dets


def to_reference_format(gts, dets, cls):
    gt_by_image = {}
    for g in gts:
        if g.class_name == cls:
            boxes, diff = gt_by_image.get(g.image_id, ([], []))
            gt_by_image[g.image_id] = ([*boxes, g.box], [*diff, g.difficult])
    gt_by_image = {k: (np.array(b, float), np.array(d, bool)) for k, (b, d) in gt_by_image.items()}
    return gt_by_image, [(d.image_id, d.score, d.box) for d in dets if d.class_name == cls]


# ---------------------------------------------------------------------------------------------------------
# Golden 1: perfect detections


def perfect_case():
    gts = [
        GroundTruthBox("a", "cat", (10, 10, 60, 80)),
        GroundTruthBox("a", "dog", (50, 40, 150, 120)),
        GroundTruthBox("b", "cat", (5, 5, 40, 45)),
        GroundTruthBox("b", "cat", (100, 100, 180, 190)),
        GroundTruthBox("c", "dog", (20, 30, 120, 90)),
    ]
    dets = [Detection(g.image_id, g.class_name, 0.9 - 0.1 * k, g.box) for k, g in enumerate(gts)]
    return gts, dets


def test_perfect_detections():
    gts, dets = perfect_case()
    for use_07 in (True, False):
        result = voc_map(dets, gts, ["cat", "dog"], use_07_metric=use_07)
        # 11 x (1/11) sums to 1.0000000000000002 in floating point, in the official code too
        assert result["map"] == pytest.approx(1.0, abs=1e-12)
        assert result["per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0}, abs=1e-12)
    ranged = voc_ap_range(dets, gts, ["cat", "dog"])
    assert [ranged["AP"], ranged["AP50"], ranged["AP75"]] == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    assert len(ranged["per_threshold"]) == 10
    assert corloc(dets, gts, ["cat", "dog"]) == {"corloc": 100.0, "per_class": {"cat": 100.0, "dog": 100.0}}
    coco = coco_eval(*voc_to_coco(gts, dets, ["cat", "dog"]))
    # pycocotools computes precision as tp / (tp + fp + spacing(1)), hence not exactly 1
    assert coco["AP"] == pytest.approx(1.0, abs=1e-12)
    assert coco["AP50"] == pytest.approx(1.0, abs=1e-12)


# Golden 2: a detection that only hits a difficult GT


def test_difficult_hit_is_neither_tp_nor_fp_and_skipped_in_corloc():
    gts = [
        GroundTruthBox("a", "cat", (10, 10, 60, 60)),
        GroundTruthBox("a", "cat", (100, 10, 150, 60)),  # second, missed cat: recall stays < 1
        GroundTruthBox("b", "cat", (10, 10, 60, 60), difficult=True),
    ]
    base = [Detection("a", "cat", 0.9, (10, 10, 60, 60)), Detection("a", "cat", 0.5, (200, 200, 220, 220))]
    with_difficult_hit = [*base, Detection("b", "cat", 0.7, (11, 11, 60, 60))]
    for use_07 in (True, False):
        plain = voc_eval_class(base, gts, "cat", use_07_metric=use_07)
        extra = voc_eval_class(with_difficult_hit, gts, "cat", use_07_metric=use_07)
        assert plain["npos"] == extra["npos"] == 2
        assert extra["ap"] == plain["ap"]
        # the ignored detection (rank 2) repeats the previous cumulative counts: tp 1, fp 0
        np.testing.assert_allclose(extra["recall"], [0.5, 0.5, 0.5])
        np.testing.assert_allclose(extra["precision"], [1.0, 1.0, 0.5])
    # ranked first, an ignored detection gets precision 0/eps = 0 (official behaviour), AP unchanged
    first = voc_eval_class([*base, Detection("b", "cat", 0.95, (10, 10, 60, 60))], gts, "cat")
    assert first["precision"][0] == 0.0
    assert first["ap"] == voc_eval_class(base, gts, "cat")["ap"]
    # CorLoc: image b has only difficult cats -> skipped (denominator 1), even if its detection misses
    assert corloc(with_difficult_hit, gts, ["cat"])["corloc"] == 100.0
    missing_b = [*base, Detection("b", "cat", 0.99, (300, 300, 310, 310))]
    assert corloc(missing_b, gts, ["cat"])["corloc"] == 100.0
    # ... but where an image also has a non-difficult cat, a top box on the difficult one counts as correct
    gts_mixed = [
        GroundTruthBox("c", "cat", (10, 10, 60, 60), difficult=True),
        GroundTruthBox("c", "cat", (100, 100, 160, 160)),
    ]
    assert corloc([Detection("c", "cat", 0.9, (10, 10, 60, 60))], gts_mixed, ["cat"])["corloc"] == 100.0
    # and an image with a non-difficult instance but no detection is a failure
    assert corloc([], gts_mixed, ["cat"])["corloc"] == 0.0


# Golden 3: duplicates


def test_duplicate_detection_is_fp():
    gts = [GroundTruthBox("a", "cat", (10, 10, 60, 60)), GroundTruthBox("a", "cat", (100, 100, 150, 150))]
    dets = [
        Detection("a", "cat", 0.9, (10, 10, 60, 60)),
        Detection("a", "cat", 0.8, (12, 10, 60, 62)),  # duplicate of the first cat
        Detection("a", "cat", 0.7, (100, 100, 150, 150)),
    ]
    result = voc_eval_class(dets, gts, "cat", use_07_metric=False)
    np.testing.assert_allclose(result["recall"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(result["precision"], [1.0, 0.5, 2 / 3])
    # area: envelope [1, 2/3] over recall steps 0.5 and 0.5 -> 0.5 + 1/3
    assert result["ap"] == pytest.approx(0.5 + 1 / 3, abs=1e-12)
    # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points)
    assert voc_eval_class(dets, gts, "cat")["ap"] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)


# Golden 4: the threshold edge and the box conversions


def test_threshold_edge_voc_fp_coco_tp_and_naive_conversion():
    gt = GroundTruthBox("a", "cat", (1, 1, 10, 10))
    det = Detection("a", "cat", 0.9, (1, 1, 10, 20))
    # VOC "+1": intersection 10 x 10 = 100, union 100 + 200 - 100 = 200 -> IoU 0.5, not > 0.5
    strict = voc_eval_class([det], [gt], "cat", iou_threshold=0.5)
    assert strict["ap"] == 0.0 and strict["precision"].tolist() == [0.0]
    assert voc_eval_class([det], [gt], "cat", iou_threshold=0.4999)["ap"] == pytest.approx(1.0, abs=1e-12)
    assert corloc([det], [gt], ["cat"])["corloc"] == 0.0

    # detectron2 conversion: [0, 0, 10, 10] and [0, 0, 10, 20]; pycocotools matches at IoU >= 0.5 -> TP
    assert voc_box_to_coco_xywh(gt.box) == [0.0, 0.0, 10.0, 10.0]
    assert voc_box_to_coco_xywh(det.box) == [0.0, 0.0, 10.0, 20.0]
    coco = coco_eval(*voc_to_coco([gt], [det], ["cat"]))
    assert coco["AP50"] == pytest.approx(1.0, abs=1e-12)
    assert coco["AP75"] == 0.0
    assert coco["AP"] == pytest.approx(0.1, abs=1e-12)  # TP only at the first of 10 thresholds

    # naive conversion w = xmax - xmin: 9 x 9 vs 9 x 19 -> IoU 81 / 171 = 0.4737 -> FP
    from pycocotools import mask

    naive_gt, naive_det = [1.0, 1.0, 9.0, 9.0], [1.0, 1.0, 9.0, 19.0]
    assert mask.iou([naive_det], [naive_gt], [0])[0, 0] == pytest.approx(81 / 171, abs=1e-12)
    gt_dict, results = voc_to_coco([gt], [det], ["cat"])
    gt_dict["annotations"][0].update(bbox=naive_gt, area=81.0)
    results[0]["bbox"] = naive_det
    assert coco_eval(gt_dict, results)["AP50"] == 0.0


# Golden 5: 11-point vs area


def test_eleven_point_vs_area():
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1 + 5 * 0.5) / 11, abs=1e-12)
    assert round(voc_ap(rec, prec, use_07_metric=True), 4) == 0.7727
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 * 1 + 0.5 * 0.5, abs=1e-12)
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=False) == 0.0


def test_eleven_point_thresholds_are_the_official_arange():
    # np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004: a recall of exactly 0.3 misses that point
    rec, prec = np.array([0.3]), np.array([1.0])
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(3 / 11, abs=1e-12)


# Golden 6: cross-check against the independent port


@pytest.mark.parametrize("seed", range(4))
def test_matches_independent_voc_eval_port(seed):
    gts, dets = random_dataset(seed)
    classes = ["cat", "dog", "car"]
    for cls in classes:
        gt_by_image, ref_dets = to_reference_format(gts, dets, cls)
        if not any((~d).any() for _, d in gt_by_image.values()):
            continue
        for thresh in (0.5, 0.7):
            for use_07 in (True, False):
                rec, prec, ap = ref_voc_eval(gt_by_image, ref_dets, thresh, use_07)
                ours = voc_eval_class(dets, gts, cls, iou_threshold=thresh, use_07_metric=use_07)
                assert ours["ap"] == pytest.approx(ap, abs=1e-9)
                np.testing.assert_allclose(ours["recall"], rec, atol=1e-12)
                np.testing.assert_allclose(ours["precision"], prec, atol=1e-12)
        expected_corloc = ref_corloc(gt_by_image, ref_dets, 0.5)
        assert corloc(dets, gts, classes)["per_class"][cls] == pytest.approx(expected_corloc, abs=1e-9)


# Golden 7: VOC-area AP50 vs pycocotools AP50 on large boxes


def test_voc_area_ap50_close_to_coco_ap50_on_large_boxes():
    rng = np.random.default_rng(11)
    classes = ["a", "b"]
    gts, dets = [], []
    for i in range(30):
        for _ in range(rng.integers(1, 4)):
            cls = classes[rng.integers(2)]
            x0, y0 = rng.integers(1, 300, 2)
            w, h = rng.integers(100, 250, 2)
            box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
            gts.append(GroundTruthBox(i, cls, box))
            if rng.random() < 0.85:
                jb = np.array(box) + rng.normal(0, 12, 4)
                dets.append(Detection(i, cls, float(rng.random()), tuple(jb)))
        for _ in range(rng.integers(0, 3)):
            x0, y0 = rng.uniform(1, 300, 2)
            w, h = rng.uniform(100, 250, 2)
            dets.append(Detection(i, classes[rng.integers(2)], float(rng.random()), (x0, y0, x0 + w, y0 + h)))
    voc = voc_map(dets, gts, classes, use_07_metric=False)["map"]
    coco = coco_eval(*voc_to_coco(gts, dets, classes))["AP50"]
    # Not equal: 101-point interpolation vs the exact area, greedy matching that skips matched GT, ">=" vs
    # ">", and "+1" areas. On boxes of 100-250 pixels the "+1" and threshold effects are negligible; the
    # differences observed on this generator (seeds 0-7) stay below 0.004, so 0.01 leaves room.
    assert 0.3 < voc < 1.0
    assert abs(voc - coco) < 0.01


# Other behaviour


def test_tied_scores_keep_input_order():
    gts = [GroundTruthBox("a", "cat", (10, 10, 60, 60)), GroundTruthBox("a", "cat", (100, 100, 150, 150))]
    hit = Detection("a", "cat", 0.5, (10, 10, 60, 60))
    miss = Detection("a", "cat", 0.5, (300, 300, 320, 320))
    assert voc_eval_class([hit, miss], gts, "cat")["precision"].tolist() == [1.0, 0.5]
    assert voc_eval_class([miss, hit], gts, "cat")["precision"].tolist() == [0.0, 0.5]


def test_detection_on_image_without_gt_is_fp():
    gts = [GroundTruthBox("a", "cat", (10, 10, 60, 60))]
    dets = [Detection("zzz", "cat", 0.9, (10, 10, 60, 60)), Detection("a", "cat", 0.8, (10, 10, 60, 60))]
    assert voc_eval_class(dets, gts, "cat")["precision"].tolist() == [0.0, 0.5]


def test_voc_ap_range_is_the_mean_over_thresholds():
    gts, dets = random_dataset(5)
    classes = ["cat", "dog", "car"]
    ranged = voc_ap_range(dets, gts, classes, use_07_metric=False)
    assert list(ranged["per_threshold"]) == pytest.approx([0.5 + 0.05 * k for k in range(10)])
    expected = [voc_map(dets, gts, classes, t, use_07_metric=False)["map"] for t in ranged["per_threshold"]]
    assert ranged["AP"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert ranged["AP50"] == expected[0] and ranged["AP75"] == expected[5]
    assert expected[0] > expected[-1]  # stricter IoU, lower AP


def test_coco_eval_empty_detections_and_path(tmp_path):
    import json

    gts, _ = perfect_case()
    gt_dict, _ = voc_to_coco(gts, [], ["cat", "dog"])
    result = coco_eval(gt_dict, [])
    assert result["AP"] == result["AP50"] == result["AP75"] == 0.0
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt_dict))
    _, dets = perfect_case()
    assert coco_eval(path, voc_to_coco(gts, dets, ["cat", "dog"])[1])["AP50"] == pytest.approx(1.0, abs=1e-12)
    # an area range without GT is reported as nan (pycocotools -1), as detectron2 does
    assert math.isnan(result["APs"])


def test_errors():
    with pytest.raises(ValueError, match="xmin <= xmax"):
        GroundTruthBox("a", "cat", (10, 10, 5, 20))
    with pytest.raises(ValueError, match="ymin <= ymax"):
        Detection("a", "cat", 0.5, (1, 30, 5, 20))
    with pytest.raises(ValueError, match="finite"):
        Detection("a", "cat", float("nan"), (1, 1, 5, 5))
    with pytest.raises(ValueError, match="4 coordinates"):
        Detection("a", "cat", 0.5, (1, 1, 5))
    gts, dets = perfect_case()
    with pytest.raises(ValueError, match=r"not in class_names: \['dog'\]"):
        voc_map(dets, gts, ["cat"])
    with pytest.raises(ValueError, match=r"not in class_names: \['dog'\]"):
        corloc(dets, gts, ["cat"])
    with pytest.raises(ValueError, match="'bird' has no non-difficult ground truth"):
        voc_map(dets, gts, ["cat", "dog", "bird"])
    only_difficult = [GroundTruthBox("a", "cat", (1, 1, 5, 5), difficult=True)]
    with pytest.raises(ValueError, match="CorLoc undefined"):
        corloc([], only_difficult, ["cat"])
    gt_dict, results = voc_to_coco(gts, dets, ["cat", "dog"])
    with pytest.raises(ValueError, match="image_id 999"):
        coco_eval(gt_dict, [{**results[0], "image_id": 999}])
    with pytest.raises(ValueError, match="non-finite score"):
        coco_eval(gt_dict, [{**results[0], "score": float("nan")}])
    del gt_dict["annotations"][0]["area"]
    with pytest.raises(ValueError, match=r"annotation 0 lacks \['area'\]"):
        coco_eval(gt_dict, results)
