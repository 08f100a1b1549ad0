"""Image preprocessing, HD views, collation and the LLaVA-format dataset reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from paperzoo_flashsloth.configuration import IGNORE_INDEX
from paperzoo_flashsloth.data import (
    ChatTemplate,
    FlashSlothCollator,
    LlavaJsonDataset,
    expand_to_square,
    hd_views,
    normalize,
    preprocess_image,
    resize,
)


def test_preprocess_is_siglip_normalisation():
    image = np.zeros((24, 24, 3), dtype=np.uint8)
    image[..., 0] = 255
    out = preprocess_image(image, 24)
    assert out.shape == (3, 24, 24)
    assert torch.allclose(out[0], torch.ones(24, 24)) and torch.allclose(out[1], -torch.ones(24, 24))


def test_hd_views_are_the_global_view_then_row_major_crops():
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 30, 60), generator=gen).float()  # wide: padded top and bottom
    views = hd_views(image, crop_size=16, grid=2, patch_size=4)
    assert views.shape == (5, 3, 16, 16)
    torch.testing.assert_close(views[0], normalize(resize(image, 16, 16)))  # whole image, not padded
    padded = expand_to_square(image, [127, 127, 127])
    assert (
        padded.shape == (3, 60, 60) and (padded[:, :15] == 127).all() and torch.equal(padded[:, 15:45], image)
    )
    canvas = normalize(resize(padded, 32, 32))
    torch.testing.assert_close(views[1], canvas[:, :16, :16])
    torch.testing.assert_close(views[2], canvas[:, :16, 16:])
    torch.testing.assert_close(views[3], canvas[:, 16:, :16])
    torch.testing.assert_close(views[4], canvas[:, 16:, 16:])


def test_collator_pads_and_stacks():
    items = [
        {"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor([-100, 2, 3]),
         "question_spans": torch.tensor([[0, 1]]), "pixel_values": torch.zeros(3, 4, 4)},
        {"input_ids": torch.tensor([4]), "labels": torch.tensor([4]), "question_spans": torch.zeros(0, 2).long()},
    ]  # fmt: skip
    right = FlashSlothCollator(0)(items)
    assert right["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["labels"][1].tolist() == [4, IGNORE_INDEX, IGNORE_INDEX]
    assert right["question_spans"].tolist() == [[[0, 1]], [[-1, -1]]]
    assert right["pixel_values"].shape == (1, 3, 4, 4)  # only the sample with an image contributes one
    left = FlashSlothCollator(0, padding_side="left")(items)
    assert left["input_ids"][1].tolist() == [0, 0, 4]


def _llava_folder(tmp_path):
    from paperzoo_shared.data.image_io import write_image

    (tmp_path / "img").mkdir()
    write_image(tmp_path / "img" / "a.png", np.full((20, 30, 3), 200, dtype=np.uint8), channel_order="rgb")
    records = [
        {"id": "0", "image": "a.png", "conversations": [
            {"from": "human", "value": "What colour is the circle?\n<image>"}, {"from": "gpt", "value": "red"},
            {"from": "human", "value": "Is there a square?"}, {"from": "gpt", "value": "no"}]},
        {"id": "1", "conversations": [{"from": "human", "value": "How many circles are there?"},
                                      {"from": "gpt", "value": "two"}]},
        {"id": "2", "image": "missing.png", "conversations": [{"from": "human", "value": "<image>"},
                                                             {"from": "gpt", "value": "red"}]},
    ]  # fmt: skip
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return path


def test_llava_json_dataset(tmp_path, word_tokenizer):
    tok = word_tokenizer
    path = _llava_folder(tmp_path)
    learnable = tok.convert_tokens_to_ids("<learnable>")
    template = ChatTemplate.phi2(system="", sep2="<eos>")
    ds = LlavaJsonDataset(path, tmp_path / "img", tok, template, image_size=16, image_token_id=-200,
                          learnable_token_id=learnable)  # fmt: skip
    first = ds[0]
    assert first["pixel_values"].shape == (3, 16, 16)
    ids = first["input_ids"].tolist()
    assert (
        ids.count(-200) == 1 and ids.count(learnable) == 2 and ids[2] == -200
    )  # the image moved to the front
    assert first["question_spans"].tolist() == [[3, 9], [16, 21]]
    assert "pixel_values" not in ds[1] and ds[1]["input_ids"].tolist().count(learnable) == 1
    with pytest.raises(ValueError, match="sample 2: cannot read image"):
        ds[2]
    hd = LlavaJsonDataset(path, tmp_path / "img", tok, template, image_size=16, image_token_id=-200,
                          learnable_token_id=learnable, hd=True, patch_size=4)  # fmt: skip
    assert hd[0]["pixel_values"].shape == (5, 3, 16, 16)


def test_llava_json_errors(tmp_path, word_tokenizer):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="cannot read the conversation JSON"):
        LlavaJsonDataset(bad, tmp_path, word_tokenizer, ChatTemplate.phi2(), image_size=16, image_token_id=-200,
                         learnable_token_id=1)  # fmt: skip


def test_image_paths_leaving_the_image_folder_are_refused(tmp_path, word_tokenizer):
    from paperzoo_shared.data.errors import DataError

    path = tmp_path / "data.json"
    conversation = [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "red"}]
    path.write_text(json.dumps([{"image": "../secret.png", "conversations": conversation},
                                {"image": "/etc/passwd", "conversations": conversation}]))  # fmt: skip
    (tmp_path / "img").mkdir()
    ds = LlavaJsonDataset(path, tmp_path / "img", word_tokenizer, ChatTemplate.phi2(), image_size=16,
                          image_token_id=-200, learnable_token_id=1)  # fmt: skip
    with pytest.raises(
        DataError, match=r"'\.\./secret\.png' in .*data\.json \(entry sample 0\) leaves the data root"
    ):
        ds[0]
    with pytest.raises(DataError, match=r"'/etc/passwd' in .*data\.json \(entry sample 1\) is absolute"):
        ds[1]


def test_truncation_never_cuts_the_image(word_tokenizer):
    template = ChatTemplate.phi2(system="", sep2="<eos>")
    turns = [("<image>\nWhat colour is the circle?", "red"), ("How many squares are there?", "two")]
    enc = template.encode(turns, word_tokenizer, image_token_id=-200, learnable_token_id=99, max_length=15)
    assert len(enc.input_ids) <= 15 and len(enc.question_spans) == enc.input_ids.count(99) == 1
    with pytest.raises(ValueError, match="without its image"):
        template.encode(turns, word_tokenizer, image_token_id=-200, learnable_token_id=99, max_length=2)
