"""AUC statistics shared by the per-reader ROC analysis (:mod:`mammo_lib.roc.analysis`) and the
multi-reader analysis (:mod:`mammo_lib.roc.mrmc`): no file I/O, no plotting, numbers in, numbers out.

Conventions: ``scores`` are higher for "more likely positive"; ``truth`` marks the positive cases,
either as booleans (or exactly 0/1) or as the strings "real"/"synthetic" with "real" positive (see
:mod:`mammo_lib.rating_scale`). Scores must be finite and truth binary: anything else is a
``ValueError`` that says how many values are bad and where.

Methods and their sources
-------------------------
* AUC: the area under the empirical (trapezoidal) ROC curve, which equals the Mann-Whitney
  statistic  A = 1/(m n) sum_i sum_j psi(X_i, Y_j),  psi = 1 if X > Y, 1/2 if X = Y, 0 otherwise,
  X the m positive and Y the n negative scores (Bamber 1975; Hanley & McNeil 1982).
* Hanley & McNeil (1982) standard error:  SE^2 = [A(1-A) + (m-1)(Q1-A^2) + (n-1)(Q2-A^2)]/(m n),
  Q1 = A/(2-A), Q2 = 2A^2/(1+A)  (their eq. 2).
* DeLong, DeLong & Clarke-Pearson (1988) covariance from the structural components
  V10(X_i) = 1/n sum_j psi(X_i, Y_j) and V01(Y_j) = 1/m sum_i psi(X_i, Y_j):
  S = S10/m + S01/n, S10 and S01 the sample covariance matrices (ddof 1) of the components over
  the positive / negative cases. The components come in O(N log N) from midranks (Sun & Xu
  2014): V10_i = (Tz_i - Tx_i)/n, V01_j = 1 - (Tz_{m+j} - Ty_j)/m.
* Jackknife over cases, as in OR-DBM MRMC (Hillis, Obuchowski, Schartz & Berbaum 2005).
* Stratified case bootstrap by :func:`scipy.stats.bootstrap` (BCa, percentile when degenerate).
* Exact binomial test and Clopper-Pearson interval for accuracy.
* Binormal maximum-likelihood ROC fit to ordinal ratings (Dorfman & Alf 1969).
* Cohen's (1968) weighted kappa (:func:`sklearn.metrics.cohen_kappa_score`).

References
----------
Bamber D (1975) J Math Psychol 12:387-415.
Cohen J (1968) Psychol Bull 70:213-220.
DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845.
Dorfman DD, Alf E (1969) J Math Psychol 6:487-496.
Hanley JA, McNeil BJ (1982) Radiology 143:29-36.
Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS (2005) Stat Med 24:1579-1607.
Sun X, Xu W (2014) IEEE Signal Process Lett 21:1389-1393.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from mammo_lib.rating_scale import OPTIONS, POSITIVE_TRUTH, TRUTHS
from mammo_lib.rng import bootstrap_stream


# --------------------------------------------------------------------------- input checks
def _where(mask: np.ndarray, limit: int = 5) -> str:
    idx = np.flatnonzero(mask)
    more = f" and {idx.size - limit} more" if idx.size > limit else ""
    return f"{idx.size} value(s), at position(s) {idx[:limit].tolist()}{more}"


def as_binary_truth(truth: Sequence) -> np.ndarray:
    """Truth labels as a boolean array, True = positive ("real").

    Parameters
    ----------
    truth : array-like, shape (n,)
        Booleans, the numbers 0 and 1, or the strings "real" / "synthetic".

    Returns
    -------
    bool array, shape (n,)

    Raises
    ------
    ValueError
        If a label is a string other than "real"/"synthetic", or a number other than 0 and 1
        (NaN included); the message says how many and where.
    """
    truth = np.asarray(truth)
    if truth.dtype.kind in "OUS":
        bad = ~np.isin(truth.astype(str), TRUTHS)
        if bad.any():
            raise ValueError(f"truth must be one of {TRUTHS}: {_where(bad)} are not "
                             f"(e.g. {sorted(set(truth[bad].astype(str)))[:3]})")
        return truth.astype(str) == POSITIVE_TRUTH
    if truth.dtype.kind == "b":
        return truth
    bad = ~np.isin(truth, (0, 1))
    if bad.any():
        raise ValueError(f"numeric truth must be 0 or 1 (1 = {POSITIVE_TRUTH}): {_where(bad)} are not "
                         f"(e.g. {truth[bad][:3].tolist()})")
    return truth == 1


def as_scores(scores: Sequence | np.ndarray) -> np.ndarray:
    """Scores as a float array of shape (K, N), rejecting NaN and infinite values.

    Parameters
    ----------
    scores : array-like of float, shape (N,) or (K, N)

    Returns
    -------
    float array, shape (K, N)

    Raises
    ------
    ValueError
        If any score is NaN or infinite (the message says how many and where).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"scores must be finite numbers: {_where(bad.ravel())} (flat index) are NaN or "
                         "infinite; leave unrated cases out instead")
    return scores


