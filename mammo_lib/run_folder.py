"""Layout of a run folder: every stage reads and writes files here and nowhere else.

```
runs/<name>/
  run.json                       the runner's record (profile, versions, notebook status)
  NN_<stage>.ipynb               executed notebooks
  phantom/                       built-in data, when the phantom is the source (stage 01)
  patches/lesion.zarr            real lesion patches + manifest.csv (stage 01)
  patches/normal.zarr            real normal-tissue patches + manifest.csv (stage 01)
  patches/skipped_files.csv      files that could not be used, and why (stage 01)
  dcgan/                         checkpoints/, loss_log.csv, samples/ (stage 02)
  synthetic/synthetic.zarr       synthetic lesion patches + manifest.csv (stage 02)
  feature_space/                 embedding.csv, metrics.json (stage 03)
  reader_study/case_set/         what readers see: case PNGs + cases.csv (stage 04)
  reader_study/key/key.csv       the truth, never loaded by the reading side (stage 04)
  reader_study/ratings/*.jsonl   append-only ratings, one file per reader (stage 04)
  roc/                           metrics.json (stage 05)
  <stage>/figures/*.png          every figure a stage saves
```
"""

from __future__ import annotations

import os
from pathlib import Path

from mammo_lib.patch_store import open_patch_store

STAGE_DIRS = {
    "phantom": "phantom",
    "patches": "patches",
    "dcgan": "dcgan",
    "synthetic": "synthetic",
    "feature_space": "feature_space",
    "reader_study": "reader_study",
    "roc": "roc",
}


def run_relative(path: str | os.PathLike, run_dir: str | os.PathLike | None, *,
                 outside: str = "relative") -> str:
    """A path as the study's files record it: relative to the run folder, so that no machine path
    is written and a run folder can be moved. The one rule every stage uses.

    Parameters
    ----------
    path : str or os.PathLike
        An absolute path, or a path already relative to the run folder (returned as given; a
        ``path:line`` suffix or a text that is not a path is kept too).
    run_dir : str or os.PathLike or None
        The run folder; None returns ``path`` as given.
    outside : {"relative", "absolute"}
        A path outside the run folder: relative with ``..`` (a collection or reference manifest
        beside the runs) or absolute (a checkpoint recorded where it is).

    Returns
    -------
    str
        POSIX form, e.g. ``"patches/lesion.zarr"``, ``"../../data_manifest/default_study"``.

    Raises
    ------
    ValueError
        For another ``outside``.
    """
    if outside not in ("relative", "absolute"):
        raise ValueError(f"outside must be 'relative' or 'absolute', got {outside!r}")
    text = str(path)
    if run_dir is None or not os.path.isabs(text):
        return text
    resolved, root = Path(text).resolve(), Path(run_dir).resolve()
    if resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    if outside == "absolute":
        return resolved.as_posix()
    try:
        return Path(os.path.relpath(resolved, root)).as_posix()
    except ValueError:  # another drive: no relative path exists
        return resolved.as_posix()


def stage_dir(run_dir: str | os.PathLike, stage: str, create: bool = True) -> Path:
    """The folder of one stage inside a run folder (created on request)."""
    if stage not in STAGE_DIRS:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGE_DIRS)}")
    path = Path(run_dir) / STAGE_DIRS[stage]
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(run_dir: str | os.PathLike, stage: str) -> Path:
    """``<run>/<stage>/figures``, created."""
    path = stage_dir(run_dir, stage) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def lesion_store_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "patches" / "lesion.zarr"


def normal_store_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "patches" / "normal.zarr"


def synthetic_store_path(run_dir: str | os.PathLike) -> Path:
    """The DCGAN's store, ``<run>/synthetic/synthetic.zarr``."""
    return Path(run_dir) / "synthetic" / DCGAN_STORE


#: the folder of the DCGAN's store, and its generator name: the one rule that
#: ``synthetic/synthetic.zarr`` belongs to the DCGAN (its manifest has no ``generator`` column)
DCGAN_STORE = "synthetic.zarr"
DCGAN_GENERATOR = "dcgan"


def generator_of_store(store_name: str | None) -> str:
    """The generator a synthetic store's folder name stands for.

    Parameters
    ----------
    store_name : str or None
        ``"synthetic.zarr"`` (or None / empty: the DCGAN's) or ``"<name>.zarr"``.

    Returns
    -------
    str
        ``"dcgan"`` for the DCGAN's store, else the folder name without ``.zarr``.
    """
    store_name = str(store_name or DCGAN_STORE)
    return DCGAN_GENERATOR if store_name == DCGAN_STORE else store_name.removesuffix(".zarr")


def _store_generator(path: Path) -> tuple[str, bool]:
    """(generator name, is the DCGAN) of one synthetic store: its attrs' or manifest's
    ``generator``, else the folder stem (``synthetic.zarr``: "dcgan")."""

    store = open_patch_store(path, require_nonempty=False)
    attrs = store.attrs
    name = str(attrs.get("generator") or "")
    if not name and "generator" in store.manifest.columns and len(store.manifest):
        name = str(store.manifest["generator"].iloc[0])
    legacy = path.name == DCGAN_STORE
    if not name:
        name = generator_of_store(path.name)
    kind = str(attrs.get("generator_kind") or ("dcgan" if legacy else ""))
    return name, kind == "dcgan"


def synthetic_stores(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Every synthetic patch store of a run (``synthetic/*.zarr``), keyed by generator name.

    The name is the store's ``generator`` (zarr attrs, else the manifest's ``generator``
    column), else the folder stem; the DCGAN's ``synthetic/synthetic.zarr`` (no ``generator``
    recorded) is ``"dcgan"``. Hidden folders (an import's temporary copy) are skipped.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.

    Returns
    -------
    dict of str to pathlib.Path
        Generator name -> store path, in a deterministic order: the DCGAN's store(s) first,
        then the others by name.

    Raises
    ------
    FileNotFoundError
        When ``<run_dir>/synthetic`` holds no ``*.zarr`` store (naming the folder).
    ValueError
        When two stores carry the same generator name (naming both).
    mammo_lib.patch_store.PatchStoreError
        When a store cannot be opened (naming it).
    """
    folder = Path(run_dir) / STAGE_DIRS["synthetic"]
    paths = sorted(p for p in folder.glob("*.zarr") if p.is_dir() and not p.name.startswith(".")) \
        if folder.is_dir() else []
    if not paths:
        raise FileNotFoundError(f"{folder}: no synthetic patch store (*.zarr) found; run notebook 02 first "
                                "(it trains the DCGAN and imports any other generator)")
    found: dict[str, tuple[bool, Path]] = {}
    for path in paths:
        name, is_dcgan = _store_generator(path)
        if name in found:
            raise ValueError(f"{folder}: stores {found[name][1].name} and {path.name} both hold generator {name!r}; "
                             "remove one of them")
        found[name] = (is_dcgan, path)
    order = sorted(found, key=lambda n: (not found[n][0], n))
    return {name: found[name][1] for name in order}
