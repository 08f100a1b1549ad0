"""Prompts, image preprocessing and datasets of FlashSloth.

* :class:`ChatTemplate`: the official ``phi2`` template (LLaVA-v1 style: ``SYSTEM USER: ... ASSISTANT: ...</s>``) and
  ``plain`` (stage I: ``<image>caption\\n``), with ``<learnable>`` at the end of every user turn, labels on the
  answers only, and the exact token span of every turn's question (what the embedded query module attends to).
* :func:`preprocess_image` / :func:`hd_views`: SigLIP preprocessing (bicubic resize, mean 0.5, std 0.5) and the HD
  views (global view of the whole image + 2x2 crops of a 768 px padded canvas).
* :class:`ShapeQADataset` and :class:`FlashSlothCollator`: the synthetic shape questions of
  ``paperzoo_shared.data.synthetic.qa`` as model inputs, for Trainer.
* :class:`LlavaJsonDataset`: LLaVA-format conversation JSON + image folder (the paper's data; full configuration).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from paperzoo_flashsloth.configuration import IGNORE_INDEX, IMAGE_TOKEN, LEARNABLE_TOKEN
from paperzoo_shared.data import safe_join

PHI2_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

Turn = tuple[str, str | None]
"""A user message and the assistant's answer (``None``: the open turn to generate)."""


# ----------------------------------------------------------------------------------------------------
# Chat template
# ----------------------------------------------------------------------------------------------------


@dataclass
class EncodedConversation:
    """Token ids with placeholders, labels (``-100`` outside the answers) and question spans.

    ``question_spans[k]`` is the ``[start, end)`` range in ``input_ids`` of the question of the k-th ``<learnable>``.
    """

    input_ids: list[int]
    labels: list[int]
    question_spans: list[tuple[int, int]]


@dataclass(frozen=True)
class ChatTemplate:
    """A conversation template.

    Attributes:
        style: ``two`` (LLaVA-v1 / the official ``phi2``) or ``plain`` (stage I captions).
        system: system prompt (``two`` only); empty for none.
        roles: user and assistant role names.
        sep: separator after the system prompt and after each user message.
        sep2: end of every answer (the official Phi-2 tokenizer gets ``</s>`` as its eos token).
    """

    style: str = "two"
    system: str = PHI2_SYSTEM
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"

    @classmethod
    def phi2(cls, system: str | None = None, sep2: str = "</s>") -> ChatTemplate:
        return cls(style="two", system=PHI2_SYSTEM if system is None else system, sep2=sep2)

    @classmethod
    def plain(cls) -> ChatTemplate:
        return cls(style="plain", system="", sep="\n", sep2="\n")

    # Pieces: (text, kind) with kind in {"ctx", "question", "answer", "image", "query"}.
    def pieces(self, turns: Sequence[Turn], *, add_learnable: bool = True) -> list[tuple[str, str]]:
        if not turns:
            raise ValueError("a conversation needs at least one turn")
        out: list[tuple[str, str]] = []
        if self.style == "plain":
            # <image>caption<learnable>\n : labels on the caption and the separator; the caption is also the text
            # the queries attend to (the queries come after it, so they cannot change the caption's loss).
            if len(turns) != 1 or turns[0][1] is None:
                raise ValueError("the plain template takes exactly one (image, caption) turn with a caption")
            user, caption = turns[0]
            out += [(IMAGE_TOKEN, "image")] * user.count(IMAGE_TOKEN)
            out.append((caption, "question+answer"))
            if add_learnable:
                out.append((LEARNABLE_TOKEN, "query"))
            out.append((self.sep, "answer"))
            return out
        if self.style != "two":
            raise ValueError(f"unknown template style {self.style!r}; use 'two' or 'plain'")
        if self.system:
            out.append((self.system + self.sep, "ctx"))
        for i, (user, answer) in enumerate(turns):
            if answer is None and i != len(turns) - 1:
                raise ValueError(f"turn {i} has no answer but is not the last turn")
            n_images = user.count(IMAGE_TOKEN)
            question = user.replace(IMAGE_TOKEN, "").strip()
            out.append((f"{self.roles[0]}: ", "ctx"))
            for _ in range(n_images):  # images first, then a newline, as the official preprocessing does
                out.append((IMAGE_TOKEN, "image"))
            if n_images:
                out.append(("\n", "ctx"))
            out.append((question, "question"))
            if add_learnable:
                out.append((LEARNABLE_TOKEN, "query"))
            if answer is None:
                out.append((f"{self.sep}{self.roles[1]}:", "ctx"))
            else:
                out.append((f"{self.sep}{self.roles[1]}: ", "ctx"))
                out.append((answer + self.sep2, "answer"))
        return out

    def render(self, turns: Sequence[Turn], *, add_learnable: bool = True) -> str:
        """The prompt as text, with ``<image>`` and ``<learnable>`` markers."""
        return "".join(text for text, _ in self.pieces(turns, add_learnable=add_learnable))

    def encode(
        self,
        turns: Sequence[Turn],
        tokenizer: Any,
        *,
        image_token_id: int,
        learnable_token_id: int,
        add_learnable: bool = True,
        max_length: int | None = None,
    ) -> EncodedConversation:
        """Tokenizes the conversation. Text between two markers is tokenized as one string (as transformers
        does around special tokens), and labels/spans come from character offsets, so no token counting.
        A token is labelled when its characters overlap an answer, and belongs to the question when they overlap
        the question text. ``max_length`` cuts the tail (as the official collator does) but refuses to cut off an image placeholder."""
        pieces = self.pieces(turns, add_learnable=add_learnable)
        ids: list[int] = []
        labels: list[int] = []
        spans: list[tuple[int, int]] = []
        question: list[int] = []  # token indices of the current turn's question
        chunk: list[tuple[str, str]] = []

        def flush() -> None:
            if not chunk:
                return
            text = "".join(t for t, _ in chunk)
            kinds = []  # (start, end, kind) character ranges
            pos = 0
            for t, kind in chunk:
                kinds.append((pos, pos + len(t), kind))
                pos += len(t)
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            for token, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
                hit = {k for a, b, k in kinds if s < b and e > a} if e > s else set()
                index = len(ids)
                ids.append(int(token))
                is_answer = any("answer" in k for k in hit)
                labels.append(int(token) if is_answer else IGNORE_INDEX)
                if any("question" in k for k in hit):
                    question.append(index)
            chunk.clear()

        for text, kind in pieces:
            if kind == "image":
                flush()
                ids.append(image_token_id)
                labels.append(IGNORE_INDEX)
                question.clear()  # the question is the text after the last image of the turn
            elif kind == "query":
                flush()
                spans.append((question[0], question[-1] + 1) if question else (len(ids), len(ids)))
                question.clear()
                ids.append(learnable_token_id)
                labels.append(IGNORE_INDEX)
            else:
                chunk.append((text, kind))
        flush()
        if max_length is not None and len(ids) > max_length:
            if any(t == image_token_id for t in ids[max_length:]):
                raise ValueError(
                    f"conversation of {len(ids)} tokens cannot be cut to {max_length} without its image placeholder(s); "
                    "raise model_max_length or shorten the sample"
                )
            n_blocks = sum(1 for t in ids[:max_length] if t == learnable_token_id)
            ids, labels, spans = ids[:max_length], labels[:max_length], spans[:n_blocks]
        return EncodedConversation(ids, labels, spans)


