"""The command line: evaluate on the synthetic set in the release layout, score, validate, extract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_videomme.cli import main, parse_model


def test_evaluate_and_score(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["evaluate", "--data", str(synthetic_root), "--model", "subtitle-reader", "--subtitles", "official",
                 "--frames", "4", "--out", str(out), "--no-progress", "--rule", "official", "--rule", "lmms_eval"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Evaluation on the entire dataset" in printed and "official: overall" in printed
    assert json.loads((out / "scores.json").read_text()).keys() == {"official", "lmms_eval"}
    assert (
        main(
            ["score", str(out / "results.json"), "--rule", "official", "--rule", "vlmevalkit", "--task-types"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "##### vlmevalkit" in printed and "Information Synopsis:" in printed


def test_validate_reports_problems(release_copy: Path, capsys) -> None:
    assert main(["validate", "--data", str(release_copy)]) == 0
    (release_copy / "video" / "shapes-001.mp4").unlink()
    assert main(["validate", "--data", str(release_copy)]) == 1
    assert "[missing_video]" in capsys.readouterr().out


def test_extract_and_errors(capsys, tmp_path: Path) -> None:
    assert main(["extract", "Based on the video, the answer is C."]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert lines["official"] == "B" and lines["lmms_eval"] == "C"
    assert main(["evaluate", "--data", str(tmp_path), "--model", "subtitle-reader"]) == 2
    assert "no Video-MME annotations" in capsys.readouterr().err


def test_model_specs() -> None:
    assert parse_model("tiny-qwen2-vl") == {"kind": "tiny_qwen2_vl"}
    assert parse_model("hf:/ckpt/llava") == {"kind": "transformers", "path": "/ckpt/llava"}
    assert parse_model("openai:Qwen/Qwen2-VL-7B@http://127.0.0.1:8000/v1") == {
        "kind": "openai", "model_name": "Qwen/Qwen2-VL-7B", "base_url": "http://127.0.0.1:8000/v1"
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown --model"):
        parse_model("gpt")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["evaluate", "--data", "{missing}", "--model", "subtitle-reader"], "is not a folder"),
        (["evaluate", "--data", "{tmp}", "--model", "gpt"], "unknown --model 'gpt'"),
        (["evaluate", "--data", "{tmp}", "--model", "subtitle-reader", "--frames", "0"], "num_frames"),
        (["score", "{bad_json}"], "bad.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    names = {"missing": tmp_path / "nope", "tmp": tmp_path, "bad_json": tmp_path / "bad.json"}
    argv = [a.format(**names) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("paperzoo-videomme: error: ") and expected in err[0]
    assert "--debug" in err[1] and len(err) == 2 and "Traceback" not in "\n".join(err)
    with pytest.raises(Exception, match=expected):
        main([*argv, "--debug"])
    with pytest.raises(Exception, match=expected):
        main(["--debug", *argv])
