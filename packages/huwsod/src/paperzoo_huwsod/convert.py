"""Official checkpoints -> this package's state dicts.

Two kinds of files come from the official project (both detectron2 layouts):

* the ImageNet ResNet-WS backbone of DRN-WSOD, ``resnet18_ws_model_120_d2.pkl``: a pickled dict with a
  ``model`` mapping of detectron2 names (``stem.conv1.weight``, ``res2.0.conv1.norm.running_mean`` ...) to
  numpy arrays;
* a trained HUWSOD detector, ``model_final.pth``: ``{"model": {"backbone.res5.0.conv1.weight": ...,
  "roi_heads.box_refinery_0.cls_score.weight": ...}}``.

Pickles are read with a restricted unpickler that only rebuilds numpy arrays and plain containers (never
arbitrary objects); ``.pth`` files with ``torch.load(weights_only=True)``. The converter was tested on files
with the documented layout that the tests generate; the real OneDrive files could not be downloaded here.
The AE head (``cls_head.*``) is training-only and is not converted.

RPN channels. detectron2 orders the A = sizes x ratios anchors of a cell size-major (for each size, for each
ratio) and the official config lists the ratios as ``[1, 2, 0.5]`` (:data:`OFFICIAL_ASPECT_RATIOS`). The
objectness conv has one output channel per anchor and the delta conv four (``a * 4 + d``). A converted file
keeps the official channel order and records it; :func:`load_detector` permutes the channels into the order
of the model's ``rpn.aspect_ratios`` (the default is the official order, so the permutation is then the
identity).
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: only numpy arrays and plain containers are allowed in a "
            "detectron2 weight file"
        )


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` weights of a detectron2 ``.pkl`` or ``.pth`` file (``model`` entry if present)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".pkl":
        with path.open("rb") as handle:
            data = _SafeUnpickler(io.BytesIO(handle.read()), encoding="latin1").load()
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise ValueError(f"checkpoint {path} holds a {type(data).__name__}, expected a mapping of weights")
    out = {}
    for name, value in data.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if isinstance(value, torch.Tensor):
            out[name] = value
    return out


_RULES = [
    (r"^backbone\.(.*)$", r"backbone.\1"),
    (r"^((?:stem|res[2-5])\..*)$", r"backbone.\1"),
    (r"^roi_heads\.box_head\.(fc[12])\.(weight|bias)$", r"head.\1.\2"),
    (r"^roi_heads\.box_predictor\.cls\.(weight|bias)$", r"head.wsddn_cls.\1"),
    (r"^roi_heads\.box_predictor\.det\.(weight|bias)$", r"head.wsddn_det.\1"),
    (r"^roi_heads\.box_refinery_(\d+)\.(cls_score|bbox_pred)\.(weight|bias)$", r"head.refinements.\1.\2.\3"),
    (r"^proposal_generator\.rpn_head\.(conv|objectness_logits|anchor_deltas)\.(weight|bias)$", r"rpn.\1.\2"),
]


def convert_state_dict(official: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Renames official weights to ours; returns (state dict, names that were skipped)."""
    state, skipped = {}, []
    for name, value in official.items():
        for pattern, repl in _RULES:
            if re.match(pattern, name):
                state[re.sub(pattern, repl, name)] = value
                break
        else:
            skipped.append(name)
    # detectron2's FrozenBatchNorm2d has no num_batches_tracked; torch's BatchNorm2d wants one
    for name in list(state):
        if name.endswith(".norm.running_var"):
            state.setdefault(
                name.replace("running_var", "num_batches_tracked"), torch.tensor(0, dtype=torch.long)
            )
    return state, skipped


OFFICIAL_ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5)
"""``MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS`` of every official HUWSOD config (``[[1.0, 2.0, 0.5]]``)."""

_RPN_PER_ANCHOR = {"rpn.objectness_logits": 1, "rpn.anchor_deltas": 4}


def anchor_permutation(sizes_per_cell: int, ours: list[float], theirs: list[float]) -> list[int]:
    """``perm[a]`` = the index, in ``theirs``' order, of our anchor ``a`` (size-major, as detectron2)."""
    if sorted(ours) != sorted(theirs) or len(set(ours)) != len(ours):
        raise ValueError(
            f"rpn.aspect_ratios {list(ours)} are not a permutation of the checkpoint's {list(theirs)}; "
            "set rpn.aspect_ratios to the checkpoint's ratios"
        )
    r = len(ours)
    return [s * r + list(theirs).index(ratio) for s in range(sizes_per_cell) for ratio in ours]


def permute_rpn_channels(state: dict[str, torch.Tensor], perm: list[int]) -> dict[str, torch.Tensor]:
    """The RPN objectness / delta conv weights and biases with their anchor channels reordered by ``perm``."""
    out = dict(state)
    index = torch.tensor(perm)
    for prefix, per in _RPN_PER_ANCHOR.items():
        for kind in ("weight", "bias"):
            name = f"{prefix}.{kind}"
            if name not in state:
                continue
            value = state[name]
            if value.shape[0] != len(perm) * per:
                raise ValueError(
                    f"{name} has {value.shape[0]} output channels, expected {len(perm)} anchors x {per}"
                )
            grouped = value.reshape(len(perm), per, *value.shape[1:])
            out[name] = grouped.index_select(0, index).reshape(value.shape)
    return out


def load_detector(model: torch.nn.Module, path: str | Path) -> None:
    """Loads the ``detector`` of a :func:`convert_file` output into a :class:`~paperzoo_huwsod.modeling_huwsod.HUWSOD`.

    The RPN channels are permuted from the file's anchor order to ``model.cfg.rpn.aspect_ratios``. Every
    tensor of the model must be in the file except the training-only autoencoder (``ae.*``); a tensor the
    model does not have, or a missing one, is an error naming it.
    """
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "detector" not in data:
        raise ValueError(
            f"{path} holds no detector (convert a trained model_final.pth; a backbone-only file loads with "
            "train.load_backbone)"
        )
    state = dict(data["detector"])
    cfg = model.cfg  # type: ignore[attr-defined]
    if getattr(model, "rpn", None) is not None:
        theirs = list(data.get("rpn_aspect_ratios", OFFICIAL_ASPECT_RATIOS))
        sizes = len(cfg.rpn.anchor_sizes[0])
        state = permute_rpn_channels(state, anchor_permutation(sizes, list(cfg.rpn.aspect_ratios), theirs))
    else:
        state = {k: v for k, v in state.items() if not k.startswith("rpn.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("ae.")]
    if missing or unexpected:
        raise ValueError(
            f"detector weights {path} do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def convert_file(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Converts an official file and saves ``{"backbone": ..., "detector": ...}`` for :func:`train.load_backbone`
    (``backbone``) and :func:`load_detector` (``detector``, when the file has heads). Returns a summary."""
    state, skipped = convert_state_dict(read_official(src))
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise ValueError(f"{src} has no backbone weights (stem.*, res2..res5.* or backbone.*)")
    out: dict[str, Any] = {"backbone": backbone}
    heads = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    if heads:
        out["detector"] = state
        out["rpn_aspect_ratios"] = list(OFFICIAL_ASPECT_RATIOS)  # channel order of rpn.* (official)
    torch.save(out, dst)
    return {"backbone_tensors": len(backbone), "head_tensors": len(heads), "skipped": skipped}
