"""Numbers behind the t-SNE picture: how close are synthetic lesions to real ones?

Every metric takes feature vectors (rows = patches): raw pixels flattened (the paper's space)
or a learned feature space (``feature_space.cnn_features``). Each comes with a percentile
bootstrap confidence interval (``n_bootstrap`` resamples, fixed seed).

How the intervals are made: the nearest-neighbour metrics (1-NN accuracy, precision / recall /
density / coverage, the normal-neighbour share, the memorisation share) are means of per-point
quantities; we compute those once and resample the *points that are scored*, keeping the
neighbour structure fixed (resampling points into their own neighbour sets would create
zero-distance duplicates and bias every NN statistic). The intervals therefore describe the
sampling of scored points, conditional on the reference sets. The Fréchet distance is
recomputed on resampled real and synthetic sets (in the fixed PCA space).
"""

from __future__ import annotations

import math

import numpy as np

CI_LEVEL = 0.95


class MetricsError(ValueError):
    """Bad input for a realism metric; the message says what to do."""


def _check(name: str, x: np.ndarray, min_rows: int = 2) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise MetricsError(f"{name}: expected a 2-D array (n_points, n_features), got shape {arr.shape}")
    if len(arr) < min_rows:
        raise MetricsError(f"{name}: needs at least {min_rows} points, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise MetricsError(f"{name}: contains NaN or infinite values")
    return arr


def _check_pair(a: np.ndarray, b: np.ndarray, names=("real", "synthetic"), min_rows: int = 2):
    a = _check(names[0], a, min_rows)
    b = _check(names[1], b, min_rows)
    if a.shape[1] != b.shape[1]:
        raise MetricsError(
            f"{names[0]} has {a.shape[1]} features but {names[1]} has {b.shape[1]}: compute both in one feature space"
        )
    return a, b


def sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a and b (float64 result, clipped at 0).

    Both sets are centred on a's mean first (less cancellation); with more than 1,024 features
    (raw pixels) the inner products run in float32 for speed, which is accurate to ~1e-6
    relative to the squared norms -- far below any nearest-neighbour distance between patches.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    centre = a.mean(axis=0)
    a, b = a - centre, b - centre
    if a.shape[1] > 1024:
        cross = (a.astype(np.float32) @ b.astype(np.float32).T).astype(np.float64)
    else:
        cross = a @ b.T
    d = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * cross
    return np.maximum(d, 0.0)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and b."""
    return np.sqrt(sq_distances(a, b))


def _self_distances(a: np.ndarray) -> np.ndarray:
    d = distances(a, a)
    np.fill_diagonal(d, np.inf)
    return d


def estimate(value: float, boot: np.ndarray | None, n_bootstrap: int, level: float = CI_LEVEL) -> dict:
    """A metric value with its percentile bootstrap interval, as a JSON-ready dict."""
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


def bootstrap_means(groups_of_values: list[np.ndarray], weights: list[float] | None, n_bootstrap: int,
                    seed: int) -> np.ndarray:
    """Bootstrap distribution of a (weighted) combination of group means, each group resampled
    with replacement independently (stratified bootstrap)."""
    rng = np.random.default_rng(seed)
    weights = weights or [1.0 / len(groups_of_values)] * len(groups_of_values)
    out = np.zeros(n_bootstrap)
    for vals, w in zip(groups_of_values, weights, strict=True):
        vals = np.asarray(vals, dtype=np.float64)
        idx = rng.integers(0, len(vals), size=(n_bootstrap, len(vals)))
        out += w * vals[idx].mean(axis=1)
    return out


# ----------------------------------------------------------------------------- 1-NN two-sample test


def one_nn_accuracy(real: np.ndarray, synthetic: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                    balance: bool = True) -> dict:
    """Leave-one-out 1-nearest-neighbour two-sample accuracy (Lopez-Paz & Oquab 2017).

    Each point of the pooled set is classified by the label of its nearest other point; the
    accuracy over all points is 0.5 when the two sets are indistinguishable, 1.0 when they are
    fully separated, and below 0.5 when synthetic points copy real ones (each synthetic point's
    nearest neighbour is its real original). With ``balance`` (default) the larger set is
    subsampled (fixed seed) to the size of the smaller one, since 0.5 is the chance level only
    for equal sets; ``n_real`` / ``n_synthetic`` report the sizes used.
    """
    real, synthetic = _check_pair(real, synthetic)
    n_given = (len(real), len(synthetic))
    if balance and len(real) != len(synthetic):
        # 0.5 is the chance level only for equal sets: subsample the larger one (fixed seed)
        m = min(len(real), len(synthetic))
        pick = np.random.default_rng(seed + 99)
        if len(real) > m:
            real = real[np.sort(pick.choice(len(real), m, replace=False))]
        else:
            synthetic = synthetic[np.sort(pick.choice(len(synthetic), m, replace=False))]
    pooled = np.vstack([real, synthetic])
    labels = np.r_[np.zeros(len(real), dtype=int), np.ones(len(synthetic), dtype=int)]
    d = _self_distances(pooled)
    nn = np.argmin(d, axis=1)
    correct = (labels[nn] == labels).astype(float)
    c_real, c_syn = correct[: len(real)], correct[len(real):]
    n = len(correct)
    w = [len(real) / n, len(synthetic) / n]
    boot = bootstrap_means([c_real, c_syn], w, n_bootstrap, seed) if n_bootstrap else None
    out = estimate(correct.mean(), boot, n_bootstrap)
    out["accuracy_real"] = float(c_real.mean())
    out["accuracy_synthetic"] = float(c_syn.mean())
    out["n_real"], out["n_synthetic"] = len(real), len(synthetic)
    out["n_given"] = list(n_given)
    return out


# ----------------------------------------------------------------------------- precision/recall/density/coverage


def prdc(real: np.ndarray, synthetic: np.ndarray, k: int = 5, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Precision, recall, density and coverage of Naeem et al. (2020), k-NN balls.

    Each real point gets a ball of radius = distance to its k-th nearest real neighbour (and
    each synthetic point one among synthetic points, for recall). Precision: share of synthetic
    points inside some real ball. Recall: share of real points inside some synthetic ball.
    Density: mean number of real balls containing a synthetic point, divided by k (about 1 when
    the distributions match). Coverage: share of real balls containing at least one synthetic
    point. Identical sets give 1 for all four; disjoint sets give 0.
    """
    real, synthetic = _check_pair(real, synthetic, min_rows=k + 1)
    r_real = np.sort(_self_distances(real), axis=1)[:, k - 1]
    r_syn = np.sort(_self_distances(synthetic), axis=1)[:, k - 1]
    d_rs = distances(real, synthetic)  # (n_real, n_syn)
    inside = d_rs < r_real[:, None]
    precision_j = inside.any(axis=0).astype(float)
    density_j = inside.sum(axis=0) / k
    coverage_i = inside.any(axis=1).astype(float)
    recall_i = (d_rs < r_syn[None, :]).any(axis=1).astype(float)
    out = {"k": k}
    for name, vals, s in (("precision", precision_j, 1), ("recall", recall_i, 2),
                          ("density", density_j, 3), ("coverage", coverage_i, 4)):
        boot = bootstrap_means([vals], [1.0], n_bootstrap, seed + s) if n_bootstrap else None
        out[name] = estimate(vals.mean(), boot, n_bootstrap)
    return out


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2}) between two Gaussians.

    The trace of the matrix square root is computed as the sum of square roots of the
    eigenvalues of C1^{1/2} C2 C1^{1/2} (symmetric, so no complex round-off)."""
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
    """Fréchet distance between real and synthetic in a PCA space fitted on the real set.

    ``n_components`` dims (None: all, capped at n_real - 1 so the covariance is estimable).
    Both sets are projected with the same PCA; the bootstrap resamples both sets (bias-shifted
    percentile interval). Also reported, at equal (half) sample sizes because FD is biased
    upwards in small samples: real half vs the other real half (what "no difference" looks like)
    and the same real half vs half of the synthetic set.
    """
    from sklearn.decomposition import PCA

    real, synthetic = _check_pair(real, synthetic, min_rows=3)
    dims = real.shape[1] if n_components is None else n_components
    dims = int(min(dims, real.shape[1], len(real) - 1))
    pca = PCA(n_components=dims, random_state=seed).fit(real)
    zr, zs = pca.transform(real), pca.transform(synthetic)
    value = _fd_of_samples(zr, zs)
    rng = np.random.default_rng(seed)
    boot = None
    if n_bootstrap:
        boot = np.array([
            _fd_of_samples(zr[rng.integers(0, len(zr), len(zr))], zs[rng.integers(0, len(zs), len(zs))])
            for _ in range(n_bootstrap)
        ])
        # resampling with replacement inflates FD (duplicates shrink the effective sample);
        # shift the percentile interval by the bootstrap bias so it brackets the estimate
        boot = np.maximum(boot - (boot.mean() - value), 0.0)  # a distance is never negative
    out = estimate(value, boot, n_bootstrap)
    perm_r, perm_s = rng.permutation(len(zr)), rng.permutation(len(zs))
    half = min(len(zr), len(zs)) // 2
    if half > dims:
        # yardstick at equal sample sizes: real half A vs real half B, and real half A vs synthetic half
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
    """Share of synthetic lesions whose k nearest real neighbours (lesions + normal tissue) are
    mostly (> ``threshold``) normal tissue -- the paper's "synthetic outliers". "Mostly" is
    class-balanced: each neighbour counts 1 / (size of its group), so unequal group sizes do
    not shift the call (for equal groups it is the plain majority). The same share
    for real lesions (leave-one-out) is the reference: a few real lesions look like normal
    tissue too (the paper's arrowed real outlier)."""
    synthetic = _check("synthetic", synthetic, 1)
    lesion, normal = _check_pair(lesion, normal, names=("lesion", "normal"), min_rows=1)
    ref = np.vstack([lesion, normal])
    is_normal = np.r_[np.zeros(len(lesion), bool), np.ones(len(normal), bool)]
    k = min(k, len(ref) - 1)

    def shares(points: np.ndarray, loo: bool) -> np.ndarray:
        d = distances(points, ref)
        if loo:
            d[np.arange(len(points)), np.arange(len(points))] = np.inf
        nn = np.argpartition(d, k - 1, axis=1)[:, :k]
        # class-balanced share (each neighbour weighted by 1 / its group size)
        c_n = is_normal[nn].sum(axis=1) / len(normal)
        c_l = (k - is_normal[nn].sum(axis=1)) / len(lesion)
        return c_n / np.maximum(c_n + c_l, 1e-300)

    s_syn = shares(synthetic, False)
    s_real = shares(lesion, True)
    flag_syn = (s_syn > threshold).astype(float)
    flag_real = (s_real > threshold).astype(float)
    boot = bootstrap_means([flag_syn], [1.0], n_bootstrap, seed) if n_bootstrap else None
    out = estimate(flag_syn.mean(), boot, n_bootstrap)
    boot_r = bootstrap_means([flag_real], [1.0], n_bootstrap, seed + 1) if n_bootstrap else None
    out["real_lesion_reference"] = estimate(flag_real.mean(), boot_r, n_bootstrap)
    out["k"], out["threshold"] = k, threshold
    out["per_point_synthetic"] = s_syn.tolist()
    return out


# ----------------------------------------------------------------------------- memorisation


def memorisation_check(synthetic: np.ndarray, real_train: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                       n_pairs: int = 8, quantile: float = 0.05) -> dict:
    """Does the generator copy its training patches?

    For each synthetic patch: the distance to its nearest real *training* patch (d_syn). The
    DCGAN of notebook 02 trains on all real lesions of the store, so no real lesion is truly
    held out; the reference is therefore leave-one-out: each real lesion's distance to its
    nearest *other* real lesion (d_real), i.e. how far a fresh real lesion would lie from a
    training set of n - 1. A generator that memorises gives d_syn far below d_real. Reported:
    medians and their ratio (about 1 or above: no sign of copying), the share of synthetic
    patches closer to a training patch than the ``quantile`` (5%) of d_real (about 5% when
    synthetic patches behave like fresh real ones), exact duplicates, and the closest pairs.
    """
    synthetic, real_train = _check_pair(synthetic, real_train, names=("synthetic", "real training"))
    d_sr = distances(synthetic, real_train)
    nn_syn = np.argmin(d_sr, axis=1)
    d_syn = d_sr[np.arange(len(synthetic)), nn_syn]
    d_real = np.min(_self_distances(real_train), axis=1)
    cut = float(np.quantile(d_real, quantile))
    close = (d_syn < cut).astype(float)
    rng = np.random.default_rng(seed)
    boot_ratio = None
    if n_bootstrap:
        boot_ratio = np.array([
            np.median(d_syn[rng.integers(0, len(d_syn), len(d_syn))])
            / np.median(d_real[rng.integers(0, len(d_real), len(d_real))])
            for _ in range(n_bootstrap)
        ])
    order = np.argsort(d_syn)[:n_pairs]
    out = {
        "median_ratio_synthetic_to_real": estimate(np.median(d_syn) / np.median(d_real), boot_ratio, n_bootstrap),
        "median_nn_distance_synthetic_to_train": float(np.median(d_syn)),
        "median_nn_distance_real_to_train_loo": float(np.median(d_real)),
        f"share_synthetic_below_real_q{int(round(quantile * 100)):02d}": estimate(
            close.mean(), bootstrap_means([close], [1.0], n_bootstrap, seed + 7) if n_bootstrap else None, n_bootstrap),
        "real_quantile_cut": cut,
        "exact_duplicates": int(np.sum(d_syn <= 1e-6 * max(float(np.median(d_real)), 1e-12))),
        "closest_pairs": [
            {"synthetic_index": int(j), "real_index": int(nn_syn[j]), "distance": float(d_syn[j])} for j in order
        ],
        "reference": "leave-one-out real-to-real NN distances (the DCGAN trained on all real lesions)",
    }
    return out


# ----------------------------------------------------------------------------- all together


def realism_metrics(lesion: np.ndarray, synthetic: np.ndarray, normal: np.ndarray, n_bootstrap: int = 1000,
                    seed: int = 0, k_prdc: int = 5, k_neighbours: int = 10, fd_dims: int | None = 32) -> dict:
    """All metrics for one feature space: rows are patches, the three groups in one space."""
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


def summary_rows(space: str, m: dict) -> list[dict]:
    """Flat table rows (metric, value, CI) of one feature space's metrics, for the notebook."""
    def row(name, e, ref=""):
        return {"feature_space": space, "metric": name, "value": e["value"], "ci_low": e["ci_low"],
                "ci_high": e["ci_high"], "reference": ref}

    fd = m["frechet_distance"]
    nns = m["synthetic_normal_neighbour_share"]
    mem = m["memorisation"]
    q_key = next(k for k in mem if k.startswith("share_synthetic_below_real_q"))
    rows = [
        row("1-NN accuracy real vs synthetic", m["one_nn_accuracy"], "0.5 = indistinguishable, 1 = separable"),
        row("precision", m["prdc"]["precision"], "1 = every synthetic patch looks real"),
        row("recall", m["prdc"]["recall"], "1 = synthetic set covers real variety"),
        row("density", m["prdc"]["density"], "about 1 when distributions match"),
        row("coverage", m["prdc"]["coverage"], "1 = every real neighbourhood has a synthetic patch"),
        row(f"Fréchet distance (PCA {fd['pca_dims']} dims)", fd,
            f"at half size: real vs real {fd['real_split_half']:.4g}, "
            f"real vs synthetic {fd['real_half_vs_synthetic_half']:.4g}"),
        row("synthetic with mostly normal-tissue neighbours", nns,
            f"real lesions: {nns['real_lesion_reference']['value']:.3f}"),
        row("memorisation: median NN distance ratio synth/real", mem["median_ratio_synthetic_to_real"],
            "<< 1 would mean copying"),
        row(f"memorisation: share below real {q_key[-2:]}% NN distance", mem[q_key],
            f"about {int(q_key[-2:]) / 100:.2f} if no copying"),
    ]
    for r in rows:
        for key in ("value", "ci_low", "ci_high"):
            r[key] = None if r[key] is None or (isinstance(r[key], float) and math.isnan(r[key])) else round(r[key], 4)
    return rows
