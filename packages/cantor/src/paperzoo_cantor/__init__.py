"""paperzoo-cantor: Cantor, perception-decision multimodal chain of thought (Gao et al., ACM MM 2024).

Light on import: nothing here imports torch, transformers or openai.
"""

from __future__ import annotations

__version__ = "0.1.0"
