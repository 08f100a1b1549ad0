"""Deblurring (GoPro, Table 3) and deraining (Rain13K, Table 4): paired same-size folders, RGB/Y metrics,
AdamW + cosine + progressive patches, the official NAFNet/Restormer loaders and the full configs."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml
from paperzoo_dckd.configuration import ExperimentConfig, TrainConfig, fingerprint_dict
from paperzoo_dckd.convert import CheckpointError, load_weights, save_weights
from paperzoo_dckd.data import (
    LazyPairs,
    PairedImage,
    PatchDataset,
    ProgressiveBatchSampler,
    pair_restoration_folder,
)
from paperzoo_dckd.evaluate import evaluate
from paperzoo_dckd.models import build_model, count_parameters
from paperzoo_dckd.module import make_optimizer
from paperzoo_dckd.reproduce import config_path, reproduce
from paperzoo_dckd.train import (
    build_from_config,
    load_test_sets,
    load_train_pairs,
    make_trainer,
    train_student,
)

from paperzoo_shared.config import ConfigError, from_dict, load_config
from paperzoo_shared.data.errors import DataError
from paperzoo_shared.data.image_io import read_image, write_image
from paperzoo_shared.data.skimage_images import load_skimage_image
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import ReproRequest, load_tables

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RESTORATION_VARIANTS = ["nafnet_gopro", "restormer_gopro", "restormer_rain13k"]
MOTION = np.full((1, 7), 1 / 7)  # a known horizontal motion blur


def _crop(name: str, top: int, size: int = 32) -> np.ndarray:
    return np.ascontiguousarray(load_skimage_image(name)[top : top + size, 40 : 40 + size])


def _blur(img: np.ndarray) -> np.ndarray:
    out = cv2.filter2D(img.astype(np.float64), -1, MOTION, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _rain(img: np.ndarray, seed: int) -> np.ndarray:
    """Synthetic rain: bright slanted streaks at seeded positions."""
    rng = np.random.default_rng(seed)
    streaks = np.zeros(img.shape[:2], np.float64)
    for _ in range(12):
        x, y = int(rng.integers(0, img.shape[1])), int(rng.integers(0, img.shape[0]))
        cv2.line(streaks, (x, y), (x + 3, y + 9), 80.0, 1)
    return np.clip(img + streaks[..., None], 0, 255).astype(np.uint8)


def _write(path: Path, img: np.ndarray) -> None:
    write_image(path, img, channel_order="rgb")


def make_gopro(root: Path) -> dict[str, np.ndarray]:
    """GoPro layout: <root>/<scene>/{blur,sharp,blur_gamma}/<frame>.png; returns {scene/frame: sharp}."""
    sharp = {}
    for scene, names in (("GOPR0001_00", ("astronaut", "coffee")), ("GOPR0002_00", ("chelsea", "rocket"))):
        for index, name in enumerate(names):
            img = _crop(name, 20 + 8 * index)
            frame = f"{index + 1:06d}"
            _write(root / scene / "sharp" / f"{frame}.png", img)
            _write(root / scene / "blur" / f"{frame}.png", _blur(img))
            _write(root / scene / "blur_gamma" / f"{frame}.png", _blur(img))  # ignored
            sharp[f"{scene}/{frame}"] = img
    return sharp


def make_rain(root: Path) -> None:
    """Restormer's deraining layout: train/Rain13K/{input,target}, test/<set>/{input,target}."""
    for folder, names in (("train/Rain13K", ("astronaut", "coffee")), ("test/Rain100H", ("chelsea",))):
        for index, name in enumerate(names):
            img = _crop(name, 30)
            _write(root / folder / "target" / f"{index}.png", img)
            _write(root / folder / "input" / f"{index}.png", _rain(img, index))


def test_gopro_layout_pairs_by_scene_and_frame(tmp_path):
    sharp = make_gopro(tmp_path / "train")
    pairs = pair_restoration_folder(tmp_path / "train", "blur", "sharp")
    assert [name for _, _, name in pairs] == sorted(sharp)
    for gt_path, lq_path, name in pairs:
        assert gt_path.parent.name == "sharp" and lq_path.parent.name == "blur"
        assert gt_path.parent.parent == lq_path.parent.parent  # same scene
        pair = LazyPairs([(gt_path, lq_path, name)])[0]
        assert pair.name == name and pair.lr.shape == pair.hr.shape == (32, 32, 3)  # no mod-crop, no scale
        assert np.array_equal(pair.hr, sharp[name])
        assert np.abs(pair.lr.astype(int) - _blur(sharp[name]).astype(int)).max() == 0  # its own blur
        assert not np.array_equal(pair.lr, pair.hr)


