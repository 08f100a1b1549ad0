"""Cantor's perception-decision chain of thought (Gao et al., ACM MM 2024, arXiv 2404.16033), Sec. 3.

Three steps, one MLLM playing every role, no training:

1. **Decision generation** (Sec. 3.1): the model sees the image and the question, analyses the principles
   involved and assigns sub-tasks to four expert modules (TextIntel Extractor, ObjectQuant Locator,
   VisionIQ Analyst, ChartSense Expert) or says that no module is needed.
2. **Execution: modularization** (Sec. 3.2): each sub-task, prefixed with its module's name, goes to the
   same model with the image; the answers are the "supplementary information".
3. **Execution: synthesis** (Sec. 3.2): the answer generator combines the question, the decision's rationale,
   the sub-task answers and the image into ``Rationale: ... Answer: ...``.

The parser between steps 1 and 2 (``split_task``) and the assembly of the supplementary information
(``summary``) are those of the released demo (ggg0919/cantor c549f9e, ``utils/split_task.py`` and
``utils/execute_modularization.py``), reproduced in an ``official`` mode with their quirks, and in a
``fixed`` mode that no longer drops a sub-task because it contains "No" (or "None", ...) as a substring.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

# ----------------------------------------------------------------------------------------------------
# The four expert modules (released utils/prompt.py, module cards) in the order split_task scans them
# ----------------------------------------------------------------------------------------------------

MODULES: tuple[str, ...] = (
    "TextIntel Extractor",
    "ObjectQuant Locator",
    "VisionIQ Analyst",
    "ChartSense Expert",
)
SPLIT_ORDER: tuple[str, ...] = (
    "ChartSense Expert",
    "VisionIQ Analyst",
    "TextIntel Extractor",
    "ObjectQuant Locator",
)
"""split_task collects ChartSense first, then VisionIQ, TextIntel and ObjectQuant (not the card order)."""

OFFICIAL_FILTER_KEYWORDS: tuple[str, ...] = (
    "N/A",
    "Not required",
    "Not needed",
    "None",
    "No",
    "List the objects to be identified or counted in the image",
    "Specify the text or information to be extracted from the image",
    "Pose any specific questions you have about the image that require deeper visual analysis",
)
"""A sub-task line containing any of these (case-sensitive substring) is dropped by the release."""

_TEMPLATE_PLACEHOLDERS = OFFICIAL_FILTER_KEYWORDS[5:] + (
    "Extract chart data or specify any questions about the chart",
)
# Fixed mode: a line is "no task" when it *is* a negative answer (optionally bracketed / punctuated),
# e.g. "N/A", "None.", "[Not required]", "No.", "Not needed for this question", "None required".
_FIXED_NEGATIVE = re.compile(
    r"^[\s\[\(\"'*]*(?:n/?a|none|no|nil|not\s+(?:required|needed|applicable|necessary|used))\b(?!['’-])",
    re.IGNORECASE,
)

SplitMode = Literal["official", "fixed"]


def _module_pattern(name: str) -> re.Pattern[str]:
    # released regex: the module name, up to two '*' on either side of the colon, then the rest of the line
    return re.compile(re.escape(name) + r"\*{0,2}:\*{0,2}\s*(.*?)\n")


def keep_official(task: str) -> bool:
    """The release's keyword filter: drop a line that contains any keyword as a case-sensitive substring."""
    return not any(keyword in task for keyword in OFFICIAL_FILTER_KEYWORDS)


def keep_fixed(task: str) -> bool:
    """Our filter: drop empty lines, negative answers ("N/A", "None.", "Not required") and placeholders.

    "Note the colour", "North arrow", "November rainfall", "Count the None-labelled bars" are kept.
    """
    stripped = task.strip()
    if not stripped.strip("[]().,;:*\"' "):
        return False
    if _FIXED_NEGATIVE.match(stripped):
        return False
    return not any(placeholder in stripped for placeholder in _TEMPLATE_PLACEHOLDERS)


def split_task(decision: str, mode: SplitMode = "official") -> list[str]:
    """Sub-tasks of a decision as ``"<Module>: <task>"`` strings (released ``split_task``, Sec. 3.2).

    A "\\n" is appended when the decision does not end with one, so the last line is matched too. Each
    module's lines are collected in :data:`SPLIT_ORDER`; the official mode drops any line containing one of
    :data:`OFFICIAL_FILTER_KEYWORDS` (so "Note ..." goes, because it contains "No").
    """
    if mode not in ("official", "fixed"):
        raise ValueError(f"split mode must be 'official' or 'fixed', got {mode!r}")
    text = decision if decision.endswith("\n") else decision + "\n"
    keep = keep_official if mode == "official" else keep_fixed
    tasks: list[str] = []
    for name in SPLIT_ORDER:
        for match in _module_pattern(name).findall(text):
            if keep(match):
                tasks.append(f"{name}: {match}")
    return tasks


