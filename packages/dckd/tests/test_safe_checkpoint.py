"""The taming VQGAN .ckpt (a pytorch-lightning 1.x checkpoint) is read without unpickling foreign code."""

from __future__ import annotations

import sys
import types

import torch
from paperzoo_dckd.convert import load_weights, read_checkpoint
from paperzoo_dckd.models import build_model
from paperzoo_dckd.safe_pickle import Skipped, restricted_load

TINY = {
    "ch": 4,
    "norm_groups": 2,
    "n_embed": 8,
    "embed_dim": 4,
    "z_channels": 4,
    "attn_resolutions": [],
    "num_res_blocks": 1,
}


def _lightning_1x_checkpoint(tmp_path, marker):
    """A file shaped like taming's VQGAN_f16_n1024.ckpt: callbacks keyed by class, an OmegaConf-like
    hyper-parameter object, loop state, and an object whose unpickling would run code (it writes ``marker``)."""
    fake = {}
    for name in ("pytorch_lightning.callbacks.model_checkpoint", "omegaconf.dictconfig", "evil"):
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # the parent packages too, so pickle can import the names
            prefix = ".".join(parts[:depth])
            if prefix not in sys.modules:
                fake[prefix] = sys.modules[prefix] = types.ModuleType(prefix)

    class ModelCheckpoint:
        pass

    class DictConfig(dict):
        pass

    def touch(path):
        open(path, "w").close()

    class Payload:
        def __reduce__(self):
            return touch, (str(marker),)

    for module, obj in (
        ("pytorch_lightning.callbacks.model_checkpoint", ModelCheckpoint),
        ("omegaconf.dictconfig", DictConfig),
        ("evil", touch),
    ):
        obj.__module__, obj.__qualname__ = module, obj.__name__
        setattr(fake[module], obj.__name__, obj)
    Payload.__module__ = "evil"
    fake["evil"].Payload = Payload
    torch.manual_seed(0)
    encoder = build_model("vqgan_encoder", TINY)
    state = dict(encoder.state_dict())
    state["decoder.conv_in.weight"] = torch.randn(4, 4, 3, 3)
    state["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    checkpoint = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "1.0.8",
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "best_model_path": "x.ckpt"}},
        "hyper_parameters": DictConfig(embed_dim=256, n_embed=1024),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6}]}],
        "lr_schedulers": [],
        "payload": Payload(),
        "state_dict": state,
    }
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    for name in fake:
        del sys.modules[name]  # the reader must not need (or import) them
    return path, encoder


def test_lightning_1x_checkpoint_loads_with_the_allow_list(tmp_path):
    marker = tmp_path / "code-ran"
    path, reference = _lightning_1x_checkpoint(tmp_path, marker)
    content, skipped = restricted_load(path)
    assert not marker.exists()  # the payload's function was never called
    assert skipped == sorted(
        [
            "evil.touch",
            "omegaconf.dictconfig.DictConfig",
            "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        ]
    )
    [key] = content["callbacks"]
    assert issubclass(key, Skipped) and content["callbacks"][key]["best_model_score"] == torch.tensor(0.5)
    assert isinstance(content["payload"], Skipped) and content["global_step"] == 1234
    # through the package's reader (weights_only=True refuses the file, the allow-list reads it) into the encoder
    assert read_checkpoint(path)["state_dict"].keys() == content["state_dict"].keys()
    assert not marker.exists()
    encoder = build_model("vqgan_encoder", TINY)
    ignored = load_weights(encoder, path, "taming_vqgan", arch="vqgan")
    assert sorted(ignored) == ["decoder.conv_in.weight", "loss.discriminator.main.0.weight"]
    for name, value in reference.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value)


def test_plain_torch_load_would_have_run_the_payload(tmp_path):
    # the fixture is a real threat: an ordinary unpickling runs its code
    import pickle

    marker = tmp_path / "code-ran"
    path, _ = _lightning_1x_checkpoint(tmp_path, marker)
    try:
        torch.load(path, weights_only=True)
        raise AssertionError("weights_only=True accepted a file with foreign globals")
    except pickle.UnpicklingError:
        pass
    assert not marker.exists()
