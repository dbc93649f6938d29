"""Figures of stage 05 (ROC analysis), drawn from a :class:`mammo_lib.roc.StudyAnalysis`:
ROC curves per reader, ratings by truth, confusion matrices and the AUC forest plot; saved as
``<run_dir>/roc/figures/<name>.png`` by :func:`save_all_figures`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mammo_lib.roc import StudyAnalysis


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


def plot_ratings_by_truth(analysis: StudyAnalysis):
    """Per reader: how often each of the six options was given to real and to synthetic cases."""
    fig, axes = _grid(len(analysis.per_reader), ncols=3, size=(4.0, 3.0))
    x = np.arange(1, 7)
    for ax, (reader, s) in zip(axes, analysis.per_reader.items(), strict=False):
        counts = s["option_counts"]
        ax.bar(x - 0.2, [counts["real"][o] for o in x], width=0.4, color="tab:red", label="real")
        ax.bar(x + 0.2, [counts["synthetic"][o] for o in x], width=0.4, color="tab:green", label="synthetic")
        ax.set_xticks(x, ["ext.\nreal", "mod.\nreal", "sl.\nreal", "sl.\nsyn", "mod.\nsyn", "ext.\nsyn"], fontsize=7)
        ax.axvline(3.5, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"{reader} ({s['reader_kind']})", fontsize=9)
        ax.set_ylabel("cases", fontsize=8)
        ax.legend(fontsize=7, title="truth", title_fontsize=7)
    fig.suptitle("Ratings by truth (left of the dotted line: called real)", fontsize=10)
    fig.tight_layout()
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
        figures are closed after saving (a notebook shows the saved files, once each).
    """
    import matplotlib.pyplot as plt

    from mammo_lib.plotting import save_figure
    from mammo_lib.run_folder import figures_dir

    out_dir = figures_dir(run_dir, "roc")
    figs = {"roc_curves": plot_roc_curves, "ratings_by_truth": plot_ratings_by_truth,
            "confusion_matrices": plot_confusion_matrices, "auc_forest": plot_auc_forest}
    out = {}
    for name, fn in figs.items():
        fig = fn(analysis)
        out[name] = save_figure(fig, out_dir / f"{name}.png")
        plt.close(fig)
    return out
