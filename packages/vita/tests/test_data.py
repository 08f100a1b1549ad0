"""mixtral_two prompts, state tokens, label masks, the released JSON schema (notes §1.5, §4.1.6-7)."""

from __future__ import annotations

import json

import pytest
from paperzoo_vita.configuration import IGNORE_INDEX
from paperzoo_vita.data import (
    SYSTEM_PROMPTS,
    MixtralTwoTemplate,
    assign_state_tokens,
    encode_pieces,
    expand_placeholders,
    read_vita_json,
    record_turns,
    select_modality,
)

from paperzoo_shared.data.errors import DataError


def test_prompt_text():
    template = MixtralTwoTemplate({"image": "S", "video": "V", "lang": "L"})
    assert (
        template.render([("q1", "a1"), ("q2", None)], "image")
        == "system:S</s>\nuser:q1</s>\nbot:a1</s>\nuser:q2</s>\nbot:"
    )
    assert template.render([("q", "a")], "lang") == "system:L</s>\nuser:q</s>\nbot:a</s>"


def test_system_prompts_by_modality():
    assert select_modality([("<image>\nwhat?", None)]) == "image"
    assert select_modality([("<image>\nwhat?", None)], has_video=True) == "video"
    assert select_modality([("<audio>", None)]) == "lang"
    assert SYSTEM_PROMPTS["image"].startswith("You are an AI robot and your name is VITA.")
    assert SYSTEM_PROMPTS["image"].endswith("you are seeing the image, not the video.")
    assert SYSTEM_PROMPTS["video"].endswith("you are seeing the video, not the image.")
    assert (
        SYSTEM_PROMPTS["image"].startswith(SYSTEM_PROMPTS["lang"]) and "image" not in SYSTEM_PROMPTS["lang"]
    )


def test_state_tokens():
    turns = [
        ("<image>\n<audio>", "red"),
        ("what shape ?", "circle"),
        ("<audio>", "ignored"),
        ("<audio>", "two"),
    ]
    # inserted_id counts conversation records: human turn 2 is record 4
    out = assign_state_tokens(turns, inserted_id=4)
    assert [a for _, a in out] == ["<1>red", "<3>circle", "<2>", "<1>two"]
    assert assign_state_tokens([("hi", "hello")], has_media=False) == [
        ("hi", "hello")
    ]  # the release: pure text
    assert assign_state_tokens([("hi", "hello")], has_media=False, text_gets_state_token=True) == [
        ("hi", "<3>hello")
    ]


def test_label_masks_golden(tok):
    template = MixtralTwoTemplate({"image": "", "video": "", "lang": ""})
    turns = assign_state_tokens([("what colour ?", "red"), ("<audio>", "blue")])
    pieces = template.pieces(turns, "lang")
    pieces = [(expand_placeholders(t, [], [2] if "<audio>" in t else [], 4), s) for t, s in pieces]
    enc = encode_pieces(pieces, tok)
    words = tok.convert_ids_to_tokens(enc.input_ids)
    assert words == ["system", ":", "</s>", "user", ":", "what", "colour", "?", "</s>", "bot", ":", "<3>", "red",
                     "</s>", "user", ":", "<audio>", "<audio>", "</s>", "bot", ":", "<1>", "blue", "</s>"]  # fmt: skip
    supervised = [i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX]
    assert supervised == [11, 12, 13, 21, 22, 23]  # state token + answer + </s> of both bot turns
    assert [enc.labels[i] for i in supervised] == [enc.input_ids[i] for i in supervised]
    assert enc.labels[11] == tok.convert_tokens_to_ids("<3>") and enc.labels[21] == tok.convert_tokens_to_ids(
        "<1>"
    )


def test_mismatch_masks_everything():
    class Joining:  # merges "ab" when seen whole, so the pieces disagree with the prompt
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [99] if text == "ab" else [ord(c) for c in text]}

    with pytest.warns(UserWarning, match="mismatch"):
        enc = encode_pieces([("a", False), ("b", True)], Joining())
    assert enc.mismatch and enc.input_ids == [99] and enc.labels == [IGNORE_INDEX]


def test_expand_placeholders_counts():
    assert expand_placeholders("x<image>y<audio>", [2], [3], 4) == "x" + "<image>" * 8 + "y" + "<audio>" * 3
    with pytest.raises(ValueError, match="1 <audio> placeholders but 0 audio clips"):
        expand_placeholders("<audio>", [], [], 4)


def _write(tmp_path, records):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return path


def test_read_released_schema(tmp_path):
    path = _write(tmp_path, [
        {"set": "sharegpt4", "id": "s1", "image": "a/x.jpg", "audio": ["q.wav", "n.wav"], "inserted_id": 2,
         "conversations": [{"from": "human", "value": "<image>\n<audio>"}, {"from": "gpt", "value": "red"},
                           {"from": "human", "value": "<audio>"}, {"from": "gpt", "value": ""}]},
        {"id": "t1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
    ])  # fmt: skip
    r1, r2 = read_vita_json(path, tmp_path / "img", tmp_path / "aud")
    assert r1.images == [tmp_path / "img" / "a/x.jpg"] and r1.audios[1] == tmp_path / "aud" / "n.wav"
    turns, modality = record_turns(r1)
    assert [a for _, a in turns] == ["<1>red", "<2>"] and modality == "image"
    assert record_turns(r2) == ([("hi", "hello")], "lang")


def test_bad_records(tmp_path):
    bad_path = _write(tmp_path, [{"id": "x", "image": "../../etc/passwd",
                                  "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a"}]}])  # fmt: skip
    with pytest.raises(DataError, match="entry x"):
        read_vita_json(bad_path, tmp_path)
    issue45 = _write(tmp_path, [{"id": "y", "audio": "q.wav",
                                 "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "a"}]}])  # fmt: skip
    with pytest.raises(DataError, match="issue #45"):
        read_vita_json(issue45, tmp_path)
    with pytest.raises(DataError, match="alternate"):
        read_vita_json(_write(tmp_path, [{"conversations": [{"from": "gpt", "value": "a"}]}]), tmp_path)
