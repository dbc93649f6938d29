"""The ``"exact-torch"`` t-SNE backend: the exact dense gradient as PyTorch tensor operations
over all N^2 pairs (CPU or a CUDA GPU), with scikit-learn's optimiser
(:mod:`mammo_lib.feature_space.tsne.optimiser`; this module gives it its step).

On a CPU the fused numba kernel (``feature_space.tsne.kernels``, backend ``"exact-numba"``) is faster; this
backend stays for GPUs and as a second, independent implementation.

References
----------
L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
"""

from __future__ import annotations

import math

import numpy as np

from mammo_lib.feature_space.tsne.optimiser import (
    EARLY_EXAGGERATION,
    EXPLORATION_N_ITER,
    GAIN_DECAY,
    GAIN_INCREASE,
    MIN_GAIN,
    Schedule,
    optimise,
)


class ExactTorchGradient:
    """The ``"exact-torch"`` step of :func:`mammo_lib.feature_space.tsne.optimiser.optimise`: the
    fused exact gradient (and, when asked, KL(P_exag || Q)) on preallocated buffers, then the
    gains and the update as tensor operations.

    Parameters
    ----------
    p : float array, shape (n, n)
        Joint affinities (symmetric, sum 1).
    y : float tensor, shape (n, 2)
        The embedding, moved in place by each step.
    tdt : torch.dtype
        float32 or float64, the dtype of ``y``.
    dev : torch.device
        The device of ``y``.
    """

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
        self.update = torch.zeros_like(y)
        self.gains = torch.ones_like(y)
        self.grad = torch.zeros_like(y)

    def gradient(self, exaggeration: float, compute_error: bool):
        """(gradient tensor (n, 2), KL(P_exag || Q) or NaN) at the current embedding."""
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

    def start_phase(self) -> None:
        """Zero update, every gain 1."""
        self.update = self.torch.zeros_like(self.Y)
        self.gains = self.torch.ones_like(self.Y)

    def __call__(self, exaggeration: float, momentum: float, learning_rate: float,
                 compute_error: bool) -> float:
        """One iteration; returns KL(P_exag || Q) or NaN (the gradient norm: :meth:`grad_norm`)."""
        torch, update, gains = self.torch, self.update, self.gains
        grad, err = self.gradient(exaggeration, compute_error)
        inc = (update * grad) < 0.0
        gains.copy_(torch.where(inc, gains + GAIN_INCREASE, gains * GAIN_DECAY)).clamp_min_(MIN_GAIN)
        grad.mul_(gains)
        update.mul_(momentum).sub_(grad, alpha=learning_rate)
        self.Y.add_(update)
        self.grad = grad
        return err

    def grad_norm(self) -> float:
        """Norm of the last iteration's gain-scaled gradient."""
        return float(self.torch.linalg.vector_norm(self.grad))


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
        scikit-learn's KL estimate at the last check, as
        :func:`mammo_lib.feature_space.tsne.optimiser.optimise` returns it.
    last_iteration : int
        Index of the last iteration run (as ``optimise`` returns it).
    """
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdt = torch.float64 if dtype == "float64" else torch.float32
    Y = torch.as_tensor(np.asarray(init), dtype=tdt, device=dev).clone()
    sched = Schedule(learning_rate, early_exaggeration, n_iter_check, n_iter_without_progress, min_grad_norm,
                     exploration_n_iter)
    error, it = optimise(ExactTorchGradient(p, Y, tdt, dev), n_iter, sched, progress)
    return Y.detach().cpu().numpy().astype(np.float64), error, it
