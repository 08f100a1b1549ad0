"""mean_std and difference_ci: hand arithmetic with scipy's t quantile, p-values against scipy's t-tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from paperzoo_shared.metrics import difference_ci, mean_std


def test_mean_std_hand_computed():
    # mean 2, squared deviations 1 + 0 + 1 = 2, sample variance 2 / (3 - 1) = 1
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.2]) == (4.2, 0.0)
    with pytest.raises(ValueError, match="at least 1"):
        mean_std([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_std([1.0, float("inf")])


def test_paired_interval_by_hand():
    # three seeds: differences d = [0.1, 0.3, 0.2]; mean 0.2; sample sd = sqrt((0.01 + 0.01 + 0) / 2) = 0.1
    a = [30.1, 30.5, 30.3]
    b = [30.0, 30.2, 30.1]
    t_quantile = stats.t.ppf(0.975, 2)  # 4.302652...
    half_width = t_quantile * 0.1 / math.sqrt(3)
    result = difference_ci(a, b, paired=True)
    assert result["mean_difference"] == pytest.approx(0.2, abs=1e-12)
    assert result["low"] == pytest.approx(0.2 - half_width, abs=1e-12)
    assert result["high"] == pytest.approx(0.2 + half_width, abs=1e-12)
    assert (result["n"], result["df"]) == (3, 2.0)
    # t = 0.2 / (0.1 / sqrt(3)) = 2 sqrt(3); two-sided p from the t(2) survival function
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), 2), rel=1e-9)
    # a 90% interval is narrower
    narrower = difference_ci(a, b, paired=True, confidence=0.9)
    assert narrower["high"] - narrower["low"] == pytest.approx(2 * stats.t.ppf(0.95, 2) * 0.1 / math.sqrt(3))


@pytest.mark.parametrize("seed", range(3))
def test_p_values_agree_with_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(32.0, 0.1, 5)
    b = a - 0.05 + rng.normal(0, 0.05, 5)
    paired = difference_ci(a, b, paired=True)
    assert paired["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    c = rng.normal(31.9, 0.3, 7)
    welch = difference_ci(a, c, paired=False)
    reference = stats.ttest_ind(a, c, equal_var=False)
    assert welch["p_value"] == pytest.approx(reference.pvalue, rel=1e-9)
    assert welch["df"] == pytest.approx(reference.df, rel=1e-9)
    interval = reference.confidence_interval(0.95)
    assert (welch["low"], welch["high"]) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert welch["n"] == 12


def test_zero_variance_and_errors():
    same = difference_ci([1.0, 2.0], [0.5, 1.5], paired=True)  # d = [0.5, 0.5]
    assert (same["low"], same["high"], same["p_value"]) == (0.5, 0.5, 0.0)
    assert math.isnan(difference_ci([1.0, 2.0], [1.0, 2.0], paired=True)["p_value"])
    with pytest.raises(ValueError, match="differ in length"):
        difference_ci([1, 2, 3], [1, 2], paired=True)
    with pytest.raises(ValueError, match="b needs at least 2"):
        difference_ci([1, 2], [1], paired=False)
    with pytest.raises(ValueError, match="confidence"):
        difference_ci([1, 2], [1, 2], paired=True, confidence=95)
