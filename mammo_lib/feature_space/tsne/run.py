"""Stage 03's t-SNE: the optimisation and its backends (the affinities are in ``feature_space.tsne.affinity``).

Backends (``run_tsne(backend=...)``), all with PCA initialisation and scikit-learn's schedule:

- ``"exact-numba"`` (default): the exact gradient as one fused, compiled pass over all pairs
  (``feature_space.tsne.kernels``). The affinities P are computed as scikit-learn's Barnes-Hut TSNE does
  (:func:`mammo_lib.feature_space.tsne.affinity.joint_probabilities`), and the optimisation follows
  scikit-learn's schedule exactly (PCA init scaled to std 1e-4, early exaggeration 12 for 250
  iterations with momentum 0.5, then momentum 0.8, learning rate 'auto' = max(N / 12 / 4, 50),
  delta-bar-delta gains with min_gain 0.01, the same stopping checks every 50 iterations), but
  the gradient is the *exact* one. In the paper's regime (N = 1,500, perplexity 250 -> ~750
  neighbours, an almost dense P) one pass over N^2 pairs is cheaper than a Barnes-Hut tree walk
  and has no approximation error. Bitwise the same run to run and for any thread count (one
  thread by default). It needs O(N^2) memory and time per step, so it is refused above
  ``EXACT_MAX_POINTS``.
- ``"exact-torch"``: the same exact gradient as PyTorch tensor operations (``tsne.torch_gradient``),
  on a CUDA GPU when torch sees one.
- ``"sklearn"``: ``sklearn.manifold.TSNE`` (Barnes-Hut, angle 0.5), the reference.
- ``"opentsne"``: openTSNE with the FFT-interpolated gradient; the scalable path
  (:func:`embed_large`) for tens of thousands of patches.

Measured speeds are printed by ``benchmarks/bench_tsne.py``.

References
----------
L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
L. van der Maaten, "Accelerating t-SNE using Tree-Based Algorithms", JMLR 15:3221-3245, 2014.
G. C. Linderman et al., "Fast interpolation-based t-SNE for improved visualization of
single-cell RNA-seq data", Nature Methods 16:243-245, 2019 (openTSNE's FFT gradient).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from mammo_lib.feature_space.arrays import FeatureSpaceError, check_patch_array, flatten_pixels
from mammo_lib.feature_space.neighbours import gram, sq_distances
from mammo_lib.feature_space.streams import rng as stream_rng
from mammo_lib.feature_space.tsne.affinity import joint_probabilities, resolve_perplexity
from mammo_lib.feature_space.tsne.kernels import tsne_exact_numba
from mammo_lib.feature_space.tsne.optimiser import EARLY_EXAGGERATION, EXPLORATION_N_ITER
from mammo_lib.feature_space.tsne.torch_gradient import tsne_exact_torch
from mammo_lib.progress import QuarterProgress

PAPER_PERPLEXITY = 250.0
PAPER_N_ITER = 4000
BACKENDS = ("exact-numba", "exact-torch", "sklearn", "opentsne")
DEFAULT_BACKEND = "exact-numba"
EXACT_MAX_POINTS = 12_000
EXACT_TORCH_MAX_POINTS = EXACT_MAX_POINTS
# stopping rules that never fire: every one of n_iter iterations runs
NO_EARLY_STOP = {"min_grad_norm": 0.0, "n_iter_without_progress": 10**9}


@dataclass
class TSNEResult:
    """A 2-D embedding and how it was made.

    ``embedding`` is float64 (n, 2); ``seconds`` is wall-clock time (a timing, kept out of
    every output that must be byte-identical on a rerun); ``params`` the settings used.
    """

    embedding: np.ndarray
    kl_divergence: float
    n_iter: int
    backend: str
    perplexity: float
    seconds: float
    params: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def pca_init(x: np.ndarray, seed: int) -> np.ndarray:
    """scikit-learn's PCA initialisation: first two PCs, scaled so PC1 has std 1e-4.

    Parameters
    ----------
    x : float array, shape (n, d)
    seed : int
        ``random_state`` of the PCA (its solver may be randomised).

    Returns
    -------
    float32 array, shape (n, 2)
    """
    from sklearn.decomposition import PCA

    emb = PCA(n_components=2, random_state=seed).fit_transform(np.asarray(x, dtype=np.float32))
    emb = emb.astype(np.float32)
    return emb / np.std(emb[:, 0]) * 1e-4


def pca_init_from_gram(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """scikit-learn's PCA initialisation computed from the centred Gram matrix: exact PCA.

    The first two principal-component scores are the top two eigenvectors of G = Xc Xc^T
    scaled by the square roots of their eigenvalues (a 1,500 x 1,500 eigenproblem instead of
    an SVD of 1,500 x 16,384 pixels); signs as scikit-learn's ``svd_flip`` (the largest-magnitude
    loading of each component positive); scaled so PC1 has std 1e-4.

    Parameters
    ----------
    g : float array, shape (n, n)
        ``neighbours.gram(x)`` (centred).
    x : float array, shape (n, d)
        The data (for the signs of the loadings).

    Returns
    -------
    float32 array, shape (n, 2)
    """
    from scipy.linalg import eigh

    n = len(g)
    w, u = eigh(np.asarray(g, dtype=np.float64), subset_by_index=[n - 2, n - 1])
    w, u = w[::-1], u[:, ::-1]
    x32 = np.asarray(x, dtype=np.float32)
    loadings = x32.T @ u.astype(np.float32) - np.outer(x32.mean(axis=0), u.sum(axis=0)).astype(np.float32)
    signs = np.sign(loadings[np.argmax(np.abs(loadings), axis=0), [0, 1]])
    emb = (u * np.sqrt(np.maximum(w, 0.0)) * np.where(signs == 0, 1.0, signs)).astype(np.float32)
    return emb / np.std(emb[:, 0]) * 1e-4


def kl_divergence_exact(p: np.ndarray, y: np.ndarray) -> float:
    """KL(P || Q) of a dense P and an embedding (Student-t kernel, one degree of freedom).

    Parameters
    ----------
    p : float array, shape (n, n)
        Joint affinities (sum 1), e.g. from :func:`mammo_lib.feature_space.tsne.affinity.joint_probabilities`.
    y : float array, shape (n, 2)
        The embedding.

    Returns
    -------
    float
        KL divergence in nats, computed exactly in float64.

    References
    ----------
    L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9, 2008, eq. (2), (4).
    """
    d = sq_distances(y, centre=False, float32_above=None)
    w = 1.0 / (1.0 + d)
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], np.finfo(np.float64).eps))))


def _check_tsne_input(x: np.ndarray, backend: str, n_iter: int) -> np.ndarray:
    if backend not in BACKENDS:
        raise FeatureSpaceError(f"unknown t-SNE backend {backend!r}; choose one of {list(BACKENDS)}")
    x = np.asarray(x)
    if x.ndim != 2:
        raise FeatureSpaceError(f"t-SNE input must be 2-D (n_points, n_features), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise FeatureSpaceError("t-SNE input contains NaN or infinite values; check the patch arrays")
    if n_iter < EXPLORATION_N_ITER:
        raise FeatureSpaceError(
            f"n_iter must be at least {EXPLORATION_N_ITER} (the early-exaggeration phase), got {n_iter}"
        )
    return x


def _exact_prelude(x32: np.ndarray, perp: float, seed: int, backend: str) -> tuple[np.ndarray, np.ndarray, float]:
    """P, the PCA initialisation and the learning rate of the exact backends."""
    if len(x32) > EXACT_MAX_POINTS:
        raise FeatureSpaceError(
            f"{backend} needs N^2 memory and time; {len(x32)} points is above {EXACT_MAX_POINTS}: "
            "use backend='opentsne' (or embed_large) for large collections"
        )
    g = gram(x32)
    p = joint_probabilities(x32, perp, gram=g)
    init = pca_init_from_gram(g, x32)
    return p, init, max(len(x32) / EARLY_EXAGGERATION / 4.0, 50.0)


def _run_exact_numba(x32: np.ndarray, perp: float, n_iter: int, seed: int, threads: int, stop: dict,
                     progress: bool) -> tuple[np.ndarray, float, int, dict]:
    from threadpoolctl import threadpool_limits


    with threadpool_limits(threads):
        p, init, lr = _exact_prelude(x32, perp, seed, "exact-numba")
        bar = QuarterProgress(n_iter, "t-SNE (exact-numba) iterations") if progress else None
        y, _, it = tsne_exact_numba(p, init, n_iter, lr, n_threads=threads, progress=bar, **stop)
        # the final KL, exact and in float64, of the final embedding against the plain P
        kl = kl_divergence_exact(p, y)
    return y, kl, min(it, n_iter - 1), dict(learning_rate=lr, gradient="exact (fused numba kernel, float32)")


def _run_exact_torch(x32: np.ndarray, perp: float, n_iter: int, seed: int, threads: int, stop: dict,
                     device: str | None, progress: bool) -> tuple[np.ndarray, float, int, dict]:
    import torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        p, init, lr = _exact_prelude(x32, perp, seed, "exact-torch")
        bar = QuarterProgress(n_iter, "t-SNE (exact-torch) iterations") if progress else None
        y, _, it = tsne_exact_torch(p, init, n_iter, lr, progress=bar, device=device, **stop)
        it = min(it, n_iter - 1)
        # the final KL, exact and in float64, of the final embedding against the plain P
        kl = kl_divergence_exact(p, y)
    finally:
        torch.set_num_threads(old_threads)
    return y, kl, it, dict(learning_rate=lr, gradient="exact dense (PyTorch)")


def _run_sklearn(x32: np.ndarray, perp: float, n_iter: int, seed: int, threads: int,
                 stop: dict) -> tuple[np.ndarray, float, int, dict]:
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=perp, max_iter=n_iter, init="pca", random_state=seed,
                learning_rate="auto", method="barnes_hut", angle=0.5, n_jobs=threads, **stop)
    y = tsne.fit_transform(x32).astype(np.float64)
    return (y, float(tsne.kl_divergence_), int(tsne.n_iter_),
            dict(learning_rate=float(tsne.learning_rate_), gradient="Barnes-Hut, angle 0.5"))


def _run_opentsne(x32: np.ndarray, perp: float, n_iter: int, seed: int,
                  threads: int) -> tuple[np.ndarray, float, int, dict]:
    from openTSNE import TSNE as OpenTSNE

    tsne = OpenTSNE(n_components=2, perplexity=perp, n_iter=n_iter - EXPLORATION_N_ITER,
                    early_exaggeration_iter=EXPLORATION_N_ITER, early_exaggeration=EARLY_EXAGGERATION,
                    initialization="pca", negative_gradient_method="fft", random_state=seed,
                    n_jobs=threads, verbose=False)
    emb = tsne.fit(x32)
    return (np.asarray(emb, dtype=np.float64), float(emb.kl_divergence), n_iter - 1,
            dict(learning_rate="auto (openTSNE: N/12)", gradient="FFT-interpolated"))


def run_tsne(
    x: np.ndarray,
    perplexity: float = PAPER_PERPLEXITY,
    n_iter: int = PAPER_N_ITER,
    backend: str = DEFAULT_BACKEND,
    seed: int = 0,
    perplexity_policy: str = "clamp",
    n_threads: int | None = None,
    progress: bool = False,
    device: str | None = None,
    min_grad_norm: float = 1e-7,
    n_iter_without_progress: int = 300,
    stop_early: bool = True,
) -> TSNEResult:
    """2-D t-SNE of the rows of ``x`` with PCA initialisation and a fixed seed.

    Parameters
    ----------
    x : float array, shape (n, d)
        One row per point (the paper: raw pixels in [0, 1], d = 128 * 128 = 16,384).
    perplexity : float
        The paper: 250. Too large for n points: see ``perplexity_policy``.
    n_iter : int
        All iterations including the 250 early-exaggeration ones (scikit-learn's convention;
        openTSNE gets 250 + (n_iter - 250)); at least 250.
    backend : {"exact-numba", "exact-torch", "sklearn", "opentsne"}
    seed : int
        Seed of the PCA initialisation (and of openTSNE's internals).
    perplexity_policy : {"clamp", "raise"}
        See :func:`mammo_lib.feature_space.tsne.affinity.resolve_perplexity`.
    n_threads : int, optional
        CPU threads; default 1 for the exact backends, else min(2, CPUs). torch's, numba's
        and the BLAS thread counts are restored afterwards.
    progress : bool
        The exact backends print a plain-text progress line per quarter of the iterations.
    device : str, optional
        torch device for exact-torch (default: CUDA when available).
    min_grad_norm, n_iter_without_progress : float, int
        scikit-learn's stopping rules (checked every 50 iterations; the exact backends and
        sklearn honour them, openTSNE always runs n_iter).
    stop_early : bool
        False disables both stopping rules, so all ``n_iter`` iterations run.

    Returns
    -------
    TSNEResult
        The returned KL divergence is each backend's own final value (exact for the exact
        backends, Barnes-Hut/FFT estimates otherwise).

    Raises
    ------
    FeatureSpaceError
        Unknown backend; ``x`` not 2-D or not finite; ``n_iter`` < 250; a perplexity problem
        (see ``resolve_perplexity``); an exact backend above ``EXACT_MAX_POINTS`` points.

    References
    ----------
    L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
    """
    x = _check_tsne_input(x, backend, n_iter)
    perp, note = resolve_perplexity(perplexity, len(x), perplexity_policy)
    threads = n_threads or (1 if backend.startswith("exact") else min(2, os.cpu_count() or 1))
    stop = (dict(min_grad_norm=min_grad_norm, n_iter_without_progress=n_iter_without_progress)
            if stop_early else dict(NO_EARLY_STOP))
    x32 = x.astype(np.float32, copy=False)
    t0 = time.perf_counter()
    params = dict(perplexity=perp, n_iter=n_iter, init="pca", seed=seed,
                  early_exaggeration=EARLY_EXAGGERATION, n_points=len(x), n_features=x.shape[1])
    if backend == "exact-numba":
        y, kl, it, extra = _run_exact_numba(x32, perp, n_iter, seed, threads, stop, progress)
    elif backend == "exact-torch":
        y, kl, it, extra = _run_exact_torch(x32, perp, n_iter, seed, threads, stop, device, progress)
    elif backend == "sklearn":
        y, kl, it, extra = _run_sklearn(x32, perp, n_iter, seed, threads, stop)
    else:
        y, kl, it, extra = _run_opentsne(x32, perp, n_iter, seed, threads)
    params.update(extra)
    return TSNEResult(embedding=y, kl_divergence=float(kl), n_iter=int(it) + 1, backend=backend,
                      perplexity=perp, seconds=time.perf_counter() - t0, params=params,
                      warnings=[note] if note else [])


def embed_large(
    x: np.ndarray,
    perplexity: float = 50.0,
    n_iter: int = 750,
    pca_dims: int = 50,
    seed: int = 0,
    n_threads: int | None = None,
    pca_fit_max: int = 5000,
    chunk: int = 2000,
) -> TSNEResult:
    """The scalable path for tens of thousands of patches: PCA, then openTSNE (FFT gradient).

    The PCA (to ``pca_dims``, the standard preprocessing for large t-SNE) is fitted by
    randomized SVD on a random subset of at most ``pca_fit_max`` rows and applied to all rows
    in chunks, so memory stays bounded. Defaults differ from the paper's small-N configuration
    on purpose: perplexity 50 and 750 iterations (250 exaggerated + 500, openTSNE's usual
    schedule), because the cost of the attractive forces grows with N * 3 * perplexity. Pass
    the paper's values to get them at a higher cost.

    Parameters
    ----------
    x : uint8 array, shape (n, s, s), or float array, shape (n, d)
        Patches (uint8 keeps 30,000 128x128 patches at 0.5 GB) or rows.
    perplexity, n_iter, seed, n_threads
        As :func:`run_tsne` (backend "opentsne").
    pca_dims : int
        PCA dimensions (capped at the features and fitted rows - 1).
    pca_fit_max : int
        Rows the PCA is fitted on, at most.
    chunk : int
        Rows transformed at a time.

    Returns
    -------
    TSNEResult
        ``params`` adds ``pca_dims``, ``pca_fit_rows``, ``pca_seconds`` and ``n_features``.

    Raises
    ------
    FeatureSpaceError
        When ``x`` is neither 2-D nor 3-D, or holds NaN or infinite values.
    """
    from sklearn.decomposition import PCA

    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = check_patch_array(arr, "patches")

        def rows(i: np.ndarray | slice) -> np.ndarray:
            return flatten_pixels(arr[i])
    elif arr.ndim == 2:
        def rows(i: np.ndarray | slice) -> np.ndarray:
            return np.asarray(arr[i], dtype=np.float32)
    else:
        raise FeatureSpaceError(f"embed_large expects patches (n, s, s) or rows (n, d), got shape {arr.shape}")
    n = len(arr)
    t0 = time.perf_counter()
    rng = stream_rng(seed, "large_pca")
    fit_idx = np.sort(rng.choice(n, size=min(n, pca_fit_max), replace=False))
    fit_rows = rows(fit_idx)
    if not np.all(np.isfinite(fit_rows)):
        raise FeatureSpaceError("embed_large input contains NaN or infinite values")
    dims = int(min(pca_dims, fit_rows.shape[1], len(fit_rows) - 1))
    pca = PCA(n_components=dims, random_state=seed, svd_solver="randomized").fit(fit_rows)
    reduced = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rows(slice(start, start + chunk))
        if not np.all(np.isfinite(block)):
            raise FeatureSpaceError(f"embed_large input rows {start}..{start + len(block) - 1} contain NaN or inf")
        reduced[start:start + len(block)] = pca.transform(block)
    t_pca = time.perf_counter() - t0
    res = run_tsne(reduced, perplexity=perplexity, n_iter=n_iter, backend="opentsne", seed=seed,
                   n_threads=n_threads)
    res.seconds = time.perf_counter() - t0
    res.params.update(pca_dims=dims, pca_fit_rows=len(fit_idx), pca_seconds=round(t_pca, 2),
                      n_features=int(np.prod(arr.shape[1:])))
    return res
