"""The registry, the reproduction harness and the `paperzoo` CLI, against a fake paper package that is
installed for the test by putting a src folder with a .dist-info (entry points included) on sys.path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paperzoo_shared import cli
from paperzoo_shared.registry import RegistryError, discover_papers, get_paper
from paperzoo_shared.repro import TablesError, load_tables, run_reproduction


def test_discovery_and_source_layout(fake_paper):
    papers = discover_papers()
    assert "fakepaper" in papers
    paper = papers["fakepaper"]
    assert paper.version == "0.1.0"
    assert paper.source_root() == fake_paper
    assert paper.default_results_dir("mini") == fake_paper / "results" / "mini"


def test_unknown_paper_lists_installed(fake_paper):
    with pytest.raises(RegistryError, match=r"unknown paper 'nope'; installed papers: .*fakepaper"):
        get_paper("nope")


def test_reproduce_writes_json_and_markdown(fake_paper, tmp_path):
    paper = get_paper("fakepaper")
    written = run_reproduction(
        paper, preset="mini", table_id="main", out_dir=tmp_path / "out", command="paperzoo x"
    )
    ((json_path, markdown),) = written
    results = json.loads(json_path.read_text())
    assert json_path == tmp_path / "out" / "main.json"
    assert (tmp_path / "out" / "main.md").read_text() == markdown
    assert results["preset"] == "mini" and results["seeds"] == [0, 1, 2]
    assert results["command"] == "paperzoo x"
    assert results["config_hash"] and results["config"] == {"lr": 0.1, "preset": "mini"}
    assert results["versions"]["paperzoo-fakepaper"] == "0.1.0"
    assert results["machine"]["cpu_count"] >= 1 and results["wall_time_s"] >= 0 and results["cpu_time_s"] >= 0
    assert "commit" in results["git"]
    row = results["rows"][0]
    acc = row["metrics"]["acc"]
    # Hand computation: values 80, 81, 82 -> mean 81, sample std 1.
    assert acc["per_seed"] == {"0": 80.0, "1": 81.0, "2": 82.0}
    assert acc["mean"] == pytest.approx(81.0) and acc["std"] == pytest.approx(1.0) and acc["n"] == 3
    err = row["metrics"]["err"]
    assert err["mean"] == pytest.approx(0.2) and err["std"] == pytest.approx(0.1)
    assert row["paper"] == {"acc": 91.5, "err": 0.085}
    # The markdown puts ours beside the paper's and names the preset.
    assert "Preset `mini`" in markdown
    assert "| Ours (mini) | 81.0 ± 1.0 | 91.5 | 0.200 ± 0.100 | 0.085 | Ours (paper setting) |" in markdown
    assert "A note." in markdown and "`paperzoo x`" in markdown


def test_default_out_is_the_package_results_folder(fake_paper):
    run_reproduction(get_paper("fakepaper"), preset="smoke", table_id="main")
    results = json.loads((fake_paper / "results" / "smoke" / "main.json").read_text())
    assert results["seeds"] == [0]


def test_interrupted_run_resumes_from_the_ledger(fake_paper, tmp_path, monkeypatch):
    paper = get_paper("fakepaper")
    counter = tmp_path / "counter.txt"
    monkeypatch.setenv("FAKE_FAIL_AT_SEED", "2")
    with pytest.raises(RuntimeError, match="killed"):
        run_reproduction(paper, preset="mini", table_id="main", out_dir=tmp_path / "out")
    assert counter.read_text().split() == ["0", "1"]
    assert not (tmp_path / "out" / "main.json").exists()  # nothing half-written
    monkeypatch.delenv("FAKE_FAIL_AT_SEED")
    run_reproduction(paper, preset="mini", table_id="main", out_dir=tmp_path / "out")
    assert counter.read_text().split() == ["0", "1", "2"]  # only seed 2 ran again
    run_reproduction(paper, preset="mini", table_id="main", out_dir=tmp_path / "out")
    assert counter.read_text().split() == ["0", "1", "2"]  # nothing ran again


def test_unknown_table_and_preset_errors(fake_paper, tmp_path):
    paper = get_paper("fakepaper")
    with pytest.raises(RegistryError, match=r"no table 'x'; valid tables: main, ablation"):
        run_reproduction(paper, preset="mini", table_id="x", out_dir=tmp_path)
    with pytest.raises(
        RegistryError, match=r"unknown preset 'huge'; valid presets: smoke, mini, mini-long, full"
    ):
        run_reproduction(paper, preset="huge", out_dir=tmp_path)
    with pytest.raises(
        RegistryError, match=r"table ablation of fakepaper has no preset 'smoke'; valid presets: mini"
    ):
        run_reproduction(paper, preset="smoke", table_id="ablation", out_dir=tmp_path)


def test_tables_schema_errors_name_file_and_entry(tmp_path):
    bad = tmp_path / "tables.yaml"
    bad.write_text(
        "paper: p\ntables:\n  - id: t\n    title: T\n    metrics: [{id: acc}]\n    rows: [{id: r, paper: {psnr: 1}}]\n"
    )
    with pytest.raises(TablesError, match=r"tables\.yaml: table t: row r: metric 'psnr' is not a column"):
        load_tables(bad)
    bad.write_text("paper: p\ntables:\n  - id: t\n    title: T\n    metrics: [{id: acc, higher: true}]\n")
    with pytest.raises(TablesError, match=r"metrics\[0\]: unknown key 'higher'"):
        load_tables(bad)
    bad.write_text(
        "paper: p\ntables:\n  - id: t\n    title: T\n    metrics: [{id: acc}]\n    rows: [{id: r, status: done}]\n"
    )
    with pytest.raises(TablesError, match="status 'done' is not one of"):
        load_tables(bad)


def test_cli_list_reproduce_and_report(fake_paper, tmp_path, capsys):
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "fakepaper" in listing and "--table main" in listing and "smoke, mini" in listing

    assert cli.main(["reproduce", "fakepaper", "--preset", "mini", "--table", "main", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "| Ours (mini) | 80.5 ± 0.7 |" in out  # seeds 0,1 -> 80, 81: std = sqrt(0.5) = 0.707

    readme = fake_paper / "README.md"
    readme.write_text(
        "# Fake\n<!-- paperzoo:results mini/main -->\nstale table\n<!-- /paperzoo:results -->\nEnd.\n"
    )
    (fake_paper / "results" / "mini" / "main.md").write_text("hand-edited\n")
    assert cli.main(["report", "--root", str(tmp_path), "--check"]) == 1
    assert "README.md is out of date" in capsys.readouterr().err
    assert cli.main(["report", "--root", str(tmp_path)]) == 0
    report = (tmp_path / "REPRODUCTION.md").read_text()
    assert "## fakepaper: A Fake Paper" in report and "80.5 ± 0.7" in report
    filled = readme.read_text()
    assert "stale table" not in filled and "#### fakepaper: Main results" in filled and "80.5 ± 0.7" in filled
    assert filled.endswith("<!-- /paperzoo:results -->\nEnd.\n")
    assert "80.5 ± 0.7" in (fake_paper / "results" / "mini" / "main.md").read_text()
    assert cli.main(["report", "--root", str(tmp_path), "--check"]) == 0
    capsys.readouterr()

    assert cli.main(["reproduce", "nope"]) == 2
    assert "unknown paper 'nope'" in capsys.readouterr().err
    assert cli.main(["reproduce", "fakepaper", "--preset", "mini", "--seeds", "a,b"]) == 2
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err


def test_reproduce_all_with_no_papers_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cli, "discover_papers", lambda: {})
    assert cli.main(["reproduce", "--all", "--preset", "smoke"]) == 0
    assert "No paper packages are installed" in capsys.readouterr().out
    assert cli.main(["list"]) == 0
    assert "No paper packages are installed" in capsys.readouterr().out


def test_console_script_help():
    script = Path(sys.executable).parent / "paperzoo"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "reproduce" in result.stdout and "report" in result.stdout
    result = subprocess.run([str(script), "reproduce", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--preset", "--table", "--seeds", "--out", "--set"):
        assert flag in result.stdout


def test_markdown_has_no_empty_paper_columns():
    from paperzoo_shared.repro import render_markdown

    results = {
        "paper": "p",
        "table": "t",
        "table_title": "Diagnostics",
        "table_source": "",
        "preset": "mini",
        "seeds": [0],
        "command": "paperzoo reproduce p",
        "wall_time_s": 1.0,
        "git": {"commit": "abc", "dirty": False},
        "machine": {"cpu_count": 2, "gpu": None},
        "metrics": [{"id": "acc", "label": "Acc", "digits": 1}, {"id": "n", "label": "Items", "digits": 0}],
        "rows": [
            {
                "label": "A",
                "paper_row": None,
                "paper_row_label": None,
                "paper": {},
                "metrics": {"acc": {"mean": 50.0, "std": 0.0, "n": 1}},
            },
            {
                "label": "B",
                "paper_row": "r",
                "paper_row_label": "Paper B",
                "paper": {"acc": 60.0},
                "metrics": {},
                "note": "shared teacher",
            },
        ],
    }
    markdown = render_markdown(results)
    assert "| Row | Acc (ours) | Acc (paper) | Items | Paper row |" in markdown
    assert "| A | 50.0 | — | — | — |" in markdown and "| B | — | 60.0 | — | Paper B |" in markdown
    assert "- B: shared teacher" in markdown


def test_git_info_flags_code_changes_but_not_run_outputs(tmp_path):
    from paperzoo_shared.repro import git_info

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    package = tmp_path / "packages" / "p"
    (package / "src").mkdir(parents=True)
    (package / "src" / "model.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_info(package)["dirty"] is False
    (package / "results" / "mini").mkdir(parents=True)
    (package / "results" / "mini" / "plot.png").write_bytes(b"png")  # written by the run itself
    assert git_info(package)["dirty"] is False
    (package / "src" / "new.py").write_text("")  # untracked code
    assert git_info(package)["dirty"] is True
    (package / "src" / "new.py").unlink()
    (package / "src" / "model.py").write_text("x = 2\n")  # modified code
    assert git_info(package)["dirty"] is True
