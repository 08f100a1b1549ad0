"""Data for Dynamic-LLaVA: prompt building, labels, collators, and the miniature's stand-in data.

Real LLaVA-1.5 data uses the Vicuna v1 template (:func:`vicuna_v1_prompt`) and "pad" preprocessing
(:func:`expand_to_square`); the miniature uses ``paperzoo_shared.data.synthetic.qa`` shape questions with
its word tokenizer, plus one long "what does the image contain ?" description per image, since output-text
sparsification only acts on answers of at least LEN_OT tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paperzoo_dynamic_llava.modeling_dynamic_llava import IGNORE_INDEX
from paperzoo_shared.data import safe_join

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
DESCRIBE_QUESTION = "what does the image contain ?"


def vicuna_v1_prompt(question: str, image_token: str = "<image>") -> str:
    """LLaVA-1.5's ``vicuna_v1`` prompt for one image and one question (the processor expands ``<image>``)."""
    return f"{VICUNA_SYSTEM} USER: {image_token}\n{question} ASSISTANT:"


def vicuna_v1_conversation(
    turns: list[dict[str, str]], eos: str = "</s>"
) -> tuple[str, list[tuple[int, int]]]:
    """LLaVA-1.5's training prompt of a conversation (``conv_vicuna_v1.get_prompt()`` after
    ``preprocess_multimodal``) and the character spans its labels supervise.

    ``system + " "``, then per turn ``"USER: " + message + " "`` or ``"ASSISTANT: " + message + eos`` (an empty
    message: the role and ``":"`` only). The ``<image>`` of the first human turn moves to its front as
    ``"<image>\n"`` (the rest stripped); an image sample whose first turn has none gets one there. Each span runs
    from just after ``"ASSISTANT:"`` to the end of the ``eos`` that closes the message. Turns must alternate,
    from ``human``, as the official code asserts.
    """
    text = VICUNA_SYSTEM + " "
    spans = []
    for j, turn in enumerate(turns):
        role = ("human", "gpt")[j % 2]
        if turn.get("from") != role:
            raise ValueError(f"turn {j} is from {turn.get('from')!r}; turns alternate human, gpt, human, ...")
        value = turn["value"]
        if "<image>" in value and j:
            raise ValueError(f"turn {j} holds <image>: one image per sample, in the first human turn")
        if j == 0:
            value = "<image>\n" + value.replace("<image>", "").strip()
        name = "USER" if role == "human" else "ASSISTANT"
        if not value:
            text += f"{name}:"
            continue
        text += f"{name}:"
        start = len(text)
        text += f" {value}" + (" " if role == "human" else eos)
        if role == "gpt":
            spans.append((start, len(text)))
    return text, spans


