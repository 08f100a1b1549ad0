"""Building IITC and ITA samples from interleaved scientific documents (paper Sec. 3, construction pipeline).

VEGA builds its data from SciGraphQA (Palm-2 question/answer dialogues about figures of arXiv papers, with
the paper's text): it keeps questions that explicitly concern one figure, rebuilds the paper's text and
figures as an interleaved context that fits a 4k or 8k token budget (an image counts 256 tokens) with up to
8 images, the other figures and paragraphs of the same paper acting as distractors, and rewrites the answers
to cite ``[Picture n]``. ITA samples put figures and text segments of *different* papers together, shuffled.
The exact filtering rules, distractor sampling and rewriting prompts were not public (our notes, Sec. 2.3),
so the rules below are our reconstruction; each is a named, tested step:

Input: one JSON file per document under a folder (``*.json``)::

    {"id": "2101.00001v1", "title": "...",
     "paragraphs": ["We report ... in Figure 1 ...", ...],
     "figures": [{"number": 1, "path": "train_imgs/2101.00001v1/f1.png", "caption": "Figure 1: ...",
                  "description": "optional text about the figure, used as its ITA segment"}],
     "qa": [{"figure": 1, "question": "What does Figure 1 show?", "answer": "Figure 1 shows ..."}]}

``figure`` in ``qa`` is the figure *number*; ``path`` is relative to the image root (joined with
:func:`paperzoo_shared.data.safe_join`).

IITC, per question (the filters, in order; each rejected question is counted under its reason):

1. ``no_figure_reference``: the question does not name a figure (:data:`FIGURE_REFERENCE`).
2. ``empty_answer``; ``unknown_figure``: ``figure`` is not a figure of the document;
   ``missing_image``: the target figure's file does not exist.
3. ``too_few_figures``: fewer than ``min_images`` figures with existing files (the distractors are other
   figures of the same paper).
4. Distractors: up to ``max_images - 1`` other figures of the document, drawn with the seeded generator;
   the chosen figures keep their document order.
5. Interleaving: paragraphs in document order; each chosen figure follows the first paragraph that mentions
   it (else the end), rendered ``Picture k: <img>path</img>\\n`` and its caption; a mention of a chosen figure
   in the text gets ``[Picture k]`` appended, as in the release (``"Figure~6[Picture 1]"``).
6. Budget: text tokens (whitespace words, or ``count_tokens``) + ``image_tokens`` per image. While over
   ``budget``, drop the paragraph farthest from the target's paragraph, then the distractor figure farthest
   from the target; ``over_budget`` when the target and its paragraph alone do not fit.
7. Answer rewriting (a template, where the paper used an LLM): every mention of the target figure becomes
   ``[Picture k](Figure. N)``; an answer without a mention gets ``[Picture k] `` in front.

ITA, per sample: ``n_pictures`` figures from as many different documents (with existing images and a
segment text: ``description``, else the caption with its figure label removed), pictures in a shuffled order,
segments ``T1..Tn`` in another; answer ``"T1:[Picture a] T2:[Picture b] ..."``.

Output records follow the release schema exactly (:mod:`paperzoo_vega.data`), so the reader and the official
scorers accept them. Given the same documents and seed the output is identical.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo_shared.data import safe_join
from paperzoo_shared.data.errors import DataError
from paperzoo_vega.modeling_vega import budget_tokens, picture_block

FIGURE_REFERENCE = re.compile(r"\b(fig(ure)?s?|graph|plot|chart|diagram|image|picture)\b", re.IGNORECASE)
"""A question "explicitly references an image" when it names one of these (our reconstruction)."""


def _mention(number: int) -> re.Pattern[str]:
    """Mentions of figure ``number``: ``Figure 3``, ``Fig. 3``, ``Figure~3``, ``figure 3`` (not ``Figure 31``)."""
    return re.compile(rf"\b(Fig(?:ure)?\.?)([ ~]?)({number})(?!\d)", re.IGNORECASE)


@dataclass(frozen=True)
class Figure:
    number: int
    path: str
    caption: str
    description: str = ""


@dataclass(frozen=True)
class QA:
    figure: int
    question: str
    answer: str


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    paragraphs: list[str]
    figures: list[Figure]
    qa: list[QA]
    source: str = ""


@dataclass(frozen=True)
class BuildConfig:
    """Options of the construction tool (defaults: the paper's 4k IITC setting)."""

    budget: int = 4096
    """Context budget in tokens (the paper's two IITC scales: 4096 and 8192)."""
    image_tokens: int = 256
    """Tokens counted per image (256 = Qwen-VL's visual tokens, as in the paper)."""
    max_images: int = 8
    """Most images in one IITC context (the paper: up to 8)."""
    min_images: int = 2
    """Fewest images (target + at least one distractor)."""
    ita_pictures: tuple[int, ...] = (3, 5)
    """Pictures per ITA sample (the release: 3 and 5)."""
    ita_samples: int = 0
    """ITA samples per picture count; 0 gives one per document (rounded down to full samples)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.budget < 1 or self.image_tokens < 0:
            raise ValueError("budget must be >= 1 and image_tokens >= 0")
        if not 1 <= self.min_images <= self.max_images:
            raise ValueError(f"need 1 <= min_images <= max_images, got {self.min_images}, {self.max_images}")
        if any(n < 2 for n in self.ita_pictures):
            raise ValueError(f"ITA needs at least 2 pictures per sample, got {self.ita_pictures}")


@dataclass
class BuildReport:
    """What was built and what was filtered, and why."""

    iitc: int = 0
    ita: dict[int, int] = field(default_factory=dict)
    filtered: Counter = field(default_factory=Counter)
    trimmed_paragraphs: int = 0
    trimmed_figures: int = 0

    def summary(self) -> str:
        lines = [f"IITC samples: {self.iitc}"]
        lines += [f"ITA {n}-picture samples: {count}" for n, count in sorted(self.ita.items())]
        lines.append(
            f"dropped to fit the budget: {self.trimmed_paragraphs} paragraphs, {self.trimmed_figures} figures"
        )
        if self.filtered:
            lines.append(
                "filtered questions: " + ", ".join(f"{k} {v}" for k, v in sorted(self.filtered.items()))
            )
        else:
            lines.append("filtered questions: none")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Reading documents
# ----------------------------------------------------------------------------------------------------


def parse_document(data: Any, source: str) -> Document:
    """Validate one document JSON object (errors name ``source``)."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: a document must be a JSON object")
    for key in ("id", "paragraphs", "figures"):
        if key not in data:
            raise DataError(f"{source}: document lacks {key!r}")
    try:
        figures = [
            Figure(int(f["number"]), str(f["path"]), str(f.get("caption", "")), str(f.get("description", "")))
            for f in data["figures"]
        ]
        qa = [QA(int(q["figure"]), str(q["question"]), str(q["answer"])) for q in data.get("qa", [])]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{source}: malformed figure or qa entry ({err!r})") from None
    numbers = [f.number for f in figures]
    if len(set(numbers)) != len(numbers):
        raise DataError(f"{source}: figure numbers repeat: {numbers}")
    if not isinstance(data["paragraphs"], list) or not all(isinstance(p, str) for p in data["paragraphs"]):
        raise DataError(f"{source}: 'paragraphs' must be a list of strings")
    return Document(
        str(data["id"]), str(data.get("title", "")), list(data["paragraphs"]), figures, qa, source
    )


