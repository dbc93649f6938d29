"""Stage 03's figures: the paper's Fig. 2 replica, the patches at their t-SNE positions, the
closest synthetic / real pairs, and the forest plot of every realism metric per generator.
Each function returns a matplotlib figure and writes nothing (``plotting.save_figure`` saves
it).

With one generator every figure is the paper's (legend ORG / GAN / NORM_TIS). With several,
the first generator keeps the paper's green circles, the others get the markers and colours
of :data:`MORE_GENERATOR_STYLES` in turn, and legends name each generator.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mammo_lib.feature_space.metrics import LOPSIDED_GAP, lopsided_note
from mammo_lib.feature_space.streams import rng as stream_rng

# the paper's legend (Fig. 2): ORG = real lesions, GAN = synthetic lesions, NORM_TIS = normal tissue
GROUP_LEGEND = {"lesion": "ORG", "synthetic": "GAN", "normal": "NORM_TIS"}
GROUP_STYLE = {
    "lesion": dict(marker="x", color="red", s=22, linewidths=1.0),
    "synthetic": dict(marker="o", facecolors="none", edgecolors="green", s=22, linewidths=0.9),
    "normal": dict(marker="^", facecolors="none", edgecolors="purple", s=22, linewidths=0.9),
}
GROUP_COLOUR = {"lesion": "red", "synthetic": "green", "normal": "purple"}
#: (marker, colour) of the second, third, ... generator: none red, green or purple
MORE_GENERATOR_STYLES = (("s", "tab:blue"), ("D", "tab:orange"), ("v", "tab:brown"), ("P", "tab:cyan"),
                         ("*", "tab:olive"), ("h", "tab:pink"), ("<", "tab:gray"), (">", "black"))


def generator_names(groups: np.ndarray, generators: np.ndarray | None) -> list[str]:
    """The generators of the synthetic rows, in order of appearance.

    Parameters
    ----------
    groups : str array, shape (n,)
        "lesion", "synthetic" or "normal" per point.
    generators : str array, shape (n,), or None
        The generator of each synthetic point ("" elsewhere).

    Returns
    -------
    list of str
        Empty when ``generators`` is None.
    """
    if generators is None:
        return []
    return list(dict.fromkeys(np.asarray(generators)[np.asarray(groups) == "synthetic"].tolist()))


def generator_style(k: int) -> tuple[dict, str]:
    """The Fig. 2 symbol of the ``k``-th generator.

    Parameters
    ----------
    k : int
        Position in generator order, >= 0 (0: the paper's green circles; later ones cycle
        through :data:`MORE_GENERATOR_STYLES`).

    Returns
    -------
    style : dict
        Keyword arguments of ``Axes.scatter`` (marker, face and edge colours, size, line width).
    colour : str
        A matplotlib colour name.
    """
    if k == 0:
        return dict(GROUP_STYLE["synthetic"]), GROUP_COLOUR["synthetic"]
    marker, colour = MORE_GENERATOR_STYLES[(k - 1) % len(MORE_GENERATOR_STYLES)]
    return dict(marker=marker, facecolors="none", edgecolors=colour, s=22, linewidths=0.9), colour


_MARKER_WORDS = {"o": "circles", "s": "squares", "D": "diamonds", "v": "down-pointing triangles",
                 "P": "plus signs", "*": "stars", "h": "hexagons", "<": "left-pointing triangles",
                 ">": "right-pointing triangles"}


def generator_style_words(k: int) -> str:
    """The ``k``-th generator's Fig. 2 symbol in words.

    Parameters
    ----------
    k : int
        Position in generator order, >= 0.

    Returns
    -------
    str
        E.g. "green circles" (k = 0), "blue squares" (k = 1).
    """
    style, colour = generator_style(k)
    return f"{colour.removeprefix('tab:')} {_MARKER_WORDS.get(style['marker'], 'markers')}"


def _point_layers(groups: np.ndarray, generators: np.ndarray | None) -> list[tuple[np.ndarray, str, dict, str]]:
    """(mask, legend label, scatter style, colour) per layer: ORG, each generator (or GAN),
    NORM_TIS."""
    groups = np.asarray(groups)
    names = generator_names(groups, generators)
    layers = [(groups == "lesion", GROUP_LEGEND["lesion"], GROUP_STYLE["lesion"], GROUP_COLOUR["lesion"])]
    if len(names) > 1:
        for k, name in enumerate(names):
            style, colour = generator_style(k)
            layers.append(((groups == "synthetic") & (np.asarray(generators) == name), name, style, colour))
    else:
        layers.append((groups == "synthetic", GROUP_LEGEND["synthetic"], GROUP_STYLE["synthetic"],
                       GROUP_COLOUR["synthetic"]))
    layers.append((groups == "normal", GROUP_LEGEND["normal"], GROUP_STYLE["normal"], GROUP_COLOUR["normal"]))
    return layers


def plot_fig2(embedding: np.ndarray, groups: np.ndarray, outliers: np.ndarray | None = None,
              title: str | None = None, generators: np.ndarray | None = None):
    """The paper's Fig. 2: real lesions red crosses, synthetic green circles, normal tissue
    purple triangles, axes X1/X2, legend ORG/GAN/NORM_TIS; outliers ringed in black. With
    several generators the first keeps the green circles and each is named in the legend.

    Parameters
    ----------
    embedding : float array, shape (n, 2)
        t-SNE coordinates (unitless).
    groups : str array, shape (n,)
        "lesion", "synthetic" or "normal" per point.
    outliers : bool array, shape (n,), optional
    title : str, optional
    generators : str array, shape (n,), optional
        The generator of each synthetic point (``GroupSample.generators``); ignored with one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for m, label, style, _colour in _point_layers(groups, generators):
        ax.scatter(embedding[m, 0], embedding[m, 1], label=label, **style)
    if outliers is not None and np.any(outliers):
        ax.scatter(embedding[outliers, 0], embedding[outliers, 1], s=75, facecolors="none",
                   edgecolors="black", linewidths=0.7, label=f"outlier ({int(np.sum(outliers))})")
    ax.set_xlabel("X1")
    ax.set_ylabel("X2")
    ax.legend(loc="best", frameon=True, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_thumbnails(embedding: np.ndarray, patches: np.ndarray, groups: np.ndarray,
                    outliers: np.ndarray | None = None, n_thumbs: int = 150, seed: int = 0,
                    zoom: float | None = None, generators: np.ndarray | None = None):
    """The patches themselves drawn at their embedded positions, framed in the group colour
    (with several generators, each generator's colour of :func:`plot_fig2`).

    One random patch per cell of a grid over the embedding (at most ``n_thumbs`` cells), so
    they do not hide each other; outliers get a thick dashed frame.

    Parameters
    ----------
    embedding : float array, shape (n, 2)
    patches : uint8 array, shape (n, s, s)
    groups : str array, shape (n,)
    outliers : bool array, shape (n,), optional
    n_thumbs : int
        Grid cells at most (thumbnails drawn).
    seed : int
        Keys the "thumbnails" random stream (which patch represents a cell).
    zoom : float, optional
        Thumbnail scale (default: 80% of a grid cell).
    generators : str array, shape (n,), optional
        The generator of each synthetic patch; ignored with one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    rng = stream_rng(seed, "thumbnails")
    n = len(embedding)
    # one random patch per cell of a grid over the embedding, so thumbnails
    # do not hide each other; at most n_thumbs cells
    cells_per_side = max(1, int(np.sqrt(n_thumbs)))
    lo, hi = embedding.min(axis=0), embedding.max(axis=0)
    cell = np.floor((embedding - lo) / np.maximum(hi - lo, 1e-12) * (cells_per_side - 1e-9)).astype(int)
    keys = cell[:, 0] * cells_per_side + cell[:, 1]
    priority = rng.random(n)
    chosen = set()
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        chosen.add(int(members[np.argmax(priority[members])]))
    layers = _point_layers(groups, generators)
    colours = np.empty(n, dtype=object)
    for m, _label, _style, colour in layers:
        colours[m] = colour
    if zoom is None:  # a thumbnail 80% of a grid cell wide (the axes are about 9 in = 648 pt wide)
        zoom = 0.8 * 9 * 72 / cells_per_side / max(patches.shape[1], 1)
    fig, ax = plt.subplots(figsize=(10, 9))
    ax.scatter(embedding[:, 0], embedding[:, 1], s=2, c="lightgrey")
    for i in sorted(chosen):
        is_out = outliers is not None and bool(outliers[i])
        img = OffsetImage(patches[i], cmap="gray", zoom=zoom, norm=None)
        img.get_children()[0].set_clim(0, 255)
        box = AnnotationBbox(img, embedding[i], frameon=True, pad=0.1,
                             bboxprops=dict(edgecolor=colours[i], linewidth=3.0 if is_out else 1.2,
                                            linestyle="--" if is_out else "-"))
        ax.add_artist(box)
    handles = [plt.Line2D([], [], color=colour, lw=3, label=label) for _m, label, _s, colour in layers]
    handles.append(plt.Line2D([], [], color="black", lw=3, ls="--", label="outlier (thick dashed frame)"))
    ax.legend(handles=handles, loc="best", fontsize=9)
    ax.set_xlabel("X1")
    ax.set_ylabel("X2")
    ax.set_title(f"patches at their t-SNE positions ({len(chosen)} of {n} shown, one per grid cell)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_closest_pairs(synthetic: np.ndarray, real: np.ndarray, pairs: list[dict], title: str = ""):
    """Memorisation check, by eye: each synthetic patch above its nearest real training patch,
    with the distance.

    Parameters
    ----------
    synthetic, real : uint8 array, shape (n, s, s)
    pairs : list of dict
        ``synthetic_index``, ``real_index``, ``distance`` (as
        ``memorisation.memorisation_check``'s ``closest_pairs``).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = len(pairs)
    fig, axes = plt.subplots(2, max(n, 1), figsize=(1.6 * max(n, 1), 3.7), squeeze=False)
    for c, pair in enumerate(pairs):
        for r, (img, _label) in enumerate(((synthetic[pair["synthetic_index"]], "GAN"),
                                          (real[pair["real_index"]], "ORG"))):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel("synthetic" if r == 0 else "nearest real", fontsize=9)
            if r == 0:
                ax.set_title(f"d={pair['distance']:.3g}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_closest_pairs_by_generator(pairs_by_generator: dict[str, tuple[np.ndarray, list[dict]]],
                                    real: np.ndarray, title: str = ""):
    """:func:`plot_closest_pairs` for each generator: two rows per generator (its patches above
    their nearest real training patches), every generator against the same real patches. With
    one generator it is exactly :func:`plot_closest_pairs`.

    Parameters
    ----------
    pairs_by_generator : dict of str to (uint8 array, shape (n_g, s, s), list of dict)
        Generator name -> (its synthetic patches, its ``closest_pairs``), in generator order.
    real : uint8 array, shape (n_real, s, s)
        The real lesion patches the pairs index.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if len(pairs_by_generator) == 1:
        synthetic, pairs = next(iter(pairs_by_generator.values()))
        return plot_closest_pairs(synthetic, real, pairs, title)
    ncols = max([len(pairs) for _, pairs in pairs_by_generator.values()] + [1])
    nrows = 2 * len(pairs_by_generator)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for k, (name, (synthetic, pairs)) in enumerate(pairs_by_generator.items()):
        _style, colour = generator_style(k)
        for c, pair in enumerate(pairs):
            for r, img in enumerate((synthetic[pair["synthetic_index"]], real[pair["real_index"]])):
                ax = axes[2 * k + r, c]
                ax.set_frame_on(True)
                ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                if r == 0:
                    ax.set_title(f"d={pair['distance']:.3g}", fontsize=8)
        axes[2 * k, 0].set_ylabel(name, fontsize=9, color=colour, fontweight="bold")
        axes[2 * k + 1, 0].set_ylabel("nearest real", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- metric forest

def _number(x) -> float:
    return float("nan") if x is None else float(x)


def _yardstick(e: dict) -> dict:
    return {"yardstick": e["value"], "yardstick_low": e["ci_low"], "yardstick_high": e["ci_high"]}


def _forest_rows(space: str, generator: str, m: dict) -> list[dict]:
    fd, nns, mem = m["frechet_distance"], m["synthetic_normal_neighbour_share"], m["memorisation"]
    q_key = next(k for k in mem if k.startswith("share_synthetic_below_real_q"))
    q = int(q_key[-2:]) / 100
    auth = mem["authenticity"]
    entries = [
        ("1-NN accuracy (real vs synthetic)", m["one_nn_accuracy"], 0.5, {}),
        ("precision", m["prdc"]["precision"], 1.0, {}),
        ("recall", m["prdc"]["recall"], 1.0, {}),
        ("density", m["prdc"]["density"], 1.0, {}),
        ("coverage", m["prdc"]["coverage"], 1.0, {}),
        (f"Fréchet distance (PCA {fd['pca_dims']} dims)", fd, float("nan"),
         {"yardstick": fd.get("real_split_half"), "half_value": fd.get("real_half_vs_synthetic_half")}),
        ("share with mostly normal-tissue neighbours", nns, float("nan"), _yardstick(nns["real_lesion_reference"])),
        ("memorisation: median NN distance ratio", mem["median_ratio_synthetic_to_real"], 1.0, {}),
        (f"memorisation: share below real {int(q_key[-2:])}% NN distance", mem[q_key], q, {}),
        ("authenticity (share not a near-copy)", auth, float("nan"),
         {**_yardstick(auth["real_vs_real"]), "half_value": auth["synthetic_vs_training_half"]}),
    ]
    rows = []
    for metric, est, ideal, extra in entries:
        row = {"feature_space": space, "generator": generator, "metric": metric, "value": _number(est["value"]),
               "ci_low": _number(est["ci_low"]), "ci_high": _number(est["ci_high"]), "ideal": ideal,
               "yardstick": float("nan"), "yardstick_low": float("nan"), "yardstick_high": float("nan"),
               "half_value": float("nan"), "side_real": _number(est.get("accuracy_real")),
               "side_synthetic": _number(est.get("accuracy_synthetic")),
               "note": lopsided_note(est) if "accuracy_real" in est else ""}
        row.update({k: _number(v) for k, v in extra.items()})
        rows.append(row)
    return rows


#: the metric name of the CNN two-sample test's row in the forest (drawn first, in the pixel column)
C2ST_METRIC = "CNN two-sample test: held-out AUC (strongest)"


def _c2st_rows(c2st: dict, space: str) -> list[dict]:
    """Forest rows of the CNN two-sample test: each generator's AUC, the null control as its
    real-vs-real yardstick, 0.5 as the value of two samples of one distribution."""
    null = (c2st["controls"].get("null") or {}).get("auc") or {"value": None, "ci_low": None, "ci_high": None}
    return [{"feature_space": space, "generator": gen, "metric": C2ST_METRIC, "value": _number(r["auc"]["value"]),
             "ci_low": _number(r["auc"]["ci_low"]), "ci_high": _number(r["auc"]["ci_high"]), "ideal": 0.5,
             "yardstick": _number(null["value"]), "yardstick_low": _number(null["ci_low"]),
             "yardstick_high": _number(null["ci_high"]), "half_value": float("nan"), "side_real": float("nan"),
             "side_synthetic": float("nan"), "note": ""} for gen, r in c2st["by_generator"].items()]


def forest_frame(metrics_by_generator: dict[str, dict[str, dict]], c2st: dict | None = None) -> pd.DataFrame:
    """The long table the metric forest plots: one row per feature space, generator and metric.

    Parameters
    ----------
    metrics_by_generator : dict of str to dict of str to SpaceMetrics
        Generator -> feature space -> metrics (``feature_space.results.analyse_spaces``).
    c2st : dict, optional
        The CNN two-sample tests' record (:func:`mammo_lib.feature_space.c2st.records.c2st_record`): its AUCs
        come first (metric :data:`C2ST_METRIC`, in the first feature space's column, since the
        observer sees the raw pixels), with the null control (real vs real) as the yardstick.

    Returns
    -------
    pandas.DataFrame
        Columns feature_space, generator, metric, value, ci_low, ci_high (the 95% interval),
        ideal (the value two samples of one distribution give, NaN when it depends on the
        data), yardstick / yardstick_low / yardstick_high (the measured real-vs-real value and
        its interval: real split-half Fréchet distance, real lesions' own normal-neighbour
        share, authenticity of a real half against the other; NaN elsewhere), half_value (the
        generator's Fréchet distance and authenticity at the yardstick's half sample size),
        side_real / side_synthetic (the 1-NN accuracy's real-side and synthetic-side
        accuracies; NaN on other rows) and note ("" or, on a lopsided 1-NN row,
        :func:`mammo_lib.feature_space.metrics.lopsided_note`: its mean is no verdict); NaN where a
        value is undefined.
    """
    rows = [row for gen, by_space in metrics_by_generator.items() for space, m in by_space.items()
            for row in _forest_rows(space, gen, m)]
    if c2st and c2st.get("by_generator") and rows:
        rows = _c2st_rows(c2st, rows[0]["feature_space"]) + rows
    return pd.DataFrame(rows)


def _mark_lopsided(ax, data: pd.DataFrame, y: np.ndarray) -> None:
    """A lopsided 1-NN split: a red cross over the mean, the real (R) and synthetic (S) sides
    joined by a red line, and the note beside it."""
    for yi, (_, r) in zip(y, data.iterrows(), strict=True):
        if not r["note"]:
            continue
        ax.plot([r["side_real"], r["side_synthetic"]], [yi, yi], color="red", lw=0.8, ls="--", zorder=2)
        for x, label in ((r["side_real"], "R"), (r["side_synthetic"], "S")):
            ax.text(x, yi - 0.18, label, color="red", fontsize=8, fontweight="bold", ha="center", va="bottom")
        ax.scatter([r["value"]], [yi], marker="X", s=120, color="red", edgecolors="black", linewidths=0.6, zorder=4)
        ax.annotate("lopsided: not a verdict", (r["value"], yi), xytext=(7, -6), textcoords="offset points",
                    color="red", fontsize=7, va="top")


def _forest_panel(data: pd.DataFrame, names: list[str], colours: dict[str, str], **_kwargs) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    ax = plt.gca()
    y = data["generator"].map({n: i for i, n in enumerate(names)}).to_numpy(dtype=float)
    lo = (data["value"] - data["ci_low"]).clip(lower=0).fillna(0).to_numpy()
    hi = (data["ci_high"] - data["value"]).clip(lower=0).fillna(0).to_numpy()
    for yi, v, a, b, gen in zip(y, data["value"], lo, hi, data["generator"], strict=True):
        ax.errorbar(v, yi, xerr=[[a], [b]], fmt="none", ecolor=colours[gen], elinewidth=1.6, capsize=3)
    sns.scatterplot(x=data["value"].to_numpy(), y=y, hue=data["generator"].to_numpy(), palette=colours, s=45,
                    ax=ax, legend=False, zorder=3)
    yard = data["yardstick"].to_numpy(dtype=float)
    if np.isfinite(yard).any():
        ax.errorbar(yard, y + 0.28, xerr=[(data["yardstick"] - data["yardstick_low"]).clip(lower=0).fillna(0),
                                          (data["yardstick_high"] - data["yardstick"]).clip(lower=0).fillna(0)],
                    fmt="D", color="black", mfc="white", ms=5, elinewidth=1.0, capsize=2)
    half = data["half_value"].to_numpy(dtype=float)
    if np.isfinite(half).any():
        ax.scatter(half, y + 0.28, marker="o", s=30, facecolors="none",
                   edgecolors=[colours[g] for g in data["generator"]])
    ideal = data["ideal"].dropna()
    if len(ideal):
        ax.axvline(float(ideal.iloc[0]), color="grey", ls=":", lw=1.2)
        ax.plot([float(ideal.iloc[0])], [0.0], alpha=0.0)  # keeps the line inside the x range
    _mark_lopsided(ax, data, y)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:.3g}"))


def plot_metric_forest(frame: pd.DataFrame, generators: list[str] | None = None):
    """Forest plot of every realism metric per generator, drawn with seaborn: one panel per
    metric (rows) and feature space (columns), each generator's value with its 95% interval;
    the real-vs-real yardstick (black diamond, with its interval) where one is measured, the
    value two samples of one distribution give (dotted line) where it is known. A lopsided 1-NN
    accuracy (its real-side and synthetic-side accuracies differ by more than
    :data:`mammo_lib.feature_space.metrics.LOPSIDED_GAP`, so 0.5 may come from 1.0 and 0.0) is drawn
    as a red cross with its two sides (R, S) and the words "not a verdict".

    Parameters
    ----------
    frame : pandas.DataFrame
        :func:`forest_frame`.
    generators : list of str, optional
        Generator order (default: as they appear in ``frame``); the first gets the paper's
        green, the others the colours of :func:`plot_fig2`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    names = generators or list(dict.fromkeys(frame["generator"]))
    colours = {n: generator_style(k)[1] for k, n in enumerate(names)}
    with sns.axes_style("whitegrid"):
        grid = sns.FacetGrid(frame, row="metric", col="feature_space", sharex=False, sharey=True,
                             height=0.75 + 0.38 * len(names), aspect=4.2 / (0.75 + 0.38 * len(names)),
                             row_order=list(dict.fromkeys(frame["metric"])), despine=False)
        grid.map_dataframe(_forest_panel, names=names, colours=colours)
    grid.set_titles(template="{col_name}: {row_name}", size=9)
    grid.set(yticks=range(len(names)), ylim=(len(names) - 0.4, -0.6))
    for ax in grid.axes[:, 0]:
        ax.set_yticklabels(names, fontsize=9)
    grid.set_axis_labels("", "")
    for (metric, space), ax in grid.axes_dict.items():  # the C2ST row has one panel: hide the others
        if not ((frame["metric"] == metric) & (frame["feature_space"] == space)).any():
            ax.set_visible(False)
    handles = {n: plt.Line2D([], [], color=colours[n], marker="o", lw=1.6) for n in names}
    handles["real vs real (yardstick)"] = plt.Line2D([], [], color="black", marker="D", mfc="white", lw=1.0)
    if frame["half_value"].notna().any():
        handles["the generator at the yardstick's half size"] = plt.Line2D([], [], color="grey", marker="o",
                                                                           mfc="none", lw=0)
    if "note" in frame and frame["note"].astype(bool).any():
        handles[f"1-NN lopsided (sides R, S differ > {LOPSIDED_GAP:g}): no verdict"] = \
            plt.Line2D([], [], color="red", marker="X", mec="black", ls="--", lw=0.8)
    handles["two samples of one distribution"] = plt.Line2D([], [], color="grey", ls=":", lw=1.2)
    fig = grid.figure
    ncol = max(1, min(len(handles), int(fig.get_figwidth() // 2.6)))  # about 2.6 in per legend entry
    legend_in = 0.35 + 0.22 * math.ceil(len(handles) / ncol)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=ncol, frameon=False, fontsize=9,
               title="each generator's value with its 95% interval", title_fontsize=9, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - legend_in / fig.get_figheight()))
    return grid.figure