# --------------------------------------------------------------------------- AUC and DeLong
def delong_components(scores: np.ndarray, truth: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong structural components by midranks (Sun & Xu 2014), O(N log N).

    Parameters
    ----------
    scores : float array, shape (N,) or (K, N)
        K readers/modalities scoring the same N cases; higher = more likely positive.
    truth : array-like, shape (N,)
        Positive-case labels (see :func:`as_binary_truth`).

    Returns
    -------
    auc : float array, shape (K,)
        Mann-Whitney AUCs (ties count half), in [0, 1].
    v10 : float array, shape (K, m)
        Components of the m positive cases.
    v01 : float array, shape (K, n)
        Components of the n negative cases.

    Raises
    ------
    ValueError
        If scores and truth differ in length, a class is empty, a score is not finite or truth
        is not binary.

    References
    ----------
    DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845; Sun & Xu (2014), IEEE Signal
    Processing Letters 21:1389-1393.
    """
    scores = as_scores(scores)
    is_pos = as_binary_truth(truth)
    if scores.shape[1] != is_pos.size:
        raise ValueError(f"{scores.shape[1]} scores but {is_pos.size} truth labels")
    x, y = scores[:, is_pos], scores[:, ~is_pos]
    m, n = x.shape[1], y.shape[1]
    if m == 0 or n == 0:
        raise ValueError(f"AUC needs both classes: {m} positive and {n} negative cases")
    tx = stats.rankdata(x, axis=1)
    ty = stats.rankdata(y, axis=1)
    tz = stats.rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return v10.mean(axis=1), v10, v01


def auc_mann_whitney(scores: Sequence[float], truth: Sequence) -> float:
    """Empirical (trapezoidal) AUC = Mann-Whitney U / (m n), ties counted half.

    Parameters
    ----------
    scores : float array, shape (N,)
    truth : array-like, shape (N,)

    Returns
    -------
    float
        The AUC, in [0, 1].

    Raises
    ------
    ValueError
        As :func:`delong_components`.

    References
    ----------
    Hanley & McNeil (1982), Radiology 143:29-36.
    """
    return float(delong_components(np.asarray(scores, dtype=float), truth)[0][0])


def delong_covariance(scores: np.ndarray, truth: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong et al. (1988) covariance matrix S10/m + S01/n.

    Parameters
    ----------
    scores : float array, shape (N,) or (K, N)
    truth : array-like, shape (N,)

    Returns
    -------
    auc : float array, shape (K,)
    cov : float array, shape (K, K)
        NaN when a class holds a single case: the sample covariance of its components (and so
        the variance of the AUC) is then undefined.

    Raises
    ------
    ValueError
        As :func:`delong_components`.

    References
    ----------
    DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845.
    """
    auc, v10, v01 = delong_components(scores, truth)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        return auc, np.full((len(auc), len(auc)), np.nan)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auc, s10 / m + s01 / n


def jackknife_aucs(scores: np.ndarray, truth: Sequence) -> np.ndarray:
    """Leave-one-case-out AUCs, exactly and in O(N log N).

    Dropping positive i gives (m A - V10_i)/(m - 1), dropping negative j gives
    (n A - V01_j)/(n - 1), because A is the mean of either set of components.

    Parameters
    ----------
    scores : float array, shape (N,) or (K, N)
    truth : array-like, shape (N,)

    Returns
    -------
    float array, shape (K, N)
        In the cases' original order.

    Raises
    ------
    ValueError
        If a class has fewer than 2 cases, or as :func:`delong_components`.
    """
    scores = as_scores(scores)
    is_pos = as_binary_truth(truth)
    auc, v10, v01 = delong_components(scores, is_pos)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        raise ValueError("the jackknife needs at least 2 cases of each class")
    out = np.empty_like(scores)
    out[:, is_pos] = (m * auc[:, None] - v10) / (m - 1)
    out[:, ~is_pos] = (n * auc[:, None] - v01) / (n - 1)
    return out


def jackknife_covariance(scores: np.ndarray, truth: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their jackknife covariance over cases, as OR-DBM MRMC computes it.

    cov = (c-1)/c sum_k (A_(k) - mean)(A_(k) - mean)^T over all c cases.

    Parameters
    ----------
    scores : float array, shape (N,) or (K, N)
    truth : array-like, shape (N,)

    Returns
    -------
    auc : float array, shape (K,)
    cov : float array, shape (K, K)

    Raises
    ------
    ValueError
        As :func:`jackknife_aucs`.

    References
    ----------
    Hillis, Obuchowski, Schartz & Berbaum (2005), Stat. Med. 24:1579-1607.
    """
    auc = delong_components(scores, truth)[0]
    jk = jackknife_aucs(scores, truth)
    c = jk.shape[1]
    centred = jk - jk.mean(axis=1, keepdims=True)
    return auc, (c - 1) / c * centred @ centred.T


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC by Hanley & McNeil (1982), eq. 2 (exponential approximation).

    Parameters
    ----------
    auc : float
        The AUC, in [0, 1].
    n_pos, n_neg : int
        Numbers of positive and negative cases.

    Returns
    -------
    float
        The standard error; NaN when a class has fewer than 2 cases.

    References
    ----------
    Hanley & McNeil (1982), Radiology 143:29-36.
    """
    if n_pos < 2 or n_neg < 2:
        return math.nan
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _auc_two_sample(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorised Mann-Whitney AUC of positives x vs negatives y along ``axis`` (for bootstrap)."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    m, n = x.shape[-1], y.shape[-1]
    lead = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    x = np.broadcast_to(x, lead + (m,))
    y = np.broadcast_to(y, lead + (n,))
    tz = stats.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    return (tz[..., :m].sum(axis=-1) - m * (m + 1) / 2) / (m * n)


def bootstrap_auc_ci(
    scores: Sequence[float], truth: Sequence, n_resamples: int = 2000, seed: int = 0,
    confidence_level: float = 0.95,
) -> dict:
    """Stratified case-bootstrap CI of the AUC by :func:`scipy.stats.bootstrap`.

    Real and synthetic cases are resampled separately (every resample has both classes, the
    case mix is fixed as in the study); the BCa interval, or the percentile interval when BCa is
    degenerate (e.g. A = 1).

    Parameters
    ----------
    scores : float array, shape (N,)
    truth : array-like, shape (N,)
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling generator (same seed, same interval).
    confidence_level : float
        In (0, 1).

    Returns
    -------
    dict
        ``low``, ``high`` (AUC units), ``se``, ``method``, ``n_resamples``; low/high/se are NaN
        (method "undefined") when a class holds a single case.

    Raises
    ------
    ValueError
        As :func:`delong_components`.
    """
    scores = as_scores(scores)[0]
    is_pos = as_binary_truth(truth)
    if scores.size != is_pos.size:
        raise ValueError(f"{scores.size} scores but {is_pos.size} truth labels")
    samples = (scores[is_pos], scores[~is_pos])
    if min(len(samples[0]), len(samples[1])) < 2:
        return {"low": math.nan, "high": math.nan, "se": math.nan, "n_resamples": int(n_resamples),
                "method": "undefined: the bootstrap needs at least 2 cases of each class"}
    method = "BCa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(samples, _auc_two_sample, n_resamples=n_resamples, vectorized=True,
                              paired=False, confidence_level=confidence_level, method="BCa",
                              random_state=bootstrap_stream(seed))
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            method = "percentile"
            res = stats.bootstrap(samples, _auc_two_sample, n_resamples=n_resamples, vectorized=True,
                                  paired=False, confidence_level=confidence_level,
                                  method="percentile", random_state=bootstrap_stream(seed))
            low, high = res.confidence_interval
    return {"low": float(low), "high": float(high), "method": f"stratified case bootstrap ({method}, "
            f"scipy.stats.bootstrap, real and synthetic cases resampled separately)",
            "n_resamples": int(n_resamples), "se": float(res.standard_error)}


# --------------------------------------------------------------------------- proportions
def accuracy_test(n_correct: int, n_total: int, confidence_level: float = 0.95) -> dict:
    """Accuracy with an exact two-sided binomial test against 0.5 and the Clopper-Pearson CI.

    Parameters
    ----------
    n_correct : int
        Cases called correctly, 0 <= n_correct <= n_total.
    n_total : int
        Cases, at least 1.
    confidence_level : float
        In (0, 1).

    Returns
    -------
    dict
        ``estimate``, ``n_correct``, ``n``, ``ci_low``, ``ci_high`` (proportions),
        ``p_value_vs_0.5``, ``test``.

    Raises
    ------
    ValueError
        From :func:`scipy.stats.binomtest` when the counts are impossible (e.g. n_total 0).
    """
    res = stats.binomtest(int(n_correct), int(n_total), 0.5)
    ci = res.proportion_ci(confidence_level=confidence_level, method="exact")
    return {"estimate": n_correct / n_total, "n_correct": int(n_correct), "n": int(n_total),
            "ci_low": float(ci.low), "ci_high": float(ci.high), "p_value_vs_0.5": float(res.pvalue),
            "test": "exact binomial test vs 0.5 (two-sided); Clopper-Pearson exact CI"}


def proportion(k: int, n: int) -> dict:
    """k of n with its exact (Clopper-Pearson) 95% CI; None fields when n is 0.

    Parameters
    ----------
    k, n : int
        Successes and trials, 0 <= k <= n.

    Returns
    -------
    dict
        ``estimate``, ``k``, ``n``, ``ci_low``, ``ci_high``.
    """
    if n == 0:
        return {"estimate": None, "k": 0, "n": 0, "ci_low": None, "ci_high": None}
    ci = stats.binomtest(int(k), int(n)).proportion_ci(method="exact")
    return {"estimate": k / n, "k": int(k), "n": int(n), "ci_low": float(ci.low), "ci_high": float(ci.high)}


# --------------------------------------------------------------------------- binormal fit
def _binormal_counts(options: Sequence[int], is_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    level = 7 - np.asarray(options, dtype=int)  # higher level = more "real" (option 1 is most real)
    used = np.unique(level)
    idx = np.searchsorted(used, level)
    k = used.size
    return np.bincount(idx[is_pos], minlength=k), np.bincount(idx[~is_pos], minlength=k), k


def binormal_fit(options: Sequence[int], truth: Sequence) -> dict | None:
    """Maximum-likelihood binormal ROC fit to ordinal ratings.

    Latent decision variable ~ N(0, 1) for negatives (synthetic) and N(a/b, 1/b^2) for positives
    (real); ordered category thresholds. Fitted AUC = Phi(a / sqrt(1 + b^2)).

    Parameters
    ----------
    options : int array, shape (N,)
        Options 1-6 (1 = extremely confident real).
    truth : array-like, shape (N,)

    Returns
    -------
    dict or None
        ``a``, ``b``, ``auc``, ``thresholds``, ``converged``, ``method``; None when the fit is not
        identifiable (fewer than 2 used categories) or does not converge.

    Raises
    ------
    ValueError
        If truth is not binary.

    References
    ----------
    Dorfman & Alf (1969), J. Math. Psychol. 6:487-496.
    """
    from scipy.optimize import minimize

    is_pos = as_binary_truth(truth)
    n_pos, n_neg, k = _binormal_counts(options, is_pos)
    if k < 2:
        return None
    cum = np.cumsum(n_neg + n_pos)[:-1] / (n_neg.sum() + n_pos.sum())
    z0 = stats.norm.ppf(np.clip(cum, 0.02, 0.98))
    z0 = np.maximum.accumulate(z0 + np.arange(k - 1) * 1e-3)

    def unpack(theta):
        a, logb = theta[0], theta[1]
        z = theta[2] + np.concatenate([[0.0], np.cumsum(np.exp(theta[3:]))])
        return a, math.exp(logb), z

    def nll(theta):
        a, b, z = unpack(theta)
        edges = np.concatenate([[-np.inf], z, [np.inf]])
        p_neg = np.diff(stats.norm.cdf(edges))
        p_pos = np.diff(stats.norm.cdf(b * edges - a))
        return -(n_neg @ np.log(np.clip(p_neg, 1e-300, None)) + n_pos @ np.log(np.clip(p_pos, 1e-300, None)))

    theta0 = np.concatenate([[0.5, 0.0, z0[0]], np.log(np.maximum(np.diff(z0), 1e-2))])
    res = minimize(nll, theta0, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-9})
    if not res.success and not np.isfinite(res.fun):
        return None
    a, b, z = unpack(res.x)
    return {"a": float(a), "b": float(b), "auc": float(stats.norm.cdf(a / math.sqrt(1 + b * b))),
            "thresholds": [float(v) for v in z], "converged": bool(res.success),
            "method": "ML binormal fit (Dorfman & Alf 1969) to the ordinal options"}


# --------------------------------------------------------------------------- agreement
def pairwise_kappa(options_by_reader: pd.DataFrame) -> pd.DataFrame:
    """Cohen's kappa, unweighted and weighted, for every pair of readers.

    Parameters
    ----------
    options_by_reader : DataFrame, shape (n_cases, n_readers)
        Options 1-6, one column per reader; NaN where a reader has not rated a case (each pair
        uses the cases both rated).

    Returns
    -------
    DataFrame
        One row per pair: ``reader_a``, ``reader_b``, ``n_cases``, ``kappa_unweighted``,
        ``kappa_linear``, ``kappa_quadratic`` (NaN when undefined), ``exact_agreement``.

    References
    ----------
    Cohen (1968), Psychol. Bull. 70:213-220; :func:`sklearn.metrics.cohen_kappa_score`.
    """
    from sklearn.metrics import cohen_kappa_score

    labels = [number for number, _, _ in OPTIONS]
    rows = []
    for a, b in combinations(options_by_reader.columns, 2):
        both = options_by_reader[[a, b]].dropna()
        ra, rb = both[a].astype(int), both[b].astype(int)
        row = {"reader_a": a, "reader_b": b, "n_cases": len(both)}
        for name, w in (("kappa_unweighted", None), ("kappa_linear", "linear"), ("kappa_quadratic", "quadratic")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = cohen_kappa_score(ra, rb, labels=labels, weights=w) if len(both) else float("nan")
            row[name] = float(k)
        row["exact_agreement"] = float((ra == rb).mean()) if len(both) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=["reader_a", "reader_b", "n_cases", "kappa_unweighted",
                                       "kappa_linear", "kappa_quadratic", "exact_agreement"])