_ANSWER_SPAN = re.compile(
    r"Answer\*{0,2}:{0,1}\*{0,2}\s*(.*?)\s*\*{0,2}Modules{0,1}\'s{0,1} [tT]asks{0,1}\*{0,2}:", re.DOTALL
)
_RATIONALE_SPAN = re.compile(
    r"Rationale\*{0,2}:\*{0,2}\s*(.*?)\n\*{0,2}Modules{0,1}\'s{0,1} [tT]asks{0,1}\*{0,2}:", re.DOTALL
)


def decision_rationale(decision: str) -> str:
    """The part of a decision the synthesis sees (released ``summary``, first half).

    The "Answer ... Modules' tasks:" spans (joined by a space), else the "Rationale ... Modules' tasks:"
    spans, else the whole decision.
    """
    spans = _ANSWER_SPAN.findall(decision)
    if spans:
        return " ".join(spans)
    spans = _RATIONALE_SPAN.findall(decision)
    if spans:
        return " ".join(spans)
    return decision


def summary(decision: str, sub_tasks: Sequence[str], sub_answers: Sequence[str]) -> str:
    """The supplementary information (released ``summary``): rationale, then one line per sub-task.

    ``"{sub_q} Answer:{sub_a}\\n"`` per pair; the header ``"\\nModules' tasks:\\n"`` only when there are
    sub-tasks. As in the release, pairs are zipped, so a missing answer drops its task.
    """
    text = decision_rationale(decision)
    if sub_tasks:
        text += "\nModules' tasks:\n"
    for sub_q, sub_a in zip(sub_tasks, sub_answers):
        text += f"{sub_q} Answer:{sub_a}\n"
    return text


# ----------------------------------------------------------------------------------------------------
# Prompts (versioned templates)
# ----------------------------------------------------------------------------------------------------

DECISION_SUFFIX = "\nPlease refer to the prompts and examples above to help me solve the following problem:\nQuestion: {query}\n"
SYNTHESIS_SUFFIX = (
    "\nPlease answer the following case:\n Question:{query}\nSupplementary information:{supplementary}"
)


@dataclass(frozen=True)
class PromptSet:
    """The decision and synthesis prompts of one version, and how a call is formed from them."""

    version: str
    decision_prompt: str
    synthesis_prompt: str

    def decision_call(self, query: str) -> str:
        """Released decision_generation: the prompt, then the "Please refer to ..." suffix with the query."""
        return self.decision_prompt + DECISION_SUFFIX.format(query=query)

    def synthesis_call(self, query: str, supplementary: str) -> str:
        """Released execute_synthesis: the prompt, then the case with the supplementary information."""
        return self.synthesis_prompt + SYNTHESIS_SUFFIX.format(query=query, supplementary=supplementary)


PROMPT_VERSIONS: dict[str, str] = {
    "release-c549f9e": "release_c549f9e",
}
"""Prompt sets shipped with the package: the released ``utils/prompt.py`` at commit c549f9e, byte-exact."""


def load_prompts(version: str = "release-c549f9e") -> PromptSet:
    if version not in PROMPT_VERSIONS:
        raise ValueError(f"unknown prompt version {version!r}; known: {', '.join(PROMPT_VERSIONS)}")
    folder = resources.files("paperzoo_cantor.prompts").joinpath(PROMPT_VERSIONS[version])

    def read(name: str) -> str:
        with folder.joinpath(name).open("r", encoding="utf-8", newline="") as handle:
            return handle.read()

    return PromptSet(version, read("decision_prompt.txt"), read("execute_synthesis_prompt.txt"))


# ----------------------------------------------------------------------------------------------------
# The synthesis output "Rationale: ... Answer: ..."
# ----------------------------------------------------------------------------------------------------

