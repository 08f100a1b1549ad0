"""The registry entry of this package (kept light: only paperzoo_shared.registry is imported)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="cantor",
    title="Cantor: Inspiring Multimodal Chain-of-Thought of MLLM",
    package="paperzoo_cantor",
    reproduce="paperzoo_cantor.reproduce:reproduce",
)
