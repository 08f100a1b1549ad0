"""The README's reproduction section: the paper's Tables 1-3 with, for each row this package reruns, a
command that parses into the configuration that reproduces it (hand-written below from the paper's
description of each row, notes Sec. 3.3) and equals the full preset's row; and the captions files those
commands name, in their released layouts."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from paperzoo_cantor.cli import _parser, eval_config
from paperzoo_cantor.configuration import EvalConfig, FullPresetConfig
from paperzoo_cantor.evaluate import load_items, read_captions
from paperzoo_cantor.fixtures import write_mathvista, write_scienceqa
from paperzoo_cantor.reproduce import row_eval_config

from paperzoo_shared.config import load_config
from paperzoo_shared.data import DataError

PACKAGE = Path(__file__).resolve().parent.parent
SQA, MV = "/data/ScienceQA/data/scienceqa", "/data/MathVista/data"
MLLM, M = "https://mllm.example.com/v1", "some-mllm"
LLM, T = "https://llm.example.com/v1", "some-text-model"
SHELL = {"$SQA": SQA, "$MV": MV, "$MLLM": MLLM, "$M": M, "$LLM": LLM, "$T": T}

# run -> (table, row of paper/tables.yaml, benchmark, method, IMG subset, text model + caption, MLLM experts)
RUNS = {
    "t1-cantor-gpt35": ("table1", "cantor_gpt35", "scienceqa", "cantor", False, True, True),
    "t1-gemini": ("table1", "gemini", "scienceqa", "direct", False, False, False),
    "t1-cantor-gemini": ("table1", "cantor_gemini", "scienceqa", "cantor", False, False, False),
    "t2-gpt35-caption": ("table2", "gpt35_caption", "scienceqa", "direct", True, True, False),
    "t2-cantor-gpt35": ("table2", "cantor_gpt35", "scienceqa", "cantor", True, True, True),
    "t2-gemini": ("table2", "gemini", "scienceqa", "direct", True, False, False),
    "t2-cantor-gemini": ("table2", "cantor_gemini", "scienceqa", "cantor", True, False, False),
    "t3-gpt35-caption": ("table3", "gpt35_caption", "mathvista", "direct", False, True, False),
    "t3-cantor-gpt35": ("table3", "cantor_gpt35", "mathvista", "cantor", False, True, True),
    "t3-gemini": ("table3", "gemini", "mathvista", "direct", False, False, False),
    "t3-cantor-gemini": ("table3", "cantor_gemini", "mathvista", "cantor", False, False, False),
}
CAPTIONS = {"scienceqa": f"{SQA}/../captions.json", "mathvista": f"{MV}/texts/captions_bard.json"}


def _section() -> str:
    text = (PACKAGE / "README.md").read_text(encoding="utf-8")
    start = text.index("## Reproducing the paper's tables with a real backend")
    return text[start : text.index("\n## ", start + 1)]


def _commands() -> dict[str, str]:
    commands = {}
    for line in _section().splitlines():
        if line.startswith("paperzoo-cantor eval "):
            run = re.search(r"--out runs/(\S+)", line).group(1)
            assert run not in commands, f"two commands write runs/{run}"
            commands[run] = line
    return commands


def _table_rows() -> dict[str, dict[str, str]]:
    """run -> {column header: cell} of the README's paper tables."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in _section().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not header:
            header = cells
        elif not set(cells[0]) <= set("-:"):
            run = cells[-1].strip("`")
            if run != "cited":
                rows[run] = dict(zip(header, cells))
    return rows


def _paper_tables() -> dict[str, dict]:
    tables = yaml.safe_load((PACKAGE / "paper" / "tables.yaml").read_text(encoding="utf-8"))["tables"]
    return {t["id"]: t for t in tables}


def test_every_rerunnable_row_of_the_paper_has_a_run_and_a_command():
    tables = _paper_tables()
    expected = {
        (table, row["id"])
        for table in ("table1", "table2", "table3")
        for row in tables[table]["rows"]
        if row["status"] != "not_reproducible"
    }
    assert {(table, row) for table, row, *_ in RUNS.values()} == expected
    assert set(_table_rows()) == set(RUNS) == set(_commands())


@pytest.mark.parametrize("run", sorted(RUNS))
def test_readme_numbers_are_the_papers(run):
    table_id, row_id = RUNS[run][:2]
    table = _paper_tables()[table_id]
    paper = next(row for row in table["rows"] if row["id"] == row_id)["paper"]
    cells = _table_rows()[run]
    labels = {
        ("Average" if m["label"] == "Avg" and table_id == "table2" else m["label"]): m["id"]
        for m in table["metrics"]
    }
    assert {labels[h]: float(cells[h]) for h in labels} == pytest.approx(paper, abs=1e-9)


