"""The registry entry of Dynamic-LLaVA (light: imports only paperzoo_shared.registry)."""

from paperzoo_shared.registry import Paper

PAPER = Paper(
    name="dynamic_llava",
    title="Dynamic-LLaVA: Efficient Multimodal Large Language Models via Dynamic Vision-language Context Sparsification",
    package="paperzoo_dynamic_llava",
    reproduce="paperzoo_dynamic_llava.reproduce:reproduce",
)
