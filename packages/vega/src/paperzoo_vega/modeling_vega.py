"""The VEGA tasks: interleaved context format, prompts and the official per-item scorers.

VEGA (Zhou et al., arXiv 2406.10228) introduces no network: its new parts are two tasks and how they are
posed and scored. This module holds all of them, each tied to where it comes from:

* **IITC** (Interleaved Image-Text Comprehension, paper Sec. 3): a long interleaved document (text and up
  to 8 figures of one paper, most of it redundant or misleading) and a question about one figure; the
  model answers and cites the one relevant image as ``[Picture n]`` (the paper's figures show
  ``"[Picture 3](Figure. 4) shows that ..."``).
* **ITA** (Image-Text Association): pictures and text segments from *different* papers, shuffled; the model
  answers the correspondence ``"T1:[Picture 5] T2:[Picture 1] ..."``.

Context format (release README): every image appears inside ``context`` as ``Picture {k}: <img>{path}</img>``
followed by a newline, ``k`` 1-based in context order, the path relative to the unzipped image folder. This is
Qwen-VL-Chat's native syntax; :func:`split_context` turns it into text/image segments for any other model.

Scorers, as ``eval/IITC.py`` and ``eval/ITA.py`` of zhourax/VEGA (commit d5b2475) compute them:

* IITC picture accuracy: the numbers of ``\\[Picture (\\d+)\\]``; when there is none, of ``\\[Picture(\\d+)\\]``;
  when there is none of those either, ``[0]``. Correct iff **exactly one** number was found and it equals
  ``truth_fig_idx + 1`` (so citing the right picture twice is wrong, and a bare ``Picture 2`` is wrong).
* IITC ROUGE-L: ``Rouge().get_scores(response, answer)[0]['rouge-l']['f']`` of pltrdy's ``rouge`` 1.0.x
  (summary-level union LCS, sentences split on ".", unique-token counts, case-sensitive), reused from
  :func:`paperzoo_shared.metrics.text.rouge_l` ``variant="pltrdy"``; an exception scores 0.
* IITC BLEU: NLTK ``sentence_bleu([answer.split()], response.split(), (.25,)*4, method1 smoothing)``;
  computed inside the same ``try`` as ROUGE, so an item whose ROUGE raises gets 0 BLEU too.
* ITA accuracy: the numbers of ``Picture (\\d+)`` (brackets optional) in the answer and in the response;
  correct iff ``response[i] == answer[i]`` for every position ``i`` of the answer. Extra predicted pictures are
  ignored, too few is wrong, the ``T`` labels are never read (order only).

Beside them, clearly named, the standard sentence-level ROUGE-L (Lin 2004; as Google's ``rouge-score`` without
stemming) for comparison: :func:`rouge_l_standard`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from paperzoo_shared.metrics.text import rouge_l

Task = Literal["iitc", "ita"]
TASKS: tuple[str, ...] = ("iitc", "ita")

# ----------------------------------------------------------------------------------------------------
# Context format
# ----------------------------------------------------------------------------------------------------

IMAGE_PLACEHOLDER = re.compile(r"Picture (\d+): <img>(.*?)</img>")
"""One image of a context: ``Picture k: <img>relative/path</img>`` (release README)."""

IMAGE_TOKENS_PER_PICTURE = 256
"""Qwen-VL-Chat's visual tokens per image, which the paper uses to count images in the 4k/8k budgets."""


@dataclass(frozen=True)
class Segment:
    """A piece of an interleaved context: text, or the image numbered ``number`` (1-based)."""

    kind: Literal["text", "image"]
    text: str = ""
    path: str = ""
    number: int = 0


def picture_block(number: int, path: str) -> str:
    """The release's placeholder for picture ``number`` (1-based), newline included."""
    return f"Picture {number}: <img>{path}</img>\n"