def _parse(command: str) -> EvalConfig:
    argv = shlex.split(command)[1:]
    argv = [SHELL.get(arg, arg) for arg in argv]
    argv = [re.sub(r"\$[A-Z]+", lambda m: SHELL[m.group(0)], arg) for arg in argv]
    return eval_config(_parser().parse_args(argv))


@pytest.mark.parametrize("run", sorted(RUNS))
def test_readme_command_is_the_rows_configuration(run):
    table, row, benchmark, method, image_only, text_row, mllm_experts = RUNS[run]
    cfg = _parse(_commands()[run])
    assert (cfg.benchmark, cfg.method, cfg.image_only) == (benchmark, method, image_only)
    assert cfg.data_root == (SQA if benchmark == "scienceqa" else MV)
    # GPT-3.5 rows: a text model sees the caption instead of the image (Table 3 input "Q, I_c")
    assert (cfg.backend.base_url, cfg.backend.model) == ((LLM, T) if text_row else (MLLM, M))
    assert cfg.cantor.images is (not text_row)
    assert cfg.captions == (CAPTIONS[benchmark] if text_row else "")
    # Cantor (GPT-3.5): the experts need the image, so an MLLM plays them
    expert = (cfg.expert_backend.kind, cfg.expert_backend.base_url, cfg.expert_backend.model)
    assert expert == (("openai", MLLM, M) if mllm_experts else ("same", "", ""))
    assert (cfg.cantor.split_mode, cfg.extractor, cfg.limit) == ("official", "llm", 0)
    # the harness's row (paperzoo reproduce cantor --preset full) is the same run
    full = load_config(
        FullPresetConfig,
        PACKAGE / "configs" / "full.yaml",
        overrides=[
            f"scienceqa_root={SQA}",
            f"mathvista_root={MV}",
            f"scienceqa_captions={CAPTIONS['scienceqa']}",
            f"mathvista_captions={CAPTIONS['mathvista']}",
            f"backend.base_url={MLLM}",
            f"backend.model={M}",
            f"text_backend.base_url={LLM}",
            f"text_backend.model={T}",
        ],  # fmt: skip
    )
    harness = row_eval_config(full, table, row)
    for key in ("benchmark", "data_root", "method", "image_only", "captions", "limit", "extractor"):
        assert getattr(cfg, key) == getattr(harness, key), key
    assert cfg.cantor == harness.cantor
    for backend in ("backend", "expert_backend"):
        for key in ("kind", "base_url", "model"):
            assert getattr(getattr(cfg, backend), key) == getattr(getattr(harness, backend), key), (
                backend,
                key,
            )


def test_captions_in_the_released_layouts(tmp_path):
    # ScienceQA data/captions.json: {"model": ..., "captions": {pid: caption}}
    sqa = write_scienceqa(tmp_path / "sqa", n=2)
    (tmp_path / "captions.json").write_text(
        json.dumps(
            {
                "model": "nlpconnect/vit-gpt2-image-captioning",
                "max_length": 64,
                "captions": {"1000": "A red square.", "1001": "A blue square."},
            }
        )  # fmt: skip
    )
    assert read_captions(str(tmp_path / "captions.json")) == {
        "1000": "A red square.",
        "1001": "A blue square.",
    }
    cfg = EvalConfig(benchmark="scienceqa", data_root=str(sqa), captions=str(tmp_path / "captions.json"))
    first = load_items(cfg)[0]
    assert "\nContext: A red square.\nOptions: (A) " in first.cantor_query  # pid 1000 has no hint
    assert "\nContext: A red square.\nOptions: (A) " in first.direct_prompt
    # MathVista data/texts/captions_bard.json: {"model": "bard", ..., "texts": {pid: caption}}; build_query's
    # refine_caption drops Bard's "Sure. " and "I hope this helps!" and the caption follows the query
    mv = write_mathvista(tmp_path / "mv", n=2)
    (tmp_path / "captions_bard.json").write_text(
        json.dumps(
            {
                "model": "bard",
                "url": "https://bard.google.com/",
                "date": "2023-09-13",
                "texts": {"1": "Sure. The image shows  a bar chart. I hope this helps!"},
            }
        )  # fmt: skip
    )
    cfg = EvalConfig(benchmark="mathvista", data_root=str(mv), captions=str(tmp_path / "captions_bard.json"))
    items = load_items(cfg)
    plain = load_items(EvalConfig(benchmark="mathvista", data_root=str(mv)))
    assert (
        items[0].direct_prompt == plain[0].direct_prompt + "\nImage description: The image shows a bar chart."
    )
    assert items[0].cantor_query == items[0].direct_prompt
    assert items[1].direct_prompt == plain[1].direct_prompt  # no caption for pid 2
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        read_captions(str(tmp_path / "list.json"))