# ----------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------


def to_chw_float(image: Any) -> torch.Tensor:
    """An RGB image (``HxWx3`` uint8 array, ``3xHxW`` tensor in [0, 255], or PIL image) as ``3xHxW`` float 0..255."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB array, got shape {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a 3xHxW tensor, got shape {tuple(image.shape)}")
        return image.float()
    raise TypeError(
        f"unsupported image type {type(image).__name__}; pass an HxWx3 uint8 array or a PIL image"
    )


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic, antialiased resize of a ``3xHxW`` 0..255 image (SigLIP's processor resizes bicubic)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    out = F.interpolate(
        image[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    return out[0].clamp(0, 255)


def normalize(
    image: torch.Tensor, mean: Sequence[float] = SIGLIP_MEAN, std: Sequence[float] = SIGLIP_STD
) -> torch.Tensor:
    m = torch.tensor(mean, dtype=image.dtype)[:, None, None]
    s = torch.tensor(std, dtype=image.dtype)[:, None, None]
    return (image / 255.0 - m) / s


def preprocess_image(image: Any, size: int) -> torch.Tensor:
    """SigLIP preprocessing of one image to ``3 x size x size`` (the ``square`` aspect setting of stage II)."""
    return normalize(resize(to_chw_float(image), size, size))


def expand_to_square(image: torch.Tensor, fill: Sequence[float]) -> torch.Tensor:
    """Pads a ``3xHxW`` image to a centred square with colour ``fill`` (0..255), as LLaVA's ``expand2square``."""
    _, h, w = image.shape
    if h == w:
        return image
    side = max(h, w)
    out = torch.empty(3, side, side, dtype=image.dtype)
    out[:] = torch.tensor(fill, dtype=image.dtype)[:, None, None]
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top : top + h, left : left + w] = image
    return out


