"""Real-video extraction (decord), bad input reported per sample, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from paperzoo_t2vid.cli import main
from paperzoo_t2vid.data import convert_videos, read_records
from paperzoo_t2vid.modeling_t2vid import one_fps_indices, seq_frames

from paperzoo_shared.data import write_video


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("videos")
    for name, seconds in (("short", 10), ("long", 30)):
        n = seconds * 4  # 4 fps; frame k has brightness k so the decoded index can be read back
        frames = np.stack([np.full((32, 32, 3), k % 250, np.uint8) for k in range(n)])
        write_video(root / f"{name}.mp4", frames, fps=4.0)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


def test_videos_one_fps_then_24_middle_frames(video_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    conv = [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "Nothing."}]
    records = [
        {"id": "a", "video": "short.mp4", "conversations": conv},
        {"id": "b", "video": "long.mp4", "conversations": conv},
        {"id": "c", "video": "broken.mp4", "conversations": conv},
        {"id": "d", "conversations": conv},
        {"id": "e", "video": "../escape.mp4", "conversations": conv},
    ]
    out, report = convert_videos(records, video_root, tmp_path, source="ann.json")
    summary = report.summary()
    assert (summary["kept"], summary["corrupt"], summary["invalid"]) == (2, 2, 1)
    assert summary["reasons"] == {"missing_field": 1, "video": 2}
    assert len(out[0]["image"]) == 10 and len(out[1]["image"]) == 24
    # the long clip: 30 one-second frames, 24 middles; frame 0 of the output is second seq_frames(30, 24)[0]
    grid = one_fps_indices(120, 4.0)
    assert len(grid) == 30
    second = seq_frames(30, 24)[0]
    assert out[1]["image"]["<image_00>"] == f"frames/long/frame_{second + 1:04d}.png"
    from paperzoo_shared.data import read_image

    pixel = read_image(tmp_path / out[1]["image"]["<image_00>"], channel_order="rgb").mean()
    assert abs(pixel - grid[second]) < 6  # the decoded frame is the one at that second (mp4v is lossy)
    assert out[0]["conversations"][0]["content"].startswith("<image_00>\n") and "<video>" not in json.dumps(
        out
    )


def test_cli_synthesize_mix_validate_diversity(tmp_path, font_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "la.json"
    assert main(["embedded", str(src), "--kind", "longqlora", "--n", "3", "--seed", "2"]) == 0
    bad = read_records(src) + [{"context": "only a context"}]
    src.write_text(json.dumps(bad))
    capsys.readouterr()
    assert main(["synthesize", str(src), "--format", "longqlora", "--out", str(tmp_path / "out"),
                 "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"] == 4 and summary["invalid"] == 1 and summary["reasons"]["missing_field"] == 1
    assert summary["kept"] + summary["filtered"] + summary["overflow"] == 3
    lines = (tmp_path / "out" / "report.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "missing field 'question'" in lines[3]
    assert summary["kept"] >= 1
    assert main(["validate", str(tmp_path / "out" / "t2vid.json"), "--root", str(tmp_path / "out")]) == 0
    vids = tmp_path / "v.json"
    vids.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": f"<video>\nQ{i}"}]} for i in range(6)])
    )
    syn = tmp_path / "out" / "fake_vid.json"
    assert main(["mix", "--synthetic", str(syn), "--video", str(vids), "--total", "6", "--ratio", "0",
                 "--out", str(tmp_path / "mix.json")]) == 0  # fmt: skip
    assert len(read_records(tmp_path / "mix.json")) == 6
    capsys.readouterr()
    assert main(["diversity", "--set", f"video={vids}", "--embedder", "tfidf"]) == 0
    assert json.loads(capsys.readouterr().out)["video"] > 0


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert (
        main(["synthesize", str(tmp_path / "none.json"), "--format", "longalpaca", "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("paperzoo-t2vid: error: source JSON file") and "does not exist" in err[0]
    src = tmp_path / "s.json"
    src.write_text("[]")
    assert (
        main(
            [
                "synthesize",
                str(src),
                "--format",
                "longalpaca",
                "--out",
                str(tmp_path),
                "--font",
                "/no/Arial.ttf",
            ]
        )
        == 2
    )
    assert "fonts-dejavu-core" in capsys.readouterr().err
    assert main(["diversity", "--set", "nofile"]) == 2
    assert "NAME=FILE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--debug" in capsys.readouterr().out
