"""The exact t-SNE gradient as one fused, compiled pass over all pairs (numba), and
scikit-learn's optimiser around it: the ``"exact-numba"`` backend of ``tsne``.

Why: at the paper's size (N = 1,500, perplexity 250, so ~750 neighbours per point and an almost
dense P) one exact gradient is ~2.25 million pair terms; a Barnes-Hut tree walk or a chain of
N x N tensor operations (five memory passes) costs far more than one pass that computes, per
pair, the Student-t kernel w = 1 / (1 + |y_i - y_j|^2), its sum Z, the attractive term
p_ij w (y_i - y_j) and the repulsive term w^2 (y_i - y_j) together, in SIMD registers, with P
read once (float32: 9 MB at N = 1,500, in the last-level cache).

Determinism: the pair loop runs over rows (``prange``); each row's sums are formed by one thread
in a fixed order, and the row results are combined sequentially, so the result is bitwise the
same run to run *and for any thread count* (on one machine; a CPU with other SIMD widths
compiles other code). The kernels are generic in the float type: float32 for speed (pair terms
and per-row sums; Z, the KL and the optimiser state in float64), float64 for the test that pins
our steps to scikit-learn's optimiser.

The optimiser is ``sklearn.manifold._t_sne._gradient_descent`` step for step
(:mod:`mammo_lib.feature_space.tsne.optimiser`: phases, momentum, stopping rules); this module
gives it its step, :class:`ExactNumbaGradient`, whose gains and update are fused into one
compiled pass (:func:`_update`).

References
----------
L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads

from mammo_lib.feature_space.tsne.optimiser import (
    EARLY_EXAGGERATION,
    EXPLORATION_N_ITER,
    GAIN_DECAY,
    GAIN_INCREASE,
    MIN_GAIN,
    Schedule,
    optimise,
)

MACHINE_EPSILON = float(np.finfo(np.float64).eps)


@njit(parallel=True, fastmath=True, cache=True)
def _pair_forces(y0, y1, P, one, attr, rep, rowz):  # pragma: no cover - compiled
    """Per row i: sum_j p_ij w_ij (y_i - y_j), sum_j w_ij^2 (y_i - y_j), sum_{j != i} w_ij."""
    n = y0.shape[0]
    for i in prange(n):
        a0 = y0[i]
        a1 = y1[i]
        fx = one - one
        fy = fx
        rx = fx
        ry = fx
        z = fx
        for j in range(n):
            dx = a0 - y0[j]
            dy = a1 - y1[j]
            w = one / (one + dx * dx + dy * dy)
            z += w
            pw = P[i, j] * w
            fx += pw * dx
            fy += pw * dy
            w2 = w * w
            rx += w2 * dx
            ry += w2 * dy
        attr[i, 0] = fx
        attr[i, 1] = fy
        rep[i, 0] = rx
        rep[i, 1] = ry
        rowz[i] = z - one  # the j == i term (w = 1) adds nothing to the forces
    return


@njit(parallel=True, fastmath=True, cache=True)
def _p_log_q(y0, y1, P, one, inv_z, tiny, out):  # pragma: no cover - compiled
    """Per row i: sum_j p_ij log(max(w_ij / Z, tiny)) in float64 (j != i; only at checks)."""
    n = y0.shape[0]
    for i in prange(n):
        acc = 0.0
        for j in range(n):
            if j != i:
                dx = y0[i] - y0[j]
                dy = y1[i] - y1[j]
                w = one / (one + dx * dx + dy * dy)
                acc += P[i, j] * math.log(max(w * inv_z, tiny))
        out[i] = acc
    return


@njit(cache=True)
def _update(y0, y1, attr, rep, z, exaggeration, momentum, learning_rate, upd, gains, grad):  # pragma: no cover
    """grad = 4 (E attr - rep / Z); scikit-learn's gains, momentum and step; returns |grad|."""
    n = y0.shape[0]
    norm2 = 0.0
    for i in range(n):
        for d in range(2):
            g = 4.0 * (exaggeration * attr[i, d] - rep[i, d] / z)
            u = upd[i, d]
            if u * g < 0.0:
                gains[i, d] += GAIN_INCREASE
            else:
                gains[i, d] *= GAIN_DECAY
            if gains[i, d] < MIN_GAIN:
                gains[i, d] = MIN_GAIN
            g *= gains[i, d]
            grad[i, d] = g
            norm2 += g * g
            u = momentum * u - learning_rate * g
            upd[i, d] = u
        y0[i] += upd[i, 0]
        y1[i] += upd[i, 1]
    return math.sqrt(norm2)


