"""The model: top-k selection, the frozen block, the ablation switches, parameter and MAC counts
(notes Sec. 5.2 items 12 and 14)."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
from paperzoo_csfiqa.configuration import EncoderConfig, LossConfig, ModelConfig, SFAConfig
from paperzoo_csfiqa.losses import csfiqa_loss
from paperzoo_csfiqa.modeling_csfiqa import (
    CSFIQA,
    TopKSelector,
    count_macs,
    llama_block_parameters,
    num_kept,
    parameter_breakdown,
    topk_tokens,
)


def tiny_config(block: str = "small", **sfa) -> ModelConfig:
    encoder = EncoderConfig(
        img_size=32,
        img_scale=[1.0, 1.0],
        patch_sizes=[8, 16],
        embed_dims=[16, 32],
        depth=[[1, 1, 0]],
        num_heads=[2, 2],
        mlp_ratio=[2.0, 2.0, 1.0],
        drop_path_rate=0.0,
    )
    sfa_config = SFAConfig(
        dim=32,
        top_k=None,
        keep_ratio=0.5,
        frozen_block=block,
        block_dim=16,
        block_heads=2,
        block_intermediate=24,
        **sfa,
    )
    return ModelConfig(encoder=encoder, sfa=sfa_config, embed_dim=8, head_hidden=16, nsm_grid=2)


def test_topk_tokens_keeps_exactly_the_k_best_in_order():
    tokens = torch.arange(12.0).view(1, 6, 2)
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.9, -1.0, 0.5]])
    kept, idx = topk_tokens(tokens, scores, 3)
    assert idx.tolist() == [[1, 3, 5]]  # the tie 0.9/0.9 keeps the lower index first
    assert torch.equal(kept, tokens[:, [1, 3, 5]])
    with pytest.raises(ValueError):
        topk_tokens(tokens, scores, 7)


def test_selector_gradient_reaches_only_kept_tokens_and_the_scorer():
    torch.manual_seed(0)
    selector = TopKSelector(4)
    tokens = torch.randn(2, 5, 4, requires_grad=True)
    kept, idx, scores = selector(tokens, 2)
    assert kept.shape == (2, 2, 4)
    # the kept tokens are the inputs scaled by sigmoid(their score)
    gate = torch.sigmoid(torch.gather(scores, 1, idx)).unsqueeze(-1)
    picked = torch.gather(tokens, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
    assert torch.allclose(kept, picked * gate)
    kept.sum().backward()
    for b in range(2):
        dropped = [i for i in range(5) if i not in idx[b].tolist()]
        # the scorer's LayerNorm is per token, so a dropped token has no path to the output
        assert tokens.grad[b, dropped].abs().sum() == 0
        assert tokens.grad[b, idx[b]].abs().sum() > 0
    assert selector.score.weight.grad.abs().sum() > 0


def test_num_kept():
    assert num_kept(SFAConfig(top_k=None, keep_ratio=0.5), 7) == 4
    assert num_kept(SFAConfig(top_k=196), 596) == 196
    assert num_kept(SFAConfig(top_k=1000), 596) == 596


@pytest.mark.parametrize("block", ["small", "llama"])
def test_frozen_block_is_unchanged_after_a_training_step(block):
    torch.manual_seed(0)
    model = CSFIQA(tiny_config(block))
    frozen = {k: v.clone() for k, v in model.focuser.block.state_dict().items()}
    trainable = {k: v.clone() for k, v in model.focuser.proj_in.state_dict().items()}
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05
    )
    model.train()
    assert not model.focuser.block.training  # the frozen block stays in eval mode
    images, mos = torch.randn(4, 3, 32, 32), torch.tensor([0.0, 0.1, 0.8, 0.95])
    loss = csfiqa_loss(model(images), mos, LossConfig()).total
    loss.backward()
    optimizer.step()
    for k, v in model.focuser.block.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert all(p.grad is None for p in model.focuser.block.parameters())
    assert any(not torch.equal(v, trainable[k]) for k, v in model.focuser.proj_in.state_dict().items())


def test_frozen_block_weights_come_from_the_block_seed():
    torch.manual_seed(1)
    a = CSFIQA(tiny_config("small"))
    torch.manual_seed(2)
    b = CSFIQA(tiny_config("small"))
    for (k, va), vb in zip(a.focuser.block.state_dict().items(), b.focuser.block.state_dict().values()):
        assert torch.equal(va, vb), k
    c = CSFIQA(
        dataclasses.replace(tiny_config("small"), sfa=dataclasses.replace(tiny_config().sfa, block_seed=7))
    )
    assert not torch.equal(c.focuser.block.attn.qkv.weight, a.focuser.block.attn.qkv.weight)


def test_identity_switch_and_no_sfa_ablation():
    model = CSFIQA(tiny_config("identity"))
    assert isinstance(model.focuser.block, torch.nn.Identity)
    assert parameter_breakdown(model)["frozen_block"] == 0
    out = model(torch.randn(2, 3, 32, 32))
    # 4x4 small-branch + 2x2 large-branch tokens = 20; keep_ratio 0.5 -> 10
    assert out.kept_indices.shape == (2, 10) and out.score.shape == (2,)
    assert out.regions[0].shape == (2, 4, 8) and out.embeddings[1].shape == (2, 8)
    no_sfa = CSFIQA(dataclasses.replace(tiny_config(), use_sfa=False))
    assert not hasattr(no_sfa, "selector") and no_sfa(torch.randn(2, 3, 32, 32)).kept_indices is None


def test_llama_block_parameter_count_by_hand():
    # q, k, v, o: 4 x 4096^2; SwiGLU gate/up/down: 3 x 4096 x 11008; two RMSNorm weights: 2 x 4096
    assert llama_block_parameters() == 67_108_864 + 135_266_304 + 8_192 == 202_383_360


def test_full_configuration_parameters_and_macs():
    """The full configuration (CrossViT-S/240 + LLaMA-7B-shaped block) against the paper's 233M / 45G."""
    with torch.device("meta"):
        model = CSFIQA(ModelConfig())
        reference = timm.create_model("crossvit_small_240", pretrained=False)
    parts = parameter_breakdown(model)
    assert parts["frozen_block"] == 202_383_360
    # our encoder = timm's crossvit_small_240 without its two 1000-way heads (192*1000+1000 + 384*1000+1000)
    assert parts["encoder"] == sum(p.numel() for p in reference.parameters()) - 578_000
    assert 0.99 * 233e6 < parts["total"] < 1.01 * 233e6
    assert parts["trainable"] == parts["total"] - parts["frozen_block"]
    macs = count_macs(model, torch.empty(1, 3, 240, 240, device="meta"))
    assert 0.95 * 45e9 < macs < 1.05 * 45e9


