"""The release reader on format-exact fixtures written by the tests (records as in the release README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_vega.data import read_vega_jsonl, task_of_file
from paperzoo_vega.modeling_vega import split_context

from paperzoo_shared.data.errors import DataError


def _iitc(paths: list[str], truth: int = 1, **extra: object) -> dict:
    context = "The result illustrated in Figure~6[Picture 1] shows it.\n"
    for k, p in enumerate(paths, start=1):
        context += f"Picture {k}: <img>{p}</img>\nFigure. {k + 5} "
    record = {
        "id": "1803.06598v1", "title": "A title", "caption": "Figure. 7", "context": context,
        "question": "What does Figure 7 show?", "answer": "[Picture 2](Figure. 7) shows the curve.",
        "image_paths": paths, "truth_fig_idx": truth,
    }  # fmt: skip
    record.update(extra)
    return record


@pytest.fixture
def release(tmp_path: Path) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "test_imgs" / "1803.06598v1").mkdir(parents=True, exist_ok=True)
        (tmp_path / "test_imgs" / "1803.06598v1" / name).write_bytes(b"png")
    return tmp_path


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


P = ["test_imgs/1803.06598v1/a.png", "test_imgs/1803.06598v1/b.png"]


def test_reads_iitc_and_resolves_images(release: Path) -> None:
    f = _write(release / "IITC_4k_test.json", [json.dumps(_iitc(P)), "", json.dumps(_iitc(P[::-1], truth=0))])
    data = read_vega_jsonl(f)
    assert data.task == "iitc" and len(data) == 2
    first = data.samples[0]
    assert first.images == [(release / p).resolve() for p in P]
    assert first.truth_fig_idx == 1 and first.line == 1 and data.samples[1].line == 3
    assert first.key == "IITC_4k_test.json:1"


def test_reads_ita(release: Path) -> None:
    record = {"id": ["x", "y"], "image_paths": P, "context": "".join(f"Picture {k}: <img>{p}</img>\n" for k, p in
              enumerate(P, 1)) + "T1: one\nT2: two", "answer": "T1:[Picture 2] T2:[Picture 1]"}  # fmt: skip
    data = read_vega_jsonl(_write(release / "ITA_3picture_test.json", [json.dumps(record)]))
    assert data.task == "ita" and data.samples[0].question is None


def test_path_leaving_the_root_names_file_and_line(release: Path) -> None:
    bad = _iitc(["test_imgs/1803.06598v1/a.png", "../../etc/passwd"])
    f = _write(release / "IITC_4k_test.json", [json.dumps(_iitc(P)), json.dumps(bad)])
    with pytest.raises(DataError, match=r"IITC_4k_test\.json \(entry line 2\).*leaves the data root"):
        read_vega_jsonl(f)
    skipped = read_vega_jsonl(f, on_error="skip")
    assert len(skipped) == 1 and len(skipped.problems) == 1 and "line 2" in skipped.problems[0]


def test_missing_image_and_malformed_line(release: Path) -> None:
    missing = _iitc(["test_imgs/1803.06598v1/a.png", "test_imgs/1803.06598v1/zzz.png"])
    f = _write(release / "IITC_4k_test.json", ["{not json", json.dumps(missing), json.dumps(_iitc(P))])
    with pytest.raises(DataError, match=r"IITC_4k_test\.json:1: not valid JSON"):
        read_vega_jsonl(f)
    data = read_vega_jsonl(f, on_error="skip")
    assert [s.line for s in data] == [3]
    assert "IITC_4k_test.json:2: image 'test_imgs/1803.06598v1/zzz.png' not found" in data.problems[1]
    assert len(read_vega_jsonl(f, on_error="skip", check_images=False)) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"truth_fig_idx": 2}, "outside image_paths"),
        ({"truth_fig_idx": "one"}, "not an integer"),
        ({"image_paths": P[:1]}, "differ from image_paths"),
        ({"question": 3}, "'question' must be a string"),
    ],
)
def test_record_problems(release: Path, change: dict, message: str) -> None:
    f = _write(release / "IITC_8k_test.json", [json.dumps(_iitc(P, **change))])
    with pytest.raises(DataError, match=message):
        read_vega_jsonl(f)


def test_missing_fields_and_numbering(release: Path) -> None:
    record = _iitc(P)
    del record["answer"]
    with pytest.raises(DataError, match=":1: IITC record lacks answer"):
        read_vega_jsonl(_write(release / "IITC_4k_test.json", [json.dumps(record)]))
    record = _iitc(P)
    record["context"] = record["context"].replace("Picture 2:", "Picture 3:")
    with pytest.raises(DataError, match=r"numbered \[1, 3\]"):
        read_vega_jsonl(_write(release / "IITC_4k_test.json", [json.dumps(record)]))


def test_task_of_file() -> None:
    assert task_of_file("x/IITC_8k_train.json") == "iitc"
    assert task_of_file("ITA_5picture_C_train.json") == "ita"
    assert task_of_file("other.jsonl") is None


def test_split_context_keeps_order_and_numbering() -> None:
    context = (
        "Intro [Picture 1] text.\nPicture 1: <img>a.png</img>\nFigure. 6 Picture 2: <img>b.png</img>\nend"
    )
    segments = split_context(context)
    assert [(s.kind, s.text or s.path) for s in segments] == [
        ("text", "Intro [Picture 1] text.\nPicture 1: "),
        ("image", "a.png"),
        ("text", "\nFigure. 6 Picture 2: "),
        ("image", "b.png"),
        ("text", "\nend"),
    ]
    bare = split_context(context, keep_labels=False)
    assert bare[0].text == "Intro [Picture 1] text.\n" and bare[1].number == 1
    assert "".join(s.text for s in split_context("no images")) == "no images"
