"""Prompt building, labels, segment bookkeeping and the LLaVA conversation reader on a format-exact fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from paperzoo_dynamic_llava.data import (
    DESCRIBE_QUESTION,
    LlavaConversationDataset,
    WordPromptBuilder,
    build_examples,
    collate_conversations,
    collate_prompts,
    collate_train,
    describe_objects,
    expand_to_square,
)
from paperzoo_dynamic_llava.modeling_dynamic_llava import DynamicLlavaForConditionalGeneration


@pytest.fixture(scope="module")
def tokenizer():
    from paperzoo_shared.data.synthetic.qa import build_word_tokenizer, to_transformers_tokenizer

    return to_transformers_tokenizer(build_word_tokenizer())


def test_mini_examples_labels_and_answer_span(tokenizer):
    from paperzoo_shared.data.synthetic.qa import QAConfig, generate_qa_dataset

    samples = generate_qa_dataset(2, seed=0, cfg=QAConfig(image_size=32, questions_per_image=2))
    examples = build_examples(samples, WordPromptBuilder(tokenizer, 16), image_size=32, describe=True)
    assert len(examples) == 2 * 2 + 2 and examples[-1].qtype == "describe"
    describe = examples[-1]
    assert tokenizer.decode(describe.answer_ids[:-1]) == describe.answer
    assert len(describe.answer_ids) >= 10  # long outputs for the output-text predictor
    batch = collate_train(examples[:3])
    for b, e in enumerate(examples[:3]):
        n = len(e.prompt_ids)
        assert batch["labels"][b, :n].eq(-100).all()
        assert batch["labels"][b, n : n + len(e.answer_ids)].tolist() == e.answer_ids
        assert batch["input_ids"][b, : n + len(e.answer_ids)].tolist() == e.prompt_ids + e.answer_ids
    answer = DynamicLlavaForConditionalGeneration.answer_mask_from_labels(
        batch["labels"], batch["attention_mask"].bool()
    )
    assert answer.sum(1).tolist() == [len(e.answer_ids) for e in examples[:3]]
    prompts = collate_prompts(examples[:3])
    assert prompts["attention_mask"][:, -1].all()  # left padded
    assert DESCRIBE_QUESTION.split()[0] == "what"


def test_answer_span_is_the_last_assistant_turn():
    labels = torch.tensor([[-100, -100, 5, 6, -100, -100, 7, 8, 9, 0]])
    real = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    labels[0, -1] = -100  # padding
    span = DynamicLlavaForConditionalGeneration.answer_mask_from_labels(labels, real)
    assert span[0].nonzero().squeeze(1).tolist() == [6, 7, 8]


def test_description_text_order():
    class Obj:
        def __init__(self, colour, label, pattern, center):
            self.colour, self.label, self.pattern, self.center = colour, label, pattern, center

    objs = [Obj("red", "circle", "plain", (40, 40)), Obj("blue", "square", "striped", (10, 10))]
    assert describe_objects(objs, 64) == (
        "a blue striped square at the top left . a red plain circle at the bottom right ."
    )
    assert describe_objects(objs, 64, with_pattern=False).startswith("a blue square at the top left")


def test_expand_to_square_pads_with_mean_colour():
    image = np.zeros((2, 4, 3), dtype=np.uint8)
    out = expand_to_square(image)
    assert out.shape == (4, 4, 3)
    assert (out[0, 0] == [122, 116, 104]).all() and (out[1:3] == 0).all()


def test_llava_conversation_json_reader(tmp_path, tokenizer):
    from paperzoo_shared.data.image_io import write_image

    (tmp_path / "coco").mkdir()
    write_image(tmp_path / "coco" / "1.png", np.full((20, 30, 3), 200, dtype=np.uint8), channel_order="rgb")
    records = [
        {"id": "a", "image": "coco/1.png", "conversations": [
            {"from": "human", "value": "<image>\nwhat colour is the circle ?"}, {"from": "gpt", "value": "red"},
            {"from": "human", "value": "how many circles are there ?"}, {"from": "gpt", "value": "two"}]},
        {"id": "b", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yes"}]},
    ]  # fmt: skip
    (tmp_path / "mix.json").write_text(json.dumps(records))
    ds = LlavaConversationDataset(tmp_path / "mix.json", tmp_path, tokenizer, n_image_tokens=16, image_size=32,
                                  image_token_id=4)  # fmt: skip
    assert len(ds) == 1 and ds.skipped_text_only == 1  # text-only samples are filtered, not skipped into
    item = ds[0]
    assert item["pixel_values"].shape == (3, 32, 32)
    assert int((item["input_ids"] == 4).sum()) == 16
    supervised = item["labels"][item["labels"] != -100].tolist()
    assert tokenizer.decode(supervised) == "red <eos> two <eos>"
    batch = collate_conversations([item, item])
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].all()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "c", "conversations": [{"from": "system", "value": "x"}]}]))
    with pytest.raises(ValueError, match="record 0"):
        LlavaConversationDataset(bad, tmp_path, tokenizer, n_image_tokens=16, image_size=32, image_token_id=4)


@pytest.mark.parametrize("image", ["../outside.png", "coco/../../outside.png", "/etc/passwd"])
def test_an_image_path_that_leaves_the_image_folder_is_refused(tmp_path, tokenizer, image):
    from paperzoo_shared.data.errors import DataError

    folder = tmp_path / "images"
    folder.mkdir()
    turns = [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "red"}]
    records = [{"id": "ok", "image": "1.png", "conversations": turns},
               {"id": "evil", "image": image, "conversations": turns}]  # fmt: skip
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError) as caught:
        LlavaConversationDataset(path, folder, tokenizer, n_image_tokens=16, image_size=32, image_token_id=4)
    message = str(caught.value)
    assert str(path) in message and "record 1" in message and "'evil'" in message and repr(image) in message