def hd_views(image: Any, crop_size: int = 384, grid: int = 2, patch_size: int = 14) -> torch.Tensor:
    """HD views ``[1 + grid^2, 3, crop, crop]``: the whole image resized (global view, first), then the row-major
    crops of the image padded to a square with the mean colour and resized to ``grid * crop`` (768 px).

    Raises ``ValueError`` when a side is shorter than ``grid * patch_size`` pixels: each crop would then hold less
    than one ViT patch of real pixels.
    """
    img = to_chw_float(image)
    _, h, w = img.shape
    min_side = grid * patch_size
    if min(h, w) < min_side:
        raise ValueError(
            f"image of {w}x{h} px is too small for HD cropping: each side must be at least {min_side} px "
            f"({grid}x{grid} crops of >= {patch_size} px ViT patches); upscale it or use the base mode (image_hd=False)"
        )
    fill = [int(m * 255) for m in SIGLIP_MEAN]
    canvas = resize(expand_to_square(img, fill), grid * crop_size, grid * crop_size)
    views = [resize(img, crop_size, crop_size)]
    for y in range(grid):
        for x in range(grid):
            views.append(canvas[:, y * crop_size : (y + 1) * crop_size, x * crop_size : (x + 1) * crop_size])
    return torch.stack([normalize(v) for v in views])


# ----------------------------------------------------------------------------------------------------
# Datasets and collation
# ----------------------------------------------------------------------------------------------------


def _as_tensors(enc: EncodedConversation, pixel_values: torch.Tensor | None) -> dict[str, torch.Tensor]:
    item = {
        "input_ids": torch.tensor(enc.input_ids, dtype=torch.long),
        "labels": torch.tensor(enc.labels, dtype=torch.long),
        "question_spans": torch.tensor(enc.question_spans, dtype=torch.long).reshape(-1, 2),
    }
    if pixel_values is not None:
        item["pixel_values"] = pixel_values
    return item


