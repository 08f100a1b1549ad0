"""The reproduction's comparison sentences (mini-long's pre-registered ladder), against hand-computed values."""

from paperzoo_huwsod.reproduce import _ci_sentence, _fraction_sentence

ROWS = {
    "huwsod": {0: {"map07": 3.0}, 1: {"map07": 5.0}, 2: {"map07": 1.0}},
    "oicr_reg_mist_consistency_ema": {0: {"map07": 10.0}, 1: {"map07": 10.0}, 2: {"map07": 0.0}},
    "oicr_reg_mist_consistency": {0: {"map07": 8.0}, 1: {"map07": 9.0}},
}


def test_fraction_is_ratio_of_seed_means_with_per_seed_ratios():
    # means over seeds 0-2: 9 / 3 = 3.00 and 20 / 3 = 6.67; ratio 0.45; per seed 0.30, 0.50, n/a (0 mAP)
    sentence = _fraction_sentence(ROWS, "huwsod", "oicr_reg_mist_consistency_ema", "map07")
    assert sentence.endswith(": 0.45 (mean 3.00 / 6.67 over 3 seeds; per seed 0.30, 0.50, n/a)")
    assert sentence.startswith(
        "HUWSOD-lite (AE + RPN, no offline proposals) as a fraction of + consistency + EMA"
    )


def test_fraction_absent_without_a_row_or_with_zero_reference():
    assert _fraction_sentence(ROWS, "huwsod", "oicr", "map07") is None
    zero = {"huwsod": {0: {"map07": 1.0}}, "oicr": {0: {"map07": 0.0}}}
    assert _fraction_sentence(zero, "huwsod", "oicr", "map07") is None


def test_ladder_ci_paired_over_common_seeds():
    # seeds 0, 1: d = 10 - 8, 10 - 9 = [2, 1]; mean 1.5, sd = sqrt(0.5), se = 0.5, t_{0.975, 1} = 12.7062
    # -> 1.5 -+ 6.353 = [-4.85, +7.85]
    sentence = _ci_sentence(ROWS, "oicr_reg_mist_consistency_ema", "oicr_reg_mist_consistency", "map07")
    assert sentence == (
        "+ consistency + EMA minus + weak/strong consistency, map07: +1.50 "
        "(95% CI [-4.85, +7.85], paired over 2 seeds)"
    )
