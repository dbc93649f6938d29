"""Stage 02 figures: loss curves, fixed-noise samples during training, the paper's Fig. 3.

Every grid of patches, in a PNG written during training or in a figure, is tiled by one helper,
:func:`tile_patches` (``skimage.util.montage``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib.fileio import atomic_write
from mammo_lib.generate.model import NETWORK_NAMES
from mammo_lib.generate.streams import numpy_stream


def tile_patches(patches: np.ndarray, ncols: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile patches into one image, row by row, ``pad`` pixels between them and around the grid.

    Parameters
    ----------
    patches : uint8 array, shape (n, h, w)
        Grey levels 0-255; n >= 1.
    ncols : int
        Patches per row (fewer when n is smaller).
    pad : int
        Gap in pixels between neighbours and at the edges.
    fill : int
        Grey level of borders and of empty places in the last row.

    Returns
    -------
    uint8 array, shape (rows * (h + pad) + pad, ncols * (w + pad) + pad)

    Raises
    ------
    ValueError
        When ``patches`` is empty or not three-dimensional.
    """
    from skimage.util import montage

    patches = np.asarray(patches)
    if patches.ndim != 3 or len(patches) == 0:
        raise ValueError(f"need a non-empty stack of 2-D patches, got shape {patches.shape}")
    ncols = max(1, min(ncols, len(patches)))
    grid = (math.ceil(len(patches) / ncols), ncols)
    return montage(patches, fill=fill, grid_shape=grid, padding_width=pad).astype(np.uint8)


def save_sample_grid(images_u8: np.ndarray, path: str | os.PathLike, ncols: int = 8, pad: int = 2) -> Path:
    """Write uint8 patches, shape (n, h, w), as one grey PNG grid (atomically; no matplotlib).

    Returns the path; raises ``ValueError`` as :func:`tile_patches` and ``OSError`` when the
    file cannot be written.
    """
    from PIL import Image

    grid = tile_patches(images_u8, ncols=ncols, pad=pad)
    return atomic_write(path, lambda fh: Image.fromarray(grid).save(fh, format="PNG"))


