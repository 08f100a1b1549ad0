"""Checkpoints: reading them safely, converting official layouts to ours, and loading with a strict key check.

Supported sources:

* ours (:func:`save_weights`) and Lightning ``.ckpt`` files of :class:`paperzoo_dckd.module.DistillationModule`
  (the student EMA is taken);
* official SwinIR / BasicSR SwinIR weights (``params_ema`` or ``params``; the buffers
  ``relative_position_index`` and ``attn_mask`` are recomputed here and dropped);
* official RCAN (EDSR-PyTorch layout, ``RCAN_BIX{2,3,4}.pt``: ``head``, ``body.{g}.body.{b}.body.{0,2,3}``,
  ``tail``) and BasicSR RCAN (as produced by DUKD's conversion script);
* official NAFNet (``NAFNet-GoPro-width32.pth``) and Restormer (``motion_deblurring.pth``, ``deraining.pth``)
  weights, ``{"params": ...}`` in the official parameter names, which ours follow (``intro``, ``encoders``,
  ``middle_blks``, ``ending`` / ``patch_embed``, ``encoder_level1``, ``latent``, ``refinement``, ``output``);
  a ``module.`` prefix left by DataParallel is dropped;
* taming-transformers VQGAN checkpoints (``state_dict`` with ``encoder.*``, ``quant_conv.*``,
  ``quantize.embedding.weight``; decoder and loss weights are ignored and listed).

Every load is strict: missing or unexpected keys, or shape mismatches, raise :class:`CheckpointError` naming
the file and the keys. (The released DCKD code loads the VQGAN with ``strict_load_vqgan: false``, so a wrong
file would silently leave the encoder random.)
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

SWINIR_BUFFERS = ("relative_position_index", "attn_mask")
LIGHTNING_EMA_PREFIX = "distiller.student_ema."
LIGHTNING_STUDENT_PREFIX = "distiller.student."


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match the architecture; the message names the file and keys."""


