"""Paired folders, size checks, unreadable images, patches (alignment, augmentation, determinism)."""

from __future__ import annotations

import numpy as np
import pytest
from paperzoo_dckd.data import (
    SKIM_SR_TEST,
    SKIM_SR_TRAIN,
    PairedImage,
    PatchDataset,
    load_paired_folder,
    pair_folders,
)

from paperzoo_shared.data.errors import DataError
from paperzoo_shared.data.image_io import write_image


def _write(path, array):
    write_image(path, array, channel_order="rgb")


def test_div2k_and_benchmark_layouts(tmp_path):
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    _write(tmp_path / "DIV2K_train_HR" / "0001.png", hr)
    _write(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png", lr)
    pairs = pair_folders(tmp_path / "DIV2K_train_HR", tmp_path / "DIV2K_train_LR_bicubic" / "X2", "{}x2")
    assert [(h.name, l.name) for h, l in pairs] == [("0001.png", "0001x2.png")]
    # benchmark layout with an HR side that is not a multiple of the scale (mod-crop)
    _write(tmp_path / "Set5" / "HR" / "baby.png", np.zeros((11, 13, 3), np.uint8))
    _write(tmp_path / "Set5" / "LR_bicubic" / "X2" / "babyx2.png", np.zeros((5, 6, 3), np.uint8))
    (pair,) = load_paired_folder(tmp_path / "Set5" / "HR", tmp_path / "Set5" / "LR_bicubic" / "X2", 2, "{}x2")
    assert pair.hr.shape == (10, 12, 3) and pair.lr.shape == (5, 6, 3)


def test_size_mismatch_names_both_files(tmp_path):
    _write(tmp_path / "HR" / "a.png", np.zeros((16, 16, 3), np.uint8))
    _write(tmp_path / "LR" / "ax3.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError) as info:
        load_paired_folder(tmp_path / "HR", tmp_path / "LR", 3, "{}x3")
    message = str(info.value)
    assert "ax3.png" in message and "a.png" in message and "x3" in message and "8x8" in message


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    _write(tmp_path / "HR" / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "LR").mkdir()
    _write(tmp_path / "LR" / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"no LR image for .*a\.png"):
        pair_folders(tmp_path / "HR", tmp_path / "LR", "{}")
    (tmp_path / "LR" / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"LR[/\\]a\.png"):
        load_paired_folder(tmp_path / "HR", tmp_path / "LR", 2, "{}")
    with pytest.raises(DataError, match="does not exist"):
        pair_folders(tmp_path / "nowhere", tmp_path / "LR")


def test_patches_are_aligned_augmented_and_deterministic():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    hr = lr.repeat(3, axis=0).repeat(3, axis=1)  # HR = nearest x3 of LR: an aligned patch downsamples exactly
    dataset = PatchDataset([PairedImage("x", lr, hr)], scale=3, lr_patch=6, length=50, seed=1)
    seen = set()
    for index in range(50):
        item = dataset[index]
        assert item["lq"].shape == (3, 6, 6) and item["gt"].shape == (3, 18, 18)
        assert np.allclose(item["gt"][:, ::3, ::3].numpy(), item["lq"].numpy())
        seen.add(tuple(item["lq"][:, 0, 0].tolist()))
    assert len(seen) > 10
    again = PatchDataset([PairedImage("x", lr, hr)], scale=3, lr_patch=6, length=50, seed=1)
    assert np.array_equal(dataset[7]["lq"].numpy(), again[7]["lq"].numpy())
    other = PatchDataset([PairedImage("x", lr, hr)], scale=3, lr_patch=6, length=50, seed=2)
    assert not np.array_equal(dataset[7]["lq"].numpy(), other[7]["lq"].numpy())
    dataset.offset = 5
    assert np.array_equal(dataset[2]["lq"].numpy(), again[7]["lq"].numpy())


def test_skim_sr_split_is_fixed_and_disjoint():
    assert set(SKIM_SR_TRAIN).isdisjoint(SKIM_SR_TEST)
    assert SKIM_SR_TRAIN == (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "motorcycle_left",
        "hubble_deep_field",
    )
    assert SKIM_SR_TEST == ("ihc", "retina", "motorcycle_right", "brick", "grass", "gravel")