def test_rain13k_layout_pairs_train_and_test_sets(tmp_path):
    make_rain(tmp_path)
    train = pair_restoration_folder(tmp_path / "train" / "Rain13K", "input", "target")
    test = pair_restoration_folder(tmp_path / "test" / "Rain100H", "input", "target")
    assert [n for *_, n in train] == ["0", "1"] and [n for *_, n in test] == ["0"]
    for pair in LazyPairs(train):
        assert (pair.lr >= pair.hr).all() and (pair.lr > pair.hr).any()  # streaks only brighten
    assert len(LazyPairs(train)[1:]) == 1


def test_restoration_errors_name_the_file(tmp_path):
    make_gopro(tmp_path / "a")
    (tmp_path / "a" / "GOPR0002_00" / "sharp" / "000002.png").unlink()
    with pytest.raises(DataError, match=r"GOPR0002_00[/\\]blur[/\\]000002\.png has no ground truth"):
        pair_restoration_folder(tmp_path / "a", "blur", "sharp")
    make_gopro(tmp_path / "b")
    (tmp_path / "b" / "GOPR0001_00" / "blur" / "000001.png").unlink()
    with pytest.raises(DataError, match=r"GOPR0001_00[/\\]sharp[/\\]000001\.png has no degraded partner"):
        pair_restoration_folder(tmp_path / "b", "blur", "sharp")
    make_rain(tmp_path / "c")
    rain = tmp_path / "c" / "train" / "Rain13K"
    _write(rain / "target" / "1.png", np.zeros((30, 32, 3), np.uint8))  # wrong size
    (rain / "input" / "0.png").write_bytes(b"\x89PNG not an image")  # unreadable
    pairs = LazyPairs(pair_restoration_folder(rain, "input", "target"))
    with pytest.raises(DataError, match=r"input[/\\]0\.png"):
        pairs[0]
    with pytest.raises(DataError) as info:
        pairs[1]
    assert "input" in str(info.value) and "target" in str(info.value) and "30x32" in str(info.value)
    with pytest.raises(DataError, match="train has neither blur/ and sharp/"):
        pair_restoration_folder(tmp_path / "c" / "train", "blur", "sharp")
    (tmp_path / "d" / "GOPR1" / "blur").mkdir(parents=True)
    with pytest.raises(DataError, match=r"GOPR1[/\\]sharp does not exist"):
        pair_restoration_folder(tmp_path / "d", "blur", "sharp")


def test_same_size_patches_are_aligned_under_flips_and_rotations():
    gt = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    dataset = PatchDataset([PairedImage("x", 255 - gt, gt)], scale=1, lr_patch=8, length=40, seed=3)
    for index in range(40):
        item = dataset[index]
        assert item["lq"].shape == item["gt"].shape == (3, 8, 8)
        assert torch.allclose(item["lq"] + item["gt"], torch.ones(3, 8, 8))
    assert dataset[(5, 12)]["gt"].shape == (3, 12, 12)  # a progressive key overrides the patch size


class Offset(torch.nn.Module):
    """Adds 10 grey levels: PSNR by hand."""

    def forward(self, x):
        return x + 10 / 255


def test_rgb_and_y_metric_paths_on_a_constant_offset():
    gt = np.random.default_rng(1).integers(20, 200, (24, 24, 3), dtype=np.uint8)
    pairs = [PairedImage("p", gt, gt)]
    rgb = evaluate(Offset(), pairs, scale=1, y_channel=False, crop_border=0)
    assert rgb["psnr"] == pytest.approx(10 * math.log10(255**2 / 10**2), abs=1e-9)  # 28.1308 dB
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255: a +10 offset moves Y by 10 * 219 / 255
    y = evaluate(Offset(), pairs, scale=1, y_channel=True, crop_border=0)
    assert y["psnr"] == pytest.approx(20 * math.log10(255 / (10 * 219 / 255)), abs=1e-3)  # 29.4520 dB
    assert rgb["ssim"] < 1 and y["ssim"] < 1


