"""Numbers behind the t-SNE picture: how close are synthetic lesions to real ones?

Every metric takes feature vectors (rows = patches): raw pixels flattened (the paper's space)
or another feature space (the lesion CNN's ``lesion_cnn.cnn_features``, the random CNN's
``random_cnn.random_cnn_features``). Each comes with a percentile
bootstrap confidence interval (``n_bootstrap`` resamples by :func:`scipy.stats.bootstrap`,
random streams keyed by (seed, purpose) in ``feature_space.streams``). Distances and neighbour
shares come from ``neighbours``. Reads and writes no files; the dictionaries returned are
described once, as TypedDicts, in ``feature_space.results``.

How the intervals are made: the nearest-neighbour metrics (1-NN accuracy, precision / recall /
density / coverage, the normal-neighbour share, the memorisation share) are means of per-point
quantities; we compute those once and resample the *points that are scored*, keeping the
neighbour structure fixed (resampling points into their own neighbour sets would create
zero-distance duplicates and bias every NN statistic). The intervals therefore describe the
sampling of scored points, conditional on the reference sets. The Fréchet distance is
recomputed on resampled real and synthetic sets (in the fixed PCA space). The checks of the
inputs and the bootstrap itself are in ``metric_estimates`` (:class:`MetricsError`,
:func:`estimate`, :func:`mean_estimate` and :data:`CI_LEVEL` are re-exported here).
"""

from __future__ import annotations

import numpy as np

from mammo_lib.feature_space.memorisation import authenticity, memorisation_check
from mammo_lib.feature_space.metric_estimates import CI_LEVEL, MetricsError, estimate, mean_estimate
from mammo_lib.feature_space.metric_estimates import bootstrap as _bootstrap
from mammo_lib.feature_space.metric_estimates import check_features as _check
from mammo_lib.feature_space.metric_estimates import check_pair as _check_pair
from mammo_lib.feature_space.neighbours import distances, normal_share_of_neighbours, self_distances
from mammo_lib.feature_space.streams import rng as stream_rng

#: 1-NN accuracy: a real-side and a synthetic-side accuracy further apart than this make the
#: mean "lopsided" (0.5 from 1.0 and 0.0 says nothing about realism)
LOPSIDED_GAP = 0.3

__all__ = ["CI_LEVEL", "LOPSIDED_GAP", "MetricsError", "estimate", "mean_estimate", "one_nn_accuracy", "lopsided_note", "prdc",
           "frechet_distance", "frechet_distance_pca", "normal_neighbour_share", "memorisation_check",
           "authenticity", "realism_metrics"]

# ----------------------------------------------------------------------------- 1-NN two-sample test


def one_nn_accuracy(real: np.ndarray, synthetic: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                    balance: bool = True) -> dict:
    """Leave-one-out 1-nearest-neighbour two-sample accuracy.

    Each point of the pooled set is classified by the label of its nearest other point; the
    accuracy over all points is 0.5 when the two sets are indistinguishable, 1.0 when they are
    fully separated, and below 0.5 when synthetic points copy real ones (each synthetic point's
    nearest neighbour is its real original). With ``balance`` (default) the larger set is
    subsampled (the "one_nn_subsample" stream) to the size of the smaller one, since 0.5 is the
    chance level only for equal sets.

    The mean hides how it was reached: a tight cluster of garbage (say, uniform noise, each
    noise patch's nearest neighbour a real patch) gives 1.0 on the real side and 0.0 on the
    synthetic side, a mean of 0.5 that looks like "indistinguishable". Both sides are returned,
    and ``lopsided`` is True when they differ by more than :data:`LOPSIDED_GAP`: then the mean
    is no verdict on realism.

    Parameters
    ----------
    real, synthetic : float array, shape (n_real, d) and (n_synthetic, d)
        Feature vectors, one row per patch, in one feature space.
    n_bootstrap : int
        Resamples of the interval (real and synthetic points resampled separately).
    seed : int
        Keys the random streams.
    balance : bool

    Returns
    -------
    dict
        :class:`OneNNAccuracy`: the estimate plus ``accuracy_real`` and ``accuracy_synthetic``
        (the share of real and of synthetic points whose nearest neighbour has their own label),
        ``lopsided`` (bool: those two differ by more than :data:`LOPSIDED_GAP`), ``n_real`` /
        ``n_synthetic`` (sizes used) and ``n_given`` (sizes passed).

    Raises
    ------
    MetricsError
        When a set is not 2-D, has fewer than 2 rows or non-finite values, or the feature
        counts differ.

    References
    ----------
    D. Lopez-Paz and M. Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017.
    """
    real, synthetic = _check_pair(real, synthetic)
    n_given = (len(real), len(synthetic))
    if balance and len(real) != len(synthetic):
        m = min(len(real), len(synthetic))
        pick = stream_rng(seed, "one_nn_subsample")
        if len(real) > m:
            real = real[np.sort(pick.choice(len(real), m, replace=False))]
        else:
            synthetic = synthetic[np.sort(pick.choice(len(synthetic), m, replace=False))]
    pooled = np.vstack([real, synthetic])
    labels = np.r_[np.zeros(len(real), dtype=int), np.ones(len(synthetic), dtype=int)]
    nn = np.argmin(self_distances(pooled), axis=1)
    correct = (labels[nn] == labels).astype(float)
    c_real, c_syn = correct[: len(real)], correct[len(real):]
    n = len(correct)
    out = mean_estimate([c_real, c_syn], [len(real) / n, len(synthetic) / n], n_bootstrap,
                        stream_rng(seed, "one_nn_bootstrap"))
    out["accuracy_real"] = float(c_real.mean())
    out["accuracy_synthetic"] = float(c_syn.mean())
    out["lopsided"] = bool(abs(out["accuracy_real"] - out["accuracy_synthetic"]) > LOPSIDED_GAP)
    out["n_real"], out["n_synthetic"] = len(real), len(synthetic)
    out["n_given"] = list(n_given)
    return out


