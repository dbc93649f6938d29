"""Random streams keyed by what they are for: the one rule every stage draws random numbers by.

A stream's seed is a pure function of ``(study seed, purpose, *indices)``, derived through
:class:`numpy.random.SeedSequence` from ``[seed, sha256(purpose)[:8], *indices]``: streams of
different keys are independent (no arithmetic offsets such as ``seed + 99``, which collide), and
nothing reads or changes torch's, NumPy's or Python's global random state. Each stage keeps the
list of its purposes (``dcgan_rng``, ``feature_space_rng``) and documents them there.
"""

from __future__ import annotations

import hashlib

import numpy as np


def purpose_code(purpose: str) -> int:
    """A 64-bit integer for a purpose name (the first 8 bytes of its SHA-256, little-endian)."""
    return int.from_bytes(hashlib.sha256(purpose.encode("utf-8")).digest()[:8], "little")


def stream_seed(seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit seed for one random stream, a pure function of ``(seed, purpose, *indices)``.

    Parameters
    ----------
    seed : int
        The study seed, >= 0.
    purpose : str
        What the stream is for (any name; the stages check theirs against their own lists).
    *indices : int
        Further keys, each >= 0 (e.g. rank and iteration, a patch index, a name's code).

    Returns
    -------
    int
        A seed in ``[0, 2**63)``, usable with ``numpy.random.default_rng`` and
        ``torch.Generator.manual_seed``.

    Raises
    ------
    ValueError
        When ``seed`` or an index is negative.
    """
    keys = [int(seed), *(int(i) for i in indices)]
    if min(keys) < 0:
        raise ValueError(f"seed and stream indices must be >= 0, got seed={seed}, indices={indices}")
    entropy = [keys[0], purpose_code(purpose), *keys[1:]]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def numpy_stream(seed: int, purpose: str, *indices: int) -> np.random.Generator:
    """A NumPy ``Generator`` seeded with :func:`stream_seed` (same arguments, same errors)."""
    return np.random.default_rng(stream_seed(seed, purpose, *indices))


def torch_stream(seed: int, purpose: str, *indices: int):
    """A CPU ``torch.Generator`` seeded with :func:`stream_seed` (same arguments, same errors)."""
    import torch

    return torch.Generator().manual_seed(stream_seed(seed, purpose, *indices))
