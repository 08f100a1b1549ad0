"""Data for super-resolution: MATLAB-compatible bicubic resizing, paired LR/HR folders, training patches.

* :func:`imresize` reproduces MATLAB's ``imresize(..., 'bicubic')`` (Keys cubic with a = -0.5, antialiasing
  when downscaling, symmetric border handling, output size ``ceil(in * scale)``), the function that made the
  LR images of DIV2K and of Set5/Set14/B100/Urban100/Manga109; :func:`bicubic_downsample` makes a uint8 LR
  image from a uint8 HR image the way MATLAB's ``generate_bicubic_img.m`` does (round half away from zero).
* :func:`pair_folders` pairs HR/LR files in the DIV2K layout (``DIV2K_train_HR/0001.png`` with
  ``DIV2K_train_LR_bicubic/X2/0001x2.png``), the benchmark layout (``Set5/HR/baby.png`` with
  ``Set5/LR_bicubic/X2/babyx2.png``) or DCKD's sub-image layout (same names, template ``{}``).
* :class:`PatchDataset` samples aligned LR/HR patches with BasicSR's augmentation (horizontal flip, vertical
  flip, transpose); :class:`PairedImage` holds a test pair, HR mod-cropped to ``LR size * scale``.
* :func:`skimage_sr_split` is the mini preset's fixed split of the scikit-image images ("skim-SR").
* :func:`pair_restoration_folder` pairs same-size degraded/clean images (scale 1) in the GoPro layout
  (``train/<scene>/{blur,sharp}/*.png``) and the Rain13K/Restormer layout (``train/Rain13K/{input,target}``,
  ``test/<set>/{input,target}``) by relative path; :class:`LazyPairs` reads test pairs one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from paperzoo_shared.data.errors import DataError
from paperzoo_shared.data.image_io import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# ---------------------------------------------------------------------------------------------------------
# MATLAB-compatible bicubic resize
# ---------------------------------------------------------------------------------------------------------


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_weights(in_length: int, out_length: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The (out_length, in_length) matrix of MATLAB's ``contributions`` for one axis.

    Output pixel ``i`` (1-based) sits at input coordinate ``u = i / scale + (1 - 1 / scale) / 2``. When
    shrinking with antialiasing the kernel is stretched to ``scale * cubic(scale * x)`` (width ``4 / scale``).
    Weights are normalised to sum to one, and taps outside the image are mirrored (symmetric padding).
    """
    if scale < 1 and antialias:
        width = 4.0 / scale

        def kernel(d):
            return scale * cubic_kernel(scale * d)
    else:
        width = 4.0
        kernel = cubic_kernel
    out_pos = np.arange(1, out_length + 1, dtype=np.float64)
    u = out_pos / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    zero_based = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), taps)
    np.add.at(matrix, (rows, zero_based.ravel()), weights.ravel())
    return matrix


def imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` of a float HW or HWC image, in float64.

    Both axes use the same ``scale``; the output is ``ceil(H * scale) x ceil(W * scale)``. Height is
    resized first, then width (MATLAB's order for equal factors). Values are not clipped.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an HW or HWC image, got shape {img.shape}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    height, width = img.shape[:2]
    out_h, out_w = math.ceil(height * scale), math.ceil(width * scale)
    rows = resize_weights(height, out_h, scale, antialias)
    cols = resize_weights(width, out_w, scale, antialias)
    out = np.tensordot(rows, img, axes=(1, 0))  # (out_h, W, C)
    out = np.tensordot(cols, out, axes=(1, 1))  # (out_w, out_h, C)
    return np.swapaxes(out, 0, 1)


def to_uint8_matlab(img: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8 conversion of [0, 255] values: round half away from zero, saturate."""
    return np.clip(np.floor(np.asarray(img, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crops the bottom/right so that height and width are multiples of ``scale`` (BasicSR ``mod_crop``)."""
    height, width = img.shape[:2]
    return img[: height - height % scale, : width - width % scale, ...]


def bicubic_downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 LR image of a uint8 HR image: MATLAB ``imresize(modcrop(hr), 1/scale, 'bicubic')``."""
    if hr.dtype != np.uint8:
        raise ValueError(f"bicubic_downsample expects a uint8 image, got {hr.dtype}")
    return to_uint8_matlab(imresize(mod_crop(hr, scale).astype(np.float64), 1.0 / scale))


# ---------------------------------------------------------------------------------------------------------
# Paired folders and test images
# ---------------------------------------------------------------------------------------------------------


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; check the dataset path in the config")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def pair_folders(
    hr_dir: str | Path, lr_dir: str | Path, filename_tmpl: str = "{}"
) -> list[tuple[Path, Path]]:
    """Pairs every HR image with the LR image named ``filename_tmpl.format(hr_stem)`` (any image suffix).

    ``filename_tmpl`` is ``"{}x2"`` for DIV2K/benchmark LR folders and ``"{}"`` for DCKD's sub-images.
    A missing LR file is a :class:`DataError` naming it.
    """
    hr_files = list_images(hr_dir)
    lr_files = {p.stem: p for p in list_images(lr_dir)}
    pairs = []
    for hr_path in hr_files:
        stem = filename_tmpl.format(hr_path.stem)
        if stem not in lr_files:
            raise DataError(
                f"no LR image for {hr_path}: expected {Path(lr_dir) / stem}.<ext> (filename_tmpl {filename_tmpl!r}); "
                "check data.*.lr_dir and filename_tmpl"
            )
        pairs.append((hr_path, lr_files[stem]))
    return pairs


def check_pair_sizes(lr: np.ndarray, hr: np.ndarray, scale: int, lr_name: str, hr_name: str) -> np.ndarray:
    """Returns HR mod-cropped to ``LR size * scale``; raises when the sizes disagree with the scale.

    HR may exceed ``LR * scale`` by less than ``scale`` pixels per side (the mod-crop that made the LR).
    """
    lh, lw = lr.shape[:2]
    hh, hw = hr.shape[:2]
    if scale == 1 and (hh, hw) != (lh, lw):
        raise DataError(
            f"degraded/clean sizes differ: {lr_name} is {lh}x{lw}, its ground truth {hr_name} is {hh}x{hw}; "
            "same-size pairs are expected (scale 1): replace the broken file"
        )
    if hh // scale != lh or hw // scale != lw:
        raise DataError(
            f"LR/HR sizes disagree with scale x{scale}: LR {lr_name} is {lh}x{lw}, HR {hr_name} is {hh}x{hw} "
            f"(expected HR {lh * scale}x{lw * scale}, up to {scale - 1} extra pixels); regenerate the LR image "
            "or fix the scale"
        )
    return hr[: lh * scale, : lw * scale]


@dataclass
class PairedImage:
    """One LR/HR pair (uint8 RGB HWC), HR mod-cropped to exactly ``LR size * scale``."""

    name: str
    lr: np.ndarray
    hr: np.ndarray


def load_pair(hr_path: str | Path, lr_path: str | Path, scale: int, name: str | None = None) -> PairedImage:
    """Reads a pair (a missing/undecodable file is a DataError naming it) and checks the sizes."""
    hr = read_image(hr_path, channel_order="rgb")
    lr = read_image(lr_path, channel_order="rgb")
    hr = check_pair_sizes(lr, hr, scale, str(lr_path), str(hr_path))
    return PairedImage(name or Path(hr_path).stem, lr, np.ascontiguousarray(hr))


def load_paired_folder(hr_dir, lr_dir, scale: int, filename_tmpl: str = "{}") -> list[PairedImage]:
    return [load_pair(h, l, scale) for h, l in pair_folders(hr_dir, lr_dir, filename_tmpl)]


def _images_by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in files:
            raise DataError(f"{path} and {files[path.stem]} have the same name; keep one of them")
        files[path.stem] = path
    return files


def pair_restoration_folder(root: str | Path, lq_name: str, gt_name: str) -> list[tuple[Path, Path, str]]:
    """Same-size pairs ``(gt_path, lq_path, name)`` of a restoration folder, paired by relative path.

    ``root`` holds ``<lq_name>/`` and ``<gt_name>/`` directly (Rain13K: ``train/Rain13K/{input,target}``) or
    in one sub-folder per scene (GoPro: ``train/<scene>/{blur,sharp}``; other sub-folders such as
    ``blur_gamma`` are ignored). Files pair by scene and file stem; ``name`` is ``<scene>/<stem>`` (or the
    stem). A missing folder, an image without its partner or two files of the same stem are a
    :class:`DataError` naming the path.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; check the dataset path in the config")
    if (root / lq_name).is_dir() or (root / gt_name).is_dir():
        groups = [root]
    else:
        groups = sorted(
            d for d in root.iterdir() if d.is_dir() and ((d / lq_name).is_dir() or (d / gt_name).is_dir())
        )
        if not groups:
            raise DataError(
                f"{root} has neither {lq_name}/ and {gt_name}/ nor scene folders holding them (expected "
                f"{root}/{lq_name}/ or {root}/<scene>/{lq_name}/, with {gt_name}/ beside); check data.train_dir, "
                "data.test_dirs and data.lq_name/gt_name"
            )
    pairs = []
    for group in groups:
        for name in (lq_name, gt_name):
            if not (group / name).is_dir():
                raise DataError(
                    f"folder {group / name} does not exist; {group} needs both {lq_name}/ and {gt_name}/"
                )
        lq_files, gt_files = _images_by_stem(group / lq_name), _images_by_stem(group / gt_name)
        for stem, path in sorted(lq_files.items()):
            if stem not in gt_files:
                raise DataError(
                    f"{path} has no ground truth: expected {group / gt_name / stem}.<ext>; add it or remove the image"
                )
        for stem, path in sorted(gt_files.items()):
            if stem not in lq_files:
                raise DataError(
                    f"{path} has no degraded partner: expected {group / lq_name / stem}.<ext>; add it or remove the image"
                )
            prefix = "" if group == root else f"{group.name}/"
            pairs.append((path, lq_files[stem], f"{prefix}{stem}"))
    return pairs


class LazyPairs(Sequence):
    """Test pairs read from disk when accessed (GoPro's and Rain13K's test sets do not fit in memory at once).

    Holds ``(gt_path, lq_path, name)`` triples; indexing returns a :class:`PairedImage`, slicing a LazyPairs.
    """

    def __init__(self, triples: Sequence[tuple[Path, Path, str]], scale: int = 1):
        self.triples, self.scale = list(triples), scale

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LazyPairs(self.triples[index], self.scale)
        gt, lq, name = self.triples[index]
        return load_pair(gt, lq, self.scale, name)

    def __iter__(self) -> Iterator[PairedImage]:
        for index in range(len(self)):
            yield self[index]


def make_pair_from_hr(name: str, hr: np.ndarray, scale: int) -> PairedImage:
    """HR -> (MATLAB-bicubic LR, mod-cropped HR)."""
    hr = np.ascontiguousarray(mod_crop(hr, scale))
    return PairedImage(name, bicubic_downsample(hr, scale), hr)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float32 CHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def to_uint8_image(tensor: torch.Tensor) -> np.ndarray:
    """float CHW in [0, 1] -> uint8 HWC, clamped and rounded (BasicSR ``tensor2img``)."""
    arr = tensor.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu().numpy()
    return arr.transpose(1, 2, 0)


# ---------------------------------------------------------------------------------------------------------
# Training patches
# ---------------------------------------------------------------------------------------------------------


def augment_pair(lr: np.ndarray, hr: np.ndarray, hflip: bool, vflip: bool, transpose: bool):
    """BasicSR ``augment``: horizontal flip, vertical flip, then transpose (together: the 8 dihedral ops)."""
    if hflip:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    if vflip:
        lr, hr = lr[::-1], hr[::-1]
    if transpose:
        lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
    return lr, hr


class PatchDataset(Dataset):
    """Aligned random LR/HR patches (LR ``lr_patch`` x ``lr_patch``) from paired images.

    Sample ``i`` is a deterministic function of ``(seed, i)``, so runs are reproducible. ``pairs`` holds
    :class:`PairedImage` objects (in memory) or ``(hr_path, lr_path[, name])`` tuples read on demand
    (DIV2K-, GoPro- and Rain13K-sized data). ``length`` is the number of samples per epoch (BasicSR's
    ``dataset_enlarge_ratio`` x images). An index may be a pair ``(i, lr_patch)``, which overrides the patch
    size of that sample (the progressive schedule's :class:`ProgressiveBatchSampler`).
    """

    def __init__(
        self,
        pairs: Sequence[PairedImage | tuple[Path, Path]],
        scale: int,
        lr_patch: int,
        length: int,
        seed: int = 0,
        use_flip: bool = True,
        use_rot: bool = True,
    ):
        if not pairs:
            raise DataError("PatchDataset got no image pairs")
        self.pairs, self.scale, self.lr_patch = list(pairs), scale, lr_patch
        self.length, self.seed, self.use_flip, self.use_rot = length, seed, use_flip, use_rot
        self.offset = 0
        """Added to every index; set by the trainer on resume so the sample stream continues."""

    def __len__(self) -> int:
        return self.length

    def _pair(self, index: int) -> PairedImage:
        item = self.pairs[index]
        if isinstance(item, PairedImage):
            return item
        return load_pair(item[0], item[1], self.scale)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        p = self.lr_patch
        if isinstance(index, tuple):
            index, p = index
        rng = np.random.default_rng((self.seed, index + self.offset))
        pair = self._pair(int(rng.integers(len(self.pairs))))
        lh, lw = pair.lr.shape[:2]
        s = self.scale
        if lh < p or lw < p:
            raise DataError(f"image {pair.name} ({lh}x{lw} LR) is smaller than the LR patch {p}")
        top, left = int(rng.integers(lh - p + 1)), int(rng.integers(lw - p + 1))
        lr = pair.lr[top : top + p, left : left + p]
        hr = pair.hr[top * s : (top + p) * s, left * s : (left + p) * s]
        flips = rng.random(3) < 0.5
        lr, hr = augment_pair(
            lr, hr, self.use_flip and flips[0], self.use_rot and flips[1], self.use_rot and flips[2]
        )
        return {"lq": to_tensor(lr), "gt": to_tensor(hr)}


# ---------------------------------------------------------------------------------------------------------
# The mini preset's data: scikit-image images, split fixed by file name (notes section 5.3)
# ---------------------------------------------------------------------------------------------------------

SKIM_SR_TRAIN = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field")
SKIM_SR_TEST = ("ihc", "retina", "motorcycle_right", "brick", "grass", "gravel")


def skimage_sr_images(names: Sequence[str], scale: int, crop: int | None = None) -> list[PairedImage]:
    """HR images from the scikit-image wheel (grey ones replicated to RGB) and their bicubic LR.

    ``retina`` (1411 x 1411) is centre-cropped to 512 x 512; ``crop`` centre-crops every image to at most
    ``crop`` x ``crop`` HR pixels (used by the smoke preset to keep it fast).
    """
    from paperzoo_shared.data.skimage_images import load_skimage_image

    pairs = []
    for name in names:
        hr = load_skimage_image(name)
        size = 512 if name == "retina" else None
        if crop is not None:
            size = min(crop, size) if size else crop
        if size is not None:
            top, left = max(0, (hr.shape[0] - size) // 2), max(0, (hr.shape[1] - size) // 2)
            hr = hr[top : top + size, left : left + size]
        pairs.append(make_pair_from_hr(name, hr, scale))
    return pairs


def skimage_sr_split(scale: int, crop: int | None = None) -> tuple[list[PairedImage], list[PairedImage]]:
    """The fixed skim-SR train/test split: (train pairs, test pairs)."""
    return skimage_sr_images(SKIM_SR_TRAIN, scale, crop), skimage_sr_images(SKIM_SR_TEST, scale, crop)


class ProgressiveBatchSampler:
    """Batches of ``(sample index, lr_patch)`` keys whose size and patch follow a progressive schedule.

    Step ``t`` (0-based optimizer step) on rank ``r`` of ``W`` takes the samples
    ``(t * W + r) * max_batch + j`` for ``j < batch(t)``, so every step draws the same samples whatever the
    batch sizes before it, and a resumed run continues with ``start_step``. The rank and world size are read
    when iteration starts (after Lightning has set up the process group).

    Args:
        stage_at: ``iteration -> (lr_patch, batch_size)`` (:meth:`TrainConfig.stage_at`).
        max_batch: the largest batch of any stage.
        iterations: the total number of optimizer steps.
        start_step: the first step to yield (a resumed run's global step).
    """

    def __init__(self, stage_at, max_batch: int, iterations: int, start_step: int = 0):
        self.stage_at, self.max_batch, self.iterations, self.start_step = (
            stage_at,
            max_batch,
            iterations,
            start_step,
        )

    def __len__(self) -> int:
        return max(0, self.iterations - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        for step in range(self.start_step, self.iterations):
            patch, batch = self.stage_at(step)
            first = (step * world + rank) * self.max_batch
            yield [(first + j, patch) for j in range(batch)]
