"""The runner: append-only resumable responses, error records instead of crashes, parallel decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from paperzoo_videomme.adapters import CallableAdapter, VideoQARequest
from paperzoo_videomme.configuration import ProtocolConfig
from paperzoo_videomme.data import load_videomme
from paperzoo_videomme.evaluate import RESPONSES, RunMismatchError, read_responses, run_evaluation
from paperzoo_videomme.frames import DecodeJob, FrameLoader, decode_video
from paperzoo_videomme.scoring import read_official_results, score_records


class Recorder:
    """Answers with the right letter, recording every request; fails on the questions in ``fail``."""

    def __init__(self, answers: dict[str, str], fail: set[str] = frozenset(), stop_after: int | None = None):
        self.answers, self.fail, self.stop_after = answers, fail, stop_after
        self.seen: list[VideoQARequest] = []

    def __call__(self, request: VideoQARequest) -> str:
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            raise KeyboardInterrupt  # what a kill looks like to the runner
        self.seen.append(request)
        if request.question_id in self.fail:
            raise RuntimeError("server said no")
        return f"The best answer is {self.answers[request.question_id]}."


def _answers(dataset) -> dict[str, str]:
    return {r["question_id"]: r["answer"] for r in dataset.records()}


def test_end_to_end_with_subtitles(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = load_videomme(synthetic_root, subtitles=True)
    recorder = Recorder(_answers(dataset))
    protocol = ProtocolConfig(num_frames=4, subtitles="official")
    summary = run_evaluation(
        dataset, CallableAdapter(recorder), protocol, tmp_path, batch_size=2, progress=False
    )
    assert summary.answered_now == 12 and summary.errors == []
    assert summary.scores["official"]["overall"]["accuracy"] == 1.0
    request = recorder.seen[0]
    assert request.frames.shape[0] == 4 and request.frames.dtype == np.uint8
    assert request.prompt.endswith("The best answer is:") and request.subtitles is not None
    assert len(request.frame_indices) == 4
    # the official results file scores the same
    assert score_records(read_official_results(tmp_path / "results.json"))["overall"]["accuracy"] == 1.0
    assert (tmp_path / "report.txt").read_text().rstrip().endswith("Overall:  100.0%")
    lines = (tmp_path / RESPONSES).read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["backend"] == "decord"


def test_resume_after_a_kill_skips_finished_questions(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = load_videomme(synthetic_root)
    protocol = ProtocolConfig(num_frames=2)
    first = Recorder(_answers(dataset), stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(
            dataset, CallableAdapter(first, name="m"), protocol, tmp_path, batch_size=1, progress=False
        )
    assert len(read_responses(tmp_path / RESPONSES)) == 5
    with (tmp_path / RESPONSES).open("a") as handle:
        handle.write('{"question_id": "004-1", "resp')  # a line cut off mid-write
    second = Recorder(_answers(dataset))
    summary = run_evaluation(dataset, CallableAdapter(second, name="m"), protocol, tmp_path, progress=False)
    assert len(second.seen) == 7 and summary.skipped_done == 5 and summary.answered_now == 7
    assert not {r.question_id for r in second.seen} & {r.question_id for r in first.seen}
    assert summary.scores["official"]["overall"]["total"] == 12
    third = Recorder(_answers(dataset))
    run_evaluation(dataset, CallableAdapter(third, name="m"), protocol, tmp_path, progress=False)
    assert third.seen == []  # nothing left to do


def test_other_settings_in_the_same_folder_are_refused(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = load_videomme(synthetic_root, limit_videos=1)
    model = CallableAdapter(Recorder(_answers(dataset)), name="m")
    run_evaluation(dataset, model, ProtocolConfig(num_frames=2), tmp_path, progress=False)
    with pytest.raises(RunMismatchError, match="changed: protocol"):
        run_evaluation(dataset, model, ProtocolConfig(num_frames=3), tmp_path, progress=False)
    summary = run_evaluation(
        dataset, model, ProtocolConfig(num_frames=3), tmp_path, progress=False, overwrite=True
    )
    assert summary.answered_now == 3


def test_model_failures_and_corrupt_videos_become_records(release_copy: Path, tmp_path: Path) -> None:
    (release_copy / "video" / "shapes-002.mp4").write_bytes(
        b"\x00\x01garbage" * 64
    )  # found only when decoding
    dataset = load_videomme(release_copy)
    recorder = Recorder(_answers(dataset), fail={"003-2"})
    summary = run_evaluation(dataset, CallableAdapter(recorder), ProtocolConfig(num_frames=2), tmp_path,
                             batch_size=3, progress=False)  # fmt: skip
    kinds = sorted(e.kind for e in summary.errors)
    assert kinds == ["corrupt_video", "model_error"]
    assert "shapes-002" in next(e.message for e in summary.errors if e.kind == "corrupt_video")
    assert "server said no" in next(e.message for e in summary.errors if e.kind == "model_error")
    assert summary.answered_now == 8  # 12 - 3 (corrupt video) - 1 (model error)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [v["missing"] for v in results] == [False, True, False, False]
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert {e["kind"] for e in errors} == {"corrupt_video", "model_error"}
    # a rerun retries only the failed question
    retry = Recorder(_answers(dataset))
    run_evaluation(dataset, CallableAdapter(retry), ProtocolConfig(num_frames=2), tmp_path, progress=False)
    assert [r.question_id for r in retry.seen] == ["003-2"]


def test_parallel_decoding_matches_serial(synthetic_root: Path) -> None:
    dataset = load_videomme(synthetic_root, subtitles=True)
    jobs = [
        DecodeJob(v.videoID, str(v.video_path), str(v.subtitle_path), num_frames=5, subtitles="lmms_eval")
        for v in dataset.videos
    ]
    serial = list(FrameLoader(0).imap(jobs))
    parallel = list(FrameLoader(2).imap(jobs))
    assert [d.video_key for d in parallel] == [j.video_key for j in jobs]  # job order kept
    for a, b in zip(serial, parallel):
        assert a.indices == b.indices and a.subtitles == b.subtitles
        np.testing.assert_array_equal(a.frames, b.frames)


def test_decode_errors_are_returned(tmp_path: Path) -> None:
    result = decode_video(DecodeJob("ghost", str(tmp_path / "ghost.mp4")))
    assert result.frames is None and result.error is not None and "ghost.mp4" in result.error.message
    with pytest.raises(ValueError, match="num_workers"):
        FrameLoader(-1)


def test_progress_bar_shows_an_eta(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    dataset = load_videomme(synthetic_root, limit_videos=1)
    run_evaluation(
        dataset, CallableAdapter(Recorder(_answers(dataset))), ProtocolConfig(num_frames=2), tmp_path
    )
    err = capsys.readouterr().err
    assert "3/3" in err and "<" in err  # tqdm's [elapsed<remaining]
