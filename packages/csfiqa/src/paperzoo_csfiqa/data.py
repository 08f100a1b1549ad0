"""IQA datasets in their released layouts, the skim-IQA-syn stand-in set, splits and crop datasets.

Readers (each returns an :class:`IQADataset`; every path read from a score file is joined with
``paperzoo_shared.data.safe_join``; a missing image, a non-numeric score or a duplicate entry is a
``DataError`` naming the score file and its line or entry; an image that cannot be decoded is reported with
the same location when it is read):

=========  ==========================================================================  =====================
dataset    layout under ``root`` (HyperIQA / DEIQT lineage loaders and the releases)   score
=========  ==========================================================================  =====================
LIVE       ``{jp2k,jpeg,wn,gblur,fastfading}/imgN.bmp`` (227/233/174/174/174 images),   DMOS (lower better)
           ``refimgs/``, ``dmos_realigned.mat`` (``dmos_new``, ``orgs``),
           ``refnames_all.mat`` (``refnames_all``); originals (``orgs == 1``) dropped
CSIQ       ``csiq_label.txt`` lines ``1600.AWGN.1.png 0.062``, ``dst_imgs_all/``        DMOS (lower better)
TID2013    ``mos_with_names.txt`` lines ``5.51429 i01_01_1.bmp``, ``distorted_images/``  MOS
KADID-10k  ``dmos.csv`` (``dist_img,ref_img,dmos,var``), ``images/``                     MOS (named dmos)
LIVEC      ``Data/AllImages_release.mat``, ``Data/AllMOS_release.mat``, ``Images/``;     MOS
           the first 7 entries are the training images of the release and are dropped
KonIQ-10k  ``koniq10k_scores_and_distributions.csv`` (``MOS_zscore``), ``1024x768/``     MOS (z-score)
SPAQ       ``Annotations/MOS and Image attribute scores.xlsx`` (or a ``.csv`` export     MOS
           with the same columns), ``TestImage/``
FLIVE      ``labels_image.csv`` (``name_image,mos,...``), images under ``database/``     MOS
=========  ==========================================================================  =====================

Synthetic datasets (LIVE, CSIQ, TID2013, KADID-10k, skim-IQA-syn) carry the reference image of each
sample, and :func:`split_indices` splits them by reference (content-disjoint); authentic ones are split by
image.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from paperzoo_shared.data import DataError, read_image
from paperzoo_shared.data.paths import safe_join

# ---------------------------------------------------------------------------------------------------------
# Samples and datasets
# ---------------------------------------------------------------------------------------------------------


@dataclass
class IQASample:
    name: str
    """The image's name as the score file writes it."""
    mos: float
    """The raw score of the score file."""
    ref: str
    """Reference (content) id: the pristine image for synthetic sets, the image itself for authentic ones."""
    path: Path | None = None
    image: np.ndarray | None = None
    """In-memory (H, W, 3) uint8 RGB image (skim-IQA-syn); else read from ``path``."""
    where: str = ""
    """``<score file>:<line>`` (or ``entry N`` of a .mat file): named in errors about this sample."""
    distortion: str = ""
    level: int = 0


@dataclass
class IQADataset:
    name: str
    samples: list[IQASample]
    higher_is_better: bool = True
    """False for DMOS datasets: :meth:`normalized_mos` flips them so that higher is better."""
    synthetic: bool = False
    """True: several distorted versions per reference, split by reference."""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def normalized_mos(self) -> np.ndarray:
        """Scores min-max normalised to [0, 1] over the dataset, higher = better (DMOS flipped)."""
        mos = np.array([s.mos for s in self.samples], dtype=np.float64)
        low, high = float(mos.min()), float(mos.max())
        scaled = (mos - low) / (high - low) if high > low else np.zeros_like(mos)
        return scaled if self.higher_is_better else 1.0 - scaled

    def refs(self) -> list[str]:
        return [s.ref for s in self.samples]

    def load(self, index: int) -> np.ndarray:
        """The (H, W, 3) uint8 RGB image of sample ``index``; decoding errors name the score file line."""
        sample = self.samples[index]
        if sample.image is not None:
            return sample.image
        try:
            return read_image(sample.path, channel_order="rgb")
        except DataError as error:
            raise DataError(f"{sample.where}: image {sample.name}: {error}") from error


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {what} {text!r} is not a finite number")
    return value


