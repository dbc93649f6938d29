"""Scoring DCGAN candidates by the CNN two-sample test on patches that chose nothing.

Helpers of ``bench_dcgan_quality.py`` (and of any benchmark that chooses generators by the C2ST):

- :func:`split_real`: split a run's real lesion patches once, by a keyed stream, into a part
  for the measures that earlier rounds selected by and a part that only the C2ST sees;
- :func:`score_c2st`: the held-out C2ST of :mod:`mammo_lib.feature_space.c2st.two_sample` as a flat record, and
  :func:`format_c2st` / :func:`null_verdict` to print it;
- :data:`OPTIMISED_AGAINST` and :func:`optimised_measures`: which printed measures a
  candidate's training options optimise, so that a measure a candidate was trained to satisfy
  is marked instead of read as evidence of realism.

Not a benchmark itself (no ``bench_`` prefix, so ``make bench`` does not run it).
"""

from __future__ import annotations

import numpy as np

from mammo_lib.feature_space.c2st.two_sample import ObserverConfig, c2st
from mammo_lib.rng import numpy_stream

# purpose of the keyed stream that splits the real lesion patches (mammo_lib.rng: any name)
SPLIT_PURPOSE = "bench_dcgan_quality_c2st_split"
# label of every candidate's C2ST: the same label gives every candidate the same folds of the
# real patches and the same initial weights of the fold networks (common random numbers), so
# that differences between candidates are not differences of those draws
GENERATOR_LABEL = "generator"
NULL_LABEL = "null"

# TrainConfig option -> (measure it optimises, how); an option is "on" when its value is > 0.
# Every candidate is also trained against D, a CNN that tells the training real patches from G's:
# the C2ST's question, but asked by D during training, of all candidates alike, so it marks
# nothing here (the C2ST's networks are new ones, trained after G is frozen).
OPTIMISED_AGAINST = {
    "spectral_loss_weight": ("auc_spec", "G's loss pulls the batch's radial log power spectrum towards the "
                                         "real batch's: the first features of the spectrum observer"),
    "spectral_d_weight": ("auc_spec", "a second discriminator, trained during G's training, classifies each "
                                      "patch by its radial log power profile: the spectrum observer's main "
                                      "features, with a classifier"),
}


def split_real(n_real: int, c2st_share: float, n_folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_real`` real patches into a part for the measures and a part for the C2ST only.

    Parameters
    ----------
    n_real : int
        Real lesion patches of the run.
    c2st_share : float
        Share reserved for the C2ST, in (0, 1).
    n_folds : int
        Folds of the C2ST (its part needs 2 patches per fold).
    seed : int
        Benchmark seed; the split is the ``SPLIT_PURPOSE`` stream's permutation.

    Returns
    -------
    measures, reserve : int arrays
        Sorted, disjoint row indices covering ``range(n_real)``.

    Raises
    ------
    ValueError
        When ``c2st_share`` is outside (0, 1) or a part is too small (the C2ST part needs
        ``2 * n_folds`` patches, the measures part 8).
    """
    if not 0.0 < c2st_share < 1.0:
        raise ValueError(f"the C2ST's share of the real patches must be in (0, 1), got {c2st_share}")
    n_reserve = int(round(c2st_share * n_real))
    if n_reserve < 2 * n_folds or n_real - n_reserve < 8:
        raise ValueError(f"{n_real} real patches split {n_real - n_reserve} (measures) / {n_reserve} (C2ST): "
                         f"the C2ST needs at least {2 * n_folds} ({n_folds} folds of 2) and the measures 8")
    order = numpy_stream(seed, SPLIT_PURPOSE).permutation(n_real)
    return np.sort(order[n_reserve:]), np.sort(order[:n_reserve])


def optimised_measures(config: dict) -> dict[str, list[str]]:
    """The printed measures that the options of ``config`` optimise.

    Parameters
    ----------
    config : dict
        TrainConfig fields (a candidate's settings, or a run's ``training_summary.json`` config).

    Returns
    -------
    dict
        Measure name -> the options in ``config`` that optimise it (empty when none does).
    """
    out: dict[str, list[str]] = {}
    for option, (measure, _) in OPTIMISED_AGAINST.items():
        if float(config.get(option, 0) or 0) > 0:
            out.setdefault(measure, []).append(option)
    return out


def score_c2st(first: np.ndarray, second: np.ndarray, label: str, names: tuple[str, str], seed: int,
               config: ObserverConfig, n_permutations: int) -> dict:
    """One held-out C2ST (:func:`mammo_lib.feature_space.c2st.two_sample.c2st`) as a flat record for a printed line.

    Parameters
    ----------
    first, second : uint8 array, shape (n, s, s)
        The two sets (second positive); the larger is subsampled to the smaller.
    label : str
        Keys the test's streams (:data:`GENERATOR_LABEL` for candidates, :data:`NULL_LABEL`).
    names : tuple of str
    seed : int
    config : ObserverConfig
    n_permutations : int

    Returns
    -------
    dict
        ``c2st``, ``c2st_lo``, ``c2st_hi`` (DeLong 95%), ``c2st_p`` (permutation),
        ``c2st_acc``, ``c2st_n`` (patches per set), ``c2st_folds`` (per-fold AUCs),
        ``c2st_cpu_s``, ``c2st_warnings``.
    """
    r = c2st(first, second, label=label, names=names, config=config, seed=seed, n_permutations=n_permutations)
    return {"c2st": r.auc, "c2st_lo": r.auc_ci_low, "c2st_hi": r.auc_ci_high, "c2st_p": r.p_value,
            "c2st_acc": r.accuracy["estimate"], "c2st_n": r.n_per_set,
            "c2st_folds": r.fold_aucs, "c2st_cpu_s": r.cpu_seconds, "c2st_warnings": list(r.warnings)}


def format_c2st(r: dict) -> str:
    """``c2st 0.973 [0.958, 0.988] p 0.001`` (AUC, DeLong 95% CI, permutation p)."""
    return f"c2st {r['c2st']:.3f} [{r['c2st_lo']:.3f}, {r['c2st_hi']:.3f}] p {r['c2st_p']:.3f}"


def null_verdict(r: dict) -> str:
    """Issue 20's rule for the null control: calibrated unless its CI excludes 0.5 or its AUC exceeds 0.6."""
    if r["c2st_lo"] > 0.5 or r["c2st_hi"] < 0.5 or r["c2st"] > 0.6:
        return "NOT calibrated on this data (CI excludes 0.5 or AUC > 0.6): do not read the C2ST lines"
    return "calibrated (CI holds 0.5)"


def default_observer(n_threads: int = 1) -> ObserverConfig:
    """The study's C2ST observer (:class:`mammo_lib.feature_space.c2st.two_sample.ObserverConfig` defaults) on ``n_threads``."""
    return ObserverConfig(n_threads=n_threads)
