"""Stage 03: every random stream of the feature-space stage, keyed by what it is for.

Each stream is derived from the study seed and a purpose through
:class:`numpy.random.SeedSequence` (as stage 02's ``generate.streams``), so streams of different
purposes are independent and no arithmetic seed offsets are needed. Nothing here reads or
changes torch's, NumPy's or Python's global random state.

Purposes used by stage 03:

- ``"sample"``: which patches of each store are embedded (real lesions, the first generator,
  normal tissue, in that order);
- ``"sample_generator"``: the same for each further generator, indexed by a key of its name;
- ``"cnn_init"``, ``"cnn_batch_order"``: the lesion CNN's initial weights and batch order;
- ``"one_nn_subsample"``, ``"one_nn_bootstrap"``: the 1-NN test's balancing and its interval;
- ``"prdc_bootstrap"``: precision / recall / density / coverage intervals;
- ``"frechet_bootstrap"``, ``"frechet_split"``: the Fréchet interval and its half-split yardstick;
- ``"normal_share_bootstrap"``: the normal-neighbour share intervals;
- ``"memorisation_bootstrap"``: the memorisation intervals;
- ``"thumbnails"``: which patch represents each grid cell of the thumbnail figure;
- ``"large_pca"``: the rows the scalable path's PCA is fitted on;
- ``"c2st_folds"``, ``"c2st_init"``, ``"c2st_batches"``, ``"c2st_permutation"``: the CNN
  two-sample test's balanced subsample and folds, each fold network's initial weights, its batch
  order and flips, and the permutation p-value (:mod:`mammo_lib.feature_space.c2st.two_sample`), indexed by a key of the
  test's label (and the fold);
- ``"c2st_null_split"``: the two random halves of the real lesions in the null control;
- ``"random_cnn_init"``: the weights of the random, untrained CNN of the "random-cnn" feature
  space (:mod:`mammo_lib.feature_space.random_cnn`);
- ``"authenticity_split"``, ``"authenticity_bootstrap"``: the two halves of the real lesions in
  the authenticity yardstick (one half as "training", the other as "synthetic") and the
  authenticity intervals (:func:`mammo_lib.feature_space.metrics.authenticity`).
"""

from __future__ import annotations

import numpy as np

from mammo_lib import rng as _rng

PURPOSES = ("sample", "sample_generator", "cnn_init", "cnn_batch_order", "one_nn_subsample", "one_nn_bootstrap",
            "prdc_bootstrap", "frechet_bootstrap", "frechet_split", "normal_share_bootstrap",
            "memorisation_bootstrap", "thumbnails", "large_pca", "c2st_folds", "c2st_init", "c2st_batches",
            "c2st_permutation", "c2st_null_split", "random_cnn_init", "authenticity_split",
            "authenticity_bootstrap")


def stream_seed(seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit seed, a pure function of ``(seed, purpose, *indices)``.

    Parameters
    ----------
    seed : int
        The study seed, >= 0.
    purpose : str
        One of :data:`PURPOSES`.
    *indices : int
        Further keys, each >= 0 (e.g. which metric).

    Returns
    -------
    int
        A seed in ``[0, 2**63)``.

    Raises
    ------
    ValueError
        When ``purpose`` is unknown or ``seed`` or an index is negative.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random stream purpose {purpose!r}; expected one of {PURPOSES}")
    return _rng.stream_seed(seed, purpose, *indices)


def rng(seed: int, purpose: str, *indices: int) -> np.random.Generator:
    """A NumPy generator seeded with :func:`stream_seed` (same arguments, same errors)."""
    stream_seed(seed, purpose, *indices)  # the purpose checked against this stage's list
    return _rng.numpy_stream(seed, purpose, *indices)


def torch_stream(seed: int, purpose: str, *indices: int):
    """A CPU ``torch.Generator`` seeded with :func:`stream_seed` (same arguments, same errors)."""
    stream_seed(seed, purpose, *indices)
    return _rng.torch_stream(seed, purpose, *indices)
