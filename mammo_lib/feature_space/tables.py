"""Stage 03's tables and text: the flat realism-metrics table (``metrics_table.csv``), outlier
counts, the closest pairs per generator, and the notebook's lines on the generators and the
t-SNE -- all built from the values (nothing hard-coded).

The inputs are the in-memory results of ``feature_space.results.analyse_spaces`` (dicts of the
shape its TypedDicts describe), ``feature_space`` and ``tsne``; ``feature_space.results``
re-exports every public function here. Reads and writes no files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mammo_lib.feature_space import metrics as rm
from mammo_lib.feature_space.figures import generator_style_words
from mammo_lib.feature_space.sampling import GroupSample
from mammo_lib.feature_space.tsne.run import TSNEResult

__all__ = ["summary_rows", "metrics_table", "outlier_counts", "closest_pairs_by_generator", "generators_markdown",
           "describe_tsne"]


def _rounded(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 4)


def _authenticity_reference(auth: dict) -> str:
    yard = auth["real_vs_real"]
    interval = "" if _rounded(yard["ci_low"]) is None else f" [{yard['ci_low']:.3f}, {yard['ci_high']:.3f}]"
    return (f"real vs real (a real half against the other): {yard['value']:.3f}{interval}; this generator "
            f"against that half: {auth['synthetic_vs_training_half']:.3f}; clearly lower = copying")


def summary_rows(space: str, m: dict, generator: str = "") -> list[dict]:
    """Flat rows of one feature space's metrics of one generator.

    Parameters
    ----------
    space : str
    m : dict
        A :class:`mammo_lib.feature_space.results.SpaceMetrics`.
    generator : str
        The generator the metrics are of.

    Returns
    -------
    list of dict
        Ten rows (1-NN accuracy, precision, recall, density, coverage, Fréchet distance,
        normal-neighbour share, two memorisation rows, authenticity) with ``feature_space``,
        ``generator``, ``metric``, ``value``, ``ci_low``, ``ci_high`` (rounded to 4 decimals;
        None for NaN), ``reference`` (how to read it: the 1-NN row names its real-side and
        synthetic-side accuracies, the Fréchet, normal-neighbour and authenticity rows their
        real-vs-real yardsticks) and ``note`` ("" or a warning: a lopsided 1-NN split,
        :func:`mammo_lib.feature_space.metrics.lopsided_note`).
    """
    fd, nns, mem, nn1 = m["frechet_distance"], m["synthetic_normal_neighbour_share"], m["memorisation"], \
        m["one_nn_accuracy"]
    q_key = next(k for k in mem if k.startswith("share_synthetic_below_real_q"))
    entries = [
        ("1-NN accuracy real vs synthetic", nn1,
         f"real side {nn1['accuracy_real']:.3f}, synthetic side {nn1['accuracy_synthetic']:.3f}; "
         "0.5 = indistinguishable (when both sides are near 0.5), 1 = separable", rm.lopsided_note(nn1)),
        ("precision", m["prdc"]["precision"], "1 = every synthetic patch looks real", ""),
        ("recall", m["prdc"]["recall"], "1 = synthetic set covers real variety", ""),
        ("density", m["prdc"]["density"], "about 1 when distributions match", ""),
        ("coverage", m["prdc"]["coverage"], "1 = every real neighbourhood has a synthetic patch", ""),
        (f"Fréchet distance (PCA {fd['pca_dims']} dims)", fd,
         f"at half size: real vs real {fd['real_split_half']:.4g}, "
         f"real vs synthetic {fd['real_half_vs_synthetic_half']:.4g}", ""),
        ("synthetic with mostly normal-tissue neighbours", nns,
         f"real lesions: {nns['real_lesion_reference']['value']:.3f}", ""),
        ("memorisation: median NN distance ratio synth/real", mem["median_ratio_synthetic_to_real"],
         "<< 1 would mean copying", ""),
        (f"memorisation: share below real {int(q_key[-2:])}% NN distance", mem[q_key],
         f"about {int(q_key[-2:]) / 100:.2f} if no copying", ""),
        ("authenticity: share not closer to a real patch than its nearest real neighbour",
         mem["authenticity"], _authenticity_reference(mem["authenticity"]), ""),
    ]
    return [{"feature_space": space, "generator": generator, "metric": name, "value": _rounded(e["value"]),
             "ci_low": _rounded(e["ci_low"]), "ci_high": _rounded(e["ci_high"]), "reference": ref, "note": note}
            for name, e, ref, note in entries]


def metrics_table(metrics: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """:func:`summary_rows` of every feature space and generator as one DataFrame
    (``metrics_table.csv``).

    Parameters
    ----------
    metrics : dict of str to dict of str to SpaceMetrics
        Generator -> feature space -> metrics (:func:`mammo_lib.feature_space.results.analyse_spaces`).

    Returns
    -------
    pandas.DataFrame
        Columns feature_space, generator, metric, value, ci_low, ci_high, reference, note; rows
        by feature space, then generator (in the given order), then metric.
    """
    spaces = list(dict.fromkeys(space for by_space in metrics.values() for space in by_space))
    return pd.DataFrame([row for space in spaces for gen, by_space in metrics.items() if space in by_space
                         for row in summary_rows(space, by_space[space], gen)])


def outlier_counts(table: pd.DataFrame, column: str = "outlier_tsne") -> pd.DataFrame:
    """Outliers and their share per group, and per generator when there are several.

    Parameters
    ----------
    table : pandas.DataFrame
        The embedding table (columns ``group``, the boolean ``column`` and, from
        :func:`mammo_lib.feature_space.sampling.embedding_table`, ``generator``).
    column : str
        Which outlier flag to count (``outlier_tsne``, ``outlier_pixels``, ``outlier_cnn``,
        ``outlier_random_cnn``).

    Returns
    -------
    pandas.DataFrame
        Index ``group``: the groups present in :data:`mammo_lib.feature_space.sampling.GROUP_ORDER`
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


