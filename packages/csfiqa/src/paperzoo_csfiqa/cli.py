"""``paperzoo-csfiqa``: train, evaluate, check a dataset, count parameters and MACs, the scale table.

    paperzoo-csfiqa train --config configs/full.yaml --set data.source=csiq --set data.root=/data/CSIQ --seed 0 --run-dir runs/csiq
    paperzoo-csfiqa eval --config configs/full.yaml --weights runs/csiq/csfiqa/seed0/final.pt --seed 0
    paperzoo-csfiqa check-data --source livec --root /data/LIVEC
    paperzoo-csfiqa params --config configs/full.yaml
    paperzoo-csfiqa scale-table --out scale_dependence.png

Configs are YAML files loaded into :class:`paperzoo_csfiqa.configuration.ExperimentConfig`; ``--set key=value``
overrides any key. Known errors (a bad config, a malformed score file) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paperzoo_csfiqa.configuration import METHODS, ExperimentConfig
from paperzoo_shared.config import load_config
from paperzoo_shared.errors import UserError, add_debug_flag, run_cli


def _config(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(ExperimentConfig, args.config, overrides=args.overrides)


def _add_config(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=required,
        help="experiment YAML (configs/mini.yaml, configs/full.yaml)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, e.g. data.root=/data/CSIQ",
    )


def _split(config: ExperimentConfig, seed: int):
    from paperzoo_csfiqa.data import split_indices
    from paperzoo_csfiqa.reproduce import load_data

    dataset = load_data(config)
    return dataset, split_indices(dataset.refs(), seed, config.data.train_fraction, config.data.val_fraction)


def cmd_train(args: argparse.Namespace) -> int:
    from paperzoo_csfiqa.train import train_run

    config = _config(args)
    if METHODS[args.method]["model"] == "brisque":
        raise UserError("brisque is not trained with Lightning; run `paperzoo reproduce csfiqa` for its row")
    dataset, split = _split(config, args.seed)
    out = args.run_dir / args.method / f"seed{args.seed}"
    result = train_run(config, args.method, args.seed, dataset, split, out)
    print(json.dumps(result["metrics"], indent=2))
    print(f"weights: {out / 'final.pt'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from paperzoo_csfiqa.data import EvalCrops
    from paperzoo_csfiqa.train import build_network, correlation_metrics, predict

    config = _config(args)
    if not args.weights.is_file():
        raise UserError(f"weights file {args.weights} does not exist")
    dataset, split = _split(config, args.seed)
    network = build_network(config, args.method)
    network.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True), strict=True)
    indices = split["test"] if args.part == "test" else list(range(len(dataset)))
    mos = dataset.normalized_mos()
    crops = EvalCrops(dataset, indices, mos, config.train.crop, config.train.test_crops, config.data.resize)
    print(json.dumps(correlation_metrics(predict(network, crops), mos[indices]), indent=2))
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from paperzoo_csfiqa.data import read_dataset

    dataset = read_dataset(args.source, args.root)
    for index in range(len(dataset)) if args.decode else ():
        dataset.load(index)
    refs = len(set(dataset.refs()))
    print(
        f"{dataset.name}: {len(dataset)} images, {refs} references, "
        f"{'MOS' if dataset.higher_is_better else 'DMOS'} {min(s.mos for s in dataset.samples):g}..{max(s.mos for s in dataset.samples):g}"
        + (", every image decoded" if args.decode else "")
    )
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    import torch

    from paperzoo_csfiqa.modeling_csfiqa import CSFIQA, count_macs, parameter_breakdown

    config = _config(args) if args.config else ExperimentConfig()
    with torch.device("meta"):
        model = CSFIQA(config.model)
    size = config.model.encoder.img_size
    report = parameter_breakdown(model)
    report["macs"] = count_macs(model, torch.empty(1, 3, size, size, device="meta"))
    print(json.dumps(report, indent=2))
    return 0


def cmd_scale_table(args: argparse.Namespace) -> int:
    from paperzoo_csfiqa.configuration import DataConfig
    from paperzoo_csfiqa.data import scale_dependence
    from paperzoo_csfiqa.reproduce import plot_scale_dependence

    data = DataConfig()
    table = scale_dependence(data.synthetic_refs, args.size)
    for row in table:
        print(
            f"{row['distortion']:9s} L{row['level']}  SSIM-Y full {row['ssim_full']:.3f}  half {row['ssim_half']:.3f}  ({row['delta']:+.3f})"
        )
    if args.out:
        print(f"plot: {plot_scale_dependence(table, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo-csfiqa", description=__doc__.split("\n\n")[0])
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one method on one split (resumes from last.ckpt)")
    _add_config(train)
    train.add_argument("--method", choices=[m for m in METHODS if m != "brisque"], default="csfiqa")
    train.add_argument("--seed", type=int, default=0, help="split seed (and training seed)")
    train.add_argument("--run-dir", type=Path, default=Path("runs"))
    train.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="multi-crop SRCC/PLCC of saved weights on a split's test part")
    _add_config(ev)
    ev.add_argument("--weights", type=Path, required=True)
    ev.add_argument("--method", choices=[m for m in METHODS if m != "brisque"], default="csfiqa")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--part", choices=["test", "all"], default="test")
    ev.set_defaults(func=cmd_eval)
    check = sub.add_parser("check-data", help="read a dataset in its released layout and report problems")
    check.add_argument(
        "--source",
        required=True,
        choices=["live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq", "flive"],
    )
    check.add_argument("--root", type=Path, required=True)
    check.add_argument("--decode", action="store_true", help="also decode every image")
    check.set_defaults(func=cmd_check_data)
    params = sub.add_parser("params", help="parameters per part and MACs of a configuration (default: full)")
    _add_config(params, required=False)
    params.set_defaults(func=cmd_params)
    scale = sub.add_parser("scale-table", help="FR score of each distortion at full vs half scale")
    scale.add_argument("--size", type=int, default=128)
    scale.add_argument("--out", type=Path, default=None)
    scale.set_defaults(func=cmd_scale_table)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-csfiqa", _main, argv)