def split_context(context: str, *, keep_labels: bool = True) -> list[Segment]:
    """Split a release context into text and image segments, in order.

    With ``keep_labels`` the ``"Picture k: "`` label stays in the text before its image (the model still
    sees the numbering it must cite); without it only the surrounding text is kept. Empty text segments
    are dropped.
    """
    segments: list[Segment] = []
    cursor = 0
    for match in IMAGE_PLACEHOLDER.finditer(context):
        before = context[cursor : match.start()]
        if keep_labels:
            before += f"Picture {match.group(1)}: "
        if before:
            segments.append(Segment("text", text=before))
        segments.append(Segment("image", path=match.group(2), number=int(match.group(1))))
        cursor = match.end()
    if context[cursor:]:
        segments.append(Segment("text", text=context[cursor:]))
    return segments


def context_images(context: str) -> list[tuple[int, str]]:
    """``(k, path)`` of every placeholder of ``context``, in order."""
    return [(int(m.group(1)), m.group(2)) for m in IMAGE_PLACEHOLDER.finditer(context)]


def check_context(context: str, image_paths: Sequence[str]) -> str | None:
    """Why ``context`` and ``image_paths`` disagree, or ``None`` when they agree.

    They agree when the placeholders are numbered 1, 2, ... in order and their paths are ``image_paths``
    in the same order (which is how the release's records are built).
    """
    found = context_images(context)
    numbers = [k for k, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        return f"pictures are numbered {numbers}, expected 1..{len(found)} in order"
    paths = [p for _, p in found]
    if paths != list(image_paths):
        return (
            f"the context's {len(paths)} picture paths differ from image_paths ({len(image_paths)} entries)"
        )
    return None


def budget_tokens(text_tokens: int, n_images: int, image_tokens: int = IMAGE_TOKENS_PER_PICTURE) -> int:
    """Context size as the paper counts it: text tokens + 256 (Qwen-VL) per image."""
    return text_tokens + image_tokens * n_images


# ----------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------

IITC_PROMPT_OFFICIAL = (
    "Based on the following known information, answer the user's questions concisely and professionally. "
    "If the answer is derived from an image, please indicate in the answer by referencing [Picture *], "
    "where * represents the image number. If the answer cannot be obtained from it, ignore the content of "
    "the text and respond to the user's question in Chinese. Known content: "
)
"""``prompt_head`` of ``eval/IITC.py`` (verbatim, including its odd "respond ... in Chinese" clause)."""

IITC_PROMPT_PAPER = (
    "Based on the following known information, answer the user's question concisely and professionally. "
    "The answer must cite the one picture it is derived from, in the form '[Picture 2](Figure. 3)'; "
    "only choose one picture. Known content: "
)
"""The paper's IITC prompt, *reconstructed*: the paper and project-page figure ask to cite e.g.
``'[Picture 2](Figure. 3)'`` and to "only choose one picture"; the exact wording was not available to us."""

ITA_PROMPT_OFFICIAL = (
    "Please determine the correspondence between the pictures and segments based on the content provided "
    "in 'pictures' and 'segments'. Please use [Picture *] to respond, where * represents the index of the "
    "picture."
)
"""``prompt_head`` of ``eval/ITA.py`` (verbatim; the context follows with no separator)."""

ITA_FORMAT_LINE = "Answer in the format T1:[Picture 2] T2:[Picture 3] ..."
ITA_QUESTION_PAPER = "What is the corresponding order between text segments and pictures?"
"""The paper figure's ITA additions: the answer format and this question (wording of the format line
reconstructed)."""

PROMPT_STYLES: tuple[str, ...] = ("official", "paper", "none")
"""``official``: the eval scripts' heads; ``paper``: the paper figure's; ``none``: no instruction head (the
context and question only), for tiny models trained from scratch, for which a constant head is only cost."""


def build_query(
    task: Task,
    context: str,
    question: str | None = None,
    *,
    style: Literal["official", "paper", "none"] = "official",
    ita_format_line: bool | None = None,
) -> str:
    """The whole text query for one sample, in the Qwen-VL native form (placeholders kept).

    * IITC: ``prompt_head + context + "\\nQuestion:" + question`` (``eval/IITC.py``).
    * ITA ``official``: ``prompt_head + context`` (``eval/ITA.py``, no question).
    * ITA ``paper``: the official head, the format line, the context, then ``"\\nQuestion:"`` and the paper's
      question. ``ita_format_line`` adds (True) or removes (False) the format line in either style.
    * ``none``: the same without any instruction head.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    if task == "iitc":
        if question is None:
            raise ValueError("an IITC query needs a question")
        head = {"official": IITC_PROMPT_OFFICIAL, "paper": IITC_PROMPT_PAPER, "none": ""}[style]
        return head + context + "\nQuestion:" + question
    if task == "ita":
        if style == "none":
            return context
        with_format = (style == "paper") if ita_format_line is None else ita_format_line
        head = ITA_PROMPT_OFFICIAL + (" " + ITA_FORMAT_LINE if with_format else "")
        if style == "official":
            return head + context
        return head + "\n" + context + "\nQuestion:" + ITA_QUESTION_PAPER
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


# ----------------------------------------------------------------------------------------------------
# Official scorers (per item)
# ----------------------------------------------------------------------------------------------------

_IITC_CITATION = re.compile(r"\[Picture (\d+)\]")
_IITC_CITATION_NO_SPACE = re.compile(r"\[Picture(\d+)\]")
_ITA_PICTURE = re.compile(r"Picture (\d+)")


def iitc_cited_pictures(response: str) -> list[int]:
    """The picture numbers an IITC response cites, as ``extract_picture_numbers`` of ``eval/IITC.py``.

    ``[Picture n]`` matches first; only when there is none, ``[Picturen]``; when neither occurs, ``[0]``.
    """
    numbers = _IITC_CITATION.findall(response)
    if not numbers:
        numbers = _IITC_CITATION_NO_SPACE.findall(response)
    if not numbers:
        return [0]
    return [int(n) for n in numbers]


def iitc_picture_correct(response: str, truth_fig_idx: int | str) -> bool:
    """Official IITC image association: exactly one citation, equal to ``truth_fig_idx + 1`` (0-based index)."""
    cited = iitc_cited_pictures(response)
    return len(cited) == 1 and cited[0] == int(truth_fig_idx) + 1


def rouge_l_official(response: str, answer: str) -> float:
    """pltrdy ``rouge`` ROUGE-L F of ``response`` against ``answer`` (raises ``ValueError`` when either is
    empty after the "." split, as the package does; :func:`iitc_text_scores` scores that 0)."""
    return rouge_l(response, answer, variant="pltrdy")


def rouge_l_standard(response: str, answer: str) -> float:
    """Standard sentence-level ROUGE-L F1 over whitespace tokens (no stemming, case-sensitive); 0 when empty.

    Not what VEGA reports: shown beside :func:`rouge_l_official` for comparison only.
    """
    return rouge_l(response, answer, variant="lcs")


def bleu_official(answer: str, response: str) -> float:
    """``bleu_score(answer, response)`` of ``eval/IITC.py``: NLTK sentence BLEU-4, method1 smoothing."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(
        sentence_bleu(
            [answer.split()],
            response.split(),
            weights=(0.25, 0.25, 0.25, 0.25),
            smoothing_function=SmoothingFunction().method1,
        )
    )