def _finish(name: str, samples: list[IQASample], **kwargs) -> IQADataset:
    """Checks duplicates and missing files (both named with their line), then builds the dataset."""
    seen: dict[str, str] = {}
    for sample in samples:
        if sample.name in seen:
            raise DataError(f"{sample.where}: duplicate entry {sample.name!r} (first at {seen[sample.name]})")
        seen[sample.name] = sample.where
        if sample.path is not None and not sample.path.is_file():
            raise DataError(f"{sample.where}: image {sample.name!r} not found at {sample.path}")
    if not samples:
        raise DataError(f"{name}: the score file lists no images")
    return IQADataset(name, samples, **kwargs)


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path} (check the dataset root and its layout)")
    return path


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of the non-empty lines."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            out.append((number, line.split()))
    return out


def _csv_rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header; the header must hold ``required``."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: header lacks columns {missing} (found {reader.fieldnames})")
        return [(reader.line_num, row) for row in reader]


# ---------------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------------

LIVE_FOLDERS: tuple[tuple[str, int], ...] = (
    ("jp2k", 227),
    ("jpeg", 233),
    ("wn", 174),
    ("gblur", 174),
    ("fastfading", 174),
)
"""LIVE Release 2's distortion folders and image counts, in the order of ``dmos_realigned.mat`` (982 entries,
of which the ``orgs == 1`` ones are the references)."""

LIVEC_SKIP = 7
"""LIVE Challenge's first 7 entries are its training images; IQA papers (HyperIQA, DEIQT) drop them."""


def _loadmat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except Exception as error:  # scipy raises several types for a corrupt file
        raise DataError(f"{path}: cannot be read as a MATLAB file ({error})") from error
    if key not in data:
        raise DataError(
            f"{path}: has no variable {key!r} (found {[k for k in data if not k.startswith('__')]})"
        )
    return np.asarray(data[key])


def _mat_strings(array: np.ndarray) -> list[str]:
    return [str(np.asarray(item).ravel()[0]) if np.asarray(item).size else "" for item in array.ravel()]


def read_live(root: str | Path) -> IQADataset:
    root = Path(root)
    dmos_file = _require(root / "dmos_realigned.mat", "LIVE score file")
    refs_file = _require(root / "refnames_all.mat", "LIVE reference-name file")
    dmos = _loadmat(dmos_file, "dmos_new").astype(np.float64).ravel()
    orgs = _loadmat(dmos_file, "orgs").ravel()
    refnames = _mat_strings(_loadmat(refs_file, "refnames_all"))
    expected = sum(count for _, count in LIVE_FOLDERS)
    for name, array in (("dmos_new", dmos), ("orgs", orgs), ("refnames_all", refnames)):
        if len(array) != expected:
            raise DataError(
                f"{dmos_file if name != 'refnames_all' else refs_file}: {name} has {len(array)} entries, expected {expected}"
            )
    samples, index = [], 0
    for folder, count in LIVE_FOLDERS:
        for number in range(1, count + 1):
            where = f"{dmos_file} (entry {index + 1})"
            if not math.isfinite(dmos[index]):
                raise DataError(f"{where}: DMOS {float(dmos[index])} is not a finite number")
            if not orgs[index]:
                name = f"{folder}/img{number}.bmp"
                samples.append(
                    IQASample(
                        name,
                        float(dmos[index]),
                        refnames[index],
                        safe_join(root, name, source=dmos_file, entry=index + 1),
                        where=where,
                        distortion=folder,
                    )
                )
            index += 1
    return _finish("LIVE", samples, higher_is_better=False, synthetic=True)


def read_csiq(root: str | Path) -> IQADataset:
    root = Path(root)
    scores = _require(root / "csiq_label.txt", "CSIQ score file")
    samples = []
    for number, fields in _lines(scores):
        where = f"{scores}:{number}"
        if len(fields) != 2:
            raise DataError(f"{where}: expected '<image> <dmos>', got {' '.join(fields)!r}")
        name, value = fields
        parts = name.split(".")
        samples.append(
            IQASample(
                name,
                _number(value, where, "DMOS"),
                parts[0],
                safe_join(root / "dst_imgs_all", name, source=scores, entry=f"line {number}"),
                where=where,
                distortion=parts[1].lower() if len(parts) > 2 else "",
            )
        )
    return _finish("CSIQ", samples, higher_is_better=False, synthetic=True)