class ExactNumbaGradient:
    """The ``"exact-numba"`` step of :func:`mammo_lib.feature_space.tsne.optimiser.optimise`:
    P, the embedding (two float arrays), the update, the gains and the buffers."""

    def __init__(self, p: np.ndarray, init: np.ndarray, dtype: str = "float32"):
        dt = np.float64 if dtype == "float64" else np.float32
        n = len(p)
        self.P = np.ascontiguousarray(p, dtype=dt)
        y = np.asarray(init, dtype=np.float64)
        self.y0 = np.ascontiguousarray(y[:, 0], dtype=dt)
        self.y1 = np.ascontiguousarray(y[:, 1], dtype=dt)
        self.one = dt(1.0)
        self.attr = np.zeros((n, 2), dtype=dt)
        self.rep = np.zeros((n, 2), dtype=dt)
        self.rowz = np.zeros(n, dtype=dt)
        self.rowlog = np.zeros(n, dtype=np.float64)
        self.upd = np.zeros((n, 2), dtype=np.float64)
        self.gains = np.ones((n, 2), dtype=np.float64)
        self.grad = np.zeros((n, 2), dtype=np.float64)
        self.upd_norm = 0.0
        p64 = np.asarray(p, dtype=np.float64)
        pos = p64[p64 > 0]
        self.plogp = float(np.sum(pos * np.log(pos)))
        self.p_sum = float(pos.sum())

    def embedding(self) -> np.ndarray:
        return np.stack([self.y0, self.y1], axis=1).astype(np.float64)

    def start_phase(self) -> None:
        """Zero update, every gain 1."""
        self.upd[:] = 0.0
        self.gains[:] = 1.0

    def __call__(self, exaggeration: float, momentum: float, learning_rate: float,
                 compute_error: bool) -> float:
        """One iteration; returns KL(P_exag || Q) or NaN (the gradient norm: :meth:`grad_norm`)."""
        _pair_forces(self.y0, self.y1, self.P, self.one, self.attr, self.rep, self.rowz)
        z = float(np.sum(self.rowz.astype(np.float64)))
        error = float("nan")
        if compute_error:
            # as scikit-learn reports it during exaggeration: sum pe log pe - sum pe log q
            _p_log_q(self.y0, self.y1, self.P, self.one, 1.0 / z, MACHINE_EPSILON, self.rowlog)
            e = exaggeration
            error = e * self.plogp + e * math.log(e) * self.p_sum - e * float(np.sum(self.rowlog))
        self.upd_norm = _update(self.y0, self.y1, self.attr, self.rep, z, exaggeration, momentum,
                                learning_rate, self.upd, self.gains, self.grad)
        return error

    def grad_norm(self) -> float:
        """Norm of the last iteration's gain-scaled gradient (summed in :func:`_update`)."""
        return self.upd_norm


