"""The registry entry of this package (kept light: only paperzoo_shared.registry is imported)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="t2vid",
    title="T2Vid: Translating Long Text into Multi-Image is the Catalyst for Video-LLMs (Sparrow)",
    package="paperzoo_t2vid",
    reproduce="paperzoo_t2vid.reproduce:reproduce",
)
