"""PASCAL VOC XML and COCO JSON detection annotations: typed records, readers and writers with validation.

Coordinate conventions (the source of most off-by-one bugs in detection code):

* VOC ``bndbox`` values are **1-based inclusive** integer pixel coordinates: a box covering the top-left
  10x10 pixels of an image is ``xmin=1, ymin=1, xmax=10, ymax=10``. Coordinates written as floats
  (some VOC-style datasets do) are truncated with ``int(float(text))``, as mmdetection does.
* COCO ``bbox`` is ``[x, y, width, height]`` in 0-based continuous coordinates, so the same box is
  ``[0, 0, 10, 10]``. :func:`voc_box_to_coco_bbox` does this conversion (detectron2's: subtract 1 from
  ``xmin``/``ymin``, keep ``xmax``/``ymax``).

Readers raise :class:`~paperzoo_shared.data.errors.DataError` naming the file and the offending field,
object or id.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperzoo_shared.data.errors import DataError, require_file


@dataclass
class VocObject:
    """One ``<object>`` of a VOC annotation; box coordinates are 1-based inclusive ints."""

    name: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int
    difficult: bool
    truncated: bool = False
    pose: str = "Unspecified"


@dataclass
class VocAnnotation:
    """One VOC annotation file: image file name, size and objects.

    ``folder`` is written as ``<folder>`` when not empty (real VOC files carry e.g. ``VOC2007``).
    """

    filename: str
    width: int
    height: int
    depth: int
    objects: list[VocObject] = field(default_factory=list)
    folder: str = ""


def voc_box_to_coco_bbox(xmin: int, ymin: int, xmax: int, ymax: int) -> list[int]:
    """Convert a 1-based inclusive VOC box to a COCO ``[x, y, w, h]`` box: ``[1, 1, 10, 10] -> [0, 0, 10, 10]``."""
    return [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]


def _check_voc_object(obj: VocObject, index: int, width: int, height: int, path: Path) -> None:
    box = (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
    where = f"VOC annotation {path}: object {index} ({obj.name!r}) box (xmin, ymin, xmax, ymax)={box}"
    if obj.xmax < obj.xmin or obj.ymax < obj.ymin:
        raise DataError(f"{where} has xmax < xmin or ymax < ymin; fix the box.")
    if obj.xmin < 1 or obj.ymin < 1 or obj.xmax > width or obj.ymax > height:
        raise DataError(
            f"{where} lies outside the {width}x{height} image (valid 1-based inclusive range x 1..{width}, "
            f"y 1..{height}); clip or fix the box, or fix <size>."
        )


def write_voc_xml(path: str | Path, annotation: VocAnnotation) -> Path:
    """Write ``annotation`` in the PASCAL VOC XML layout (tab-indented), creating parent directories.

    Raises:
        DataError: a box is outside the image or inverted.
    """
    path = Path(path)
    for index, obj in enumerate(annotation.objects):
        _check_voc_object(obj, index, annotation.width, annotation.height, path)

    root = ET.Element("annotation")
    if annotation.folder:
        ET.SubElement(root, "folder").text = annotation.folder
    ET.SubElement(root, "filename").text = annotation.filename
    size = ET.SubElement(root, "size")
    for tag, value in (
        ("width", annotation.width),
        ("height", annotation.height),
        ("depth", annotation.depth),
    ):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in annotation.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = obj.pose
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        box = ET.SubElement(node, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            ET.SubElement(box, tag).text = str(getattr(obj, tag))
    ET.indent(root, space="\t")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ET.tostring(root, encoding="utf-8") + b"\n")
    return path


def _child_text(node: ET.Element, tag: str, path: Path, context: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(
            f"VOC annotation {path}: missing or empty <{tag}> in {context}; the file is incomplete."
        )
    return child.text.strip()


def _child_int(node: ET.Element, tag: str, path: Path, context: str) -> int:
    text = _child_text(node, tag, path, context)
    try:
        return int(float(text))
    except ValueError:
        raise DataError(f"VOC annotation {path}: <{tag}> in {context} is {text!r}, not a number.") from None


def _optional_flag(node: ET.Element, tag: str, path: Path, context: str) -> bool:
    if node.find(tag) is None or not (node.findtext(tag) or "").strip():
        return False  # VOC test files and many VOC-style datasets omit difficult/truncated
    return _child_int(node, tag, path, context) != 0


def read_voc_xml(path: str | Path, *, class_names: Iterable[str] | None = None) -> VocAnnotation:
    """Read a PASCAL VOC XML annotation.

    Missing ``difficult``/``truncated`` default to 0, a missing ``pose`` to ``"Unspecified"`` and a missing
    ``depth`` to 3.

    Args:
        path: the ``.xml`` file.
        class_names: when given, every object name must be one of these.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: malformed XML, a missing field, an inverted box or one outside the image, or an
            unknown class name.
    """
    path = require_file(path, "VOC annotation")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataError(
            f"VOC annotation {path} is not well-formed XML ({err}); re-create the file."
        ) from None
    if root.tag != "annotation":
        raise DataError(f"VOC annotation {path}: root element is <{root.tag}>, expected <annotation>.")
    size = root.find("size")
    if size is None:
        raise DataError(f"VOC annotation {path}: missing <size>; the file is incomplete.")
    width = _child_int(size, "width", path, "<size>")
    height = _child_int(size, "height", path, "<size>")
    depth = _child_int(size, "depth", path, "<size>") if size.find("depth") is not None else 3
    if width <= 0 or height <= 0:
        raise DataError(
            f"VOC annotation {path}: <size> is {width}x{height}; width and height must be positive."
        )
    allowed = None if class_names is None else set(class_names)

    objects = []
    for index, node in enumerate(root.findall("object")):
        context = f"<object> {index}"
        name = _child_text(node, "name", path, context)
        if allowed is not None and name not in allowed:
            raise DataError(
                f"VOC annotation {path}: object {index} has unknown class {name!r}; known classes are "
                f"{sorted(allowed)}. Fix the name or pass the right class_names."
            )
        box = node.find("bndbox")
        if box is None:
            raise DataError(f"VOC annotation {path}: missing <bndbox> in {context}; the file is incomplete.")
        coords = [
            _child_int(box, tag, path, f"{context} <bndbox>") for tag in ("xmin", "ymin", "xmax", "ymax")
        ]
        obj = VocObject(
            name,
            *coords,
            difficult=_optional_flag(node, "difficult", path, context),
            truncated=_optional_flag(node, "truncated", path, context),
            pose=(node.findtext("pose") or "").strip() or "Unspecified",
        )
        _check_voc_object(obj, index, width, height, path)
        objects.append(obj)
    return VocAnnotation(
        filename=_child_text(root, "filename", path, "<annotation>"),
        width=width,
        height=height,
        depth=depth,
        objects=objects,
        folder=(root.findtext("folder") or "").strip(),
    )


def _require_keys(record: Any, keys: Sequence[str], kind: str, index: int, path: Path) -> None:
    if not isinstance(record, Mapping):
        raise DataError(
            f"COCO file {path}: {kind} entry {index} is a {type(record).__name__}, not an object."
        )
    missing = [key for key in keys if key not in record]
    if missing:
        name = f"{kind} id {record['id']}" if "id" in record else f"{kind} entry {index}"
        raise DataError(f"COCO file {path}: {name} lacks the field(s) {missing}.")


def _unique_ids(records: Sequence[Mapping[str, Any]], kind: str, path: Path) -> dict[Any, Mapping[str, Any]]:
    by_id: dict[Any, Mapping[str, Any]] = {}
    for record in records:
        if record["id"] in by_id:
            raise DataError(f"COCO file {path}: duplicate {kind} id {record['id']}; ids must be unique.")
        by_id[record["id"]] = record
    return by_id


def validate_coco(data: Any, path: str | Path, *, bbox_tolerance: float = 1.0) -> None:
    """Check a COCO detection dict; ``path`` only names the file in messages.

    Checks: the three lists exist, required fields are present, ids are unique, every annotation points at
    an existing image and category, and every bbox has non-negative size and lies inside its image
    (allowing ``bbox_tolerance`` pixels, since released COCO boxes overshoot by rounding).

    Raises:
        DataError: naming the file and the offending id.
    """
    path = Path(path)
    if not isinstance(data, Mapping):
        raise DataError(f"COCO file {path}: top level is a {type(data).__name__}, expected an object.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"COCO file {path}: missing list {key!r}; not a COCO detection file.")
    for kind, key, fields in (
        ("image", "images", ("id", "file_name", "width", "height")),
        ("category", "categories", ("id", "name")),
        ("annotation", "annotations", ("id", "image_id", "category_id", "bbox")),
    ):
        for index, record in enumerate(data[key]):
            _require_keys(record, fields, kind, index, path)
    images = _unique_ids(data["images"], "image", path)
    categories = _unique_ids(data["categories"], "category", path)
    _unique_ids(data["annotations"], "annotation", path)

    for ann in data["annotations"]:
        ann_id = ann["id"]
        image = images.get(ann["image_id"])
        if image is None:
            raise DataError(
                f"COCO file {path}: annotation id {ann_id} points at missing image id {ann['image_id']}."
            )
        if ann["category_id"] not in categories:
            raise DataError(
                f"COCO file {path}: annotation id {ann_id} points at missing category id {ann['category_id']}."
            )
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(
                f"COCO file {path}: annotation id {ann_id} has bbox {bbox!r}; expected [x, y, w, h]."
            )
        x, y, w, h = bbox
        if w < 0 or h < 0:
            raise DataError(f"COCO file {path}: annotation id {ann_id} has negative bbox size {bbox}.")
        tol = bbox_tolerance
        if x < -tol or y < -tol or x + w > image["width"] + tol or y + h > image["height"] + tol:
            raise DataError(
                f"COCO file {path}: annotation id {ann_id} bbox {bbox} lies outside image id {image['id']} "
                f"({image['width']}x{image['height']}); clip or fix the box."
            )


def write_coco_json(
    path: str | Path,
    images: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    categories: Sequence[Mapping[str, Any]],
    *,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Validate (see :func:`validate_coco`) and write a COCO detection JSON file, creating parent dirs.

    ``info``, when given, is written first as COCO's ``info`` block. Output is compact and deterministic.
    """
    path = Path(path)
    data: dict[str, Any] = {} if info is None else {"info": dict(info)}
    data.update(images=list(images), annotations=list(annotations), categories=list(categories))
    validate_coco(data, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def read_coco_json(path: str | Path, *, bbox_tolerance: float = 1.0) -> dict[str, Any]:
    """Read and validate a COCO detection JSON file (see :func:`validate_coco`) and return it as a dict."""
    path = require_file(path, "COCO annotation")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"COCO file {path} is not valid JSON ({err}); re-create the file.") from None
    validate_coco(data, path, bbox_tolerance=bbox_tolerance)
    return data
