"""Summary statistics over seeds or splits, and confidence intervals for a difference between two methods.

Used to state results such as "DCKD beats Logits KD by 0.12 dB (95% CI [0.05, 0.19], 5 paired seeds)".
Standard deviations are sample standard deviations (ddof=1). Intervals are Student-t intervals: paired
(``d = a - b`` per seed, ``n - 1`` degrees of freedom) when the two runs share seeds, otherwise Welch's
unequal-variance interval with Welch-Satterthwaite degrees of freedom. p-values are two-sided and equal
those of ``scipy.stats.ttest_rel`` and ``scipy.stats.ttest_ind(equal_var=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

ArrayLike = Sequence[float] | np.ndarray


def _validated(values: ArrayLike, name: str, min_items: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_items:
        raise ValueError(f"{name} needs at least {min_items} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} has non-finite values at indices {np.flatnonzero(~np.isfinite(arr)).tolist()}"
        )
    return arr


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of ``values``; the std of a single value is 0.0."""
    arr = _validated(values, "values", min_items=1)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def _t_result(
    mean_difference: float, standard_error: float, df: float, confidence: float, n: int
) -> dict[str, float | int]:
    """t interval and two-sided p-value; a zero standard error gives a zero-width interval.

    With zero standard error the t statistic is +-inf (p = 0) for a non-zero difference and undefined
    (p = nan) for a zero one, which is what scipy's t-tests return.
    """
    half_width = scipy_stats.t.ppf(0.5 + confidence / 2.0, df) * standard_error
    if standard_error > 0:
        p_value = float(2.0 * scipy_stats.t.sf(abs(mean_difference) / standard_error, df))
    else:
        p_value = 0.0 if mean_difference != 0 else float("nan")
    return {
        "mean_difference": mean_difference,
        "low": mean_difference - half_width,
        "high": mean_difference + half_width,
        "p_value": p_value,
        "n": n,
        "df": float(df),
    }


def difference_ci(
    a: ArrayLike, b: ArrayLike, *, paired: bool, confidence: float = 0.95
) -> dict[str, float | int]:
    """Confidence interval and two-sided p-value for ``mean(a) - mean(b)``.

    ``paired=True``: ``a[i]`` and ``b[i]`` come from the same seed or split; the interval is
    ``mean(d) +- t_{1-alpha/2, n-1} * std(d, ddof=1) / sqrt(n)`` with ``d = a - b`` (``ttest_rel``).
    ``paired=False``: Welch's interval
    ``mean(a) - mean(b) +- t_{1-alpha/2, df} * sqrt(s_a^2/n_a + s_b^2/n_b)`` with Welch-Satterthwaite
    ``df`` (``ttest_ind(equal_var=False)``).

    Returns ``{"mean_difference", "low", "high", "p_value", "n", "df"}`` where ``n`` is the number of pairs
    (paired) or ``len(a) + len(b)`` (Welch). Each sample needs at least 2 values.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a_arr = _validated(a, "a", min_items=2)
    b_arr = _validated(b, "b", min_items=2)
    if paired:
        if a_arr.size != b_arr.size:
            raise ValueError(f"paired samples differ in length: {a_arr.size} vs {b_arr.size}")
        d = a_arr - b_arr
        n = d.size
        return _t_result(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n), n - 1, confidence, n)
    var_a = a_arr.var(ddof=1) / a_arr.size
    var_b = b_arr.var(ddof=1) / b_arr.size
    standard_error = math.sqrt(var_a + var_b)
    if standard_error > 0:
        df = (var_a + var_b) ** 2 / (var_a**2 / (a_arr.size - 1) + var_b**2 / (b_arr.size - 1))
    else:
        df = float(a_arr.size + b_arr.size - 2)  # any df gives the same zero-width interval
    mean_difference = float(a_arr.mean() - b_arr.mean())
    return _t_result(mean_difference, standard_error, df, confidence, a_arr.size + b_arr.size)