def read_tid2013(root: str | Path) -> IQADataset:
    root = Path(root)
    scores = _require(root / "mos_with_names.txt", "TID2013 score file")
    samples = []
    for number, fields in _lines(scores):
        where = f"{scores}:{number}"
        if len(fields) != 2:
            raise DataError(f"{where}: expected '<mos> <image>', got {' '.join(fields)!r}")
        value, name = fields
        samples.append(
            IQASample(
                name,
                _number(value, where, "MOS"),
                name[:3].lower(),
                safe_join(root / "distorted_images", name, source=scores, entry=f"line {number}"),
                where=where,
                distortion=name[4:6],
            )
        )
    return _finish("TID2013", samples, synthetic=True)


def read_kadid10k(root: str | Path) -> IQADataset:
    root = Path(root)
    scores = _require(root / "dmos.csv", "KADID-10k score file")
    samples = []
    for number, row in _csv_rows(scores, ("dist_img", "ref_img", "dmos")):
        where = f"{scores}:{number}"
        name = row["dist_img"]
        samples.append(
            IQASample(
                name,
                _number(row["dmos"], where, "dmos"),
                row["ref_img"],
                safe_join(root / "images", name, source=scores, entry=f"line {number}"),
                where=where,
                distortion=name.split("_")[1] if "_" in name else "",
            )
        )
    # KADID-10k's "dmos" column is a mean opinion score (1-5, higher is better) despite its name.
    return _finish("KADID-10k", samples, synthetic=True)


def read_livec(root: str | Path) -> IQADataset:
    root = Path(root)
    names_file = _require(root / "Data" / "AllImages_release.mat", "LIVEC image-name file")
    mos_file = _require(root / "Data" / "AllMOS_release.mat", "LIVEC score file")
    names = _mat_strings(_loadmat(names_file, "AllImages_release"))
    mos = _loadmat(mos_file, "AllMOS_release").astype(np.float64).ravel()
    if len(names) != len(mos):
        raise DataError(f"{mos_file}: {len(mos)} scores for {len(names)} images in {names_file}")
    samples = []
    for index in range(LIVEC_SKIP, len(names)):
        where = f"{mos_file} (entry {index + 1})"
        if not math.isfinite(mos[index]):
            raise DataError(f"{where}: MOS {float(mos[index])} is not a finite number")
        name = names[index]
        samples.append(
            IQASample(
                name,
                float(mos[index]),
                name,
                safe_join(root / "Images", name, source=names_file, entry=index + 1),
                where=where,
            )
        )
    return _finish("LIVEC", samples)


def read_koniq10k(root: str | Path, score: str = "MOS_zscore") -> IQADataset:
    root = Path(root)
    scores = _require(root / "koniq10k_scores_and_distributions.csv", "KonIQ-10k score file")
    samples = []
    for number, row in _csv_rows(scores, ("image_name", score)):
        where = f"{scores}:{number}"
        name = row["image_name"]
        samples.append(
            IQASample(
                name,
                _number(row[score], where, score),
                name,
                safe_join(root / "1024x768", name, source=scores, entry=f"line {number}"),
                where=where,
            )
        )
    return _finish("KonIQ-10k", samples)


SPAQ_SCORES = Path("Annotations") / "MOS and Image attribute scores"


