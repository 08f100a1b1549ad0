"""Tests of the shape question/answer generator and its word tokenizer."""

from __future__ import annotations

import re
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from paperzoo_shared.data.synthetic import (
    ANSWER_VOCAB,
    PALETTE,
    QUESTION_TYPES,
    SHAPE_CLASSES,
    QAConfig,
    build_word_tokenizer,
    generate_qa_dataset,
    save_tokenizer,
    to_transformers_tokenizer,
    word_level_tokenizer,
)

PLURAL_TO_CLASS = {
    "circles": "circle",
    "squares": "square",
    "triangles": "triangle",
    "rings": "ring",
    "crosses": "cross",
    "ellipses": "ellipse",
}
NUMBERS = ["zero", "one", "two", "three", "four"]


@pytest.fixture(scope="module")
def samples():
    return generate_qa_dataset(24, seed=5)


def _named(question: str, words) -> list[str]:
    return [w for w in words if re.search(rf"\b{w}\b", question.lower())]


def _pattern_from_pixels(image: np.ndarray, mask: np.ndarray) -> str:
    """Classify a surface pattern from the pixels alone: what varies with row parity or (row + col) parity."""
    core = ndimage.binary_erosion(mask, structure=np.ones((3, 3)))
    rows, cols = np.nonzero(core)
    values = image[rows, cols].astype(int)
    if (values == values[0]).all():
        return "plain"
    by_row = {parity: values[rows % 2 == parity] for parity in (0, 1)}
    if all((v == v[0]).all() for v in by_row.values()):
        return "striped"
    by_checker = {parity: values[(rows + cols) % 2 == parity] for parity in (0, 1)}
    assert all((v == v[0]).all() for v in by_checker.values())
    return "checkered"


def _expected_answer(sample) -> str:
    """Answer recomputed from the question text and the scene's objects (and pixels where possible)."""
    objects, q = sample.objects, sample.question
    colours, shapes = _named(q, PALETTE), _named(q, SHAPE_CLASSES)
    if sample.qtype == "count":
        (plural,) = _named(q, PLURAL_TO_CLASS)
        return NUMBERS[sum(o.label == PLURAL_TO_CLASS[plural] for o in objects)]
    if sample.qtype == "colour":
        (obj,) = [o for o in objects if o.label == shapes[0]]
        return obj.colour
    if sample.qtype == "existence":
        return "yes" if any(o.colour == colours[0] and o.label == shapes[0] for o in objects) else "no"
    (obj,) = [o for o in objects if o.colour == colours[0]]
    if sample.qtype == "shape":
        return obj.label
    if sample.qtype == "position":
        rows, cols = np.nonzero(obj.mask)
        half = sample.image.shape[0] / 2
        if "left" in q:
            return "left" if cols.mean() + 0.5 < half else "right"
        return "top" if rows.mean() + 0.5 < half else "bottom"
    assert sample.qtype == "detail"
    pattern = _pattern_from_pixels(sample.image, obj.mask)
    assert pattern == obj.pattern
    return pattern


def test_answers_match_the_scene(samples):
    for sample in samples:
        assert sample.answer == _expected_answer(sample), sample.question


def test_answers_options_and_vocabulary(samples):
    for sample in samples:
        assert sample.answer in ANSWER_VOCAB
        assert sample.options[sample.answer_index] == sample.answer
        assert len(set(sample.options)) == len(sample.options) and set(sample.options) <= set(ANSWER_VOCAB)
        assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
        expected_n = {"position": 2, "existence": 2, "detail": 3}.get(sample.qtype, 4)
        assert len(sample.options) == expected_n


def test_type_balance_and_answer_spread(samples):
    assert len(samples) == 72
    assert Counter(s.qtype for s in samples) == dict.fromkeys(QUESTION_TYPES, 12)
    assert {s.answer for s in samples if s.qtype == "existence"} == {"yes", "no"}
    assert len({s.answer for s in samples if s.qtype == "detail"}) == 3
    assert len({s.answer for s in samples if s.qtype == "count"}) >= 2


def test_determinism_by_seed(samples):
    again = generate_qa_dataset(24, seed=5)
    for a, b in zip(samples, again):
        assert (a.question, a.answer, a.options, a.answer_index, a.objects) == (
            b.question,
            b.answer,
            b.options,
            b.answer_index,
            b.objects,
        )
        np.testing.assert_array_equal(a.image, b.image)
    other = generate_qa_dataset(24, seed=6)
    assert [s.question for s in other] != [s.question for s in samples]


