"""Subtitle reading: pysubs2 (the official slicer's reader) on release-style files, checked by hand."""

from __future__ import annotations

import pytest
from paperzoo_videomme.modeling_videomme import parse_srt, read_srt

FONT = '<font color="white" size=".72c">{}</font>'
CASES = {
    "release_style": "1\n00:00:01,000 --> 00:00:02,500\n" + FONT.format("Hello there") + "\n\n"
    "2\n00:00:03,000 --> 00:00:04,000\n" + FONT.format("two") + "\n" + FONT.format("lines") + "\n",
    "styles": "1\n00:00:00,000 --> 00:00:01,000\n<i>it</i> <b>bold</b> <u>u</u> <s>s</s> < i >x< / i >\n",
    "empty_cue": "1\n00:00:00,000 --> 00:00:01,000\n\n2\n00:00:01,000 --> 00:00:02,000\nnext\n",
    "number_sticks": "1\n00:00:00,000 --> 00:00:01,000\nfirst\n2\n00:00:01,000 --> 00:00:02,000\nsecond\n",
    "short_fraction": "1\n0:0:1,5 --> 0:0:2,05\nfractions\n",
    "dot_separator": "1\n00:00:01.250 --> 00:00:02.000\ndots\n",
    "crlf": "1\r\n00:00:01,000 --> 00:00:02,000\r\ncrlf text\r\n\r\n",
    "bom_and_unsorted": "\ufeff1\n00:00:05,000 --> 00:00:06,000\nlater\n\n2\n00:00:01,000 --> 00:00:02,000\nearlier\n",
    "other_tags": '1\n00:00:00,000 --> 00:00:01,000\n<font face="x">f</font> <span>sp</span> a < b\n',
    "no_trailing_newline": "1\n00:00:00,000 --> 00:00:01,000\nend",
}


def test_release_style_cues_by_hand(tmp_path) -> None:
    path = tmp_path / "release.srt"
    path.write_bytes(CASES["release_style"].encode("utf-8"))
    cues = read_srt(path)
    # <font> tags removed, the two lines of the second cue joined with \N, times in ms
    assert [(c.start_ms, c.end_ms, c.text) for c in cues] == [
        (1000, 2500, "Hello there"),
        (3000, 4000, "two\\Nlines"),
    ]


@pytest.mark.parametrize(
    "name", ["crlf", "dot_separator", "bom_and_unsorted", "empty_cue", "no_trailing_newline"]
)
def test_real_world_variants_parse(name: str) -> None:
    cues = parse_srt(CASES[name])
    assert cues and all(c.start_ms < c.end_ms for c in cues)
    if name == "bom_and_unsorted":  # file order is kept: the official scan takes the first cue in file order
        assert [c.text for c in cues] == ["later", "earlier"]


def test_hand_checked_values() -> None:
    cues = parse_srt(CASES["short_fraction"] + "\n" + CASES["styles"])
    assert (cues[0].start_ms, cues[0].end_ms) == (1500, 2050)
    assert cues[1].text == "{\\i1}it{\\i0} {\\b1}bold{\\b0} {\\u1}u{\\u0} {\\s1}s{\\s0} {\\i1}x{\\i0}"


def test_unreadable_subtitle_names_the_file(tmp_path) -> None:
    from paperzoo_shared.data.errors import DataError

    path = tmp_path / "latin1.srt"
    path.write_bytes("1\n00:00:00,000 --> 00:00:01,000\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.srt is not UTF-8"):
        read_srt(path)
