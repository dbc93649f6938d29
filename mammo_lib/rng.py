"""Random streams keyed by what they are for: the one rule every stage draws random numbers by.

A stream's seed is a pure function of ``(study seed, purpose, *indices)``, derived through
:class:`numpy.random.SeedSequence` from ``[seed, sha256(purpose)[:8], *indices]``: streams of
different keys are independent (no arithmetic offsets such as ``seed + 99``, which collide), and
nothing reads or changes torch's, NumPy's or Python's global random state. Each stage keeps the
list of its purposes (:mod:`mammo_lib.generate.streams`, :mod:`mammo_lib.feature_space.streams`)
and documents them there. No module but this one seeds a generator itself (a test
checks).
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


# ---------------------------------------------------------------------------------------------
# Older seeding schemes, kept because changing them would change the study's numbers (the
# phantom's pixels, the patches' placement, the case ids, the bootstrap draws). Each is named for
# what it seeds and draws exactly the numbers its call site drew before it moved here.


def phantom_image_stream(seed: int, index: int) -> np.random.Generator:
    """The phantom's image ``index``: ``default_rng([seed, index])``."""
    return np.random.default_rng([int(seed), int(index)])


def image_stream(seed: int, image_id: str) -> np.random.Generator:
    """Stage 01's rules for one image (normal-patch placement): ``default_rng([seed, key])``, the
    key the first 16 hex digits of the image id's SHA-256; depends only on the seed and the id."""
    key = int(hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:16], 16)
    return np.random.default_rng([int(seed), key])


def text_stream(*parts: object) -> np.random.Generator:
    """A stream keyed by text: seeded with the first 8 bytes (little-endian) of the SHA-256 of the
    parts joined by ``":"`` (not Python's salted ``hash``); the reading order of a case set."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def case_ids_stream(seed: int) -> np.random.Generator:
    """Stage 04's opaque case ids: ``default_rng([seed, 4])``."""
    return np.random.default_rng([int(seed), 4])


def case_sampling_stream(seed: int) -> np.random.Generator:
    """Stage 04's choice of which patches become cases: ``default_rng(seed)``."""
    return np.random.default_rng(int(seed))


def bootstrap_stream(seed: int | np.random.SeedSequence) -> np.random.Generator:
    """A bootstrap's resampling stream: ``default_rng(seed)`` (an int, or a SeedSequence from
    :func:`reader_stream_seed`)."""
    return np.random.default_rng(seed)


def reader_stream_seed(seed: int, purpose: int, *keys: str) -> np.random.SeedSequence:
    """Stage 05's per-reader bootstrap streams: ``SeedSequence([seed, purpose, *key(k)])``, each
    key the first 4 bytes (little-endian) of the SHA-256 of a name (reader, generator)."""
    def key(text: str) -> int:
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    return np.random.SeedSequence([int(seed), int(purpose), *(key(k) for k in keys)])


def fixture_stream(seed: int) -> np.random.Generator:
    """Test and benchmark fixtures (:mod:`mammo_lib.testing`): ``default_rng(seed)``."""
    return np.random.default_rng(int(seed))


def torch_seeded(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed`` as given (a latent seed that is itself a
    :func:`stream_seed`, recorded per patch so that one patch can be redrawn alone)."""
    import torch

    return torch.Generator().manual_seed(int(seed))