def tsne_exact_numba(
    p: np.ndarray,
    init: np.ndarray,
    n_iter: int,
    learning_rate: float,
    early_exaggeration: float = EARLY_EXAGGERATION,
    n_iter_check: int = 50,
    n_iter_without_progress: int = 300,
    min_grad_norm: float = 1e-7,
    dtype: str = "float32",
    n_threads: int = 1,
    progress=None,
    exploration_n_iter: int = EXPLORATION_N_ITER,
) -> tuple[np.ndarray, float, int]:
    """Exact t-SNE gradient descent with scikit-learn's schedule, on the fused numba kernel.

    Parameters
    ----------
    p : float array, shape (n, n)
        Joint affinities (symmetric, zero diagonal, sum 1).
    init : float array, shape (n, 2)
        Initial embedding.
    n_iter : int
        Iterations in all, the ``exploration_n_iter`` exaggerated ones included.
    learning_rate : float
    early_exaggeration : float
    n_iter_check, n_iter_without_progress, min_grad_norm
        scikit-learn's stopping checks.
    dtype : {"float32", "float64"}
        Float type of the pair terms and the embedding.
    n_threads : int
        numba threads for the pair loops (the result does not depend on it); numba's thread
        count is restored afterwards.
    progress : object with ``update(n)``, optional
        Called once per iteration.
    exploration_n_iter : int

    Returns
    -------
    embedding : float64 array, shape (n, 2)
    error : float
        scikit-learn's KL estimate at the last check, as
        :func:`mammo_lib.feature_space.tsne.optimiser.optimise` returns it.
    last_iteration : int

    References
    ----------
    L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9, 2008.
    """
    sched = Schedule(learning_rate, early_exaggeration, n_iter_check, n_iter_without_progress, min_grad_norm,
                     exploration_n_iter)
    old = get_num_threads()
    set_num_threads(max(1, int(n_threads)))
    try:
        state = ExactNumbaGradient(p, init, dtype)
        error, it = optimise(state, n_iter, sched, progress)
    finally:
        set_num_threads(old)
    return state.embedding(), error, it


@njit(parallel=True, fastmath=True, cache=True)
def _pair_forces_sparse(y0, y1, indptr, indices, data, one, attr, rep, rowz):  # pragma: no cover
    """:func:`_pair_forces` with P in CSR form: repulsion and Z over all pairs, attraction only
    over the stored neighbours of each row (for measuring dense vs sparse P)."""
    n = y0.shape[0]
    for i in prange(n):
        a0 = y0[i]
        a1 = y1[i]
        rx = one - one
        ry = rx
        z = rx
        for j in range(n):
            dx = a0 - y0[j]
            dy = a1 - y1[j]
            w = one / (one + dx * dx + dy * dy)
            z += w
            w2 = w * w
            rx += w2 * dx
            ry += w2 * dy
        fx = one - one
        fy = fx
        for t in range(indptr[i], indptr[i + 1]):
            j = indices[t]
            dx = a0 - y0[j]
            dy = a1 - y1[j]
            w = one / (one + dx * dx + dy * dy)
            pw = data[t] * w
            fx += pw * dx
            fy += pw * dy
        attr[i, 0] = fx
        attr[i, 1] = fy
        rep[i, 0] = rx
        rep[i, 1] = ry
        rowz[i] = z - one
    return


def time_force_pass(p: np.ndarray, y: np.ndarray, p_format: str = "dense", repeats: int = 50,
                    n_threads: int = 1) -> float:
    """Median seconds of one force pass (float32) with P dense or CSR (the benchmark's
    dense-vs-sparse measurement); the first call (compilation) is not timed."""
    import time

    from scipy import sparse

    old = get_num_threads()
    set_num_threads(max(1, int(n_threads)))
    try:
        n = len(p)
        y0 = np.ascontiguousarray(y[:, 0], dtype=np.float32)
        y1 = np.ascontiguousarray(y[:, 1], dtype=np.float32)
        one = np.float32(1.0)
        attr, rep, rowz = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32), np.zeros(n, np.float32)
        if p_format == "dense":
            P = np.ascontiguousarray(p, dtype=np.float32)

            def call():
                _pair_forces(y0, y1, P, one, attr, rep, rowz)
        else:
            csr = sparse.csr_matrix(np.asarray(p, dtype=np.float32))

            def call():
                _pair_forces_sparse(y0, y1, csr.indptr, csr.indices, csr.data, one, attr, rep, rowz)
        call()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    finally:
        set_num_threads(old)
    return float(np.median(times))