def lopsided_note(one_nn: dict) -> str:
    """The warning a lopsided 1-NN accuracy carries, for tables, text and figures.

    Parameters
    ----------
    one_nn : dict
        A :class:`OneNNAccuracy` record (``accuracy_real``, ``accuracy_synthetic`` and, when
        present, ``lopsided``; without it the gap is compared with :data:`LOPSIDED_GAP`).

    Returns
    -------
    str
        E.g. "lopsided: real 1.00 / synthetic 0.00, not a verdict"; "" when the two sides agree.
    """
    real, synthetic = float(one_nn["accuracy_real"]), float(one_nn["accuracy_synthetic"])
    if not one_nn.get("lopsided", abs(real - synthetic) > LOPSIDED_GAP):
        return ""
    return f"lopsided: real {real:.2f} / synthetic {synthetic:.2f}, not a verdict"


# ----------------------------------------------------------------------------- precision/recall/density/coverage


def prdc(real: np.ndarray, synthetic: np.ndarray, k: int = 5, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Precision, recall, density and coverage with k-NN balls.

    Each real point gets a ball of radius = distance to its k-th nearest real neighbour (and
    each synthetic point one among synthetic points, for recall). Precision: share of synthetic
    points inside some real ball. Recall: share of real points inside some synthetic ball.
    Density: mean number of real balls containing a synthetic point, divided by k (about 1 when
    the distributions match). Coverage: share of real balls containing at least one synthetic
    point. Identical sets give 1 for all four; disjoint sets give 0.

    Parameters
    ----------
    real, synthetic : float array, shape (n_real, d) and (n_synthetic, d)
    k : int
        Neighbours defining a ball (each set needs at least k + 1 points).
    n_bootstrap : int
        Resamples of the scored points of each metric.
    seed : int
        Keys the "prdc_bootstrap" streams.

    Returns
    -------
    dict
        :class:`PRDC`: ``k`` and an estimate each for ``precision``, ``recall``, ``density``,
        ``coverage``.

    Raises
    ------
    MetricsError
        As :func:`one_nn_accuracy`, or a set with k points or fewer.

    References
    ----------
    M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi and J. Yoo, "Reliable Fidelity and Diversity Metrics
    for Generative Models", ICML 2020.
    """
    real, synthetic = _check_pair(real, synthetic, min_rows=k + 1)
    r_real = np.sort(self_distances(real), axis=1)[:, k - 1]
    r_syn = np.sort(self_distances(synthetic), axis=1)[:, k - 1]
    d_rs = distances(real, synthetic)  # (n_real, n_syn)
    inside = d_rs < r_real[:, None]
    precision_j = inside.any(axis=0).astype(float)
    density_j = inside.sum(axis=0) / k
    coverage_i = inside.any(axis=1).astype(float)
    recall_i = (d_rs < r_syn[None, :]).any(axis=1).astype(float)
    out = {"k": k}
    for name, vals, s in (("precision", precision_j, 1), ("recall", recall_i, 2),
                          ("density", density_j, 3), ("coverage", coverage_i, 4)):
        out[name] = mean_estimate([vals], [1.0], n_bootstrap, stream_rng(seed, "prdc_bootstrap", s))
    return out


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians: ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2}).

    The trace of the matrix square root is computed as the sum of square roots of the
    eigenvalues of C1^{1/2} C2 C1^{1/2} (symmetric, so no complex round-off).

    Parameters
    ----------
    mu1, mu2 : float array, shape (d,)
        Means.
    cov1, cov2 : float array, shape (d, d)
        Covariances (symmetric positive semi-definite).

    Returns
    -------
    float
        The squared Fréchet (2-Wasserstein) distance, in squared feature units.

    References
    ----------
    D. C. Dowson and B. V. Landau, "The Fréchet distance between multivariate normal
    distributions", J. Multivariate Analysis 12(3):450-455, 1982.
    M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium", NeurIPS 2017 (the FID).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    c1, c2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    w, v = np.linalg.eigh(c1)
    s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = s1 @ c2 @ s1
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(ev, 0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * tr_sqrt)


def _fd_of_samples(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def frechet_distance_pca(real: np.ndarray, synthetic: np.ndarray, n_components: int | None = 32,
                         n_bootstrap: int = 200, seed: int = 0) -> dict:
    """Fréchet distance between real and synthetic sets in a PCA space fitted on the real set.

    Both sets are projected with the same PCA; the bootstrap (``scipy.stats.bootstrap``)
    resamples both sets, and since resampling with replacement inflates the distance
    (duplicates shrink the effective sample), the percentile interval is shifted by the
    bootstrap bias and clipped at 0. Also reported, at equal (half) sample sizes because the
    distance is biased upwards in small samples: real half vs the other real half (what "no
    difference" looks like) and the same real half vs half of the synthetic set.

    Parameters
    ----------
    real, synthetic : float array, shape (n_real, d) and (n_synthetic, d)
    n_components : int or None
        PCA dimensions (None: all), capped at n_real - 1 so the covariance is estimable.
    n_bootstrap : int
    seed : int
        PCA ``random_state``; keys the "frechet_bootstrap" and "frechet_split" streams.

    Returns
    -------
    dict
        :class:`FrechetDistance`: the estimate plus ``real_split_half``,
        ``real_half_vs_synthetic_half`` (NaN when half a set is not larger than the dimensions),
        ``pca_dims`` and ``explained_variance`` (share of the real set's variance kept).

    Raises
    ------
    MetricsError
        As :func:`one_nn_accuracy`, or a set with fewer than 3 points.

    References
    ----------
    D. C. Dowson and B. V. Landau, J. Multivariate Analysis 12(3):450-455, 1982.
    M. Heusel et al., NeurIPS 2017.
    """
    from sklearn.decomposition import PCA

    real, synthetic = _check_pair(real, synthetic, min_rows=3)
    dims = real.shape[1] if n_components is None else n_components
    dims = int(min(dims, real.shape[1], len(real) - 1))
    pca = PCA(n_components=dims, random_state=seed).fit(real)
    zr, zs = pca.transform(real), pca.transform(synthetic)
    value = _fd_of_samples(zr, zs)
    res = _bootstrap((np.arange(len(zr)), np.arange(len(zs))), lambda i, j: _fd_of_samples(zr[i], zs[j]),
                     n_bootstrap, stream_rng(seed, "frechet_bootstrap"), vectorized=False)
    boot = None
    if res is not None:
        boot = np.asarray(res.bootstrap_distribution, dtype=np.float64)
        boot = np.maximum(boot - (boot.mean() - value), 0.0)  # a distance is never negative
    out = estimate(value, boot, n_bootstrap)
    split = stream_rng(seed, "frechet_split")
    perm_r, perm_s = split.permutation(len(zr)), split.permutation(len(zs))
    half = min(len(zr), len(zs)) // 2
    if half > dims:
        out["real_split_half"] = _fd_of_samples(zr[perm_r[:half]], zr[perm_r[half:2 * half]])
        out["real_half_vs_synthetic_half"] = _fd_of_samples(zr[perm_r[:half]], zs[perm_s[:half]])
    else:
        out["real_split_half"] = out["real_half_vs_synthetic_half"] = float("nan")
    out["pca_dims"] = dims
    out["explained_variance"] = float(np.sum(pca.explained_variance_ratio_))
    return out


# ----------------------------------------------------------------------------- normal-tissue neighbours


def normal_neighbour_share(synthetic: np.ndarray, lesion: np.ndarray, normal: np.ndarray, k: int = 10,
                           threshold: float = 0.5, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Share of synthetic lesions whose k nearest real neighbours are mostly normal tissue.

    The paper's "synthetic outliers". "Mostly" (> ``threshold``) is class-balanced: each
    neighbour counts 1 / (size of its group), so unequal group sizes do not shift the call (for
    equal groups it is the plain majority). The same share for real lesions (leave-one-out) is
    the reference: a few real lesions look like normal tissue too (the paper's arrowed real
    outlier).

    Parameters
    ----------
    synthetic : float array, shape (n_synthetic, d)
    lesion, normal : float array, shape (n_lesion, d) and (n_normal, d)
        The real neighbour pool.
    k : int
        Neighbours (capped at the pool size - 1).
    threshold : float
    n_bootstrap : int
    seed : int
        Keys the "normal_share_bootstrap" streams.

    Returns
    -------
    dict
        :class:`NormalNeighbourShare`: the estimate for synthetic lesions,
        ``real_lesion_reference`` (the same for real lesions), ``k``, ``threshold`` and
        ``per_point_synthetic`` (each synthetic point's share; kept in memory, not written).

    Raises
    ------
    MetricsError
        When a set is not 2-D, is empty or not finite, or the feature counts differ.
    """
    synthetic = _check("synthetic", synthetic, 1)
    lesion, normal = _check_pair(lesion, normal, names=("lesion", "normal"), min_rows=1)
    ref = np.vstack([lesion, normal])
    is_normal = np.r_[np.zeros(len(lesion), bool), np.ones(len(normal), bool)]
    k = min(k, len(ref) - 1)
    s_syn = normal_share_of_neighbours(distances(synthetic, ref), is_normal, k)
    d_real = distances(lesion, ref)
    d_real[np.arange(len(lesion)), np.arange(len(lesion))] = np.inf  # leave one out
    s_real = normal_share_of_neighbours(d_real, is_normal, k)
    flag_syn = (s_syn > threshold).astype(float)
    flag_real = (s_real > threshold).astype(float)
    out = mean_estimate([flag_syn], [1.0], n_bootstrap, stream_rng(seed, "normal_share_bootstrap", 0))
    out["real_lesion_reference"] = mean_estimate([flag_real], [1.0], n_bootstrap,
                                                 stream_rng(seed, "normal_share_bootstrap", 1))
    out["k"], out["threshold"] = k, threshold
    out["per_point_synthetic"] = s_syn.tolist()
    return out


# ----------------------------------------------------------------------------- all together


def realism_metrics(lesion: np.ndarray, synthetic: np.ndarray, normal: np.ndarray, n_bootstrap: int = 1000,
                    seed: int = 0, k_prdc: int = 5, k_neighbours: int = 10, fd_dims: int | None = 32) -> dict:
    """All realism metrics of one feature space.

    Parameters
    ----------
    lesion, synthetic, normal : float array, shape (n_group, d)
        The three groups' feature vectors (rows are patches) in one feature space.
    n_bootstrap : int
        Resamples of every interval (the Fréchet distance uses at most 200).
    seed : int
        Keys every random stream.
    k_prdc : int
        k of the PRDC balls (capped at each set's size - 1).
    k_neighbours : int
        Neighbours of the normal-neighbour share.
    fd_dims : int or None
        PCA dimensions of the Fréchet distance.

    Returns
    -------
    dict
        :class:`mammo_lib.feature_space.results.SpaceMetrics`: ``n``, ``n_features``,
        ``one_nn_accuracy``, ``prdc``, ``frechet_distance``,
        ``synthetic_normal_neighbour_share``, ``memorisation``.

    Raises
    ------
    MetricsError
        When a group is not 2-D, has fewer than 2 rows or non-finite values, or the groups'
        feature counts differ.
    """
    lesion = _check("lesion", lesion)
    synthetic = _check("synthetic", synthetic)
    normal = _check("normal", normal)
    k_prdc = max(1, min(k_prdc, len(lesion) - 1, len(synthetic) - 1))
    return {
        "n": {"lesion": len(lesion), "synthetic": len(synthetic), "normal": len(normal)},
        "n_features": int(lesion.shape[1]),
        "one_nn_accuracy": one_nn_accuracy(lesion, synthetic, n_bootstrap, seed),
        "prdc": prdc(lesion, synthetic, k_prdc, n_bootstrap, seed),
        "frechet_distance": frechet_distance_pca(lesion, synthetic, fd_dims, min(n_bootstrap, 200), seed),
        "synthetic_normal_neighbour_share": normal_neighbour_share(synthetic, lesion, normal, k_neighbours,
                                                                   n_bootstrap=n_bootstrap, seed=seed),
        "memorisation": memorisation_check(synthetic, lesion, n_bootstrap, seed),
    }
