"""The registry entry of CSFIQA (light: imports only paperzoo_shared.registry)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="csfiqa",
    title="Scale Contrastive Learning with Selective Attentions for Blind Image Quality Assessment",
    package="paperzoo_csfiqa",
    reproduce="paperzoo_csfiqa.reproduce:reproduce",
)