def test_cosine_schedules_and_adamw_match_hand_values():
    net = torch.nn.Linear(2, 2)
    nafnet = TrainConfig(
        optimizer="adamw",
        lr=1e-3,
        weight_decay=1e-3,
        scheduler="cosine",
        cosine_periods=[10],
        eta_mins=[1e-7],
    )
    optimizer, scheduler = make_optimizer(net.parameters(), nafnet)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 1e-3
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-3) and lrs[5] == pytest.approx((1e-3 + 1e-7) / 2)
    assert lrs[10] == pytest.approx(1e-7) and lrs[11] == pytest.approx(1e-7)
    restormer = replace(nafnet, lr=3e-4, cosine_periods=[4, 6], eta_mins=[3e-4, 1e-6])
    optimizer, scheduler = make_optimizer(net.parameters(), restormer)
    lrs = []
    for _ in range(11):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([3e-4] * 5)  # constant in the first period
    assert lrs[7] == pytest.approx((3e-4 + 1e-6) / 2) and lrs[10] == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="cosine_periods and eta_mins"):
        TrainConfig(scheduler="cosine", cosine_periods=[10])
    assert make_trainer(replace(nafnet, grad_clip_norm=0.01), Path("unused"), 1).gradient_clip_val == 0.01


def test_progressive_stages_and_sampler():
    config = from_dict(
        TrainConfig,
        {
            "batch_size": 4,
            "progressive": [
                {"start": 0, "lr_patch": 8, "batch_size": 4},
                {"start": 2, "lr_patch": 12, "batch_size": 2},
            ],
        },
    )
    assert config.stage_at(0) == (8, 4) and config.stage_at(1) == (8, 4) and config.stage_at(5) == (12, 2)
    batches = list(ProgressiveBatchSampler(config.stage_at, config.max_batch_size, 4))
    assert [len(b) for b in batches] == [4, 4, 2, 2] and [b[0][1] for b in batches] == [8, 8, 12, 12]
    keys = [k for b in batches for k, _ in b]
    assert len(set(keys)) == len(keys)
    resumed = list(ProgressiveBatchSampler(config.stage_at, config.max_batch_size, 4, start_step=2))
    assert resumed == batches[2:]  # a resumed run draws the same samples
    with pytest.raises(ValueError, match="must start at 0"):
        from_dict(TrainConfig, {"progressive": [{"start": 3, "lr_patch": 8, "batch_size": 2}]})


# ---------------------------------------------------------------------------------------------------------
# Tiny networks on a GoPro-layout folder through the trainer and the reproduce path
# ---------------------------------------------------------------------------------------------------------

TINY_NAFNET = "{width: 4, enc_blk_nums: [1, 1], dec_blk_nums: [1, 1], middle_blk_num: 1}"
TINY_ENCODER = (
    "{ch: 4, ch_mult: [1, 1, 2, 2, 4], num_res_blocks: 1, attn_resolutions: [], z_channels: 8, "
    "embed_dim: 8, n_embed: 16, norm_groups: 2}"
)


def _tiny_overrides(root: Path, checkpoints: dict[str, Path]) -> list[str]:
    return [
        f"data.train_dir={root / 'train'}",
        f"data.test_dirs={{GoPro: {root / 'test'}}}",
        f"teacher.options={TINY_NAFNET}",
        f"teacher.checkpoint={checkpoints['teacher']}",
        "teacher.checkpoint_format=official_nafnet",
        f"student.options={TINY_NAFNET}",
        "encoder.arch=vqgan_encoder",
        f"encoder.options={TINY_ENCODER}",
        f"encoder.checkpoint={checkpoints['encoder']}",
        "encoder.checkpoint_format=ours",
        "train.iterations=2",
        "train.batch_size=2",
        "train.lr_patch=16",
        "train.accelerator=cpu",
        "train.devices=1",
        "train.strategy=auto",
        "train.num_workers=0",
        "train.checkpoint_every=1",
        "train.progress_bar=false",
        "train.logger=none",
        "dckd.history_steps=[1]",
    ]


@pytest.fixture
def gopro_run(tmp_path):
    make_gopro(tmp_path / "train")
    make_gopro(tmp_path / "test")
    torch.manual_seed(0)
    teacher = build_model("nafnet", {"width": 4, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]})
    encoder = build_model("vqgan_encoder", yaml.safe_load(TINY_ENCODER))
    checkpoints = {"teacher": tmp_path / "NAFNet-tiny.pth", "encoder": tmp_path / "encoder.pt"}
    torch.save(
        {"params": teacher.state_dict()}, checkpoints["teacher"]
    )  # the official {"params": ...} layout
    save_weights(encoder, checkpoints["encoder"])
    return tmp_path, checkpoints, teacher


