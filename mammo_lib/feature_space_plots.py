"""Stage 03's figures: the paper's Fig. 2 replica, the patches at their t-SNE positions, and
the closest synthetic / real pairs. Each function returns a matplotlib figure and writes
nothing (``plotting.save_figure`` saves it).
"""

from __future__ import annotations

import numpy as np

from mammo_lib.feature_space import GROUP_ORDER
from mammo_lib.feature_space_rng import rng as stream_rng

# the paper's legend (Fig. 2): ORG = real lesions, GAN = synthetic lesions, NORM_TIS = normal tissue
GROUP_LEGEND = {"lesion": "ORG", "synthetic": "GAN", "normal": "NORM_TIS"}
GROUP_STYLE = {
    "lesion": dict(marker="x", color="red", s=22, linewidths=1.0),
    "synthetic": dict(marker="o", facecolors="none", edgecolors="green", s=22, linewidths=0.9),
    "normal": dict(marker="^", facecolors="none", edgecolors="purple", s=22, linewidths=0.9),
}
GROUP_COLOUR = {"lesion": "red", "synthetic": "green", "normal": "purple"}


def plot_fig2(embedding: np.ndarray, groups: np.ndarray, outliers: np.ndarray | None = None,
              title: str | None = None):
    """The paper's Fig. 2: real lesions red crosses, synthetic green circles, normal tissue
    purple triangles, axes X1/X2, legend ORG/GAN/NORM_TIS; outliers ringed in black.

    Parameters
    ----------
    embedding : float array, shape (n, 2)
        t-SNE coordinates (unitless).
    groups : str array, shape (n,)
        "lesion", "synthetic" or "normal" per point.
    outliers : bool array, shape (n,), optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for g in GROUP_ORDER:
        m = groups == g
        ax.scatter(embedding[m, 0], embedding[m, 1], label=GROUP_LEGEND[g], **GROUP_STYLE[g])
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
                    zoom: float | None = None):
    """The patches themselves drawn at their embedded positions, framed in the group colour.

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
    colours = GROUP_COLOUR
    if zoom is None:  # a thumbnail 80% of a grid cell wide (the axes are about 9 in = 648 pt wide)
        zoom = 0.8 * 9 * 72 / cells_per_side / max(patches.shape[1], 1)
    fig, ax = plt.subplots(figsize=(10, 9))
    ax.scatter(embedding[:, 0], embedding[:, 1], s=2, c="lightgrey")
    for i in sorted(chosen):
        is_out = outliers is not None and bool(outliers[i])
        img = OffsetImage(patches[i], cmap="gray", zoom=zoom, norm=None)
        img.get_children()[0].set_clim(0, 255)
        box = AnnotationBbox(img, embedding[i], frameon=True, pad=0.1,
                             bboxprops=dict(edgecolor=colours[groups[i]], linewidth=3.0 if is_out else 1.2,
                                            linestyle="--" if is_out else "-"))
        ax.add_artist(box)
    handles = [plt.Line2D([], [], color=colours[g], lw=3, label=GROUP_LEGEND[g]) for g in GROUP_ORDER]
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
        ``realism_metrics.memorisation_check``'s ``closest_pairs``).
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
