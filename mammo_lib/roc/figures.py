"""Figures of stage 05 (ROC analysis), drawn from a :class:`mammo_lib.roc.analysis.StudyAnalysis`:
ROC curves per reader, ratings by truth, confusion matrices and the AUC forest plot (per reader
and generator, with the comparison of generators, when there are several); saved as
``<run_dir>/roc/figures/<name>.png`` by :func:`save_all_figures`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib.plotting import save_figure
from mammo_lib.roc.analysis import StudyAnalysis
from mammo_lib.run_folder import figures_dir


def _grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.2, 2.8)):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def plot_roc_curves(analysis: StudyAnalysis):
    """Empirical ROC curves of every reader on one plot, operating points marked (the paper's
    0.5 threshold as a large marker), chance line, AUC with DeLong CI in the legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="chance (AUC 0.5)")
    cmap = plt.get_cmap("tab10")
    for i, (reader, s) in enumerate(analysis.per_reader.items()):
        color = cmap(i % 10)
        fpr, tpr = np.asarray(s["roc"]["fpr"]), np.asarray(s["roc"]["tpr"])
        ls = "-" if s["reader_kind"] == "human" else "--"
        dl = s["auc_delong"]
        ax.plot(fpr, tpr, ls=ls, marker="o", ms=4, color=color, lw=1.6,
                label=f"{reader} ({s['reader_kind']}): AUC {s['auc']:.2f} [{dl['ci_low']:.2f}, {dl['ci_high']:.2f}]")
        cm = s["confusion_matrix"]
        fp_rate = cm["fp"] / max(cm["fp"] + cm["tn"], 1)
        tp_rate = cm["tp"] / max(cm["tp"] + cm["fn"], 1)
        ax.plot([fp_rate], [tp_rate], marker="D", ms=9, mfc=color, mec="black", mew=1.2, ls="none")
    ax.plot([], [], marker="D", ms=8, mfc="white", mec="black", ls="none", label="operating point at 0.5")
    ax.set_xlabel("1 - specificity (synthetic patches called real)")
    ax.set_ylabel("sensitivity (real patches called real)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_title("ROC per reader (positive class = real; 95% CI by DeLong)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


OPTION_TICKS = ["ext.\nreal", "mod.\nreal", "sl.\nreal", "sl.\nsyn", "mod.\nsyn", "ext.\nsyn"]


def ratings_by_truth_table(analysis: StudyAnalysis) -> pd.DataFrame:
    """Counts of each option per reader and truth: the data of :func:`plot_ratings_by_truth`.

    Parameters
    ----------
    analysis : StudyAnalysis

    Returns
    -------
    DataFrame
        reader, truth ("real"/"synthetic"; with several generators "real" or
        "synthetic: <generator>"), option (1-6), cases (int); every combination, zeros included.
    """
    df = analysis.load.ratings[analysis.load.ratings["reader"].isin(list(analysis.per_reader))]
    generator = analysis.case_set.cases.set_index("case_id")["generator"]
    truth = df["truth"].astype(str)
    if len(analysis.generators) > 1:
        truth = truth.where(truth == "real", "synthetic: " + df["case_id"].map(generator).astype(str))
    groups = ["real"] + (["synthetic"] if len(analysis.generators) <= 1 else
                         [f"synthetic: {g}" for g in analysis.generators])
    full = pd.MultiIndex.from_product([list(analysis.per_reader), groups, range(1, 7)],
                                      names=["reader", "truth", "option"])
    counts = df.assign(truth=truth).groupby(["reader", "truth", "option"]).size().reindex(full, fill_value=0)
    return counts.rename("cases").reset_index()


def plot_ratings_by_truth(analysis: StudyAnalysis):
    """Per reader: how often each of the six options was given to real and to synthetic cases
    (with several generators, to each generator's cases), grouped bars drawn with seaborn."""
    import seaborn as sns

    table = ratings_by_truth_table(analysis)
    groups = list(dict.fromkeys(table["truth"]))
    palette = dict(zip(groups, ["tab:red", "tab:green", "tab:blue", "tab:purple", "tab:orange", "tab:cyan",
                                "tab:brown", "tab:olive"][:len(groups)], strict=False))
    fig, axes = _grid(len(analysis.per_reader), ncols=3, size=(4.0, 3.0))
    for ax, (reader, s) in zip(axes, analysis.per_reader.items(), strict=False):
        sns.barplot(data=table[table["reader"] == reader], x="option", y="cases", hue="truth", hue_order=groups,
                    palette=palette, ax=ax, errorbar=None, width=0.85)
        ax.set_xticks(range(6), OPTION_TICKS, fontsize=7)
        ax.set_xlabel("")
        ax.axvline(2.5, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"{reader} ({s['reader_kind']})", fontsize=9)
        ax.set_ylabel("cases", fontsize=8)
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
    fig.suptitle("Ratings by truth (left of the dotted line: called real)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97 - 0.06 / len(axes) ** 0.5))
    fig.legend(handles, labels, title="truth", fontsize=8, title_fontsize=8, loc="upper right", ncol=len(groups),
               frameon=False, bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_confusion_matrices(analysis: StudyAnalysis):
    """2 x 2 confusion matrix per reader at the 0.5 threshold (rows truth, columns call)."""
    fig, axes = _grid(len(analysis.per_reader), ncols=4, size=(2.9, 2.7))
    for ax, (reader, s) in zip(axes, analysis.per_reader.items(), strict=False):
        cm = np.asarray(s["confusion_matrix"]["counts"])
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.sum(axis=1).max(), 1))
        for (i, j), v in np.ndenumerate(cm):
            frac = v / max(cm[i].sum(), 1)
            ax.text(j, i, f"{v}\n({frac:.0%})", ha="center", va="center", fontsize=9,
                    color="white" if frac > 0.6 else "black")
        ax.set_xticks([0, 1], ["real", "synthetic"], fontsize=8)
        ax.set_yticks([0, 1], ["real", "synthetic"], fontsize=8)
        ax.set_xlabel("called", fontsize=8)
        ax.set_ylabel("truth", fontsize=8)
        ax.set_title(f"{reader}\naccuracy {s['accuracy']['estimate']:.0%}", fontsize=9)
    fig.suptitle("Confusion matrices at threshold 0.5 (positive = real)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_auc_forest(analysis: StudyAnalysis):
    """AUC per reader with DeLong and bootstrap 95% CIs, plus the MRMC reader-averaged AUCs."""
    import matplotlib.pyplot as plt

    rows = [(r, s["auc"], (s["auc_delong"]["ci_low"], s["auc_delong"]["ci_high"]),
             (s["auc_bootstrap"]["low"], s["auc_bootstrap"]["high"])) for r, s in analysis.per_reader.items()]
    for group, res in analysis.mrmc.items():
        if "skipped" not in res:
            for s in res["RRRC"]["single_modality"].values():
                rows.append((f"MRMC: {group}", s["auc"], tuple(s["ci"]), None))
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(rows) + 1.6))
    for k, (_name, auc, ci_d, ci_b) in enumerate(rows):
        y = len(rows) - k
        ax.plot(ci_d, [y + 0.1, y + 0.1], color="tab:blue", lw=2, label="DeLong / MRMC (Hillis df)" if k == 0 else None)
        if ci_b is not None:
            ax.plot(ci_b, [y - 0.1, y - 0.1], color="tab:orange", lw=2, label="bootstrap" if k == 0 else None)
        ax.plot([auc], [y], "ko", ms=5)
        if ci_d[0] < 0 or ci_d[1] > 1:  # wide CIs (few readers): print them, the axis stops at [0, 1]
            ax.annotate(f"CI {ci_d[0]:.2f} to {ci_d[1]:.2f}", (auc, y), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=7)
    ax.axvline(0.5, color="0.5", ls=":", lw=1)
    ax.set_title("AUC per reader and reader-averaged (MRMC), 95% CIs", fontsize=10, pad=20)
    ax.set_yticks([len(rows) - k for k in range(len(rows))], [r[0] for r in rows], fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0.4, len(rows) + 0.6)
    ax.set_xlabel("AUC (real vs synthetic) with 95% CI")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_agreement(analysis: StudyAnalysis):
    """Cohen's quadratic-weighted kappa of every pair of readers as a seaborn heatmap (1 on the
    diagonal; the number of cases both rated in each cell's label); None with fewer than 2 readers."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if analysis.kappa is None or analysis.kappa.empty:
        return None
    readers = list(analysis.per_reader)
    kappa = pd.DataFrame(np.eye(len(readers)), index=readers, columns=readers)
    text = pd.DataFrame("", index=readers, columns=readers)
    for row in analysis.kappa.itertuples(index=False):
        for a, b in ((row.reader_a, row.reader_b), (row.reader_b, row.reader_a)):
            kappa.loc[a, b] = row.kappa_quadratic
            text.loc[a, b] = f"{row.kappa_quadratic:.2f}\n(n={row.n_cases})"
    for r in readers:
        text.loc[r, r] = "1"
    size = 1.1 * len(readers) + 2.4
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    with warnings.catch_warnings():  # seaborn 0.13 calls matplotlib's Colormap.set_bad (pending deprecation)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(kappa.astype(float), vmin=-1, vmax=1, center=0, cmap="vlag", annot=text.to_numpy(), fmt="",
                    annot_kws={"fontsize": 7}, square=True, linewidths=0.5, cbar_kws={"label": "kappa (quadratic)"},
                    ax=ax)
    ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_title("Agreement between readers: Cohen's quadratic-weighted kappa\n(0 = chance, 1 = perfect)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _forest_rows(analysis: StudyAnalysis) -> list[tuple[str, str, float, tuple[float, float], bool]]:
    """(row label, generator, AUC, CI, is an MRMC average) for the per-generator forest."""
    across = analysis.across_generators
    rows = []
    for g, readers in across.per_reader.items():
        for s in readers.values():
            dl = s["auc_delong"]
            rows.append((s["mrmc_reader"], g, s["auc"], (dl["ci_low"], dl["ci_high"]), False))
    for group, res in across.mrmc.items():
        if "skipped" not in res:
            for g, s in res["RRRC"]["single_modality"].items():
                rows.append((f"MRMC: {group}", g, s["auc"], tuple(s["ci"]), True))
    return rows


def plot_generator_forest(analysis: StudyAnalysis):
    """AUC per reader and generator (real cases vs that generator's), DeLong 95% CIs, and the
    MRMC reader-averaged AUC per generator (Hillis df): one colour per generator, seaborn palette.
    A machine observer's row holds its copy trained against each generator."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    gens = analysis.across_generators.generators
    rows = _forest_rows(analysis)
    labels = list(dict.fromkeys(r[0] for r in rows if not r[4])) + list(dict.fromkeys(r[0] for r in rows if r[4]))
    colors = dict(zip(gens, sns.color_palette("colorblind", len(gens)), strict=True))
    step = 0.7 / max(len(gens), 1)
    fig, ax = plt.subplots(figsize=(8.4, 0.3 * len(labels) * max(len(gens), 2) + 1.4))
    for label, g, auc, ci, is_mrmc in rows:
        y = len(labels) - labels.index(label) + (len(gens) - 1) / 2 * step - gens.index(g) * step
        ax.plot(ci, [y, y], color=colors[g], lw=3 if is_mrmc else 1.8, solid_capstyle="butt")
        ax.plot([auc], [y], "D" if is_mrmc else "o", color=colors[g], mec="black", mew=0.6, ms=6 if is_mrmc else 5)
        if ci[0] < 0 or ci[1] > 1:
            ax.annotate(f"CI {ci[0]:.2f} to {ci[1]:.2f}", (min(max(auc, 0.05), 0.95), y), xytext=(0, 4),
                        textcoords="offset points", ha="center", fontsize=6)
    for g in gens:
        ax.plot([], [], "o-", color=colors[g], label=g)
    ax.axvline(0.5, color="0.5", ls=":", lw=1)
    n_readers = sum(1 for label in labels if not label.startswith("MRMC"))
    if n_readers < len(labels):
        ax.axhline(len(labels) - n_readers + 0.5, color="0.8", lw=0.8)
    ax.set_yticks([len(labels) - k for k in range(len(labels))], labels, fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    half = (len(gens) - 1) / 2 * step
    ax.set_ylim(1 - half - 0.35, len(labels) + half + 0.35)
    ax.set_xlabel("AUC (real vs this generator's synthetic) with 95% CI")
    ax.set_title("AUC per reader and generator; MRMC reader averages (diamonds)", fontsize=10)
    ax.legend(title="generator", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    fig.tight_layout()
    return fig


def plot_generator_differences(analysis: StudyAnalysis):
    """Every pairwise difference of reader-averaged AUCs between generators ("A - B") with its 95%
    CI (random readers and cases), per reader group, with the p-value; left of 0: readers
    separated A's patches from real ones less well than B's (A is harder to tell from real when
    both AUCs are above 0.5)."""
    import matplotlib.pyplot as plt

    rows = [(group, d) for group, res in analysis.across_generators.mrmc.items() if "skipped" not in res
            for d in res["RRRC"]["differences"]]
    fig, ax = plt.subplots(figsize=(7.2, 0.55 * max(len(rows), 1) + 1.6))
    for k, (_group, d) in enumerate(rows):
        y = len(rows) - k
        lo, hi = d["ci"]
        ax.plot([max(lo, -1.0), min(hi, 1.0)], [y, y], color="tab:blue", lw=2)
        ax.plot([d["difference"]], [y], "ko", ms=5)
        ax.annotate(f"p = {d['p']:.3g}" + (f" (CI {lo:.2f} to {hi:.2f})" if lo < -1 or hi > 1 else ""),
                    (d["difference"], y), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=7)
    if not rows:
        ax.text(0.5, 0.5, "no MRMC comparison (fewer than 2 readers)", ha="center", va="center",
                transform=ax.transAxes)
    ax.axvline(0.0, color="0.5", ls=":", lw=1)
    ax.set_yticks([len(rows) - k for k in range(len(rows))], [f"{d['comparison']}\n({g})" for g, d in rows], fontsize=8)
    ax.set_xlim(-1.02, 1.02)
    ax.set_ylim(0.4, len(rows) + 0.7)
    ax.set_xlabel("difference of reader-averaged AUCs, 95% CI (random readers and cases)")
    ax.set_title("Generators compared (Obuchowski-Rockette, generator = modality)\n"
                 "left of 0: readers separated the first generator's patches from real ones less well", fontsize=10)
    fig.tight_layout()
    return fig


def save_all_figures(analysis: StudyAnalysis, run_dir: str | Path) -> dict[str, Path]:
    """Draw every stage-05 figure and save it as ``<run_dir>/roc/figures/<name>.png``.

    Parameters
    ----------
    analysis : StudyAnalysis
    run_dir : path

    Returns
    -------
    dict
        name ("roc_curves", "ratings_by_truth", "confusion_matrices", "auc_forest") -> PNG path. The
        figures are closed after saving (a notebook shows the saved files, once each). With
        several generators "auc_forest" is :func:`plot_generator_forest` (per reader and
        generator) and "generator_differences" (:func:`plot_generator_differences`) is added.
    """
    import matplotlib.pyplot as plt


    out_dir = figures_dir(run_dir, "roc")
    figs = {"roc_curves": plot_roc_curves, "ratings_by_truth": plot_ratings_by_truth,
            "confusion_matrices": plot_confusion_matrices, "auc_forest": plot_auc_forest}
    if analysis.across_generators is not None:
        figs.update(auc_forest=plot_generator_forest, generator_differences=plot_generator_differences)
    out = {}
    for name, fn in figs.items():
        fig = fn(analysis)
        out[name] = save_figure(fig, out_dir / f"{name}.png")
        plt.close(fig)
    return out


def save_agreement_figure(analysis: StudyAnalysis, run_dir: str | Path) -> Path | None:
    """Draw :func:`plot_agreement` and save it as ``<run_dir>/roc/figures/agreement.png``.

    Parameters
    ----------
    analysis : StudyAnalysis
    run_dir : path

    Returns
    -------
    Path or None
        The PNG, or None with fewer than 2 readers (nothing is written).
    """
    import matplotlib.pyplot as plt


    fig = plot_agreement(analysis)
    if fig is None:
        return None
    path = save_figure(fig, figures_dir(run_dir, "roc") / "agreement.png")
    plt.close(fig)
    return path
