"""The smoke preset end to end through paperzoo_shared.repro.run_reproduction, and its resumption."""

from __future__ import annotations

import json

from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import run_reproduction


def test_smoke_preset_end_to_end_and_resume(tmp_path):
    paper = get_paper("dckd")
    [(json_path, markdown)] = run_reproduction(
        paper, preset="smoke", out_dir=tmp_path, command="pytest smoke"
    )
    results = json.loads(json_path.read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert list(rows) == [
        "teacher",
        "scratch",
        "logits",
        "mclir",
        "mipkd",
        "dckd",
        "dckd_no_dcr",
        "dckd_no_dmm",
    ]
    for row in rows.values():
        assert set(row["metrics"]) == {"psnr", "ssim"}
        assert 5 < row["metrics"]["psnr"]["mean"] < 60 and 0 < row["metrics"]["ssim"]["mean"] <= 1
    # the paper's numbers stand beside ours (RCAN x2 Urban100, Tables 2 and 5)
    assert rows["dckd"]["paper"] == {"psnr": 32.92, "ssim": 0.9351}
    assert rows["dckd_no_dcr"]["paper"] == {"psnr": 32.81, "ssim": 0.9343}
    assert rows["mclir"]["paper"] == {"psnr": 26.57, "ssim": 0.8010}  # Table 8, SwinIR-light x4 Urban100
    assert rows["mipkd"]["paper"] == {"psnr": 32.83, "ssim": 0.9344}  # Table 2, RCAN x2 Urban100
    usage = results["extra"]["codebook_usage"]
    assert 1 <= usage["codes_used"] <= usage["codes"] == 64 and 0 < usage["entropy"] <= usage["max_entropy"]
    assert "| DCKD |" in markdown and "32.92" in markdown
    assert (tmp_path / "fig8b.png").stat().st_size > 1000
    assert set(results["extra"]["fig8b"]) == {"small (s = 1)", "large (s = 2)"}
    assert any("Fig. 8b" in note for note in results["notes"])
    ledger = (tmp_path / "table2.partial.jsonl").read_text().splitlines()
    assert len(ledger) == 8
    # a rerun takes every (row, seed) from the ledger and the cached runs: nothing is retrained
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("**/final.pt")}
    run_reproduction(paper, preset="smoke", out_dir=tmp_path, command="pytest smoke")
    assert len((tmp_path / "table2.partial.jsonl").read_text().splitlines()) == 8
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("**/final.pt")} == before


def test_rows_run_seed_major_so_a_stopped_run_has_whole_seeds(tmp_path):
    # the ledger records (row, seed) in the order they finish: every row of seed 0 before any row of seed 1
    paper = get_paper("dckd")
    run_reproduction(
        paper,
        preset="smoke",
        seeds=[0, 1],
        out_dir=tmp_path,
        overrides=["methods=[scratch, logits]", "fig8b.enabled=false"],
        command="pytest smoke order",
    )
    ledger = [json.loads(line) for line in (tmp_path / "table2.partial.jsonl").read_text().splitlines()]
    assert [(r["row"], r["seed"]) for r in ledger] == [
        ("scratch", 0),
        ("logits", 0),
        ("scratch", 1),
        ("logits", 1),
    ]
