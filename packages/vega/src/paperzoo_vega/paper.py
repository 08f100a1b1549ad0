"""The registry entry of this package (kept light: only paperzoo_shared.registry is imported)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="vega",
    title="VEGA: Learning Interleaved Image-Text Comprehension in Vision-Language Large Models",
    package="paperzoo_vega",
    reproduce="paperzoo_vega.reproduce:reproduce",
)
