"""The reference manifests of a study (``data_manifest/``) and the comparison of a rerun with them.

A reference folder holds ``lesion_manifest.csv`` and ``normal_manifest.csv`` (the audit columns
of a run's manifests, :data:`REFERENCE_COLUMNS`, no image data) and ``parameters.json`` (the
settings that decide the patches, :class:`~mammo_lib.extract.schema.ReferenceParameters`).
:func:`compare_with_reference` says whether a run used the same settings and, if so, whether
every patch checksum matches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mammo_lib import patch_store
from mammo_lib.extract.schema import ReferenceParameters
from mammo_lib.fileio import atomic_write_text
from mammo_lib.run_folder import run_relative


def _manifest_of(patch_dir: Path, group: str) -> pd.DataFrame:
    store = patch_store.open_patch_store(Path(patch_dir) / f"{group}.zarr", require_nonempty=False)
    return store.manifest


def verify_against_manifest(patch_dir: str | os.PathLike, manifest_dir: str | os.PathLike) -> list[str]:
    """Patch ids that differ between a run's stores and a reference manifest folder.

    ``manifest_dir`` holds ``lesion_manifest.csv`` and ``normal_manifest.csv`` (as written by
    :func:`write_reference_manifest`). A patch id whose checksum differs, that is missing from
    the run, or that the run has in excess is reported; so is one whose stored bytes no longer
    match the run's own manifest. An empty list means the run reproduced the reference exactly.
    """
    patch_dir, manifest_dir = Path(patch_dir), Path(manifest_dir)
    bad: set[str] = set()
    for group in ("lesion", "normal"):
        ref_path = manifest_dir / f"{group}_manifest.csv"
        if not ref_path.exists():
            raise FileNotFoundError(f"reference manifest {ref_path} does not exist")
        ref = pd.read_csv(ref_path, dtype={"patch_id": str, "checksum": str}, keep_default_na=False)
        store = patch_store.open_patch_store(patch_dir / f"{group}.zarr", require_nonempty=False)
        bad.update(store.verify_checksums())
        run = dict(zip(store.manifest["patch_id"], store.manifest["checksum"], strict=True))
        want = dict(zip(ref["patch_id"], ref["checksum"], strict=True))
        bad.update(pid for pid in want if run.get(pid) != want[pid])
        bad.update(pid for pid in run if pid not in want)
    return sorted(bad)


REFERENCE_COLUMNS = ("patch_id", "group", "source_kind", "image_id", "lesion_id", "lesion_class",
                     "center_row", "center_col", "normalisation", "checksum", "vendor",
                     "laterality", "view", "scale", "shift_row", "shift_col", "breast_fraction")


def reference_parameters(parameters: dict, run_dir: str | os.PathLike | None = None
                         ) -> ReferenceParameters:
    """The settings that decide a run's patches, to check that a rerun is comparable with a
    reference.

    Parameters
    ----------
    parameters : dict
        ``ExtractionResult.parameters`` or ``extraction.json["parameters"]``
        (:class:`~mammo_lib.extract.schema.ExtractionParameters`).
    run_dir : str, path-like or None
        The run folder that ``parameters["source"]["root"]`` is relative to (None: the current
        directory). For a generated phantom the generator's own settings (its ``PHANTOM.json``)
        stand in for the source path.

    Returns
    -------
    ReferenceParameters
        The comparable settings (JSON-serialisable).

    Raises
    ------
    KeyError
        When ``parameters`` lacks an extraction setting (not an extraction summary).
    """
    out = {key: parameters[key] for key in (
        "patch_size", "n_normal_per_image", "normalisation", "large_lesion", "lesion_context",
        "exclusion_margin", "min_breast_fraction", "min_lesion_breast_fraction", "normal_overlap",
        "equalize_bins", "seed",
        "vendor_filter")}
    source = parameters.get("source", {})
    out["source_kind"] = source.get("kind", "")
    info_path = Path(run_dir or ".") / source.get("root", "") / "PHANTOM.json"
    if source.get("root") and info_path.is_file():
        info = patch_store.read_json(info_path)
        out["source"] = "built-in phantom"
        out["phantom"] = {"version": info.get("version"), **info.get("parameters", {})}
    else:
        out["source"] = source.get("root", "")
    return out  # type: ignore[return-value]


def write_reference_manifest(patch_dir: str | os.PathLike, manifest_dir: str | os.PathLike,
                             parameters: dict | None = None) -> list[Path]:
    """Copy a run's manifests (the audit columns, no image data) and, when given, the settings
    (:func:`reference_parameters`) into ``manifest_dir``."""
    manifest_dir = Path(manifest_dir)
    manifest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if parameters is not None:
        path = manifest_dir / "parameters.json"
        atomic_write_text(path, json.dumps(parameters, indent=2, sort_keys=True) + "\n")
        written.append(path)
    for group in ("lesion", "normal"):
        table = _manifest_of(Path(patch_dir), group)
        cols = [c for c in REFERENCE_COLUMNS if c in table.columns]
        path = manifest_dir / f"{group}_manifest.csv"
        atomic_write_text(path, table[cols].to_csv(index=False))
        written.append(path)
    return written


@dataclass
class ReferenceComparison:
    """Outcome of :func:`compare_with_reference`.

    ``status`` is ``"no reference"`` (none given, or its ``parameters.json`` is missing),
    ``"settings differ"`` (``differing`` names the settings: the patches cannot be compared),
    ``"identical"`` or ``"differs"`` (``mismatches`` lists the patch ids).
    """

    status: str
    reference: str
    differing: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    n_patches: int = 0

    @property
    def message(self) -> str:
        """One plain sentence for the notebook."""
        if self.status == "no reference":
            return "no reference manifest to compare with"
        if self.status == "settings differ":
            return (f"this run's settings differ from the reference ({self.reference}) in "
                    f"{', '.join(self.differing)}: no comparison")
        if self.status == "differs":
            return (f"DIFFERS from the reference ({self.reference}): {len(self.mismatches)} "
                    f"patches, e.g. {self.mismatches[:5]}")
        return (f"identical to the reference: all {self.n_patches} patch checksums match "
                f"{self.reference}")


def compare_with_reference(run_dir: str | os.PathLike, reference_dir: str | os.PathLike | None
                           ) -> ReferenceComparison:
    """Compare a finished stage 01 with a reference folder: first the settings, then every checksum.

    Parameters
    ----------
    run_dir : str or path-like
        The run folder (its ``patches/`` holds the stores and ``extraction.json``).
    reference_dir : str, path-like or None
        A folder written by :func:`write_reference_manifest` (e.g.
        ``data_manifest/default_study``); None or "" means no comparison.

    Returns
    -------
    ReferenceComparison
        Its ``status`` and ``message`` say what was found; never raises on a difference.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` has no finished extraction, or the reference lacks a manifest.
    """
    run_dir = Path(run_dir)
    if not reference_dir or not (Path(reference_dir) / "parameters.json").is_file():
        return ReferenceComparison("no reference", str(reference_dir or ""))
    ref = Path(reference_dir)
    shown = run_relative(ref.resolve(), run_dir.resolve()) if ref.is_absolute() else str(ref)
    ref_params = json.loads((ref / "parameters.json").read_text(encoding="utf-8"))
    summary = patch_store.read_json(run_dir / "patches" / "extraction.json")
    this_params = json.loads(json.dumps(reference_parameters(summary["parameters"], run_dir)))
    differing = sorted(k for k in set(ref_params) | set(this_params)
                       if this_params.get(k) != ref_params.get(k))
    if differing:
        return ReferenceComparison("settings differ", shown, differing=differing)
    mismatches = verify_against_manifest(run_dir / "patches", ref)
    counts = summary["counts"]
    return ReferenceComparison("differs" if mismatches else "identical", shown,
                               mismatches=mismatches,
                               n_patches=int(counts["lesion_patches"]) + int(counts["normal_patches"]))