def iitc_text_scores(response: str, answer: str) -> tuple[float, float, bool]:
    """``(rouge_l, bleu, failed)`` of one IITC item as the official ``try`` block scores it.

    ROUGE is computed first; if it raises, both are 0 and ``failed`` is True. If BLEU raises after ROUGE
    succeeded, ROUGE is kept (it was already added in the official loop) and BLEU is 0.
    """
    try:
        rouge = rouge_l_official(response, answer)
    except Exception:
        return 0.0, 0.0, True
    try:
        return rouge, bleu_official(answer, response), False
    except Exception:
        return rouge, 0.0, True


def ita_pictures(text: str) -> list[int]:
    """Picture numbers in order, brackets optional, as ``extract_picture_numbers`` of ``eval/ITA.py``."""
    return [int(n) for n in _ITA_PICTURE.findall(text)]


def ita_correct(response: str, answer: str) -> bool:
    """Official ITA accuracy: the response's pictures agree with the answer's at every answer position.

    Extra predicted pictures are ignored, a missing one is wrong, T labels are not read (order only); an
    answer with no picture at all is scored correct, as the official loop does.
    """
    truth, predicted = ita_pictures(answer), ita_pictures(response)
    if len(predicted) < len(truth):
        return False
    return all(predicted[i] == truth[i] for i in range(len(truth)))
