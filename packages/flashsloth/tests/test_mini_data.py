"""The mini's patch-scale patterns and its pre-registered comparisons."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from paperzoo_flashsloth.configuration import ExperimentConfig, parse_comparison
from paperzoo_flashsloth.train import patch_scale_patterns


def _sample(pattern, image_id=0):
    image = np.full((16, 16, 3), 100, dtype=np.uint8)
    mask = np.zeros((16, 16), dtype=bool)
    mask[:, :12] = True  # the object covers 2 x 3 patches of 4 px... and part of a fourth column
    obj = SimpleNamespace(pattern=pattern, mask=mask)
    return SimpleNamespace(image=image, objects=(obj,), image_id=image_id)


def test_checkered_cells_are_whole_patches():
    s = _sample("checkered")
    patch_scale_patterns([s, s], patch_size=4, amplitude=20.0)  # the same image twice: painted once
    grey = s.image[..., 0].astype(int)
    cells = grey.reshape(4, 4, 4, 4)  # [patch row, px, patch col, px]
    for r in range(4):
        for c in range(3):
            block = cells[r, :, c, :]
            assert (block == block[0, 0]).all()  # one shade per patch: no pattern inside a patch
            assert block[0, 0] == (120 if (r + c) % 2 == 0 else 80)
    assert (grey[:, 12:] == 100).all()  # outside the mask untouched
    # a 2x2 patch average is the plain colour: the pattern is only in the relation between patches
    assert grey[:8, :8].mean() == 100


def test_striped_alternates_patch_rows_and_plain_is_untouched():
    s = _sample("striped")
    patch_scale_patterns([s], patch_size=4, amplitude=20.0)
    grey = s.image[..., 0].astype(int)
    assert (grey[0:4, :12] == 120).all() and (grey[4:8, :12] == 80).all()
    p = _sample("plain")
    patch_scale_patterns([p], patch_size=4, amplitude=20.0)
    assert (p.image == 100).all()


def test_comparisons_parse_and_must_name_rows():
    assert parse_comparison("flashsloth - uncompressed: accuracy_detail") == (
        "flashsloth", "uncompressed", "accuracy_detail")  # fmt: skip
    with pytest.raises(ValueError, match="must read"):
        parse_comparison("flashsloth vs uncompressed")
    with pytest.raises(ValueError, match="not in rows"):
        ExperimentConfig(rows=("flashsloth",), comparisons=("flashsloth - avgpool: accuracy",))
