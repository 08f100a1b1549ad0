"""§5.3 (frame sampling and subtitle alignment) and §5.4 (prompt goldens) of the notes.

Cues are the video-slicer demo's: S1 [0, 5720), S2 [5720, 7320), S3 [7320, 11800), S4 [11800, 15320) ms;
the video has N = 463 frames at 30 fps. The expected indices and subtitles were computed by hand from the
official rules (and agree with the notes' table).
"""

from __future__ import annotations

import pytest
from paperzoo_videomme.modeling_videomme import (
    LMMS_EVAL_NO_SUBTITLES,
    build_prompt,
    fps_indices,
    frame_time_ms,
    full_subtitle_lines,
    linspace_indices,
    lmms_eval_subtitle_lines,
    official_midpoint_indices,
    official_subtitle_lines,
    parse_srt,
    sample_frame_indices,
    vlmeval_interior_indices,
)

FONT = '<font color="white" size=".72c">{}</font>'
DEMO_SRT = "\n".join(
    [
        "1", "00:00:00,000 --> 00:00:05,720", FONT.format("S1"), "",
        "2", "00:00:05,720 --> 00:00:07,320", FONT.format("S2"), "",
        "3", "00:00:07,320 --> 00:00:11,800", FONT.format("S3"), "",
        "4", "00:00:11,800 --> 00:00:15,320", FONT.format("S4"), "",
    ]
)  # fmt: skip
N, FPS = 463, 30.0


@pytest.mark.parametrize(
    ("k", "midpoints", "official_subs", "interior", "interior_subs", "linspace", "lmms_subs"),
    [
        (4, [58, 173, 288, 404], ["S1", "S2", "S3", "S4"], [92, 185, 277, 370], ["S1", "S2", "S3", "S4"],
         [0, 154, 308, 462], ["S1", "S3"]),
        (8, [29, 87, 144, 202, 260, 317, 375, 433], ["S1", "S1", "S1", "S2", "S3", "S3", "S4", "S4"],
         [51, 102, 154, 205, 257, 308, 360, 411], ["S1", "S1", "S1", "S2", "S3", "S3", "S4", "S4"],
         [0, 66, 132, 198, 264, 330, 396, 462], ["S1", "S2", "S3", "S4"]),
        (2, [115, 346], ["S1", "S3"], [154, 308], ["S1", "S3"], [0, 462], ["S1"]),
    ],
)  # fmt: skip
def test_table_5_3(k, midpoints, official_subs, interior, interior_subs, linspace, lmms_subs) -> None:
    cues = parse_srt(DEMO_SRT)
    assert official_midpoint_indices(N, k) == midpoints
    assert official_subtitle_lines(cues, midpoints, FPS) == official_subs
    assert vlmeval_interior_indices(N, k) == interior
    assert (
        official_subtitle_lines(cues, interior, FPS) == interior_subs
    )  # VLMEvalKit: same rule, other frames
    assert linspace_indices(N, k) == linspace
    # lmms-eval takes its subtitle frames from the task's frame_num, whatever the model sees
    assert lmms_eval_subtitle_lines(DEMO_SRT, N, FPS, frame_num=k) == lmms_subs


def test_lmms_eval_uses_32_subtitle_frames_by_default() -> None:
    assert lmms_eval_subtitle_lines(DEMO_SRT, N, FPS) == ["S1", "S2", "S3", "S4"]


def test_boundaries_strict_versus_half_open() -> None:
    cues = parse_srt(DEMO_SRT)
    assert frame_time_ms(0, FPS) == 0
    assert official_subtitle_lines(cues, [0], FPS) == []  # strict start < t: nothing at t = 0
    assert lmms_eval_subtitle_lines(DEMO_SRT, N, FPS, frame_num=1) == ["S1"]  # frame 0, start <= f
    # a cue boundary: frame 171.6 -> t(172) = 5733 ms is in S2; lmms-eval's S2 starts at int(5.72*30) = 171
    assert official_subtitle_lines(cues, [171, 172], FPS) == ["S1", "S2"]
    assert official_subtitle_lines(cues, [460, 462], FPS) == []  # after the last cue end (15320 ms)
    assert official_subtitle_lines(cues, [58, 58, 58], FPS) == ["S1", "S1", "S1"]  # duplicates kept


def test_official_text_cleanup() -> None:
    srt = (
        "1\n00:00:01,000 --> 00:00:04,000\n" + FONT.format("first line") + "\n" + FONT.format("second") + "\n"
    )
    cues = parse_srt(srt)
    assert cues[0].text == "first line\\Nsecond"
    assert official_subtitle_lines(cues, [60], 30.0) == ["first line second"]
    # lmms-eval keeps only the first <font> match of a cue: the second line is lost
    assert lmms_eval_subtitle_lines(srt, 200, 30.0, frame_num=200) == ["first line"]
    # blank cue text is skipped, not kept as an empty line
    blank = '1\n00:00:01,000 --> 00:00:04,000\n<font color="white" size=".72c"> </font>\n'
    assert official_subtitle_lines(parse_srt(blank), [60], 30.0) == []


