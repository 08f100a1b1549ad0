"""paperzoo-dckd: Dynamic Contrastive Knowledge Distillation for efficient image restoration (AAAI 2025).

Importing the package is light (no torch). The method lives in :mod:`paperzoo_dckd.modeling_dckd` and
:mod:`paperzoo_dckd.losses`, the backbones in :mod:`paperzoo_dckd.models`.
"""

from __future__ import annotations

__version__ = "0.2.0"
