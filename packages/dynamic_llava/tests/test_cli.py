"""The command line: a known bad input is one line on stderr and exit status 2; ``--debug`` shows the traceback."""

from __future__ import annotations

import pytest
from paperzoo_dynamic_llava.cli import main


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--config", "{tmp}/missing.yaml"], "config file not found"),
        (["train", "--tiny", "--set", "train.max_steps=abc"], "expects an integer"),
        (["train", "--config", "{tmp}/broken.yaml"], "broken.yaml"),
        (["flops", "--keep-rate", "2"], "--keep-rate 2.0"),
        (["generate", "--model", "{tmp}", "--image", "{tmp}/x.png", "--prompt", "hi"], "no config.json"),
        (["convert", "{tmp}", "{tmp}/out", "--vision-tower", "{tmp}"], "config.json not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("train: [unclosed\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("paperzoo-dynamic-llava: error: ") and expected in err[0]
    assert "--debug" in err[1]
    with pytest.raises(Exception, match=expected.replace(".", r"\.")):
        main([*argv, "--debug"])


def test_debug_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--debug" in capsys.readouterr().out