class ShapeQADataset(torch.utils.data.Dataset):
    """Synthetic shape questions (``paperzoo_shared.data.synthetic.qa.QASample``) as FlashSloth inputs.

    With ``with_answers`` each item is a training conversation (labels on the answers); with ``turns > 1`` the
    questions about the same image are asked in one multi-turn conversation (a ``<learnable>`` per turn, as in
    LLaVA's multi-turn data), in an order shuffled per image. Without answers each item is a single-question generation prompt and ``answers[i]``
    holds the answer's first token id. ``image_features`` maps an image id to precomputed tower outputs, used instead
    of pixels (a frozen tower's features, computed once).
    """

    def __init__(
        self,
        samples: Sequence[Any],
        tokenizer: Any,
        template: ChatTemplate,
        *,
        image_size: int,
        image_token_id: int,
        learnable_token_id: int,
        add_learnable: bool,
        with_answers: bool = True,
        turns: int = 1,
        hd: bool = False,
        hd_grid: int = 2,
        patch_size: int = 14,
        image_features: Callable[[int], torch.Tensor] | None = None,
    ):
        if turns < 1 or (turns > 1 and not with_answers):
            raise ValueError("turns must be >= 1, and multi-turn items need answers (training conversations)")
        self.samples = list(samples)
        self.items: list[dict[str, torch.Tensor]] = []
        self.answers: list[int] = []
        self.qtypes: list[str] = []
        groups: dict[int, list[Any]] = {}
        for s in self.samples:
            groups.setdefault(s.image_id, []).append(s)
        conversations = []
        for image_id, group in groups.items():
            if (
                turns > 1
            ):  # the generator assigns question types round-robin: shuffle so every type opens turns
                group = [group[i] for i in np.random.default_rng(image_id).permutation(len(group))]
            step = turns if with_answers else 1
            for k in range(0, len(group), step):
                conversations.append((image_id, group[k : k + step]))
        images: dict[int, torch.Tensor] = {}
        cache: dict[tuple, EncodedConversation] = {}
        kw = dict(
            image_token_id=image_token_id, learnable_token_id=learnable_token_id, add_learnable=add_learnable
        )
        for image_id, group in conversations:
            if image_id not in images:
                if image_features is not None:
                    images[image_id] = image_features(image_id)
                elif hd:
                    images[image_id] = hd_views(group[0].image, image_size, hd_grid, patch_size)
                else:
                    images[image_id] = preprocess_image(group[0].image, image_size)
            turns_text = tuple(
                ((f"{IMAGE_TOKEN}\n" if i == 0 else "") + s.question, s.answer if with_answers else None)
                for i, s in enumerate(group)
            )
            if turns_text not in cache:
                cache[turns_text] = template.encode(list(turns_text), tokenizer, **kw)
            item = _as_tensors(cache[turns_text], None)
            item["image_features" if image_features is not None else "pixel_values"] = images[image_id]
            self.items.append(item)
            answer_ids = tokenizer(group[0].answer, add_special_tokens=False)["input_ids"]
            self.answers.append(int(answer_ids[0]))
            self.qtypes.append(group[0].qtype)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class LlavaJsonDataset(torch.utils.data.Dataset):
    """LLaVA-format data: a JSON list of ``{"image": "path", "conversations": [{"from": "human"|"gpt",
    "value": ...}, ...]}`` with images under ``image_folder`` (the paper's 558K / 665K data; nothing is bundled).

    Unlike the official loader, a broken sample raises an error naming it instead of silently loading sample
    ``i + 1``.
    """

    def __init__(
        self,
        json_path: str | Path,
        image_folder: str | Path,
        tokenizer: Any,
        template: ChatTemplate,
        *,
        image_size: int,
        image_token_id: int,
        learnable_token_id: int,
        hd: bool = False,
        hd_grid: int = 2,
        patch_size: int = 14,
        max_length: int | None = None,
        image_loader: Callable[[Path], Any] | None = None,
    ):
        self.path = Path(json_path)
        try:
            self.records = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{self.path}: cannot read the conversation JSON: {error}") from error
        if not isinstance(self.records, list):
            raise ValueError(f"{self.path}: expected a JSON list of samples")
        self.image_folder = Path(image_folder)
        self.tokenizer, self.template = tokenizer, template
        self.kw = dict(
            image_token_id=image_token_id, learnable_token_id=learnable_token_id, max_length=max_length
        )
        self.image_size, self.hd, self.hd_grid, self.patch_size = image_size, hd, hd_grid, patch_size
        self.image_loader = image_loader or _read_rgb

    def __len__(self) -> int:
        return len(self.records)

    def turns(self, index: int) -> list[Turn]:
        record = self.records[index]
        conv = record.get("conversations")
        if not isinstance(conv, list) or not conv:
            raise ValueError(f"{self.path}: sample {index} has no 'conversations' list")
        if conv[0].get("from") != "human":
            conv = conv[1:]  # as the official preprocessing: skip a leading assistant message
        turns = []
        for k in range(0, len(conv) - 1, 2):
            human, gpt = conv[k], conv[k + 1]
            if human.get("from") != "human" or gpt.get("from") != "gpt":
                raise ValueError(f"{self.path}: sample {index} does not alternate human/gpt at message {k}")
            turns.append((human["value"], gpt["value"]))
        if self.template.style == "plain":
            turns = [(IMAGE_TOKEN, turns[0][1])]
        return turns

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        pixel_values = None
        if "image" in record:
            # a path leaving image_folder ("../x", an absolute path) is a DataError naming the file and sample
            path = safe_join(
                self.image_folder, str(record["image"]), source=self.path, entry=f"sample {index}"
            )
            try:
                image = self.image_loader(path)
            except OSError as error:
                raise ValueError(f"{self.path}: sample {index}: cannot read image {path}: {error}") from error
            if self.hd:
                pixel_values = hd_views(image, self.image_size, self.hd_grid, self.patch_size)
            else:
                pixel_values = preprocess_image(image, self.image_size)
        enc = self.template.encode(self.turns(index), self.tokenizer, **self.kw)
        return _as_tensors(enc, pixel_values)


def _read_rgb(path: Path) -> np.ndarray:
    from paperzoo_shared.data.image_io import read_image

    return read_image(path, channel_order="rgb")


@dataclass
class FlashSlothCollator:
    """Pads ``input_ids`` (``pad_token_id``), ``labels`` (-100) and ``question_spans`` (-1), builds the attention
    mask and concatenates the images of the batch (samples without an image contribute none)."""

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        max_len = max(len(it["input_ids"]) for it in items)
        max_blocks = max(len(it["question_spans"]) for it in items)
        batch = len(items)
        input_ids = torch.full((batch, max_len), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(batch, max_len, dtype=torch.long)
        spans = torch.full((batch, max(max_blocks, 1), 2), -1, dtype=torch.long)
        for b, it in enumerate(items):
            n = len(it["input_ids"])
            sl = slice(max_len - n, max_len) if self.padding_side == "left" else slice(0, n)
            input_ids[b, sl] = it["input_ids"]
            labels[b, sl] = it["labels"]
            mask[b, sl] = 1
            spans[b, : len(it["question_spans"])] = it["question_spans"]
        out = {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "question_spans": spans}
        for key in ("pixel_values", "image_features"):
            images = [it[key] for it in items if key in it]
            if images:
                out[key] = torch.stack(images)
        return out
