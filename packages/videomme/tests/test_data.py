"""The loader of the release layout: every kind of bad item becomes an error record, never the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paperzoo_videomme.data import load_videomme, read_annotation_rows, write_parquet_rows

from paperzoo_shared.data.errors import DataError


def _rows(root: Path) -> list[dict]:
    return json.loads((root / "videomme" / "test.json").read_text())


def test_synthetic_release_layout(synthetic_root: Path) -> None:
    assert (synthetic_root / "videomme" / "test-00000-of-00001.parquet").is_file()
    videos = sorted(p.name for p in (synthetic_root / "video").iterdir())
    assert videos == [f"shapes-00{i}.mp4" for i in range(1, 5)]
    srt = (synthetic_root / "subtitle" / "shapes-001.srt").read_text()
    assert '<font color="white" size=".72c">' in srt  # the release wraps every text line
    parquet = read_annotation_rows(synthetic_root / "videomme" / "test-00000-of-00001.parquet")
    assert parquet == read_annotation_rows(synthetic_root / "videomme" / "test.json")
    assert len({(r["domain"], r["sub_category"]) for r in parquet}) == 4  # spread over the categories
    assert set(parquet[0]) == {"video_id", "duration", "domain", "sub_category", "url", "videoID", "question_id",
                               "task_type", "question", "options", "answer"}  # fmt: skip


def test_load_clean(synthetic_root: Path) -> None:
    dataset = load_videomme(synthetic_root, subtitles=True)
    assert dataset.annotations.suffix == ".parquet"
    assert len(dataset.videos) == 4 and dataset.num_questions == 12
    assert dataset.errors == []
    assert all(v.usable and v.video_path and v.subtitle_path for v in dataset.videos)
    first = dataset.videos[0]
    assert first.questions[0].question_id == "001-1" and first.questions[0].options[0].startswith("A. ")


def test_every_problem_is_recorded(release_copy: Path) -> None:
    rows = _rows(release_copy)
    rows.append(dict(rows[0]))  # a duplicated question_id
    rows.append({**rows[1], "question_id": "001-9", "answer": "E"})  # an invalid answer
    rows.append({**rows[1], "question_id": "001-8", "task_type": "Counting Problems"})  # the figure's plural
    rows.append(
        {**rows[1], "question_id": "001-7", "duration": "long" if rows[1]["duration"] != "long" else "short"}
    )
    del rows[2]["options"]
    path = release_copy / "rows.json"
    path.write_text(json.dumps(rows))
    (release_copy / "video" / "shapes-002.mp4").unlink()  # a missing video
    (release_copy / "video" / "shapes-003.mp4").write_bytes(b"")  # an empty video
    (release_copy / "subtitle" / "shapes-004.srt").unlink()  # a missing subtitle file

    dataset = load_videomme(release_copy, annotations=path, subtitles=True)
    kinds = sorted(e.kind for e in dataset.errors)
    assert kinds == ["bad_row", "bad_row", "bad_row", "corrupt_video", "duplicate_id", "inconsistent_video",
                     "missing_subtitle", "missing_video"]  # fmt: skip
    by_kind = {e.kind: e for e in dataset.errors}
    assert (
        "shapes-002.mp4" in by_kind["missing_video"].message and "unzip" in by_kind["missing_video"].message
    )
    assert "is empty" in by_kind["corrupt_video"].message
    assert "Counting Problems" in next(e.message for e in dataset.errors if e.item == "001-8")
    assert "answer 'E'" in next(e.message for e in dataset.errors if e.item == "001-9")
    assert by_kind["missing_subtitle"].dropped is False  # evaluated without subtitles, as officially
    usable = {v.videoID for v in dataset.usable_videos()}
    assert usable == {"shapes-001", "shapes-004"}
    assert [q.question_id for q in dataset.videos[0].questions] == ["001-1", "001-2"]  # one 001-1; 001-3 bad
    assert "2 usable" in dataset.summary()


def test_probe_finds_a_corrupt_file(release_copy: Path) -> None:
    (release_copy / "video" / "shapes-001.mp4").write_bytes(b"this is not an mp4 file" * 100)
    dataset = load_videomme(release_copy, probe=True)
    assert [e.kind for e in dataset.errors] == ["corrupt_video"]
    assert "shapes-001.mp4" in dataset.errors[0].message


def test_alternative_layouts(release_copy: Path) -> None:
    (release_copy / "video").rename(release_copy / "data")  # lmms-eval's cache folder name
    mkv = release_copy / "data" / "shapes-001.mkv"
    (release_copy / "data" / "shapes-001.mp4").rename(mkv)
    grouped = {}
    for row in _rows(release_copy):  # the official results layout as annotations
        video = grouped.setdefault(
            row["video_id"],
            {k: row[k] for k in ("video_id", "videoID", "duration", "domain", "sub_category")}
            | {"questions": []},
        )
        video["questions"].append(
            {k: row[k] for k in ("question_id", "task_type", "question", "options", "answer")}
        )
    path = release_copy / "grouped.json"
    path.write_text(json.dumps(list(grouped.values())))
    dataset = load_videomme(release_copy, annotations=path, durations=["short", "medium", "long"])
    assert dataset.errors == [] and dataset.videos[0].video_path == mkv
    jsonl = release_copy / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in _rows(release_copy)))
    assert load_videomme(release_copy, annotations=jsonl, limit_videos=2).num_questions == 6


def test_clear_errors_for_unusable_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_videomme(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no Video-MME annotations.*test-00000-of-00001.parquet"):
        load_videomme(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json is not valid UTF-8 JSON"):
        read_annotation_rows(bad)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 nope")
    with pytest.raises(DataError, match="broken.parquet is not a readable parquet"):
        read_annotation_rows(broken)


def test_parquet_round_trip(tmp_path: Path, synthetic_root: Path) -> None:
    rows = _rows(synthetic_root)
    assert write_parquet_rows(tmp_path / "x.parquet", rows)
    assert read_annotation_rows(tmp_path / "x.parquet") == rows


def test_json_copy_is_used_without_pyarrow(synthetic_root: Path, monkeypatch) -> None:
    import paperzoo_videomme.data as data

    monkeypatch.setattr(data, "_pyarrow_available", lambda: False)
    assert load_videomme(synthetic_root).annotations.name == "test.json"


@pytest.mark.parametrize("video_id", ["../outside", "/etc/passwd", "sub/../../outside"])
def test_a_video_path_that_leaves_the_folder_is_refused(release_copy: Path, video_id: str) -> None:
    rows = _rows(release_copy)
    (release_copy.parent / "outside.mp4").write_bytes(b"not a video")  # would be found without the check
    for row in rows:
        if row["videoID"] == "shapes-002":
            row["videoID"] = video_id
    path = release_copy / "rows.json"
    path.write_text(json.dumps(rows))
    index = next(i for i, row in enumerate(rows) if row["videoID"] == video_id)
    with pytest.raises(DataError) as caught:
        load_videomme(release_copy, annotations=path)
    message = str(caught.value)
    assert str(path) in message and f"row {index}" in message and repr(video_id) in message
    assert "absolute" in message or "leaves the data root" in message
