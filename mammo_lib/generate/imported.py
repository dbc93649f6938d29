"""Synthetic lesions from any generator: each source becomes one synthetic patch store.

Stage 02 reads a list ``generators``; each item names one source of synthetic patches and
becomes ``synthetic/<name>.zarr`` (with ``manifest.csv``), which every later stage reads the same
way, whatever made the patches. Kinds:

``{"name": "dcgan", "kind": "dcgan"}``
    the built-in DCGAN, trained by stage 02 (:mod:`mammo_lib.generate.training`).
``{"name": "mine", "kind": "folder", "path": "/data/my_patches"}``
    a folder of PNG or TIFF files (8- or 16-bit grey), NumPy ``.npy`` files (one patch or a stack
    ``(n, h, w)``) or DICOM files; optionally ``"metadata": "meta.csv"``, a CSV with a ``file``
    column whose other columns (e.g. ``lesion_class``) are copied into the manifest.
``{"name": "g", "kind": "torchscript", "path": "generator.pt", "latent_dim": 100, "n": 500}``
    a TorchScript generator called on N(0, 1) latents of shape ``(b, latent_dim, 1, 1)``
    (``"latent_shape": "flat"`` for ``(b, latent_dim)``), on ``"device"`` (default CPU); its
    output ``(b, 1, h, w)`` or ``(b, h, w)`` in ``"output_range"`` ``"tanh"`` ([-1, 1], the
    default) or ``"unit"`` ([0, 1]).
``{"name": "optimam", "kind": "medigan", "model_id": "00002_DCGAN_MMG_MASS_ROI", "n": 500}``
    a model of the medigan library (Osuala et al. 2023), where the optional ``medigan`` package
    is installed and its weights can be downloaded on first use.

The contract every imported patch meets (the same as the DCGAN's own): size equal to the study's
``patch_size`` (or, with ``"resize": true``, resized with anti-aliasing and the original size
recorded), one grey channel, finite values, rescaled to uint8 with the method recorded per patch
(``rescale``: ``"uint8"`` as stored, ``"dtype-range"`` for other integer types, ``"unit"`` for
floats in [0, 1], ``"tanh"`` for [-1, 1], or ``"minmax"`` per patch when the item asks for it).
Each patch keeps its provenance: source file and its SHA-256, or the model's digest, latent seed
and index. Bad input (wrong size, colour, NaN, an empty folder, a generator returning the wrong
shape) raises :class:`mammo_lib.generate.contract.GeneratorError` naming the file or generator and the problem, before
anything is written; a store is written to a temporary folder and renamed into place, so a
killed import never leaves half a store.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib.generate.contract import (
    PROVENANCE_COLUMNS,
    GeneratorError,
    GeneratorSpec,
    parse_generators,
)
from mammo_lib.generate.sources import folder_patches, medigan_patches, torchscript_patches
from mammo_lib.patch_store import MANIFEST_COLUMNS, PatchStoreError, write_patch_store
from mammo_lib.run_folder import synthetic_stores


def _write_store_atomically(path: Path, patches: np.ndarray, manifest: pd.DataFrame, attrs: dict) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_patch_store(tmp, patches, manifest, attrs=attrs)
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def import_generator(spec: GeneratorSpec, out_dir: str | os.PathLike, patch_size: int, seed: int = 0) -> Path:
    """Write ``<out_dir>/<name>.zarr`` from a folder, TorchScript or medigan source.

    Parameters
    ----------
    spec : GeneratorSpec
        Any kind but ``"dcgan"`` (stage 02 trains that one).
    out_dir : str or os.PathLike
        The run's ``synthetic/`` folder.
    patch_size : int
        The study's patch size in pixels (the real lesion store's).
    seed : int
        Study seed; model latents come from (seed, "latents", name).

    Returns
    -------
    pathlib.Path
        The store written.

    Raises
    ------
    GeneratorError
        As the source's reader; nothing is written then.
    """
    readers = {"folder": lambda: folder_patches(spec, patch_size),
               "torchscript": lambda: torchscript_patches(spec, patch_size, seed),
               "medigan": lambda: medigan_patches(spec, patch_size, seed)}
    if spec.kind not in readers:
        raise GeneratorError(f"generator {spec.name!r}: kind {spec.kind!r} is not imported (the DCGAN is trained by stage 02)")
    patches, rows = readers[spec.kind]()
    n = len(patches)
    manifest = pd.DataFrame({
        "patch_id": [f"{spec.name}-{i:06d}" for i in range(n)], "group": "synthetic", "source_kind": spec.kind,
        "image_id": "", "lesion_id": "", "lesion_class": rows.get("lesion_class", pd.Series([""] * n)).to_numpy(),
        "center_row": -1, "center_col": -1, "normalisation": "none", "checksum": "",
        "generator": spec.name, "generator_kind": spec.kind,
    })
    for col in PROVENANCE_COLUMNS:
        if col not in manifest.columns:
            manifest[col] = rows[col].to_numpy() if col in rows.columns else ""
    extra = [c for c in rows.columns if c not in manifest.columns]
    for col in extra:
        manifest[col] = rows[col].to_numpy()
    attrs = {"generator": spec.name, "generator_kind": spec.kind, "options": {k: v for k, v in spec.options.items()},
             "patch_size": patch_size, "columns": list(MANIFEST_COLUMNS)}
    return _write_store_atomically(Path(out_dir) / f"{spec.name}.zarr", patches, manifest, attrs)


def import_generators(items: list[dict] | None, synthetic_dir: str | os.PathLike, patch_size: int,
                      seed: int = 0) -> dict[str, Path]:
    """Stage 02's ``generators`` parameter: write the store of every source other than the DCGAN.

    Every item is validated first (:func:`mammo_lib.generate.contract.parse_generators`), so a
    mistake in the third item stops the stage before the first store is written.

    Parameters
    ----------
    items : list of dict or None
        The ``generators`` parameter (None: the DCGAN only).
    synthetic_dir : str or os.PathLike
        The run's ``synthetic/`` folder.
    patch_size : int
        The study's patch size in pixels.
    seed : int
        Study seed (latents of model sources).

    Returns
    -------
    dict of str to pathlib.Path
        ``{generator name: store}`` of the imported sources, in the given order (the DCGAN,
        trained by stage 02 itself, is not among them).

    Raises
    ------
    GeneratorError
        As :func:`mammo_lib.generate.contract.parse_generators` and :func:`import_generator`.
    """

    specs = [s for s in parse_generators(items) if s.kind != "dcgan"]
    return {spec.name: import_generator(spec, synthetic_dir, patch_size, seed) for spec in specs}


def remove_other_stores(run_dir: str | os.PathLike, keep: set[str]) -> list[str]:
    """Delete the synthetic stores of generators not in ``keep`` (left by an earlier run of stage 02
    with another ``generators`` list), so later stages judge exactly the generators asked for.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    keep : set of str
        Generator names to keep (``"dcgan"`` is the DCGAN's ``synthetic/synthetic.zarr``).

    Returns
    -------
    list of str
        The names of the stores removed.
    """

    try:
        stores = synthetic_stores(run_dir)
    except (FileNotFoundError, ValueError, PatchStoreError):
        return []
    removed = [name for name in stores if name not in keep]
    for name in removed:
        shutil.rmtree(stores[name])
    return removed
