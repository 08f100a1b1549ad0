"""``paperzoo-vita``: token arithmetic of VITA's inputs and a check of the released JSON data.

    paperzoo-vita tokens --image-size 1920x1080 [--max-tiles 12]    # tiles and image tokens of one image
    paperzoo-vita tokens --audio-seconds 10                          # fbank frames and audio tokens of a clip
    paperzoo-vita tokens --video-seconds 40 [--max-frames 32]       # sampled frames and tokens of a 1 fps video
    paperzoo-vita check-data DATA.json --image-folder DIR --audio-folder DIR [--video-folder DIR]

``paperzoo reproduce vita --preset smoke`` runs the smoke table (see the README).
"""

from __future__ import annotations

import argparse
import json

from paperzoo_shared.errors import UserError, add_debug_flag, run_cli
from paperzoo_vita import __version__


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}") from error
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("width and height must be positive")
    return w, h


def cmd_tokens(args: argparse.Namespace) -> int:
    from paperzoo_vita.audio import audio_token_count, num_fbank_frames
    from paperzoo_vita.data import closest_grid, num_tiles, sample_frame_indices

    per_tile = 256
    out: dict = {}
    if args.image_size:
        w, h = args.image_size
        tiles = num_tiles(w, h, args.max_tiles)
        out["image"] = {
            "grid": list(closest_grid(w, h, 448, 1, args.max_tiles)),
            "tiles": tiles,
            "tokens": tiles * per_tile,
        }
    if args.audio_seconds is not None:
        if args.audio_seconds < 0:
            raise UserError("--audio-seconds must be >= 0")
        frames = num_fbank_frames(round(args.audio_seconds * 16000))
        out["audio"] = {"fbank_frames": frames, "tokens": audio_token_count(frames)}
    if args.video_seconds is not None:
        if args.video_seconds <= 0:
            raise UserError("--video-seconds must be > 0")
        idx = sample_frame_indices(max(1, round(args.video_seconds * args.fps)), args.fps, args.max_frames)
        out["video"] = {"frames": len(idx), "indices": idx, "tokens": len(idx) * per_tile}
    if not out:
        raise UserError("give --image-size, --audio-seconds or --video-seconds")
    print(json.dumps(out, indent=2))
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from paperzoo_vita.data import read_vita_json

    records = read_vita_json(args.data, args.image_folder, args.audio_folder, args.video_folder)
    missing = [
        str(p)
        for r in records
        for p in [*r.images, *r.audios, *([r.video] if r.video else [])]
        if not p.exists()
    ]
    print(
        json.dumps(
            {"records": len(records), "missing_files": len(missing), "first_missing": missing[:5]}, indent=2
        )
    )
    return 1 if missing else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo-vita", description="VITA-1.0 (arXiv 2408.05211) tools")
    parser.add_argument("--version", action="version", version=f"paperzoo-vita {__version__}")
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    tokens = sub.add_parser("tokens", help="tiles / frames / audio tokens of an input")
    tokens.add_argument("--image-size", type=_size, help="WIDTHxHEIGHT of an image")
    tokens.add_argument(
        "--max-tiles", type=int, default=12, help="max_dynamic_patch (1..12; 1 for the real-time demo)"
    )
    tokens.add_argument("--audio-seconds", type=float, help="duration of a 16 kHz clip")
    tokens.add_argument("--video-seconds", type=float, help="duration of a video")
    tokens.add_argument("--fps", type=float, default=25.0, help="frame rate of the video")
    tokens.add_argument("--max-frames", type=int, default=16, help="16 (release), 32 for Video-MME")
    tokens.set_defaults(func=cmd_tokens)
    check = sub.add_parser("check-data", help="read a released-format JSON and check that its files exist")
    check.add_argument("data")
    check.add_argument("--image-folder", default=".")
    check.add_argument("--audio-folder", default=".")
    check.add_argument("--video-folder", default=".")
    check.set_defaults(func=cmd_check_data)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli("paperzoo-vita", _main, argv)