def closest_pairs_by_generator(sample: GroupSample, metrics: dict[str, dict[str, dict]],
                               space: str) -> dict[str, tuple[np.ndarray, list[dict]]]:
    """Each generator's synthetic patches and closest pairs in one feature space, for
    :func:`mammo_lib.feature_space.figures.plot_closest_pairs_by_generator`.

    Parameters
    ----------
    sample : GroupSample
    metrics : dict of str to dict of str to SpaceMetrics
        :func:`mammo_lib.feature_space.results.analyse_spaces`'s metrics.
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


def generators_markdown(sample: GroupSample, metrics: dict[str, dict[str, dict]]) -> str:
    """The notebook's paragraph on the generators of this run, built from the data (names,
    stores, counts, symbols, headline metrics; nothing hard-coded).

    Parameters
    ----------
    sample : GroupSample
    metrics : dict of str to dict of str to SpaceMetrics
        :func:`mammo_lib.feature_space.results.analyse_spaces`'s metrics.

    Returns
    -------
    str
        Markdown.
    """

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
        line = "; ".join(f"{g} {_one_nn_text(metrics[g][space]['one_nn_accuracy'])}" for g in names)
        fd = "; ".join(f"{g} {metrics[g][space]['frechet_distance']['real_half_vs_synthetic_half']:.3g}"
                       for g in names)
        yard = metrics[names[0]][space]["frechet_distance"]["real_split_half"]
        auth = "; ".join(f"{g} {_ci_text(metrics[g][space]['memorisation']['authenticity'])}" for g in names)
        auth_yard = _ci_text(metrics[names[0]][space]["memorisation"]["authenticity"]["real_vs_real"])
        text.append(f"- **{space}**: 1-NN accuracy (0.5 = indistinguishable, when both sides are near 0.5) {line}. "
                    f"Fréchet distance at half size {fd} (real vs real: {yard:.3g}). Authenticity {auth} "
                    f"(real vs real: {auth_yard}).")
    return text[0] + "\n\n" + "\n".join(text[1:])


def _one_nn_text(e: dict) -> str:
    """The 1-NN accuracy with its interval and its two sides, a lopsided split in bold."""
    note = rm.lopsided_note(e)
    sides = f"**{note}**" if note else f"real {e['accuracy_real']:.2f} / synthetic {e['accuracy_synthetic']:.2f}"
    return f"{_ci_text(e)} ({sides})"


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
