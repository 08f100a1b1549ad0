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


# ---------------------------------------------------------------- LLaVA-1.5's own preprocessing, on byte-level BPE


def _byte_level_bpe():
    """A byte-level BPE tokenizer (GPT-2 style pre-tokenizer) trained here, with Llama's special tokens and a
    post-processor that prepends <s> like Llama's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the human's questions. USER: ASSISTANT: USER: ASSISTANT:",
        "What is the colour of the circle? The circle is red. How many circles are there? There are two circles.",
        "USER:What ASSISTANT:The\nWhat\n  two. red.USER USERS ASSIST",
    ]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")  # fmt: skip


IMAGE_TOKEN = -200  # LLaVA's IMAGE_TOKEN_INDEX, expanded to the image tokens below


def _llava_preprocess_v1(conversations, tokenizer, n_image_tokens, image_id):
    """LLaVA-1.5's ``preprocess_multimodal`` + ``preprocess_v1`` (llava/train/train.py, conv_vicuna_v1), written
    out from the official code: get_prompt, tokenizer_image_token, the round-by-round target masking."""
    system = (
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."
    )
    sep, sep2 = " ", "</s>"
    for sentence in conversations:  # preprocess_multimodal
        if "<image>" in sentence["value"]:
            sentence["value"] = ("<image>\n" + sentence["value"].replace("<image>", "").strip()).strip()
    roles = {"human": "USER", "gpt": "ASSISTANT"}
    prompt = system + sep
    for i, sentence in enumerate(conversations):  # Conversation.get_prompt, SeparatorStyle.TWO
        message = sentence["value"]
        prompt += (
            roles[sentence["from"]] + ": " + message + (sep, sep2)[i % 2]
            if message
            else roles[sentence["from"]] + ":"
        )

    def tokenizer_image_token(text):
        chunks = [tokenizer(chunk).input_ids for chunk in text.split("<image>")]
        out, offset = [], 0
        if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
            offset = 1
            out.append(chunks[0][0])
        separated = [e for sub in zip(chunks, [[IMAGE_TOKEN] * (offset + 1)] * len(chunks)) for e in sub][:-1]
        for x in separated:
            out.extend(x[offset:])
        return out

    input_ids = tokenizer_image_token(prompt)
    target = list(input_ids)
    round_sep = sep + "ASSISTANT" + ": "
    cur_len = 1
    target[:cur_len] = [-100] * cur_len
    for rou in prompt.split(sep2):
        if rou == "":
            break
        parts = rou.split(round_sep)
        if len(parts) != 2:
            break
        parts[0] += round_sep
        round_len = len(tokenizer_image_token(rou))
        instruction_len = len(tokenizer_image_token(parts[0])) - 2
        target[cur_len : cur_len + instruction_len] = [-100] * instruction_len
        cur_len += round_len
    target[cur_len:] = [-100] * (len(target) - cur_len)
    assert cur_len == len(input_ids), "LLaVA's tokenization-mismatch check (it would mask the whole sample)"
    ids, labels = [], []
    for token, label in zip(input_ids, target):  # the placeholder as the model sees it: n image tokens
        n = n_image_tokens if token == IMAGE_TOKEN else 1
        ids += [image_id if token == IMAGE_TOKEN else token] * n
        labels += [-100 if token == IMAGE_TOKEN else label] * n
    return ids, labels


@pytest.mark.parametrize(
    "turns",
    [
        [("human", "<image>\nWhat is the colour of the circle?"), ("gpt", "The circle is red.")],
        [  # several rounds: after </s> the next USER has no space, which per-turn encoding would add
            ("human", "What is the colour of the circle?\n<image>"), ("gpt", "The circle is red."),
            ("human", "How many circles are there?"), ("gpt", "There are two circles."),
            ("human", "What  is\nthe colour?"), ("gpt", "red."),
        ],
    ],
)  # fmt: skip
def test_conversation_tokenization_equals_llava15_preprocess_v1(turns, tmp_path):
    import copy

    tok = _byte_level_bpe()
    conversations = [{"from": f, "value": v} for f, v in turns]
    expected_ids, expected_labels = _llava_preprocess_v1(copy.deepcopy(conversations), tok, 5, 7)
    (tmp_path / "a.json").write_text(
        json.dumps([{"id": "x", "image": "a.png", "conversations": conversations}])
    )
    ds = LlavaConversationDataset(tmp_path / "a.json", tmp_path, tok, n_image_tokens=5, image_size=32,
                                  image_token_id=7)  # fmt: skip
    ids, labels = ds.tokenize(conversations)
    assert ids == expected_ids
    assert labels == expected_labels
    supervised = tok.decode([t for t in labels if t != -100])
    assert supervised == "".join(f" {v}</s>" for f, v in turns if f == "gpt")
