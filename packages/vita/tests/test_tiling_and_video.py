"""Dynamic tiling and video frame sampling against the notes' test vectors (§1.3, §4.1.2-3)."""

from __future__ import annotations

import numpy as np
import pytest
from paperzoo_vita.data import closest_grid, dynamic_tiles, num_tiles, sample_frame_indices
from PIL import Image


@pytest.mark.parametrize(
    ("size", "grid", "tiles"),
    [((448, 448), (1, 1), 1), ((1000, 500), (2, 1), 3), ((1920, 1080), (4, 2), 9), ((300, 1200), (1, 4), 5),
     ((800, 600), (4, 3), 13), ((640, 480), (4, 3), 13)],
)  # fmt: skip
def test_tile_counts(size, grid, tiles):
    assert closest_grid(*size) == grid
    assert num_tiles(*size) == tiles


def test_tie_break_prefers_larger_grid_only_for_large_images():
    # 2:1 ties between (2,1) and (4,2): 1920x960 is larger than half of 8 tiles' pixels (802816) -> (4,2)
    assert closest_grid(1920, 960) == (4, 2)
    # 400x200 = 80000 px is not larger than half of 2 tiles (200704) -> stays at (2,1)
    assert closest_grid(400, 200) == (2, 1)
    assert (
        num_tiles(1920, 1080, max_num=1) == 1
    )  # max_dynamic_patch=1 (real-time demo): one tile, no thumbnail


def test_tiles_row_major_then_thumbnail():
    # 2x1 grid of 4x4 tiles: left half red, right half blue
    array = np.zeros((4, 8, 3), np.uint8)
    array[:, :4] = (255, 0, 0)
    array[:, 4:] = (0, 0, 255)
    tiles = dynamic_tiles(Image.fromarray(array), image_size=4, max_num=12)
    assert len(tiles) == 3
    assert np.asarray(tiles[0])[1, 1].tolist() == [255, 0, 0]
    assert np.asarray(tiles[1])[1, 1].tolist() == [0, 0, 255]
    thumb = np.asarray(tiles[2])
    assert thumb.shape == (4, 4, 3) and thumb[1, 0, 0] > 200 and thumb[1, 3, 2] > 200  # whole image, squeezed


def test_video_sampler_vectors():
    # 25 fps: 2 s -> grid [0, 25] -> linspace(0, 1, 4) -> [0, 0, 0, 1]; 7 s -> 7 frames; 40 s -> 16; Video-MME 32
    assert sample_frame_indices(50, 25) == [0, 0, 0, 25]
    assert sample_frame_indices(175, 25) == [0, 25, 50, 75, 100, 125, 150]
    long = sample_frame_indices(1000, 25)
    assert len(long) == 16 and long[0] == 0 and long[-1] == 975
    # linspace(0, 39, 16) floors: 0, 2.6 -> 2, 5.2 -> 5, ...; indices are grid positions x 25
    assert long[:4] == [0, 50, 125, 175]
    assert len(sample_frame_indices(1000, 25, max_frames=32)) == 32
    with pytest.raises(ValueError, match="no frames"):
        sample_frame_indices(0, 25)
