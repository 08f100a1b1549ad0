"""Golden tests of the construction tool: contexts written out by hand from the rules in construct.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from paperzoo_vega.construct import (
    BuildConfig,
    BuildReport,
    build_dataset,
    build_iitc,
    parse_document,
    read_documents,
    rewrite_answer,
)
from paperzoo_vega.data import read_vega_jsonl
from paperzoo_vega.scoring import score_iitc, score_ita
from paperzoo_vega.synthetic import generate_documents

from paperzoo_shared.data.errors import DataError

DOC = {
    "id": "d1", "title": "T",
    "paragraphs": ["Intro text .", "We show results in Figure 2 .", "See Fig. 1 for the setup ."],
    "figures": [
        {"number": 1, "path": "a.png", "caption": "Figure. 1 : setup ."},
        {"number": 2, "path": "b.png", "caption": "Figure. 2 : results ."},
        {"number": 3, "path": "c.png", "caption": "Figure. 3 : extra ."},
    ],
    "qa": [{"figure": 2, "question": "What does Figure 2 show?", "answer": "Figure 2 shows a rising curve."}],
}  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def _one(root: Path, doc: dict = DOC, **cfg: object) -> tuple[list[dict], BuildReport]:
    settings = {"image_tokens": 10, "max_images": 3, **cfg}
    return build_iitc([parse_document(doc, "doc.json")], root, BuildConfig(**settings))  # type: ignore[arg-type]


def test_iitc_golden_full_context(root: Path) -> None:
    records, report = _one(root, budget=4096)
    assert records == [{
        "id": "d1", "title": "T", "caption": "Figure. 2 : results .",
        "context": (
            "Intro text .\nWe show results in Figure 2[Picture 1] .\n"
            "Picture 1: <img>b.png</img>\nFigure. 2 : results .\n"
            "See Fig. 1[Picture 2] for the setup .\n"
            "Picture 2: <img>a.png</img>\nFigure. 1 : setup .\n"
            "Picture 3: <img>c.png</img>\nFigure. 3 : extra ."
        ),
        "question": "What does Figure 2 show?",
        "answer": "[Picture 1](Figure. 2) shows a rising curve.",
        "image_paths": ["b.png", "a.png", "c.png"],
        "truth_fig_idx": 0,
    }]  # fmt: skip
    assert report.iitc == 1 and not report.filtered


def test_iitc_budget_trimming(root: Path) -> None:
    # words: 43 context + 5 question, + 3 x 10 image tokens = 78. Without "See Fig. 1 ..." (the farther of
    # the two neighbours, ties to the later): 70. Without "Intro text .": 67. Without figure 3: 49.
    records, report = _one(root, budget=70)
    assert records[0]["context"] == (
        "Intro text .\nWe show results in Figure 2[Picture 1] .\n"
        "Picture 1: <img>b.png</img>\nFigure. 2 : results .\n"
        "Picture 2: <img>a.png</img>\nFigure. 1 : setup .\n"
        "Picture 3: <img>c.png</img>\nFigure. 3 : extra ."
    )
    assert (report.trimmed_paragraphs, report.trimmed_figures) == (1, 0)
    records, report = _one(root, budget=49)
    assert records[0]["context"] == (
        "We show results in Figure 2[Picture 1] .\nPicture 1: <img>b.png</img>\nFigure. 2 : results .\n"
        "Picture 2: <img>a.png</img>\nFigure. 1 : setup ."
    )
    assert records[0]["image_paths"] == ["b.png", "a.png"]
    assert (report.trimmed_paragraphs, report.trimmed_figures) == (2, 1)
    records, report = _one(root, budget=48)
    assert records == [] and report.filtered == {"over_budget": 1}


def test_iitc_filters(root: Path) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["qa"] = [
        {"figure": 2, "question": "What is the main idea?", "answer": "x"},
        {"figure": 2, "question": "What does the plot show?", "answer": " "},
        {"figure": 9, "question": "What does Figure 9 show?", "answer": "x"},
        {"figure": 1, "question": "And the graph?", "answer": "It rises."},
    ]
    (root / "a.png").unlink()
    records, report = _one(root, doc)
    assert records == []
    assert report.filtered == {
        "no_figure_reference": 1,
        "empty_answer": 1,
        "unknown_figure": 1,
        "missing_image": 1,
    }
    doc["qa"] = [{"figure": 2, "question": "What does Figure 2 show?", "answer": "x"}]
    records, report = _one(root, doc, min_images=3)
    assert report.filtered == {"too_few_figures": 1}


def test_rewrite_answer() -> None:
    assert rewrite_answer("As Fig. 3 shows, it rises; Figure 31 differs.", 3, 2) == (
        "As [Picture 2](Figure. 3) shows, it rises; Figure 31 differs."
    )
    assert rewrite_answer("It rises.", 3, 2) == "[Picture 2] It rises."


def test_distractor_sampling_is_seeded(root: Path) -> None:
    runs = [_one(root, max_images=2, seed=s)[0][0]["image_paths"] for s in (0, 0, 1, 2, 3, 4)]
    assert runs[0] == runs[1]
    assert all("b.png" in paths and len(paths) == 2 for paths in runs)
    assert len({tuple(p) for p in runs}) == 2  # both distractors are drawn by some seed


def test_path_outside_root_is_refused(root: Path) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["figures"][0]["path"] = "../outside.png"
    with pytest.raises(DataError, match="leaves the data root"):
        _one(root, doc)


def test_synthetic_corpus_round_trip(tmp_path: Path) -> None:
    docs, imgs = generate_documents(tmp_path / "c", n_documents=6, seed=0, split="test")
    report = build_dataset(docs, imgs, tmp_path / "out", BuildConfig(budget=200, image_tokens=4, max_images=3,
                           ita_pictures=(3,)), split="test", progress=False)  # fmt: skip
    assert report.filtered == {"no_figure_reference": 6}  # the one off-topic question per document
    iitc = read_vega_jsonl(tmp_path / "out" / "IITC_0k_test.json", image_root=imgs)
    ita = read_vega_jsonl(tmp_path / "out" / "ITA_3picture_test.json", image_root=imgs)
    assert len(iitc) == report.iitc > 0 and len(ita) == 6
    # the references are perfect responses for the official scorers
    assert score_iitc([{**s.record, "response": s.answer} for s in iitc])["picture_acc"] == 1.0
    assert score_ita([{**s.record, "response": s.answer} for s in ita])["accuracy"] == 1.0
    # every ITA answer pairs each segment with the picture of the figure it describes
    described = {f["path"]: f["description"] for d in read_documents(docs) for f in
                 [vars(x) for x in d.figures]}  # fmt: skip
    for sample in ita:
        segments = dict(line.split(": ", 1) for line in sample.context.split("</img>\n")[-1].split("\n"))
        pairs = re.findall(r"T(\d+):\[Picture (\d+)\]", sample.answer)
        assert [int(t) for t, _ in pairs] == [1, 2, 3]
        for t, picture in pairs:
            assert described[sample.image_paths[int(picture) - 1]] == segments[f"T{t}"]
        assert len(set(sample.id)) == 3  # three different documents


def test_construction_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        docs, imgs = generate_documents(tmp_path / run, n_documents=4, seed=5)
        build_dataset(
            docs, imgs, tmp_path / run / "out", BuildConfig(budget=300, image_tokens=4), progress=False
        )
        outs.append(sorted((p.name, p.read_text()) for p in (tmp_path / run / "out").iterdir()))
    assert outs[0] == outs[1]
