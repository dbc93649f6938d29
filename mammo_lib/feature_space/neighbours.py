"""Squared distances, nearest neighbours and the class-balanced normal-tissue share.

The one home of the nearest-neighbour arithmetic of stage 03: the t-SNE affinities
(``feature_space.tsne.affinity``), the outlier marks (``feature_space``) and the realism metrics
(``feature_space.metrics``) all compute distances and neighbour shares here. Reads and writes no files.
"""

from __future__ import annotations

import numpy as np

# above this many features (raw pixels) the cross products of sq_distances run in float32
FLOAT32_CROSS_ABOVE = 1024


def sq_distances(a: np.ndarray, b: np.ndarray | None = None, *, centre: bool = True,
                 float32_above: int | None = FLOAT32_CROSS_ABOVE) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (``b=None``: ``a`` itself).

    Computed as ``|a_i|^2 + |b_j|^2 - 2 a_i.b_j`` in float64 and clipped at 0. With
    ``centre`` both sets are first centred on ``a``'s mean (less cancellation); with more than
    ``float32_above`` features the cross products run in float32 for speed, accurate to ~1e-6
    relative to the squared norms -- far below any nearest-neighbour distance between patches.
    For ``b=None`` the diagonal is exactly 0 and the matrix symmetric (computed through
    :func:`gram`).

    Parameters
    ----------
    a : float array, shape (n, d)
    b : float array, shape (m, d), optional
    centre : bool
        Centre on ``a``'s mean first.
    float32_above : int or None
        Feature count above which the cross products use float32 (None: always float64,
        exact to float64 round-off; the t-SNE affinities use that).

    Returns
    -------
    float64 array, shape (n, m) (``(n, n)`` for ``b=None``)
        Squared distances in the units of the features, squared.
    """
    if b is None:
        if float32_above is not None and np.shape(a)[1] > float32_above:
            return sq_distances_from_gram(gram(a, centre=centre, float32_above=float32_above))
        a = np.asarray(a, dtype=np.float64)
        if centre:
            a = a - a.mean(axis=0)
        return sq_distances_from_gram(a @ a.T, np.einsum("ij,ij->i", a, a))
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if centre:
        c = a.mean(axis=0)
        a, b = a - c, b - c
    if float32_above is not None and a.shape[1] > float32_above:
        cross = (a.astype(np.float32) @ b.astype(np.float32).T).astype(np.float64)
    else:
        cross = a @ b.T
    d = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * cross
    np.maximum(d, 0.0, out=d)
    return d


def gram(a: np.ndarray, *, centre: bool = True, float32_above: int | None = FLOAT32_CROSS_ABOVE) -> np.ndarray:
    """Inner products of the rows of ``a`` with each other, G = A A^T (optionally centred first).

    Parameters
    ----------
    a : float array, shape (n, d)
    centre : bool
        Subtract the column means first (then G is the centred Gram matrix whose top
        eigenvectors are the principal-component scores).
    float32_above : int or None
        As :func:`sq_distances`: above this many features the products run in float32 (one
        symmetric BLAS product, half the work of a general one).

    Returns
    -------
    float64 array, shape (n, n)
        Symmetric.
    """
    if float32_above is not None and np.shape(a)[1] > float32_above:
        a32 = np.asarray(a, dtype=np.float32)
        if centre:
            a32 = a32 - a32.mean(axis=0, dtype=np.float64).astype(np.float32)
        return (a32 @ a32.T).astype(np.float64)
    a = np.asarray(a, dtype=np.float64)
    if centre:
        a = a - a.mean(axis=0)
    return a @ a.T


def sq_distances_from_gram(g: np.ndarray, sq: np.ndarray | None = None) -> np.ndarray:
    """Squared distances |a_i|^2 + |a_j|^2 - 2 a_i.a_j from a Gram matrix ``g`` (n, n) and the
    squared norms ``sq`` (default: the diagonal of ``g``); float64 (n, n), clipped at 0,
    exactly 0 on the diagonal."""
    sq = np.diag(g).copy() if sq is None else sq
    d = sq[:, None] + sq[None, :] - 2.0 * g
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def distances(a: np.ndarray, b: np.ndarray | None = None, **kwargs) -> np.ndarray:
    """Euclidean distances: the square root of :func:`sq_distances` (same arguments).

    Returns
    -------
    float64 array, shape (n, m)
    """
    return np.sqrt(sq_distances(a, b, **kwargs))


def self_distances(a: np.ndarray) -> np.ndarray:
    """Euclidean distances within ``a`` with ``inf`` on the diagonal (a point is not its own
    neighbour), float64 (n, n)."""
    d = distances(a, a)
    np.fill_diagonal(d, np.inf)
    return d


def nearest(d: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of the ``k`` smallest entries of each row of a distance matrix ``d``
    (unordered within a row; ``k`` >= 1)."""
    return np.argpartition(d, k - 1, axis=1)[:, :k]


def balanced_share(n_normal_nn: np.ndarray, k: int, n_normal: int, n_lesion: int) -> np.ndarray:
    """Share of normal tissue among k neighbours, class-balanced.

    Each neighbour counts with weight 1 / (size of its group), so a pool with more normal than
    lesion patches does not make every point look like normal tissue. Equals the plain share
    when the groups are equal.

    Parameters
    ----------
    n_normal_nn : int array, shape (n,)
        Number of normal-tissue points among each point's k neighbours.
    k : int
        Neighbours per point.
    n_normal, n_lesion : int
        Sizes of the normal-tissue and lesion groups of the neighbour pool.

    Returns
    -------
    float64 array, shape (n,)
        Shares in [0, 1].
    """
    c_n = np.asarray(n_normal_nn, dtype=np.float64) / max(n_normal, 1)
    c_l = (k - np.asarray(n_normal_nn, dtype=np.float64)) / max(n_lesion, 1)
    return c_n / np.maximum(c_n + c_l, 1e-300)


def normal_share_of_neighbours(d: np.ndarray, is_normal: np.ndarray, k: int) -> np.ndarray:
    """Class-balanced share of normal tissue among each row's ``k`` nearest pool points.

    Parameters
    ----------
    d : float array, shape (n, m)
        Distances (or squared distances) of n points to the m points of the pool (lesions and
        normal tissue); set an entry to ``inf`` to exclude it (a point itself).
    is_normal : bool array, shape (m,)
        Which pool points are normal tissue (the others are lesions).
    k : int
        Neighbours per point, 1 <= k <= m - 1.

    Returns
    -------
    float64 array, shape (n,)
        :func:`balanced_share` of each point's neighbours.
    """
    is_normal = np.asarray(is_normal, dtype=bool)
    nn = nearest(d, k)
    return balanced_share(is_normal[nn].sum(axis=1), k, int(is_normal.sum()), int((~is_normal).sum()))
