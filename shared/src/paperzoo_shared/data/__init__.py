"""Generic data IO and embedded data for paperzoo packages.

Errors (:mod:`.errors`)
    ``DataError(ValueError)``: unreadable, corrupt or inconsistent data file (the message names the file).
    ``DataFileNotFoundError(DataError, FileNotFoundError)``: a missing data file.

Paths (:mod:`.paths`)
    ``safe_join(root, relative, *, source, entry=None) -> Path``: joins a path read from a data file; one that
    leaves the root (``..``, absolute, a symlink out) is a ``DataError`` naming the file and entry.

Images (:mod:`.image_io`, OpenCV)
    ``read_image(path, *, channel_order, grayscale_to_rgb=True, dtype=np.uint8) -> (H, W, C) array``
    ``write_image(path, img, *, channel_order) -> Path``

Videos (:mod:`.video_io`, decord or OpenCV)
    ``VideoInfo(num_frames, fps, duration_s, width, height, backend)``
    ``probe_video(path, backend="auto") -> VideoInfo``
    ``read_frames(path, indices, *, backend="auto") -> (T, H, W, 3) uint8 RGB``
    ``frame_timestamps(info, indices) -> seconds``
    ``write_video(path, frames, fps) -> Path`` (mp4v in .mp4)

scikit-image wheel images (:mod:`.skimage_images`)
    ``SKIMAGE_RGB_IMAGES``, ``SKIMAGE_GRAY_IMAGES``
    ``load_skimage_image(name, *, channel_order="rgb", as_rgb=True) -> (H, W, 3|1) uint8``
    ``skimage_image_path(name) -> Path``

Detection formats (:mod:`.detection_formats`)
    ``VocObject``, ``VocAnnotation``, ``read_voc_xml``, ``write_voc_xml``
    ``read_coco_json``, ``write_coco_json``, ``validate_coco``, ``voc_box_to_coco_bbox``

Synthetic data (:mod:`.synthetic`)
    WSOD-Shapes detection scenes, shape question/answer pairs with a word tokenizer, and shape videos
    with temporal questions and subtitles; see that subpackage.
"""

from paperzoo_shared.data.detection_formats import (
    VocAnnotation,
    VocObject,
    read_coco_json,
    read_voc_xml,
    validate_coco,
    voc_box_to_coco_bbox,
    write_coco_json,
    write_voc_xml,
)
from paperzoo_shared.data.errors import DataError, DataFileNotFoundError
from paperzoo_shared.data.image_io import read_image, write_image
from paperzoo_shared.data.paths import safe_join
from paperzoo_shared.data.skimage_images import (
    SKIMAGE_GRAY_IMAGES,
    SKIMAGE_RGB_IMAGES,
    load_skimage_image,
    skimage_image_path,
)
from paperzoo_shared.data.video_io import VideoInfo, frame_timestamps, probe_video, read_frames, write_video

__all__ = [
    "SKIMAGE_GRAY_IMAGES",
    "SKIMAGE_RGB_IMAGES",
    "DataError",
    "DataFileNotFoundError",
    "VideoInfo",
    "VocAnnotation",
    "VocObject",
    "frame_timestamps",
    "load_skimage_image",
    "probe_video",
    "read_coco_json",
    "read_frames",
    "read_image",
    "read_voc_xml",
    "safe_join",
    "skimage_image_path",
    "validate_coco",
    "voc_box_to_coco_bbox",
    "write_coco_json",
    "write_image",
    "write_video",
    "write_voc_xml",
]
