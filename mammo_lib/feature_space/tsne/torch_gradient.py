"""The ``"exact-torch"`` t-SNE backend: the exact dense gradient as PyTorch tensor operations
over all N^2 pairs (CPU or a CUDA GPU), with scikit-learn's optimiser.

On a CPU the fused numba kernel (``tsne_kernels``, backend ``"exact-numba"``) is faster; this
backend stays for GPUs and as a second, independent implementation.

References
----------
L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARLY_EXAGGERATION = 12.0
EXPLORATION_N_ITER = 250


class _ExactTorchGradient:
    """The fused exact gradient (and, when asked, KL(P_exag || Q)) on preallocated buffers."""

    def __init__(self, p: np.ndarray, y, tdt, dev):
        import torch

        n = len(p)
        self.torch = torch
        self.P = torch.as_tensor(p, dtype=tdt, device=dev)
        self.Y = y
        self.buf_a = torch.empty((n, n), dtype=tdt, device=dev)
        self.buf_b = torch.empty((n, n), dtype=tdt, device=dev)
        self.eye = torch.eye(n, dtype=torch.bool, device=dev)
        p_pos = self.P > 0
        logp = torch.where(p_pos, torch.log(torch.where(p_pos, self.P, torch.ones_like(self.P))),
                           torch.zeros_like(self.P))
        self.plogp = float((self.P * logp).sum())
        self.p_sum = float(self.P.sum())
        self.tiny = torch.finfo(tdt).eps if tdt == torch.float64 else float(np.finfo(np.float64).eps)

    def __call__(self, exaggeration: float, compute_error: bool):
        torch, P, Y, buf_a, buf_b = self.torch, self.P, self.Y, self.buf_a, self.buf_b
        # W_ij = 1 / (1 + |y_i - y_j|^2) from |y_i|^2 + |y_j|^2 - 2 y_i.y_j on centred y (two
        # passes over N^2 instead of five; centring keeps float32 cancellation small)
        yc = Y - Y.mean(dim=0, keepdim=True)
        sq = (yc * yc).sum(dim=1)
        torch.add(sq[:, None], sq[None, :], out=buf_a)
        buf_a.addmm_(yc, yc.T, alpha=-2.0).clamp_min_(0.0).add_(1.0).reciprocal_()
        buf_a.masked_fill_(self.eye, 0.0)
        z = float(buf_a.sum())
        error = float("nan")
        if compute_error:
            # KL(P_exag || Q) as scikit-learn reports it during exaggeration: sum pe log pe - sum pe log q
            q = torch.div(buf_a, z, out=buf_b).clamp_min_(self.tiny).log_()
            error = float(exaggeration * self.plogp + exaggeration * math.log(exaggeration) * self.p_sum
                          - exaggeration * float((P * q).sum()))
        # M = W * (E P - W / Z) = E * (P W - W^2 / (E Z));  grad_i = 4 * sum_j M_ij (y_i - y_j)
        torch.mul(P, buf_a, out=buf_b)
        buf_b.addcmul_(buf_a, buf_a, value=-1.0 / (exaggeration * z))
        grad = buf_b.sum(dim=1, keepdim=True) * Y - buf_b @ Y
        grad.mul_(4.0 * exaggeration)
        return grad, error


@dataclass
class _Schedule:
    """scikit-learn's optimiser settings (``sklearn.manifold._t_sne._gradient_descent``)."""

    learning_rate: float
    n_iter_check: int = 50
    n_iter_without_progress: int = 300
    min_grad_norm: float = 1e-7


def _descend(Y, gradient, sched: _Schedule, it: int, max_iter: int, momentum: float,
             exaggeration: float, without_progress: int, bar) -> tuple[float, int]:
    """One phase of scikit-learn's gradient descent (momentum, delta-bar-delta gains, stopping
    checks every ``n_iter_check`` iterations); returns (last error, last iteration)."""
    import torch

    update = torch.zeros_like(Y)
    gains = torch.ones_like(Y)
    best_error, best_iter, error, i = float(np.finfo(float).max), it, float(np.finfo(float).max), it
    for i in range(it, max_iter):
        check = (i + 1) % sched.n_iter_check == 0
        grad, err = gradient(exaggeration, check or i == max_iter - 1)
        if not math.isnan(err):
            error = err
        inc = (update * grad) < 0.0
        gains.copy_(torch.where(inc, gains + 0.2, gains * 0.8)).clamp_min_(0.01)
        grad.mul_(gains)
        update.mul_(momentum).sub_(grad, alpha=sched.learning_rate)
        Y.add_(update)
        if bar is not None:
            bar.update(1)
        if check:
            grad_norm = float(torch.linalg.vector_norm(grad))
            if error < best_error:
                best_error, best_iter = error, i
            elif i - best_iter > without_progress:
                break
            if grad_norm <= sched.min_grad_norm:
                break
    return error, i


def tsne_exact_torch(
    p: np.ndarray,
    init: np.ndarray,
    n_iter: int,
    learning_rate: float,
    early_exaggeration: float = EARLY_EXAGGERATION,
    n_iter_check: int = 50,
    n_iter_without_progress: int = 300,
    min_grad_norm: float = 1e-7,
    dtype: str = "float32",
    device: str | None = None,
    progress=None,
    exploration_n_iter: int = EXPLORATION_N_ITER,
) -> tuple[np.ndarray, float, int]:
    """Exact t-SNE gradient descent with scikit-learn's schedule.

    Parameters
    ----------
    p : float array, shape (n, n)
        Joint affinities (symmetric, sum 1).
    init : float array, shape (n, 2)
        Initial embedding (see :func:`pca_init`).
    n_iter : int
        Iterations in all, the ``exploration_n_iter`` exaggerated ones included.
    learning_rate : float
    early_exaggeration : float
    n_iter_check, n_iter_without_progress, min_grad_norm
        scikit-learn's stopping checks.
    dtype : {"float32", "float64"}
    device : str, optional
        torch device; default CUDA when available, else CPU.
    progress : object with ``update(n)``, optional
        Called once per iteration (e.g. ``mammo_lib.progress.QuarterProgress``).
    exploration_n_iter : int
        Early-exaggeration iterations (momentum 0.5).

    Returns
    -------
    embedding : float64 array, shape (n, 2)
    error : float
        scikit-learn's KL estimate at the last check (NaN when only the exploration ran).
    last_iteration : int
        Index of the last iteration run.
    """
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdt = torch.float64 if dtype == "float64" else torch.float32
    Y = torch.as_tensor(np.asarray(init), dtype=tdt, device=dev).clone()
    gradient = _ExactTorchGradient(p, Y, tdt, dev)
    sched = _Schedule(learning_rate, n_iter_check, n_iter_without_progress, min_grad_norm)
    bar = progress
    _, it = _descend(Y, gradient, sched, 0, exploration_n_iter, 0.5, early_exaggeration,
                     exploration_n_iter, bar)
    error = float("nan")
    if it < exploration_n_iter or n_iter - exploration_n_iter > 0:
        error, it = _descend(Y, gradient, sched, it + 1, n_iter, 0.8, 1.0, n_iter_without_progress, bar)
    return Y.detach().cpu().numpy().astype(np.float64), error, it
