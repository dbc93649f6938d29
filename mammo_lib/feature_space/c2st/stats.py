"""The statistics of the CNN two-sample test (:mod:`mammo_lib.feature_space.c2st.two_sample`): balanced, grouped folds,
the cross-fitted AUC with its DeLong interval, and the permutation p-value.

References: Kim, Ramdas, Singh & Wasserman, "Classification accuracy as a proxy for two-sample
testing", Ann. Statist. 49(1), 2021 (cross-fitting, permutation within held-out folds); DeLong,
DeLong & Clarke-Pearson, Biometrics 44, 1988. Reads and writes no files.
"""

from __future__ import annotations

import math

import numpy as np

from mammo_lib import auc_stats
from mammo_lib.feature_space.arrays import FeatureSpaceError
from mammo_lib.feature_space.streams import rng as stream_rng
from mammo_lib.feature_space.streams import stream_seed


def balanced_folds(n_first: int, n_second: int, n_folds: int, seed: int, key: int,
                   groups_first: np.ndarray | None = None, groups_second: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Subsample both sets to the smaller size and assign folds, stratified by set and grouped.

    Patches of one group (one woman, or one mammogram) all go to one fold (scikit-learn's
    ``StratifiedGroupKFold``): one woman's patches share her breasts' texture and often show one
    lesion in two views, and a network that saw some of them while others are scored learns the
    woman, not the question. With the real lesions split into two halves (the null control) it
    then calls a scored view by the label its twin had in training: the null AUC falls below 0.5.

    Parameters
    ----------
    n_first, n_second : int
        Patches in each set.
    n_folds : int
    seed : int
    key : int
        The test's stream index (:func:`mammo_lib.feature_space.sampling.name_key` of its label).
    groups_first, groups_second : str array, optional
        Group (source image) of each patch of each set; None: every patch its own group. Equal
        names in both sets are one group.

    Returns
    -------
    index : int array, shape (2n,)
        Row in its own set, first set's rows first (sorted within each set).
    is_second : bool array, shape (2n,)
    fold : int array, shape (2n,)
        0 .. n_folds-1.
    n : int
        Patches per set.

    Raises
    ------
    FeatureSpaceError
        When a set has fewer than 2 patches per fold, or the groups leave a fold with fewer than
        2 patches of a set (each fold must train and score both).
    """
    from sklearn.model_selection import StratifiedGroupKFold


    n = min(n_first, n_second)
    if n < 2 * n_folds:
        raise FeatureSpaceError(
            f"{n_first} and {n_second} patches; {n_folds}-fold cross-fitting needs at least "
            f"{2 * n_folds} of each (2 per fold and set), so that every fold trains and scores both: "
            "give more patches (more real lesions or synthetic patches) or fewer folds (c2st_folds)")
    rng = stream_rng(seed, "c2st_folds", key)
    idx_a = np.sort(rng.permutation(n_first)[:n]) if n_first > n else np.arange(n)
    idx_b = np.sort(rng.permutation(n_second)[:n]) if n_second > n else np.arange(n)
    index = np.r_[idx_a, idx_b]
    is_second = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    own = np.array([f"\x00{i}" for i in range(2 * n)], dtype=object)  # a group per patch
    ga = own[:n] if groups_first is None else np.asarray(groups_first, dtype=object)[idx_a]
    gb = own[n:] if groups_second is None else np.asarray(groups_second, dtype=object)[idx_b]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True,
                                    random_state=stream_seed(seed, "c2st_folds", key, 1) % 2**32)
    fold = np.zeros(2 * n, dtype=int)
    for f, (_train, test) in enumerate(splitter.split(index, is_second, np.r_[ga, gb].astype(str))):
        fold[test] = f
    counts = [(int(np.sum((fold == f) & ~is_second)), int(np.sum((fold == f) & is_second))) for f in range(n_folds)]
    if min(min(c) for c in counts) < 2:
        raise FeatureSpaceError(
            f"grouped by woman (or image), the {n_folds} folds hold (first, second) patches {counts}; each "
            "needs at least 2 of each: too few images for the folds (too few women), give more patches or fewer folds")
    return index, is_second, fold, n


def _ranks_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUC of scores (K, N) for boolean positives (K, N) with a fixed number of positives per row."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=-1)
    n_pos = positive[0].sum()
    n_neg = positive.shape[-1] - n_pos
    return ((ranks * positive).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def cross_fitted_auc(score: np.ndarray, is_second: np.ndarray, fold: np.ndarray) -> float:
    """The test statistic: the mean over folds of each fold's held-out AUC.

    Each fold is scored by its own network, whose scores need not be on the same scale as the
    others'; averaging per-fold AUCs (rather than pooling all scores into one ROC curve) compares
    only scores of one network with each other.

    Parameters
    ----------
    score : float array, shape (N,)
    is_second : bool array, shape (N,)
    fold : int array, shape (N,)

    Returns
    -------
    float
    """
    return float(np.mean([_ranks_auc(score[fold == f][None], is_second[fold == f][None])[0]
                          for f in np.unique(fold)]))


def permutation_p_value(score: np.ndarray, is_second: np.ndarray, fold: np.ndarray, n_permutations: int,
                        seed: int, key: int) -> float:
    """One-sided p-value of the cross-fitted AUC, labels permuted within each fold.

    Each fold's network never saw that fold, so under the null (both sets from one distribution)
    the fold's labels are exchangeable given its scores; permuting within folds keeps every
    network fixed and needs no retraining (Kim et al. 2021).

    Parameters
    ----------
    score : float array, shape (N,)
    is_second : bool array, shape (N,)
    fold : int array, shape (N,)
    n_permutations : int
    seed, key : int
        Key the ``"c2st_permutation"`` stream.

    Returns
    -------
    float
        (1 + #{permuted statistic >= observed}) / (1 + n_permutations).
    """
    observed = cross_fitted_auc(score, is_second, fold)
    null = permutation_null(score, is_second, fold, n_permutations, seed, key)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))


def permutation_null(score: np.ndarray, is_second: np.ndarray, fold: np.ndarray, n_permutations: int,
                     seed: int, key: int) -> np.ndarray:
    """The cross-fitted AUC under ``n_permutations`` permutations of the labels within each fold.

    Parameters
    ----------
    score, is_second, fold : arrays, shape (N,)
    n_permutations : int
    seed, key : int
        Key the ``"c2st_permutation"`` stream.

    Returns
    -------
    float array, shape (n_permutations,)
    """
    rng = stream_rng(seed, "c2st_permutation", key)
    folds = np.unique(fold)
    null = np.zeros(n_permutations)
    for f in folds:
        cols = np.flatnonzero(fold == f)
        perm = rng.permuted(np.tile(is_second[cols], (n_permutations, 1)), axis=1)
        null += _ranks_auc(np.tile(score[cols], (n_permutations, 1)), perm) / len(folds)
    return null


def summarise(score, is_second, fold, n_permutations, seed, key) -> dict:
    """Cross-fitted AUC with its 95% interval, the pooled AUC, the permutation p-value and the
    held-out accuracy.

    The standard error is the larger of two: the DeLong one from the folds' DeLong variances
    (each fold scored on its own patches: var(mean) = sum of variances / K^2, treating the
    folds' networks as given) and the spread of the fold AUCs (SD / sqrt(K)), so folds that
    disagree (one separating perfectly, another inverted) never give a zero-width interval."""
    folds = np.unique(fold)
    fold_aucs, variances = [], []
    for f in folds:
        a, cov = auc_stats.delong_covariance(score[fold == f], is_second[fold == f])
        fold_aucs.append(float(a[0]))
        variances.append(float(cov[0, 0]))
    auc = float(np.mean(fold_aucs))
    se = math.sqrt(sum(variances)) / len(folds) if all(np.isfinite(variances)) else float("nan")
    if len(folds) > 1:
        se = max(se, float(np.std(fold_aucs, ddof=1)) / math.sqrt(len(folds)))
    correct = int(np.sum((score > 0.5) == is_second))
    return {"auc": auc, "auc_se": se, "auc_ci_low": max(0.0, auc - 1.959964 * se),
            "auc_ci_high": min(1.0, auc + 1.959964 * se), "pooled_auc": float(_ranks_auc(score[None],
                                                                                         is_second[None])[0]),
            "p_value": permutation_p_value(score, is_second, fold, n_permutations, seed, key),
            "accuracy": auc_stats.accuracy_test(correct, len(score)), "fold_aucs": fold_aucs}
