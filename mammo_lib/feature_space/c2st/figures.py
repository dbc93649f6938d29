"""Stage 03's figures of the CNN two-sample test (:mod:`mammo_lib.feature_space.c2st.study`): the verdict with its
controls, galleries of what the observer finds most synthetic and most real, where on the patch
the evidence lies, and in which frequencies.

Every function returns a matplotlib figure and writes nothing (the notebook saves them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mammo_lib.feature_space.c2st.records import gallery_rows
from mammo_lib.feature_space.c2st.study import NULL_AUC_LIMIT, C2STStudy
from mammo_lib.feature_space.c2st.two_sample import C2STResult
from mammo_lib.feature_space.figures import generator_style

CONTROL_COLOURS = {"null control": "#6b6b6b", "positive control": "#7b3294"}


def plot_c2st_verdict(study: C2STStudy):
    """Forest plot: held-out AUC with its 95% DeLong interval for each generator and both controls.

    The dotted line is chance (0.5), the shaded band the null control's accepted range
    (0.5 to :data:`mammo_lib.feature_space.c2st.study.NULL_AUC_LIMIT`).

    Parameters
    ----------
    study : C2STStudy

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = [(f"{name} vs real", r, generator_style(k)[1]) for k, (name, r) in enumerate(study.by_generator.items())]
    rows += [(label, r, CONTROL_COLOURS[key]) for label, r, key in
             (("null control: real vs real", study.null, "null control"),
              ("positive control: real lesion vs normal", study.positive, "positive control")) if r is not None]
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(rows)))
    ax.axvspan(0.5, NULL_AUC_LIMIT, color="0.9", zorder=0, label="null control's accepted range")
    ax.axvline(0.5, color="grey", ls=":", lw=1.2, label="chance (cannot tell apart)")
    for y, (_label, r, colour) in enumerate(rows):
        ax.errorbar(r.auc, y, xerr=[[r.auc - r.auc_ci_low], [r.auc_ci_high - r.auc]], fmt="o", color=colour,
                    ms=7, capsize=4, elinewidth=1.8, mfc=colour if y < len(study.by_generator) else "white")
        ax.annotate(f"{r.auc:.2f} [{r.auc_ci_low:.2f}, {r.auc_ci_high:.2f}]", (1.0, y), xycoords=("axes fraction", "data"),
                    xytext=(8, 0), textcoords="offset points", va="center", fontsize=8, annotation_clip=False)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(min(0.3, min(r.auc_ci_low for _, r, _ in rows) - 0.03), 1.01)
    ax.set_xlabel("held-out AUC of the CNN observer (1 = always tells apart)")
    ax.set_title("Can a machine tell them apart? CNN two-sample test, 95% DeLong intervals", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_gallery(result: C2STResult, real: np.ndarray, synthetic: np.ndarray, k: int = 8):
    """Three rows of patches, each with its held-out P(synthetic): the synthetic patches the
    observer finds most synthetic, those it finds most real, and the real patches it finds most
    synthetic.

    Parameters
    ----------
    result : C2STResult
        Real (first set) vs one generator (second set).
    real, synthetic : uint8 array, shape (n, s, s)
        The arrays the test was given (its ``index`` points into them).
    k : int
        Patches per row (at most half the scored synthetic patches, so that no patch is in both
        synthetic rows). Scores of different folds come from different networks.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    k = max(1, min(k, int(result.is_second.sum()) // 2))  # no synthetic patch in both rows
    rows = gallery_rows(result, k)
    score_of = {(bool(s), int(i)): float(p) for s, i, p in zip(result.is_second, result.index, result.score,
                                                               strict=True)}
    titles = {"synthetic_most_synthetic": f"{result.names[1]}: most synthetic to the observer",
              "synthetic_most_real": f"{result.names[1]}: most real to the observer",
              "real_most_synthetic": "real lesions: most synthetic to the observer"}
    fig, axes = plt.subplots(3, k, figsize=(1.25 * k, 3 * 1.55 + 0.3), squeeze=False,
                             gridspec_kw={"wspace": 0.06, "hspace": 0.42})
    for r, (key, idx) in enumerate(rows.items()):
        is_syn = not key.startswith("real")
        source = synthetic if is_syn else real
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(idx):
                ax.set_axis_off()
                continue
            ax.imshow(source[idx[c]], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xlabel(f"P(syn) {score_of[(is_syn, int(idx[c]))]:.2f}", fontsize=7, labelpad=1)
            for spine in ax.spines.values():
                spine.set_edgecolor("#1b9e77" if is_syn else "#d62728")
                spine.set_linewidth(2)
        axes[r][0].set_title(titles[key], fontsize=9, loc="left")
    fig.suptitle(f"{result.names[1]} vs real: held-out scores of the CNN observer (AUC {result.auc:.2f}); "
                 "green frame synthetic, red frame real", fontsize=9, y=0.995)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.04)
    return fig


def plot_saliency(result: C2STResult, smooth_px: float = 3.0):
    """Where the evidence lies: the synthetic patches' mean image beside the observer's gradient
    saliency (mean |d logit / d pixel| over the held-out synthetic patches, each fold's network
    on the patches it never saw; Simonyan, Vedaldi & Zisserman 2014), smoothed with a Gaussian
    so that the observer's own 4-pixel stride and pooling grid does not hide the picture.

    Parameters
    ----------
    result : C2STResult
        Run with ``saliency=True``.
    smooth_px : float
        Standard deviation of the Gaussian smoothing, pixels (0: none).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When the test was run without ``saliency``.
    """
    import matplotlib.pyplot as plt

    if result.saliency is None or result.mean_image is None:
        raise ValueError(f"C2ST {result.label} was run without saliency=True: no map to draw")
    fig, axes = plt.subplots(1, 2, figsize=(8.2, 3.9))
    axes[0].imshow(result.mean_image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title(f"mean of {result.is_second.sum()} {result.names[1]} patches\n(grey scale as the patches)",
                      fontsize=9)
    from skimage.filters import gaussian

    sal = gaussian(result.saliency, sigma=smooth_px, mode="nearest") if smooth_px > 0 else result.saliency
    sal = sal / max(float(sal.max()), 1e-12)
    im = axes[1].imshow(sal, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"observer's saliency: mean |gradient|\n(Gaussian {smooth_px:g} px, max = 1)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    fig.suptitle(f"Where the CNN observer looks when it calls {result.names[1]}'s patches synthetic", fontsize=10)
    fig.tight_layout()
    return fig


def plot_frequency_sweep(sweep: pd.DataFrame, generator: str):
    """The C2ST AUC after low-pass and after high-pass filtering, against the cut-off.

    Parameters
    ----------
    sweep : pandas.DataFrame
        :func:`mammo_lib.feature_space.c2st.study.frequency_sweep`'s table.
    generator : str

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When the table has no rows.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if sweep.empty:
        raise ValueError("the frequency sweep has no rows (no cut-offs were given)")
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
    styles = {"low-pass": ("#2c7bb6", "o", "low-pass: only coarser than the cut-off (shapes)", 0.97),
              "high-pass": ("#d7191c", "s", "high-pass: only finer than the cut-off (texture)", 1.03)}
    for kind, (colour, marker, label, shift) in styles.items():
        part = sweep[sweep["filter"] == kind].sort_values("cycles_per_patch")
        if part.empty:
            continue
        x = part["cycles_per_patch"].to_numpy(float) * shift
        ax.errorbar(x, part["auc"], yerr=[part["auc"] - part["ci_low"], part["ci_high"] - part["auc"]],
                    marker=marker, color=colour, capsize=4, ms=7, lw=1.6, label=label)
    none = sweep[sweep["filter"] == "none"]
    if len(none):
        r = none.iloc[0]
        ax.axhspan(r["ci_low"], r["ci_high"], color="black", alpha=0.07, lw=0)
        ax.axhline(r["auc"], color="black", lw=1.2, label=f"unfiltered, same patches: {r['auc']:.2f} (band: 95% CI)")
    ax.axhline(0.5, color="grey", ls=":", lw=1.2, label="chance")
    ax.set_xscale("log")
    ticks = sorted(set(sweep["cycles_per_patch"].dropna().tolist()))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(min(ticks) / 1.6, max(ticks) * 1.6)
    ax.set_xlabel("cut-off (cycles across the patch; log scale)")
    ax.set_ylabel("held-out AUC, real vs synthetic")
    ax.set_ylim(min(0.3, float(sweep["ci_low"].min()) - 0.03), 1.02)
    n = int(sweep["n_per_set"].iloc[0])
    ax.set_title(f"{generator}: does the difference lie in the shapes or in the fine texture?\n"
                 f"C2ST AUC after filtering both sets ({n} patches per set, 95% DeLong intervals)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
