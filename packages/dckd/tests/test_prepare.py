"""prepare-div2k: BasicSR's sub-image extraction (480 crops, step 240, thresh 0) and the LR folders."""

from __future__ import annotations

import numpy as np
from paperzoo_dckd.cli import main
from paperzoo_dckd.data import bicubic_downsample, pair_folders
from paperzoo_dckd.prepare import crop_starts, prepare_div2k, sub_images

from paperzoo_shared.data.image_io import read_image, write_image


def test_crop_starts_by_hand():
    # BasicSR: range(0, L - 480 + 1, 240), plus L - 480 when more than thresh (0) pixels are left over
    assert crop_starts(720, 480, 240) == [0, 240]  # 720 - (240 + 480) = 0: nothing left over
    assert crop_starts(1000, 480, 240) == [0, 240, 480, 520]  # 40 pixels left: a crop flush with the border
    assert crop_starts(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert crop_starts(240, 120, 60) == [0, 60, 120]


def test_sub_images_are_row_by_row_crops():
    img = np.arange(720 * 1000 * 1, dtype=np.int64).reshape(720, 1000, 1)
    pieces = sub_images(img, 480, 240)
    assert len(pieces) == 8 and all(p.shape == (480, 480, 1) for p in pieces)
    # s006 is the second row (y = 240), second column (x = 240)
    assert pieces[5][0, 0, 0] == 240 * 1000 + 240
    assert pieces[3][0, 0, 0] == 520  # s004: first row, the flush crop


def test_prepare_div2k_writes_paired_hr_and_lr_folders(tmp_path):
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (72, 100, 3), dtype=np.uint8)
    write_image(tmp_path / "HR" / "0001.png", hr, channel_order="rgb")
    # the downloaded x2 LR (named 0001x2.png), and x4 made here by MATLAB bicubic
    write_image(tmp_path / "LR" / "X2" / "0001x2.png", bicubic_downsample(hr, 2), channel_order="rgb")
    counts = prepare_div2k(tmp_path / "HR", tmp_path / "out", [2, 4], {2: tmp_path / "LR" / "X2"}, 48, 24)
    assert counts == {"hr": 8, "x2": 8, "x4": 8}  # rows [0, 24], columns [0, 24, 48, 52]
    out = tmp_path / "out"
    assert np.array_equal(
        read_image(out / "DIV2K_train_HR_sub" / "0001_s006.png", channel_order="rgb"), hr[24:72, 24:72]
    )
    lr4 = read_image(out / "DIV2K_train_LR" / "X4_sub" / "0001_s004.png", channel_order="rgb")
    assert np.array_equal(lr4, bicubic_downsample(hr, 4)[0:12, 13:25])
    pairs = pair_folders(out / "DIV2K_train_HR_sub", out / "DIV2K_train_LR" / "X2_sub", "{}")
    assert len(pairs) == 8 and all(h.name == lr.name for h, lr in pairs)


def test_prepare_div2k_cli_and_a_too_small_image(tmp_path, capsys):
    write_image(tmp_path / "HR" / "0002.png", np.zeros((100, 100, 3), np.uint8), channel_order="rgb")
    assert main(["prepare-div2k", str(tmp_path / "HR"), "--out", str(tmp_path / "out"), "--scales", "2"]) == 2
    assert "smaller than the crop size 480" in capsys.readouterr().err


def test_unquoted_brace_override_is_one_clear_line(tmp_path, capsys):
    from pathlib import Path

    mini = Path(__file__).resolve().parents[1] / "configs" / "mini.yaml"
    code = main(["eval", "--config", str(mini), "--set", "data.train_filename_tmpl={}x2"])
    err = capsys.readouterr().err
    # 0.1 printed a raw YAML traceback; now one line naming the override (quote it: '{}x2')
    assert code == 2 and err.startswith("paperzoo-dckd: error: override 'data.train_filename_tmpl={}x2'")
    assert "Traceback" not in err
