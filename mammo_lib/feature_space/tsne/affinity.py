"""t-SNE input affinities P, as scikit-learn's Barnes-Hut TSNE computes them.

Separated from the optimisation (``tsne``) the way openTSNE separates ``affinity`` from
``tsne``: k = min(n - 1, floor(3 * perplexity + 1)) nearest neighbours on squared Euclidean
distances, a per-point bisection on the Gaussian precision so each row's entropy matches
log(perplexity), then the symmetric joint P = (P + P^T) / sum. Reads and writes no files.

References
----------
L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from mammo_lib.feature_space.arrays import FeatureSpaceError, FeatureSpaceWarning
from mammo_lib.feature_space.neighbours import gram as gram_matrix
from mammo_lib.feature_space.neighbours import sq_distances_from_gram


def resolve_perplexity(perplexity: float, n_points: int, policy: str = "clamp") -> tuple[float, str | None]:
    """Check the perplexity against the number of points.

    t-SNE needs about 3 * perplexity neighbours per point, so the perplexity must be at most
    (n - 1) / 3. ``policy="clamp"`` (the default, so a small data set still gives a picture)
    lowers it to floor((n - 1) / 3) and returns a warning text (also issued as a
    :class:`FeatureSpaceWarning`); ``policy="raise"`` raises with advice instead.

    Parameters
    ----------
    perplexity : float
        Requested perplexity (> 0), an effective number of neighbours.
    n_points : int
        Number of points to embed.
    policy : {"clamp", "raise"}

    Returns
    -------
    perplexity : float
        The perplexity to use.
    note : str or None
        The warning text when it was clamped, else None.

    Raises
    ------
    FeatureSpaceError
        When ``perplexity`` <= 0, ``n_points`` < 4, the policy is unknown, or (policy "raise")
        the perplexity is above (n - 1) / 3.
    """
    if not perplexity > 0:
        raise FeatureSpaceError(f"perplexity must be > 0, got {perplexity}")
    if n_points < 4:
        raise FeatureSpaceError(
            f"t-SNE needs at least 4 points, got {n_points}: add patches to the stores"
        )
    limit = math.floor((n_points - 1) / 3)
    if perplexity <= limit:
        return float(perplexity), None
    advice = (
        f"perplexity {perplexity:g} is too large for {n_points} points (at most (n-1)/3 = {limit}); "
        f"use more patches per group or a perplexity <= {limit}"
    )
    if policy == "raise":
        raise FeatureSpaceError(advice)
    if policy != "clamp":
        raise FeatureSpaceError(f"unknown perplexity policy {policy!r}; use 'clamp' or 'raise'")
    msg = f"{advice}; clamped to {limit}"
    warnings.warn(msg, FeatureSpaceWarning, stacklevel=2)
    return float(limit), msg


def binary_search_perplexity(sq_dist: np.ndarray, perplexity: float, n_steps: int = 100,
                             tol: float = 1e-5) -> np.ndarray:
    """Conditional probabilities p_{j|i} whose entropy matches log(perplexity).

    The bisection on the precision beta follows scikit-learn's ``_binary_search_perplexity``
    (start 1, double or halve until bracketed, 100 steps, tolerance 1e-5 on the entropy),
    vectorised over all rows; distances are shifted by the row minimum for numerical safety
    (the result is unchanged).

    Parameters
    ----------
    sq_dist : float array, shape (n, k)
        Squared distances of each point to its k neighbours.
    perplexity : float
        Target perplexity (> 0).
    n_steps : int
        Bisection steps at most.
    tol : float
        Tolerance on the entropy (nats).

    Returns
    -------
    float64 array, shape (n, k)
        Rows sum to 1.
    """
    d = np.asarray(sq_dist, dtype=np.float64)
    d = d - d.min(axis=1, keepdims=True)
    n = len(d)
    target = math.log(perplexity)
    beta = np.ones(n)
    beta_min = np.full(n, -np.inf)
    beta_max = np.full(n, np.inf)
    active = np.ones(n, dtype=bool)
    p = np.empty_like(d)
    for _ in range(n_steps):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        pr = np.exp(-d[rows] * beta[rows, None])
        s = np.maximum(pr.sum(axis=1), 1e-8)
        pr /= s[:, None]
        p[rows] = pr
        entropy = np.log(s) + beta[rows] * np.einsum("ij,ij->i", d[rows], pr)
        diff = entropy - target
        done = np.abs(diff) <= tol
        up = (diff > 0) & ~done
        down = (diff <= 0) & ~done
        r_up, r_down = rows[up], rows[down]
        beta_min[r_up] = beta[r_up]
        beta[r_up] = np.where(np.isinf(beta_max[r_up]), beta[r_up] * 2.0, (beta[r_up] + beta_max[r_up]) / 2.0)
        beta_max[r_down] = beta[r_down]
        beta[r_down] = np.where(np.isinf(beta_min[r_down]), beta[r_down] / 2.0, (beta[r_down] + beta_min[r_down]) / 2.0)
        active[rows[done]] = False
    return p


def neighbour_count(n_points: int, perplexity: float) -> int:
    """k = min(n - 1, floor(3 * perplexity + 1)), scikit-learn's neighbour count."""
    return min(n_points - 1, int(3.0 * perplexity + 1))


def conditional_neighbours(x: np.ndarray, perplexity: float,
                           gram: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest neighbours and its conditional probabilities p_{j|i} on them.

    Squared distances come from the centred Gram matrix (float32 products above 1,024
    features, see :func:`mammo_lib.feature_space.neighbours.gram`), accurate to ~1e-6 of a typical distance;
    they are rounded to float32 before the bisection, as scikit-learn's are.

    Parameters
    ----------
    x : float array, shape (n, d)
    perplexity : float
    gram : float array, shape (n, n), optional
        ``neighbours.gram(x)`` when already computed (it also gives the PCA initialisation).

    Returns
    -------
    nn : int array, shape (n, k)
        Neighbour indices (k from :func:`neighbour_count`).
    cond : float64 array, shape (n, k)
        p_{j|i}; each row sums to 1.
    """
    n = len(x)
    d = sq_distances_from_gram(gram_matrix(x) if gram is None else gram)
    np.fill_diagonal(d, np.inf)
    k = neighbour_count(n, perplexity)
    nn = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d, axis=1)[:, :k]
    nn_d = np.take_along_axis(d, nn, axis=1)
    cond = binary_search_perplexity(nn_d.astype(np.float32).astype(np.float64), perplexity)
    return nn, cond


def joint_probabilities(x: np.ndarray, perplexity: float, gram: np.ndarray | None = None) -> np.ndarray:
    """Dense symmetric joint P, as scikit-learn's Barnes-Hut TSNE computes it.

    Parameters
    ----------
    x : float array, shape (n, d)
        The points (for the paper: raw pixels in [0, 1], d = 16,384).
    perplexity : float
        At most (n - 1) / 3 (see :func:`resolve_perplexity`).
    gram : float array, shape (n, n), optional
        As :func:`conditional_neighbours`.

    Returns
    -------
    float64 array, shape (n, n)
        Symmetric, zero diagonal, sums to 1.

    References
    ----------
    L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9, 2008, eq. (1).
    """
    n = len(x)
    nn, cond = conditional_neighbours(x, perplexity, gram)
    p = np.zeros((n, n), dtype=np.float64)
    np.put_along_axis(p, nn, cond, axis=1)
    p = p + p.T
    p /= max(p.sum(), np.finfo(np.float64).eps)
    return p
