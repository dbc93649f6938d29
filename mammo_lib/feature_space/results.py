"""Stage 03's results: the realism metrics per generator and feature space, and every file the
stage writes (besides figures) -- with the schema of ``feature_space/metrics.json``. Their table
and the notebook's text are built in ``feature_space.tables`` (re-exported here).

Files written by :func:`write_results` into ``<run>/feature_space/``:

- ``embedding.csv``: one row per embedded patch (group, patch_id, t-SNE x1/x2, outlier flags
  and class-balanced normal-neighbour shares in t-SNE and each feature space -- columns
  ``outlier_<space>``, ``normal_neighbour_share_<space>`` with a hyphen in the space's name
  written as an underscore (:func:`column_suffix`: ``outlier_random_cnn``) --, and the
  generator of each synthetic patch);
- ``metrics.json``: a :class:`Stage03Metrics` (below), paths relative to the run folder;
- ``metrics_table.csv``: the flat table of :func:`metrics_table`, one block per feature space
  and generator (column ``generator``);
- ``timings.json``: wall-clock seconds (the only stage-03 output that differs on a rerun
  with the same seed and inputs).

Reads nothing; the inputs are the in-memory results of ``feature_space``, ``tsne``,
``lesion_cnn`` and ``feature_space.metrics``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from mammo_lib import fileio, run_folder
from mammo_lib.feature_space import metrics as rm
from mammo_lib.feature_space.lesion_cnn import LesionCNN
from mammo_lib.feature_space.sampling import (
    GroupSample,
    feature_matrices,
    mark_outliers,
    neighbour_normal_share,
)
from mammo_lib.feature_space.tables import (  # re-exported: the notebook calls them as fsr.*
    closest_pairs_by_generator,
    describe_tsne,
    generators_markdown,
    metrics_table,
    outlier_counts,
    summary_rows,
)
from mammo_lib.feature_space.tsne.run import TSNEResult
from mammo_lib.run_folder import run_relative
from mammo_lib.timings import write_timings

__all__ = ["analyse_spaces", "column_suffix", "metrics_record", "write_results", "summary_rows", "metrics_table",
           "outlier_counts", "closest_pairs_by_generator", "generators_markdown", "describe_tsne"]

# ----------------------------------------------------------------------------- metrics.json schema


class Estimate(TypedDict):
    """A metric with its percentile bootstrap interval (NaN written as null)."""

    value: float
    ci_low: float | None
    ci_high: float | None
    n_bootstrap: int
    ci_level: float  # 0.95


class OneNNAccuracy(Estimate):
    """1-NN two-sample accuracy (0.5 = indistinguishable, 1 = separable; Lopez-Paz & Oquab 2017)."""

    accuracy_real: float  # share of real points whose nearest neighbour is real
    accuracy_synthetic: float  # share of synthetic points whose nearest neighbour is synthetic
    lopsided: bool  # |accuracy_real - accuracy_synthetic| > realism_metrics.LOPSIDED_GAP: the mean is no verdict
    n_real: int  # sizes used (the larger set subsampled to the smaller)
    n_synthetic: int
    n_given: list[int]  # sizes passed in [real, synthetic]


class PRDC(TypedDict):
    """Precision, recall, density, coverage (Naeem et al. 2020) with k-NN balls."""

    k: int
    precision: Estimate
    recall: Estimate
    density: Estimate
    coverage: Estimate


class FrechetDistance(Estimate):
    """Fréchet distance in a PCA space fitted on real lesions (Dowson & Landau 1982)."""

    real_split_half: float | None  # real half vs other real half ("no difference" yardstick)
    real_half_vs_synthetic_half: float | None
    pca_dims: int
    explained_variance: float  # share of the real set's variance in the PCA space


class NormalNeighbourShare(Estimate):
    """Share of synthetic lesions whose k nearest real neighbours are mostly normal tissue."""

    real_lesion_reference: Estimate  # the same share for real lesions (leave-one-out)
    k: int
    threshold: float


class ClosestPair(TypedDict):
    synthetic_index: int  # row in the sample's synthetic group
    real_index: int  # row in the sample's lesion group
    distance: float  # Euclidean, feature units


class Authenticity(Estimate):
    """Share of synthetic patches that are authentic: not closer to their nearest training patch
    than that patch's own nearest other training patch (Alaa et al., ICML 2022)."""

    real_vs_real: Estimate  # a held-out real half against the other real half as training (yardstick)
    synthetic_vs_training_half: float | None  # the synthetic share against that training half only
    n_training_half: int
    n_held_out_half: int


