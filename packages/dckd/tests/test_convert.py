"""Official checkpoints -> ours, and strict loading that names the file and the keys."""

from __future__ import annotations

import pytest
import torch
from paperzoo_dckd.convert import CheckpointError, detect_format, load_weights, save_weights
from paperzoo_dckd.models import build_model

SWIN = {"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "window_size": 4, "upscale": 2}


def _official_rcan_state(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Writes our RCAN weights in the EDSR-PyTorch layout, following DUKD's conversion table key by key."""
    groups = 1 + max(int(k.split(".")[1]) for k in ours if k.startswith("body."))
    blocks = 1 + max(int(k.split(".")[3]) for k in ours if ".residual_group." in k)
    official = {"sub_mean.weight": torch.eye(3).view(3, 3, 1, 1), "add_mean.bias": torch.zeros(3)}
    for attr in ("weight", "bias"):
        official[f"head.0.{attr}"] = ours[f"conv_first.{attr}"]
        official[f"body.{groups}.{attr}"] = ours[f"conv_after_body.{attr}"]
        official[f"tail.0.0.{attr}"] = ours[f"upsample.0.{attr}"]
        official[f"tail.1.{attr}"] = ours[f"conv_last.{attr}"]
        for g in range(groups):
            official[f"body.{g}.body.{blocks}.{attr}"] = ours[f"body.{g}.conv.{attr}"]
            for b in range(blocks):
                prefix = f"body.{g}.residual_group.{b}.rcab"
                official[f"body.{g}.body.{b}.body.0.{attr}"] = ours[f"{prefix}.0.{attr}"]
                official[f"body.{g}.body.{b}.body.2.{attr}"] = ours[f"{prefix}.2.{attr}"]
                official[f"body.{g}.body.{b}.body.3.conv_du.0.{attr}"] = ours[
                    f"{prefix}.3.attention.1.{attr}"
                ]
                official[f"body.{g}.body.{b}.body.3.conv_du.2.{attr}"] = ours[
                    f"{prefix}.3.attention.3.{attr}"
                ]
    return official


def test_official_rcan_checkpoint_loads_and_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    source = build_model(
        "rcan", {"num_feat": 16, "num_group": 2, "num_block": 2, "squeeze_factor": 4, "upscale": 2}
    )
    path = tmp_path / "RCAN_BIX2.pt"
    torch.save(_official_rcan_state(source.state_dict()), path)
    target = build_model(
        "rcan", {"num_feat": 16, "num_group": 2, "num_block": 2, "squeeze_factor": 4, "upscale": 2}
    )
    load_weights(target, path)  # format detected from the keys
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_official_swinir_checkpoint_with_buffers_and_params_ema(tmp_path):
    torch.manual_seed(0)
    source = build_model("swinir", SWIN)
    state = dict(source.state_dict())
    # official files also store these buffers (recomputed here)
    state["layers.0.residual_group.blocks.0.attn.relative_position_index"] = torch.zeros(
        16, 16, dtype=torch.long
    )
    state["layers.0.residual_group.blocks.1.attn_mask"] = torch.zeros(4, 16, 16)
    path = tmp_path / "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2.pth"
    torch.save({"params_ema": state, "params": {k: v + 1 for k, v in state.items()}}, path)
    assert detect_format(state) == "official_swinir"
    target = build_model("swinir", SWIN)
    load_weights(target, path)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(source.eval()(x), target.eval()(x))


def test_wrong_architecture_names_file_and_keys(tmp_path):
    path = save_weights(
        build_model("edsr", {"num_feat": 8, "num_block": 2, "upscale": 2}), tmp_path / "edsr.pt"
    )
    deeper = build_model("edsr", {"num_feat": 8, "num_block": 3, "upscale": 2})
    with pytest.raises(CheckpointError) as info:
        load_weights(deeper, path, arch="student (edsr)")
    message = str(info.value)
    assert str(path) in message and "missing keys" in message and "body.2.conv1.weight" in message
    wider = build_model("edsr", {"num_feat": 16, "num_block": 2, "upscale": 2})
    with pytest.raises(
        CheckpointError, match=r"15 shape mismatches: body.0.conv1.bias: checkpoint \(8,\) vs model \(16,\)"
    ):
        load_weights(wider, path)
    other = build_model(
        "rcan", {"num_feat": 8, "num_group": 1, "num_block": 1, "squeeze_factor": 4, "upscale": 2}
    )
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_weights(other, path)


def test_taming_vqgan_checkpoint_ignores_decoder_and_requires_every_encoder_key(tmp_path):
    options = {
        "ch": 8,
        "num_res_blocks": 1,
        "attn_resolutions": [2],
        "resolution": 32,
        "z_channels": 8,
        "embed_dim": 8,
        "n_embed": 16,
        "norm_groups": 4,
    }
    source = build_model("vqgan_encoder", options)
    state = {
        **source.state_dict(),
        "decoder.conv_in.weight": torch.zeros(1),
        "post_quant_conv.weight": torch.zeros(1),
        "loss.discriminator.main.0.weight": torch.zeros(1),
    }
    path = tmp_path / "VQGAN_f16_n1024.ckpt"
    torch.save({"state_dict": state}, path)
    target = build_model("vqgan_encoder", options)
    ignored = load_weights(target, path)
    assert ignored == ["decoder.conv_in.weight", "loss.discriminator.main.0.weight", "post_quant_conv.weight"]
    assert torch.equal(target.quantize.embedding.weight, source.quantize.embedding.weight)
    del state["encoder.down.4.attn.0.q.weight"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"missing keys: encoder\.down\.4\.attn\.0\.q\.weight"):
        load_weights(build_model("vqgan_encoder", options), path)


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_weights(build_model("edsr", {"num_feat": 8, "num_block": 1}), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(build_model("edsr", {"num_feat": 8, "num_block": 1}), tmp_path / "missing.pth")


def _official_rcan_keys(groups: int, blocks: int, feats: int, reduction: int, scale: int) -> dict:
    """Names and shapes of the official RCAN's state dict, written from yulunzhang/RCAN's model/rcan.py and
    model/common.py (MeanShift = 1x1 conv 3->3; head = [conv]; body = G ResidualGroups (each B RCABs =
    [conv, ReLU, conv, CALayer(conv_du = [conv 1x1 F->F/r, ReLU, conv 1x1 F/r->F, Sigmoid])] + conv) + conv;
    tail = [Upsampler (per factor 2: conv F->4F, PixelShuffle; x3: conv F->9F), conv F->3]), not from ours."""
    keys = {}

    def conv(name, out, inp, k):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (out, inp, k, k), (out,)

    conv("sub_mean", 3, 3, 1)
    conv("add_mean", 3, 3, 1)
    conv("head.0", feats, 3, 3)
    for g in range(groups):
        for b in range(blocks):
            conv(f"body.{g}.body.{b}.body.0", feats, feats, 3)
            conv(f"body.{g}.body.{b}.body.2", feats, feats, 3)
            conv(f"body.{g}.body.{b}.body.3.conv_du.0", feats // reduction, feats, 1)
            conv(f"body.{g}.body.{b}.body.3.conv_du.2", feats, feats // reduction, 1)
        conv(f"body.{g}.body.{blocks}", feats, feats, 3)
    conv(f"body.{groups}", feats, feats, 3)
    if scale == 3:
        conv("tail.0.0", 9 * feats, feats, 3)
    else:
        for i in range(scale.bit_length() - 1):
            conv(f"tail.0.{2 * i}", 4 * feats, feats, 3)
    conv("tail.1", 3, feats, 3)
    return keys


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rcan_converter_against_the_official_key_list(scale):
    from paperzoo_dckd.convert import convert_official_rcan, load_state_strict

    options = {"num_feat": 16, "num_group": 2, "num_block": 3, "squeeze_factor": 4, "upscale": scale}
    expected = _official_rcan_keys(2, 3, 16, 4, scale)
    torch.manual_seed(0)
    official = {name: torch.randn(shape) for name, shape in expected.items()}
    ours = build_model("rcan", options)
    converted = convert_official_rcan(official)
    # every official tensor but the fixed mean shifts has exactly one place in ours, with its shape
    assert len(converted) == len(expected) - 4
    assert set(converted) == set(ours.state_dict())
    load_state_strict(ours, converted, "official RCAN")
    assert sorted(tuple(v.shape) for v in ours.state_dict().values()) == sorted(
        tuple(official[k].shape) for k in expected if not k.startswith(("sub_mean", "add_mean"))
    )
    # and each value landed where the official name says (checked for one key per kind)
    state = ours.state_dict()
    assert torch.equal(state["conv_first.weight"], official["head.0.weight"])
    assert torch.equal(state["conv_after_body.weight"], official["body.2.weight"])
    assert torch.equal(state["conv_last.weight"], official["tail.1.weight"])
