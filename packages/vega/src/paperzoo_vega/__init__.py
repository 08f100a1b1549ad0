"""paperzoo-vega: VEGA (Zhou et al., arXiv 2406.10228), interleaved image-text comprehension.

The IITC and ITA tasks of the VEGA release: readers, prompts, the official scorers, the construction tool,
model adapters, a resumable evaluation runner and the multi-task post-training recipe.

Light on import: nothing here imports torch or transformers.
"""

from __future__ import annotations

__version__ = "0.1.0"
