"""CLI entry points and the evaluation protocol (PSNR/SSIM on Y with crop = scale via paperzoo_shared)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from paperzoo_dckd.cli import main
from paperzoo_dckd.data import PairedImage, bicubic_downsample
from paperzoo_dckd.evaluate import evaluate

from paperzoo_shared.data.image_io import read_image, write_image
from paperzoo_shared.metrics.image import psnr, ssim


class NearestUp(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


def test_evaluate_uses_y_channel_and_crop_equal_to_scale():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (36, 42, 3), dtype=np.uint8)
    result = evaluate(NearestUp(3), [PairedImage("a", lr, hr)], scale=3)
    sr = lr.repeat(3, 0).repeat(3, 1)
    assert result["psnr"] == pytest.approx(psnr(sr, hr, crop_border=3, test_y_channel=True), abs=1e-12)
    assert result["ssim"] == pytest.approx(ssim(sr, hr, crop_border=3, test_y_channel=True), abs=1e-12)
    # independent check of the convention: BT.601 luma of the cropped images, float64
    w = np.array([65.481, 128.553, 24.966]) / 255.0

    def y(img):
        return img[3:-3, 3:-3].astype(np.float64) @ w + 16.0

    mse = np.mean((y(sr) - y(hr)) ** 2)
    assert result["psnr"] == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-3)


def test_cli_help_and_params(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "train" in capsys.readouterr().out
    assert main(["params", "--scale", "4"]) == 0
    out = capsys.readouterr().out
    assert "swinir_teacher" in out and "11.900M" in out


def test_cli_bicubic_writes_matlab_lr(tmp_path):
    hr = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    write_image(tmp_path / "HR" / "img.png", hr, channel_order="rgb")
    assert main(["bicubic", str(tmp_path / "HR"), str(tmp_path / "LR"), "--scale", "2"]) == 0
    lr = read_image(tmp_path / "LR" / "imgx2.png", channel_order="rgb")
    assert np.array_equal(lr, bicubic_downsample(hr, 2))


def test_cli_reports_bad_config_keys(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("trian:\n  iterations: 3\n")
    assert main(["eval", "--config", str(config)]) == 2
    assert "unknown config key 'trian'" in capsys.readouterr().err


def test_cli_convert_reports_wrong_architecture(tmp_path, capsys):
    from paperzoo_dckd.convert import save_weights
    from paperzoo_dckd.models import build_model

    path = save_weights(build_model("edsr", {"num_feat": 8, "num_block": 1, "upscale": 2}), tmp_path / "w.pt")
    code = main(["convert", str(path), str(tmp_path / "out.pt"), "--arch", "rcan", "--scale", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "missing keys" in err


def test_cli_known_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    assert main(["eval", "--config", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("paperzoo-dckd: error:") and str(missing) in err[0]
    assert "Traceback" not in "\n".join(err)
    with pytest.raises((FileNotFoundError, ValueError)):
        main(["eval", "--config", str(missing), "--debug"])


def test_cli_help_lists_debug(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--debug" in capsys.readouterr().out
