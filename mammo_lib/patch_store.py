"""The patch store: the one on-disk format every stage reads and writes.

A patch store is a directory ``<name>.zarr`` holding

- a zarr array at its root, shape ``(n, size, size)``, dtype ``uint8`` (grey levels 0-255 after
  normalisation), chunked along the first axis so that many Dask workers can write disjoint
  chunk-aligned ranges at once;
- ``manifest.csv`` inside the same directory: one row per patch, in array order.

Manifest columns every store has (``MANIFEST_COLUMNS``); stages may add more (vendor, split,
checkpoint checksum, latent seed ...). ``checksum`` is :func:`patch_checksum` of the stored
bytes, so a rerun can be verified patch by patch against ``data_manifest/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from mammo_lib.fileio import atomic_write_text

MANIFEST_COLUMNS = (
    "patch_id",  # unique within the store, stable across reruns
    "group",  # "lesion", "normal" or "synthetic"
    "source_kind",  # "phantom", "omidb", "cbis-ddsm", "mias", "dcgan"
    "image_id",  # pseudonymous source image id ("" for synthetic)
    "lesion_id",  # "" for normal tissue and synthetic patches
    "lesion_class",  # see records.LESION_CLASSES; "normal" for normal tissue
    "center_row",  # patch centre in the source image (-1 for synthetic)
    "center_col",
    "normalisation",  # e.g. "equalize_image", "none"
    "checksum",  # patch_checksum() of the stored uint8 patch
)
GROUPS = ("lesion", "normal", "synthetic")
MANIFEST_NAME = "manifest.csv"
DEFAULT_CHUNK = 256


class PatchStoreError(ValueError):
    """A patch store is missing, empty or inconsistent; the message names the path."""


def patch_checksum(patch: np.ndarray) -> str:
    """Short SHA-256 of one uint8 patch's bytes (C order), used to verify reruns."""
    arr = np.ascontiguousarray(patch, dtype=np.uint8)
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def to_uint8(patches: np.ndarray) -> np.ndarray:
    """Map float patches in [0, 1] to uint8 grey levels (rounded, clipped)."""
    arr = np.asarray(patches)
    if arr.dtype == np.uint8:
        return arr
    if not np.all(np.isfinite(arr)):
        raise PatchStoreError("patches contain NaN or infinite values")
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


def create_patch_store(
    path: str | os.PathLike,
    n_patches: int,
    patch_size: int,
    chunk: int = DEFAULT_CHUNK,
    attrs: dict | None = None,
) -> zarr.Array:
    """Create (overwrite) an empty store for ``n_patches`` patches of ``patch_size`` squared."""
    if n_patches < 0 or patch_size <= 0:
        raise PatchStoreError(f"{path}: bad store shape ({n_patches}, {patch_size})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = zarr.create_array(
        store=str(path),
        shape=(n_patches, patch_size, patch_size),
        chunks=(max(1, min(chunk, max(n_patches, 1))), patch_size, patch_size),
        dtype="uint8",
        fill_value=0,
        overwrite=True,
    )
    if attrs:
        arr.attrs.update(attrs)
    return arr


def create_staging_array(path: str | os.PathLike, n_slots: int, patch_size: int, chunk: int,
                         store: Any = None) -> zarr.Array:
    """An uncompressed scratch array of zeroed patch slots (stage 01's parallel writers each
    fill their own chunk-aligned region, and :func:`open_staging_array` reads it back).

    Parameters
    ----------
    path : str or os.PathLike
        Its folder (overwritten); ignored when ``store`` is given.
    n_slots, patch_size, chunk : int
        Slots, patch side (pixels) and slots per chunk.
    store : zarr store, optional
        E.g. ``zarr.storage.MemoryStore()`` for an in-memory array.

    Returns
    -------
    zarr.Array
        uint8, shape ``(n_slots, patch_size, patch_size)``.
    """
    return zarr.create_array(store=store if store is not None else str(path),
                             shape=(n_slots, patch_size, patch_size),
                             chunks=(chunk, patch_size, patch_size), dtype="uint8", fill_value=0,
                             overwrite=True, compressors=None)


def open_staging_array(path: str | os.PathLike, writable: bool = False) -> zarr.Array:
    """A scratch array of :func:`create_staging_array`, to read (or, ``writable``, to fill)."""
    return zarr.open_array(store=str(path), mode="r+" if writable else "r")


def memory_store() -> Any:
    """An in-memory zarr store (a worker's warm-up)."""
    return zarr.storage.MemoryStore()


