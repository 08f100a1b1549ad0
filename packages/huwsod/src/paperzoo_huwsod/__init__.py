"""paperzoo-huwsod: HUWSOD (arXiv 2406.19394) and its WSOD anchors (WSDDN, OICR, MIST-style refinement) in
plain PyTorch and torchvision ops, trained with Lightning and evaluated through paperzoo_shared's metrics.

Importing the package is light: torch is imported only by the submodules that need it.
"""

from __future__ import annotations

__version__ = "0.2.0"
