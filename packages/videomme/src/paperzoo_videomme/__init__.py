"""paperzoo-videomme: the Video-MME evaluation protocol (Fu et al., CVPR 2025), reimplemented and tested.

Light on import: nothing here imports torch or transformers.
"""

from __future__ import annotations

__version__ = "0.2.0"
