"""The smoke preset end to end through the harness (with resumption), and the CLI's help and errors."""

from __future__ import annotations

import json

import pytest
from paperzoo_csfiqa.cli import main

from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import run_reproduction


def test_smoke_preset_end_to_end_and_resume(tmp_path):
    paper = get_paper("csfiqa")
    [(json_path, markdown)] = run_reproduction(
        paper, preset="smoke", out_dir=tmp_path, command="pytest smoke"
    )
    results = json.loads(json_path.read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert list(rows) == [
        "brisque",
        "cnn",
        "vit",
        "csfiqa",
        "csfiqa_no_sfa",
        "csfiqa_no_scl",
        "csfiqa_no_nsm",
    ]
    for row in rows.values():
        assert set(row["metrics"]) == {"srcc", "plcc", "plcc4", "srcc_sot"}
        assert -1 <= row["metrics"]["srcc"]["mean"] <= 1
    assert rows["csfiqa"]["paper"] == {"srcc": 0.967}
    assert "| CSFIQA |" in markdown and "0.967" in markdown
    assert any("LIVEC 0.905" in note for note in results["notes"])
    assert any(note.startswith("CSFIQA − CSFIQA −SFA (SRCC)") for note in results["notes"])
    assert (tmp_path / "scale_dependence.png").stat().st_size > 1000
    assert len(results["extra"]["scale_dependence"]) == 25
    ledger = (tmp_path / "main.partial.jsonl").read_text().splitlines()
    assert len(ledger) == 7 * 2
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("**/final.pt")}
    run_reproduction(paper, preset="smoke", out_dir=tmp_path, command="pytest smoke")
    assert len((tmp_path / "main.partial.jsonl").read_text().splitlines()) == 14
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("**/final.pt")} == before


def test_cli_help_lists_commands_and_debug(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "check-data", "params", "scale-table", "--debug"):
        assert command in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "csiq_label.txt").write_text("a.AWGN.1.png zero\n")
    assert main(["check-data", "--source", "csiq", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("paperzoo-csfiqa: error: ") and "csiq_label.txt:1" in err[0]
    assert main(["params", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_cli_params_reports_the_full_configuration(capsys):
    assert main(["params"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frozen_block"] == 202_383_360 and 44e9 < report["macs"] < 48e9
