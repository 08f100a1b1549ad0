"""Mutants of the synthesis core that survived the second `make mutate` run (README "Mutation testing"),
killed here with goldens worked out by hand from the paper notes (§2.3), not from the code's output."""

from __future__ import annotations

import pytest
from paperzoo_t2vid.modeling_t2vid import (
    SampleError,
    one_fps_indices,
    parse_longqlora_answer,
    reformat_longalpaca,
    sample_id,
    seq_frames,
    split_tokens,
)


def test_default_chunk_is_115_tokens() -> None:
    # notes §2.3 step 3: the official call splits at 115 tokens (its default argument, 90, is not what it uses)
    tokens = [f"t{i}" for i in range(116)]
    assert split_tokens(tokens[:115]) == [" ".join(tokens[:115])]
    assert split_tokens(tokens) == [" ".join(tokens[:115]), "t115"]


def test_default_sample_is_24_frames() -> None:
    # notes §2.3 step 8: 24 frames. 25 frames: seg = 24 / 24 = 1, segment i is [i, i + 1], middle
    # (i + (i + 1)) // 2 = i, so frames 0..23 (the last frame, 24, is never a middle)
    assert seq_frames(25) == list(range(24))
    assert seq_frames(24) == list(range(24))


def test_longqlora_answer_needs_both_a_short_answer_and_a_gold_id() -> None:
    # an empty short answer ("Answer:" followed directly by "Long Answer:") would write "\nDocument ID: 3"
    with pytest.raises(SampleError, match="not in the form"):
        parse_longqlora_answer("Answer:  Long Answer: it was 1813. Gold Document ID: 3")
    # a short answer without a gold id, and a gold id without "Answer:"
    with pytest.raises(SampleError, match="not in the form"):
        parse_longqlora_answer("Answer: Paris")
    with pytest.raises(SampleError, match="not in the form"):
        parse_longqlora_answer("Long Answer: Paris. Gold Document ID: 3")
    # only a trailing full stop is taken off the id
    assert parse_longqlora_answer("Answer: yes Gold Document ID: 7X.") == ("yes", "7X")


def test_bad_longqlora_answer_quotes_its_first_80_characters() -> None:
    answer = "no answer here " + "x" * 100
    with pytest.raises(SampleError) as info:
        parse_longqlora_answer(answer)
    excerpt = "'no answer here " + "x" * 65 + "'"  # 15 + 65 = 80 characters
    assert str(info.value) == (
        "answer is not in the form 'Answer: ... Long Answer: ... Gold Document ID: k': " + excerpt
    )


def test_empty_field_and_negative_index_say_why() -> None:
    # the per-sample report shows this text as the reason; it must not be empty or "None"
    with pytest.raises(SampleError, match="^field 'question' is empty$"):
        reformat_longalpaca({"context": "c", "question": "  \n", "answer": "a"}, 0)
    with pytest.raises(ValueError, match=r"^sample index must be >= 0, got -1$"):
        sample_id("LongAlpaca", -1)


def test_one_fps_of_a_1_fps_video_keeps_every_frame() -> None:
    # fps = rate = 1: step 1, the frame nearest t = 0, 1, 2 s is 0, 1, 2; a 1 fps clip is valid input
    assert one_fps_indices(3, 1.0) == [0, 1, 2]
    # fps 0.8 < 1 is valid too: step 0.8, round(0) = 0, round(0.8) = 1, round(1.6) = 2, round(2.4) = 2 < 3,
    # round(3.2) = 3 stops: a 1 fps grid over a slower clip repeats a frame, as ffmpeg's fps filter does
    assert one_fps_indices(3, 0.8) == [0, 1, 2, 2]
