"""Stage 03: the patch groups the paper's t-SNE compares (Fig. 2), their feature spaces and
the outliers among them.

The paper (sec. 4.1) embeds 500 patches per group -- real lesions, synthetic lesions, normal
tissue -- as raw 128x128 pixels flattened. This module draws that sample from a run folder's
stores (``patches/lesion.zarr``, ``patches/normal.zarr`` and one ``synthetic/<name>.zarr`` per
generator, :func:`mammo_lib.run_folder.synthetic_stores`; read only), puts it in a feature
space (raw pixels, the lesion CNN's features from ``lesion_cnn``, or the random, untrained
CNN's from ``random_cnn``), marks outliers (lesions whose nearest real neighbours are mostly
normal tissue) and builds the embedding table. With
several generators the synthetic group holds ``n_per_group`` patches of each, told apart by
``GroupSample.generators``. The t-SNE itself is ``tsne`` / ``feature_space.tsne.affinity``, the figures
``feature_space.figures``, the metrics ``feature_space.metrics``, and the files the stage writes
``feature_space.results``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import patch_store, run_folder
from mammo_lib.feature_space.arrays import (
    FeatureSpaceError,
    FeatureSpaceWarning,
    check_patch_array,
    flatten_pixels,
)
from mammo_lib.feature_space.lesion_cnn import LesionCNN, cnn_features
from mammo_lib.feature_space.neighbours import normal_share_of_neighbours, sq_distances
from mammo_lib.feature_space.random_cnn import random_cnn_features
from mammo_lib.feature_space.streams import rng as stream_rng
from mammo_lib.run_folder import run_relative
from mammo_lib.sources.lesion_classes import normalise_lesion_classes, select_lesion_rows

PAPER_N_PER_GROUP = 500
GROUP_ORDER = ("lesion", "synthetic", "normal")
FEATURE_SPACES = ("pixels", "cnn", "random-cnn")
#: the generator name of synthetic patches passed as one plain array
DEFAULT_GENERATOR = "synthetic"

__all__ = ["FeatureSpaceError", "FeatureSpaceWarning", "GroupSample", "sample_groups", "load_groups",
           "check_feature_spaces", "feature_matrices", "neighbour_normal_share", "mark_outliers",
           "embedding_table", "name_key", "GROUP_ORDER", "FEATURE_SPACES", "PAPER_N_PER_GROUP",
           "DEFAULT_GENERATOR"]


@dataclass
class GroupSample:
    """The patches the t-SNE uses: one row per patch, in group order lesion, synthetic, normal.

    The synthetic group holds one block of rows per generator, in generator order (the first is
    the paper's "GAN").

    Attributes
    ----------
    patches : uint8 array, shape (n, s, s)
    groups : str array, shape (n,)
        "lesion", "synthetic" or "normal" per row.
    patch_ids : str array, shape (n,)
    sources : dict of str to str
        The store of each group (relative to the run folder when loaded from one); for
        "synthetic" the first generator's.
    warnings : list of str
    lesion_classes : list of str or None
        The real lesion classes sampled (None: all).
    generators : str array, shape (n,), optional
        The generator of each synthetic row, "" for real rows (default: every synthetic row
        from one generator named :data:`DEFAULT_GENERATOR`).
    generator_sources : dict of str to str
        Store of each generator, in generator order.
    """

    patches: np.ndarray
    groups: np.ndarray
    patch_ids: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lesion_classes: list[str] | None = None
    generators: np.ndarray | None = None
    generator_sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.generators is None:
            self.generators = np.where(np.asarray(self.groups) == "synthetic", DEFAULT_GENERATOR, "")
        if not self.generator_sources:
            self.generator_sources = {g: self.sources.get("synthetic", g) for g in self.generator_names()}

    def __len__(self) -> int:
        return len(self.patches)

    def generator_names(self) -> list[str]:
        """The generators in order (the first is the paper's "GAN")."""
        if self.generator_sources:
            return list(self.generator_sources)
        names = self.generators[self.groups == "synthetic"]
        return list(dict.fromkeys(names.tolist()))

    def of(self, group: str, generator: str | None = None) -> np.ndarray:
        """The patches of one group (and, for "synthetic", optionally one generator), uint8
        (n_group, s, s)."""
        mask = self.groups == group
        if generator is not None:
            mask &= self.generators == generator
        return self.patches[mask]

    def counts(self) -> dict[str, int]:
        """Patches per group, in :data:`GROUP_ORDER` ("synthetic": all generators together)."""
        return {g: int(np.sum(self.groups == g)) for g in GROUP_ORDER}

    def generator_counts(self) -> dict[str, int]:
        """Synthetic patches per generator, in generator order."""
        return {g: int(np.sum(self.generators == g)) for g in self.generator_names()}


def _parts(group_patches: dict, sources: dict[str, str], generator_sources: dict[str, str] | None,
           group_ids: dict | None) -> list[tuple[str, str, np.ndarray, np.ndarray | None, str]]:
    """(group, generator, patches, ids, source) per block of rows, in row order."""
    missing = [g for g in GROUP_ORDER if g not in group_patches]
    if missing:
        raise FeatureSpaceError(f"groups {missing} are missing; expected {list(GROUP_ORDER)}")
    synthetic = group_patches["synthetic"]
    if not isinstance(synthetic, dict):
        synthetic = {DEFAULT_GENERATOR: synthetic}
    if not synthetic:
        raise FeatureSpaceError(f"{sources.get('synthetic', 'synthetic')}: group 'synthetic' has no generator")
    syn_ids = (group_ids or {}).get("synthetic")
    if syn_ids is not None and not isinstance(syn_ids, dict):
        syn_ids = {next(iter(synthetic)): syn_ids}
    gen_sources = generator_sources or {}
    out = [("lesion", "", group_patches["lesion"], (group_ids or {}).get("lesion"), sources.get("lesion", "lesion"))]
    for k, (name, arr) in enumerate(synthetic.items()):
        default = sources.get("synthetic", "synthetic") if k == 0 else name
        out.append(("synthetic", name, arr, (syn_ids or {}).get(name), gen_sources.get(name, default)))
    out.append(("normal", "", group_patches["normal"], (group_ids or {}).get("normal"), sources.get("normal", "normal")))
    return out


def _check_parts(parts: list[tuple[str, str, np.ndarray, np.ndarray | None, str]]) -> None:
    sizes = {}
    for group, gen, arr, _ids, source in parts:
        arr = check_patch_array(arr, source)
        sizes[(group, gen)] = (arr.shape[1], source)
        if len(arr) == 0:
            what = f"group {group!r}" + (f" (generator {gen!r})" if gen else "")
            raise FeatureSpaceError(f"{source}: {what} has no patches")
    if len({size for size, _ in sizes.values()}) > 1:
        detail = ", ".join(f"{g if not gen else gen} {s}x{s} ({src})" for (g, gen), (s, src) in sizes.items())
        raise FeatureSpaceError(
            f"groups have different patch sizes: {detail}; the t-SNE compares raw pixels, so "
            "extract (notebook 01) and generate (notebook 02) patches of one size"
        )


def _generator_rng(seed: int, k: int, name: str) -> np.random.Generator | None:
    """The sampling stream of a group: the "sample" stream is shared, in this order, by real
    lesions, the first generator and normal tissue (the paper's three groups); every further
    generator has its own stream keyed by its name, so adding a generator changes no one
    else's sample. None for the first generator (``k`` = 0), which draws from the shared one."""
    return stream_rng(seed, "sample_generator", name_key(name)) if k > 0 else None


def name_key(name: str) -> int:
    """A stable key of a generator name, the index of its "sample_generator" random stream.

    Parameters
    ----------
    name : str
        The generator name.

    Returns
    -------
    int
        In ``[0, 2**56)``: the first 7 bytes of the name's SHA-256, so the same on every machine
        and run (unlike ``hash``).
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "little")


def _draw(n: int, n_per_group: int, rng: np.random.Generator) -> np.ndarray:
    if n <= n_per_group:
        return np.arange(n)
    return np.sort(rng.choice(n, size=n_per_group, replace=False))


def sample_groups(
    group_patches: dict[str, np.ndarray | dict[str, np.ndarray]],
    n_per_group: int = PAPER_N_PER_GROUP,
    seed: int = 0,
    group_ids: dict[str, np.ndarray | dict[str, np.ndarray]] | None = None,
    sources: dict[str, str] | None = None,
    generator_sources: dict[str, str] | None = None,
) -> GroupSample:
    """Draw ``n_per_group`` patches per group without replacement (all when fewer, with a warning).

    Parameters
    ----------
    group_patches : dict of str to array, shape (n_g, s, s)
        Keys "lesion", "synthetic", "normal"; uint8, or floats in [0, 1] (converted to uint8).
        "synthetic" is one array (one generator, named :data:`DEFAULT_GENERATOR`) or a dict
        generator name -> array, in generator order (the first is the paper's "GAN");
        ``n_per_group`` are drawn from *each* generator. All arrays must have the same patch
        size, because the t-SNE compares raw pixels.
    n_per_group : int
        Patches drawn per group and per generator (the paper: 500).
    seed : int
        Keys the "sample" random stream (real lesions, the first generator, normal tissue) and
        the "sample_generator" streams of further generators (keyed by name).
    group_ids : dict of str to array of str, optional
        Patch ids per group (default ``<group>-NNNNNN``); "synthetic" as in ``group_patches``.
    sources : dict of str to str, optional
        Where each group came from, for messages ("synthetic": the first generator's).
    generator_sources : dict of str to str, optional
        Where each generator's patches came from.

    Returns
    -------
    GroupSample

    Raises
    ------
    FeatureSpaceError
        When ``n_per_group`` < 1, a group is missing or empty, an array is not (n, s, s) or
        not finite, or the patch sizes differ.

    Warns
    -----
    FeatureSpaceWarning
        For each group or generator with fewer than ``n_per_group`` patches (the text is also
        in ``GroupSample.warnings``).
    """
    if n_per_group < 1:
        raise FeatureSpaceError(f"n_per_group must be >= 1, got {n_per_group}")
    sources = dict(sources or {g: g for g in GROUP_ORDER})
    parts = _parts(group_patches, sources, generator_sources, group_ids)
    _check_parts(parts)
    shared = stream_rng(seed, "sample")
    out_p, out_g, out_gen, out_id, notes, gen_sources = [], [], [], [], [], {}
    for group, gen, arr, ids, source in parts:
        arr = np.asarray(arr)
        k = len(gen_sources)
        if group == "synthetic":
            gen_sources[gen] = source
        ids = np.asarray(ids).astype(str) if ids is not None else np.array(
            [f"{group}-{i:06d}" for i in range(len(arr))])
        if len(arr) < n_per_group:
            label = f"group {group!r}" + (f" (generator {gen!r})" if gen and len(parts) > 3 else "")
            msg = f"{label} has only {len(arr)} patches (< {n_per_group} requested): using all {len(arr)} ({source})"
            warnings.warn(msg, FeatureSpaceWarning, stacklevel=2)
            notes.append(msg)
        own = _generator_rng(seed, k, gen) if group == "synthetic" else None
        idx = _draw(len(arr), n_per_group, shared if own is None else own)
        sel = arr[idx]
        if sel.dtype != np.uint8:
            sel = patch_store.to_uint8(sel.astype(np.float64))
        out_p.append(sel)
        out_g.append(np.full(len(idx), group))
        out_gen.append(np.full(len(idx), gen))
        out_id.append(ids[idx])
    return GroupSample(
        patches=np.concatenate(out_p),
        groups=np.concatenate(out_g),
        patch_ids=np.concatenate(out_id),
        sources=sources,
        warnings=notes,
        generators=np.concatenate(out_gen),
        generator_sources=gen_sources,
    )


def _open_stores(run_dir: str | os.PathLike) -> tuple[dict, dict[str, patch_store.PatchStore]]:
    """(real stores by group, synthetic stores by generator), all of one patch size."""
    real = {"lesion": patch_store.open_patch_store(run_folder.lesion_store_path(run_dir)),
            "normal": patch_store.open_patch_store(run_folder.normal_store_path(run_dir))}
    synthetic = {name: patch_store.open_patch_store(path)
                 for name, path in run_folder.synthetic_stores(run_dir).items()}
    every = [real["lesion"], *synthetic.values(), real["normal"]]
    if len({s.patch_size for s in every}) > 1:
        detail = ", ".join(f"{s.path}: {s.patch_size}x{s.patch_size}" for s in every)
        raise FeatureSpaceError(
            f"patch stores have different patch sizes ({detail}); rerun notebooks 01/02 with one patch size"
        )
    return real, synthetic


def load_groups(run_dir: str | os.PathLike, n_per_group: int = PAPER_N_PER_GROUP, seed: int = 0,
                lesion_classes: list[str] | None = None) -> GroupSample:
    """Open the stores of a run folder and sample ``n_per_group`` patches from each.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder (reads ``patches/lesion.zarr``, ``patches/normal.zarr`` and every
        synthetic store, one per generator: :func:`mammo_lib.run_folder.synthetic_stores`).
    n_per_group : int
        Patches per group and per generator (the paper: 500).
    seed : int
        Keys the sampling streams (as :func:`sample_groups`).
    lesion_classes : list of str, optional
        The real "lesion" group is drawn only from patches whose ``lesion_class`` is listed
        (None: every class; the paper used ``["mass"]``).

    Returns
    -------
    GroupSample
        ``sources`` and ``generate.sources`` are paths relative to ``run_dir``.

    Raises
    ------
    FeatureSpaceError
        When the stores' patch sizes differ (or as :func:`sample_groups`).
    FileNotFoundError
        When the run has no synthetic store (naming the folder).
    mammo_lib.patch_store.PatchStoreError
        When a store is missing or broken (naming it).
    mammo_lib.sources.lesion_classes.LesionClassError
        For an unknown class or a filter that leaves no patch (naming the store and its
        class counts).
    """
    classes = normalise_lesion_classes(lesion_classes)
    real, synthetic = _open_stores(run_dir)
    rel = {name: run_relative(Path(s.path).resolve(), run_dir) for name, s in synthetic.items()}
    sources = {"lesion": run_relative(Path(real["lesion"].path).resolve(), run_dir), "synthetic": next(iter(rel.values())),
               "normal": run_relative(Path(real["normal"].path).resolve(), run_dir)}
    lesion_rows = select_lesion_rows(real["lesion"].manifest, classes, real["lesion"].path,
                                     purpose="for the real lesion group")
    if classes is not None:
        sources["lesion"] += f" (lesion classes: {', '.join(classes)})"
    shared = stream_rng(seed, "sample")

    def pick(store: patch_store.PatchStore, rows: np.ndarray, rng: np.random.Generator) -> tuple:
        idx = rows[_draw(len(rows), n_per_group, rng)]
        return store.load(idx), store.manifest["patch_id"].to_numpy().astype(str)[idx]

    lesion = pick(real["lesion"], lesion_rows, shared)  # the shared stream: lesion, first generator, normal
    by_gen = {}
    for k, (name, store) in enumerate(synthetic.items()):
        own = _generator_rng(seed, k, name)
        by_gen[name] = pick(store, np.arange(len(store)), shared if own is None else own)
    normal = pick(real["normal"], np.arange(len(real["normal"])), shared)
    patches = {"lesion": lesion[0], "synthetic": {g: v[0] for g, v in by_gen.items()}, "normal": normal[0]}
    ids = {"lesion": lesion[1], "synthetic": {g: v[1] for g, v in by_gen.items()}, "normal": normal[1]}
    sample = sample_groups(patches, n_per_group=n_per_group, seed=seed, group_ids=ids, sources=sources,
                           generator_sources=rel)
    sample.lesion_classes = classes
    return sample


def check_feature_spaces(spaces: list[str]) -> list[str]:
    """Validate feature-space names.

    Parameters
    ----------
    spaces : list of str
        Names from :data:`FEATURE_SPACES` ("pixels", "cnn", "random-cnn").

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


def feature_matrices(sample: GroupSample, space: str, cnn: LesionCNN | None = None, seed: int = 0,
                     n_threads: int = 1) -> np.ndarray:
    """All sampled patches in one feature space.

    Parameters
    ----------
    sample : GroupSample
    space : {"pixels", "cnn", "random-cnn"}
        "pixels": raw pixels in [0, 1] (the paper's); "cnn": the lesion CNN's penultimate layer;
        "random-cnn": the random, untrained CNN's pooled activations (Naeem et al. 2020).
    cnn : LesionCNN, optional
        Needed for "cnn".
    seed : int
        The study seed: draws the random CNN's weights ("random-cnn" only).
    n_threads : int
        torch CPU threads of the random CNN (restored afterwards).

    Returns
    -------
    float64 array, shape (n, d)
        d = s * s for "pixels", 32 for "cnn", 240 for "random-cnn".

    Raises
    ------
    FeatureSpaceError
        For an unknown space, "cnn" without a trained CNN, or patches too small for the random
        CNN (:func:`mammo_lib.feature_space.random_cnn.random_cnn_features`).
    """
    if space == "pixels":
        return flatten_pixels(sample.patches).astype(np.float64)
    if space == "cnn":
        if cnn is None:
            raise FeatureSpaceError("feature space 'cnn' needs a trained LesionCNN (lesion_cnn.train_lesion_cnn)")
        return cnn_features(cnn, sample.patches)
    if space == "random-cnn":
        return random_cnn_features(sample.patches, seed, n_threads=n_threads)
    raise FeatureSpaceError(f"unknown feature space {space!r}; choose from {list(FEATURE_SPACES)}")


def neighbour_normal_share(points: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """For every point, the class-balanced share of normal tissue among its k nearest *real*
    neighbours (lesion or normal, itself excluded).

    Synthetic points are not neighbours of anything, so a synthetic cluster cannot hide its own
    outliers. Each neighbour counts 1 / (size of its group) (see
    :func:`mammo_lib.feature_space.neighbours.balanced_share`).

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
    """One row per embedded patch: group, patch_id, x1, x2, outlier flag (and share), generator.

    Parameters
    ----------
    sample : GroupSample
    embedding : float array, shape (n, 2)
        t-SNE coordinates (unitless).
    outliers : bool array, shape (n,)
    normal_share : float array, shape (n,), optional
        Rounded to 4 decimals into ``normal_neighbour_share_tsne``.

    Returns
    -------
    pandas.DataFrame
        Columns group, patch_id, x1, x2, outlier_tsne (, normal_neighbour_share_tsne),
        generator (the generator of a synthetic row, "" for real lesions and normal tissue).
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
    df["generator"] = sample.generators
    return df