def expand_to_square(image: np.ndarray, fill: tuple[int, int, int] | None = None) -> np.ndarray:
    """LLaVA-1.5's ``image_aspect_ratio=pad``: pad an ``(H, W, 3)`` uint8 image to a square, centred, with
    the CLIP mean colour."""
    h, w = image.shape[:2]
    if h == w:
        return image
    fill = fill or tuple(int(255 * m) for m in CLIP_MEAN)  # LLaVA truncates: (122, 116, 104)
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=image.dtype)
    out[:] = np.asarray(fill, dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> CLIP-normalised ``(3, H, W)`` float."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def describe_objects(objects: Any, image_size: int, with_pattern: bool = True) -> str:
    """The long answer of the description question: every object, top to bottom then left to right."""
    centre = image_size / 2
    parts = []
    for obj in sorted(objects, key=lambda o: (o.center[1] >= centre, o.center[0] >= centre)):
        height = "top" if obj.center[1] < centre else "bottom"
        side = "left" if obj.center[0] < centre else "right"
        pattern = f"{obj.pattern} " if with_pattern else ""
        parts.append(f"a {obj.colour} {pattern}{obj.label} at the {height} {side} .")
    return " ".join(parts)


@dataclass
class Example:
    """One tokenised example: prompt ids (image tokens expanded), answer ids (ending with EOS), image."""

    prompt_ids: list[int]
    answer_ids: list[int]
    pixel_values: torch.Tensor
    answer: str
    qtype: str
    image_id: int


class WordPromptBuilder:
    """Builds mini examples with the shared word tokenizer: ``<bos> <image>*P question : q answer :`` then
    the answer and ``<eos>``."""

    def __init__(self, tokenizer: Any, n_image_tokens: int):
        self.tok = tokenizer
        self.n_image_tokens = n_image_tokens
        self.image_id = tokenizer.convert_tokens_to_ids("<image>")
        self.unk_id = tokenizer.unk_token_id

    def encode(self, text: str) -> list[int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if self.unk_id in ids:
            raise ValueError(f"text {text!r} has words outside the tokenizer's vocabulary")
        return ids

    def example(self, image: np.ndarray, question: str, answer: str, qtype: str, image_id: int) -> Example:
        prompt = [self.tok.bos_token_id, *([self.image_id] * self.n_image_tokens)]
        prompt += self.encode(f"question : {question} answer :")
        return Example(prompt, [*self.encode(answer), self.tok.eos_token_id], image_to_tensor(image), answer, qtype,
                       image_id)  # fmt: skip


def build_examples(
    samples: list[Any],
    builder: WordPromptBuilder,
    *,
    image_size: int,
    describe: bool,
    with_pattern: bool = True,
) -> list[Example]:
    """QA examples from ``paperzoo_shared.data.synthetic.qa`` samples, plus one description per image."""
    out = [builder.example(s.image, s.question, s.answer, s.qtype, s.image_id) for s in samples]
    if describe:
        seen: dict[int, Any] = {}
        for s in samples:
            seen.setdefault(s.image_id, s)
        for image_id, s in seen.items():
            text = describe_objects(s.objects, image_size, with_pattern)
            out.append(builder.example(s.image, DESCRIBE_QUESTION, text, "describe", image_id))
    return out


class ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


def collate_train(examples: list[Example], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded training batch: labels are IGNORE on the prompt and padding, the ids on the answer."""
    seqs = [e.prompt_ids + e.answer_ids for e in examples]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, (e, s) in enumerate(zip(examples, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, len(e.prompt_ids) : len(s)] = torch.tensor(e.answer_ids)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "pixel_values": torch.stack([e.pixel_values for e in examples])}  # fmt: skip


def collate_prompts(examples: list[Example], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded prompts for generation."""
    n = max(len(e.prompt_ids) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, n - len(e.prompt_ids) :] = torch.tensor(e.prompt_ids)
        mask[i, n - len(e.prompt_ids) :] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": torch.stack([e.pixel_values for e in examples]),
    }


class TrainCollator:
    def __init__(self, pad_id: int = 0):
        self.pad_id = pad_id

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        return collate_train(examples, self.pad_id)


# ----------------------------------------------------------------------------------------------------
# Real data: LLaVA conversation JSON (llava_v1_5_mix665k.json), vicuna_v1 template, image samples only
# ----------------------------------------------------------------------------------------------------


def resize_and_normalize(image: np.ndarray, size: int) -> torch.Tensor:
    """CLIP preprocessing of a square ``(H, W, 3)`` uint8 image: bicubic resize to ``size`` and normalise."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255.0
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )
    x = x.clamp(0, 1)[0]
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


class LlavaConversationDataset(torch.utils.data.Dataset):
    """LLaVA instruction data (``[{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}]``)
    tokenised with the vicuna_v1 template; labels supervise the assistant turns (each ending with EOS).

    Like the official ``--requires_image True``, samples without an image are left out; they are filtered
    up front (the official ``__getitem__`` skips forward to the next image sample, which duplicates samples
    and can run past the end of the list). ``<image>`` in the first human turn becomes ``n_image_tokens``
    image tokens; an image-less first turn gets it prepended, as LLaVA does.
    """

    def __init__(
        self, json_path: str | Path, image_folder: str | Path, tokenizer: Any, *, n_image_tokens: int,
        image_size: int, image_token_id: int, model_max_length: int = 2048,
    ):  # fmt: skip
        import json

        self.path = Path(json_path)
        try:
            records = json.loads(self.path.read_text())
        except FileNotFoundError as error:
            raise FileNotFoundError(f"LLaVA conversation file not found: {self.path}") from error
        if not isinstance(records, list):
            raise ValueError(
                f"{self.path}: expected a JSON list of conversations, got {type(records).__name__}"
            )
        for i, record in enumerate(records):
            turns = record.get("conversations") if isinstance(record, dict) else None
            if (
                not isinstance(turns, list)
                or not turns
                or any(t.get("from") not in ("human", "gpt") for t in turns)
            ):
                raise ValueError(f"{self.path}: record {i} (id {record.get('id') if isinstance(record, dict) else '?'}) "
                                 "needs 'conversations' with turns from 'human' and 'gpt'")  # fmt: skip
        self.image_folder = Path(image_folder)
        self.records, self.image_paths = [], []
        for i, record in enumerate(records):
            if record.get("image"):  # checked up front: an image path read from the file stays in the folder
                self.records.append(record)
                self.image_paths.append(safe_join(self.image_folder, str(record["image"]), source=self.path,
                                                  entry=f"record {i}, id {record.get('id')!r}"))  # fmt: skip
        self.skipped_text_only = len(records) - len(self.records)
        self.tok, self.n_image_tokens, self.image_size = tokenizer, n_image_tokens, image_size
        self.image_token_id, self.max_length = image_token_id, model_max_length

    def __len__(self) -> int:
        return len(self.records)

    def tokenize(self, turns: list[dict[str, str]]) -> tuple[list[int], list[int]]:
        """Token ids and labels of a conversation, as LLaVA-1.5's ``preprocess_v1`` makes them: the whole
        :func:`vicuna_v1_conversation` prompt is tokenised at once in two chunks split at ``<image>`` (its
        ``tokenizer_image_token``: each chunk with the tokenizer's special tokens, the BOS of the second dropped),
        the placeholder becomes ``n_image_tokens`` image ids, and the labels are the ids of the tokens that start
        inside an assistant message or its closing EOS (character offsets: a fast tokenizer is needed)."""
        if not getattr(self.tok, "is_fast", False):
            raise ValueError(
                "LlavaConversationDataset needs a fast tokenizer (character offsets for the labels)"
            )
        prompt, answers = vicuna_v1_conversation(turns, eos=self.tok.eos_token)
        ids: list[int] = []
        labels: list[int] = []
        offset = 0
        for k, chunk in enumerate(prompt.split("<image>")):
            enc = self.tok(chunk, return_offsets_mapping=True)
            pairs = list(zip(enc["input_ids"], enc["offset_mapping"]))
            if k:
                if pairs and pairs[0][0] == self.tok.bos_token_id:
                    pairs = pairs[1:]
                ids += [self.image_token_id] * self.n_image_tokens
                labels += [IGNORE_INDEX] * self.n_image_tokens
            for token, (start, end) in pairs:
                ids.append(token)
                inside = end > start and any(a <= offset + start < b for a, b in answers)
                labels.append(token if inside else IGNORE_INDEX)
            offset += len(chunk) + len("<image>")
        return ids, labels

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from paperzoo_shared.data.image_io import read_image

        record = self.records[i]
        ids, labels = self.tokenize(record["conversations"])
        if len(ids) > self.max_length:
            first_image = ids.index(self.image_token_id)
            if first_image + self.n_image_tokens > self.max_length:
                raise ValueError(f"{self.path}: sample {record.get('id')} loses image tokens when truncated to "
                                 f"model_max_length={self.max_length}")  # fmt: skip
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        image = expand_to_square(read_image(self.image_paths[i], channel_order="rgb"))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "pixel_values": resize_and_normalize(image, self.image_size)}  # fmt: skip


def collate_conversations(items: list[dict[str, torch.Tensor]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded batch of :class:`LlavaConversationDataset` items."""
    n = max(len(x["input_ids"]) for x in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    labels = torch.full((len(items), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for i, x in enumerate(items):
        k = len(x["input_ids"])
        ids[i, :k], labels[i, :k], mask[i, :k] = x["input_ids"], x["labels"], 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask,
            "pixel_values": torch.stack([x["pixel_values"] for x in items])}  # fmt: skip


def patch_labels(
    objects: Any, image_size: int, patch_size: int, colours: tuple[str, ...], shapes: tuple[str, ...]
):
    """Per-patch (raster order) shape and colour class of the object covering most of the patch (at least a
    quarter), 0 for background: the targets of the miniature's stand-in for CLIP pretraining."""
    side = image_size // patch_size
    shape_ids = np.zeros(side * side, dtype=np.int64)
    colour_ids = np.zeros(side * side, dtype=np.int64)
    best = np.full(side * side, 0.25)
    for obj in objects:
        mask = np.asarray(obj.mask, dtype=np.float64)[:image_size, :image_size]
        cover = mask.reshape(side, patch_size, side, patch_size).mean(axis=(1, 3)).reshape(-1)
        win = cover > best
        shape_ids[win] = shapes.index(obj.label) + 1
        colour_ids[win] = colours.index(obj.colour) + 1
        best = np.maximum(best, cover)
    return shape_ids, colour_ids
