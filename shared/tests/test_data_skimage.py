"""Tests of paperzoo_shared.data.skimage_images (offline images from the scikit-image wheel)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from paperzoo_shared.data import (
    SKIMAGE_GRAY_IMAGES,
    SKIMAGE_RGB_IMAGES,
    load_skimage_image,
    skimage_image_path,
)

skimage_data = pytest.importorskip("skimage.data")


@pytest.mark.parametrize("name", SKIMAGE_RGB_IMAGES + SKIMAGE_GRAY_IMAGES)
def test_every_listed_image_ships_in_the_wheel_and_loads(name):
    assert skimage_image_path(name).is_file()
    img = load_skimage_image(name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    if name in SKIMAGE_GRAY_IMAGES:
        np.testing.assert_array_equal(img[:, :, 0], img[:, :, 1])
        np.testing.assert_array_equal(img[:, :, 0], img[:, :, 2])


def test_known_shapes_and_skimage_loaders_agree():
    # Sizes from the scikit-image gallery; pixels compared with scikit-image's own loaders.
    astronaut = load_skimage_image("astronaut")
    assert astronaut.shape == (512, 512, 3)
    np.testing.assert_array_equal(astronaut, skimage_data.astronaut())
    assert load_skimage_image("chelsea").shape == (300, 451, 3)
    assert load_skimage_image("coffee").shape == (400, 600, 3)
    camera = load_skimage_image("camera", as_rgb=False)
    assert camera.shape == (512, 512, 1)
    np.testing.assert_array_equal(camera[:, :, 0], skimage_data.camera())
    np.testing.assert_array_equal(load_skimage_image("brick")[:, :, 1], skimage_data.brick())


def test_bgr_and_determinism():
    rgb = load_skimage_image("rocket")
    np.testing.assert_array_equal(load_skimage_image("rocket", channel_order="bgr"), rgb[:, :, ::-1])
    np.testing.assert_array_equal(load_skimage_image("rocket"), rgb)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"'lena'.*astronaut.*camera"):
        load_skimage_image("lena")


def test_missing_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"paperzoo-shared\[images\]"):
        load_skimage_image("astronaut")