def plot_loss_curves(log: pd.DataFrame, smooth: int = 25):
    """Loss_D and loss_G (left) and D(x), D(G(z)) (right) per iteration, raw and running mean.

    Parameters
    ----------
    log : pandas.DataFrame
        The loss log (:func:`mammo_lib.generate.training.read_loss_log`): columns ``iteration``,
        ``loss_D``, ``loss_G`` (binary cross-entropy, nats), ``D_x``, ``D_G_z1`` (probabilities).
    smooth : int
        Window of the running mean, in iterations (at most a fifth of the log).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    KeyError
        When a column is missing.
    """
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_prob) = plt.subplots(1, 2, figsize=(11, 3.6))
    window = max(1, min(smooth, len(log) // 5 or 1))
    for ax, cols, labels in (
        (ax_loss, ("loss_D", "loss_G"), ("loss D", "loss G")),
        (ax_prob, ("D_x", "D_G_z1"), ("D(x), real", "D(G(z)), fake")),
    ):
        for col, label, colour in zip(cols, labels, ("tab:blue", "tab:orange"), strict=True):
            ax.plot(log["iteration"], log[col], color=colour, alpha=0.25, lw=0.7)
            ax.plot(log["iteration"], log[col].rolling(window, min_periods=1).mean(), color=colour,
                    lw=1.6, label=f"{label} (mean of {window})")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax_loss.set_ylabel("binary cross-entropy")
    ax_prob.set_ylabel("mean probability 'real'")
    ax_prob.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def sample_snapshots(samples_dir: str | os.PathLike, n_snapshots: int = 6) -> list[tuple[int, np.ndarray]]:
    """Up to ``n_snapshots`` fixed-noise sample sets saved during training, evenly spaced, last included.

    Returns a list of ``(iteration, uint8 array of shape (n_fixed_samples, size, size))``,
    empty when ``samples_dir`` holds no ``iter_*.npy``.
    """
    files = sorted(Path(samples_dir).glob("iter_*.npy"))
    if not files:
        return []
    picks = np.unique(np.linspace(0, len(files) - 1, min(n_snapshots, len(files))).round().astype(int))
    return [(int(files[i].stem.split("_")[1]), np.load(files[i])) for i in picks]


def plot_samples_over_training(samples_dir: str | os.PathLike, n_snapshots: int = 6, per_row: int = 8):
    """One row per snapshot: G's output for the same latent vectors as training went on.

    Parameters
    ----------
    samples_dir : str or os.PathLike
        ``dcgan/samples`` with the ``iter_NNNNNN.npy`` files written during training.
    n_snapshots : int
        Rows (evenly spaced snapshots, the first and last included).
    per_row : int
        Latent vectors shown per row (the first ``per_row`` of the fixed set).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    FileNotFoundError
        When ``samples_dir`` holds no snapshot.
    """
    import matplotlib.pyplot as plt

    snaps = sample_snapshots(samples_dir, n_snapshots)
    if not snaps:
        raise FileNotFoundError(f"no fixed-noise samples (iter_*.npy) in {samples_dir}: train first")
    per_row = min(per_row, len(snaps[0][1]))
    size, pad = snaps[0][1].shape[1], 2
    grid = tile_patches(np.concatenate([images[:per_row] for _, images in snaps]), ncols=per_row, pad=pad)
    fig, ax = plt.subplots(figsize=(per_row * 1.25, len(snaps) * 1.25 + 0.4))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad / 2 + (size + pad) * (row + 0.5) for row in range(len(snaps))])
    ax.set_yticklabels([f"it {iteration}" for iteration, _ in snaps], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("fixed-noise samples during training (same z in each column)", fontsize=10)
    fig.tight_layout()
    return fig


def pick_fig3_patches(real_rows: np.ndarray, n_synthetic: int, seed: int,
                      n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Which real and synthetic patches Fig. 3 shows: ``n`` of each at random, in store order.

    Parameters
    ----------
    real_rows : int array, shape (m,)
        Rows of the real lesion store to choose from (those of the classes G was trained on).
    n_synthetic : int
        Patches in the synthetic store.
    seed : int
        Study seed (the ``"figure"`` stream of :mod:`mammo_lib.generate.streams`).
    n : int
        Patches per side (fewer when either set is smaller).

    Returns
    -------
    real_idx, synthetic_idx : int arrays, shape (k,), sorted, k = min(n, m, n_synthetic)
    """
    rng = numpy_stream(seed, "figure")
    k = min(n, len(real_rows), n_synthetic)
    real_idx = np.sort(rng.choice(np.asarray(real_rows), k, replace=False))
    return real_idx, np.sort(rng.choice(n_synthetic, k, replace=False))


def plot_synthetic_vs_real(synthetic: np.ndarray, real: np.ndarray, n: int = 16, network: str = "dcgan"):
    """The paper's Fig. 3: ``n`` synthetic lesions (left) next to ``n`` real ones (right).

    Parameters
    ----------
    synthetic, real : uint8 array, shape (m, size, size)
        Patches; the first ``n`` of each are shown, in a square grid each.
    n : int
        Patches per side.
    network : {"dcgan", "fastgan"}
        The generator's network, named in the left title ("synthetic (DCGAN)").

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When either set is empty.
    """
    import matplotlib.pyplot as plt

    side = int(math.ceil(math.sqrt(n)))
    fig, axes = plt.subplots(1, 2, figsize=(2 * side * 1.1 + 0.4, side * 1.1 + 0.5))
    for ax, patches, title in ((axes[0], synthetic, f"synthetic ({NETWORK_NAMES[network]})"), (axes[1], real, "real lesions")):
        ax.imshow(tile_patches(np.asarray(patches)[:n], ncols=side), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
