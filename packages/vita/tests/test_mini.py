"""The espeak-ng mini: scoring, comparisons and CMVN against hand-computed goldens; synthesis, items, the message
when espeak-ng is missing, and a tiny end-to-end run of the preset."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from paperzoo_vita.configuration import ComparisonSpec, ExperimentConfig
from paperzoo_vita.mini import compare, mini_items, score, set_global_cmvn
from paperzoo_vita.paper import PAPER
from paperzoo_vita.speech import ESPEAK_MISSING, coloured_noise, require_espeak, synthesize

from paperzoo_shared.config import load_config
from paperzoo_shared.errors import UserError
from paperzoo_shared.repro import run_reproduction

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason=ESPEAK_MISSING)


def _r(kind, state, answer="", truth="red", colours=("red", "blue")):
    return {"kind": kind, "state": state, "answer": answer, "truth": truth, "colours": colours}


def test_score_golden():
    records = [
        _r("text", "<3>", "red"), _r("text", "<1>", "green"),  # 1/2 right, 1/2 in the image
        _r("spoken", "<1>", "red"), _r("spoken", "<1>", "blue"), _r("spoken", "<2>", "</s>"), _r("spoken", "<1>", "red"),
        _r("noise", "<2>"), _r("noise", "<1>", "red"),
        _r("talk", "<2>"), _r("talk", "<2>"),
    ]  # fmt: skip
    got = score(records)
    # spoken: 2/4 right, 3/4 name an image colour; <2> predicted on 3 of the 4 negatives and 1 of the 4 queries
    assert got == {
        "text_accuracy": 50.0, "text_in_image": 50.0, "spoken_accuracy": 50.0, "spoken_in_image": 75.0,
        "state_accuracy": 70.0,  # text 1 + spoken 3 + noise 1 + talk 2 = 7 of 10
        "nonawake_precision": 75.0, "nonawake_recall": 75.0, "recall_noise": 50.0, "recall_talk": 100.0,
        "awake_rate": 75.0, "decision_balanced_accuracy": 75.0,
    }  # fmt: skip
    always_1 = score([{**r, "state": "<1>" if r["kind"] != "text" else "<3>"} for r in records])
    assert always_1["nonawake_recall"] == 0.0 and always_1["nonawake_precision"] == 0.0
    assert always_1["decision_balanced_accuracy"] == 50.0 and always_1["awake_rate"] == 100.0
    with pytest.raises(ValueError, match="every kind"):
        score(records[:8])


def test_compare_golden():
    per_seed = {0: {"a": 60.0, "b": 50.0}, 1: {"a": 70.0, "b": 55.0}, 2: {"a": 80.0, "b": 60.0}}
    paired, fixed, less = compare(
        [ComparisonSpec("p", "a", b="b"), ComparisonSpec("r", "a", reference=50.0),
         ComparisonSpec("l", "b", reference=70.0, expect="less")],
        per_seed,
    )  # fmt: skip
    # a - b = 10, 15, 20: mean 15, sd 5, se 5/sqrt(3); t_0.975,2 = 4.302653 -> half-width 12.4207
    assert paired["mean_difference"] == pytest.approx(15.0)
    assert (paired["low"], paired["high"]) == pytest.approx((2.5793, 27.4207), abs=1e-4)
    assert paired["holds"] and paired["n"] == 3 and paired["b"] == "b"
    # a - 50 = 10, 20, 30: mean 20, sd 10 -> half-width 24.8414: the interval reaches below 0
    assert (fixed["low"], fixed["high"]) == pytest.approx((-4.8414, 44.8414), abs=1e-4)
    assert not fixed["holds"] and fixed["b"] == "50"
    # b - 70 = -20, -15, -10: the interval [-27.42, -2.58] lies below 0, as registered
    assert less["holds"] and less["high"] == pytest.approx(-2.5793, abs=1e-4)
    with pytest.raises(ValueError, match="give b"):
        compare([ComparisonSpec("x", "a")], per_seed)


def test_global_cmvn_from_training_clips():
    from types import SimpleNamespace

    from paperzoo_vita.modeling_vita import GlobalCMVN

    model = SimpleNamespace(audio_encoder=SimpleNamespace(cmvn=GlobalCMVN(2)))
    fbanks = [torch.tensor([[1.0, 2.0], [3.0, 6.0]]), torch.tensor([[5.0, 10.0]])]
    set_global_cmvn(model, fbanks)
    # bin 0: 1, 3, 5 -> mean 3, population var 8/3; bin 1: 2, 6, 10 -> mean 6, var 32/3
    assert model.audio_encoder.cmvn.mean.tolist() == pytest.approx([3.0, 6.0])
    assert model.audio_encoder.cmvn.istd.tolist() == pytest.approx(
        [(3 / 8) ** 0.5, (3 / 32) ** 0.5], rel=1e-6
    )


def test_coloured_noise():
    rng = np.random.default_rng(0)
    for colour in ("white", "brown"):
        x = coloured_noise(rng, 8000, colour, 0.05)
        assert float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(0.05, rel=1e-5)
        assert abs(float(x.mean())) < 1e-6
    white, brown = coloured_noise(rng, 8000, "white", 0.1), coloured_noise(rng, 8000, "brown", 0.1)
    # brown noise is low-pass: neighbouring samples nearly equal; white noise's are independent
    assert (
        np.corrcoef(brown[:-1], brown[1:])[0, 1] > 0.9 > 0.1 > abs(np.corrcoef(white[:-1], white[1:])[0, 1])
    )
    with pytest.raises(ValueError, match="white or brown"):
        coloured_noise(rng, 10, "pink", 0.1)


def test_missing_espeak_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError) as info:
        require_espeak()
    assert str(info.value) == ESPEAK_MISSING and "apt-get install -y espeak-ng" in ESPEAK_MISSING
    assert "\n" not in ESPEAK_MISSING
    cfg = load_config(ExperimentConfig, PAPER.data_root() / "configs" / "mini.yaml")
    with pytest.raises(UserError, match="espeak-ng is not installed"):
        mini_items(cfg, 1, seed=0, cache=tmp_path)


@needs_espeak
def test_synthesis_is_16k_cached_and_deterministic(tmp_path, monkeypatch):
    wave = synthesize("what colour is the circle", "en-us", 160, 50, cache=tmp_path)
    assert wave.dtype == np.float32 and 0.6 < wave.shape[0] / 16000 < 3.0  # about 1.2 s of speech at 16 kHz
    assert len(list(tmp_path.glob("*.npy"))) == 1
    assert np.abs(wave).max() > 0.05
    other = synthesize("what colour is the square", "en-us", 160, 50, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not np.array_equal(
        wave[: len(other)], other[: len(wave)]
    )

    def no_process(*args, **kwargs):
        raise AssertionError("espeak-ng ran although the clip was cached")

    monkeypatch.setattr(subprocess, "run", no_process)
    np.testing.assert_array_equal(
        synthesize("what colour is the circle", "en-us", 160, 50, cache=tmp_path), wave
    )


@needs_espeak
def test_mini_items(tmp_path):
    cfg = load_config(ExperimentConfig, PAPER.data_root() / "configs" / "mini.yaml")
    items = mini_items(cfg, 2, seed=3, cache=tmp_path)
    assert [i["kind"] for i in items] == ["text", "spoken", "noise", "talk"] * 2
    for item in items:
        ((user, answer),) = item["turns"]
        state = {"text": "<3>", "spoken": "<1>", "noise": "<2>", "talk": "<2>"}[item["kind"]]
        assert answer == (state if state == "<2>" else state + item["answer"])
        assert (item["audio"] is None) == (item["kind"] == "text") and ("<audio>" in user) == (
            item["audio"] is not None
        )
        assert item["answer"] in item["colours"] and len(set(item["colours"])) == 2
        if item["kind"] == "text":
            assert item["answer"] not in user and "colour" in user.lower()  # the question, not the answer
    again = mini_items(cfg, 2, seed=3, cache=tmp_path)
    for a, b in zip(items, again):
        assert a["turns"] == b["turns"] and np.array_equal(a["image"], b["image"])
        assert (a["audio"] is None and b["audio"] is None) or np.array_equal(a["audio"], b["audio"])
    other = mini_items(cfg, 2, seed=4, cache=tmp_path)
    assert not any(np.array_equal(a["image"], b["image"]) for a, b in zip(items, other))


@pytest.mark.parametrize("preset", ["mini", "mini-long"])
def test_mini_comparisons_name_real_columns(preset):
    from paperzoo_shared.repro import load_tables

    cfg = load_config(ExperimentConfig, PAPER.data_root() / "configs" / f"{preset}.yaml")
    table = load_tables(PAPER.data_root() / "paper" / "tables.yaml").table("omni_mini")
    columns = {m.id for m in table.metrics}
    assert len(cfg.speech.comparisons) >= 5 and len(table.seeds[preset]) >= 3
    for spec in cfg.speech.comparisons:
        assert spec.a in columns and (spec.b in columns or (not spec.b and spec.reference is not None))


@needs_espeak
def test_mini_reproduction_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERZOO_VITA_CACHE", str(tmp_path / "cache"))
    ((json_path, markdown),) = run_reproduction(
        PAPER, preset="mini", table_id="omni_mini", out_dir=tmp_path / "out", command="pytest", seeds=[0, 1],
        overrides=["speech.train_per_kind=2", "speech.eval_per_kind=1", "train.steps=2", "train.batch_size=4"],
    )  # fmt: skip
    results = json.loads(json_path.read_text())
    metrics = results["rows"][0]["metrics"]
    assert metrics["text_accuracy"]["n"] == 2 and 0 <= metrics["decision_balanced_accuracy"]["mean"] <= 100
    assert 0 <= metrics["seen_text_accuracy"]["mean"] <= 100
    assert [c["id"] for c in results["extra"]["comparisons"]][:2] == [
        "text_above_chance",
        "spoken_above_chance",
    ]
    assert "text_above_chance: text_accuracy - 50" in markdown
    assert list((tmp_path / "cache" / "espeak").glob("*.npy"))  # speech cached outside the results folder
    assert not list((tmp_path / "out").glob("*.npy"))
