"""paperzoo-flashsloth: FlashSloth, lightning multimodal LLMs via embedded visual compression (CVPR 2025).

Importing the package is light (no torch, no transformers): the classes below load on first use, and loading
:mod:`paperzoo_flashsloth.modeling_flashsloth` / :mod:`paperzoo_flashsloth.processing_flashsloth` registers
``model_type="flashsloth"`` with transformers' ``AutoConfig``, ``AutoModel``, ``AutoModelForImageTextToText``,
``AutoImageProcessor`` and ``AutoProcessor``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "FlashSlothConfig": "paperzoo_flashsloth.configuration",
    "FlashSlothForConditionalGeneration": "paperzoo_flashsloth.modeling_flashsloth",
    "FlashSlothProcessor": "paperzoo_flashsloth.processing_flashsloth",
    "FlashSlothImageProcessor": "paperzoo_flashsloth.processing_flashsloth",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paperzoo_flashsloth' has no attribute {name!r}")
