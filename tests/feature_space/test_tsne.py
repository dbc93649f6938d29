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
from mammo_lib.feature_space.tsne import optimiser, torch_gradient
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


class _Recorded:
    """A backend's optimiser step that records each call's (exaggeration, momentum, learning rate,
    compute_error) and each phase start."""

    def __init__(self, step):
        self.step, self.calls, self.phases = step, [], 0

    def start_phase(self):
        self.phases += 1
        self.step.start_phase()

    def __call__(self, *args):
        self.calls.append(args)
        return self.step(*args)

    def grad_norm(self):
        return self.step.grad_norm()


def _expected_calls(lr, stops):
    """(exaggeration, momentum, lr, compute_error) per iteration of scikit-learn's schedule with
    a 250-iteration exploration, checks every 50 and the phases' last iterations ``stops``."""
    first_stop, last = stops
    calls = [(12.0, 0.5, lr, (i + 1) % 50 == 0 or i == 249) for i in range(first_stop + 1)]
    return calls + [(1.0, 0.8, lr, (i + 1) % 50 == 0 or i == last) for i in range(first_stop + 1, last + 1)]


def test_both_exact_backends_run_the_one_optimiser_schedule(small_x):
    """exact-numba and exact-torch share ``optimiser.optimise``: the same phases, momenta,
    exaggeration, KL requests and stopping decisions (to run all 300 iterations; to stop at the
    first check of each phase when any gradient is small enough)."""
    import torch

    p = tsne_affinity.joint_probabilities(small_x, 10)
    init = tsne.pca_init(small_x, 0)
    for rules, stops in (({"min_grad_norm": 0.0, "n_iter_without_progress": 10**9}, (249, 299)),
                         ({"min_grad_norm": np.inf}, (49, 99))):
        sched = optimiser.Schedule(50.0, **rules)
        y = torch.as_tensor(init, dtype=torch.float32).clone()
        steps = [_Recorded(tsne_kernels.ExactNumbaGradient(p, init)),
                 _Recorded(torch_gradient.ExactTorchGradient(p, y, torch.float32, torch.device("cpu")))]
        results = [optimiser.optimise(step, 300, sched) for step in steps]
        assert [r[1] for r in results] == [stops[1]] * 2 and all(np.isfinite(r[0]) for r in results)
        for step in steps:
            assert step.phases == 2 and step.calls == _expected_calls(50.0, stops)
        # the public entry points take the same decisions
        assert tsne_kernels.tsne_exact_numba(p, init, 300, 50.0, **rules)[2] == stops[1]
        assert torch_gradient.tsne_exact_torch(p, init, 300, 50.0, device="cpu", **rules)[2] == stops[1]


class _ScriptedStep:
    """A step that moves nothing and returns a scripted KL at each requested check."""

    def __init__(self, errors, norm=1.0):
        self.errors, self.norm, self.i = errors, norm, -1

    def start_phase(self):
        pass

    def __call__(self, exaggeration, momentum, learning_rate, compute_error):
        self.i += 1
        return self.errors(self.i) if compute_error else float("nan")

    def grad_norm(self):
        return self.norm


def test_optimiser_stops_as_scikit_learn_when_the_kl_stalls():
    """The plain phase stops at the first check more than ``n_iter_without_progress`` iterations
    after the best KL; the exploration phase never does within its 250 iterations."""
    sched = optimiser.Schedule(1.0, n_iter_without_progress=100)
    # improving until iteration 399, flat afterwards: the checks at 449 and 499 are within 100
    # iterations of it, 549 is not
    error, it = optimiser.optimise(_ScriptedStep(lambda i: 10.0 - min(i, 399) / 100.0), 2000, sched)
    assert (it, error) == (549, 10.0 - 3.99)
    # a rising KL does not stop the exploration (its patience is its 250 iterations); the plain
    # phase, its best KL reset, stops at its second check
    step = _ScriptedStep(lambda i: float(i))
    error, it = optimiser.optimise(step, 2000, optimiser.Schedule(1.0, n_iter_without_progress=10))
    assert (it, error, step.i) == (349, 349.0, 349)
    # the gradient-norm rule stops each phase at its first check
    assert optimiser.optimise(_ScriptedStep(lambda i: 1.0, norm=0.0), 2000, sched) == (1.0, 99)
