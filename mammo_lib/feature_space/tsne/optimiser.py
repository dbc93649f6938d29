"""scikit-learn's t-SNE optimiser, once, for both exact backends (``"exact-numba"`` and
``"exact-torch"``): the two phases, the momentum schedule, the stopping rules, the progress
calls and when the KL is asked for.

This is ``sklearn.manifold._t_sne._gradient_descent`` and the two calls ``TSNE._tsne`` makes of
it, step for step: the early-exaggeration phase (``exploration_n_iter`` iterations, P scaled by
the exaggeration, momentum 0.5), then the plain phase (momentum 0.8) from the iteration after
the first phase stopped; each phase starts with a zero update and every gain 1; every
``n_iter_check`` iterations (and at a phase's last iteration) the step also returns the KL, and
at a check the phase stops when the KL has not improved for more than ``n_iter_without_progress``
iterations (the exploration phase: ``exploration_n_iter``) or the norm of the gain-scaled
gradient is at most ``min_grad_norm``.

What an iteration does to the embedding is the backend's :class:`Step`: the exact gradient,
then the delta-bar-delta gains (+ :data:`GAIN_INCREASE` where the gradient's sign flips against
the last update, x :data:`GAIN_DECAY` elsewhere, floored at :data:`MIN_GAIN`), then
``update = momentum * update - learning_rate * gains * gradient`` and ``y += update``, as one
fused numba pass (``kernels``) or as tensor operations (``torch_gradient``).

References
----------
L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
L. van der Maaten, "Accelerating t-SNE using Tree-Based Algorithms", JMLR 15:3221-3245, 2014
(the optimiser settings scikit-learn follows).
R. A. Jacobs, "Increased rates of convergence through learning rate adaptation", Neural
Networks 1:295-307, 1988 (the delta-bar-delta gains).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

EARLY_EXAGGERATION = 12.0  # scikit-learn's TSNE(early_exaggeration=12.0)
EXPLORATION_N_ITER = 250  # scikit-learn's TSNE._EXPLORATION_MAX_ITER
EXPLORATION_MOMENTUM = 0.5
MOMENTUM = 0.8
GAIN_INCREASE = 0.2
GAIN_DECAY = 0.8
MIN_GAIN = 0.01


class Step(Protocol):
    """One backend's iteration of the optimiser, on state it holds (embedding, update, gains)."""

    def start_phase(self) -> None:
        """Set the update to zero and every gain to 1 (the start of each phase)."""

    def __call__(self, exaggeration: float, momentum: float, learning_rate: float,
                 compute_error: bool) -> float:
        """One iteration: gradient, gains, update, ``y += update``; returns KL(P_exag || Q)
        before the move when ``compute_error``, else NaN."""

    def grad_norm(self) -> float:
        """Euclidean norm of the last iteration's gain-scaled gradient."""


@dataclass(frozen=True)
class Schedule:
    """scikit-learn's optimiser settings (``TSNE``'s and ``_gradient_descent``'s arguments).

    Attributes
    ----------
    learning_rate : float
    early_exaggeration : float
        Factor on P in the exploration phase.
    n_iter_check : int
        Iterations between two checks (KL and stopping rules).
    n_iter_without_progress : int
        The plain phase stops at a check when the KL has not improved for more than this many
        iterations.
    min_grad_norm : float
        A phase stops at a check when the gain-scaled gradient's norm is at most this.
    exploration_n_iter : int
        Iterations of the exploration (early-exaggeration) phase.
    """

    learning_rate: float
    early_exaggeration: float = EARLY_EXAGGERATION
    n_iter_check: int = 50
    n_iter_without_progress: int = 300
    min_grad_norm: float = 1e-7
    exploration_n_iter: int = EXPLORATION_N_ITER


def descend(step: Step, sched: Schedule, it: int, max_iter: int, momentum: float, exaggeration: float,
            without_progress: int, progress=None) -> tuple[float, int]:
    """One phase of scikit-learn's ``_gradient_descent``: iterations ``it`` .. ``max_iter - 1``.

    Parameters
    ----------
    step : Step
        The backend's iteration; :meth:`Step.start_phase` is called first.
    sched : Schedule
        Learning rate, check interval and minimum gradient norm.
    it, max_iter : int
        First iteration and the iteration bound (exclusive).
    momentum, exaggeration : float
        This phase's momentum and factor on P.
    without_progress : int
        Iterations without a better KL after which a check stops the phase.
    progress : object with ``update(n)``, optional
        Called with 1 after each iteration.

    Returns
    -------
    error : float
        The last KL the step returned (``np.finfo(float).max`` when it returned none).
    last_iteration : int
        The last iteration run (``it`` when none ran).

    References
    ----------
    L. van der Maaten, "Accelerating t-SNE using Tree-Based Algorithms", JMLR 15, 2014.
    """
    step.start_phase()
    best_error, best_iter, error, i = float(np.finfo(float).max), it, float(np.finfo(float).max), it
    for i in range(it, max_iter):
        check = (i + 1) % sched.n_iter_check == 0
        err = step(exaggeration, momentum, sched.learning_rate, check or i == max_iter - 1)
        if not math.isnan(err):
            error = err
        if progress is not None:
            progress.update(1)
        if check:
            grad_norm = step.grad_norm()
            if error < best_error:
                best_error, best_iter = error, i
            elif i - best_iter > without_progress:
                break
            if grad_norm <= sched.min_grad_norm:
                break
    return error, i


def optimise(step: Step, n_iter: int, sched: Schedule, progress=None) -> tuple[float, int]:
    """scikit-learn's two phases (``TSNE._tsne``): exploration with early exaggeration, then the
    plain phase up to ``n_iter`` iterations in all.

    Parameters
    ----------
    step : Step
        The backend's iteration, holding the embedding (moved in place).
    n_iter : int
        Iterations in all, the ``sched.exploration_n_iter`` exaggerated ones included.
    sched : Schedule
    progress : object with ``update(n)``, optional
        Called with 1 after each iteration.

    Returns
    -------
    error : float
        The plain phase's last KL as :func:`descend` returns it (NaN when that phase was not
        entered).
    last_iteration : int
        As :func:`descend` returns it for the last phase entered (so the iteration after the
        exploration's last when the plain phase had no iteration to run, as in scikit-learn).

    References
    ----------
    L. van der Maaten, "Accelerating t-SNE using Tree-Based Algorithms", JMLR 15, 2014.
    """
    n_explore = sched.exploration_n_iter
    _, it = descend(step, sched, 0, n_explore, EXPLORATION_MOMENTUM, sched.early_exaggeration, n_explore, progress)
    error = float("nan")
    if it < n_explore or n_iter - n_explore > 0:
        error, it = descend(step, sched, it + 1, n_iter, MOMENTUM, 1.0, sched.n_iter_without_progress, progress)
    return error, it
