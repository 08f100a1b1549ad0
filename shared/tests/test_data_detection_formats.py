"""Tests of the VOC XML and COCO JSON readers/writers, with hand-written fixtures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from paperzoo_shared.data import (
    DataError,
    DataFileNotFoundError,
    VocAnnotation,
    VocObject,
    read_coco_json,
    read_voc_xml,
    voc_box_to_coco_bbox,
    write_coco_json,
    write_voc_xml,
)

# A VOC2007-style file as the dataset ships it (extra fields, no <difficult> on the second object).
REAL_STYLE_XML = """<annotation>
	<folder>VOC2007</folder>
	<filename>000005.jpg</filename>
	<source><database>The VOC2007 Database</database></source>
	<size><width>500</width><height>375</height><depth>3</depth></size>
	<segmented>0</segmented>
	<object>
		<name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>1</difficult>
		<bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
	</object>
	<object>
		<name>chair</name>
		<bndbox><xmin>1</xmin><ymin>1.0</ymin><xmax>500</xmax><ymax>375.9</ymax></bndbox>
	</object>
</annotation>
"""


def _voc_with(
    tmp_path, body: str, size: str = "<size><width>50</width><height>40</height><depth>3</depth></size>"
):
    path = tmp_path / "ann.xml"
    path.write_text(f"<annotation><filename>x.png</filename>{size}{body}</annotation>")
    return path


def _obj(name="dog", box=(1, 1, 10, 10)) -> str:
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><difficult>0</difficult><bndbox>{coords}</bndbox></object>"


def test_read_real_style_voc(tmp_path):
    path = tmp_path / "000005.xml"
    path.write_text(REAL_STYLE_XML)
    ann = read_voc_xml(path, class_names=["chair", "dog"])
    assert (ann.filename, ann.width, ann.height, ann.depth, ann.folder) == (
        "000005.jpg",
        500,
        375,
        3,
        "VOC2007",
    )
    assert ann.objects == [
        VocObject("chair", 263, 211, 324, 339, difficult=True, truncated=False, pose="Rear"),
        # missing difficult/truncated/pose default; float coordinates are truncated like mmdetection
        VocObject("chair", 1, 1, 500, 375, difficult=False, truncated=False, pose="Unspecified"),
    ]


def test_voc_round_trip_and_layout(tmp_path):
    ann = VocAnnotation(
        "img.png",
        width=64,
        height=48,
        depth=3,
        objects=[
            VocObject("circle", 1, 1, 64, 48, difficult=False),
            VocObject("ring", 5, 6, 7, 8, difficult=True, truncated=True, pose="Left"),
        ],
        folder="SHAPES",
    )
    path = write_voc_xml(tmp_path / "sub" / "img.xml", ann)
    assert read_voc_xml(path) == ann
    root = ET.parse(path).getroot()
    assert root.findtext("size/width") == "64" and root.findtext("size/height") == "48"
    second = root.findall("object")[1]
    assert [second.findtext(f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax")] == ["5", "6", "7", "8"]
    assert second.findtext("difficult") == "1" and second.findtext("truncated") == "1"


@pytest.mark.parametrize(
    ("body", "size", "message"),
    [
        (_obj(box=(1, 1, 51, 10)), None, "outside the 50x40 image"),
        (_obj(box=(0, 1, 10, 10)), None, "outside"),
        (_obj(box=(1, 1, 10, 41)), None, "outside"),
        (_obj(box=(10, 1, 9, 10)), None, "xmax < xmin"),
        (
            "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object>",
            None,
            "ymax",
        ),
        ("<object><name>dog</name></object>", None, "bndbox"),
        ("<object><bndbox/></object>", None, "<name>"),
        (_obj(box=(1, 1, "ten", 10)), None, "not a number"),
        ("", "", "missing <size>"),
        ("", "<size><height>4</height></size>", "<width>"),
    ],
)
def test_voc_errors_name_the_file(tmp_path, body, size, message):
    path = _voc_with(tmp_path, body) if size is None else _voc_with(tmp_path, body, size)
    with pytest.raises(DataError, match=message) as info:
        read_voc_xml(path)
    assert str(path) in str(info.value)


def test_voc_boundary_box_is_valid(tmp_path):
    ann = read_voc_xml(_voc_with(tmp_path, _obj(box=(1, 1, 50, 40))))
    assert ann.objects[0].xmax == 50 and ann.objects[0].ymax == 40


def test_voc_unknown_class_malformed_and_missing(tmp_path):
    path = _voc_with(tmp_path, _obj(name="cat"))
    with pytest.raises(DataError, match=r"unknown class 'cat'.*\['dog'\]") as info:
        read_voc_xml(path, class_names=["dog"])
    assert str(path) in str(info.value)
    broken = tmp_path / "broken.xml"
    broken.write_text("<annotation><filename>x</filename>")
    with pytest.raises(DataError, match="broken.xml.*not well-formed"):
        read_voc_xml(broken)
    with pytest.raises(DataFileNotFoundError, match="absent.xml"):
        read_voc_xml(tmp_path / "absent.xml")


def test_voc_writer_rejects_bad_boxes(tmp_path):
    ann = VocAnnotation("x.png", 10, 10, 3, [VocObject("a", 1, 1, 11, 5, difficult=False)])
    with pytest.raises(DataError, match="outside"):
        write_voc_xml(tmp_path / "x.xml", ann)
    assert not (tmp_path / "x.xml").exists()


def test_voc_to_coco_box_conversion():
    # huwsod.md 7.3 item 4: the detectron2 conversion of the two boxes of the IoU-threshold golden.
    assert voc_box_to_coco_bbox(1, 1, 10, 10) == [0, 0, 10, 10]
    assert voc_box_to_coco_bbox(1, 1, 10, 20) == [0, 0, 10, 20]
    assert voc_box_to_coco_bbox(5, 7, 5, 7) == [4, 6, 1, 1]


IMAGES = [
    {"id": 1, "file_name": "a.png", "width": 20, "height": 10},
    {"id": 2, "file_name": "b.png", "width": 8, "height": 8},
]
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
ANNOTATIONS = [
    {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 10], "area": 200, "iscrowd": 0},
    {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1.5, 2, 3, 4], "area": 12, "iscrowd": 1},
]


def test_coco_round_trip(tmp_path):
    path = write_coco_json(tmp_path / "c" / "ann.json", IMAGES, ANNOTATIONS, CATEGORIES, info={"year": 2024})
    raw = json.loads(path.read_text())
    assert raw == {
        "info": {"year": 2024},
        "images": IMAGES,
        "annotations": ANNOTATIONS,
        "categories": CATEGORIES,
    }
    assert read_coco_json(path) == raw


def _coco_file(tmp_path, images=IMAGES, annotations=ANNOTATIONS, categories=CATEGORIES):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _ann(**changes):
    return [ANNOTATIONS[0], {**ANNOTATIONS[1], **changes}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": [*IMAGES, {**IMAGES[0], "file_name": "c.png"}]}, "duplicate image id 1"),
        ({"categories": [*CATEGORIES, CATEGORIES[1]]}, "duplicate category id 2"),
        ({"annotations": _ann(id=1)}, "duplicate annotation id 1"),
        ({"annotations": _ann(image_id=9)}, "annotation id 2 points at missing image id 9"),
        ({"annotations": _ann(category_id=7)}, "annotation id 2 points at missing category id 7"),
        (
            {"annotations": _ann(bbox=[4, 4, 6, 6])},
            r"annotation id 2 bbox \[4, 4, 6, 6\] lies outside image id 2",
        ),
        ({"annotations": _ann(bbox=[-2, 0, 1, 1])}, "annotation id 2 bbox"),
        ({"annotations": _ann(bbox=[1, 1, -1, 1])}, "annotation id 2 has negative bbox"),
        ({"annotations": _ann(bbox=[1, 1, 1])}, r"annotation id 2 has bbox \[1, 1, 1\]"),
        (
            {"annotations": [{"id": 5, "image_id": 1, "category_id": 1}]},
            r"annotation id 5 lacks the field\(s\) \['bbox'\]",
        ),
    ],
)
def test_coco_validation_names_file_and_id(tmp_path, kwargs, message):
    path = _coco_file(tmp_path, **kwargs)
    with pytest.raises(DataError, match=message) as info:
        read_coco_json(path)
    assert str(path) in str(info.value)
    # The writer applies the same validation before touching the disk.
    out = tmp_path / "out.json"
    data = {"images": IMAGES, "annotations": ANNOTATIONS, "categories": CATEGORIES, **kwargs}
    with pytest.raises(DataError, match=message):
        write_coco_json(out, data["images"], data["annotations"], data["categories"])
    assert not out.exists()


def test_coco_tolerance_invalid_json_and_missing(tmp_path):
    # Released COCO boxes overshoot the image by rounding; 0.5 px passes the default 1 px tolerance.
    assert read_coco_json(_coco_file(tmp_path, annotations=_ann(bbox=[5, 5, 3.5, 3])))
    with pytest.raises(DataError, match="outside"):
        read_coco_json(_coco_file(tmp_path, annotations=_ann(bbox=[5, 5, 3.5, 3])), bbox_tolerance=0.0)
    path = tmp_path / "trunc.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="trunc.json is not valid JSON"):
        read_coco_json(path)
    path.write_text('{"images": []}')
    with pytest.raises(DataError, match="missing list 'annotations'"):
        read_coco_json(path)
    with pytest.raises(DataFileNotFoundError, match="gone.json"):
        read_coco_json(tmp_path / "gone.json")