def write_patch_store(
    path: str | os.PathLike,
    patches: np.ndarray,
    manifest: pd.DataFrame,
    attrs: dict | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> Path:
    """Write a whole store at once (small stores, synthetic patches, tests).

    ``patches`` may be uint8 or float in [0, 1]; checksums are (re)computed from the stored
    bytes so the manifest always matches the array.
    """
    data = to_uint8(patches)
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise PatchStoreError(f"{path}: patches must have shape (n, size, size), got {data.shape}")
    if len(manifest) != len(data):
        raise PatchStoreError(f"{path}: {len(data)} patches but {len(manifest)} manifest rows")
    arr = create_patch_store(path, len(data), data.shape[1], chunk=chunk, attrs=attrs)
    if len(data):
        arr[:] = data
    manifest = manifest.copy()
    manifest["checksum"] = [patch_checksum(p) for p in data]
    write_manifest(path, manifest)
    return Path(path)


def write_manifest(path: str | os.PathLike, manifest: pd.DataFrame) -> None:
    """Write ``manifest.csv`` into the store atomically (temp file + rename)."""
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise PatchStoreError(f"{path}: manifest lacks columns {missing}")
    cols = list(MANIFEST_COLUMNS) + [c for c in manifest.columns if c not in MANIFEST_COLUMNS]
    atomic_write_text(Path(path) / MANIFEST_NAME, manifest[cols].to_csv(index=False))


@dataclass
class PatchStore:
    """An opened patch store: the lazy zarr array and its manifest."""

    path: Path
    patches: zarr.Array
    manifest: pd.DataFrame

    def __len__(self) -> int:
        return int(self.patches.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.patches.shape[1])

    @property
    def attrs(self) -> dict:
        return dict(self.patches.attrs)

    def load(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Read patches (all, or the given indices) as uint8 ``(n, size, size)``."""
        if indices is None:
            return np.asarray(self.patches[:])
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.zeros((0, self.patch_size, self.patch_size), dtype=np.uint8)
        order = np.argsort(idx)
        out = np.empty((idx.size, self.patch_size, self.patch_size), dtype=np.uint8)
        out[order] = self.patches.get_orthogonal_selection((idx[order], slice(None), slice(None)))
        return out

    def load_float(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Read patches as float32 in [0, 1]."""
        return self.load(indices).astype(np.float32) / 255.0

    def verify_checksums(self) -> list[str]:
        """Patch ids whose stored bytes do not match the manifest checksum."""
        data = self.load()
        bad = [
            pid
            for pid, patch, ck in zip(self.manifest["patch_id"], data, self.manifest["checksum"], strict=True)
            if patch_checksum(patch) != ck
        ]
        return bad


def open_patch_store(path: str | os.PathLike, require_nonempty: bool = True) -> PatchStore:
    """Open a store for reading, with errors that name the path and say what to do.

    Parameters
    ----------
    path : str or path-like
        The store folder (e.g. ``<run>/patches/lesion.zarr``).
    require_nonempty : bool
        Raise when the store holds no patch (False: an empty store is returned).

    Returns
    -------
    PatchStore
        ``patches``: the zarr array, uint8, shape (n, size, size); ``manifest``: one row per
        patch (``MANIFEST_COLUMNS`` and the stage's own columns).

    Raises
    ------
    PatchStoreError
        (a ``ValueError``) when the store is missing, cannot be opened, is not (n, size, size),
        has no ``manifest.csv`` (an unfinished store), has a different number of manifest rows than
        patches, or is empty while ``require_nonempty``.
    """
    path = Path(path)
    if not path.exists():
        raise PatchStoreError(
            f"patch store {path} does not exist: run the stage that writes it first "
            "(notebook 01 for real patches, notebook 02 for synthetic ones)"
        )
    try:
        arr = zarr.open_array(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a broken store
        raise PatchStoreError(f"patch store {path} cannot be opened as a zarr array: {exc}") from exc
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise PatchStoreError(f"patch store {path}: expected shape (n, size, size), got {arr.shape}")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.exists():
        raise PatchStoreError(f"patch store {path} has no {MANIFEST_NAME}: it was not finished")
    manifest = pd.read_csv(manifest_path, dtype={"patch_id": str, "image_id": str, "patient_id": str, "lesion_id": str, "checksum": str}, keep_default_na=False)
    if len(manifest) != arr.shape[0]:
        raise PatchStoreError(
            f"patch store {path}: {arr.shape[0]} patches but {len(manifest)} manifest rows"
        )
    if require_nonempty and arr.shape[0] == 0:
        raise PatchStoreError(f"patch store {path} is empty: no patches were extracted")
    return PatchStore(path=path, patches=arr, manifest=manifest)


def read_json(path: str | os.PathLike) -> dict:
    """Small helper: read a JSON file with an error that names it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
