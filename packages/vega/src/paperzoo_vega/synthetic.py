"""A seeded synthetic corpus of interleaved "papers" for the smoke and mini presets (nothing downloaded).

Each document has a few rendered figures (a filled shape, or a bar chart, in one colour, on white) with
content-free captions ("Figure. 3: the pruning study"), paragraphs that mention the figures without saying
what they show, distractor paragraphs, and one question per figure ("What is shown in Figure 3 ?", answer
"Figure 3 shows a red circle .") plus one question that names no figure (which the construction tool's
``no_figure_reference`` filter drops). Each figure's ``description`` ("the pruning study shows a red
circle .") is what its ITA text segment says.

So in the IITC samples built from it, *which picture to cite* can be read from the text (the figure number
in the question, its caption after the picture), while *what it shows* (colour, kind) is only in the
pixels; ITA asks the model to match descriptions to pictures, a purely visual association.

Text is whitespace-tokenised with spaces around punctuation, so the tiny models' word-level tokenizer
(:mod:`paperzoo_vega.tiny`) reproduces it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 20),
}
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "bar chart")
TOPICS: tuple[str, ...] = (
    "pruning", "scaling", "ablation", "robustness", "latency", "memory", "transfer", "baseline",
    "attention", "dropout", "curriculum", "sampling",
)  # fmt: skip
FILLER: tuple[str, ...] = (
    "We describe the method and the training setup in this section .",
    "The results are consistent with previous work on this task .",
    "Our model is simple and it is fast to train .",
    "We thank the reviewers for their comments on the draft .",
    "The data was collected from public sources and cleaned by hand .",
    "Further details are given in the appendix of the paper .",
)
OFF_TOPIC_QUESTIONS: tuple[str, ...] = (
    "What is the main contribution of the paper ?",
    "How was the data collected ?",
)


def render_figure(kind: str, colour: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A ``size`` x ``size`` RGB figure: the shape (or a 3-bar chart) in ``colour``, jittered in place and size."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    rgb = COLOURS[colour]
    s = size
    half = rng.uniform(0.28, 0.4) * s
    cx, cy = rng.uniform(0.42, 0.58, size=2) * s
    if kind == "circle":
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=rgb)
    elif kind == "square":
        draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=rgb)
    elif kind == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=rgb)
    elif kind == "bar chart":
        heights = np.sort(rng.uniform(0.25, 0.85, size=3))[rng.permutation(3)] * s
        width = s / 5
        for i, h in enumerate(heights):
            x0 = s * 0.12 + i * (width + s / 12)
            draw.rectangle([x0, s * 0.92 - h, x0 + width, s * 0.92], fill=rgb)
        draw.line([(s * 0.08, s * 0.93), (s * 0.95, s * 0.93)], fill=(0, 0, 0), width=1)
    else:
        raise ValueError(f"unknown figure kind {kind!r}; choose one of {KINDS}")
    return image


def generate_documents(
    out_dir: str | Path,
    *,
    n_documents: int,
    seed: int,
    figures_per_document: tuple[int, int] = (3, 4),
    filler_paragraphs: int = 1,
    image_size: int = 56,
    split: str = "train",
) -> tuple[Path, Path]:
    """Write ``docs/<id>.json`` and ``imgs/<split>_imgs/<id>/fig<N>.png``; return ``(docs dir, image root)``."""
    out = Path(out_dir)
    docs_dir, image_root = out / "docs", out / "imgs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = figures_per_document
    combos = [(c, k) for c in COLOURS for k in KINDS]
    for d in range(n_documents):
        rng = np.random.default_rng([seed, d])
        doc_id = f"{split}{seed:02d}.{d:05d}v1"
        n_figures = int(rng.integers(lo, hi + 1))
        picks = rng.choice(len(combos), size=n_figures, replace=False)
        topics = rng.choice(len(TOPICS), size=n_figures, replace=False)
        figures, paragraphs, qa = [], [], []
        for number, (combo, topic) in enumerate(zip(picks, topics), start=1):
            colour, kind = combos[int(combo)]
            study = TOPICS[int(topic)]
            rel = f"{split}_imgs/{doc_id}/fig{number}.png"
            (image_root / rel).parent.mkdir(parents=True, exist_ok=True)
            render_figure(kind, colour, image_size, rng).save(image_root / rel)
            figures.append({
                "number": number, "path": rel, "caption": f"Figure. {number} : the {study} study .",
                "description": f"the {study} study shows a {colour} {kind} .",
            })  # fmt: skip
            paragraphs.append(f"We report the {study} study in Figure {number} .")
            qa.append({
                "figure": number, "question": f"What is shown in Figure {number} ?",
                "answer": f"Figure {number} shows a {colour} {kind} .",
            })  # fmt: skip
        fillers = [FILLER[int(i)] for i in rng.choice(len(FILLER), size=filler_paragraphs, replace=False)]
        for text in fillers:  # distractor text at random places
            paragraphs.insert(int(rng.integers(0, len(paragraphs) + 1)), text)
        qa.append(
            {"figure": 1, "question": OFF_TOPIC_QUESTIONS[d % 2], "answer": "It is described in the text ."}
        )
        doc = {"id": doc_id, "title": f"A study of {TOPICS[int(topics[0])]}", "paragraphs": paragraphs,
               "figures": figures, "qa": qa}  # fmt: skip
        (docs_dir / f"{doc_id}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return docs_dir, image_root
