"""``paperzoo-huwsod``: prepare data, pretrain, train, evaluate and convert checkpoints.

    paperzoo-huwsod prepare  --config mini
    paperzoo-huwsod train    --config mini --method huwsod --out runs/huwsod
    paperzoo-huwsod eval     --config mini --method huwsod --weights runs/huwsod/model.pt --tta
    paperzoo-huwsod convert  resnet18_ws_model_120_d2.pkl wsr18.pt

``--config`` is a preset name (smoke, mini, full, full_coco) or a YAML path; ``--set key=value`` overrides.
Known errors (bad config values, missing or malformed data) print one line and exit with status 2; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from paperzoo_shared.errors import UserError, add_debug_flag, run_cli


def _config(args: argparse.Namespace):
    from paperzoo_huwsod.configuration import HUWSODConfig, apply_method
    from paperzoo_huwsod.paper import PAPER
    from paperzoo_shared.config import load_config

    path = Path(args.config)
    if not path.suffix:
        path = PAPER.data_root() / "configs" / f"{args.config}.yaml"
    config = load_config(HUWSODConfig, path, overrides=args.set or [])
    if getattr(args, "method", None):
        config = apply_method(config, args.method)
    return config


def _cache(args: argparse.Namespace) -> Path:
    from paperzoo_huwsod.reproduce import cache_root

    return Path(args.cache) if args.cache else cache_root() / "data"


def cmd_prepare(args: argparse.Namespace) -> int:
    from paperzoo_huwsod.data import dataset_root, write_weak_labels
    from paperzoo_huwsod.reproduce import class_names_of, split_records

    config = _config(args)
    root = dataset_root(config.data, _cache(args))
    splits = {*config.data.train_splits, config.data.test_split, *config.data.corloc_splits}
    if config.data.val_split:
        splits.add(config.data.val_split)
    for split in sorted(splits):
        path = (
            write_weak_labels(config.data, root, split, force=args.force)
            if config.data.format != "shapes"
            else None
        )
        # read it back as training and evaluation will: a missing image or a bad entry fails here, naming it
        records = split_records(config, root, split, class_names_of(config, root))
        print(f"{split}: {path or root} ({len(records)} images)")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from paperzoo_huwsod.train import pretrain_backbone

    config = _config(args)
    path = pretrain_backbone(config, Path(args.out), _cache(args), progress=True)
    print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from paperzoo_huwsod.train import fit

    config = _config(args)
    b = config.model.backbone
    if b.freeze and not (args.backbone or b.weights) and not args.random_backbone:
        raise UserError(
            "the backbone is frozen (model.backbone.freeze) but no weights were given, so the detector would "
            "train on a random backbone; pass --backbone stage0.pt (from `paperzoo-huwsod pretrain`) or a "
            "converted checkpoint, or --random-backbone if that is what you want"
        )
    weights = fit(
        config,
        Path(args.out),
        cache_dir=_cache(args),
        backbone_weights=Path(args.backbone) if args.backbone else None,
        progress=not args.no_progress,
    )
    print(weights)
    return 0


def _eval_config(args: argparse.Namespace):
    """``--config``/``--method`` when given, else the config stored in ``model.pt`` (``--set`` applies)."""
    if args.method or args.config:
        if not args.config:
            args.config = "mini"
        return _config(args)
    import torch

    from paperzoo_huwsod.configuration import HUWSODConfig
    from paperzoo_shared.config import apply_overrides, from_dict

    path = Path(args.weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} do not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "config" not in state:
        raise UserError(f"{path} stores no config; pass --config and --method")
    sources: dict[str, str] = {}
    data = apply_overrides(state["config"], sources, args.set or [])
    return from_dict(HUWSODConfig, data, sources=sources)


def cmd_eval(args: argparse.Namespace) -> int:
    from paperzoo_huwsod.data import dataset_root, offline_proposals
    from paperzoo_huwsod.evaluate import predict
    from paperzoo_huwsod.reproduce import class_names_of, evaluate_detections
    from paperzoo_huwsod.train import load_model

    config = _eval_config(args)
    if args.tta:
        config.eval.tta = True
    model, names = load_model(config, Path(args.weights))
    root = dataset_root(config.data, _cache(args))
    if names != class_names_of(config, root):
        raise UserError(
            f"the weights were trained on classes {names}, the data has {class_names_of(config, root)}"
        )

    def run(records):
        proposals = offline_proposals(records, config.model.proposals, _cache(args), config.data.skip_bad)
        return predict(
            model,
            records,
            config.eval,
            tta=config.eval.tta,
            skip_bad=config.data.skip_bad,
            progress=True,
            proposals=proposals,
        )

    metrics = evaluate_detections(config, root, names, run)
    print(json.dumps({k: round(v, 3) for k, v in metrics.items()}, indent=1))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from paperzoo_huwsod.convert import convert_file

    summary = convert_file(args.src, args.dst)
    print(json.dumps({**summary, "skipped": summary["skipped"][:20]}, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo-huwsod", description=__doc__.split("\n\n")[0])
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, method: bool = True, config_default: str = "mini") -> None:
        p.add_argument(
            "--config",
            default=config_default,
            help="preset name (smoke, mini, full, full_coco) or a YAML path"
            + ("" if config_default else "; default: the config stored in the weights"),
        )
        p.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="dotted config override (repeatable)"
        )
        p.add_argument(
            "--cache", default="", help="where generated data is kept (default: the paperzoo-huwsod cache)"
        )
        add_debug_flag(p)
        if method:
            p.add_argument("--method", default="", help="apply a method's flags (wsddn, oicr, huwsod, ...)")

    p = sub.add_parser("prepare", help="generate WSOD-Shapes or write the image-label files of VOC/COCO")
    common(p, method=False)
    p.add_argument("--force", action="store_true", help="rewrite existing image-label files")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "pretrain", help="stage 0: the backbone as a multi-label classifier on the image labels"
    )
    common(p, method=False)
    p.add_argument("--out", required=True, help="output file (.pt)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train", help="train a detector (resumes from OUT/checkpoints/last.ckpt)")
    common(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--backbone", default="", help="stage-0 or converted backbone weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--random-backbone",
        action="store_true",
        help="allow a frozen backbone without weights (random features; for tests)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="evaluate trained weights: mAP, COCO AP and CorLoc (config from model.pt by default)"
    )
    common(p, config_default="")
    p.add_argument("--weights", required=True, help="model.pt written by train")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("convert", help="official detectron2 checkpoint (.pkl/.pth) -> ours")
    p.add_argument("src")
    p.add_argument("dst")
    add_debug_flag(p)
    p.set_defaults(func=cmd_convert)
    return parser


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-huwsod", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
