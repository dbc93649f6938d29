"""Stage 03: does a generator copy its training patches? The memorisation check and
authenticity (Alaa et al. 2022), each with its real-vs-real reference.

Both compare each synthetic patch's distance to its nearest real *training* patch with how close
real patches lie to each other. Part of the realism metrics (``feature_space.metrics`` re-exports
:func:`memorisation_check` and :func:`authenticity` and calls them); distances come from
``neighbours``, intervals from ``metric_estimates``, random streams from ``feature_space.streams``.
Reads and writes no files.
"""

from __future__ import annotations

import numpy as np

from mammo_lib.feature_space.metric_estimates import bootstrap as _bootstrap
from mammo_lib.feature_space.metric_estimates import check_pair as _check_pair
from mammo_lib.feature_space.metric_estimates import estimate, mean_estimate
from mammo_lib.feature_space.neighbours import distances, self_distances
from mammo_lib.feature_space.streams import rng as stream_rng

__all__ = ["memorisation_check", "authenticity"]


def _median_ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(x, axis=axis) / np.median(y, axis=axis)


def _authentic(d_to_train: np.ndarray, loo_train: np.ndarray) -> np.ndarray:
    """1.0 for each row point that is authentic, 0.0 otherwise: its distance to its nearest
    training point is not below that training point's own distance to its nearest other
    training point. ``d_to_train`` (n, m) distances to the m training points, ``loo_train`` (m,)
    their leave-one-out nearest-neighbour distances."""
    nn = np.argmin(d_to_train, axis=1)
    return (d_to_train[np.arange(len(d_to_train)), nn] >= loo_train[nn]).astype(float)