def test_lmms_eval_drops_cues_without_the_font_tag_and_merges_equal_timings() -> None:
    srt = (
        "1\n00:00:00,000 --> 00:00:02,000\nplain text\n\n2\n00:00:02,000 --> 00:00:04,000\n"
        + FONT.format("x")
        + "\n"
    )
    assert lmms_eval_subtitle_lines(srt, 120, 30.0, frame_num=120) == ["x"]
    twice = (
        "1\n00:00:00,000 --> 00:00:02,000\n" + FONT.format("first") + "\n\n"
        "2\n00:00:00,000 --> 00:00:02,000\n" + FONT.format("second") + "\n"
    )
    assert lmms_eval_subtitle_lines(twice, 60, 30.0, frame_num=60) == ["second"]  # keyed by (start, end)


def test_full_subtitles_every_line() -> None:
    assert full_subtitle_lines(DEMO_SRT) == ["S1", "S2", "S3", "S4"]


def test_samplers_by_name_and_edge_cases() -> None:
    assert sample_frame_indices("official", 10, k=3) == [1, 4, 7]  # seg 3: bounds 0,3,6,9
    assert official_midpoint_indices(3, 5) == [0, 0, 1, 1, 2]  # seg 0.4: bounds 0,0,1,1,2,2
    assert official_midpoint_indices(1, 2) == [0, 0]
    assert sample_frame_indices("lmms_eval", 10, k=3) == [0, 4, 9]
    assert sample_frame_indices("vlmevalkit", 10, k=4) == [2, 4, 6, 8]
    assert fps_indices(80, 8.0, 1.0) == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72]
    assert fps_indices(80, 8.0, 0.5) == [0, 16, 32, 48, 64]
    assert fps_indices(80, 8.0, 1.0, max_frames=4) == [0, 26, 52, 79]  # the cap: linspace
    assert fps_indices(3, 8.0, 1.0) == [0]  # shorter than one step: the first frame
    with pytest.raises(ValueError, match="unknown frame sampler 'uniform'"):
        sample_frame_indices("uniform", 10)
    with pytest.raises(ValueError, match="at least one frame"):
        official_midpoint_indices(0, 4)


QUESTION = "What is the color of the clothing worn by the persons in the video?"
OPTIONS = ["A. Black.", "B. Gray.", "C. Green.", "D. Brown."]
SUBS = ["Hi guys, I'm going to show you how to perfectly prepare a ..."]
OFFICIAL_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)


def test_official_prompts_match_the_readme_examples() -> None:
    without = (
        "Select the best answer to the following multiple-choice question based on the video. Respond with only "
        "the letter (A, B, C, or D) of the correct option.\n"
        "What is the color of the clothing worn by the persons in the video?\n"
        "A. Black.\nB. Gray.\nC. Green.\nD. Brown.\n"
        "The best answer is:"
    )
    assert build_prompt("official", QUESTION, OPTIONS) == without
    assert build_prompt("official", QUESTION, OPTIONS, SUBS) == (
        "This video's subtitles are listed below:\n"
        "Hi guys, I'm going to show you how to perfectly prepare a ...\n" + without
    )
    # no subtitle lines (a video without .srt): the block is left out
    assert build_prompt("official", QUESTION, OPTIONS, []) == without


def test_lmms_eval_prompts() -> None:
    instruction = (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option."
    )
    body = f"{instruction}\n{QUESTION}\nA. Black.\nB. Gray.\nC. Green.\nD. Brown.\n"
    assert build_prompt("lmms_eval", QUESTION, OPTIONS) == (
        body + "\nAnswer with the option's letter from the given choices directly."
    )
    assert (
        build_prompt("lmms_eval", QUESTION, OPTIONS, post_prompt="The best answer is:")
        == body + "The best answer is:"
    )
    assert build_prompt("lmms_eval", QUESTION, OPTIONS, SUBS) == (
        "This video's subtitles are listed below: \n" + SUBS[0] + "\n" + body + "The best answer is:"
    )
    assert build_prompt("lmms_eval", QUESTION, OPTIONS, [LMMS_EVAL_NO_SUBTITLES]).startswith(
        "This video's subtitles are listed below: \nNo subtitles available\nSelect"
    )


def test_vlmevalkit_prompts() -> None:
    tail = f"Question: {QUESTION}\nA. Black.\nB. Gray.\nC. Green.\nD. Brown.\nAnswer: "
    assert build_prompt("vlmevalkit", QUESTION, OPTIONS) == (
        "\nThese are the frames of a video. " + OFFICIAL_INSTRUCTION + "\n" + tail
    )
    assert build_prompt("vlmevalkit", QUESTION, OPTIONS, SUBS) == (
        "\nThese are the frames of a video. This video's subtitles are listed below:\n"
        + SUBS[0]
        + "\n"
        + OFFICIAL_INSTRUCTION
        + "\n"
        + tail
    )
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_prompt("llava", QUESTION, OPTIONS)