_FINAL_ANSWER = re.compile(r"Answer\s*\**\s*[:：]\s*\**\s*(.*)", re.DOTALL)
_RATIONALE = re.compile(r"Rationale\s*\**\s*[:：]\s*\**\s*(.*?)(?=\**\s*Answer\s*\**\s*[:：]|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ParsedResponse:
    rationale: str
    answer: str
    well_formed: bool
    """True when the response has an ``Answer:`` field (the synthesis format)."""


def parse_response(response: str) -> ParsedResponse:
    """Splits ``Rationale: ... Answer: ...``; the answer is the text after the *last* ``Answer:``.

    A response with no ``Answer:`` is not well formed; its whole text stands as the answer.
    """
    matches = list(re.finditer(r"Answer\s*\**\s*[:：]", response))
    rationale_match = _RATIONALE.search(response)
    rationale = rationale_match.group(1).strip() if rationale_match else ""
    if not matches:
        return ParsedResponse(rationale, response.strip(), False)
    answer = response[matches[-1].end() :].strip().strip("*").strip()
    return ParsedResponse(rationale, answer, True)


# ----------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------

Generate = Callable[[str, "bytes | None"], Awaitable[str]]
"""An async ``generate(prompt, image_bytes_or_None) -> text``; raises on a failed call."""


@dataclass
class Step:
    """One model call of a trace."""

    role: str  # decision | expert | synthesis | direct | cot | caption | extraction
    prompt: str
    response: str
    error: str | None = None
    """None, or ``"<kind>: <message>"`` with kind timeout | refusal | malformed | error."""
    cached: bool = False
    seconds: float = 0.0


@dataclass
class CantorTrace:
    """Every intermediate field, named as in the release's ``decision.json``, plus each call."""

    query: str
    decision: str = ""
    sub_tasks: list[str] = field(default_factory=list)
    sub_answers: list[str] = field(default_factory=list)
    supplementary_information: str = ""
    response: str = ""
    steps: list[Step] = field(default_factory=list)

    def as_decision_json(self) -> dict[str, Any]:
        """The release's state file fields (``decision.json``)."""
        return {
            "query": self.query,
            "decision": self.decision,
            "sub-tasks": list(self.sub_tasks),
            "sub-answers": list(self.sub_answers),
            "supplementary_information": self.supplementary_information,
            "response": self.response,
        }


FAILED_CALL_TEXT = " "
"""What the release stores when a call fails (its ``except: ... = " "``)."""


@dataclass
class CantorConfig:
    """How the pipeline is run.

    ``split_mode``: ``official`` (the release's filter) or ``fixed``. ``expert_image``: send the image with
    each sub-task (the release does). ``decision_image`` / ``synthesis_image``: send the image to the
    decision and synthesis calls (the Gemini variant does; the GPT-3.5 variant gives a caption instead, put
    into the query by the benchmark adapter). ``parallel_experts``: run the sub-tasks concurrently (the
    release runs them one after the other; the answers keep their order either way).
    """

    prompt_version: str = "release-c549f9e"
    split_mode: SplitMode = "official"
    decision_image: bool = True
    expert_image: bool = True
    synthesis_image: bool = True
    parallel_experts: bool = True

    def __post_init__(self) -> None:
        if self.split_mode not in ("official", "fixed"):
            raise ValueError(f"split_mode must be 'official' or 'fixed', got {self.split_mode!r}")
        if self.prompt_version not in PROMPT_VERSIONS:
            raise ValueError(
                f"unknown prompt_version {self.prompt_version!r}; known: {', '.join(PROMPT_VERSIONS)}"
            )


class CallFailed(Exception):
    """Raised by a backend for a failed call; ``kind`` is timeout | refusal | malformed | error."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


async def _call(generate: Generate, role: str, prompt: str, image: bytes | None, trace: CantorTrace) -> str:
    loop = asyncio.get_running_loop()
    start = loop.time()
    step = Step(role=role, prompt=prompt, response="")
    try:
        step.response = await generate(prompt, image)
    except CallFailed as error:
        step.error = f"{error.kind}: {error}"
        step.response = FAILED_CALL_TEXT
    step.seconds = loop.time() - start
    trace.steps.append(step)
    return step.response


async def run_cantor(
    generate: Generate,
    query: str,
    image: bytes | None,
    config: CantorConfig | None = None,
    prompts: PromptSet | None = None,
    expert_generate: Generate | None = None,
) -> CantorTrace:
    """Decision -> split -> experts -> summary -> synthesis (Sec. 3; released ``demo.py`` order).

    ``expert_generate`` (default: ``generate``) plays the experts: Cantor (GPT-3.5) decides and answers
    with a text model (the image given as a caption in ``query``) while an MLLM executes the sub-tasks.
    A failed call (``CallFailed``) is recorded in the trace and stands as ``" "``, as in the release; the
    pipeline goes on. ``1 + len(sub_tasks) + 1`` calls are made.
    """
    config = config or CantorConfig()
    prompts = prompts or load_prompts(config.prompt_version)
    trace = CantorTrace(query=query)
    trace.decision = await _call(
        generate, "decision", prompts.decision_call(query), image if config.decision_image else None, trace
    )
    if not trace.decision.endswith("\n"):
        trace.decision += "\n"  # split_task writes the decision back with the newline appended
    trace.sub_tasks = split_task(trace.decision, config.split_mode)
    expert_image = image if config.expert_image else None
    expert = expert_generate or generate
    if config.parallel_experts:
        sub_traces = [CantorTrace(query=query) for _ in trace.sub_tasks]
        answers = await asyncio.gather(
            *(
                _call(expert, "expert", task, expert_image, sub)
                for task, sub in zip(trace.sub_tasks, sub_traces)
            )
        )
        for sub in sub_traces:
            trace.steps.extend(sub.steps)
        trace.sub_answers = list(answers)
    else:
        trace.sub_answers = [
            await _call(expert, "expert", task, expert_image, trace) for task in trace.sub_tasks
        ]
    trace.supplementary_information = summary(trace.decision, trace.sub_tasks, trace.sub_answers)
    trace.response = await _call(
        generate,
        "synthesis",
        prompts.synthesis_call(query, trace.supplementary_information),
        image if config.synthesis_image else None,
        trace,
    )
    return trace
