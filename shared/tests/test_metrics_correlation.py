"""SRCC/KRCC/PLCC against scipy.stats (the independent reference) and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from paperzoo_shared.metrics import fit_logistic4, krcc, plcc, srcc, summarize_splits


def test_hand_computed_tiny_cases():
    # ranks [1,2,3,4] vs [1,3,2,4]: sum d^2 = 2, rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert srcc([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-12)
    # one discordant pair out of 6: tau = (5 - 1) / 6
    assert krcc([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(4 / 6, abs=1e-12)
    # tau-b with one tie on each side: S = 4, n0 = 6, (4) / sqrt((6-1)(6-1)) = 0.8
    assert krcc([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8, abs=1e-12)
    # x = [1,2,3], y = [2,4,7]: dx = [-1,0,1], dy = [-7/3,-1/3,8/3]; r = 5 / sqrt(2 * 114/9) = 15/sqrt(228)
    assert plcc([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228), abs=1e-12)
    # ties share the mean rank: [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4]
    r = np.array([1, 2.5, 2.5, 4]) - 2.5
    q = np.array([1, 2, 3, 4]) - 2.5
    assert srcc([1, 2, 2, 3], [5, 6, 7, 8]) == pytest.approx(r @ q / math.sqrt((r @ r) * (q @ q)), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    n = 40
    x = rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n)
    # integer-valued copies give many ties (MOS-like scores)
    xi, yi = np.round(x * 2), np.round(y * 2)
    for a, b in ((x, y), (xi, yi), (xi, y)):
        assert srcc(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
        assert krcc(a, b) == pytest.approx(stats.kendalltau(a, b)[0], abs=1e-12)
        assert plcc(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)


def test_srcc_and_krcc_invariant_under_monotone_transforms():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.1, 3, 50)
    y = x + rng.normal(0, 0.5, 50)
    for transform in (np.exp, np.log, lambda v: v**3, lambda v: 10 * v - 4):
        assert srcc(transform(x), y) == pytest.approx(srcc(x, y), abs=1e-12)
        assert krcc(transform(x), y) == pytest.approx(krcc(x, y), abs=1e-12)
    assert plcc(np.exp(x), y) != pytest.approx(plcc(x, y), abs=1e-3)  # PLCC is not rank-based


def logistic(x, b1, b2, b3, b4):
    return (b1 - b2) / (1 + np.exp(-(x - b3) / b4)) + b2


def test_logistic_fit_recovers_known_parameters():
    x = np.linspace(0, 1, 60)
    truth = (5.0, 1.0, 0.45, 0.08)
    params, fitted = fit_logistic4(x, logistic(x, *truth))
    np.testing.assert_allclose(params, truth, rtol=1e-5)
    np.testing.assert_allclose(fitted, logistic(x, *truth), atol=1e-8)


def test_logistic_plcc_at_least_raw_on_monotone_nonlinear_data():
    rng = np.random.default_rng(7)
    x = rng.uniform(-3, 3, 80)
    y = 1 / (1 + np.exp(-2.5 * x)) * 4 + 1 + rng.normal(0, 0.1, 80)  # saturating MOS curve
    raw = plcc(x, y)
    fitted = plcc(x, y, fit="logistic4")
    assert fitted >= raw
    assert fitted - raw > 0.02  # the nonlinearity costs the raw PLCC visibly
    _, yhat = fit_logistic4(x, y)
    assert fitted == pytest.approx(stats.pearsonr(yhat, y)[0], abs=1e-12)
    assert srcc(x, y) == pytest.approx(srcc(yhat, y), abs=1e-12)  # the fitted curve is monotone here


def test_summarize_splits_hand_computed():
    s = summarize_splits([0.9, 0.7, 0.8])
    assert s["median"] == pytest.approx(0.8)
    assert s["mean"] == pytest.approx(0.8)
    assert s["std"] == pytest.approx(0.1)  # sqrt((0.01 + 0.01 + 0) / (3 - 1))
    assert s["n"] == 3
    s = summarize_splits([0.9, 0.8, 0.85, 0.95])
    assert s["median"] == pytest.approx(0.875)  # mean of the two middle values
    assert s["std"] == pytest.approx(math.sqrt(0.0125 / 3))
    assert summarize_splits([0.5]) == {"median": 0.5, "mean": 0.5, "std": 0.0, "n": 1}


def test_constant_input_gives_nan():
    assert math.isnan(srcc([1, 1, 1], [1, 2, 3]))
    assert math.isnan(plcc([1, 2, 3], [2, 2, 2]))
    assert math.isnan(krcc([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="constant"):
        fit_logistic4([1, 1, 1, 1], [1, 2, 3, 4])


def test_validation_errors():
    with pytest.raises(ValueError, match="length: 3 vs 4"):
        srcc([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 3"):
        srcc([1, 2], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        plcc([1], [1])
    with pytest.raises(ValueError, match=r"pred has non-finite values at indices \[1\]"):
        plcc([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="target has non-finite"):
        krcc([1, 2, 3], [1, np.inf, 3])
    with pytest.raises(ValueError, match="1-D"):
        srcc(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        plcc([1, 2, 3], [1, 2, 3], fit="logistic4")
    with pytest.raises(ValueError, match="fit must be"):
        plcc([1, 2, 3], [1, 2, 3], fit="logistic5")
    with pytest.raises(ValueError, match="non-empty"):
        summarize_splits([])
    with pytest.raises(ValueError, match="non-finite"):
        summarize_splits([0.5, float("nan")])
