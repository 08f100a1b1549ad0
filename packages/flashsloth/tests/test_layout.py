"""Query insertion positions and question spans against hand-computed golden cases."""

from __future__ import annotations

import torch
from flashsloth_testlib import IMAGE_ID, LEARNABLE_ID
from paperzoo_flashsloth.configuration import IGNORE_INDEX
from paperzoo_flashsloth.data import PHI2_SYSTEM, ChatTemplate, FlashSlothCollator
from paperzoo_flashsloth.modeling_flashsloth import default_question_spans

I, L = IMAGE_ID, LEARNABLE_ID
# Two turns: USER : <image> q q q <learnable> ASSISTANT : a <eos> USER : q q <learnable> ASSISTANT :
SAMPLE = [10, 11, I, 12, 13, 14, L, 15, 16, 17, 18, 10, 11, 19, 20, L, 15, 16]
SPANS = [(3, 6), (13, 15)]


def test_phi2_prompt_text():
    template = ChatTemplate.phi2()
    prompt = template.render([("What is shown? <image>", "A cat."), ("Its colour?", None)])
    assert prompt == (
        PHI2_SYSTEM + " USER: <image>\nWhat is shown?<learnable> ASSISTANT: A cat.</s>"
        "USER: Its colour?<learnable> ASSISTANT:"
    )
    assert (
        ChatTemplate.phi2()
        .render([("<image>\nQ", None)], add_learnable=False)
        .endswith("USER: <image>\nQ ASSISTANT:")
    )


def test_plain_prompt_text():
    assert ChatTemplate.plain().render([("<image>", "a red ball")]) == "<image>a red ball<learnable>\n"


def test_encode_golden(word_tokenizer):
    tok = word_tokenizer
    template = ChatTemplate.phi2(system="", sep2="<eos>")
    learnable = tok.convert_tokens_to_ids("<learnable>")
    enc = template.encode(
        [("<image>\nWhat colour is the circle?", "red"), ("How many squares are there?", "two")],
        tok,
        image_token_id=-200,
        learnable_token_id=learnable,
    )
    tokens = [("<image>" if i == -200 else tok.convert_ids_to_tokens(i)) for i in enc.input_ids]
    assert tokens == [
        "USER", ":", "<image>", "what", "colour", "is", "the", "circle", "?", "<learnable>", "ASSISTANT", ":",
        "red", "<eos>", "USER", ":", "how", "many", "squares", "are", "there", "?", "<learnable>", "ASSISTANT",
        ":", "two", "<eos>",
    ]  # fmt: skip
    assert enc.question_spans == [(3, 9), (16, 22)]
    labelled = [i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX]
    assert labelled == [12, 13, 25, 26]
    assert [enc.labels[i] for i in labelled] == [enc.input_ids[i] for i in labelled]


def test_encode_without_queries_and_plain(word_tokenizer):
    tok = word_tokenizer
    enc = ChatTemplate.phi2(system="", sep2="<eos>").encode(
        [("<image>\nIs there a red circle?", None)],
        tok,
        image_token_id=4,
        learnable_token_id=99,
        add_learnable=False,
    )
    assert 99 not in enc.input_ids and enc.question_spans == []
    assert tok.convert_ids_to_tokens(enc.input_ids[-2:]) == ["ASSISTANT", ":"]
    enc = ChatTemplate.plain().encode(
        [("<image>", "red circle")], tok, image_token_id=4, learnable_token_id=99
    )
    assert enc.input_ids[0] == 4 and enc.input_ids[-1] == 99
    assert enc.question_spans == [(1, 3)]  # stage I: the queries see the caption
    assert enc.labels[1:3] == enc.input_ids[1:3] and enc.labels[0] == IGNORE_INDEX


def test_default_spans_fallback():
    assert default_question_spans(SAMPLE, I, L) == [(3, 6), (7, 15)]


def test_assembly_golden_right_padding(model):
    n_img, n_q = model.config.image_seq_length, model.config.num_query_tokens
    assert (n_img, n_q) == (4, 3)
    labels = [IGNORE_INDEX] * len(SAMPLE)
    labels[9], labels[10] = 17, 18
    short = [10, I, 12, L, 15]
    batch = FlashSlothCollator(0)(
        [
            {"input_ids": torch.tensor(SAMPLE), "labels": torch.tensor(labels), "question_spans": torch.tensor(SPANS)},
            {"input_ids": torch.tensor(short), "labels": torch.tensor([IGNORE_INDEX] * 5),
             "question_spans": torch.tensor([(2, 3)])},
        ]
    )  # fmt: skip
    image_tokens = torch.randn(2, n_img, model.config.text_config.hidden_size)
    out = model.assemble(
        batch["input_ids"], batch["attention_mask"], image_tokens, labels=batch["labels"],
        question_spans=batch["question_spans"],
    )  # fmt: skip
    # sample 0: image at 2..5, question 6..8, queries 9..11, turn 2 question 18..19, queries 20..22; 25 tokens
    # sample 1: 10 -> 0, image 1..4, question 5, queries 6..8, 15 -> 9; 10 tokens
    assert out.lengths == [25, 10]
    layout = out.layout
    assert layout.sample.tolist() == [0, 0, 1]
    assert layout.start.tolist() == [9, 20, 6]
    assert [row[m].tolist() for row, m in zip(layout.text_index, layout.text_mask)] == [
        [6, 7, 8],
        [18, 19],
        [5],
    ]
    assert out.attention_mask.sum(1).tolist() == [25, 10]
    assert out.position_ids[0].tolist() == list(range(25))
    torch.testing.assert_close(out.inputs_embeds[0, 2:6], image_tokens[0])
    torch.testing.assert_close(out.inputs_embeds[1, 1:5], image_tokens[1])
    queries = model.query_embeddings()
    for b, s in ((0, 9), (0, 20), (1, 6)):
        torch.testing.assert_close(out.inputs_embeds[b, s : s + 3], queries)
    emb = model.get_input_embeddings()
    torch.testing.assert_close(out.inputs_embeds[0, 6], emb(torch.tensor(12)))
    torch.testing.assert_close(out.inputs_embeds[0, 24], emb(torch.tensor(16)))
    assert out.inputs_embeds[1, 10:].abs().sum() == 0  # padding
    assert torch.nonzero(out.labels[0] != IGNORE_INDEX).flatten().tolist() == [14, 15]
    assert out.labels[0, 14:16].tolist() == [17, 18]
    assert layout.images.tolist() == [[0], [0], [1]] and layout.image_mask.all()


def test_assembly_left_padding_shifts_everything(model):
    short = [10, I, 12, L, 15]
    ids = torch.tensor([SAMPLE, [0] * (len(SAMPLE) - len(short)) + short])
    mask = (torch.arange(len(SAMPLE)) >= len(SAMPLE) - len(short)).long()[None].expand(2, -1).clone()
    mask[0] = 1
    image_tokens = torch.randn(2, 4, model.config.text_config.hidden_size)
    out = model.assemble(ids, mask, image_tokens, padding_side="left")  # default spans
    assert out.lengths == [25, 10]
    pad = 15
    assert out.layout.start.tolist() == [9, 20, 6 + pad]
    assert out.attention_mask[1, :pad].sum() == 0 and out.attention_mask[1, pad:].all()
    assert out.position_ids[1, pad:].tolist() == list(range(10))
    assert out.layout.text_index[2][out.layout.text_mask[2]].tolist() == [5 + pad]
    # the fallback span of turn 2 is everything after the first <learnable>
    assert out.layout.text_index[1][out.layout.text_mask[1]].tolist() == list(range(12, 20))