def read_checkpoint(path: str | Path) -> Any:
    """Loads a ``.pt``/``.pth``/``.ckpt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path in the config")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # a pytorch-lightning 1.x checkpoint (taming VQGAN) pickles callback classes and config objects:
        # read it with the allow-list unpickler, which keeps tensors and containers and runs nothing
        from paperzoo_dckd.safe_pickle import restricted_load

        try:
            content, _skipped = restricted_load(path)
        except Exception as second:
            raise CheckpointError(
                f"cannot read checkpoint {path}: {type(error).__name__}: {error}; the allow-list reader "
                f"failed too: {type(second).__name__}: {second}"
            ) from second
        return content
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from error


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(
    obj: Any, path: str | Path = "<memory>", param_key: str | None = None
) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: ``param_key`` if given, else ``params_ema``, ``params``,
    ``state_dict``, or the object itself; a Lightning checkpoint yields the student EMA."""
    if param_key is not None:
        if not isinstance(obj, Mapping) or param_key not in obj:
            keys = ", ".join(list(obj)[:10]) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"checkpoint {path} has no key {param_key!r}; top-level keys: {keys}")
        obj = obj[param_key]
    elif isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        raise CheckpointError(f"checkpoint {path} holds no tensor state dict (found {type(obj).__name__})")
    state = dict(obj)
    for prefix in (LIGHTNING_EMA_PREFIX, LIGHTNING_STUDENT_PREFIX):
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def convert_official_swinir(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drops the recomputed buffers (and a ``module.`` prefix left by DataParallel)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.rsplit(".", 1)[-1] in SWINIR_BUFFERS:
            continue
        out[key] = value
    return out


_RCAN_BLOCK = re.compile(r"^body\.(\d+)\.body\.(\d+)\.(.*)$")


def convert_official_rcan(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EDSR-PyTorch RCAN keys -> ours (BasicSR layout); ``sub_mean``/``add_mean`` (fixed) are dropped."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "conv_first.weight" in state:  # already BasicSR layout
        return dict(state)
    groups = sorted({int(k.split(".")[1]) for k in state if re.match(r"^body\.\d+\.", k)})
    if not groups:
        raise CheckpointError("not an RCAN checkpoint: no body.* keys")
    last_group_index = groups[-1]  # body.{G} is the conv after the body
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("sub_mean.", "add_mean.")):
            continue
        if key.startswith("head.0."):
            out["conv_first." + key[len("head.0.") :]] = value
        elif key.startswith(f"body.{last_group_index}."):
            out["conv_after_body." + key.split(".", 2)[2]] = value
        elif key.startswith("tail.0."):
            out["upsample." + key[len("tail.0.") :]] = value
        elif key.startswith("tail.1."):
            out["conv_last." + key[len("tail.1.") :]] = value
        else:
            match = _RCAN_BLOCK.match(key)
            if match is None:
                out[key] = value  # reported as unexpected by the strict load
                continue
            group, block, rest = match.groups()
            nested = re.match(r"^body\.(\d)\.(.*)$", rest)
            if nested is None:  # body.{g}.body.{B}.{weight,bias}: the group's last conv
                out[f"body.{group}.conv.{rest}"] = value
                continue
            index, tail = nested.groups()
            if index == "3":  # channel attention: conv_du.0 / conv_du.2 -> attention.1 / attention.3
                tail = tail.replace("conv_du.0.", "attention.1.").replace("conv_du.2.", "attention.3.")
            out[f"body.{group}.residual_group.{block}.rcab.{index}.{tail}"] = value
    return out


def convert_official_restoration(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official NAFNet / Restormer weights -> ours: our parameter names are the official ones, so only a
    ``module.`` prefix is dropped; the strict load then names any key that does not match."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_taming_vqgan(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keeps the encoder, quant_conv and codebook; returns them and the ignored keys (decoder, loss, ...)."""
    keep = ("encoder.", "quant_conv.", "quantize.embedding.weight")
    kept = {k: v for k, v in state.items() if k.startswith(keep)}
    ignored = sorted(k for k in state if not k.startswith(keep))
    return kept, ignored


def detect_format(state: Mapping[str, torch.Tensor]) -> str:
    keys = {k.removeprefix("module.") for k in state}  # DataParallel prefix
    if any(k.startswith("decoder.") or k.startswith("loss.") for k in keys) and "quant_conv.weight" in keys:
        return "taming_vqgan"
    if "head.0.weight" in keys and any(k.startswith("tail.") for k in keys):
        return "official_rcan"
    if "intro.weight" in keys and "ending.weight" in keys:
        return "official_nafnet"
    if "patch_embed.proj.weight" in keys and "output.weight" in keys:
        return "official_restormer"
    if any(k.endswith(SWINIR_BUFFERS) for k in keys):
        return "official_swinir"
    return "ours"


def load_state_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, arch: str = ""
) -> None:
    """``model.load_state_dict`` that names the file, the missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        what = f" for {arch}" if arch else ""

        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {show(mismatched)}")
        raise CheckpointError(
            f"checkpoint {path} does not match the architecture{what}: "
            + "; ".join(parts)
            + ". Check the model's arch/options (e.g. upscale, widths) and the checkpoint_format."
        )
    model.load_state_dict(dict(state), strict=True)


def load_weights(
    model: nn.Module,
    path: str | Path,
    checkpoint_format: str = "auto",
    arch: str = "",
    param_key: str | None = None,
) -> list[str]:
    """Reads ``path``, converts it to our layout and loads it strictly. Returns the keys ignored on purpose
    (a VQGAN's decoder and loss weights)."""
    state = extract_state_dict(read_checkpoint(path), path, param_key)
    fmt = detect_format(state) if checkpoint_format == "auto" else checkpoint_format
    ignored: list[str] = []
    if fmt == "official_swinir":
        state = convert_official_swinir(state)
    elif fmt == "official_rcan":
        state = convert_official_rcan(state)
    elif fmt in ("official_nafnet", "official_restormer"):
        state = convert_official_restoration(state)
    elif fmt == "taming_vqgan":
        state, ignored = convert_taming_vqgan(state)
    elif fmt != "ours":
        raise CheckpointError(f"unknown checkpoint_format {fmt!r} for {path}")
    load_state_strict(model, state, path, arch)
    return ignored


def save_weights(model: nn.Module, path: str | Path, **metadata: Any) -> Path:
    """Saves ``{"params": state_dict, "meta": metadata}`` (readable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"params": model.state_dict(), "meta": metadata}, tmp)
    tmp.replace(path)
    return path