# ---------------------------------------------------------------------------------------------------------
# Tests added for `make mutate` survivors (README "Mutation testing"); every golden is counted by hand.
# ---------------------------------------------------------------------------------------------------------


def test_topk_tokens_accepts_k_from_one_to_all_tokens():
    tokens = torch.arange(12.0).view(1, 6, 2)
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, -1.0, 0.5]])
    assert topk_tokens(tokens, scores, 1)[1].tolist() == [[1]]
    assert topk_tokens(tokens, scores, 6)[1].tolist() == [[1, 3, 5, 2, 0, 4]]
    for k in (0, 7):
        with pytest.raises(ValueError, match=rf"^k must be in \[1, 6\], got {k}$"):
            topk_tokens(tokens, scores, k)


def test_topk_tokens_breaks_ties_by_index_on_long_sequences():
    # an unstable sort keeps ties in order only on short rows (on CPU up to a few dozen elements)
    scores = (torch.arange(128) % 3).float().unsqueeze(0)
    tokens = torch.arange(128.0).view(1, 128, 1)
    expected = [i for i in range(128) if i % 3 == 2] + [i for i in range(128) if i % 3 == 1]
    expected += [i for i in range(128) if i % 3 == 0]
    kept, order = topk_tokens(tokens, scores, 128)
    assert order.tolist() == [expected]
    assert kept.flatten().tolist() == [float(i) for i in expected]


def test_num_kept_rounds_a_small_ratio_up_to_one_token():
    assert num_kept(SFAConfig(top_k=None, keep_ratio=0.1), 7) == 1  # ceil(0.7)
    assert num_kept(SFAConfig(top_k=None, keep_ratio=1.0), 7) == 7