class Memorisation(TypedDict):
    """Memorisation check: synthetic-to-training vs real leave-one-out NN distances. The share
    key is named after the quantile (``share_synthetic_below_real_q05`` for 5%)."""

    median_ratio_synthetic_to_real: Estimate  # << 1 would mean copying
    median_nn_distance_synthetic_to_train: float
    median_nn_distance_real_to_train_loo: float
    share_synthetic_below_real_q05: Estimate  # about 0.05 without copying
    real_quantile_cut: float
    exact_duplicates: int
    closest_pairs: list[ClosestPair]
    authenticity: Authenticity
    reference: str


class SpaceMetrics(TypedDict):
    """Every realism metric of one feature space ("pixels", "cnn" or "random-cnn")."""

    n: dict[str, int]  # points per group: lesion, synthetic, normal
    n_features: int  # 16,384 raw pixels for 128x128 patches; 32 CNN features; 240 random-CNN features
    one_nn_accuracy: OneNNAccuracy
    prdc: PRDC
    frechet_distance: FrechetDistance
    synthetic_normal_neighbour_share: NormalNeighbourShare
    memorisation: Memorisation


class TSNERecord(TypedDict):
    backend: str
    kl_divergence: float  # the backend's final KL (exact for exact-torch), nats
    n_iter_run: int
    n_iter_requested: int
    perplexity_requested: float
    perplexity_used: float  # lower when clamped to (n - 1) / 3
    stop_early: bool
    params: dict  # init, seed, learning_rate, gradient, n_points, n_features, ...
    warnings: list[str]


class SampleRecord(TypedDict):
    n_per_group_requested: int  # per group and per generator
    counts: dict[str, int]  # patches per group actually embedded (synthetic: all generators)
    seed: int
    lesion_classes: list[str] | None  # None: every class
    warnings: list[str]
    sources: dict[str, str]  # store per group, relative to the run folder (synthetic: the first generator's)


class CNNRecord(TypedDict):
    epochs: int
    train_accuracy: float
    n_train: int
    feature_dim: int


class GeneratorRecord(TypedDict):
    """One generator of the synthetic group (one ``synthetic/<name>.zarr`` store)."""

    name: str  # the store's generator name ("dcgan" for the DCGAN's synthetic/synthetic.zarr)
    store: str  # relative to the run folder
    n: int  # its patches embedded


class Stage03Metrics(TypedDict):
    """The whole of ``feature_space/metrics.json``.

    Schema change for several generators: ``generators``,
    ``metrics_by_generator`` and ``outliers_tsne_by_generator`` were added; ``metrics`` keeps
    its meaning (the first generator's, the paper's "GAN"; with one generator the only one),
    so readers of the one-generator file need no change. Every generator is measured against
    the same real lesions and normal tissue.
    """

    tsne: TSNERecord
    sample: SampleRecord
    generators: list[GeneratorRecord]  # in order; the first is the paper's "GAN"
    outliers_tsne: dict[str, int]  # outliers per group in the t-SNE embedding (synthetic: all generators)
    outliers_tsne_by_generator: dict[str, int]  # synthetic outliers per generator
    cnn: CNNRecord | None  # None when the "cnn" space was not requested
    metrics: dict[str, SpaceMetrics]  # per feature space, of the first generator (generators[0])
    metrics_by_generator: dict[str, dict[str, SpaceMetrics]]  # generator -> feature space -> metrics
    # the CNN two-sample test per generator with its null and positive controls and frequency sweep
    # (keys: mammo_lib.feature_space.c2st.records.c2st_record); None when not run
    c2st: dict | None
    # what the t-SNE pictures can show (mammo_lib.feature_space.tsne.readability.readability), per embedded space
    tsne_readability: dict


# ----------------------------------------------------------------------------- computing


def column_suffix(space: str) -> str:
    """A feature space's name as a column-name suffix: "random-cnn" -> "random_cnn" (so
    ``outlier_random_cnn`` is a plain identifier, like ``outlier_pixels``)."""
    return space.replace("-", "_")