def test_tiny_nafnet_distils_on_gopro_folders_and_reproduces_table3(gopro_run):
    root, checkpoints, teacher = gopro_run
    paper = get_paper("dckd")
    table = load_tables(paper.data_root() / "paper" / "tables.yaml").table("table3")
    overrides = [
        "variant=nafnet_gopro",
        *_tiny_overrides(root, checkpoints),
        "methods=[teacher, scratch, logits, dckd]",
    ]
    request = ReproRequest(paper, table, "full", [0], root / "out", CONFIGS, overrides)
    result = reproduce(request)
    rows = {row.id: row for row in result.rows}
    assert list(rows) == ["teacher", "scratch", "logits", "dckd"]
    assert (
        rows["dckd"].paper_row == "nafnet_gopro_dckd" and rows["teacher"].paper_row == "nafnet_gopro_teacher"
    )
    assert (root / "out" / "runs" / "dckd" / "seed0" / "final.pt").is_file()
    # the teacher row is RGB PSNR with crop 0 over the 4 test pairs (scene/frame names kept apart)
    pairs = [
        PairedImage(name, read_image(lq, channel_order="rgb"), read_image(gt, channel_order="rgb"))
        for gt, lq, name in pair_restoration_folder(root / "test", "blur", "sharp")
    ]
    expected = evaluate(teacher, pairs, scale=1, y_channel=False, crop_border=0)
    assert len(expected["per_image"]) == 4
    assert rows["teacher"].metrics["psnr"][0] == pytest.approx(expected["psnr"], abs=1e-9)
    assert any("Teacher − Scratch (GoPro, PSNR-RGB)" in note for note in result.notes)


def test_progressive_training_changes_patch_and_batch_and_resumes(gopro_run):
    root, checkpoints, _ = gopro_run
    overrides = _tiny_overrides(root, checkpoints) + [
        "train.iterations=3",
        "train.progressive=[{start: 0, lr_patch: 16, batch_size: 2}, {start: 1, lr_patch: 24, batch_size: 1}]",
    ]
    config = load_config(ExperimentConfig, CONFIGS / "full" / "restormer_gopro.yaml", overrides)
    config = replace(config, student=replace(config.student, arch="nafnet"))
    pairs = load_train_pairs(config)
    assert len(pairs) == 4 and list(load_test_sets(config)) == ["GoPro"]

    class Shapes(L.Callback):
        def __init__(self, stop_at=None):
            self.shapes, self.stop_at = {}, stop_at

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.stop_at is not None and trainer.global_step >= self.stop_at:
                raise RuntimeError("killed")
            self.shapes[trainer.global_step] = (tuple(batch["gt"].shape), float(batch["lq"].sum()))

    full = Shapes()
    train_student(config, "scratch", 0, root / "full", None, None, pairs, callbacks=[full])
    assert [s for s, _ in full.shapes.values()] == [(2, 3, 16, 16), (1, 3, 24, 24), (1, 3, 24, 24)]
    cut = Shapes(stop_at=2)
    with pytest.raises(RuntimeError, match="killed"):
        train_student(config, "scratch", 0, root / "cut", None, None, pairs, callbacks=[cut])
    resumed = Shapes()
    train_student(config, "scratch", 0, root / "cut", None, None, pairs, callbacks=[resumed])
    assert resumed.shapes == {2: full.shapes[2]}  # resumed at step 2 with the same samples


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints, full configs, variants
# ---------------------------------------------------------------------------------------------------------


def test_official_nafnet_and_restormer_checkpoints_load_strictly(tmp_path):
    nafnet = build_model("nafnet", {"width": 4, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]})
    restormer = build_model("restormer", {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1})
    # parameter names of the official NAFNet_arch.py / restormer_arch.py
    assert {
        "intro.weight",
        "encoders.0.0.sca.1.weight",
        "middle_blks.0.beta",
        "ups.0.0.weight",
        "downs.1.weight",
        "ending.bias",
    } <= set(nafnet.state_dict())
    assert {
        "patch_embed.proj.weight",
        "encoder_level1.0.attn.temperature",
        "latent.0.ffn.dwconv.weight",
        "reduce_chan_level3.weight",
        "refinement.0.norm2.body.weight",
        "output.weight",
    } <= set(restormer.state_dict())
    path = tmp_path / "NAFNet-GoPro-width32.pth"
    torch.save({"params": {f"module.{k}": v for k, v in nafnet.state_dict().items()}}, path)
    copy = build_model("nafnet", {"width": 4, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]})
    load_weights(copy, path)  # auto-detected as official_nafnet
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), nafnet.state_dict().values()))
    with pytest.raises(CheckpointError) as info:
        load_weights(restormer, path, "official_restormer", arch="teacher (restormer_teacher)")
    message = str(info.value)
    assert str(path) in message and "missing keys" in message and "decoder_level1.0.attn" in message
    assert "unexpected keys" in message and "decoders.0.0.beta" in message


