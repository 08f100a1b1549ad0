"""paperzoo-vita: VITA-1.0, an open omni multimodal LLM (video, image, text, audio) on Mixtral.

Importing the package is light (no torch, no transformers): the classes below load on first use, and loading
:mod:`paperzoo_vita.modeling_vita` registers ``model_type="vita"`` with transformers' ``AutoConfig``, ``AutoModel``
and ``AutoModelForImageTextToText``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "VitaConfig": "paperzoo_vita.configuration",
    "VitaAudioConfig": "paperzoo_vita.configuration",
    "VitaForConditionalGeneration": "paperzoo_vita.modeling_vita",
    "VitaProcessor": "paperzoo_vita.processing_vita",
    "VitaImageProcessor": "paperzoo_vita.processing_vita",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paperzoo_vita' has no attribute {name!r}")
