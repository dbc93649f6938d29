"""The default t-SNE backend (exact-numba): pinned to scikit-learn's optimiser, bitwise
reproducible for any thread count, and the same P and PCA initialisation as the other backends."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_lib import testing
from mammo_lib.feature_space.arrays import flatten_pixels
from mammo_lib.feature_space.neighbours import gram
from mammo_lib.feature_space.tsne import affinity as tsne_affinity
from mammo_lib.feature_space.tsne import kernels as tsne_kernels
from mammo_lib.feature_space.tsne import run as tsne


@pytest.fixture(scope="module")
def small_x():
    g = testing.demo_groups(40, size=32, seed=3)
    return flatten_pixels(np.concatenate([g[k] for k in ("lesion", "synthetic", "normal")]))


def test_numba_steps_equal_sklearn_exact_optimizer(small_x):
    """The fused kernel + our schedule equal scikit-learn's own exact gradient descent
    (``_kl_divergence`` + ``_gradient_descent``) step for step on the same P and init, in both
    phases (exaggerated, momentum 0.5; then plain, momentum 0.8)."""
    from scipy.spatial.distance import squareform
    from sklearn.manifold import _t_sne

    p = tsne_affinity.joint_probabilities(small_x, 10)
    init = tsne.pca_init(small_x, 0)
    n = len(small_x)
    ours, error, it = tsne_kernels.tsne_exact_numba(p, init, 12, 50.0, dtype="float64", exploration_n_iter=6)
    common = dict(it=0, n_iter_check=50, learning_rate=50.0, min_gain=0.01, min_grad_norm=1e-7, verbose=0,
                  kwargs={})
    params, _, _ = _t_sne._gradient_descent(
        _t_sne._kl_divergence, init.ravel().astype(np.float64).copy(), max_iter=6, n_iter_without_progress=6,
        momentum=0.5, args=[squareform(p, checks=False) * tsne.EARLY_EXAGGERATION, 1, n, 2], **common)
    common["it"] = 6
    params, ref_error, _ = _t_sne._gradient_descent(
        _t_sne._kl_divergence, params, max_iter=12, n_iter_without_progress=300, momentum=0.8,
        args=[squareform(p, checks=False), 1, n, 2], **common)
    ref = params.reshape(n, 2)
    assert np.abs(ref).max() > 1e-3  # the points have moved
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-12)
    assert it == 11 and error == pytest.approx(ref_error, rel=1e-9)


def test_numba_backend_bitwise_reproducible_for_any_thread_count(small_x):
    import numba

    threads = numba.get_num_threads()
    a = tsne.run_tsne(small_x, perplexity=10, n_iter=400, backend="exact-numba", n_threads=1, stop_early=False)
    b = tsne.run_tsne(small_x, perplexity=10, n_iter=400, backend="exact-numba", n_threads=2, stop_early=False)
    assert numba.get_num_threads() == threads
    assert np.array_equal(a.embedding, b.embedding) and a.kl_divergence == b.kl_divergence
    assert a.n_iter == 400 and a.params["gradient"].startswith("exact (fused numba")
    p = tsne_affinity.joint_probabilities(small_x, 10)
    assert tsne.kl_divergence_exact(p, a.embedding) == a.kl_divergence
    # exact-torch runs the same method: a different float path, a similar minimum
    c = tsne.run_tsne(small_x, perplexity=10, n_iter=400, backend="exact-torch", stop_early=False)
    assert a.kl_divergence == pytest.approx(c.kl_divergence, rel=0.06)
    groups = np.repeat(np.array(["lesion", "synthetic", "normal"]), 40)
    d = ((a.embedding[:, None, :] - a.embedding[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(groups[d.argmin(1)][groups == "normal"] == "normal") > 0.8


def test_pca_init_from_gram_is_scikit_learns_pca(small_x):
    ours = tsne.pca_init_from_gram(gram(small_x), small_x)
    ref = tsne.pca_init(small_x, 0)
    assert ours.dtype == np.float32 and ours.shape == (120, 2)
    assert np.allclose(ours, ref, rtol=0, atol=1e-3 * np.abs(ref).max())  # same signs, same scale


def test_dense_and_sparse_force_passes_agree(small_x):
    from scipy import sparse

    p = tsne_affinity.joint_probabilities(small_x, 10).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(len(p), 2)).astype(np.float32)
    one = np.float32(1.0)
    out = [(np.zeros((len(p), 2), np.float32), np.zeros((len(p), 2), np.float32), np.zeros(len(p), np.float32))
           for _ in range(2)]
    tsne_kernels._pair_forces(y[:, 0].copy(), y[:, 1].copy(), p, one, *out[0])
    csr = sparse.csr_matrix(p)
    tsne_kernels._pair_forces_sparse(y[:, 0].copy(), y[:, 1].copy(), csr.indptr, csr.indices, csr.data, one, *out[1])
    for a, b in zip(out[0], out[1], strict=True):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert tsne_kernels.time_force_pass(p, y, "dense", repeats=2) > 0


def test_exact_backends_refuse_too_many_points():
    x = np.zeros((tsne.EXACT_MAX_POINTS + 1, 2), dtype=np.float32)
    with pytest.raises(tsne.FeatureSpaceError, match="exact-numba needs N\\^2 memory"):
        tsne.run_tsne(x, perplexity=30, n_iter=250)
