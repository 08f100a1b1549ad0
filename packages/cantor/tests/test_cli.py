"""The CLI: help, one-line errors, the split command on the released state file, fixtures and a run."""

from __future__ import annotations

import json

import released_example as released
from paperzoo_cantor.cli import main


def test_help_lists_commands_and_debug(capsys):
    try:
        main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
    out = capsys.readouterr().out
    for word in ("eval", "score", "view", "split", "fixtures", "serve-scripted", "--debug"):
        assert word in out


def test_missing_data_root_is_one_line(capsys, tmp_path):
    code = main(["eval", "--benchmark", "scienceqa", "--backend", "scripted", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[0].startswith("paperzoo-cantor: error: no data root")


def test_key_over_plain_http_is_refused_in_one_line(capsys, tmp_path, monkeypatch):
    from paperzoo_cantor.fixtures import write_scienceqa

    root = write_scienceqa(tmp_path / "sqa", n=2)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    code = main(["eval", "--benchmark", "scienceqa", "--data-root", str(root), "--base-url", "http://10.1.2.3:8000/v1",
                 "--model", "m", "--out", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "refusing to send an API key over plain http" in err and "sk-secret" not in err


def test_bad_override_is_one_line(capsys, tmp_path):
    code = main(
        [
            "eval",
            "--benchmark",
            "scienceqa",
            "--data-root",
            "x",
            "--out",
            str(tmp_path),
            "--set",
            "backend.concurrency=0",
        ]
    )
    assert code == 2 and "concurrency" in capsys.readouterr().err


def test_split_command_on_the_released_state_file(capsys, tmp_path):
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(released.DECISION_JSON))
    assert main(["split", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "sub-tasks": released.SUB_TASKS,
        "supplementary_information": released.SUPPLEMENTARY_INFORMATION,
    }


def test_fixtures_eval_score_view(capsys, tmp_path):
    assert main(["fixtures", str(tmp_path / "mv"), "--benchmark", "mathvista", "-n", "5"]) == 0
    run = tmp_path / "run"
    assert main(["eval", "--benchmark", "mathvista", "--data-root", str(tmp_path / "mv"), "--backend", "scripted",
                 "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    first = capsys.readouterr().out
    assert "5/5 problems" in first
    assert main(["score", str(run), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["recorded"] == 5 and set(scored["scores"]["official"]) >= {"FQA", "ALL"}
    assert main(["view", str(run)]) == 0
    assert (run / "traces" / "index.html").is_file() and (run / "traces" / "1.html").is_file()
