"""The registry entry of DCKD (light: imports only paperzoo_shared.registry)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="dckd",
    title="Dynamic Contrastive Knowledge Distillation for Efficient Image Restoration",
    package="paperzoo_dckd",
    reproduce="paperzoo_dckd.reproduce:reproduce",
)
