"""Open a mammography collection: pick the reader for its kind, check the folder, report.

:func:`open_collection` reads *annotations and DICOM headers only* (``stop_before_pixels``):
listing a collection of millions of images never decodes one. Pixels are decoded later, one
image at a time, by :func:`mammo_lib.sources.images.load_image_pixels` (which is what patch extraction
calls on the workers).

Collection kinds (``source_kind``) and the modules that read them (each module's docstring
shows the folder layout it expects):

- ``"phantom"`` / ``"omidb-like"``: the OMI-DB-like layout the built-in phantom writes
  (:mod:`mammo_lib.sources.formats.omidb_like`);
- ``"omidb"``: the real OPTIMAM (OMI-DB) layout, through the ``omidb`` package
  (:mod:`mammo_lib.sources.formats.omidb`);
- ``"cbis-ddsm"``: CBIS-DDSM description CSVs, image and ROI-mask DICOMs
  (:mod:`mammo_lib.sources.formats.cbis_ddsm`);
- ``"vindr-mammo"``: VinDr-Mammo's finding CSV and DICOMs (:mod:`mammo_lib.sources.formats.vindr_mammo`);
- ``"inbreast"``: INbreast's AllDICOMs and AllXML (:mod:`mammo_lib.sources.formats.inbreast`);
- ``"mias"``: the MIAS ``Info.txt`` with ``mdbNNN.pgm`` images (:mod:`mammo_lib.sources.formats.mias`).

Problems with single files (an annotation naming a missing image, a finding outside the
image, an unreadable header) become :class:`~mammo_lib.sources.records.SkippedFile` entries naming the
file and the problem; the rest of the collection goes on. A wrong kind, a missing or empty
folder, or a collection with nothing usable raise ``ValueError``/``FileNotFoundError`` with a
message that says what was expected.

Image ids are pseudonymous: never PatientName/PatientID, but the first 16 hex digits of the
sha256 of the image path relative to the collection root (MIAS: its reference number).
Patient ids (``ImageRecord.patient_id``, the woman an image shows, so that her views stay
together) are pseudonymous too, each reader's rule in its module docstring: the hash
(:func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id`) of the OMI-DB client folder, of the
CBIS-DDSM ``P_NNNNN``, of the INbreast file name's patient part or of the VinDr-Mammo
``study_id``; for MIAS the image's pair of reference numbers (``"mdb001-mdb002"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mammo_lib import run_folder
from mammo_lib.sources.formats.cbis_ddsm import read_cbis_ddsm
from mammo_lib.sources.formats.common import pseudonymous_id
from mammo_lib.sources.formats.inbreast import read_inbreast
from mammo_lib.sources.formats.mias import MIAS_CLASSES, read_mias
from mammo_lib.sources.formats.omidb import read_omidb
from mammo_lib.sources.formats.omidb_like import read_omidb_like
from mammo_lib.sources.formats.vindr_mammo import read_vindr_mammo
from mammo_lib.sources.phantom import generate_phantom
from mammo_lib.sources.records import Collection, vendor_matches

__all__ = ["COLLECTION_KINDS", "MIAS_CLASSES", "Collection", "check_source", "open_collection",
           "pseudonymous_id", "source_folder", "vendor_table"]

#: Collection kinds :func:`open_collection` understands.
COLLECTION_KINDS = ("phantom", "omidb-like", "omidb", "cbis-ddsm", "vindr-mammo", "inbreast", "mias")

_KIND_ALIASES = {"cbis_ddsm": "cbis-ddsm", "cbis": "cbis-ddsm", "omidb_like": "omidb-like",
                 "omi-db": "omidb", "omi_db": "omidb", "optimam": "omidb",
                 "vindr": "vindr-mammo", "vindr_mammo": "vindr-mammo", "vindrmammo": "vindr-mammo",
                 "mini-mias": "mias", "minimias": "mias"}


_READERS = {
    "phantom": read_omidb_like,
    "omidb-like": read_omidb_like,
    "omidb": read_omidb,
    "cbis-ddsm": read_cbis_ddsm,
    "vindr-mammo": read_vindr_mammo,
    "inbreast": read_inbreast,
    "mias": read_mias,
}


def _check_root(kind: str, path: str | os.PathLike) -> tuple[str, Path]:
    kind_norm = str(kind).strip().lower()
    kind_norm = _KIND_ALIASES.get(kind_norm, kind_norm)
    if kind_norm not in COLLECTION_KINDS:
        raise ValueError(f"unknown collection kind {kind!r}; expected one of {', '.join(COLLECTION_KINDS)}")
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"collection folder {root} does not exist (kind {kind_norm!r}); check the path")
    if not root.is_dir():
        raise NotADirectoryError(f"collection path {root} is not a folder (kind {kind_norm!r})")
    if not any(root.iterdir()):
        raise ValueError(f"collection folder {root} is empty (kind {kind_norm!r}); nothing to read")
    return kind_norm, root


def open_collection(
    kind: str,
    path: str | os.PathLike,
    *,
    vendor_filter: str | Sequence[str] | None = None,
    progress: bool = False,
    keep_for_processing: bool = False,
) -> Collection:
    """List the images and annotations of a collection (no pixel decoding).

    Parameters
    ----------
    kind : str
        One of :data:`COLLECTION_KINDS` (a few spellings such as ``"mini-mias"`` are accepted).
    path : str or path-like
        The collection folder, in the layout of its kind (see the module docstring).
    vendor_filter : str, sequence of str or None
        Keep only images whose Manufacturer or ManufacturerModelName contains one of the names
        (case-insensitive, :func:`mammo_lib.sources.records.vendor_matches`); the others are counted in
        ``excluded_by_vendor``. ``None`` keeps every image.
    progress : bool
        Show a plain-text tqdm bar over the annotation files (worth it for large collections).
    keep_for_processing : bool
        Keep FOR PROCESSING (raw) images; by default they are skipped with that reason
        (:func:`mammo_lib.sources.dicom_checks.usability_problem`).

    Returns
    -------
    Collection
        Usable records sorted by path, skipped files with their problems, vendor exclusions.

    Raises
    ------
    ValueError
        When the kind is unknown, the folder is empty, a required index file (description CSV,
        ``Info.txt``) is missing, or nothing usable is found (the message lists the first
        problems).
    FileNotFoundError
        When the folder does not exist.
    NotADirectoryError
        When ``path`` is a file.
    """
    kind, root = _check_root(kind, path)
    reader = _READERS[kind]
    collection = Collection(kind=kind, root=root, keep_for_processing=bool(keep_for_processing))
    reader(collection, vendor_filter, progress)
    collection.records.sort(key=lambda r: (str(r.path), r.image_id))
    if not collection.records:
        problems = [s for s in collection.skipped if s.kind != "vendor filter"]
        why = "; ".join(f"{s.path}: {s.problem}" for s in problems[:5])
        if collection.excluded_by_vendor and not problems:
            why = f"all {collection.excluded_by_vendor} images were excluded by vendor_filter={vendor_filter!r}"
        raise ValueError(
            f"no usable images in {root} (kind {kind!r}); "
            + (why or "no annotation files in the expected layout were found")
            + (f" (and {len(problems) - 5} more skipped files)" if len(problems) > 5 else "")
            + "; see mammo_lib.sources.collection for the layout each kind expects"
        )
    return collection


def vendor_table(collection: Collection, vendor_filter: str | Sequence[str] | None) -> pd.DataFrame:
    """Number of images per vendor / model and whether the vendor filter keeps them.

    Parameters
    ----------
    collection : Collection
        As :func:`open_collection` returns it.
    vendor_filter : str, sequence of str or None
        As for :func:`mammo_lib.sources.records.vendor_matches`.

    Returns
    -------
    pandas.DataFrame
        Columns ``vendor / model`` (str, ``?`` where a tag is missing), ``kept by the vendor
        filter`` (bool) and ``images`` (int), sorted by the first two.
    """
    table = pd.DataFrame({
        "vendor / model": [f"{r.manufacturer or '?'} / {r.model_name or '?'}"
                           for r in collection.records],
        "kept by the vendor filter": [vendor_matches(vendor_filter, r.manufacturer, r.model_name)
                                      for r in collection.records],
    })
    counts = table.value_counts().sort_index().rename("images").reset_index()
    return counts


def source_folder(source_kind: str, source_path: str | os.PathLike, run_dir: str | os.PathLike,
                  *, phantom_images: int, seed: int) -> Path:
    """The collection folder a study reads: ``source_path``, or the built-in phantom.

    Parameters
    ----------
    source_kind : str
        The collection kind; only ``"phantom"`` may come without a ``source_path``.
    source_path : str or path-like
        The user's collection folder; "" generates the phantom into ``<run_dir>/phantom``.
    run_dir : str or path-like
        The run folder.
    phantom_images : int
        Images of the generated phantom.
    seed : int
        Seed of the phantom generator.

    Returns
    -------
    pathlib.Path
        Absolute path of the folder to pass to :func:`open_collection`.

    Raises
    ------
    ValueError
        When ``source_path`` is empty and ``source_kind`` is not ``"phantom"``.
    """
    if source_path:
        return Path(source_path).expanduser().resolve()
    if str(source_kind).strip().lower() != "phantom":
        raise ValueError(f"source_kind={source_kind!r} needs a source_path; only the phantom is built in")

    return generate_phantom(run_folder.stage_dir(run_dir, "phantom"), n_images=int(phantom_images),
                            seed=int(seed)).resolve()


def check_source(source_kind: str, source_path: str, phantom_images: int, run_dir: Path) -> list[str]:
    """What is wrong with stage 01's data source, found without reading the collection.

    The checks :func:`source_folder` and :func:`open_collection` make first, done before a study
    starts so that a typo does not surface only when stage 01 runs: the kind is one of
    :data:`COLLECTION_KINDS` (or an accepted spelling of one, such as ``"mini-mias"``); a
    ``source_path`` names an existing, non-empty folder; without one the kind is ``"phantom"``
    (the only collection that is built in) and the phantom gets at least one image.

    Parameters
    ----------
    source_kind : str
        The collection kind (notebook 01's ``source_kind``).
    source_path : str
        The collection folder, "" to generate the phantom. A relative path is taken relative to
        ``run_dir``, where the notebooks run; ``~`` is expanded, as :func:`source_folder` does.
    phantom_images : int
        Images of the generated phantom (only checked when ``source_path`` is empty).
    run_dir : pathlib.Path
        The run folder.

    Returns
    -------
    list of str
        One sentence per problem, naming the parameter and its value; empty when the source
        looks usable. Only the folder itself is looked at (whether it exists, is a folder and
        holds anything), never the files in it.
    """
    problems = []
    name = str(source_kind).strip().lower()
    kind = _KIND_ALIASES.get(name, name)
    known = kind in COLLECTION_KINDS
    if not known:
        problems.append(f"source_kind={source_kind!r} is not a collection kind; expected one of "
                        f"{', '.join(COLLECTION_KINDS)} (see mammo_lib.sources.collection)")
    if source_path:
        given = Path(source_path).expanduser()
        folder = given if given.is_absolute() else Path(run_dir) / given
        where = "" if given.is_absolute() else f" (a relative source_path is taken relative to the run folder {run_dir})"
        try:
            if not folder.exists():
                problems.append(f"source_path={str(source_path)!r}: folder {folder} does not exist{where}")
            elif not folder.is_dir():
                problems.append(f"source_path={str(source_path)!r}: {folder} is a file, not a folder{where}")
            elif not any(folder.iterdir()):
                problems.append(f"source_path={str(source_path)!r}: folder {folder} is empty; nothing to read")
        except OSError as exc:
            problems.append(f"source_path={str(source_path)!r}: folder {folder} cannot be read ({exc})")
        return problems
    if name != "phantom":  # source_folder's rule: only the phantom is built in
        if known:
            problems.append(f"source_kind={source_kind!r} needs a source_path (the collection's folder); "
                            "only the phantom is built in (source_kind='phantom' with source_path empty)")
    elif isinstance(phantom_images, bool) or not isinstance(phantom_images, int | float) or phantom_images < 1:
        problems.append(f"phantom_images={phantom_images!r}: the phantom is generated (source_path is empty), "
                        "so it needs at least 1 image")
    return problems
