"""paperzoo-t2vid: T2Vid / Sparrow (Yin et al., arXiv 2411.19951), long text rendered into video-like
multi-image samples for Video-LLM fine-tuning.

Light on import: nothing here imports torch, PIL or sentence-transformers.
"""

from __future__ import annotations

__version__ = "0.2.0"