def test_fine_detail_vanishes_under_4x_average_pooling(samples):
    """Patterns are visible at full resolution; after 4x4 average pooling every interior block equals the
    plain colour, so striped, checkered and plain objects of one colour become indistinguishable."""
    seen = Counter()
    for sample in samples[::3]:  # each image once
        image = sample.image.astype(np.float64)
        pooled = image.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
        for obj in sample.objects:
            core = ndimage.binary_erosion(obj.mask, structure=np.ones((3, 3)))
            full_std = image[core].std(axis=0).max()
            inside = core.reshape(16, 4, 16, 4).all(axis=(1, 3))
            if obj.pattern == "plain":
                assert full_std == 0.0
            else:
                assert full_std >= 10.0  # the cue: two colours alternating every pixel or row
            if inside.any():
                np.testing.assert_allclose(
                    pooled[inside], np.broadcast_to(obj.rgb, pooled[inside].shape), atol=1e-9
                )
                seen[obj.pattern] += 1
    assert set(seen) == {"plain", "striped", "checkered"}


def test_tokenizer_covers_every_question_and_answer(samples, tmp_path):
    tok = build_word_tokenizer()
    assert [tok.token_to_id(t) for t in ("<pad>", "<unk>", "<bos>", "<eos>", "<image>")] == [0, 1, 2, 3, 4]
    unk = tok.token_to_id("<unk>")
    for sample in samples:
        text = f"<image> Question: {sample.question} Options: {', '.join(sample.options)}. Answer: {sample.answer}"
        encoding = tok.encode(text)
        assert unk not in encoding.ids, encoding.tokens
        assert encoding.tokens[0] == "<image>" and encoding.tokens[-1] == sample.answer
    assert tok.encode("What colour is the zebra?").tokens == ["what", "colour", "is", "the", "<unk>", "?"]
    # Building twice gives the same ids; extras are appended and do not shift word ids.
    assert build_word_tokenizer().get_vocab() == tok.get_vocab()
    extended = build_word_tokenizer(extra_special_tokens=("<video>",))
    assert extended.token_to_id("<video>") == tok.get_vocab_size()
    assert extended.encode("<video> what").tokens == ["<video>", "what"]
    assert all(extended.token_to_id(w) == i for w, i in tok.get_vocab().items())

    path = save_tokenizer(extended, tmp_path / "tok")
    assert path.name == "tokenizer.json"
    from tokenizers import Tokenizer

    assert (
        Tokenizer.from_file(str(path)).encode("<video> Is there a red ring?").ids
        == extended.encode("<video> Is there a red ring?").ids
    )


def test_transformers_wrapper():
    pytest.importorskip("transformers")
    tok = build_word_tokenizer(extra_special_tokens=("<video>",))
    fast = to_transformers_tokenizer(tok)
    assert (fast.pad_token_id, fast.unk_token_id, fast.bos_token_id, fast.eos_token_id) == (0, 1, 2, 3)
    assert fast.convert_tokens_to_ids(["<image>", "<video>"]) == [4, tok.get_vocab_size() - 1]
    assert {"<image>", "<video>"} <= set(fast.all_special_tokens)
    text = "<image> How many crosses are there?"
    assert fast(text)["input_ids"] == tok.encode(text).ids
    batch = fast(["<image> red", "<image> What shape is red?"], padding=True)
    assert batch["input_ids"][0][-1] == 0 and batch["attention_mask"][0][-1] == 0


def test_word_level_tokenizer_ids_by_hand():
    pytest.importorskip("transformers")
    special = ("<pad>", "<unk>", "<s>", "<eos>", "<img>")
    # ids: the special tokens in order (0-4), then the sorted words: "." 5, "Red" 6, "a" 7, "red." 8
    whitespace = word_level_tokenizer(["red.", "a", "Red", ".", "a"], special)
    assert whitespace.encode("<img>a Red red. blue").ids == [4, 7, 6, 8, 1]
    punct = word_level_tokenizer(["red", "a", "."], special, split_punctuation=True)  # "." 5, "a" 6, "red" 7
    assert punct.encode("a red. red").ids == [6, 7, 5, 7]
    fast = to_transformers_tokenizer(whitespace, bos_token="<s>", padding_side="left")
    assert (fast.pad_token_id, fast.unk_token_id, fast.bos_token_id, fast.eos_token_id) == (0, 1, 2, 3)
    assert fast(["a", "a Red"], padding=True)["input_ids"] == [[0, 7], [7, 6]]
    assert fast.decode([4, 7, 6, 0], skip_special_tokens=True) == "a Red"
    with pytest.raises(ValueError, match="<unk>"):
        word_level_tokenizer(["a"], ("<pad>",))


def test_missing_tokenizers_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match=r"paperzoo-shared\[text\]"):
        build_word_tokenizer()


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 4"):
        QAConfig(image_size=66)
    with pytest.raises(ValueError, match="two patterns"):
        QAConfig(patterns=("plain",))
    with pytest.raises(ValueError, match="question_types"):
        QAConfig(question_types=("colour", "mood"))
    plain = generate_qa_dataset(
        2, seed=0, cfg=QAConfig(patterns=("plain",), question_types=("colour", "count"))
    )
    assert all(o.pattern == "plain" for s in plain for o in s.objects)
