"""``paperzoo-dckd``: train, evaluate, convert official weights, make LR images, run the Fig. 8b check.

    paperzoo-dckd train --config configs/full/swinir_x2.yaml --method dckd --seed 0 --run-dir runs/swinir_x2
    paperzoo-dckd eval --config configs/full/swinir_x2.yaml --weights runs/swinir_x2/dckd/seed0/final.pt
    paperzoo-dckd convert --arch swinir_teacher --scale 2 --format official_swinir IN.pth OUT.pt
    paperzoo-dckd bicubic --scale 2 HR_DIR LR_DIR
    paperzoo-dckd fig8b --config configs/mini.yaml --out fig8b.png
    paperzoo-dckd params

Configs are YAML files loaded into :class:`paperzoo_dckd.configuration.ExperimentConfig`; ``--set key=value``
overrides any key (e.g. ``--set train.devices=8 --set data.train_hr_dir=/data/DIV2K_sub``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from paperzoo_dckd.configuration import METHODS, ExperimentConfig
from paperzoo_shared.config import load_config
from paperzoo_shared.errors import add_debug_flag, run_cli


def _config(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(ExperimentConfig, args.config, overrides=args.overrides)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, required=True, help="experiment YAML (configs/mini.yaml, configs/full/...)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from paperzoo_dckd.train import build_encoder, build_teacher, load_train_pairs, train_student

    config = _config(args)
    run_dir = args.run_dir
    pairs = load_train_pairs(config)
    uses = METHODS[args.method]
    teacher = build_teacher(config, run_dir / "teacher", lambda: pairs) if args.method != "scratch" else None
    encoder = (
        build_encoder(config, run_dir / "encoder", lambda: pairs)
        if (uses["dcr"] or uses["dmm"] or uses["mclir"])
        else None
    )
    seed = config.train.seed if args.seed is None else args.seed
    out = run_dir / args.method / f"seed{seed}"
    train_student(config, args.method, seed, out, teacher, encoder, pairs)
    print(f"student EMA weights: {out / 'final.pt'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from paperzoo_dckd.convert import load_weights
    from paperzoo_dckd.evaluate import evaluate
    from paperzoo_dckd.train import build_from_config, load_test_sets

    config = _config(args)
    spec = config.teacher if args.model == "teacher" else config.student
    if args.weights is not None:
        spec = dataclasses.replace(spec, checkpoint=None)
    model = build_from_config(spec, config.data.scale, args.model)
    if args.weights is not None:
        load_weights(model, args.weights, args.format, arch=f"{args.model} ({spec.arch})")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {}
    for name, pairs in load_test_sets(config).items():
        result = evaluate(
            model,
            pairs,
            config.data.scale,
            device=device,
            y_channel=config.evaluation.y_channel,
            crop_border=config.evaluation.crop_border,
            max_images=config.eval_max_images,
        )
        results[name] = {"psnr": result["psnr"], "ssim": result["ssim"]}
        channel = "Y" if config.evaluation.y_channel else "RGB"
        print(
            f"{name}: PSNR-{channel} {result['psnr']:.4f} dB, SSIM-{channel} {result['ssim']:.4f} "
            f"({len(result['per_image'])} images)"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from paperzoo_dckd.configuration import ModelConfig
    from paperzoo_dckd.convert import load_weights, save_weights
    from paperzoo_dckd.models import build_model
    from paperzoo_dckd.train import model_options

    spec = ModelConfig(arch=args.arch, options=json.loads(args.options))
    model = build_model(spec.arch, model_options(spec, args.scale), where="convert")
    ignored = load_weights(model, args.input, args.format, arch=args.arch)
    save_weights(model, args.output, source=str(args.input), arch=args.arch)
    print(f"wrote {args.output} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    if ignored:
        print(f"ignored {len(ignored)} keys not used by DCKD (e.g. {', '.join(ignored[:3])})")
    return 0


def cmd_bicubic(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from paperzoo_dckd.data import bicubic_downsample, list_images
    from paperzoo_shared.data.image_io import read_image, write_image

    files = list_images(args.hr_dir)
    for path in tqdm(files, desc=f"bicubic x{args.scale}", disable=not sys.stderr.isatty()):
        lr = bicubic_downsample(read_image(path, channel_order="rgb"), args.scale)
        write_image(
            Path(args.lr_dir) / f"{path.stem}{args.suffix.format(scale=args.scale)}.png",
            lr,
            channel_order="rgb",
        )
    print(f"wrote {len(files)} LR images to {args.lr_dir}")
    return 0


def cmd_prepare_div2k(args: argparse.Namespace) -> int:
    from paperzoo_dckd.prepare import prepare_div2k

    lr_dirs = {}
    if args.lr_root is not None:
        lr_dirs = {s: args.lr_root / f"X{s}" for s in args.scales if (args.lr_root / f"X{s}").is_dir()}
    counts = prepare_div2k(args.hr_dir, args.out, args.scales, lr_dirs)
    made = ", ".join(
        f"x{s} " + ("cut from the download" if s in lr_dirs else "MATLAB bicubic") for s in args.scales
    )
    print(f"wrote {counts['hr']} HR sub-images to {args.out / 'DIV2K_train_HR_sub'} and the LR ones ({made})")
    return 0


def cmd_fig8b(args: argparse.Namespace) -> int:
    from paperzoo_dckd.reproduce import run_fig8b
    from paperzoo_dckd.train import build_encoder, build_teacher, load_train_pairs

    config = _config(args)
    pairs = load_train_pairs(config)
    run_dir = args.run_dir
    encoder = build_encoder(config, run_dir / "encoder", lambda: pairs)
    teacher = build_teacher(config, run_dir / "teacher", lambda: pairs)
    curves = run_fig8b(config, run_dir, teacher, encoder, pairs, args.out)
    (args.out.with_suffix(".json")).write_text(json.dumps(curves, indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def cmd_geometry(args: argparse.Namespace) -> int:
    import platform
    import time

    import torch

    from paperzoo_dckd.geometry import gradient_ratio
    from paperzoo_shared.repro import atomic_write_json, git_info, machine_info, package_versions

    config = _config(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = gradient_ratio(config, batch_size=args.batch_size, seed=args.seed)
    record = {
        "command": "paperzoo-dckd " + " ".join(args.argv),
        "config": str(args.config),
        "overrides": list(args.overrides),
        "measurement": result,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "git": git_info(Path(__file__).resolve().parents[2]),
        "machine": machine_info(),
        "versions": package_versions(),
        "python": platform.python_version(),
    }
    print(json.dumps(record["measurement"], indent=2))
    if args.json is not None:
        atomic_write_json(args.json, record)
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from paperzoo_dckd.models import PAPER_CONFIGS, build_model, count_parameters

    for name, options in PAPER_CONFIGS.items():
        extra = {"upscale": args.scale} if options["arch"] in ("swinir", "rcan", "edsr") else {}
        print(f"{name:<20} {count_parameters(build_model(name, extra)) / 1e6:8.3f}M")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo-dckd", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train one method (teacher/encoder first if they have no checkpoint)"
    )
    _add_config(train)
    train.add_argument("--method", choices=sorted(METHODS), default="dckd")
    train.add_argument("--seed", type=int, help="seed (default: train.seed of the config)")
    train.add_argument(
        "--run-dir", type=Path, required=True, help="folder for checkpoints and final.pt (resumes)"
    )
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="PSNR/SSIM on the config's test sets (Y, crop = scale for SR; see evaluation.*)"
    )
    _add_config(evaluate)
    evaluate.add_argument("--weights", type=Path, help="weights of the evaluated model (ours or official)")
    evaluate.add_argument(
        "--format",
        default="auto",
        help="auto, ours, official_swinir, official_rcan, official_nafnet, official_restormer",
    )
    evaluate.add_argument("--model", choices=["student", "teacher"], default="student")
    evaluate.add_argument("--json", type=Path, help="also write the results here")
    evaluate.set_defaults(func=cmd_eval)

    convert = commands.add_parser(
        "convert", help="official SwinIR/RCAN/NAFNet/Restormer/VQGAN weights -> ours (strict key check)"
    )
    convert.add_argument("input", type=Path)
    convert.add_argument("output", type=Path)
    convert.add_argument("--arch", required=True, help="e.g. swinir_teacher, rcan_teacher, vqgan_f16_n1024")
    convert.add_argument("--scale", type=int, default=None, help="SR scale (sets upscale)")
    convert.add_argument("--options", default="{}", help="extra constructor options as JSON")
    convert.add_argument(
        "--format",
        default="auto",
        help="auto, official_swinir, official_rcan, official_nafnet, official_restormer, taming_vqgan",
    )
    convert.set_defaults(func=cmd_convert)

    bicubic = commands.add_parser("bicubic", help="MATLAB-bicubic LR images of a folder of HR images")
    bicubic.add_argument("hr_dir", type=Path)
    bicubic.add_argument("lr_dir", type=Path)
    bicubic.add_argument("--scale", type=int, required=True)
    bicubic.add_argument("--suffix", default="x{scale}", help="appended to the file stem (default x{scale})")
    bicubic.set_defaults(func=cmd_bicubic)

    prepare = commands.add_parser(
        "prepare-div2k",
        help="DIV2K downloads -> BasicSR sub-images (480 crops, step 240) and LR X{s}_sub folders",
    )
    prepare.add_argument("hr_dir", type=Path, help="DIV2K_train_HR (the download, 800 PNGs)")
    prepare.add_argument("--out", type=Path, default=Path("datasets/DIV2K"), help="default datasets/DIV2K")
    prepare.add_argument(
        "--lr-root",
        type=Path,
        help="DIV2K_train_LR_bicubic (holding X2, X3, X4); without it the LR images are made by MATLAB bicubic",
    )
    prepare.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    prepare.set_defaults(func=cmd_prepare_div2k)

    fig8b = commands.add_parser("fig8b", help="Fig. 8b mechanism check: history-output PSNR vs the student")
    _add_config(fig8b)
    fig8b.add_argument(
        "--out", type=Path, required=True, help="PNG path (a .json of the curves is written beside)"
    )
    fig8b.add_argument("--run-dir", type=Path, default=Path("runs/fig8b"))
    fig8b.set_defaults(func=cmd_fig8b)

    geometry = commands.add_parser(
        "geometry",
        help="contrastive/reconstruction gradient ratio at initialisation (random weights at the config's sizes)",
    )
    _add_config(geometry)
    geometry.add_argument("--batch-size", type=int, default=4)
    geometry.add_argument("--seed", type=int, default=0)
    geometry.add_argument("--threads", type=int, default=1)
    geometry.add_argument("--json", type=Path, help="write the measurement with its provenance here")
    geometry.set_defaults(func=cmd_geometry)

    params = commands.add_parser("params", help="parameter counts of the paper's networks")
    params.add_argument("--scale", type=int, default=4)
    params.set_defaults(func=cmd_params)
    add_debug_flag(parser)
    for sub in commands.choices.values():
        add_debug_flag(sub)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.argv = [a for a in argv if a != "--debug"]
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: a known error (bad config or input, missing file) is one line and exit status 2; the
    traceback only with ``--debug`` or ``PAPERZOO_DEBUG=1``."""
    return run_cli("paperzoo-dckd", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
