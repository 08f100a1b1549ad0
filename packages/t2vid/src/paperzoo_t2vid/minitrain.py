"""The tiny-video-LLM training experiment (issue 20): the paper's data-efficiency rows in miniature.

Synthetic task, seeded, built here (nothing downloaded):

* **Real video samples** (Video-ChatGPT-like): clips of ``frames`` frames on coloured backgrounds, one of
  them showing a keyword in a large font; a multiple-choice question from a **few fixed templates** (low
  instruction diversity by construction), answer = the option letter.
* **T2Vid samples**: the same keywords as black text on white 448-style frames (scaled to the tiny model),
  each frame one large-font word of a short "document"; a multiple-choice question from **many**
  templates (long-text-QA-like diversity), answer = the option letter.
* **Evaluation**: held-out clips written as ``.mp4`` in the Video-MME folder layout
  (``videomme/test.json``, ``video/<id>.mp4``) and scored by :mod:`paperzoo_t2vid.evaluate`.

Rows (``configs/mini-long.yaml`` pre-registers the comparisons): all real video samples; 15 % of them;
the 15 % plus T2Vid samples at 2:1 (as 20K:10K). Every row trains the tiny Idefics3 from the same random
init for the same number of epochs, so "all real" also gets more optimisation steps, as in the paper.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo_shared.data import write_image, write_video
from paperzoo_t2vid.evaluate import LETTERS
from paperzoo_t2vid.modeling_t2vid import to_multi_image

KEYWORDS: tuple[str, ...] = ("apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "rocket")
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((200, 60, 60), (60, 160, 70), (60, 90, 200), (210, 180, 50))
REAL_TEMPLATES: tuple[str, ...] = (
    "Which word is shown in the video?",
    "What word appears in the video?",
)
T2VID_VERBS = ("Which", "What")
T2VID_NOUNS = ("word", "term", "name", "keyword", "item")
T2VID_PLACES = ("in the text", "in these pages", "in the document", "on the pages", "in the passage")
T2VID_ENDINGS = ("?", "? Pick one.", "? Choose the right option.", "? Read carefully.")


@dataclass
class MiniTrainConfig:
    """Sizes of the training experiment."""

    n_real: int = 200
    """Real video samples in the "all real" row."""
    real_share: float = 0.15
    t2vid_ratio: float = 0.5
    """T2Vid samples per real sample in the mixed row (10K : 20K)."""
    n_eval: int = 48
    frames: int = 4
    image_side: int = 64
    font_size: int = 20
    epochs: float = 4.0
    batch_size: int = 8
    learning_rate: float = 3e-3
    label_mode: str = "answer"
    """The tiny model learns the answer letter; the official Idefics3 mode (prompt trained too) is the
    recipe's default, used by the full preset."""
    diversity_embedder: str = "tfidf"
    rows: list[str] = field(default_factory=lambda: ["all_real", "real_15", "real_15_t2vid"])

    def __post_init__(self) -> None:
        if self.n_real < 4 or self.n_eval < 4 or self.frames < 1:
            raise ValueError("train_mini.n_real and n_eval must be >= 4 and frames >= 1")
        if not 0 < self.real_share <= 1 or self.t2vid_ratio < 0:
            raise ValueError("train_mini.real_share must be in (0, 1] and t2vid_ratio >= 0")
        unknown = set(self.rows) - set(ROW_LABELS)
        if unknown:
            raise ValueError(f"train_mini.rows: unknown row {sorted(unknown)[0]!r}")


ROW_LABELS = {
    "all_real": "all real video samples",
    "real_15": "15 % of the real video samples",
    "real_15_t2vid": "15 % real + T2Vid samples (2:1)",
}


def _font(size: int) -> Any:
    from PIL import ImageFont

    from paperzoo_t2vid.configuration import DEFAULT_FONT

    return ImageFont.truetype(DEFAULT_FONT, size)


