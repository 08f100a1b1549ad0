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
