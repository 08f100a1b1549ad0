"""The smoke preset end to end through paperzoo_shared's harness, and the mini/smoke configs."""

from __future__ import annotations

import json

from paperzoo_dynamic_llava.configuration import ExperimentConfig

from paperzoo_shared.config import load_config
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import load_tables, run_reproduction


def test_smoke_preset_end_to_end(tmp_path, capfd):
    paper = get_paper("dynamic_llava")
    [(json_path, markdown)] = run_reproduction(paper, preset="smoke", out_dir=tmp_path)
    progress = capfd.readouterr().err
    steps = load_config(ExperimentConfig, paper.data_root() / "configs" / "smoke.yaml").pretrain.steps
    assert f"{steps}/{steps} [" in progress  # the Trainer's own tqdm bar (elapsed<remaining) for training
    assert "QA (fastv)" in progress and "descriptions (dynamic)" in progress  # and the evaluation loops
    results = json.loads(json_path.read_text())
    assert [row["id"] for row in results["rows"]] == ["dense", "dynamic", "random", "fastv"]
    for row in results["rows"]:
        assert {"accuracy", "desc_ppl", "eq13_mflops", "kv_cache_kb"} <= set(row["metrics"])
    eq13 = {row["id"]: row["metrics"]["eq13_mflops"]["mean"] for row in results["rows"]}
    assert eq13["dynamic"] < eq13["dense"]
    assert "Dynamic-LLaVA" in markdown and (tmp_path / "table1_3.md").is_file()
    assert list((tmp_path / "runs" / "seed0").glob("dense_*.safetensors"))  # the dense model is cached


def test_presets_and_tables_load():
    paper = get_paper("dynamic_llava")
    root = paper.data_root()
    tables = load_tables(root / "paper" / "tables.yaml")
    table = tables.table("table1_3")
    assert table.row("dynamic_llava_7b_it").paper["eq13_mflops"] == 2.5
    for preset in ("smoke", "mini"):
        cfg = load_config(ExperimentConfig, root / "configs" / f"{preset}.yaml")
        assert cfg.sparse_config.vision_keep_rate == 0.2 and cfg.sparse_config.output_text_keep_rate == 0.5
        assert set(cfg.rows) == {"dense", "dynamic", "random", "fastv"}
