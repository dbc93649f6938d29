"""Stage 03: the three patch groups the paper's t-SNE compares (Fig. 2), their feature spaces
and the outliers among them.

The paper (sec. 4.1) embeds 500 patches per group -- real lesions, synthetic lesions, normal
tissue -- as raw 128x128 pixels flattened. This module draws that sample from a run folder's
stores (``patches/lesion.zarr``, ``patches/normal.zarr``, ``synthetic/synthetic.zarr``; read
only), puts it in a feature space (raw pixels, or the lesion CNN's features from
``lesion_cnn``), marks outliers (lesions whose nearest real neighbours are mostly normal
tissue) and builds the embedding table. The t-SNE itself is ``tsne`` / ``tsne_affinity``, the
figures ``feature_space_plots``, the metrics ``realism_metrics``, and the files the stage
writes ``feature_space_results``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mammo_lib import patch_store, run_folder
from mammo_lib.feature_space_rng import rng as stream_rng
from mammo_lib.lesion_classes import normalise_lesion_classes, select_lesion_rows
from mammo_lib.lesion_cnn import LesionCNN, cnn_features
from mammo_lib.neighbours import normal_share_of_neighbours, sq_distances
from mammo_lib.patch_arrays import (
    FeatureSpaceError,
    FeatureSpaceWarning,
    check_patch_array,
    flatten_pixels,
)

PAPER_N_PER_GROUP = 500
GROUP_ORDER = ("lesion", "synthetic", "normal")
FEATURE_SPACES = ("pixels", "cnn")

__all__ = ["FeatureSpaceError", "FeatureSpaceWarning", "GroupSample", "sample_groups", "load_groups",
           "check_feature_spaces", "feature_matrices", "neighbour_normal_share", "mark_outliers",
           "embedding_table", "GROUP_ORDER", "FEATURE_SPACES", "PAPER_N_PER_GROUP"]


@dataclass
class GroupSample:
    """The patches the t-SNE uses: one row per patch, in group order lesion, synthetic, normal.

    ``patches`` uint8 (n, s, s); ``groups`` and ``patch_ids`` str (n,); ``sources`` the store
    of each group (relative to the run folder when loaded from one); ``warnings`` texts;
    ``lesion_classes`` the real lesion classes sampled (None: all).
    """

    patches: np.ndarray
    groups: np.ndarray
    patch_ids: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lesion_classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.patches)

    def of(self, group: str) -> np.ndarray:
        """The patches of one group, uint8 (n_group, s, s)."""
        return self.patches[self.groups == group]

    def counts(self) -> dict[str, int]:
        """Patches per group, in :data:`GROUP_ORDER`."""
        return {g: int(np.sum(self.groups == g)) for g in GROUP_ORDER}


def _check_groups(group_patches: dict[str, np.ndarray], sources: dict[str, str]) -> None:
    missing = [g for g in GROUP_ORDER if g not in group_patches]
    if missing:
        raise FeatureSpaceError(f"groups {missing} are missing; expected {list(GROUP_ORDER)}")
    sizes = {}
    for g in GROUP_ORDER:
        arr = check_patch_array(group_patches[g], sources.get(g, g))
        sizes[g] = arr.shape[1]
        if len(arr) == 0:
            raise FeatureSpaceError(f"{sources.get(g, g)}: group {g!r} has no patches")
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{g} {sizes[g]}x{sizes[g]} ({sources.get(g, g)})" for g in GROUP_ORDER)
        raise FeatureSpaceError(
            f"groups have different patch sizes: {detail}; the t-SNE compares raw pixels, so "
            "extract (notebook 01) and generate (notebook 02) patches of one size"
        )


def sample_groups(
    group_patches: dict[str, np.ndarray],
    n_per_group: int = PAPER_N_PER_GROUP,
    seed: int = 0,
    group_ids: dict[str, np.ndarray] | None = None,
    sources: dict[str, str] | None = None,
) -> GroupSample:
    """Draw ``n_per_group`` patches per group without replacement (all when fewer, with a warning).

    Parameters
    ----------
    group_patches : dict of str to array, shape (n_g, s, s)
        Keys "lesion", "synthetic", "normal"; uint8, or floats in [0, 1] (converted to uint8).
        All groups must have the same patch size, because the t-SNE compares raw pixels.
    n_per_group : int
        Patches drawn per group (the paper: 500).
    seed : int
        Keys the "sample" random stream.
    group_ids : dict of str to array of str, optional
        Patch ids per group (default ``<group>-NNNNNN``).
    sources : dict of str to str, optional
        Where each group came from, for messages.

    Returns
    -------
    GroupSample

    Raises
    ------
    FeatureSpaceError
        When ``n_per_group`` < 1, a group is missing or empty, an array is not (n, s, s) or
        not finite, or the groups' patch sizes differ.

    Warns
    -----
    FeatureSpaceWarning
        For each group with fewer than ``n_per_group`` patches (the text is also in
        ``GroupSample.warnings``).
    """
    if n_per_group < 1:
        raise FeatureSpaceError(f"n_per_group must be >= 1, got {n_per_group}")
    sources = sources or {g: g for g in GROUP_ORDER}
    _check_groups(group_patches, sources)
    rng = stream_rng(seed, "sample")
    out_p, out_g, out_id, notes = [], [], [], []
    for g in GROUP_ORDER:
        arr = np.asarray(group_patches[g])
        ids = np.asarray(group_ids[g]).astype(str) if group_ids and g in group_ids else np.array(
            [f"{g}-{i:06d}" for i in range(len(arr))]
        )
        n = len(arr)
        if n < n_per_group:
            msg = (
                f"group {g!r} has only {n} patches (< {n_per_group} requested): using all {n}"
                f" ({sources.get(g, g)})"
            )
            warnings.warn(msg, FeatureSpaceWarning, stacklevel=2)
            notes.append(msg)
            idx = np.arange(n)
        else:
            idx = np.sort(rng.choice(n, size=n_per_group, replace=False))
        sel = arr[idx]
        if sel.dtype != np.uint8:
            sel = patch_store.to_uint8(sel.astype(np.float64))
        out_p.append(sel)
        out_g.append(np.full(len(idx), g))
        out_id.append(ids[idx])
    return GroupSample(
        patches=np.concatenate(out_p),
        groups=np.concatenate(out_g),
        patch_ids=np.concatenate(out_id),
        sources=dict(sources),
        warnings=notes,
    )


def load_groups(run_dir: str | os.PathLike, n_per_group: int = PAPER_N_PER_GROUP, seed: int = 0,
                lesion_classes: list[str] | None = None) -> GroupSample:
    """Open the three stores of a run folder and sample ``n_per_group`` patches from each.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder (reads ``patches/lesion.zarr``, ``patches/normal.zarr``,
        ``synthetic/synthetic.zarr``).
    n_per_group : int
        Patches per group (the paper: 500).
    seed : int
        Keys the "sample" random stream.
    lesion_classes : list of str, optional
        The real "lesion" group is drawn only from patches whose ``lesion_class`` is listed
        (None: every class; the paper used ``["mass"]``).

    Returns
    -------
    GroupSample
        ``sources`` are paths relative to ``run_dir``.

    Raises
    ------
    FeatureSpaceError
        When the stores' patch sizes differ (or as :func:`sample_groups`).
    mammo_lib.lesion_classes.LesionClassError
        For an unknown class or a filter that leaves no patch (naming the store and its
        class counts).
    """
    classes = normalise_lesion_classes(lesion_classes)
    paths = {
        "lesion": run_folder.lesion_store_path(run_dir),
        "synthetic": run_folder.synthetic_store_path(run_dir),
        "normal": run_folder.normal_store_path(run_dir),
    }
    stores = {g: patch_store.open_patch_store(p) for g, p in paths.items()}
    sizes = {g: s.patch_size for g, s in stores.items()}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{paths[g]}: {sizes[g]}x{sizes[g]}" for g in GROUP_ORDER)
        raise FeatureSpaceError(
            f"patch stores have different patch sizes ({detail}); rerun notebooks 01/02 with one patch size"
        )
    candidates = {g: np.arange(len(s)) for g, s in stores.items()}
    candidates["lesion"] = select_lesion_rows(stores["lesion"].manifest, classes, paths["lesion"],
                                              purpose="for the real lesion group")
    sources = {g: os.path.relpath(p, run_dir) for g, p in paths.items()}
    if classes is not None:
        sources["lesion"] += f" (lesion classes: {', '.join(classes)})"
    rng = stream_rng(seed, "sample")
    patches, ids = {}, {}
    for g in GROUP_ORDER:
        store, rows = stores[g], candidates[g]
        n = len(rows)
        idx = rows if n <= n_per_group else rows[np.sort(rng.choice(n, size=n_per_group, replace=False))]
        patches[g] = store.load(idx)
        ids[g] = store.manifest["patch_id"].to_numpy().astype(str)[idx]
    sample = sample_groups(patches, n_per_group=n_per_group, seed=seed, group_ids=ids, sources=sources)
    sample.lesion_classes = classes
    return sample


def check_feature_spaces(spaces: list[str]) -> list[str]:
    """Validate feature-space names.

    Parameters
    ----------
    spaces : list of str
        Names from :data:`FEATURE_SPACES` ("pixels", "cnn").

    Returns
    -------
    list of str
        The same names.

    Raises
    ------
    FeatureSpaceError
        For a name not in :data:`FEATURE_SPACES`.
    """
    for space in spaces:
        if space not in FEATURE_SPACES:
            raise FeatureSpaceError(f"unknown feature space {space!r}; choose from {list(FEATURE_SPACES)}")
    return list(spaces)


def feature_matrices(sample: GroupSample, space: str, cnn: LesionCNN | None = None) -> np.ndarray:
    """All sampled patches in one feature space.

    Parameters
    ----------
    sample : GroupSample
    space : {"pixels", "cnn"}
        "pixels": raw pixels in [0, 1] (the paper's); "cnn": the lesion CNN's penultimate layer.
    cnn : LesionCNN, optional
        Needed for "cnn".

    Returns
    -------
    float64 array, shape (n, d)
        d = s * s for "pixels", 32 for "cnn".

    Raises
    ------
    FeatureSpaceError
        For an unknown space, or "cnn" without a trained CNN.
    """
    if space == "pixels":
        return flatten_pixels(sample.patches).astype(np.float64)
    if space == "cnn":
        if cnn is None:
            raise FeatureSpaceError("feature space 'cnn' needs a trained LesionCNN (lesion_cnn.train_lesion_cnn)")
        return cnn_features(cnn, sample.patches)
    raise FeatureSpaceError(f"unknown feature space {space!r}; choose from {list(FEATURE_SPACES)}")


def neighbour_normal_share(points: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """For every point, the class-balanced share of normal tissue among its k nearest *real*
    neighbours (lesion or normal, itself excluded).

    Synthetic points are not neighbours of anything, so a synthetic cluster cannot hide its own
    outliers. Each neighbour counts 1 / (size of its group) (see
    :func:`mammo_lib.neighbours.balanced_share`).

    Parameters
    ----------
    points : float array, shape (n, d)
        Any space: the 2-D embedding, raw pixels, CNN features.
    groups : str array, shape (n,)
        "lesion", "synthetic" or "normal" per point.
    k : int
        Neighbours (capped at the real points - 1).

    Returns
    -------
    float64 array, shape (n,)
        Shares in [0, 1].
    """
    groups = np.asarray(groups)
    ref = np.flatnonzero(groups != "synthetic")
    d = sq_distances(np.asarray(points, dtype=np.float64), centre=False, float32_above=None)[:, ref]
    d[ref, np.arange(len(ref))] = np.inf
    return normal_share_of_neighbours(d, groups[ref] == "normal", min(k, len(ref) - 1))


def mark_outliers(points: np.ndarray, groups: np.ndarray, k: int = 10, threshold: float = 0.5) -> np.ndarray:
    """The paper's "outliers": real or synthetic *lesion* points whose k nearest real
    neighbours are mostly (> ``threshold``, class-balanced) normal tissue -- a lesion sitting in
    the normal-tissue cluster. Normal-tissue points are never outliers.

    Parameters
    ----------
    points : float array, shape (n, d)
    groups : str array, shape (n,)
    k : int
    threshold : float
        Share above which a lesion point is an outlier.

    Returns
    -------
    bool array, shape (n,)
    """
    share = neighbour_normal_share(points, groups, k)
    return (np.asarray(groups) != "normal") & (share > threshold)


def embedding_table(sample: GroupSample, embedding: np.ndarray, outliers: np.ndarray,
                    normal_share: np.ndarray | None = None) -> pd.DataFrame:
    """One row per embedded patch: group, patch_id, x1, x2, outlier flag (and share).

    Parameters
    ----------
    sample : GroupSample
    embedding : float array, shape (n, 2)
    outliers : bool array, shape (n,)
    normal_share : float array, shape (n,), optional
        Rounded to 4 decimals into ``normal_neighbour_share_tsne``.

    Returns
    -------
    pandas.DataFrame
        Columns group, patch_id, x1, x2, outlier_tsne (, normal_neighbour_share_tsne).
    """
    df = pd.DataFrame({
        "group": sample.groups,
        "patch_id": sample.patch_ids,
        "x1": embedding[:, 0],
        "x2": embedding[:, 1],
        "outlier_tsne": np.asarray(outliers, dtype=bool),
    })
    if normal_share is not None:
        df["normal_neighbour_share_tsne"] = np.round(normal_share, 4)
    return df
