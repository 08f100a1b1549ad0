"""The registry entry of this package (light: imports only paperzoo_shared.registry)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="huwsod",
    title="HUWSOD: Holistic Self-training for Unified Weakly Supervised Object Detection",
    package="paperzoo_huwsod",
    reproduce="paperzoo_huwsod.reproduce:reproduce",
)