def keyword_frame(word: str | None, side: int, background: tuple[int, int, int], font: Any) -> np.ndarray:
    """A ``side`` x ``side`` RGB frame: ``background``, and ``word`` centred in black when given."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), background)
    if word:
        draw = ImageDraw.Draw(image)
        box = draw.textbbox((0, 0), word, font=font)
        xy = ((side - (box[2] - box[0])) / 2 - box[0], (side - (box[3] - box[1])) / 2 - box[1])
        draw.text(xy, word, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def _options(rng: np.random.Generator, target: str) -> tuple[list[str], str]:
    others = [w for w in KEYWORDS if w != target]
    picks = [target, *rng.choice(others, size=3, replace=False).tolist()]
    order = rng.permutation(4)
    options = [picks[i] for i in order]
    return [f"{LETTERS[i]}. {w}" for i, w in enumerate(options)], LETTERS[options.index(target)]


def _clip(rng: np.random.Generator, cfg: MiniTrainConfig, font: Any) -> tuple[list[np.ndarray], str]:
    target = str(rng.choice(KEYWORDS))
    shown = int(rng.integers(cfg.frames))
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    frames = [
        keyword_frame(target if k == shown else None, cfg.image_side, background, font)
        for k in range(cfg.frames)
    ]
    return frames, target


def real_samples(n: int, seed: int, cfg: MiniTrainConfig, out: Path) -> list[dict[str, Any]]:
    """``n`` real-video-style multi-image records (frames written as PNG under ``out``)."""
    rng = np.random.default_rng([seed, 11])
    font = _font(cfg.font_size)
    records = []
    for i in range(n):
        frames, target = _clip(rng, cfg, font)
        options, letter = _options(rng, target)
        question = "\n".join([str(rng.choice(REAL_TEMPLATES)), *options])
        paths = []
        for k, frame in enumerate(frames):
            rel = f"real/{i:05d}/frame_{k:04d}.png"
            write_image(out / rel, frame, channel_order="rgb")
            paths.append(rel)
        records.append(to_multi_image([{"value": question}, {"value": letter}], paths))
    return records


def t2vid_samples(n: int, seed: int, cfg: MiniTrainConfig, out: Path) -> list[dict[str, Any]]:
    """``n`` T2Vid-style records: one large-font word per white frame, the keyword among filler words."""
    rng = np.random.default_rng([seed, 13])
    font = _font(cfg.font_size)
    filler = ("the", "and", "of", "a", "to", "in")
    records = []
    for i in range(n):
        target = str(rng.choice(KEYWORDS))
        shown = int(rng.integers(cfg.frames))
        words = [target if k == shown else str(rng.choice(filler)) for k in range(cfg.frames)]
        options, letter = _options(rng, target)
        ask = (
            f"{rng.choice(T2VID_VERBS)} {rng.choice(T2VID_NOUNS)} is written {rng.choice(T2VID_PLACES)}"
            f"{rng.choice(T2VID_ENDINGS)}"
        )
        paths = []
        for k, word in enumerate(words):
            rel = f"t2vid/{i:05d}/text_pic_{k:05d}.png"
            write_image(
                out / rel, keyword_frame(word, cfg.image_side, (255, 255, 255), font), channel_order="rgb"
            )
            paths.append(rel)
        records.append(to_multi_image([{"value": "\n".join([ask, *options])}, {"value": letter}], paths))
    return records


def write_eval_set(n: int, seed: int, cfg: MiniTrainConfig, root: Path) -> Path:
    """Held-out clips in the Video-MME layout: ``root/videomme/test.json`` and ``root/video/<id>.mp4``."""
    rng = np.random.default_rng([seed, 17])
    font = _font(cfg.font_size)
    rows = []
    for i in range(n):
        frames, target = _clip(rng, cfg, font)
        options, letter = _options(rng, target)
        vid = f"mini{i:04d}"
        # two copies of each frame at 2 fps: the middle-of-segment sampler with `frames` frames then
        # picks each distinct frame once (indices 1, 3, 5, ...)
        write_video(root / "video" / f"{vid}.mp4", np.repeat(np.stack(frames), 2, axis=0), fps=2.0)
        rows.append(
            {
                "video_id": f"{i:03d}", "duration": "short", "videoID": vid, "question_id": f"{i:03d}-1",
                "task_type": "OCR Problems", "question": str(rng.choice(REAL_TEMPLATES)),
                "options": options, "answer": letter,
            }
        )  # fmt: skip
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    (root / "videomme" / "test.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return root


def training_sets(seed: int, cfg: MiniTrainConfig, out: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows' training sets; "15 %" is a seeded subset of the "all real" pool."""
    real = real_samples(cfg.n_real, seed, cfg, out)
    n_small = max(1, int(round(cfg.n_real * cfg.real_share)))
    rng = np.random.default_rng([seed, 19])
    small = [real[i] for i in sorted(rng.choice(len(real), size=n_small, replace=False).tolist())]
    synthetic = t2vid_samples(int(round(n_small * cfg.t2vid_ratio)), seed, cfg, out)
    mixed = [*small, *synthetic]
    mixed = [mixed[i] for i in rng.permutation(len(mixed))]
    return {"all_real": real, "real_15": small, "real_15_t2vid": mixed}