def _authenticity(d_sr: np.ndarray, d_rr: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    """:func:`authenticity` from the synthetic-to-real distances ``d_sr`` (n_syn, n_real) and the
    real self-distances ``d_rr`` (n_real, n_real, ``inf`` on the diagonal)."""
    out = mean_estimate([_authentic(d_sr, d_rr.min(axis=1))], [1.0], n_bootstrap,
                        stream_rng(seed, "authenticity_bootstrap", 0))
    n = len(d_rr)
    held, train = np.split(stream_rng(seed, "authenticity_split").permutation(n), [n // 2])
    if len(held) >= 1 and len(train) >= 2:
        loo_half = d_rr[np.ix_(train, train)].min(axis=1)
        out["real_vs_real"] = mean_estimate([_authentic(d_rr[np.ix_(held, train)], loo_half)], [1.0], n_bootstrap,
                                            stream_rng(seed, "authenticity_bootstrap", 1))
        out["synthetic_vs_training_half"] = float(_authentic(d_sr[:, train], loo_half).mean())
    else:
        out["real_vs_real"] = estimate(float("nan"), None, n_bootstrap)
        out["synthetic_vs_training_half"] = float("nan")
    out["n_training_half"], out["n_held_out_half"] = len(train), len(held)
    return out


def authenticity(synthetic: np.ndarray, real_train: np.ndarray, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Authenticity: the share of synthetic patches that are not near-copies of a training patch.

    A synthetic patch is *unauthentic* when its distance to its nearest real training patch is
    smaller than that training patch's own distance to its nearest other training patch: it
    sits closer to a training patch than any other real patch does, as a copy (or a slightly
    altered copy) would. Even fresh samples of the real distribution fall that close now and
    then, so the share expected without copying is below 1; the yardstick measures it: the
    real lesions are split in two random halves (the "authenticity_split" stream), one half
    plays the training set and the other the synthetic set. Compare the synthetic share with
    that real-vs-real share (or, at exactly the yardstick's training-set size,
    ``synthetic_vs_training_half``); a clearly lower synthetic share means copying.

    Parameters
    ----------
    synthetic, real_train : float array, shape (n_synthetic, d) and (n_real, d)
        Feature vectors of the synthetic patches and of the generator's real training patches.
    n_bootstrap : int
        Resamples of each interval (the scored points are resampled, the training set fixed).
    seed : int
        Keys the "authenticity_split" and "authenticity_bootstrap" streams.

    Returns
    -------
    dict
        :class:`mammo_lib.feature_space.results.Authenticity`: the estimate (share of authentic
        synthetic patches, in [0, 1]), ``real_vs_real`` (the same share of the held-out real
        half against the other half; an estimate, NaN with fewer than 3 real patches),
        ``synthetic_vs_training_half`` (the synthetic share against that training half only),
        ``n_training_half`` and ``n_held_out_half``.

    Raises
    ------
    MetricsError
        When a set is not 2-D, has fewer than 2 rows or non-finite values, or the feature
        counts differ.

    References
    ----------
    A. M. Alaa, B. van Breugel, E. Saveliev and M. van der Schaar, "How Faithful is your
    Synthetic Data? Sample-level Metrics for Evaluating and Auditing Generative Models",
    ICML 2022.
    """
    synthetic, real_train = _check_pair(synthetic, real_train, names=("synthetic", "real training"))
    return _authenticity(distances(synthetic, real_train), self_distances(real_train), n_bootstrap, seed)


def memorisation_check(synthetic: np.ndarray, real_train: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                       n_pairs: int = 8, quantile: float = 0.05) -> dict:
    """Does the generator copy its training patches?

    For each synthetic patch: the distance to its nearest real *training* patch (d_syn). The
    DCGAN of notebook 02 trains on all real lesions of the store, so no real lesion is truly
    held out; the reference is therefore leave-one-out: each real lesion's distance to its
    nearest *other* real lesion (d_real), i.e. how far a fresh real lesion would lie from a
    training set of n - 1. A generator that memorises gives d_syn far below d_real. The
    per-patch version of the same question is :func:`authenticity` (Alaa et al. 2022),
    reported inside this check with its real-vs-real yardstick.

    Parameters
    ----------
    synthetic, real_train : float array, shape (n_synthetic, d) and (n_real, d)
    n_bootstrap : int
    seed : int
        Keys the "memorisation_bootstrap" streams (and :func:`authenticity`'s).
    n_pairs : int
        Closest synthetic / real pairs reported.
    quantile : float
        Quantile of d_real used as the "too close" cut (0.05).

    Returns
    -------
    dict
        :class:`mammo_lib.feature_space.results.Memorisation`: ``median_ratio_synthetic_to_real`` (estimate; about 1 or above:
        no sign of copying), the two medians (feature units), the share of synthetic patches
        closer than the ``quantile`` of d_real (estimate, key
        ``share_synthetic_below_real_qNN``; about ``quantile`` without copying),
        ``real_quantile_cut``, ``exact_duplicates``, ``closest_pairs``, ``authenticity``
        (:func:`authenticity`) and ``reference``.

    Raises
    ------
    MetricsError
        When a set is not 2-D, has fewer than 2 rows or non-finite values, or the feature
        counts differ.
    """
    synthetic, real_train = _check_pair(synthetic, real_train, names=("synthetic", "real training"))
    d_sr = distances(synthetic, real_train)
    nn_syn = np.argmin(d_sr, axis=1)
    d_syn = d_sr[np.arange(len(synthetic)), nn_syn]
    d_rr = self_distances(real_train)
    d_real = np.min(d_rr, axis=1)
    cut = float(np.quantile(d_real, quantile))
    close = (d_syn < cut).astype(float)
    res = _bootstrap((d_syn, d_real), _median_ratio, n_bootstrap, stream_rng(seed, "memorisation_bootstrap", 0))
    ratio = estimate(np.median(d_syn) / np.median(d_real), None, n_bootstrap)
    if res is not None:
        ratio["ci_low"], ratio["ci_high"] = (float(c) for c in res.confidence_interval)
    order = np.argsort(d_syn)[:n_pairs]
    return {
        "median_ratio_synthetic_to_real": ratio,
        "median_nn_distance_synthetic_to_train": float(np.median(d_syn)),
        "median_nn_distance_real_to_train_loo": float(np.median(d_real)),
        f"share_synthetic_below_real_q{int(round(quantile * 100)):02d}": mean_estimate(
            [close], [1.0], n_bootstrap, stream_rng(seed, "memorisation_bootstrap", 1)),
        "real_quantile_cut": cut,
        "exact_duplicates": int(np.sum(d_syn <= 1e-6 * max(float(np.median(d_real)), 1e-12))),
        "closest_pairs": [
            {"synthetic_index": int(j), "real_index": int(nn_syn[j]), "distance": float(d_syn[j])} for j in order
        ],
        "authenticity": _authenticity(d_sr, d_rr, n_bootstrap, seed),
        "reference": "leave-one-out real-to-real NN distances (the DCGAN trained on all real lesions)",
    }
