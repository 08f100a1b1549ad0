"""Correlation metrics of image quality assessment: SRCC, KRCC, PLCC (raw or after a 4-parameter logistic).

Conventions follow IQA-PyTorch (pyiqa) ``calculate_srcc/krcc/plcc``, which call scipy.stats: SRCC is the
Pearson correlation of average ranks (ties share their mean rank), KRCC is Kendall's tau-b, PLCC is
Pearson's r. ``plcc(..., fit="logistic4")`` first maps the predictions through the VQEG 4-parameter
logistic fitted to the targets (:func:`fit_logistic4`), as pyiqa's ``fit_scale="logistic_4params"`` does.

The coefficients are computed here with numpy rather than by calling scipy.stats, so that the tests can use
scipy as an independent reference. A constant ``pred`` or ``target`` makes every coefficient undefined;
the functions then return ``nan`` (as scipy does) instead of raising, so an evaluation loop over an
untrained model does not crash.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import rankdata

ArrayLike = Sequence[float] | np.ndarray

# pyiqa uses maxfev=10000 for the logistic fit; ten times that costs nothing on IQA test-set sizes.
_LOGISTIC_MAXFEV = 100_000


def _validated_pair(pred: ArrayLike, target: ArrayLike, min_items: int) -> tuple[np.ndarray, np.ndarray]:
    pred_arr = np.asarray(pred, dtype=np.float64)
    target_arr = np.asarray(target, dtype=np.float64)
    if pred_arr.ndim != 1 or target_arr.ndim != 1:
        raise ValueError(f"pred and target must be 1-D, got shapes {pred_arr.shape} and {target_arr.shape}")
    if pred_arr.size != target_arr.size:
        raise ValueError(f"pred and target differ in length: {pred_arr.size} vs {target_arr.size}")
    if pred_arr.size < min_items:
        raise ValueError(f"need at least {min_items} items, got {pred_arr.size}")
    for name, arr in (("pred", pred_arr), ("target", target_arr)):
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr))
            raise ValueError(f"{name} has non-finite values at indices {bad[:10].tolist()}")
    return pred_arr, target_arr


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if denominator == 0.0:
        return float("nan")
    return float(np.clip(np.dot(dx, dy) / denominator, -1.0, 1.0))


def srcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman rank-order correlation (pyiqa ``calculate_srcc`` = ``scipy.stats.spearmanr``).

    Pearson correlation of the average ranks; needs at least 3 items (with 2 it is always +-1).
    """
    pred_arr, target_arr = _validated_pair(pred, target, min_items=3)
    return _pearson(rankdata(pred_arr), rankdata(target_arr))


def krcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall rank correlation, tau-b (pyiqa ``calculate_krcc`` = ``scipy.stats.kendalltau`` default).

    ``tau_b = (concordant - discordant) / sqrt((n0 - ties_pred) (n0 - ties_target))`` with
    ``n0 = n (n - 1) / 2``. O(n^2) time and O(n) memory: a fraction of a second for 10^4 items.
    """
    pred_arr, target_arr = _validated_pair(pred, target, min_items=2)
    n = pred_arr.size
    score = ties_pred = ties_target = 0
    for i in range(n - 1):
        sign_pred = np.sign(pred_arr[i + 1 :] - pred_arr[i])
        sign_target = np.sign(target_arr[i + 1 :] - target_arr[i])
        score += int(np.dot(sign_pred, sign_target))
        ties_pred += int(np.count_nonzero(sign_pred == 0))
        ties_target += int(np.count_nonzero(sign_target == 0))
    n_pairs = n * (n - 1) // 2
    denominator = math.sqrt((n_pairs - ties_pred) * (n_pairs - ties_target))
    if denominator == 0.0:
        return float("nan")
    return score / denominator


def _logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: ``(b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2``."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / b4)) + b2


def fit_logistic4(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Fit the VQEG 4-parameter logistic from ``pred`` to ``target`` (pyiqa ``fit_curve``).

    Initial parameters ``[max(target), min(target), mean(pred), std(pred) / 4]`` (population std), solved
    by ``scipy.optimize.curve_fit`` (Levenberg-Marquardt). Returns ``(params, fitted_pred)``.

    Raises:
        ValueError: fewer than 4 items, or a constant ``pred`` (the initial slope would be 0).
        RuntimeError: the fit did not converge. pyiqa's newest version silently falls back to the initial
            parameters in that case; here the failure is reported instead of a number that looks fitted.
    """
    pred_arr, target_arr = _validated_pair(pred, target, min_items=4)
    if np.ptp(pred_arr) == 0:
        raise ValueError("cannot fit a logistic to a constant pred")
    initial = [target_arr.max(), target_arr.min(), pred_arr.mean(), pred_arr.std() / 4.0]
    try:
        # exp() overflows harmlessly to inf for far-away trial parameters while the solver searches.
        with np.errstate(over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(_logistic4, pred_arr, target_arr, p0=initial, maxfev=_LOGISTIC_MAXFEV)
    except RuntimeError as error:
        raise RuntimeError(f"4-parameter logistic fit did not converge: {error}") from error
    with np.errstate(over="ignore"):
        fitted = _logistic4(pred_arr, *params)
    if not np.all(np.isfinite(fitted)):
        raise RuntimeError(f"4-parameter logistic fit produced non-finite values (params {params.tolist()})")
    return params, fitted


def plcc(pred: ArrayLike, target: ArrayLike, fit: Literal["none", "logistic4"] = "none") -> float:
    """Pearson linear correlation (pyiqa ``calculate_plcc``), raw or after :func:`fit_logistic4`.

    IQA-PyTorch's benchmark reports the raw value ("PLCC without any correction"); many papers report the
    logistic-fitted one. Say which.
    """
    pred_arr, target_arr = _validated_pair(pred, target, min_items=2)
    if fit == "logistic4":
        _, pred_arr = fit_logistic4(pred_arr, target_arr)
    elif fit != "none":
        raise ValueError(f"fit must be 'none' or 'logistic4', got {fit!r}")
    return _pearson(pred_arr, target_arr)


def summarize_splits(values: ArrayLike) -> dict[str, float | int]:
    """Median, mean and sample standard deviation (ddof=1) of one metric over random train/test splits.

    Blind-IQA papers report the median over 10 splits (pyiqa's ``train_nsplits.py`` writes mean and std).
    ``std`` is 0.0 for a single split. Returns ``{"median", "mean", "std", "n"}``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"values has non-finite entries at indices {np.flatnonzero(~np.isfinite(arr)).tolist()}"
        )
    return {
        "median": float(np.median(arr)),
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
    }