def vocabulary_words() -> list[str]:
    from paperzoo_t2vid.evaluate import MCQ_SUFFIX
    from paperzoo_t2vid.tiny import vocabulary

    texts = [
        *REAL_TEMPLATES,
        *T2VID_VERBS,
        *T2VID_NOUNS,
        *T2VID_PLACES,
        *T2VID_ENDINGS,
        *KEYWORDS,
        MCQ_SUFFIX,
    ]
    texts += ["is written", *LETTERS, ". :"]
    return vocabulary(texts)


def first_questions(records: Sequence[dict[str, Any]]) -> list[str]:
    """The instruction text of each record (placeholders and options removed), for the diversity score."""
    from paperzoo_t2vid.train import PLACEHOLDER

    return [PLACEHOLDER.sub("", r["conversations"][0]["content"]).split("\n")[0] for r in records]


def run_row(
    row: str,
    seed: int,
    cfg: MiniTrainConfig,
    sets: dict[str, list[dict[str, Any]]],
    work: Path,
    eval_root: Path,
) -> dict[str, float]:
    """Train the tiny Idefics3 on one row's set and score it on the eval folder."""
    import time

    import torch

    from paperzoo_t2vid.diversity import diversity_score, embedder
    from paperzoo_t2vid.evaluate import evaluate
    from paperzoo_t2vid.tiny import TinyIdefics3Config, build_tiny_idefics3
    from paperzoo_t2vid.train import TrainConfig, train

    torch.set_num_threads(max(1, torch.get_num_threads()))
    records = sets[row]
    tiny = TinyIdefics3Config(image_side=cfg.image_side)
    model, processor = build_tiny_idefics3(vocabulary_words(), tiny, seed=seed)
    steps_per_epoch = -(-len(records) // cfg.batch_size)
    tcfg = TrainConfig(
        model="tiny-idefics3", output_dir=str(work / f"{row}-{seed}"), label_mode=cfg.label_mode,
        max_steps=max(1, int(round(cfg.epochs * steps_per_epoch))), per_device_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1, learning_rate=cfg.learning_rate, weight_decay=0.0, warmup_ratio=0.03,
        seed=seed, logging_steps=1,
    )  # fmt: skip
    start = time.perf_counter()
    result = train(tcfg, records, work, model=model, processor=processor)
    train_s = time.perf_counter() - start
    # as many frames at evaluation as in training (the paper: 24 and 24); the clips hold each frame twice
    scores, _ = evaluate(result.model, result.processor, eval_root, n_frames=cfg.frames, max_new_tokens=3)
    questions = first_questions(records)
    embed = embedder(cfg.diversity_embedder, fit_on=questions)
    return {
        "accuracy": scores.accuracy,
        "n_train": float(len(records)),
        "steps": float(tcfg.max_steps),
        "final_loss": float(np.mean(result.losses[-3:])),
        "diversity": diversity_score(embed(questions)),
        "train_s": train_s,
    }