def test_encoder_passes_the_drop_path_rate_to_timm():
    from timm.layers import DropPath

    encoder = dataclasses.replace(tiny_config().encoder, depth=[[1, 1, 0], [1, 1, 0]], drop_path_rate=0.1)
    model = CSFIQA(dataclasses.replace(tiny_config(), encoder=encoder))
    # two stages: timm spreads the rate linearly over them, 0 then 0.1 (a rate of 0 is an Identity)
    rates = {round(m.drop_prob, 6) for m in model.encoder.modules() if isinstance(m, DropPath)}
    assert rates == {0.1}


def test_parameter_breakdown_counted_by_hand():
    # tiny_config: branch widths 16/32, token space 32, contrastive embedding 8, head hidden 16
    by_hand = {
        "token_proj": 16 * 32 + 32,  # only the 16-wide branch is projected; the 32-wide one is the identity
        "head": (96 * 16 + 16) + (16 + 1),  # [pooled; cls_small; cls_large] = 3 x 32 -> 16 -> 1
        "contrast_proj": (16 * 16 + 16 + 16 * 8 + 8) + (32 * 32 + 32 + 32 * 8 + 8),
        "selector": 2 * 32 + (32 + 1),  # LayerNorm(32) + Linear(32, 1)
    }
    # the small frozen block: timm ViT block of width 16, qkv with bias, MLP ratio 4
    small_block = 2 * 16 + (16 * 48 + 48) + (16 * 16 + 16) + 2 * 16 + (16 * 64 + 64) + (64 * 16 + 16)
    # LLaMA layer of width 16, SwiGLU 24: q, k, v, o without bias, gate/up/down, two RMSNorm weights
    llama_block = 4 * 16 * 16 + 3 * 16 * 24 + 2 * 16
    cases = {
        "small": (32 * 16 + 16 + 16 * 32 + 32, small_block),
        "llama": (32 * 16 + 16 + 16 * 32 + 32, llama_block),
        "identity": (2 * (32 * 32 + 32), 0),  # identity: the adapters stay at the token width 32
    }
    assert (small_block, llama_block) == (3280, 2208)
    for block, (adapters, frozen) in cases.items():
        parts = parameter_breakdown(CSFIQA(tiny_config(block)))
        assert set(parts) == {*by_hand, "encoder", "focuser_adapters", "frozen_block", "total", "trainable"}
        assert {k: parts[k] for k in by_hand} == by_hand, block
        assert (parts["focuser_adapters"], parts["frozen_block"]) == (adapters, frozen), block
        assert parts["total"] == parts["encoder"] + sum(by_hand.values()) + adapters + frozen
        assert parts["trainable"] == parts["total"] - frozen


def test_count_macs_of_a_linear_layer_by_hand():
    macs = count_macs(torch.nn.Linear(3, 4), torch.randn(2, 3))
    assert macs == 2 * 3 * 4 and isinstance(macs, int)


def test_information_focuser_is_a_residual_around_the_adapters():
    from paperzoo_csfiqa.modeling_csfiqa import InformationFocuser

    focuser = InformationFocuser(2, SFAConfig(dim=2, frozen_block="identity"))
    with torch.no_grad():
        focuser.proj_in.weight.copy_(torch.eye(2))
        focuser.proj_in.bias.zero_()
        focuser.proj_out.weight.copy_(2 * torch.eye(2))
        focuser.proj_out.bias.copy_(torch.tensor([1.0, 0.0]))
    x = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])
    # x + (2 x + [1, 0]) = 3 x + [1, 0]
    assert torch.allclose(focuser(x), torch.tensor([[[4.0, -6.0], [2.5, 9.0]]]))


def test_focuser_train_defaults_to_training_mode_but_keeps_the_block_in_eval():
    focuser = CSFIQA(tiny_config("small")).focuser.eval()
    focuser.train()
    assert focuser.training and focuser.proj_in.training and not focuser.block.training


def test_llama_block_attends_to_later_tokens():
    """No causal mask (reconstructed: the kept tokens have no order): the first output sees the last token."""
    from paperzoo_csfiqa.modeling_csfiqa import build_frozen_block

    block = build_frozen_block(tiny_config("llama").sfa)
    x = torch.randn(1, 5, 16)
    later = x.clone()
    later[0, 4] += 1.0
    with torch.no_grad():
        first, first_later = block(x)[0, 0], block(later)[0, 0]
    assert (first - first_later).abs().max() > 1e-3


