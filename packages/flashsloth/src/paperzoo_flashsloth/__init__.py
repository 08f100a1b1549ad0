"""paperzoo-flashsloth: FlashSloth, lightning multimodal LLMs via embedded visual compression (CVPR 2025).

Importing the package is light (no torch, no transformers). The model lives in
:mod:`paperzoo_flashsloth.modeling_flashsloth`, its configuration in :mod:`paperzoo_flashsloth.configuration`.
"""

from __future__ import annotations

__version__ = "0.1.0"
