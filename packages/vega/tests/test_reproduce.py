"""The smoke preset end to end through the harness, and the chance row's responses."""

from __future__ import annotations

from pathlib import Path

import pytest
from paperzoo_vega.reproduce import chance_responses
from paperzoo_vega.scoring import score_iitc

from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import run_reproduction


def test_smoke_preset_runs(tmp_path: Path) -> None:
    written = run_reproduction(get_paper("vega"), preset="smoke", out_dir=tmp_path)
    text = "".join(markdown for _, markdown in written)
    assert "85.8" in text and "0.508" in text  # the paper's figures stand beside the rows
    assert (tmp_path / "iitc.json").is_file()


def test_chance_row_is_format_perfect(tiny_release) -> None:
    iitc = list(tiny_release[0])
    responses = chance_responses(iitc, seed=0)
    records = [{**s.record, "response": r} for s, r in zip(iitc, responses)]
    for sample, response in zip(iitc, responses):
        k = int(response.split("]")[0].split()[-1])
        assert 1 <= k <= len(sample.image_paths)
        # the cited figure number is the one printed after that picture in the context
        assert (
            f"Picture {k}: <img>{sample.image_paths[k - 1]}</img>\nFigure. {response.split('Figure. ')[1].split(')')[0]} "
            in sample.context
        )
    assert 0.0 <= score_iitc(records)["picture_acc"] <= 1.0
    assert chance_responses(iitc, seed=0) == responses


def test_full_preset_needs_paths(tmp_path: Path) -> None:
    from paperzoo_shared.errors import UserError

    with pytest.raises(UserError, match="full.data_root"):
        run_reproduction(get_paper("vega"), preset="full", out_dir=tmp_path)
