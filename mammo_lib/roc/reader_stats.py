"""Per-reader statistics of stage 05: one reader's mapped values against truth -> accuracy with
its exact test and CI, sensitivity and specificity, the confusion matrix, the empirical ROC curve,
the AUC with DeLong, Hanley-McNeil and bootstrap uncertainty (undefined when a class holds one
case, flagged degenerate on perfect or reversed separation) and a binormal fit.

References
----------
DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845.
Sun X, Xu W (2014) IEEE Signal Processing Letters 21:1389-1393.
Hanley JA, McNeil BJ (1982) Radiology 143:29-36.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from mammo_lib.auc_stats import (
    accuracy_test,
    as_binary_truth,
    as_scores,
    binormal_fit,
    bootstrap_auc_ci,
    delong_covariance,
    hanley_mcneil_se,
    proportion,
)
from mammo_lib.rating_scale import POSITIVE_TRUTH, THRESHOLD
from mammo_lib.rng import reader_stream_seed

BOOTSTRAP_PURPOSE = 5  # SeedSequence key of the per-reader bootstrap streams



def _delong_summary(auc: float, var: float, m: int, n: int) -> dict:
    se = math.sqrt(var) if np.isfinite(var) else math.nan
    zcrit = stats.norm.ppf(0.975)
    degenerate = auc in (0.0, 1.0)
    if not np.isfinite(se):
        z = p = low = high = math.nan
    else:
        z = (auc - 0.5) / se if se > 0 else (math.inf if auc > 0.5 else -math.inf if auc < 0.5 else 0.0)
        p = float(2 * stats.norm.sf(abs(z)))
        low, high = max(0.0, auc - zcrit * se), min(1.0, auc + zcrit * se)
    out = {"se": se, "ci_low": low, "ci_high": high, "z_vs_0.5": float(z), "p_value_vs_0.5": p,
           "degenerate": degenerate}
    if m < 2 or n < 2:
        out["undefined"] = f"{m} real and {n} synthetic case(s): the DeLong variance needs 2 of each"
    elif degenerate:
        out["note"] = ("perfect separation" if auc == 1.0 else "reversed separation") + \
            ": the DeLong SE is 0, so its z test and CI say nothing; see the bootstrap and exact CIs"
    return out


def reader_statistics(
    values: Sequence[float], truth: Sequence, options: Sequence[int] | None = None,
    n_bootstrap: int = 2000, seed: int | np.random.SeedSequence = 0, binormal: bool = True,
) -> dict:
    """All per-reader statistics of one reader's mapped values against truth.

    Parameters
    ----------
    values : float array, shape (n,)
        Mapped values (probability of real, 0.05-0.95).
    truth : array-like, shape (n,)
        "real"/"synthetic", booleans or 0/1 (True/1 = real).
    options : int array, shape (n,), optional
        Options 1-6, for the binormal fit.
    n_bootstrap : int
        Bootstrap resamples.
    seed : int or numpy.random.SeedSequence
        Seed of the bootstrap stream.
    binormal : bool
        Also fit the binormal model.

    Returns
    -------
    dict
        n_cases, n_real, n_synthetic, positive_class, threshold, accuracy (:func:`accuracy_test`),
        sensitivity and specificity (k of n with exact CI), confusion_matrix, roc (fpr, tpr,
        thresholds), auc, auc_delong (se, ci_low, ci_high, z_vs_0.5, p_value_vs_0.5, degenerate;
        NaN with ``undefined`` when a class holds one case), auc_hanley_mcneil_se,
        auc_bootstrap (:func:`mammo_lib.auc_stats.bootstrap_auc_ci`), binormal.

    Raises
    ------
    ValueError
        If a value is NaN or infinite, truth is not binary, lengths differ or a class is empty.

    References
    ----------
    DeLong et al. (1988); Sun & Xu (2014); Hanley & McNeil (1982).
    """
    from sklearn.metrics import confusion_matrix, roc_curve

    values = as_scores(values)[0]
    is_pos = as_binary_truth(truth)
    called_real = values > THRESHOLD
    correct = called_real == is_pos
    tp, fn = int(np.sum(called_real & is_pos)), int(np.sum(~called_real & is_pos))
    tn, fp = int(np.sum(~called_real & ~is_pos)), int(np.sum(called_real & ~is_pos))
    cm = confusion_matrix(np.where(is_pos, "real", "synthetic"), np.where(called_real, "real", "synthetic"),
                          labels=["real", "synthetic"])
    fpr, tpr, thr = roc_curve(is_pos.astype(int), values, drop_intermediate=False)
    auc, cov = delong_covariance(values, is_pos)
    auc = float(auc[0])
    m, n = int(is_pos.sum()), int((~is_pos).sum())
    out = {
        "n_cases": int(values.size), "n_real": m, "n_synthetic": n,
        "positive_class": POSITIVE_TRUTH, "threshold": THRESHOLD,
        "accuracy": accuracy_test(int(correct.sum()), int(values.size)),
        "sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
        "confusion_matrix": {"rows_truth": ["real", "synthetic"], "cols_called": ["real", "synthetic"],
                             "counts": cm.tolist(), "tp": tp, "fn": fn, "fp": fp, "tn": tn},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                "thresholds": [float(t) if np.isfinite(t) else None for t in thr]},
        "auc": auc,
        "auc_delong": _delong_summary(auc, float(cov[0, 0]), m, n),
        "auc_hanley_mcneil_se": hanley_mcneil_se(auc, m, n),
        "auc_bootstrap": bootstrap_auc_ci(values, is_pos, n_resamples=n_bootstrap, seed=seed),
    }
    if binormal and options is not None and min(m, n) >= 2:
        try:
            out["binormal"] = binormal_fit(options, is_pos)
        except Exception as exc:  # an optional extra must never sink the analysis
            out["binormal"] = {"error": str(exc)}
    return out


def reader_seed(seed: int, reader: str, generator: str | None = None) -> np.random.SeedSequence:
    """The bootstrap stream of one reader (and, per generator, of one reader x generator).

    Keyed by (seed, purpose, reader name[, generator name]), so a reader's interval does not
    change when other readers or generators are added.

    Parameters
    ----------
    seed : int
        The study seed.
    reader : str
    generator : str, optional
        The generator of a per-generator statistic (None: the reader's statistics on all cases).

    Returns
    -------
    numpy.random.SeedSequence
    """
    return reader_stream_seed(seed, BOOTSTRAP_PURPOSE, reader, *([] if generator is None else [generator]))
