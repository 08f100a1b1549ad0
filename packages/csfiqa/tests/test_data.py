"""Dataset readers on generated fixtures in each dataset's exact layout, bad score files, splits, skim-IQA-syn."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from paperzoo_csfiqa.data import (
    DISTORTIONS,
    LIVE_FOLDERS,
    LIVEC_SKIP,
    EpochSampler,
    TrainCrops,
    build_synthetic,
    distort,
    multi_crop_boxes,
    read_dataset,
    scale_dependence,
    split_indices,
)
from scipy.io import savemat

from paperzoo_shared.data import DataError


def _image(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((4, 4, 3), value, np.uint8))


def _cell(strings):
    cell = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        cell[i, 0] = np.array([s])
    return cell


def make_live(root: Path) -> None:
    total = sum(c for _, c in LIVE_FOLDERS)
    dmos = np.linspace(10, 90, total)
    orgs = np.zeros(total)
    orgs[[0, 300]] = 1  # two entries are references (dropped)
    refs = [f"ref{i % 29}.bmp" for i in range(total)]
    for folder, count in LIVE_FOLDERS:
        for n in range(1, count + 1):
            _image(root / folder / f"img{n}.bmp")
    savemat(root / "dmos_realigned.mat", {"dmos_new": dmos[None, :], "orgs": orgs[None, :]})
    savemat(root / "refnames_all.mat", {"refnames_all": _cell(refs).T})


def make_csiq(root: Path) -> None:
    lines = []
    for ref in ("1600", "aerial_city", "boston"):
        for kind in ("AWGN", "BLUR"):
            for level in (1, 2):
                name = f"{ref}.{kind}.{level}.png"
                _image(root / "dst_imgs_all" / name)
                lines.append(f"{name} {0.1 * level:.3f}")
    (root / "csiq_label.txt").write_text("\n".join(lines) + "\n")


def make_tid2013(root: Path) -> None:
    lines = []
    for ref in (1, 2, 3):
        for kind in (1, 2):
            name = f"i{ref:02d}_{kind:02d}_1.bmp"
            _image(root / "distorted_images" / name)
            lines.append(f"{4.0 + ref * 0.1 + kind:.5f} {name}")
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_kadid10k(root: Path) -> None:
    rows = []
    for ref in (1, 2, 3):
        for kind in (1, 2):
            name = f"I{ref:02d}_{kind:02d}_01.png"
            _image(root / "images" / name)
            rows.append([name, f"I{ref:02d}.png", 4.5 - kind, 0.1])
    _write_csv(root / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"], rows)


def make_livec(root: Path) -> None:
    names = [f"t{i}.bmp" for i in range(1, LIVEC_SKIP + 1)] + [f"{i}.JPG" for i in range(3, 9)]
    for name in names:
        _image(root / "Images" / name)
    (root / "Data").mkdir(parents=True, exist_ok=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": _cell(names)})
    savemat(
        root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.linspace(20, 80, len(names))[None, :]}
    )


def make_koniq10k(root: Path) -> None:
    rows = []
    for i in range(6):
        name = f"{1000 + i}.jpg"
        _image(root / "1024x768" / name)
        rows.append([name, 0, 0, 10, 80, 10, 100, 3.0 + 0.1 * i, 0.5, 50.0 + i])
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    _write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows)


def make_spaq(root: Path) -> None:
    rows = []
    for i in range(1, 7):
        name = f"{i:05d}.jpg"
        _image(root / "TestImage" / name)
        rows.append([name, 40.0 + i, 50, 50, 50, 50, 50])
    header = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    _write_csv(root / "Annotations" / "MOS and Image attribute scores.csv", header, rows)


def make_flive(root: Path) -> None:
    rows = []
    for i in range(6):
        name = f"blur_dataset/img{i}.jpg" if i % 2 else f"AVA__{i}.jpg"
        _image(root / "database" / name)
        rows.append([name, 60.0 + i, 4, 4, True])
    _write_csv(root / "labels_image.csv", ["name_image", "mos", "width", "height", "is_valid"], rows)


FIXTURES = {
    "live": (make_live, 980, False, True),
    "csiq": (make_csiq, 12, False, True),
    "tid2013": (make_tid2013, 6, True, True),
    "kadid10k": (make_kadid10k, 6, True, True),
    "livec": (make_livec, 6, True, False),
    "koniq10k": (make_koniq10k, 6, True, False),
    "spaq": (make_spaq, 6, True, False),
    "flive": (make_flive, 6, True, False),
}


@pytest.mark.parametrize("source", list(FIXTURES))
def test_reader_on_exact_layout(source, tmp_path):
    make, n, higher_is_better, synthetic = FIXTURES[source]
    make(tmp_path)
    dataset = read_dataset(source, tmp_path)
    assert len(dataset) == n
    assert dataset.higher_is_better is higher_is_better and dataset.synthetic is synthetic
    assert all(s.path.is_file() and s.path.is_relative_to(tmp_path.resolve()) for s in dataset.samples)
    mos = dataset.normalized_mos()
    assert mos.min() == 0.0 and mos.max() == 1.0
    assert dataset.load(0).shape == (4, 4, 3)
    if synthetic:
        assert len(set(dataset.refs())) < len(dataset)  # several distorted images per reference


def test_reader_details(tmp_path):
    make_csiq(tmp_path / "csiq")
    csiq = read_dataset("csiq", tmp_path / "csiq")
    assert csiq.samples[0].ref == "1600" and csiq.samples[0].distortion == "awgn"
    # DMOS is flipped: the largest DMOS becomes the lowest normalised quality
    assert csiq.normalized_mos()[int(np.argmax([s.mos for s in csiq.samples]))] == 0.0
    make_live(tmp_path / "live")
    live = read_dataset("live", tmp_path / "live")
    assert live.samples[0].name == "jp2k/img2.bmp"  # entry 1 is a reference (orgs = 1)
    make_livec(tmp_path / "livec")
    assert (
        read_dataset("livec", tmp_path / "livec").samples[0].name == "3.JPG"
    )  # the 7 training images skipped
    make_tid2013(tmp_path / "tid")
    assert read_dataset("tid2013", tmp_path / "tid").samples[0].ref == "i01"


def _break(path: Path, line: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "source, score_file, line, replacement, message",
    [
        ("csiq", "csiq_label.txt", 3, "1600.BLUR.1.png high", "DMOS 'high' is not a number"),
        ("csiq", "csiq_label.txt", 2, "1600.AWGN.1.png 0.1", "duplicate entry '1600.AWGN.1.png'"),
        ("csiq", "csiq_label.txt", 4, "missing.AWGN.1.png 0.2", "not found"),
        ("tid2013", "mos_with_names.txt", 2, "nan i01_02_1.bmp", "not a finite number"),
        ("kadid10k", "dmos.csv", 3, "I01_02_01.png,I01.png,four,0.1", "dmos 'four' is not a number"),
        (
            "koniq10k",
            "koniq10k_scores_and_distributions.csv",
            2,
            "../../etc/passwd,0,0,0,0,0,0,1,1,1",
            "leaves the data root",
        ),
        ("flive", "labels_image.csv", 4, "AVA__0.jpg,61,4,4,True", "duplicate entry 'AVA__0.jpg'"),
    ],
)
def test_malformed_score_file_names_file_and_line(source, score_file, line, replacement, message, tmp_path):
    FIXTURES[source][0](tmp_path)
    _break(tmp_path / score_file, line, replacement)
    with pytest.raises(DataError) as error:
        read_dataset(source, tmp_path)
    text = str(error.value)
    assert message in text
    assert f"{score_file}:{line}" in text or f"{score_file} (entry line {line})" in text


def test_undecodable_image_is_reported_with_its_score_line(tmp_path):
    make_csiq(tmp_path)
    (tmp_path / "dst_imgs_all" / "aerial_city.AWGN.1.png").write_bytes(b"not a png")
    dataset = read_dataset("csiq", tmp_path)
    with pytest.raises(
        DataError, match=r"csiq_label\.txt:5: image aerial_city\.AWGN\.1\.png: could not decode"
    ):
        dataset.load(4)


def test_mat_entry_errors(tmp_path):
    make_livec(tmp_path)
    mos = np.linspace(20, 80, 13)
    mos[9] = np.nan
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos[None, :]})
    with pytest.raises(DataError, match=r"AllMOS_release\.mat \(entry 10\): MOS nan"):
        read_dataset("livec", tmp_path)
    with pytest.raises(DataError, match="is not a folder"):
        read_dataset("csiq", tmp_path / "nowhere")


def test_split_is_content_disjoint_and_reproducible():
    refs = [f"r{i // 5}" for i in range(14 * 5)]  # 14 references x 5 images
    for seed in range(10):
        parts = split_indices(refs, seed, 0.8, 0.1)
        by_part = {k: {refs[i] for i in v} for k, v in parts.items()}
        assert not by_part["train"] & by_part["test"] and not by_part["val"] & by_part["test"]
        assert not by_part["train"] & by_part["val"]
        assert sorted(sum(parts.values(), [])) == list(range(len(refs)))
        assert (
            len(by_part["train"]) + len(by_part["val"]) == 11 and len(by_part["test"]) == 3
        )  # round(0.8 * 14)
        assert len(by_part["val"]) == 1
        assert split_indices(refs, seed, 0.8, 0.1) == parts
    assert split_indices(refs, 0, 0.8)["test"] != split_indices(refs, 1, 0.8)["test"]
    authentic = [f"img{i}" for i in range(100)]
    parts = split_indices(authentic, 3, 0.8)
    assert len(parts["train"]) == 80 and len(parts["test"]) == 20 and not parts["val"]


def test_synthetic_set_and_distortions():
    rng = np.random.default_rng(0)
    ref = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))[..., None].repeat(3, axis=2)
    assert np.array_equal(distort(ref, "contrast", 1.0, rng), ref)
    contrast = distort(ref, "contrast", 0.5, rng).astype(float)
    assert np.ptp(contrast) == pytest.approx(0.5 * 255, abs=1.0)
    noisy = distort(np.full((64, 64, 3), 128, np.uint8), "noise", 10.0, rng).astype(float)
    assert noisy.std() == pytest.approx(10.0, rel=0.1)
    dataset = build_synthetic(["camera", "brick"], 64)
    assert len(dataset) == 2 * len(DISTORTIONS) * 5
    for kind in DISTORTIONS:  # proxy-MOS falls with the level for every distortion type of one reference
        scores = [s.mos for s in dataset.samples if s.distortion == kind and s.ref == "camera"]
        assert all(a > b for a, b in zip(scores, scores[1:])), kind
    table = scale_dependence(["camera"], 64)
    noise = [r for r in table if r["distortion"] == "noise"]
    assert all(r["ssim_half"] > r["ssim_full"] for r in noise)  # noise is attenuated at the coarser scale


def test_crops_and_sampler_are_deterministic():
    dataset = build_synthetic(["camera"], 64)
    mos = dataset.normalized_mos()
    crops = TrainCrops(dataset, list(range(10)), mos, 32, crops_per_image=2, seed=3)
    sampler = EpochSampler(len(crops), seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(20)) and list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(20, 40)) and [k - 20 for k in second] != first
    a, _ = crops[second[0]]
    b, _ = crops[second[0]]
    assert a.shape == (3, 32, 32) and a.equal(b)
    assert multi_crop_boxes(64, 64, 32, 5) == [(16, 16), (0, 0), (0, 32), (32, 0), (32, 32)]
