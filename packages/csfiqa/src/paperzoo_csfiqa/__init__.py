"""paperzoo-csfiqa: scale-contrastive blind image quality assessment with selective focus attention.

Reimplementation of CSFIQA ("Scale Contrastive Learning with Selective Attentions for Blind Image Quality
Assessment", arXiv 2411.09007). No official code exists; every part not recoverable from public sources is
marked *reconstructed* where it is defined. Importing the package is light (no torch); the model lives in
:mod:`paperzoo_csfiqa.modeling_csfiqa`, the losses in :mod:`paperzoo_csfiqa.losses`.
"""

from __future__ import annotations

__version__ = "0.1.0"
