"""Figure helpers shared by the stages: patch grids and saving figures to the run folder."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def patch_grid(
    patches: np.ndarray,
    ncols: int = 8,
    title: str | None = None,
    labels: list[str] | None = None,
    ax_size: float = 1.3,
    vmin: float | None = None,
    vmax: float | None = None,
) -> plt.Figure:
    """A grid of grey patches (uint8 or float), one per axis, optional per-patch labels."""
    patches = np.asarray(patches)
    n = len(patches)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * ax_size, nrows * ax_size + (0.4 if title else 0)), squeeze=False)
    if vmin is None and vmax is None and patches.dtype == np.uint8:
        vmin, vmax = 0, 255
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            ax.imshow(patches[i], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a figure as PNG (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