def analyse_spaces(sample: GroupSample, table: pd.DataFrame, feature_spaces: list[str],
                   cnn: LesionCNN | None, n_bootstrap: int = 1000, seed: int = 0, k_prdc: int = 5,
                   k_neighbours: int = 10, fd_dims: int | None = 32,
                   n_threads: int = 1) -> tuple[dict, pd.DataFrame]:
    """Realism metrics of every generator, and outlier columns, in each feature space.

    Every generator's synthetic patches are compared with the *same* real lesions and normal
    tissue of the sample, with the same random streams (so the first generator's numbers are
    those of a one-generator run).

    Parameters
    ----------
    sample : GroupSample
    table : pandas.DataFrame
        The embedding table (``sampling.embedding_table``); not modified.
    feature_spaces : list of {"pixels", "cnn", "random-cnn"}
    cnn : LesionCNN or None
        Needed for "cnn".
    n_bootstrap, seed, k_prdc, k_neighbours, fd_dims
        As :func:`mammo_lib.feature_space.metrics.realism_metrics`; ``seed`` also draws the random
        CNN of "random-cnn" (:func:`mammo_lib.feature_space.sampling.feature_matrices`).
    n_threads : int
        torch CPU threads of the random CNN.

    Returns
    -------
    metrics : dict of str to dict of str to SpaceMetrics
        Generator -> feature space -> metrics, generators in ``sample.generator_names()`` order.
    table : pandas.DataFrame
        A copy of ``table`` with ``outlier_<space>`` and ``normal_neighbour_share_<space>``
        columns added (``<space>`` as :func:`column_suffix`: ``outlier_random_cnn``).

    Raises
    ------
    FeatureSpaceError
        For an unknown space, "cnn" without a CNN, or patches too small for the random CNN.
    MetricsError
        As ``feature_space.metrics``.
    """
    table = table.copy()
    names = sample.generator_names()
    metrics: dict[str, dict] = {name: {} for name in names}
    for space in feature_spaces:
        feats = feature_matrices(sample, space, cnn, seed=seed, n_threads=n_threads)
        lesion, normal = feats[sample.groups == "lesion"], feats[sample.groups == "normal"]
        for name in names:
            synthetic = feats[(sample.groups == "synthetic") & (sample.generators == name)]
            metrics[name][space] = rm.realism_metrics(lesion, synthetic, normal, n_bootstrap=n_bootstrap,
                                                      seed=seed, k_prdc=k_prdc, k_neighbours=k_neighbours,
                                                      fd_dims=fd_dims)
        suffix = column_suffix(space)
        table[f"outlier_{suffix}"] = mark_outliers(feats, sample.groups, k=k_neighbours)
        table[f"normal_neighbour_share_{suffix}"] = np.round(neighbour_normal_share(feats, sample.groups,
                                                                                    k=k_neighbours), 4)
    return metrics, table


# ----------------------------------------------------------------------------- writing


