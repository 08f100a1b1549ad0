"""Video-MME frame extraction throughput: videos per minute with N decoding workers against 1.

Writes the synthetic stand-in (moving shapes, in the release layout) once, then times
``paperzoo_videomme.frames.FrameLoader`` over every video (probe, official frame sampling, decord decoding
and the official subtitle alignment) for each worker count. Worker processes are started with ``spawn``
inside the timed region, so the figure includes their start-up, as a real run pays it. Never asserts a speed.

    python benchmarks/videomme_frame_extraction.py [--videos 48] [--size 224] [--workers 0,1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = (
    Path(__file__).resolve().parent.parent / "packages/videomme/results/bench/frame_extraction_cpu.json"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument(
        "--size", type=int, default=224, help="frame width and height of the synthetic videos"
    )
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--duration", type=float, nargs=2, default=(10.0, 20.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video")
    parser.add_argument("--workers", default="0,1,2,4", help="worker counts; 0 decodes in the main process")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subtitles", default="official", help="subtitle mode computed alongside")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from paperzoo_videomme.data import load_videomme, write_synthetic_release
    from paperzoo_videomme.frames import FrameLoader, jobs_for

    from paperzoo_shared.repro import git_info, package_versions

    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="videomme-bench-") as tmp:
        start = time.perf_counter()
        scene = {
            "width": args.size,
            "height": args.size,
            "fps": args.fps,
            "duration_range_s": tuple(args.duration),
            "duration_buckets_s": (args.duration[0] + 1, args.duration[1] - 1),
            "size_range": (args.size / 6, args.size / 4),
        }
        root = write_synthetic_release(Path(tmp), n_videos=args.videos, seed=0, scene=scene)
        generate_s = time.perf_counter() - start
        dataset = load_videomme(root, subtitles=True)
        jobs = jobs_for(dataset.videos, num_frames=args.frames, subtitles=args.subtitles)
        total_frames = sum(
            json.loads((root / "meta.json").read_text())["videos"][i]["num_frames"]
            for i in range(args.videos)
        )
        results = []
        for workers in counts:
            walls = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                decoded = list(FrameLoader(workers).imap(jobs))
                walls.append(time.perf_counter() - start)
                assert all(d.error is None for d in decoded), [d.error for d in decoded if d.error]
            median = statistics.median(walls)
            results.append(
                {
                    "workers": workers,
                    "wall_s": walls,
                    "median_wall_s": median,
                    "videos_per_min": 60.0 * args.videos / median,
                    "per_video_decode_s": statistics.mean(d.seconds for d in decoded),
                }
            )
            print(
                f"workers={workers}: {60.0 * args.videos / median:7.1f} videos/min (median of {walls})",
                flush=True,
            )
    serial = next((r for r in results if r["workers"] == 1), results[0])
    for r in results:
        r["speedup_vs_1_worker"] = r["videos_per_min"] / serial["videos_per_min"]
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    report = {
        "benchmark": "videomme_frame_extraction",
        "what": "probe + official midpoint sampling + decord decode + official subtitle alignment, per video",
        "videos": args.videos,
        "video_size": args.size,
        "video_fps": args.fps,
        "video_duration_s": list(args.duration),
        "total_frames": total_frames,
        "frames_per_video": args.frames,
        "subtitles": args.subtitles,
        "repeats": args.repeats,
        "generate_s": generate_s,
        "results": results,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_average": load},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["python", *sys.argv]),
        "git": git_info(Path(__file__).resolve().parent),
        "versions": package_versions(["paperzoo-videomme", "decord"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
