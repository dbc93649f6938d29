"""Stage 03's results: the realism metrics per generator and feature space, their table, and
every file the stage writes (besides figures) -- with the schema of ``feature_space/metrics.json``.

Files written by :func:`write_results` into ``<run>/feature_space/``:

- ``embedding.csv``: one row per embedded patch (group, patch_id, t-SNE x1/x2, outlier flags
  and class-balanced normal-neighbour shares in t-SNE, pixel and CNN space, and the generator
  of each synthetic patch);
- ``metrics.json``: a :class:`Stage03Metrics` (below), paths relative to the run folder;
- ``metrics_table.csv``: the flat table of :func:`metrics_table`, one block per feature space
  and generator (column ``generator``);
- ``timings.json``: wall-clock seconds (the only stage-03 output that differs on a rerun
  with the same seed and inputs).

Reads nothing; the inputs are the in-memory results of ``feature_space``, ``tsne``,
``lesion_cnn`` and ``realism_metrics``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from mammo_lib import fileio, run_folder
from mammo_lib import realism_metrics as rm
from mammo_lib.feature_space import (
    GroupSample,
    feature_matrices,
    mark_outliers,
    neighbour_normal_share,
)
from mammo_lib.lesion_cnn import LesionCNN
from mammo_lib.tsne import TSNEResult

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

    accuracy_real: float
    accuracy_synthetic: float
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
    reference: str


class SpaceMetrics(TypedDict):
    """Every realism metric of one feature space ("pixels" or "cnn")."""

    n: dict[str, int]  # points per group: lesion, synthetic, normal
    n_features: int  # 16,384 raw pixels for 128x128 patches; 32 CNN features
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

    Schema change for several generators (issue 14): ``generators``,
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


# ----------------------------------------------------------------------------- computing


def analyse_spaces(sample: GroupSample, table: pd.DataFrame, feature_spaces: list[str],
                   cnn: LesionCNN | None, n_bootstrap: int = 1000, seed: int = 0, k_prdc: int = 5,
                   k_neighbours: int = 10, fd_dims: int | None = 32) -> tuple[dict, pd.DataFrame]:
    """Realism metrics of every generator, and outlier columns, in each feature space.

    Every generator's synthetic patches are compared with the *same* real lesions and normal
    tissue of the sample, with the same random streams (so the first generator's numbers are
    those of a one-generator run).

    Parameters
    ----------
    sample : GroupSample
    table : pandas.DataFrame
        The embedding table (``feature_space.embedding_table``); not modified.
    feature_spaces : list of {"pixels", "cnn"}
    cnn : LesionCNN or None
        Needed for "cnn".
    n_bootstrap, seed, k_prdc, k_neighbours, fd_dims
        As :func:`mammo_lib.realism_metrics.realism_metrics`.

    Returns
    -------
    metrics : dict of str to dict of str to SpaceMetrics
        Generator -> feature space -> metrics, generators in ``sample.generator_names()`` order.
    table : pandas.DataFrame
        A copy of ``table`` with ``outlier_<space>`` and ``normal_neighbour_share_<space>``
        columns added.

    Raises
    ------
    FeatureSpaceError
        For an unknown space or "cnn" without a CNN.
    MetricsError
        As ``realism_metrics``.
    """
    table = table.copy()
    names = sample.generator_names()
    metrics: dict[str, dict] = {name: {} for name in names}
    for space in feature_spaces:
        feats = feature_matrices(sample, space, cnn)
        lesion, normal = feats[sample.groups == "lesion"], feats[sample.groups == "normal"]
        for name in names:
            synthetic = feats[(sample.groups == "synthetic") & (sample.generators == name)]
            metrics[name][space] = rm.realism_metrics(lesion, synthetic, normal, n_bootstrap=n_bootstrap,
                                                      seed=seed, k_prdc=k_prdc, k_neighbours=k_neighbours,
                                                      fd_dims=fd_dims)
        table[f"outlier_{space}"] = mark_outliers(feats, sample.groups, k=k_neighbours)
        table[f"normal_neighbour_share_{space}"] = np.round(neighbour_normal_share(feats, sample.groups,
                                                                                    k=k_neighbours), 4)
    return metrics, table


def _summary_rows(space: str, m: dict, generator: str = "") -> list[dict]:
    def row(name, e, ref=""):
        return {"feature_space": space, "generator": generator, "metric": name, "value": e["value"],
                "ci_low": e["ci_low"], "ci_high": e["ci_high"], "reference": ref}

    fd = m["frechet_distance"]
    nns = m["synthetic_normal_neighbour_share"]
    mem = m["memorisation"]
    q_key = next(k for k in mem if k.startswith("share_synthetic_below_real_q"))
    rows = [
        row("1-NN accuracy real vs synthetic", m["one_nn_accuracy"], "0.5 = indistinguishable, 1 = separable"),
        row("precision", m["prdc"]["precision"], "1 = every synthetic patch looks real"),
        row("recall", m["prdc"]["recall"], "1 = synthetic set covers real variety"),
        row("density", m["prdc"]["density"], "about 1 when distributions match"),
        row("coverage", m["prdc"]["coverage"], "1 = every real neighbourhood has a synthetic patch"),
        row(f"Fréchet distance (PCA {fd['pca_dims']} dims)", fd,
            f"at half size: real vs real {fd['real_split_half']:.4g}, "
            f"real vs synthetic {fd['real_half_vs_synthetic_half']:.4g}"),
        row("synthetic with mostly normal-tissue neighbours", nns,
            f"real lesions: {nns['real_lesion_reference']['value']:.3f}"),
        row("memorisation: median NN distance ratio synth/real", mem["median_ratio_synthetic_to_real"],
            "<< 1 would mean copying"),
        row(f"memorisation: share below real {int(q_key[-2:])}% NN distance", mem[q_key],
            f"about {int(q_key[-2:]) / 100:.2f} if no copying"),
    ]
    for r in rows:
        for key in ("value", "ci_low", "ci_high"):
            r[key] = None if r[key] is None or (isinstance(r[key], float) and math.isnan(r[key])) else round(r[key], 4)
    return rows


def summary_rows(space: str, m: SpaceMetrics, generator: str = "") -> list[dict]:
    """Flat rows of one feature space's metrics of one generator.

    Parameters
    ----------
    space : str
    m : SpaceMetrics
    generator : str
        The generator the metrics are of.

    Returns
    -------
    list of dict
        Nine rows with ``feature_space``, ``generator``, ``metric``, ``value``, ``ci_low``,
        ``ci_high`` (rounded to 4 decimals; None for NaN) and ``reference`` (how to read it).
    """
    return _summary_rows(space, m, generator)


def metrics_table(metrics: dict[str, dict[str, SpaceMetrics]]) -> pd.DataFrame:
    """:func:`summary_rows` of every feature space and generator as one DataFrame
    (``metrics_table.csv``).

    Parameters
    ----------
    metrics : dict of str to dict of str to SpaceMetrics
        Generator -> feature space -> metrics (:func:`analyse_spaces`).

    Returns
    -------
    pandas.DataFrame
        Columns feature_space, generator, metric, value, ci_low, ci_high, reference; rows by
        feature space, then generator (in the given order), then metric.
    """
    spaces = list(dict.fromkeys(space for by_space in metrics.values() for space in by_space))
    return pd.DataFrame([row for space in spaces for gen, by_space in metrics.items() if space in by_space
                         for row in _summary_rows(space, by_space[space], gen)])


def outlier_counts(table: pd.DataFrame, column: str = "outlier_tsne") -> pd.DataFrame:
    """Outliers and their share per group, and per generator when there are several.

    Parameters
    ----------
    table : pandas.DataFrame
        The embedding table (columns ``group``, the boolean ``column`` and, from
        :func:`mammo_lib.feature_space.embedding_table`, ``generator``).
    column : str
        Which outlier flag to count (``outlier_tsne``, ``outlier_pixels``, ``outlier_cnn``).

    Returns
    -------
    pandas.DataFrame
        Index ``group``: the groups present in :data:`mammo_lib.feature_space.GROUP_ORDER`
        order, the synthetic group split into ``synthetic: <name>`` rows (in the order the
        generators appear in ``table``) when it holds several generators; columns ``outliers``
        (count) and ``share`` (fraction of the row's patches, 0-1).
    """
    label = table["group"]
    gens = table.loc[table["group"] == "synthetic", "generator"] if "generator" in table else pd.Series([], dtype=str)
    names = list(dict.fromkeys(gens))
    if len(names) > 1:
        label = label.where(label != "synthetic", "synthetic: " + table.get("generator", ""))
    agg = table.groupby(label)[column].agg(["sum", "mean"]).rename(columns={"sum": "outliers", "mean": "share"})
    order = [f"synthetic: {n}" for n in names] if len(names) > 1 else ["synthetic"]
    return agg.reindex([g for g in ("lesion", *order, "normal") if g in agg.index]).rename_axis("group")


def closest_pairs_by_generator(sample: GroupSample, metrics: dict[str, dict[str, SpaceMetrics]],
                               space: str) -> dict[str, tuple[np.ndarray, list[ClosestPair]]]:
    """Each generator's synthetic patches and closest pairs in one feature space, for
    :func:`mammo_lib.feature_space_plots.plot_closest_pairs_by_generator`.

    Parameters
    ----------
    sample : GroupSample
    metrics : dict of str to dict of str to SpaceMetrics
        :func:`analyse_spaces`'s metrics.
    space : str

    Returns
    -------
    dict of str to (uint8 array, shape (n_g, s, s), list of ClosestPair)
        In generator order; the pairs index these patches and ``sample.of("lesion")``.
    """
    return {g: (sample.of("synthetic", g), metrics[g][space]["memorisation"]["closest_pairs"])
            for g in sample.generator_names()}


def _ci_text(e: dict) -> str:
    value, lo, hi = e["value"], e["ci_low"], e["ci_high"]
    interval = "" if lo is None or hi is None or math.isnan(lo) or math.isnan(hi) else f" [{lo:.2f}, {hi:.2f}]"
    return f"{value:.3f}{interval}"


def generators_markdown(sample: GroupSample, metrics: dict[str, dict[str, SpaceMetrics]]) -> str:
    """The notebook's paragraph on the generators of this run, built from the data (names,
    stores, counts, symbols, headline metrics; nothing hard-coded).

    Parameters
    ----------
    sample : GroupSample
    metrics : dict of str to dict of str to SpaceMetrics
        :func:`analyse_spaces`'s metrics.

    Returns
    -------
    str
        Markdown.
    """
    from mammo_lib.feature_space_plots import generator_style_words

    counts, per_gen = sample.counts(), sample.generator_counts()
    names = sample.generator_names()
    items = [f"**{g}** (`{sample.generator_sources.get(g, '')}`, {per_gen[g]} patches embedded; "
             f"{generator_style_words(k)} in Fig. 2)" for k, g in enumerate(names)]
    real = f"the same {counts['lesion']} real lesions and {counts['normal']} normal-tissue patches"
    if len(names) == 1:
        text = [f"One generator in this run: {items[0]}, measured against {real}. Notebook 02's `generators` "
                "parameter adds others (a folder of patches, a TorchScript model, a medigan model); each is then "
                "measured here in the same way, side by side."]
    else:
        text = [f"{len(names)} generators in this run, each measured against {real}: " + "; ".join(items) + ". "
                f"The first, **{names[0]}**, takes the paper's place of the GAN (its metrics are also "
                "`metrics` in `metrics.json`)."]
    for space in next(iter(metrics.values()), {}):
        line = "; ".join(f"{g} {_ci_text(metrics[g][space]['one_nn_accuracy'])}" for g in names)
        fd = "; ".join(f"{g} {metrics[g][space]['frechet_distance']['real_half_vs_synthetic_half']:.3g}"
                       for g in names)
        yard = metrics[names[0]][space]["frechet_distance"]["real_split_half"]
        text.append(f"- **{space}**: 1-NN accuracy (0.5 = indistinguishable) {line}. Fréchet distance at half size "
                    f"{fd} (real vs real: {yard:.3g}).")
    return text[0] + "\n\n" + "\n".join(text[1:])


def describe_tsne(result: TSNEResult, n_points: int, n_iter: int, stop_early: bool) -> str:
    """One line on a t-SNE run, built from its values (nothing hard-coded).

    Parameters
    ----------
    result : TSNEResult
    n_points : int
        Points embedded.
    n_iter : int
        Iterations requested.
    stop_early : bool
        Whether scikit-learn's stopping rules were on.

    Returns
    -------
    str
        Backend, points, perplexity used, iterations run of requested, ``stop_early`` and the
        final KL divergence (nats).
    """
    return (f"backend {result.backend}: {n_points} points, perplexity {result.perplexity:g}, "
            f"{result.n_iter} iterations run of {n_iter} (stop_early={stop_early}), "
            f"final KL divergence {result.kl_divergence:.4f}")


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
                   n_iter: int, perplexity: float, seed: int, stop_early: bool) -> Stage03Metrics:
    """The :class:`Stage03Metrics` dict of a stage-03 run (no timings in it); ``metrics`` is
    generator -> feature space -> metrics (:func:`analyse_spaces`)."""
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
    }


def write_results(run_dir: str | os.PathLike, sample: GroupSample, result: TSNEResult, table: pd.DataFrame,
                  metrics: dict[str, dict[str, SpaceMetrics]], cnn: LesionCNN | None, *, n_per_group: int,
                  n_iter: int, perplexity: float, seed: int, stop_early: bool) -> list[str]:
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

    Returns
    -------
    list of str
        The files written, relative to ``run_dir``: ``embedding.csv``, ``metrics.json``,
        ``metrics_table.csv``, ``timings.json`` (wall-clock seconds of the t-SNE and the CNN,
        the only file that differs on a rerun with the same seed and inputs).

    Raises
    ------
    OSError
        When a file cannot be written (nothing half-written is left).
    TypeError
        When a metric holds a value JSON cannot represent.
    """
    out_dir = run_folder.stage_dir(run_dir, "feature_space")
    record = metrics_record(sample, result, table, metrics, cnn, n_per_group, n_iter, perplexity, seed,
                            stop_early)
    timings = {"tsne_seconds": round(result.seconds, 2),
               "cnn_seconds": None if cnn is None else round(cnn.seconds, 2)}
    paths: list[Path] = [
        fileio.atomic_write_text(out_dir / "embedding.csv", table.to_csv(index=False)),
        fileio.write_json(out_dir / "metrics.json", _jsonable(record)),
        fileio.atomic_write_text(out_dir / "metrics_table.csv", metrics_table(metrics).to_csv(index=False)),
        fileio.write_json(out_dir / "timings.json", timings),
    ]
    return [os.path.relpath(p, run_dir) for p in paths]
