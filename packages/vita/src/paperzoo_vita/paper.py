"""The registry entry of VITA (light: imports only paperzoo_shared.registry)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="vita",
    title="VITA: Towards Open-Source Interactive Omni Multimodal LLM",
    package="paperzoo_vita",
    reproduce="paperzoo_vita.reproduce:reproduce",
)