def _jsonable(obj):
    """:func:`fileio.json_safe`, with the ``per_point*`` lists (kept in memory only) dropped."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if not str(k).startswith("per_point")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return fileio.json_safe(obj)


def metrics_record(sample: GroupSample, result: TSNEResult, table: pd.DataFrame,
                   metrics: dict[str, dict[str, SpaceMetrics]], cnn: LesionCNN | None, n_per_group: int,
                   n_iter: int, perplexity: float, seed: int, stop_early: bool, c2st: dict | None = None,
                   tsne_readability: dict | None = None) -> Stage03Metrics:
    """The :class:`Stage03Metrics` dict of a stage-03 run (no timings in it); ``metrics`` is
    generator -> feature space -> metrics (:func:`analyse_spaces`), ``c2st`` the CNN two-sample
    tests' record (:func:`mammo_lib.feature_space.c2st.records.c2st_record`), ``feature_space.tsne.readability`` space ->
    :func:`mammo_lib.feature_space.tsne.readability.readability`."""
    names = sample.generator_names()
    synthetic = table[table["group"] == "synthetic"]
    return {
        "tsne": {"backend": result.backend, "kl_divergence": result.kl_divergence, "n_iter_run": result.n_iter,
                 "n_iter_requested": n_iter, "perplexity_requested": perplexity,
                 "perplexity_used": result.perplexity, "stop_early": bool(stop_early), "params": result.params,
                 "warnings": result.warnings},
        "sample": {"n_per_group_requested": n_per_group, "counts": sample.counts(), "seed": seed,
                   "lesion_classes": sample.lesion_classes, "warnings": sample.warnings,
                   "sources": sample.sources},
        "generators": [{"name": g, "store": sample.generator_sources.get(g, ""), "n": n}
                       for g, n in sample.generator_counts().items()],
        "outliers_tsne": {g: int(v) for g, v in table.groupby("group")["outlier_tsne"].sum().items()},
        "outliers_tsne_by_generator": {g: int(synthetic.loc[synthetic["generator"] == g, "outlier_tsne"].sum())
                                       for g in names},
        "cnn": None if cnn is None else {"epochs": cnn.epochs, "train_accuracy": cnn.train_accuracy,
                                         "n_train": cnn.n_train, "feature_dim": cnn.feature_dim},
        "metrics": metrics[names[0]],
        "metrics_by_generator": metrics,
        "c2st": c2st,
        "tsne_readability": tsne_readability or {},
    }


def write_results(run_dir: str | os.PathLike, sample: GroupSample, result: TSNEResult, table: pd.DataFrame,
                  metrics: dict[str, dict[str, SpaceMetrics]], cnn: LesionCNN | None, *, n_per_group: int,
                  n_iter: int, perplexity: float, seed: int, stop_early: bool, c2st: dict | None = None,
                  c2st_scores: pd.DataFrame | None = None, c2st_cpu_seconds: float | None = None,
                  tsne_readability: dict | None = None) -> list[str]:
    """Write every stage-03 output file except the figures, each atomically.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder; files go to ``<run_dir>/feature_space/``.
    sample, result, table, metrics, cnn
        The stage's results (``load_groups``, ``run_tsne``, ``analyse_spaces`` -- ``metrics``
        is generator -> feature space -> metrics --, ``train_lesion_cnn``; ``cnn`` None when
        not trained).
    n_per_group, n_iter, perplexity, seed, stop_early
        The requested parameters, recorded beside what was used.
    c2st : dict, optional
        The CNN two-sample tests' record (:func:`mammo_lib.feature_space.c2st.records.c2st_record`).
    c2st_scores : pandas.DataFrame, optional
        Their held-out scores (:func:`mammo_lib.feature_space.c2st.records.score_table`), written as
        ``c2st_scores.csv``.
    c2st_cpu_seconds : float, optional
        CPU seconds of the tests (a timing, into ``timings.json``).
    tsne_readability : dict, optional
        Space -> :func:`mammo_lib.feature_space.tsne.readability.readability`.

    Returns
    -------
    list of str
        The files written, relative to ``run_dir``: ``embedding.csv``, ``metrics.json``,
        ``metrics_table.csv``, ``c2st_scores.csv`` (with ``c2st_scores``), ``timings.json``
        (seconds of the t-SNE, the CNN and the C2ST, the only file that differs on a rerun with the
        same seed and inputs).

    Raises
    ------
    OSError
        When a file cannot be written (nothing half-written is left).
    TypeError
        When a metric holds a value JSON cannot represent.
    """
    out_dir = run_folder.stage_dir(run_dir, "feature_space")
    record = metrics_record(sample, result, table, metrics, cnn, n_per_group, n_iter, perplexity, seed,
                            stop_early, c2st=c2st, tsne_readability=tsne_readability)
    timings = {"tsne_seconds": round(result.seconds, 2),
               "cnn_seconds": None if cnn is None else round(cnn.seconds, 2),
               "c2st_cpu_seconds": None if c2st_cpu_seconds is None else round(c2st_cpu_seconds, 2)}
    paths: list[Path] = [
        fileio.atomic_write_text(out_dir / "embedding.csv", table.to_csv(index=False)),
        fileio.write_json(out_dir / "metrics.json", _jsonable(record)),
        fileio.atomic_write_text(out_dir / "metrics_table.csv", metrics_table(metrics).to_csv(index=False)),
    ]
    if c2st_scores is not None:
        paths.append(fileio.atomic_write_text(out_dir / "c2st_scores.csv", c2st_scores.to_csv(index=False)))
    paths.append(write_timings(out_dir, timings))
    return [run_relative(Path(p).resolve(), run_dir) for p in paths]
