"""Provenance, the resume ledger, seeds, output folders, file modes and `paperzoo report` outside a checkout."""

from __future__ import annotations

import json
import os
import stat

import pytest

from paperzoo_shared import cli
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import RunLedger, parse_seeds, provenance, render_markdown, run_reproduction


def test_results_from_a_checkout_record_its_git_state(fake_paper, tmp_path):
    # the fake package folder is not a git repository: its state is unknown, never the output folder's
    (tmp_path / "elsewhere").mkdir()
    ((path, _),) = run_reproduction(
        get_paper("fakepaper"), preset="smoke", table_id="main", out_dir=tmp_path / "elsewhere"
    )
    assert json.loads(path.read_text())["git"] == {"commit": None, "dirty": None}


def test_results_from_a_wheel_record_the_installed_distribution(fake_paper, tmp_path, monkeypatch):
    paper = get_paper("fakepaper")
    monkeypatch.setattr(type(paper), "source_root", lambda self: None)
    monkeypatch.setattr(type(paper), "data_root", lambda self: fake_paper)
    assert provenance(paper) == {"installed": "paperzoo-fakepaper 0.1.0"}
    ((path, markdown),) = run_reproduction(paper, preset="smoke", table_id="main", out_dir=tmp_path / "out")
    assert json.loads(path.read_text())["git"] == {"installed": "paperzoo-fakepaper 0.1.0"}
    assert "installed paperzoo-fakepaper 0.1.0" in markdown


def test_a_cut_ledger_line_loses_only_itself(tmp_path):
    path = tmp_path / "t.partial.jsonl"
    ledger = RunLedger(path, commit="c1")
    ledger.put("a", 0, "f", {"acc": 1.0})
    with path.open("a") as handle:
        handle.write('{"row": "a", "seed": 1, "fingerp')  # the kill cut this record
    RunLedger(path, commit="c1").put("a", 2, "f", {"acc": 3.0})
    reread = RunLedger(path)
    assert reread.get("a", 0, "f") == {"acc": 1.0}
    assert reread.get("a", 1, "f") is None
    assert reread.get("a", 2, "f") == {"acc": 3.0}  # the record after the cut line survives


def test_resumed_run_sums_time_and_marks_restored_rows(fake_paper, tmp_path, monkeypatch):
    paper = get_paper("fakepaper")
    out = tmp_path / "out"
    monkeypatch.setenv("FAKE_FAIL_AT_SEED", "2")
    with pytest.raises(RuntimeError):
        run_reproduction(paper, preset="mini", table_id="main", out_dir=out)
    # the first invocation spent (recorded) 5 s and 4 s of CPU on each of seeds 0 and 1, at commit "old"
    records = [json.loads(line) for line in (out / "main.partial.jsonl").read_text().splitlines()]
    for record in records:
        record.update(commit="old", wall_s=5.0, cpu_s=4.0)
    (out / "main.partial.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.delenv("FAKE_FAIL_AT_SEED")
    ((path, markdown),) = run_reproduction(paper, preset="mini", table_id="main", out_dir=out)
    results = json.loads(path.read_text())
    assert results["wall_time_s"] >= 10.0 and results["cpu_time_s"] >= 8.0
    assert results["wall_time_s"] < 10.0 + 60  # the second invocation took far less than a minute
    assert results["restored_from_ledger"] == [
        {"row": "ours", "seed": 0, "commit": "old"},
        {"row": "ours", "seed": 1, "commit": "old"},
    ]
    assert "computed by an earlier commit: ours seed 0 (old), ours seed 1 (old)" in markdown


def test_fresh_ignores_the_ledger(fake_paper, tmp_path):
    paper = get_paper("fakepaper")
    counter = tmp_path / "counter.txt"
    run_reproduction(paper, preset="mini", table_id="main", out_dir=tmp_path / "out")
    run_reproduction(paper, preset="mini", table_id="main", out_dir=tmp_path / "out")
    assert counter.read_text().split() == ["0", "1", "2"]
    assert (
        cli.main(
            [
                "reproduce",
                "fakepaper",
                "--preset",
                "mini",
                "--table",
                "main",
                "--out",
                str(tmp_path / "out"),
                "--fresh",
            ]
        )
        == 0
    )
    assert counter.read_text().split() == ["0", "1", "2", "0", "1", "2"]


def test_duplicate_seeds_are_an_error(fake_paper, tmp_path, capsys):
    with pytest.raises(ValueError, match="repeated: 0"):
        parse_seeds("0,0,1")
    with pytest.raises(ValueError, match="repeated: 1"):
        run_reproduction(
            get_paper("fakepaper"), preset="mini", table_id="main", seeds=[1, 1], out_dir=tmp_path
        )
    assert cli.main(["reproduce", "fakepaper", "--preset", "mini", "--seeds", "0,0"]) == 2
    assert "seeds must be distinct; repeated: 0" in capsys.readouterr().err


def test_output_folder_problems_are_one_line(fake_paper, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli.main(["reproduce", "fakepaper", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert (
        err.splitlines()[0]
        == f"paperzoo: error: output folder {a_file} exists and is not a folder; choose another --out"
    )
    assert "Traceback" not in err
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert cli.main(["reproduce", "fakepaper", "--out", str(locked / "sub")]) == 2
    assert "cannot create output folder" in capsys.readouterr().err


def test_results_files_are_world_readable(fake_paper, tmp_path):
    run_reproduction(get_paper("fakepaper"), preset="smoke", table_id="main", out_dir=tmp_path / "out")
    for name in ("main.json", "main.md"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644


def test_harness_prints_progress_per_row_and_seed(fake_paper, tmp_path, capsys):
    run_reproduction(get_paper("fakepaper"), preset="mini", table_id="main", out_dir=tmp_path / "out")
    err = capsys.readouterr().err
    for seed in (0, 1, 2):
        assert f"fakepaper/main [mini] row ours, seed {seed}: running" in err
    run_reproduction(get_paper("fakepaper"), preset="mini", table_id="main", out_dir=tmp_path / "out")
    assert "row ours, seed 1: restored from main.partial.jsonl" in capsys.readouterr().err


def test_report_refuses_to_write_outside_a_checkout(fake_paper, tmp_path, capsys):
    stranger = tmp_path / "my-own-project"
    stranger.mkdir()
    (stranger / "REPRODUCTION.md").write_text("mine\n")
    assert cli.main(["report", "--root", str(stranger)]) == 2
    assert "is not a paperzoo checkout" in capsys.readouterr().err
    assert (stranger / "REPRODUCTION.md").read_text() == "mine\n"


def test_markdown_of_older_results_is_unchanged():
    # results written before the ledger recorded commits render exactly as before
    results = {
        "paper": "p",
        "paper_title": "P",
        "table": "t",
        "table_title": "T",
        "table_source": "Table 1",
        "preset": "mini",
        "seeds": [0],
        "command": "c",
        "wall_time_s": 1.0,
        "cpu_time_s": 2.0,
        "git": {"commit": "abcdef1234567890", "dirty": False},
        "machine": {"cpu_count": 2, "gpu": None},
        "metrics": [{"id": "acc", "label": "Acc", "digits": 1}],
        "notes": [],
        "rows": [
            {
                "id": "r",
                "label": "R",
                "paper_row": None,
                "paper_row_label": None,
                "paper": {},
                "metrics": {"acc": {"mean": 1.0, "std": 0.0, "n": 1}},
                "note": "",
            }
        ],
    }
    assert "commit abcdef123456; 2 CPU cores; wall time 1 s (2 s of CPU time)." in render_markdown(results)
    assert "Restored" not in render_markdown(results)
