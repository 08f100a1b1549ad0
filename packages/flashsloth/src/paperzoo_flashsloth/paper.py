"""The registry entry of FlashSloth (light: imports only paperzoo_shared.registry)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="flashsloth",
    title="FlashSloth: Lightning Multimodal Large Language Models via Embedded Visual Compression",
    package="paperzoo_flashsloth",
    reproduce="paperzoo_flashsloth.reproduce:reproduce",
)
