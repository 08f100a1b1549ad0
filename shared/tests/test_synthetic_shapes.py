"""Tests of the WSOD-Shapes generator (huwsod.md 7.2) and its VOC/COCO/weak-label files."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from paperzoo_shared.data import read_coco_json, read_image, read_voc_xml
from paperzoo_shared.data.synthetic import (
    PALETTE,
    SHAPE_CLASSES,
    ShapeSceneConfig,
    generate_scene,
    write_shapes_dataset,
)


def _iou(a, b):
    """IoU of 1-based inclusive boxes, written independently of the generator."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return ix * iy / (area_a + area_b - ix * iy)


def _nearest_palette_colour(rgb) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb) / 255.0))
    if s < 0.25:
        return "white"
    chromatic = {name: hsv for name, hsv in PALETTE.items() if hsv[1] > 0}
    return min(
        chromatic, key=lambda n: min(abs(h * 360 - chromatic[n][0]), 360 - abs(h * 360 - chromatic[n][0]))
    )


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(np.random.default_rng([7, i])) for i in range(80)]


def test_scene_ground_truth_rules(scenes):
    cfg = ShapeSceneConfig()
    for scene in scenes:
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 4
        for i, obj in enumerate(scene.objects):
            assert obj.label in SHAPE_CLASSES and obj.colour in PALETTE
            rows, cols = np.nonzero(obj.mask)
            assert obj.box == (cols.min() + 1, rows.min() + 1, cols.max() + 1, rows.max() + 1)
            x1, y1, x2, y2 = obj.amodal_box
            assert (
                1 <= x1 <= obj.box[0] <= obj.box[2] <= x2 <= 128
                and 1 <= y1 <= obj.box[1] <= obj.box[3] <= y2 <= 128
            )
            assert obj.difficult == (obj.size < 14 or obj.visible_fraction < 0.5)
            assert obj.visible_fraction >= cfg.min_visible_fraction
            for other in scene.objects[i + 1 :]:
                assert _iou(obj.amodal_box, other.amodal_box) <= 0.3 + 1e-12
                assert not (obj.mask & other.mask).any()  # visible masks are disjoint


def test_colours_are_the_named_palette_colours(scenes):
    checked = 0
    for scene in scenes[:40]:
        for obj in scene.objects:
            core = ndimage.binary_erosion(obj.mask, iterations=2)
            if core.sum() >= 20:
                assert _nearest_palette_colour(scene.image[core].mean(axis=0)) == obj.colour
                checked += 1
    assert checked >= 40


def test_dataset_statistics(scenes):
    objects = [obj for scene in scenes for obj in scene.objects]
    counts = {c: sum(o.label == c for o in objects) for c in SHAPE_CLASSES}
    assert min(counts.values()) >= 0.5 * len(objects) / 6  # no class is starved
    repeated = np.mean([len({o.label for o in s.objects}) < len(s.objects) for s in scenes])
    assert 0.05 <= repeated <= 0.3  # about 15 % of images repeat a class
    assert any(o.difficult for o in objects) and any(o.visible_fraction < 1 for o in objects)
    assert len({o.colour for o in objects if o.label == "circle"}) >= 6  # colour is not a class shortcut


def test_scene_is_deterministic():
    a = generate_scene(np.random.default_rng(3))
    b = generate_scene(np.random.default_rng(3))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.objects == b.objects
    assert not np.array_equal(a.image, generate_scene(np.random.default_rng(4)).image)


def test_config_validation():
    with pytest.raises(ValueError, match="min_objects"):
        ShapeSceneConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="too large"):
        ShapeSceneConfig(image_size=64)
    with pytest.raises(ValueError, match="colours"):
        ShapeSceneConfig(colours=("mauve",))


SPLITS = {"train": 10, "val": 4, "test": 6}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), seed=11, splits=SPLITS)


def test_dataset_layout_and_image_sets(dataset):
    assert dataset.parts[-2:] == ("VOCdevkit", "SHAPES")
    sets = {
        s: (dataset / "ImageSets" / "Main" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")
    }
    assert [len(sets[s]) for s in ("train", "val", "test")] == [10, 4, 6]
    assert (dataset / "ImageSets" / "Main" / "trainval.txt").read_text().split() == sets["train"] + sets[
        "val"
    ]
    all_ids = sets["train"] + sets["val"] + sets["test"]
    assert all_ids == [f"{i:06d}" for i in range(1, 21)]
    for stem in all_ids:
        assert read_image(dataset / "JPEGImages" / f"{stem}.png", channel_order="rgb").shape == (128, 128, 3)


def test_coco_weak_labels_and_meta_agree_with_voc(dataset):
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["seed"] == 11 and meta["classes"] == list(SHAPE_CLASSES)
    for split, n in SPLITS.items():
        coco = read_coco_json(dataset / f"annotations_{split}.json")
        assert [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])] == list(SHAPE_CLASSES)
        weak = json.loads((dataset / f"image_labels_{split}.json").read_text())
        assert "annotations" not in weak and len(weak["image_labels"]) == n
        per_class = dict.fromkeys(SHAPE_CLASSES, 0)
        for image in coco["images"]:
            voc = read_voc_xml(
                dataset / "Annotations" / image["file_name"].replace(".png", ".xml"),
                class_names=SHAPE_CLASSES,
            )
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            expected = [
                (
                    SHAPE_CLASSES.index(o.name) + 1,
                    [o.xmin - 1, o.ymin - 1, o.xmax - o.xmin + 1, o.ymax - o.ymin + 1],
                    int(o.difficult),
                )
                for o in voc.objects
            ]
            assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in anns] == expected
            assert all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in anns)
            positives = sorted({SHAPE_CLASSES.index(o.name) + 1 for o in voc.objects if not o.difficult})
            assert weak["image_labels"][str(image["id"])] == positives
            for o in voc.objects:
                per_class[o.name] += 1
        assert meta["splits"][split]["objects_per_class"] == per_class


def test_pycocotools_loads_the_json(dataset):
    coco_api = pytest.importorskip("pycocotools.coco")
    coco = coco_api.COCO(str(dataset / "annotations_val.json"))
    assert len(coco.getImgIds()) == 4 and len(coco.getCatIds()) == 6


def test_dataset_is_byte_identical_for_a_seed(dataset, tmp_path):
    again = write_shapes_dataset(tmp_path / "again", seed=11, splits=SPLITS)
    assert _tree_bytes(again) == _tree_bytes(dataset)
    other = write_shapes_dataset(tmp_path / "other", seed=12, splits={"val": 4})
    assert (other / "JPEGImages" / "000001.png").read_bytes() != (
        dataset / "JPEGImages" / "000011.png"
    ).read_bytes()


def test_split_content_does_not_depend_on_other_splits(dataset, tmp_path):
    only_val = write_shapes_dataset(tmp_path / "val", seed=11, splits={"val": 4})
    # val image 0 is 000011 after 10 train images, and 000001 when val is alone.
    assert (only_val / "JPEGImages" / "000001.png").read_bytes() == (
        dataset / "JPEGImages" / "000011.png"
    ).read_bytes()