def read_documents(folder: str | Path) -> list[Document]:
    """Every ``*.json`` document under ``folder``, sorted by file name (so the order is reproducible)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"document folder {folder} does not exist")
    documents = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        documents.append(parse_document(data, str(path)))
    if not documents:
        raise DataError(f"no *.json documents in {folder}")
    return documents


# ----------------------------------------------------------------------------------------------------
# IITC
# ----------------------------------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _anchor(paragraphs: Sequence[str], number: int) -> int | None:
    """Index of the first paragraph mentioning figure ``number``."""
    pattern = _mention(number)
    for i, paragraph in enumerate(paragraphs):
        if pattern.search(paragraph):
            return i
    return None


def _cite_in_text(text: str, numbering: dict[int, int]) -> str:
    """Append ``[Picture k]`` to each mention of a figure in the context (release style ``Figure~6[Picture 1]``)."""
    for number, k in numbering.items():
        text = _mention(number).sub(lambda m, k=k: f"{m.group(0)}[Picture {k}]", text)
    return text


def rewrite_answer(answer: str, figure_number: int, picture: int) -> str:
    """Cite the target as ``[Picture k](Figure. N)`` wherever the answer mentions it; else prefix ``[Picture k] ``."""
    pattern = _mention(figure_number)
    if pattern.search(answer):
        return pattern.sub(f"[Picture {picture}](Figure. {figure_number})", answer)
    return f"[Picture {picture}] {answer}"


def render_context(
    paragraphs: Sequence[str], kept: Sequence[int], figures: Sequence[Figure]
) -> tuple[str, list[str], dict[int, int]]:
    """The interleaved context of paragraphs ``kept`` (indices into ``paragraphs``) and ``figures``.

    Returns ``(context, image_paths, {figure number: picture k})``; figures are numbered 1.. in the order they
    appear, each placed after the first kept paragraph that mentions it, the rest at the end.
    """
    placed: dict[int, list[Figure]] = {}
    for figure in figures:
        anchor = _anchor([paragraphs[i] for i in kept], figure.number)
        placed.setdefault(-1 if anchor is None else anchor, []).append(figure)
    order: list[Figure] = []
    for position in range(len(kept)):
        order.extend(placed.get(position, []))
    order.extend(placed.get(-1, []))
    numbering = {figure.number: k for k, figure in enumerate(order, start=1)}
    pieces: list[str] = []

    def add_figures(group: list[Figure]) -> None:
        for figure in group:
            pieces.append(picture_block(numbering[figure.number], figure.path) + figure.caption)

    for position, index in enumerate(kept):
        pieces.append(_cite_in_text(paragraphs[index], numbering))
        add_figures(placed.get(position, []))
    add_figures(placed.get(-1, []))
    return "\n".join(pieces), [figure.path for figure in order], numbering


def build_iitc_sample(
    doc: Document,
    qa: QA,
    *,
    cfg: BuildConfig,
    rng: np.random.Generator,
    image_root: Path,
    report: BuildReport,
    count_tokens: Callable[[str], int] = _words,
) -> dict[str, Any] | None:
    """One IITC record for ``qa`` of ``doc``, or ``None`` (the reason is counted in ``report.filtered``)."""

    def reject(reason: str) -> None:
        report.filtered[reason] += 1

    if not FIGURE_REFERENCE.search(qa.question):
        return reject("no_figure_reference")
    if not qa.answer.strip():
        return reject("empty_answer")
    by_number = {f.number: f for f in doc.figures}
    if qa.figure not in by_number:
        return reject("unknown_figure")
    exists = {
        f.number: safe_join(
            image_root, f.path, source=doc.source or doc.id, entry=f"figure {f.number}"
        ).is_file()
        for f in doc.figures
    }
    if not exists[qa.figure]:
        return reject("missing_image")
    usable = [f for f in doc.figures if exists[f.number]]
    if len(usable) < cfg.min_images:
        return reject("too_few_figures")
    target = by_number[qa.figure]
    others = [f for f in usable if f.number != target.number]
    n_distractors = min(len(others), cfg.max_images - 1)
    picked = {others[i].number for i in rng.choice(len(others), size=n_distractors, replace=False)}
    chosen = [f for f in doc.figures if f.number == target.number or f.number in picked]
    kept = list(range(len(doc.paragraphs)))
    anchor = _anchor(doc.paragraphs, target.number)

    def size(kept: list[int], chosen: list[Figure]) -> int:
        context, paths, _ = render_context(doc.paragraphs, kept, chosen)
        return budget_tokens(count_tokens(context) + count_tokens(qa.question), len(paths), cfg.image_tokens)

    centre = anchor if anchor is not None else len(doc.paragraphs)
    while size(kept, chosen) > cfg.budget:
        droppable = [i for i in kept if i != anchor]
        if droppable:  # the paragraph farthest from the target's (ties: the later one)
            kept.remove(max(droppable, key=lambda i: (abs(i - centre), i)))
            report.trimmed_paragraphs += 1
            continue
        distractors = [f for f in chosen if f.number != target.number]
        if len(distractors) + 1 > cfg.min_images:
            position = {f.number: i for i, f in enumerate(doc.figures)}
            t = position[target.number]
            chosen.remove(max(distractors, key=lambda f: (abs(position[f.number] - t), position[f.number])))
            report.trimmed_figures += 1
            continue
        return reject("over_budget")
    context, paths, numbering = render_context(doc.paragraphs, kept, chosen)
    truth = paths.index(target.path)
    report.iitc += 1
    return {
        "id": doc.id,
        "title": doc.title,
        "caption": target.caption,
        "context": context,
        "question": qa.question,
        "answer": rewrite_answer(qa.answer, target.number, numbering[target.number]),
        "image_paths": paths,
        "truth_fig_idx": truth,
    }


def build_iitc(
    documents: Sequence[Document],
    image_root: str | Path,
    cfg: BuildConfig,
    *,
    report: BuildReport | None = None,
    progress: bool = False,
    count_tokens: Callable[[str], int] = _words,
) -> tuple[list[dict[str, Any]], BuildReport]:
    """IITC records of every question of every document (seeded by ``cfg.seed``)."""
    from tqdm.auto import tqdm

    report = report or BuildReport()
    rng = np.random.default_rng([cfg.seed, 1])
    records = []
    for doc in tqdm(documents, desc="IITC", disable=not progress):
        for qa in doc.qa:
            record = build_iitc_sample(
                doc,
                qa,
                cfg=cfg,
                rng=rng,
                image_root=Path(image_root),
                report=report,
                count_tokens=count_tokens,
            )
            if record is not None:
                records.append(record)
    return records, report


# ----------------------------------------------------------------------------------------------------
# ITA
# ----------------------------------------------------------------------------------------------------

_CAPTION_LABEL = re.compile(r"^\s*Fig(?:ure)?\.?\s*\d+\s*[:.]?\s*", re.IGNORECASE)


def segment_text(figure: Figure) -> str:
    """The ITA text segment of a figure: its description, else its caption without the "Figure N:" label."""
    return figure.description.strip() or _CAPTION_LABEL.sub("", figure.caption).strip()


def build_ita(
    documents: Sequence[Document],
    image_root: str | Path,
    cfg: BuildConfig,
    *,
    report: BuildReport | None = None,
    progress: bool = False,
) -> tuple[dict[int, list[dict[str, Any]]], BuildReport]:
    """ITA records per picture count: figures of distinct documents, pictures and segments shuffled."""
    from tqdm.auto import tqdm

    report = report or BuildReport()
    root = Path(image_root)
    pool: list[tuple[Document, Figure]] = []
    for doc in documents:
        for figure in doc.figures:
            path = safe_join(root, figure.path, source=doc.source or doc.id, entry=f"figure {figure.number}")
            if path.is_file() and segment_text(figure):
                pool.append((doc, figure))
    out: dict[int, list[dict[str, Any]]] = {}
    for n in cfg.ita_pictures:
        rng = np.random.default_rng([cfg.seed, 2, n])
        doc_ids = sorted({doc.id for doc, _ in pool})
        if len(doc_ids) < n:
            report.filtered[f"ita_{n}_too_few_documents"] += 1
            out[n] = []
            continue
        wanted = cfg.ita_samples or len(documents)
        records = []
        by_doc: dict[str, list[tuple[Document, Figure]]] = {}
        for item in pool:
            by_doc.setdefault(item[0].id, []).append(item)
        for _ in tqdm(range(wanted), desc=f"ITA {n}", disable=not progress):
            docs = [doc_ids[i] for i in rng.choice(len(doc_ids), size=n, replace=False)]
            items = [by_doc[d][rng.integers(len(by_doc[d]))] for d in docs]  # segment order T1..Tn
            picture_order = rng.permutation(n)  # picture k shows item picture_order[k-1]
            context = "".join(
                picture_block(k, items[i][1].path) for k, i in enumerate(picture_order, start=1)
            )
            context += "\n".join(f"T{t}: {segment_text(item[1])}" for t, item in enumerate(items, start=1))
            picture_of = {int(i): k for k, i in enumerate(picture_order, start=1)}
            answer = " ".join(f"T{t}:[Picture {picture_of[t - 1]}]" for t in range(1, n + 1))
            records.append({
                "id": [item[0].id for item in items],
                "image_paths": [items[i][1].path for i in picture_order],
                "context": context,
                "answer": answer,
            })  # fmt: skip
        out[n] = records
        report.ita[n] = len(records)
    return out, report


def build_dataset(
    documents_dir: str | Path,
    image_root: str | Path,
    out_dir: str | Path,
    cfg: BuildConfig,
    *,
    split: str = "train",
    scale_name: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Write ``IITC_<scale>_<split>.json`` and ``ITA_<n>picture_<split>.json`` (release names) under ``out_dir``."""
    from paperzoo_vega.data import write_jsonl

    documents = read_documents(documents_dir)
    iitc, report = build_iitc(documents, image_root, cfg, progress=progress)
    ita, report = build_ita(documents, image_root, cfg, report=report, progress=progress)
    out = Path(out_dir)
    scale = scale_name or f"{cfg.budget // 1024}k"
    write_jsonl(out / f"IITC_{scale}_{split}.json", iitc)
    for n, records in ita.items():
        write_jsonl(out / f"ITA_{n}picture_{split}.json", records)
    return report
