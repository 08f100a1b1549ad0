"""The registry entry of this package (kept light: only paperzoo_shared.registry is imported)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="videomme",
    title=(
        "Video-MME: The First-Ever Comprehensive Evaluation Benchmark of Multi-modal LLMs in Video Analysis"
    ),
    package="paperzoo_videomme",
    reproduce="paperzoo_videomme.reproduce:reproduce",
)
