"""paperzoo-dynamic-llava: Dynamic-LLaVA, dynamic vision-language context sparsification (ICLR 2025).

Importing the package is light (no torch, no transformers). The method lives in
:mod:`paperzoo_dynamic_llava.modeling_dynamic_llava` (predictors, masked-softmax attention, physical pruning,
the gated KV cache) with its settings in :mod:`paperzoo_dynamic_llava.configuration`; FLOP, latency and
memory measurement in :mod:`paperzoo_dynamic_llava.measure`.
"""

from __future__ import annotations

__version__ = "0.2.0"
