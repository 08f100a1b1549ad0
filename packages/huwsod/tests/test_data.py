"""Data: the weak-label-only training loader, weak/strong geometry, TTA box mapping, and bad input."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from paperzoo_huwsod.configuration import AugmentConfig, DataConfig, HeadConfig, resolve_class_names
from paperzoo_huwsod.data import (
    Collate,
    TrainDataset,
    WeakView,
    load_ground_truth,
    load_weak_labels,
    map_boxes_to_view,
    strong_augment,
    unmap_test_boxes,
    weak_augment,
    write_weak_labels,
)
from paperzoo_huwsod.evaluate import merge_views, predict, to_voc_detections

from paperzoo_shared.data.errors import DataError

CLASSES = ["circle", "square", "triangle", "ring", "cross", "ellipse"]


def _voc_copy(shapes_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "VOC"
    shutil.copytree(shapes_root, root)
    for f in root.glob("image_labels_*.json"):
        f.unlink()
    return root


def _voc_cfg(**kw) -> DataConfig:
    return DataConfig(format="voc", root="unused", class_names=CLASSES, image_extension=".png", **kw)


# ---------------------------------------------------------------------------------------------------- weak labels
def test_training_loader_reads_only_the_image_label_file(shapes_root, tmp_path, config):
    root = tmp_path / "weak_only"
    shutil.copytree(shapes_root, root)
    shutil.rmtree(root / "Annotations")  # no boxes anywhere
    for f in root.glob("annotations_*.json"):
        f.unlink()
    records = load_weak_labels(config.data, root, "train", CLASSES)
    data = json.loads((root / "image_labels_train.json").read_text())
    assert len(records) == len(data["images"])
    first = records[0]
    assert first.labels == sorted(c - 1 for c in data["image_labels"][str(data["images"][0]["id"])])
    ds = TrainDataset(records, config.augment, two_views=True)
    batch = Collate(8)([ds[0], ds[1]])
    assert set(batch) == {"weak", "strong", "sizes", "labels"}  # no boxes reach weak training


def test_weak_labels_from_voc_skip_difficult_only_classes(shapes_root, tmp_path):
    root = _voc_copy(shapes_root, tmp_path)
    cfg = _voc_cfg()
    path = write_weak_labels(cfg, root, "train")
    written = json.loads(path.read_text())
    original = json.loads((shapes_root / "image_labels_train.json").read_text())
    assert [written["image_labels"][str(i + 1)] for i in range(len(written["images"]))] == [
        original["image_labels"][str(im["id"])] for im in original["images"]
    ]
    records = load_weak_labels(cfg, root, "train", CLASSES)
    assert records[0].image_id == "000001" and records[0].path.name == "000001.png"


def test_weak_labels_from_coco(shapes_root, tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copytree(shapes_root / "JPEGImages", root / "train")
    shutil.copy(shapes_root / "annotations_train.json", root / "annotations" / "instances_train.json")
    cfg = DataConfig(format="coco", root=str(root), class_names=CLASSES, val_split="", test_split="val")
    write_weak_labels(cfg, root, "train")
    records = load_weak_labels(cfg, root, "train", CLASSES)
    original = json.loads((shapes_root / "image_labels_train.json").read_text())
    assert [r.labels for r in records] == [
        sorted(c - 1 for c in original["image_labels"][str(im["id"])]) for im in original["images"]
    ]
    gt = load_ground_truth(cfg, root, "train", CLASSES)
    assert len(gt.boxes) == len(
        json.loads((root / "annotations" / "instances_train.json").read_text())["annotations"]
    )


# ---------------------------------------------------------------------------------------------------- bad input
def test_malformed_xml_names_the_file_or_is_skipped(shapes_root, tmp_path, caplog):
    root = _voc_copy(shapes_root, tmp_path)
    bad = root / "Annotations" / "000002.xml"
    bad.write_text("<annotation><size>")
    with pytest.raises(DataError, match="000002.xml"):
        load_ground_truth(_voc_cfg(), root, "train", CLASSES)
    with caplog.at_level(logging.WARNING):
        gt = load_ground_truth(_voc_cfg(skip_bad=True), root, "train", CLASSES)
    assert "000002" not in gt.per_image and "skipping 000002" in caplog.text
    with pytest.raises(DataError, match="000002.xml"):
        write_weak_labels(_voc_cfg(), root, "train", force=True)


def test_box_outside_image_and_unknown_class_name_the_file(shapes_root, tmp_path):
    root = _voc_copy(shapes_root, tmp_path)
    xml = root / "Annotations" / "000001.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<xmax>", "<xmax>9", 1))  # e.g. 57 -> 957 > width
    with pytest.raises(DataError, match=r"000001.xml.*outside"):
        load_ground_truth(_voc_cfg(), root, "train", CLASSES)
    xml.write_text(text.replace("<name>", "<name>hexagon_", 1))
    with pytest.raises(DataError, match=r"000001.xml.*unknown class"):
        load_ground_truth(_voc_cfg(), root, "train", CLASSES)


def test_malformed_json_names_the_file(shapes_root, tmp_path, config):
    root = tmp_path / "json"
    shutil.copytree(shapes_root, root)
    (root / "image_labels_train.json").write_text("{not json")
    with pytest.raises(DataError, match="image_labels_train.json"):
        load_weak_labels(config.data, root, "train", CLASSES)
    (root / "image_labels_train.json").write_text(
        json.dumps({"categories": [{"id": 1, "name": "blob"}], "images": [], "image_labels": {}})
    )
    with pytest.raises(DataError, match=r"image_labels_train.json.*'blob'"):
        load_weak_labels(config.data, root, "train", CLASSES)
    coco_root = tmp_path / "coco"
    (coco_root / "annotations").mkdir(parents=True)
    (coco_root / "annotations" / "instances_train.json").write_text("[1, 2")
    cfg = DataConfig(format="coco", root=str(coco_root), class_names=CLASSES, val_split="", test_split="val")
    with pytest.raises(DataError, match="instances_train.json"):
        write_weak_labels(cfg, coco_root, "train")


def test_unreadable_image_names_the_file_or_is_skipped(shapes_root, tmp_path, config, caplog):
    root = tmp_path / "img"
    shutil.copytree(shapes_root, root)
    (root / "JPEGImages" / "000001.png").write_bytes(b"not a png")
    records = load_weak_labels(config.data, root, "train", CLASSES)
    with pytest.raises(DataError, match="000001.png"):
        TrainDataset(records, config.augment, two_views=False)[0]
    ds = TrainDataset(records, config.augment, two_views=False, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        assert ds[0] is None
    assert "000001.png" in caplog.text
    batch = Collate(8)([ds[0], ds[1]])
    assert batch["weak"].shape[0] == 1
    (root / "JPEGImages" / "000002.png").unlink()
    with pytest.raises(DataError, match="000002.png"):
        load_weak_labels(config.data, root, "train", CLASSES)


def test_paths_that_leave_the_data_root_are_refused(shapes_root, tmp_path, config):
    """Image-label entries and VOC image-set ids are joined with safe_join: '..' names the file and entry,
    even under skip_bad (the file itself is wrong, not one image)."""
    root = tmp_path / "traversal"
    shutil.copytree(shapes_root, root)
    labels = root / "image_labels_train.json"
    data = json.loads(labels.read_text())
    data["images"][1]["file_name"] = "../../outside.png"
    labels.write_text(json.dumps(data))
    key = data["images"][1]["id"]
    for skip_bad in (False, True):
        config.data.skip_bad = skip_bad
        with pytest.raises(
            DataError, match=rf"image_labels_train.json \(entry id {key}\) leaves the data root"
        ):
            load_weak_labels(config.data, root, "train", CLASSES)
    set_file = root / "ImageSets" / "Main" / "train.txt"
    set_file.write_text("../../../etc/passwd\n" + set_file.read_text())
    with pytest.raises(DataError, match=r"train.txt \(entry '../../../etc/passwd'\) leaves the data root"):
        write_weak_labels(_voc_cfg(), root, "train", force=True)


def test_the_training_stream_is_a_function_of_seed_and_step(shapes_root, config):
    """Step s's batch depends on (seed, s) only: a sampler restarted at step 2 yields the positions the
    uninterrupted one yields from step 2, the stream covers every image once per epoch, and the samples at a
    position are identical whatever the global torch RNG did in between."""
    from paperzoo_huwsod.data import SampleStream, StepSampler

    records = load_weak_labels(config.data, shapes_root, "train", CLASSES)
    assert list(StepSampler(0, 4, 3)) == list(range(12))
    assert list(StepSampler(2, 4, 3)) == list(range(6, 12)) and len(StepSampler(2, 4, 3)) == 6
    stream = SampleStream(TrainDataset(records, config.augment, two_views=True), seed=0)
    n = len(records)
    epoch0 = [stream.order(0)[k] for k in range(n)]
    assert sorted(epoch0) == list(range(n)) and epoch0 != list(range(n))
    assert stream.order(1) != epoch0  # a new permutation each epoch
    torch.manual_seed(0)
    a = stream[n + 3]
    torch.manual_seed(123), random.seed(5), np.random.seed(5)
    b = SampleStream(TrainDataset(records, config.augment, two_views=True), seed=0)[n + 3]
    assert a["image_id"] == records[stream.order(1)[3]].image_id == b["image_id"]
    assert torch.equal(a["weak"], b["weak"]) and torch.equal(a["strong"], b["strong"])
    c = SampleStream(TrainDataset(records, config.augment, two_views=True), seed=1)
    assert c.order(0) != epoch0


# ---------------------------------------------------------------------------------------------------- geometry
def test_weak_and_strong_views_share_geometry(shapes_root, config):
    torch.manual_seed(0)
    cfg = config.data
    records = load_weak_labels(cfg, shapes_root, "train", CLASSES)
    gt = load_ground_truth(cfg, shapes_root, "train", CLASSES)
    ds = TrainDataset(records, config.augment, two_views=True, gt=gt)
    changed = []
    for i in range(4):
        s = ds[i]
        assert s["weak"].shape == s["strong"].shape  # same geometry, so the same boxes apply to both views
        changed.append(not torch.equal(s["weak"], s["strong"]))
    assert any(changed)  # the strong view is photometrically different
    aug = AugmentConfig(train_scales=[96])
    image = torch.rand(3, 50, 70) * 255
    for seed in range(10):
        rng = random.Random(seed)
        view = weak_augment(image, aug, rng)
        strong = strong_augment(view.image, aug, rng, torch.Generator().manual_seed(seed))
        assert strong.shape == view.image.shape
        assert strong.min() >= 0 and strong.max() <= 255


def test_box_mapping_through_crop_resize_flip():
    view = WeakView(torch.zeros(3, 40, 60), crop=(10, 5, 30, 20), scale=(2.0, 2.0), flipped=True)
    boxes = torch.tensor([[12.0, 7.0, 22.0, 15.0]])
    # crop -> (2, 2, 12, 10); x2 -> (4, 4, 24, 20); flip in width 60 -> (36, 4, 56, 20)
    torch.testing.assert_close(map_boxes_to_view(boxes, view), torch.tensor([[36.0, 4.0, 56.0, 20.0]]))


def test_tta_box_mapping_is_exact_inverse():
    original = (100, 150)
    box = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    for resized, flipped in (((200, 300), False), ((200, 300), True), ((50, 75), True), ((100, 150), False)):
        sy, sx = resized[0] / original[0], resized[1] / original[1]
        fwd = box * torch.tensor([sx, sy, sx, sy])
        if flipped:
            fwd = torch.stack([resized[1] - fwd[:, 2], fwd[:, 1], resized[1] - fwd[:, 0], fwd[:, 3]], 1)
        torch.testing.assert_close(unmap_test_boxes(fwd, resized, original, flipped), box)


class _FakeDetector(torch.nn.Module):
    """Predicts one fixed original-image box, placed correctly in every resized / flipped view."""

    def __init__(self, box: torch.Tensor, original: tuple[int, int]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.box, self.original = box, original
        self.cfg = type("C", (), {"head": HeadConfig(test_nms=0.3, test_topk=100)})()
        self.flips = []

    def inference(self, images, sizes):
        out = []
        for i, (h, w) in enumerate(sizes):
            sy, sx = h / self.original[0], w / self.original[1]
            b = self.box * torch.tensor([sx, sy, sx, sy])
            flipped = bool(
                images[i, 0, 0, 0] < images[i, 0, 0, w - 1]
            )  # the test image is brighter on the left
            self.flips.append(flipped)
            if flipped:
                b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
            out.append({"boxes": b, "scores": torch.tensor([0.9]), "classes": torch.tensor([2])})
        return out


def test_tta_union_maps_back_and_merges(shapes_root, tmp_path, config):
    img = np.zeros((40, 60, 3), dtype=np.uint8)
    img[:, :30] = 200  # left brighter: the fake detector can tell flipped inputs apart
    from paperzoo_huwsod.data import ImageRecord

    from paperzoo_shared.data.image_io import write_image

    path = tmp_path / "x.png"
    write_image(path, img, channel_order="rgb")
    record = ImageRecord("x", path, 60, 40, [2])
    model = _FakeDetector(torch.tensor([[6.0, 4.0, 30.0, 20.0]]), (40, 60))
    ev = config.eval
    ev.tta_scales, ev.tta_flip = [40, 80, 120], True
    dets = predict(model, [record], ev, tta=True)
    assert sorted(set(model.flips)) == [False, True] and len(model.flips) == 6
    assert len(dets[0].boxes) == 1  # six identical boxes merged by NMS
    torch.testing.assert_close(dets[0].boxes, torch.tensor([[6.0, 4.0, 30.0, 20.0]]))
    voc = to_voc_detections(dets, CLASSES)
    assert voc[0].box == (7.0, 5.0, 30.0, 20.0) and voc[0].class_name == "triangle"
    b, s, c = merge_views([torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 10, 10]])],
                          [torch.tensor([0.5]), torch.tensor([0.7])], [torch.tensor([1]), torch.tensor([2])], HeadConfig())  # fmt: skip
    assert len(b) == 2  # class-wise NMS keeps both classes


def test_perfect_detections_score_100(shapes_root, config):
    """Our VOC/COCO conversions: GT boxes fed back as detections give mAP = AP = 100 and CorLoc = 100."""
    from paperzoo_huwsod.evaluate import ImageDetections, corloc_metric, detection_metrics

    cfg = config.data
    records = load_weak_labels(cfg, shapes_root, "test", CLASSES)
    gt = load_ground_truth(cfg, shapes_root, "test", CLASSES)
    dets = [
        ImageDetections(
            r.image_id,
            torch.tensor([o[1] for o in gt.per_image[r.image_id]], dtype=torch.float32).view(-1, 4),
            torch.ones(len(gt.per_image[r.image_id])),
            torch.tensor([o[0] for o in gt.per_image[r.image_id]], dtype=torch.int64),
        )
        for r in records
    ]
    voc = to_voc_detections(dets, CLASSES)
    present = sorted({o[0] for objs in gt.per_image.values() for o in objs if not o[2]})
    names = [CLASSES[i] for i in present]
    voc = [d for d in voc if d.class_name in names]
    gt.boxes = [g for g in gt.boxes if g.class_name in names]
    m = detection_metrics(voc, gt, names, records)
    assert m["map07"] == pytest.approx(100.0) and m["map_area"] == pytest.approx(100.0)
    assert m["map07_5095"] == pytest.approx(100.0)
    # every box shrunk to 90 % of its side around its centre: VOC IoU ~ 0.81 > t for the 7 thresholds
    # 0.50 ... 0.80 and below 0.85, so mAP .50:.95 = 7 / 10 of the perfect 100 (each class keeps AP 1 or 0)
    shrunk = []
    for d in dets:
        c = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
        half = (d.boxes[:, 2:] - d.boxes[:, :2]) * 0.45
        shrunk.append(ImageDetections(d.image_id, torch.cat([c - half, c + half], 1), d.scores, d.classes))
    voc_shrunk = [x for x in to_voc_detections(shrunk, CLASSES) if x.class_name in names]
    assert detection_metrics(voc_shrunk, gt, names, records)["map07_5095"] == pytest.approx(70.0, abs=0.5)
    assert m["ap50"] == pytest.approx(100.0) and m["ap"] == pytest.approx(100.0)
    assert corloc_metric(voc, gt, names) == pytest.approx(100.0)
    assert resolve_class_names(cfg) == CLASSES


def test_offline_segment_proposals_cached_and_mapped_with_the_view(shapes_root, tmp_path, config):
    from paperzoo_huwsod.configuration import ProposalConfig
    from paperzoo_huwsod.data import map_test_boxes, offline_proposals

    records = load_weak_labels(config.data, shapes_root, "train", CLASSES)[:3]
    pcfg = ProposalConfig(external="segments")
    props = offline_proposals(records, pcfg, tmp_path)
    assert set(props) == {r.image_id for r in records}
    assert len(list(tmp_path.glob("segments_*.pt"))) == 1
    again = offline_proposals(records, pcfg, tmp_path)  # served from the cache file
    for key in props:
        torch.testing.assert_close(props[key], again[key])
        assert (props[key][:, 2] <= records[0].width).all()
    # the segments find the flat-coloured objects: every non-difficult GT of these images is covered
    gt = load_ground_truth(config.data, shapes_root, "train", CLASSES)
    from torchvision.ops import box_iou

    for r in records:
        g = torch.tensor([o[1] for o in gt.per_image[r.image_id] if not o[2]]).view(-1, 4)
        if len(g):
            assert box_iou(g, props[r.image_id]).max(dim=1).values.min() > 0.5
    ds = TrainDataset(records, config.augment, two_views=False, proposals=props)
    sample = ds[0]
    assert sample["proposals"].shape[1] == 4 and (sample["proposals"][:, 2] <= sample["weak"].shape[-1]).all()
    box = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    torch.testing.assert_close(
        unmap_test_boxes(map_test_boxes(box, (96, 96), (192, 144), True), (192, 144), (96, 96), True), box
    )
    assert offline_proposals(records, ProposalConfig(external="none"), tmp_path) is None