def _xlsx_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        import openpyxl
    except ImportError:
        raise DataError(
            f"{path}: reading .xlsx needs openpyxl (pip install paperzoo-csfiqa[xlsx]), or save the sheet as "
            f"{path.with_suffix('.csv').name} beside it"
        ) from None
    sheet = openpyxl.load_workbook(path, read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    header = [str(h) for h in rows[0]]
    return [
        (i, {h: "" if v is None else str(v) for h, v in zip(header, row)})
        for i, row in enumerate(rows[1:], start=2)
    ]


def read_spaq(root: str | Path) -> IQADataset:
    root = Path(root)
    csv_path, xlsx_path = root / SPAQ_SCORES.with_suffix(".csv"), root / SPAQ_SCORES.with_suffix(".xlsx")
    if csv_path.is_file():
        scores, rows = csv_path, _csv_rows(csv_path, ("Image name", "MOS"))
    else:
        scores = _require(xlsx_path, "SPAQ score file")
        rows = _xlsx_rows(scores)
    samples = []
    for number, row in rows:
        where = f"{scores}:{number}"
        name = row["Image name"]
        samples.append(
            IQASample(
                name,
                _number(row["MOS"], where, "MOS"),
                name,
                safe_join(root / "TestImage", name, source=scores, entry=f"line {number}"),
                where=where,
            )
        )
    return _finish("SPAQ", samples)


def read_flive(root: str | Path) -> IQADataset:
    root = Path(root)
    scores = _require(root / "labels_image.csv", "FLIVE score file")
    samples = []
    for number, row in _csv_rows(scores, ("name_image", "mos")):
        where = f"{scores}:{number}"
        name = row["name_image"]
        samples.append(
            IQASample(
                name,
                _number(row["mos"], where, "mos"),
                name,
                safe_join(root / "database", name, source=scores, entry=f"line {number}"),
                where=where,
            )
        )
    return _finish("FLIVE", samples)


READERS: dict[str, Callable[[Path], IQADataset]] = {
    "live": read_live,
    "csiq": read_csiq,
    "tid2013": read_tid2013,
    "kadid10k": read_kadid10k,
    "livec": read_livec,
    "koniq10k": read_koniq10k,
    "spaq": read_spaq,
    "flive": read_flive,
}


def read_dataset(source: str, root: str | Path) -> IQADataset:
    if source not in READERS:
        raise ValueError(f"unknown dataset {source!r}; valid: {', '.join(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{source} root {root} is not a folder")
    return READERS[source](root)


# ---------------------------------------------------------------------------------------------------------
# skim-IQA-syn: a KADID-like stand-in built from the scikit-image images
# ---------------------------------------------------------------------------------------------------------

DISTORTIONS: dict[str, tuple[float, ...]] = {
    "blur": (0.5, 1.0, 2.0, 3.0, 5.0),  # Gaussian sigma in pixels
    "noise": (5.0, 10.0, 20.0, 35.0, 50.0),  # white Gaussian noise sigma on the 0-255 scale
    "jpeg": (90.0, 70.0, 50.0, 30.0, 10.0),  # OpenCV JPEG quality
    "contrast": (0.9, 0.75, 0.6, 0.45, 0.3),  # contrast kept around the image mean
    "resize": (1.5, 2.0, 3.0, 4.0, 6.0),  # area down-scale by this factor, bicubic back up
}
"""Five distortion types x five known levels (level 1 = mildest), as in notes Sec. 5.3 B."""


def distort(image: np.ndarray, kind: str, value: float, rng: np.random.Generator) -> np.ndarray:
    """One distortion of a (H, W, 3) uint8 RGB image; returns uint8 of the same shape."""
    x = image.astype(np.float64)
    if kind == "blur":
        out = cv2.GaussianBlur(x, (0, 0), sigmaX=value, borderType=cv2.BORDER_REFLECT)
    elif kind == "noise":
        out = x + rng.normal(0.0, value, size=x.shape)
    elif kind == "jpeg":
        ok, buffer = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(value)])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        out = cv2.imdecode(buffer, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64)
    elif kind == "contrast":
        out = x.mean() + value * (x - x.mean())
    elif kind == "resize":
        h, w = image.shape[:2]
        small = cv2.resize(
            x, (max(1, round(w / value)), max(1, round(h / value))), interpolation=cv2.INTER_AREA
        )
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        raise ValueError(f"unknown distortion {kind!r}; valid: {', '.join(DISTORTIONS)}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def proxy_score(distorted: np.ndarray, reference: np.ndarray) -> float:
    """SSIM-Y (BasicSR-exact SSIM on the Y channel) of a distorted image against its reference."""
    from paperzoo_shared.metrics import ssim

    return ssim(distorted, reference, crop_border=0, test_y_channel=True)


def proxy_mos(ssim_y: float, level: int, levels: int = 5) -> float:
    """skim-IQA-syn's proxy-MOS: the mean of SSIM-Y and the known severity ``1 - (level - 1) / (levels - 1)``.

    A full-reference score and a known distortion level, not a human opinion (notes Sec. 5.3 B suggest this
    mix). SSIM-Y alone was the first choice; a pilot (seed 0, before the registered run) gave every learned
    model a test SRCC near 0.1 with it, because SSIM of the same level varies more across 14 contents than
    across levels; the severity half makes the target learnable from 11 training contents.
    """
    return 0.5 * ssim_y + 0.5 * (1.0 - (level - 1) / (levels - 1))


def square_reference(name: str, size: int) -> np.ndarray:
    """A scikit-image wheel image as a (size, size, 3) uint8 RGB reference: centre square, area resize."""
    from paperzoo_shared.data import load_skimage_image

    image = load_skimage_image(name, channel_order="rgb", as_rgb=True)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def build_synthetic(refs: Sequence[str], size: int, seed: int = 0) -> IQADataset:
    """skim-IQA-syn: every reference x every distortion x 5 levels; :func:`proxy_mos` (higher is better)."""
    rng = np.random.default_rng(seed)
    samples = []
    for ref in refs:
        reference = square_reference(ref, size)
        for kind, levels in DISTORTIONS.items():
            for level, value in enumerate(levels, start=1):
                image = distort(reference, kind, value, rng)
                name = f"{ref}_{kind}_{level}"
                score = proxy_mos(proxy_score(image, reference), level, len(levels))
                samples.append(
                    IQASample(
                        name,
                        score,
                        ref,
                        image=image,
                        where=f"skim-IQA-syn {name}",
                        distortion=kind,
                        level=level,
                    )
                )
    return IQADataset("skim-IQA-syn", samples, synthetic=True)


def scale_dependence(refs: Sequence[str], size: int, seed: int = 0) -> list[dict]:
    """How each distortion's full-reference score changes at half scale (the premise of SCL and NSM).

    For every (distortion, level): SSIM-Y of the distorted image against its reference at full scale, and of
    both images after a 2x area down-scale, averaged over the references.
    """
    rng = np.random.default_rng(seed)
    rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for ref in refs:
        reference = square_reference(ref, size)
        half_ref = cv2.resize(reference, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
        for kind, levels in DISTORTIONS.items():
            for level, value in enumerate(levels, start=1):
                image = distort(reference, kind, value, rng)
                half = cv2.resize(image, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
                rows.setdefault((kind, level), []).append(
                    (proxy_score(image, reference), proxy_score(half, half_ref))
                )
    out = []
    for (kind, level), values in rows.items():
        full, half = np.mean(values, axis=0)
        out.append(
            {
                "distortion": kind,
                "level": level,
                "ssim_full": float(full),
                "ssim_half": float(half),
                "delta": float(half - full),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------


def split_indices(
    refs: Sequence[str], seed: int, train_fraction: float = 0.8, val_fraction: float = 0.0
) -> dict[str, list[int]]:
    """Content-disjoint train/val/test sample indices: the *references* are shuffled and cut 80/20.

    Every sample of a reference lands in the same part (for an authentic dataset each image is its own
    reference, so this is the usual random image split). ``val_fraction`` of the training references are
    held out for model selection (the DEIQT/pyiqa protocols select on the test part; see the README).
    DEIQT shuffles ``range(#references)`` and takes the first 80 %; so does this, with numpy's generator.
    """
    unique = sorted(set(refs))
    if len(unique) < 2:
        raise ValueError(f"need at least 2 references to split, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = min(len(unique) - 1, max(1, round(train_fraction * len(unique))))
    train_refs = [unique[i] for i in order[:n_train]]
    n_val = round(val_fraction * len(train_refs)) if val_fraction > 0 else 0
    n_val = min(n_val, len(train_refs) - 1)
    val_refs = set(train_refs[len(train_refs) - n_val :]) if n_val else set()
    fit_refs = set(train_refs) - val_refs
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for index, ref in enumerate(refs):
        parts["train" if ref in fit_refs else "val" if ref in val_refs else "test"].append(index)
    return parts


# ---------------------------------------------------------------------------------------------------------
# Crops for training and multi-crop testing
# ---------------------------------------------------------------------------------------------------------


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC RGB -> float CHW normalised with the ImageNet mean/std (timm's CrossViT convention)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x - mean) / std


def _fit(image: np.ndarray, crop: int, resize: int | None) -> np.ndarray:
    if resize is not None:
        h, w = image.shape[:2]
        scale = resize / min(h, w)
        image = cv2.resize(
            image,
            (round(w * scale), round(h * scale)),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
    h, w = image.shape[:2]
    if min(h, w) < crop:
        scale = crop / min(h, w)
        image = cv2.resize(
            image, (max(crop, round(w * scale)), max(crop, round(h * scale))), interpolation=cv2.INTER_CUBIC
        )
    return image


def multi_crop_boxes(height: int, width: int, crop: int, n: int) -> list[tuple[int, int]]:
    """(top, left) of ``n`` deterministic test crops: the centre, then the four corners, then a grid."""
    cy, cx = (height - crop) // 2, (width - crop) // 2
    boxes = [(cy, cx), (0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop)]
    side = 2
    while len(boxes) < n:
        side += 1
        boxes += [
            (round(y), round(x))
            for y in np.linspace(0, height - crop, side)
            for x in np.linspace(0, width - crop, side)
        ]
    return boxes[:n]


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch; yields ``epoch * n + index`` so the dataset knows the epoch.

    The order of epoch e depends only on (seed, e), so a run resumed at an epoch boundary sees the same
    samples as an uninterrupted one. Lightning calls :meth:`set_epoch` at every epoch start.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _shard() -> tuple[int, int]:
        """(rank, world size) under torch.distributed (each process takes every world-th sample), else (0, 1)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        rank, world = self._shard()
        return len(range(rank, self.n, world))

    def __iter__(self):
        rank, world = self._shard()
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for index in torch.randperm(self.n, generator=generator).tolist()[rank::world]:
            yield self.epoch * self.n + index


class TrainCrops(Dataset):
    """Random crops (and flips) of the training images; the draw depends on (seed, epoch, item) only.

    With ``crops_per_image`` > 1 every image appears that many times per epoch (DEIQT's PATCH_NUM).
    """

    def __init__(
        self,
        dataset: IQADataset,
        indices: Sequence[int],
        mos: np.ndarray,
        crop: int,
        *,
        crops_per_image: int = 1,
        hflip: bool = True,
        seed: int = 0,
        resize: int | None = None,
    ):
        self.dataset, self.indices, self.mos = dataset, list(indices), mos
        self.crop, self.repeat, self.hflip, self.seed, self.resize = (
            crop,
            crops_per_image,
            hflip,
            seed,
            resize,
        )
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.indices) * self.repeat

    def image(self, item: int) -> np.ndarray:
        index = self.indices[item % len(self.indices)]
        if index not in self._cache or self.dataset.samples[index].image is None:
            image = _fit(self.dataset.load(index), self.crop, self.resize)
            if self.dataset.samples[index].image is not None:
                self._cache[index] = image
            return image
        return self._cache[index]

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, item = divmod(key, len(self))
        image = self.image(item)
        rng = np.random.default_rng([self.seed, epoch, item])
        h, w = image.shape[:2]
        top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        patch = image[top : top + self.crop, left : left + self.crop]
        if self.hflip and rng.random() < 0.5:
            patch = patch[:, ::-1]
        index = self.indices[item % len(self.indices)]
        return _to_tensor(patch), torch.tensor(self.mos[index], dtype=torch.float32)


class EvalCrops(Dataset):
    """All ``n`` test crops of one image per item: (n, 3, crop, crop), and its MOS."""

    def __init__(
        self,
        dataset: IQADataset,
        indices: Sequence[int],
        mos: np.ndarray,
        crop: int,
        n: int,
        resize: int | None = None,
    ):
        self.dataset, self.indices, self.mos, self.crop, self.n, self.resize = (
            dataset,
            list(indices),
            mos,
            crop,
            n,
            resize,
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.indices[item]
        image = _fit(self.dataset.load(index), self.crop, self.resize)
        boxes = multi_crop_boxes(*image.shape[:2], self.crop, self.n)
        crops = torch.stack([_to_tensor(image[t : t + self.crop, l : l + self.crop]) for t, l in boxes])
        return crops, torch.tensor(self.mos[index], dtype=torch.float32)
