"""Stage 03's estimates with intervals: input checks of feature arrays, and the percentile
bootstrap every realism metric's interval comes from.

Shared by ``feature_space.metrics`` (which re-exports :class:`MetricsError`, :func:`estimate`,
:func:`mean_estimate` and :data:`CI_LEVEL`). The bootstrap is :func:`scipy.stats.bootstrap` with
an explicit ``numpy.random.Generator`` (keyed by the caller through ``feature_space.streams``); nothing
here reads global random state. Reads and writes no files.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CI_LEVEL = 0.95


class MetricsError(ValueError):
    """Bad input for a realism metric; the message says what to do."""


def check_features(name: str, x: np.ndarray, min_rows: int = 2) -> np.ndarray:
    """One set of feature vectors, checked.

    Parameters
    ----------
    name : str
        What the set is ("real", "synthetic", ...), for messages.
    x : array-like, shape (n, d)
        Feature vectors, one row per patch.
    min_rows : int
        Rows needed at least.

    Returns
    -------
    float64 array, shape (n, d)

    Raises
    ------
    MetricsError
        When ``x`` is not 2-D, has fewer than ``min_rows`` rows or holds NaN or infinite values.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise MetricsError(f"{name}: expected a 2-D array (n_points, n_features), got shape {arr.shape}")
    if len(arr) < min_rows:
        raise MetricsError(f"{name}: needs at least {min_rows} points, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise MetricsError(f"{name}: contains NaN or infinite values")
    return arr


def check_pair(a: np.ndarray, b: np.ndarray, names=("real", "synthetic"), min_rows: int = 2):
    """Two sets of feature vectors of one feature space, checked (:func:`check_features` each).

    Parameters
    ----------
    a, b : array-like, shape (n_a, d) and (n_b, d)
    names : (str, str)
        What the sets are, for messages.
    min_rows : int

    Returns
    -------
    (float64 array, float64 array)

    Raises
    ------
    MetricsError
        As :func:`check_features`, or when the feature counts differ.
    """
    a = check_features(names[0], a, min_rows)
    b = check_features(names[1], b, min_rows)
    if a.shape[1] != b.shape[1]:
        raise MetricsError(
            f"{names[0]} has {a.shape[1]} features but {names[1]} has {b.shape[1]}: compute both in one feature space"
        )
    return a, b


def bootstrap(samples: tuple[np.ndarray, ...], statistic, n_bootstrap: int, rng: np.random.Generator,
              vectorized: bool = True):
    """``scipy.stats.bootstrap`` (percentile method) with each sample resampled independently
    (a stratified bootstrap); None when there is nothing to resample (0 resamples, or a sample
    of fewer than 2 points)."""
    if not n_bootstrap or min(len(s) for s in samples) < 2:
        return None
    return stats.bootstrap(samples, statistic, n_resamples=n_bootstrap, vectorized=vectorized, paired=False,
                           confidence_level=CI_LEVEL, method="percentile", rng=rng)


def estimate(value: float, boot: np.ndarray | None, n_bootstrap: int, level: float = CI_LEVEL) -> dict:
    """A metric value with its percentile bootstrap interval, as a JSON-ready dict.

    Parameters
    ----------
    value : float
        The metric on the data.
    boot : float array, shape (n_bootstrap,), or None
        The bootstrap distribution (None: no interval, ``ci_low``/``ci_high`` are NaN).
    n_bootstrap : int
        Resamples (recorded).
    level : float
        Confidence level of the two-sided percentile interval.

    Returns
    -------
    dict
        :class:`Estimate` keys ``value``, ``ci_low``, ``ci_high``, ``n_bootstrap``, ``ci_level``.
    """
    out = {"value": float(value)}
    if boot is not None and len(boot):
        alpha = (1.0 - level) / 2.0
        out["ci_low"] = float(np.quantile(boot, alpha))
        out["ci_high"] = float(np.quantile(boot, 1.0 - alpha))
    else:
        out["ci_low"] = out["ci_high"] = float("nan")
    out["n_bootstrap"] = int(n_bootstrap)
    out["ci_level"] = level
    return out


def mean_estimate(groups_of_values: list[np.ndarray], weights: list[float], n_bootstrap: int,
                  rng: np.random.Generator) -> dict:
    """A weighted combination of group means with its stratified percentile bootstrap interval.

    Each group is resampled with replacement on its own (``scipy.stats.bootstrap``,
    ``paired=False``), so the interval describes the sampling of the scored points.

    Parameters
    ----------
    groups_of_values : list of float arrays, shape (n_g,)
        Per-point quantities (e.g. 0/1 correct) of each group.
    weights : list of float
        Weight of each group's mean (sum 1 for a pooled mean).
    n_bootstrap : int
        Resamples (0: no interval).
    rng : numpy.random.Generator

    Returns
    -------
    dict
        As :func:`estimate`.
    """
    vals = tuple(np.asarray(v, dtype=np.float64) for v in groups_of_values)
    value = float(sum(w * v.mean() for w, v in zip(weights, vals, strict=True)))

    def statistic(*samples, axis=-1):
        return sum(w * np.mean(s, axis=axis) for w, s in zip(weights, samples, strict=True))

    res = bootstrap(vals, statistic, n_bootstrap, rng)
    out = estimate(value, None, n_bootstrap)
    if res is not None:
        out["ci_low"], out["ci_high"] = (float(c) for c in res.confidence_interval)
    return out
