"""§4.1 T2Vid 5 and 7: the 24-frame sampler, the 1 fps grid and the mixer."""

from __future__ import annotations

from collections import Counter

import pytest
from paperzoo_t2vid.modeling_t2vid import mix, mix_counts, one_fps_indices, seq_frames


def test_seq_frames_by_hand() -> None:
    # seg = 9 / 3 = 3: segments [0, 3], [3, 6], [6, 9]; middles 1, 4, 7
    assert seq_frames(10, 3) == [1, 4, 7]
    # seg = 99 / 24 = 4.125; segment 0 is [0, 4] -> 2, segment 23 is [95, 99] -> 97
    frames = seq_frames(100, 24)
    assert len(frames) == 24 and frames[0] == 2 and frames[-1] == 97
    assert (
        all(a < b for a, b in zip(frames, frames[1:], strict=False)) and frames[0] >= 0 and frames[-1] <= 99
    )
    assert seq_frames(24, 24) == list(range(24)) and seq_frames(7, 24) == list(range(7))
    with pytest.raises(ValueError):
        seq_frames(0, 24)


def test_one_fps_grid_by_hand() -> None:
    assert one_fps_indices(75, 25.0) == [0, 25, 50]
    assert one_fps_indices(100, 29.97) == [0, 30, 60, 90]  # round(89.91) = 90
    assert one_fps_indices(10, 4.0, rate=2.0) == [0, 2, 4, 6, 8]
    assert one_fps_indices(0, 25.0) == []


def test_30k_mix_is_10k_10k_10k() -> None:
    assert mix_counts(30000, 1 / 3, 2) == (10000, [10000, 10000])
    assert mix_counts(10, 0.15, 2) == (2, [4, 4])
    assert mix_counts(7, 0.0, 2) == (0, [4, 3])
    syn = [("syn", i) for i in range(15000)]
    chatgpt = [("vcg", i) for i in range(12000)]
    gemini = [("sg", i) for i in range(11000)]
    mixed = mix(syn, [chatgpt, gemini], 30000, 1 / 3, seed=0)
    assert Counter(src for src, _ in mixed) == {"syn": 10000, "vcg": 10000, "sg": 10000}
    assert len(set(mixed)) == 30000  # drawn without replacement
    assert mixed == mix(syn, [chatgpt, gemini], 30000, 1 / 3, seed=0)
    assert mixed != mix(syn, [chatgpt, gemini], 30000, 1 / 3, seed=1)
    first = [src for src, _ in mixed[:300]]  # shuffled, not blocks
    assert 50 < first.count("syn") < 150


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_ratio_sweep_gives_the_requested_share(ratio: float) -> None:
    syn, vid = list(range(1000)), list(range(1000, 2000))
    mixed = mix(syn, [vid], 1000, ratio, seed=3)
    assert sum(1 for x in mixed if x < 1000) == round(1000 * ratio)


def test_a_short_pool_is_an_error() -> None:
    with pytest.raises(ValueError, match="synthetic has 5 samples; the mix needs 10"):
        mix(list(range(5)), [list(range(100))], 30, 1 / 3, seed=0)
    with pytest.raises(ValueError, match="synthetic_ratio"):
        mix_counts(10, 1.5, 1)