@pytest.mark.parametrize("variant", RESTORATION_VARIANTS)
def test_full_restoration_configs_carry_the_paper_settings_and_build(variant):
    config = load_config(ExperimentConfig, CONFIGS / "full" / f"{variant}.yaml")
    train, data = config.train, config.data
    assert config.variant == variant and data.scale == 1 and config.evaluation.crop_border == 0
    assert config.methods == ["teacher", "scratch", "logits", "dckd"]
    assert config.dckd.lambda_dcl == 0.1 and config.dckd.lambda_ce == 0.001 and config.dckd.num_negatives == 5
    assert config.encoder.checkpoint.name == "VQGAN_f16_n1024.ckpt" and train.optimizer == "adamw"
    assert train.scheduler == "cosine" and train.use_flip and train.use_rot
    world = train.devices * train.num_nodes
    if variant == "nafnet_gopro":
        assert (train.iterations, train.lr, train.betas, train.weight_decay) == (
            200_000,
            1e-3,
            [0.9, 0.9],
            1e-3,
        )
        assert train.cosine_periods == [200_000] and train.eta_mins == [1e-7]
        assert train.lr_patch == 256 and train.batch_size * world == 32 and not train.progressive
        assert config.teacher.checkpoint.name == "NAFNet-GoPro-width32.pth"
        expected = (17.1e6, 2.7e6)
    else:
        assert (train.iterations, train.lr, train.betas, train.weight_decay) == (
            300_000,
            3e-4,
            [0.9, 0.999],
            1e-4,
        )
        assert sum(train.cosine_periods) == 300_000 and train.eta_mins[-1] == 1e-6
        stages = [(s.start, s.lr_patch, s.batch_size * world) for s in train.progressive]
        assert stages == [
            (0, 128, 64),
            (92_000, 160, 40),
            (156_000, 192, 32),
            (204_000, 256, 16),
            (240_000, 320, 8),
            (276_000, 384, 8),
        ]
        expected = (26.1e6, 3.8e6)
    if variant == "restormer_rain13k":
        assert (
            data.source == "rain13k"
            and config.evaluation.y_channel
            and data.folder_names == ("input", "target")
        )
        assert list(data.test_dirs) == ["Test100", "Rain100H", "Rain100L", "Test2800", "Test1200"]
        assert config.teacher.checkpoint.name == "deraining.pth"
    else:
        assert (
            data.source == "gopro"
            and not config.evaluation.y_channel
            and data.folder_names == ("blur", "sharp")
        )
        assert list(data.test_dirs) == ["GoPro"]
    teacher = build_from_config(replace(config.teacher, checkpoint=None), 1, "teacher")
    student = build_from_config(replace(config.student, checkpoint=None), 1, "student")
    assert abs(count_parameters(teacher) - expected[0]) / expected[0] < 0.01
    assert abs(count_parameters(student) - expected[1]) / expected[1] < 0.01
    with torch.no_grad():
        assert student.eval()(torch.rand(1, 3, 20, 20)).shape == (1, 3, 20, 20)
    assert "optimizer" in fingerprint_dict(config)["train"]


def test_table_variants_and_the_unchanged_sr_fingerprints(tmp_path):
    paper = get_paper("dckd")
    tables = load_tables(paper.data_root() / "paper" / "tables.yaml")

    def path(table, overrides=()):
        return config_path(
            ReproRequest(paper, tables.table(table), "full", [0], tmp_path, CONFIGS, list(overrides))
        )

    assert path("table3") == CONFIGS / "full" / "nafnet_gopro.yaml"
    assert path("table3", ["variant=restormer_gopro"]) == CONFIGS / "full" / "restormer_gopro.yaml"
    assert path("table4") == CONFIGS / "full" / "restormer_rain13k.yaml"
    assert path("table2") == CONFIGS / "full.yaml"
    with pytest.raises(ConfigError, match="--table table3 --set variant=nafnet_gopro"):
        path("table2", ["variant=nafnet_gopro"])
    with pytest.raises(ConfigError, match="valid variants: nafnet_gopro, restormer_gopro$"):
        path("table3", ["variant=swinir_gopro"])
    for table in ("table3", "table4"):
        assert tables.table(table).presets == ("full",)
        for row in tables.table(table).rows:
            assert (CONFIGS.parent / row.config).is_file() and row.status == "pending"
    # keys added for deblurring/deraining leave the SR configs' cache fingerprints as they were
    mini = fingerprint_dict(load_config(ExperimentConfig, CONFIGS / "mini.yaml"))
    assert "evaluation" not in mini and "optimizer" not in mini["train"] and "train_dir" not in mini["data"]
    with pytest.raises(ConfigError, match="data.scale must be 1"):
        load_config(ExperimentConfig, CONFIGS / "full" / "nafnet_gopro.yaml", ["data.scale=2"])
