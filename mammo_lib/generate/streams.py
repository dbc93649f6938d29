"""Stage 02: every random stream of DCGAN training and synthesis, keyed by what it is for.

Each stream is derived from the study seed and a key ``(purpose, *indices)`` through
:class:`numpy.random.SeedSequence` (whose hashing keeps streams of different keys independent,
unlike arithmetic offsets such as ``seed * 1_000_003 + rank * 7_919 + iteration``, under which
rank 1 at iteration 0 equals rank 0 at iteration 7,919). Nothing here reads or changes torch's,
NumPy's or Python's global random state, so training needs no RNG state in its checkpoints: a
resumed run recreates every stream from its key.

Purposes used by stage 02 (the ``indices`` after them):

- ``"init"``: initial weights of G and D;
- ``"fixed_noise"``: the latent vectors of the sample grids watched during training;
- ``"data_order"`` (epoch): the order of the patches in one epoch;
- ``"latent"`` (rank, iteration): G's input batch of one iteration on one process;
- ``"g_noise"`` (rank, iteration): G's per-pixel noise inputs of one iteration
  (``noise_injection``); ``"fixed_g_noise"``: those of the sample grids;
- ``"ema_batch_norm"``: the latent inputs over which the EMA of G's batch-norm statistics are
  recomputed before it is sampled or saved;
- ``"instance_noise"`` (rank, iteration), ``"augment"`` (rank, iteration): noise and
  augmentation parameters applied to D's inputs;
- ``"fastgan_part"`` (rank, iteration): the quadrant FastGAN's D reconstructs
  (:mod:`mammo_lib.generate.fastgan`);
- ``"synthesis"`` (index): the latent vector of synthetic patch ``index``;
- ``"figure"``: which patches a figure shows.
"""

from __future__ import annotations

import numpy as np
import torch

from mammo_lib import rng

PURPOSES = ("init", "fixed_noise", "data_order", "latent", "g_noise", "fixed_g_noise", "ema_batch_norm",
            "instance_noise", "augment", "fastgan_part", "synthesis", "figure")


def stream_seed(seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit seed for one random stream, a pure function of ``(seed, purpose, *indices)``.

    Parameters
    ----------
    seed : int
        The study seed, >= 0.
    purpose : str
        What the stream is for, one of :data:`PURPOSES`.
    *indices : int
        Further keys, each >= 0 (e.g. rank and iteration).

    Returns
    -------
    int
        A seed in ``[0, 2**63)``, usable with ``torch.Generator.manual_seed``.

    Raises
    ------
    ValueError
        When ``purpose`` is unknown or ``seed`` or an index is negative.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random stream purpose {purpose!r}; expected one of {PURPOSES}")
    return rng.stream_seed(seed, purpose, *indices)


def torch_stream(seed: int, purpose: str, *indices: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`stream_seed` (same arguments, same errors)."""
    stream_seed(seed, purpose, *indices)  # the purpose checked against this stage's list
    return rng.torch_stream(seed, purpose, *indices)


def numpy_stream(seed: int, purpose: str, *indices: int) -> np.random.Generator:
    """A NumPy ``Generator`` seeded with :func:`stream_seed` (same arguments, same errors)."""
    stream_seed(seed, purpose, *indices)
    return rng.numpy_stream(seed, purpose, *indices)


def epoch_order(n: int, seed: int, epoch: int, world_size: int = 1, rank: int = 0) -> list[int]:
    """This process's patch order in one epoch, a pure function of ``(seed, epoch)``.

    The epoch's permutation of all ``n`` patches comes from the ``"data_order"`` stream; as in
    ``torch.utils.data.DistributedSampler(drop_last=True)``, its first
    ``world_size * (n // world_size)`` entries are dealt out round-robin, so process ``rank``
    gets every ``world_size``-th one from position ``rank``.

    Parameters
    ----------
    n : int
        Number of training patches.
    seed, epoch : int
        Study seed and epoch number (each >= 0).
    world_size, rank : int
        Number of processes and this process's rank (0 <= rank < world_size).

    Returns
    -------
    list of int
        ``n // world_size`` patch indices in ``[0, n)``, disjoint across ranks.

    Raises
    ------
    ValueError
        When ``rank`` is not in ``[0, world_size)`` or ``seed``/``epoch`` is negative.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    perm = torch.randperm(n, generator=torch_stream(seed, "data_order", epoch))
    per_process = n // world_size
    return perm[: per_process * world_size][rank::world_size].tolist()