class _NotATensor:
    pass


@pytest.mark.parametrize("block", ["small", "llama"])
def test_block_checkpoint_is_loaded_strictly(block, tmp_path):
    from paperzoo_csfiqa.modeling_csfiqa import FrozenLlamaBlock, build_frozen_block

    def sfa(**changes):
        return dataclasses.replace(tiny_config(block).sfa, **changes)

    source = build_frozen_block(sfa(block_seed=7))
    state = (source.layer if isinstance(source, FrozenLlamaBlock) else source).state_dict()
    torch.save(state, tmp_path / "block.pt")
    loaded = build_frozen_block(sfa(block_seed=1, block_checkpoint=tmp_path / "block.pt"))
    seeded = build_frozen_block(sfa(block_seed=1))
    assert loaded.state_dict().keys() == seeded.state_dict().keys()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert any(not torch.equal(seeded.state_dict()[k], v) for k, v in source.state_dict().items())
    assert all(not p.requires_grad for p in loaded.parameters())
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(RuntimeError, match="extra.weight"):
        build_frozen_block(sfa(block_checkpoint=tmp_path / "extra.pt"))
    # a checkpoint that needs arbitrary unpickling is refused (weights_only)
    import pickle

    torch.save({**state, "code": _NotATensor()}, tmp_path / "pickled.pt")
    with pytest.raises(pickle.UnpicklingError):
        build_frozen_block(sfa(block_checkpoint=tmp_path / "pickled.pt"))


def _model_with_fixed_encoder_output(branches):
    torch.manual_seed(0)
    model = CSFIQA(tiny_config("small")).eval()
    model.encoder.forward = lambda images: [b.clone() for b in branches]
    return model


def test_cls_tokens_feed_the_head_and_the_contrastive_embeddings():
    torch.manual_seed(1)
    branches = [torch.randn(2, 1 + 16, 16), torch.randn(2, 1 + 4, 32)]
    images = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        base = _model_with_fixed_encoder_output(branches)(images)
        cls_moved = [b.clone() for b in branches]
        for b in cls_moved:
            b[:, 0] += 1.0
        moved = _model_with_fixed_encoder_output(cls_moved)(images)
        patches_moved = [b.clone() for b in branches]
        for b in patches_moved:
            b[:, 1:] += 1.0
        patched = _model_with_fixed_encoder_output(patches_moved)(images)
    # the embeddings come from the CLS tokens only
    for branch in range(2):
        assert torch.equal(patched.embeddings[branch], base.embeddings[branch])
        assert not torch.allclose(moved.embeddings[branch], base.embeddings[branch])
    # the head reads both CLS tokens (besides the focused patch tokens)
    assert not torch.allclose(moved.score, base.score)
    assert base.token_scores.shape == (2, 20)


def test_regions_are_grid_cell_means():
    model = CSFIQA(tiny_config("small"))
    model.contrast_proj = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
    # the small branch has a 4 x 4 patch grid; token t = 4 r + c carries (r, c) in its first two channels
    tokens = torch.zeros(1, 16, 16)
    for t in range(16):
        tokens[0, t, 0], tokens[0, t, 1] = t // 4, t % 4
    regions = model.regions(tokens, 0)  # a 2 x 2 grid of 2 x 2 cells, row-major
    expected = torch.zeros(1, 4, 16)
    expected[0, :, :2] = torch.tensor([[0.5, 0.5], [0.5, 2.5], [2.5, 0.5], [2.5, 2.5]])
    assert torch.equal(regions, expected)


def test_mlp_heads_are_nonlinear():
    torch.manual_seed(0)
    model = CSFIQA(tiny_config("small"))
    for mlp, width in ((model.head, 96), (model.contrast_proj[0], 16)):
        x = torch.randn(4, width)
        zero = torch.zeros(1, width)
        with torch.no_grad():  # an affine map has f(x) + f(-x) = 2 f(0)
            gap = mlp(x) + mlp(-x) - 2 * mlp(zero)
        assert gap.abs().max() > 1e-4


def test_build_model_builds_the_configured_model():
    from paperzoo_csfiqa.modeling_csfiqa import build_model

    model = build_model(tiny_config("identity"))
    assert isinstance(model, CSFIQA) and isinstance(model.focuser.block, torch.nn.Identity)
