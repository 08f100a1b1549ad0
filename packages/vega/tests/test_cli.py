"""The CLI: help, one-line errors (exit 2) naming the file and line, and the tool chain end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_vega.cli import main


def test_help_lists_commands_and_debug(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in (
        "validate",
        "score",
        "build",
        "synthetic",
        "evaluate",
        "train",
        "--debug",
        "openai:NAME@URL",
    ):
        assert word in out


def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "IITC_4k_test.json"
    bad.write_text('{"id": 1}\n')
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == f"paperzoo-vega: error: {bad}:1: IITC record lacks title, caption, context, question, answer, image_paths, truth_fig_idx"
    )
    assert "Traceback" not in "\n".join(err)
    assert main(["validate", str(bad), "--skip-bad"]) == 1  # reported and skipped: not a clean file
    assert (
        main(["evaluate", str(bad), "--model", "nonsense", "--out", str(tmp_path / "r"), "--skip-bad"]) == 2
    )
    with pytest.raises(Exception, match="IITC record lacks"):
        main(["validate", str(bad), "--debug"])


def test_synthetic_build_train_evaluate_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus, rel, ck, run = (tmp_path / n for n in ("corpus", "rel", "ck", "run"))
    assert main(["synthetic", str(corpus), "--documents", "4", "--seed", "2"]) == 0
    assert main(["build", str(corpus / "docs"), "--images", str(corpus / "imgs"), "--out", str(rel), "--budget",
                 "200", "--image-tokens", "4", "--max-images", "3", "--ita", "3", "--split", "test"]) == 0  # fmt: skip
    assert "filtered questions: no_figure_reference 4" in capsys.readouterr().out
    iitc = str(rel / "IITC_0k_test.json")
    assert main(["train", "--data", str(rel), "--images", str(corpus / "imgs"), "--mix", "IITC_0k_test.json=1",
                 "--mix", "ITA_3picture_test.json=1", "--model", "tiny", "--save", str(ck), "--steps", "1",
                 "--batch-size", "2", "--cpu", "--prompt", "none"]) == 0  # fmt: skip
    common = [
        "evaluate",
        iitc,
        "--images",
        str(corpus / "imgs"),
        "--model",
        f"hf:{ck}",
        "--out",
        str(run),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--max-new-tokens",
        "4",
        "--no-progress",
        "--prompt",
        "none",
    ]
    capsys.readouterr()
    assert main([*common, "--limit", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["generated"] == 3
    assert main(common) == 0  # the rest only
    report = json.loads(capsys.readouterr().out)
    assert report["resumed"] == 3 and report["generated"] == report["n"] - 3
    assert main(["score", str(run / "responses.jsonl")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["n"] == report["n"] and scored["duplicates"] == 0 and scored["task"] == "iitc"
