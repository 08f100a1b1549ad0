"""Tables 6, 7 and Fig. 8a as presets: paper/tables.yaml entries whose rows point at one full config per setting
(RCAN x2 DCKD with one key changed); they load, resolve through --table/--set variant and build (no training)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from paperzoo_dckd.configuration import ExperimentConfig, fingerprint_dict
from paperzoo_dckd.modeling_dckd import Distiller
from paperzoo_dckd.models import build_model
from paperzoo_dckd.reproduce import ABLATION_TABLES, _paper_row, config_path, table_of_variant

from paperzoo_shared.config import ConfigError, load_config
from paperzoo_shared.registry import get_paper
from paperzoo_shared.repro import ReproRequest, load_tables

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# what each setting changes in the rcan_x2 DCKD configuration (the paper's Tables 6-7 and Fig. 8a)
EXPECTED = {
    "rcan_x2_table6_noise": {},
    "rcan_x2_table6_blur": {"degradation.gaussian_noise_prob": 0.0, "degradation.gaussian_blur_prob": 1.0},
    "rcan_x2_table6_resize": {"degradation.gaussian_noise_prob": 0.0, "degradation.resize_prob": 1.0},
    "rcan_x2_table6_mix": {"degradation.gaussian_blur_prob": 1.0, "degradation.resize_prob": 1.0},
    "rcan_x2_table7_default": {},
    "rcan_x2_table7_dcl001": {"lambda_dcl": 0.01},
    "rcan_x2_table7_dcl1": {"lambda_dcl": 1.0},
    "rcan_x2_table7_ce1e4": {"lambda_ce": 1e-4},
    "rcan_x2_table7_ce1e2": {"lambda_ce": 1e-2},
    "rcan_x2_fig8a_n5": {},
    "rcan_x2_fig8a_n3": {"num_negatives": 3},
    "rcan_x2_fig8a_n4": {"num_negatives": 4},
    "rcan_x2_fig8a_n6": {"num_negatives": 6},
    "rcan_x2_fig8a_n7": {"num_negatives": 7},
}
TINY_ENCODER = dict(
    ch=4, num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=8, n_embed=16, norm_groups=2
)
PAPER_SETS = {"table6": {"set14", "urban100"}, "table7": {"urban100"}, "fig8a": {"urban100"}}


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("table_id", ["table6", "table7", "fig8a"])
def test_ablation_tables_load_resolve_and_build(table_id, tmp_path):
    paper = get_paper("dckd")
    table = load_tables(paper.data_root() / "paper" / "tables.yaml").table(table_id)
    assert table.presets == ("full",) and table.seeds["full"] == [0]
    variants = ABLATION_TABLES[table_id]
    assert {row.config for row in table.rows} == {f"configs/full/{v}.yaml" for v in variants}
    assert all(row.status == "pending" for row in table.rows)

    def request(overrides=()):
        return ReproRequest(paper, table, "full", [0], tmp_path, CONFIGS, list(overrides))

    assert config_path(request()) == CONFIGS / "full" / f"{variants[0]}.yaml"  # the paper's default setting
    with pytest.raises(ConfigError, match="reproduces table2"):
        config_path(request(["variant=rcan_x2"]))
    rcan = load_config(ExperimentConfig, CONFIGS / "full" / "rcan_x2.yaml")
    base = _flat(fingerprint_dict(rcan.dckd))
    # the networks are rcan_x2's (built at full size in test_config); here small stand-ins with the same
    # interface build the distiller of every setting and draw its negatives
    torch.manual_seed(0)
    student = build_model("rcan", {"num_feat": 16, "num_group": 1, "num_block": 1, "upscale": 2})
    teacher = build_model("rcan", {"num_feat": 16, "num_group": 2, "num_block": 1, "upscale": 2})
    encoder = build_model("vqgan_encoder", TINY_ENCODER)
    for variant in variants:
        path = config_path(request([f"variant={variant}"]))
        assert path == CONFIGS / "full" / f"{variant}.yaml" and table_of_variant(variant) == table_id
        config = load_config(ExperimentConfig, path)
        assert config.variant == variant and config.methods == ["dckd"]
        for key in ("data", "teacher", "student", "encoder", "train"):
            assert getattr(config, key) == getattr(rcan, key), key
        changed = {k: v for k, v in _flat(fingerprint_dict(config.dckd)).items() if base.get(k) != v}
        assert changed == EXPECTED[variant]
        # the rows of this setting are the ones its run fills in
        rows = {row.id for row in table.rows if row.config == f"configs/full/{variant}.yaml"}
        found = {_paper_row(config, request(), "dckd", name) for name in config.data.test_sets}
        assert rows == {f"{variant}_{name}_dckd" for name in PAPER_SETS[table_id]} == found - {None}
        distiller = Distiller(student, teacher, encoder, "dckd", replace(config.dckd), seed=0)
        lq = torch.rand(1, 3, 8, 8)
        negatives = distiller.degraded_inputs(lq)
        assert negatives.shape[0] == config.dckd.num_negatives and torch.equal(negatives[0], lq)


def test_degradation_settings_make_the_intended_negatives():
    """Noise changes a constant image; blur and resize alone keep it (they only average neighbours)."""
    torch.manual_seed(0)
    net = build_model("rcan", {"num_feat": 16, "num_group": 1, "num_block": 1, "upscale": 2})
    flat = torch.full((1, 3, 12, 12), 0.5)
    for variant, keeps_constant in [
        ("rcan_x2_table6_noise", False),
        ("rcan_x2_table6_blur", True),
        ("rcan_x2_table6_resize", True),
        ("rcan_x2_table6_mix", False),
    ]:
        config = load_config(ExperimentConfig, CONFIGS / "full" / f"{variant}.yaml")
        distiller = Distiller(
            net, net, build_model("vqgan_encoder", TINY_ENCODER), "dckd", config.dckd, seed=0
        )
        degraded = distiller.degraded_inputs(flat)[1:]
        assert torch.allclose(degraded, flat, atol=1e-5) == keeps_constant, variant
