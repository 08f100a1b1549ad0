"""The shared CLI error convention and safe_join."""

from __future__ import annotations

import argparse
import os

import pytest

from paperzoo_shared.config import ConfigError
from paperzoo_shared.data import DataError, safe_join
from paperzoo_shared.errors import UserError, add_debug_flag, run_cli


def _main_raising(error: BaseException):
    def main(argv: list[str]) -> int:
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        UserError("bad --frames value"),
        ConfigError("train.lr: expected float"),
        DataError("scores.txt line 3: expected 2 columns"),
        FileNotFoundError("no such file: x.json"),
        ValueError("seeds must be integers"),
    ],
)
def test_known_error_is_one_line_and_exit_2(error, capsys):
    assert run_cli("paperzoo-x", _main_raising(error), []) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"paperzoo-x: error: {error}"
    assert "Traceback" not in "\n".join(err)
    assert err[1] == "(run again with --debug for the traceback)"


def test_os_error_names_its_file(tmp_path, capsys):
    error = PermissionError(13, "Permission denied", str(tmp_path / "out"))
    assert run_cli("p", _main_raising(error), []) == 2
    assert str(tmp_path / "out") in capsys.readouterr().err.splitlines()[0]


def test_multiline_message_becomes_one_line(capsys):
    run_cli("p", _main_raising(UserError("first\n  second")), [])
    assert capsys.readouterr().err.splitlines()[0] == "p: error: first second"


def test_debug_flag_and_env_reraise(monkeypatch):
    with pytest.raises(UserError):
        run_cli("p", _main_raising(UserError("x")), ["--debug"])
    monkeypatch.setenv("PAPERZOO_DEBUG", "1")
    with pytest.raises(UserError):
        run_cli("p", _main_raising(UserError("x")), [])


def test_unknown_error_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_cli("p", _main_raising(ZeroDivisionError("bug")), [])


def test_main_gets_argv_and_its_status_is_returned():
    seen = []

    def main(argv):
        parser = argparse.ArgumentParser()
        add_debug_flag(parser)
        parser.add_argument("--n", type=int)
        seen.append(parser.parse_args(argv))
        return 0 if seen[-1].n == 1 else 3

    assert run_cli("p", main, ["--n", "1", "--debug"]) == 0
    assert seen[-1].debug is True and seen[-1].n == 1
    assert run_cli("p", main, ["--n", "2"]) == 3


def test_safe_join_inside(tmp_path):
    assert safe_join(tmp_path, "images/a.png", source="ann.json") == tmp_path / "images" / "a.png"
    assert safe_join(tmp_path, "images/../b.png", source="ann.json") == tmp_path / "b.png"


@pytest.mark.parametrize("bad", ["../secret.txt", "a/../../secret.txt", "/etc/passwd", ""])
def test_safe_join_refuses_leaving_paths(tmp_path, bad):
    with pytest.raises(DataError) as info:
        safe_join(tmp_path / "root", bad, source="train.json", entry=7)
    assert "train.json (entry 7)" in str(info.value)


def test_safe_join_follows_symlinks_the_user_made(tmp_path):
    # a dataset root whose image folder links to another disk is a normal set-up, not an escape
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "disk").mkdir()
    os.symlink(tmp_path / "disk", root / "JPEGImages")
    assert (
        safe_join(root, "JPEGImages/000001.jpg", source="trainval.txt") == root / "JPEGImages" / "000001.jpg"
    )
