"""Backbones: SwinIR, RCAN, EDSR (super-resolution), NAFNet, Restormer (deblurring, deraining), and the
VQGAN encoder DCKD uses as its frozen feature space. :func:`build_model` builds one from a name and options.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from paperzoo_dckd.models.common import count_parameters, pad_to_multiple
from paperzoo_dckd.models.edsr import EDSR
from paperzoo_dckd.models.nafnet import NAFNet
from paperzoo_dckd.models.rcan import RCAN
from paperzoo_dckd.models.restormer import Restormer
from paperzoo_dckd.models.swinir import SwinIR
from paperzoo_dckd.models.vqgan import VQGANEncoder

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "swinir": SwinIR,
    "rcan": RCAN,
    "edsr": EDSR,
    "nafnet": NAFNet,
    "restormer": Restormer,
    "vqgan_encoder": VQGANEncoder,
}

PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    # DCKD Table 1 and the released train_SwinIR_SRx*_DCKD.yml (upscale is added per scale).
    "swinir_teacher": {
        "arch": "swinir",
        "embed_dim": 180,
        "depths": [6] * 6,
        "num_heads": [6] * 6,
        "window_size": 8,
        "mlp_ratio": 2.0,
        "upsampler": "pixelshuffle",
        "resi_connection": "1conv",
    },
    "swinir_student": {
        "arch": "swinir",
        "embed_dim": 60,
        "depths": [6] * 4,
        "num_heads": [6] * 4,
        "window_size": 8,
        "mlp_ratio": 2.0,
        "upsampler": "pixelshuffle",
        "resi_connection": "1conv",
    },
    "rcan_teacher": {"arch": "rcan", "num_feat": 64, "num_group": 10, "num_block": 20},
    "rcan_student": {"arch": "rcan", "num_feat": 64, "num_group": 10, "num_block": 6},
    # DUKD's EDSR pair (DCKD does not use EDSR; kept for the same trainer).
    "edsr_teacher": {"arch": "edsr", "num_feat": 256, "num_block": 32, "res_scale": 0.1},
    "edsr_student": {"arch": "edsr", "num_feat": 64, "num_block": 32},
    "nafnet_teacher": {
        "arch": "nafnet",
        "width": 32,
        "enc_blk_nums": [1, 1, 1, 28],
        "dec_blk_nums": [1, 1, 1, 1],
    },
    "nafnet_student": {
        "arch": "nafnet",
        "width": 16,
        "enc_blk_nums": [1, 1, 1, 14],
        "dec_blk_nums": [1, 1, 1, 1],
    },
    "restormer_teacher": {
        "arch": "restormer",
        "dim": 48,
        "num_blocks": [4, 6, 6, 8],
        "num_refinement_blocks": 4,
    },
    "restormer_student": {
        "arch": "restormer",
        "dim": 24,
        "num_blocks": [2, 3, 3, 4],
        "num_refinement_blocks": 2,
    },
    # taming-transformers VQGAN f16, 1024 codes (the released network_vqgan config).
    "vqgan_f16_n1024": {
        "arch": "vqgan_encoder",
        "ch": 128,
        "ch_mult": [1, 1, 2, 2, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [16],
        "resolution": 256,
        "z_channels": 256,
        "embed_dim": 256,
        "n_embed": 1024,
    },
}


def build_model(arch: str, options: Mapping[str, Any] | None = None, *, where: str = "model") -> nn.Module:
    """Builds ``arch`` (a key of :data:`ARCHITECTURES` or :data:`PAPER_CONFIGS`) with ``options`` on top.

    An option the architecture does not take is a ``ValueError`` naming it (and ``where`` it came from).
    """
    options = dict(options or {})
    if arch in PAPER_CONFIGS:
        options = {**PAPER_CONFIGS[arch], **options}
        arch = options.pop("arch")
    if arch not in ARCHITECTURES:
        valid = sorted({*ARCHITECTURES, *PAPER_CONFIGS})
        raise ValueError(f"{where}: unknown architecture {arch!r}; valid: {', '.join(valid)}")
    cls = ARCHITECTURES[arch]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"{where}: {arch} has no option {unknown[0]!r}; valid options: {', '.join(sorted(accepted))}"
        )
    return cls(**options)


__all__ = [
    "ARCHITECTURES",
    "EDSR",
    "PAPER_CONFIGS",
    "RCAN",
    "NAFNet",
    "Restormer",
    "SwinIR",
    "VQGANEncoder",
    "build_model",
    "count_parameters",
    "pad_to_multiple",
]
