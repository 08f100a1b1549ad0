"""The smoke preset end to end through paperzoo_shared.repro.run_reproduction, and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_videomme.configuration import VideoMMEConfig
from paperzoo_videomme.paper import PAPER

from paperzoo_shared.config import ConfigError, load_config
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import run_reproduction

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_registered() -> None:
    assert get_paper("videomme") == PAPER


def test_smoke_preset_end_to_end(tmp_path: Path) -> None:
    written = run_reproduction(PAPER, preset="smoke", out_dir=tmp_path, command="pytest smoke")
    assert sorted(p.name for p, _ in written) == ["parity.json", "pipeline.json"]
    parity = json.loads((tmp_path / "parity.json").read_text())
    rows = {row["id"]: row["metrics"] for row in parity["rows"]}
    assert set(rows) == {"official", "official_2024_06", "lmms_eval", "lmms_eval_legacy", "vlmevalkit",
                         "vlmevalkit_2024_07"}  # fmt: skip
    assert rows["official"]["delta"]["mean"] == 0.0
    assert rows["official"]["denominator"]["mean"] < 100.0  # unparsable responses dropped
    assert rows["lmms_eval"]["denominator"]["mean"] == 100.0  # counted wrong
    pipeline = json.loads((tmp_path / "pipeline.json").read_text())
    reader = next(r for r in pipeline["rows"] if r["id"] == "reader_official")["metrics"]
    assert reader["answered"]["mean"] == 100.0 and reader["subtitle_lines"]["mean"] > 0
    assert "subtitle reader" in (tmp_path / "pipeline.md").read_text()
    # a rerun restores every (row, seed) from the ledger
    again = dict(
        (p.name, p) for p, _ in run_reproduction(PAPER, preset="smoke", out_dir=tmp_path, command="x")
    )
    assert json.loads(again["pipeline.json"].read_text())["rows"] == pipeline["rows"]


def test_full_preset_needs_the_data() -> None:
    with pytest.raises(ValueError, match=r"--set data.root=/path/to/Video-MME"):
        run_reproduction(PAPER, preset="full", out_dir=Path("/tmp/videomme-full-unused"))


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="protocol.subtitles"):
        load_config(VideoMMEConfig, CONFIGS / "mini.yaml", overrides=["protocol.subtitles=srt"])
    with pytest.raises(ConfigError, match="unknown config key 'protocol.frames'"):
        load_config(VideoMMEConfig, CONFIGS / "mini.yaml", overrides=["protocol.frames=4"])
    with pytest.raises(ConfigError, match="pipeline row x: model"):
        load_config(
            VideoMMEConfig, CONFIGS / "mini.yaml", overrides=["pipeline=[{id: x, label: x, model: gpt5}]"]
        )
    full = load_config(VideoMMEConfig, CONFIGS / "full.yaml")
    assert (
        full.full_protocol["gpt_4o"].max_frames == 384
        and full.full_rows["video_llava"].kind == "transformers"
    )
