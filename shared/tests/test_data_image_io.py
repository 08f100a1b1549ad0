"""Tests of paperzoo_shared.data.image_io; reference files are written with plain cv2 calls."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from paperzoo_shared.data import DataError, DataFileNotFoundError, read_image, write_image


def test_png_round_trip_is_exact(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = write_image(tmp_path / "a" / "b" / "img.png", img, channel_order="rgb")
    assert path.is_file()
    np.testing.assert_array_equal(read_image(path, channel_order="rgb"), img)
    np.testing.assert_array_equal(read_image(path, channel_order="bgr"), img[:, :, ::-1])


def test_channel_order_is_explicit_and_matches_opencv(tmp_path):
    red = np.zeros((2, 3, 3), dtype=np.uint8)
    red[..., 0] = 255
    path = write_image(tmp_path / "red.png", red, channel_order="rgb")
    # OpenCV stores BGR: a red pixel is (0, 0, 255) on disk.
    np.testing.assert_array_equal(cv2.imread(str(path))[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(read_image(path, channel_order="rgb")[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(read_image(path, channel_order="bgr")[0, 0], [0, 0, 255])
    with pytest.raises(TypeError):
        read_image(path)  # channel_order has no default
    with pytest.raises(ValueError, match="channel_order"):
        read_image(path, channel_order="RGB")


def test_grayscale_is_replicated_or_kept(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), gray)
    rgb = read_image(path, channel_order="rgb")
    assert rgb.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)
    single = read_image(path, channel_order="rgb", grayscale_to_rgb=False)
    assert single.shape == (3, 4, 1)
    np.testing.assert_array_equal(single[:, :, 0], gray)


def test_alpha_channel_is_dropped(tmp_path):
    bgra = np.zeros((2, 2, 4), dtype=np.uint8)
    bgra[...] = (10, 20, 30, 7)
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), bgra)
    np.testing.assert_array_equal(read_image(path, channel_order="rgb")[0, 0], [30, 20, 10])


def test_16_bit_is_exact_scaled_or_rejected(tmp_path):
    g16 = (np.arange(6, dtype=np.uint16).reshape(2, 3) * 13107).astype(np.uint16)  # 0 .. 65535
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), g16)
    with pytest.raises(DataError, match=r"16-bit.*dtype=np.uint16"):
        read_image(path, channel_order="rgb")
    exact = read_image(path, channel_order="rgb", dtype=np.uint16, grayscale_to_rgb=False)
    np.testing.assert_array_equal(exact[:, :, 0], g16)
    scaled = read_image(path, channel_order="rgb", dtype=np.float32)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[:, :, 0], g16 / 65535.0, rtol=1e-6)
    assert scaled.max() == 1.0


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(DataFileNotFoundError, match="nope.png") as info:
        read_image(missing, channel_order="rgb")
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.png"):
        read_image(path, channel_order="rgb")


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8 or uint16"):
        write_image(tmp_path / "f.png", np.zeros((2, 2, 3), dtype=np.float32), channel_order="rgb")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_image(tmp_path / "f.png", np.zeros((2, 2, 4), dtype=np.uint8), channel_order="rgb")
    with pytest.raises(DataError, match="no encoder"):
        write_image(tmp_path / "f.unknownext", np.zeros((2, 2, 3), dtype=np.uint8), channel_order="rgb")
