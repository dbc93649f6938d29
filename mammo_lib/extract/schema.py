"""The JSON files stage 01 writes, described once: ``extraction.json`` (:class:`ExtractionSummary`),
``timings.json`` (:class:`ExtractionTimings`) and the reference ``parameters.json``
(:class:`ReferenceParameters`), and the rule for paths in them: relative to the run folder
(:func:`mammo_lib.run_folder.run_relative`), so that no machine path is written and a rerun into another run
folder writes the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypedDict

from mammo_lib.run_folder import run_relative


def report_path(path: str, run_dir: Path, source_root: Path | None) -> str:
    """A file's path as stage 01 reports it (``skipped_files.csv``, notes): inside the collection
    folder ``source_root`` relative to it, else relative to the run folder
    (:func:`mammo_lib.run_folder.run_relative`); a ``:line`` suffix is kept."""
    if source_root is not None and os.path.isabs(path):
        root = str(source_root.resolve())
        resolved = str(Path(path.split(":", 1)[0]).resolve())
        if resolved == root or resolved.startswith(root + os.sep):
            return Path(os.path.relpath(path, root)).as_posix()
    return run_relative(path, run_dir)


def relative_notes(messages: list[str], run_dir: Path, source_root: Path | None) -> list[str]:
    """Warnings of the form ``"<path>: message"`` with the path as :func:`report_path` gives it,
    each once, in first-seen order."""
    out: list[str] = []
    for message in messages:
        path = message.split(": ", 1)[0]
        text = message.replace(path, report_path(path, run_dir, source_root), 1)
        if text not in out:
            out.append(text)
    return out


class SourceInfo(TypedDict):
    """Where the images came from."""

    kind: str  #: ``source_kind`` of the collection (``"phantom"``, ``"mias"``, ...)
    root: str  #: collection folder, relative to the run folder (POSIX); "" for a record list


class ExtractionParameters(TypedDict):
    """``extraction.json["parameters"]``: every field of ``extract.rules.ExtractionParams`` plus
    the execution settings and the source."""

    patch_size: int  #: pixels
    n_normal_per_image: int
    normalisation: str  #: one of ``extract.rules.NORMALISATIONS``
    large_lesion: str  #: ``"resize"`` or ``"crop"``
    lesion_context: float  #: large-lesion crop side = extent x this
    exclusion_margin: int  #: pixels around each lesion box that normal windows avoid
    min_breast_fraction: float  #: 0..1, for normal windows
    min_lesion_breast_fraction: float  #: 0..1, below it a lesion annotation is in the air
    normal_overlap: bool
    equalize_bins: int
    seed: int
    vendor_filter: list[str]  #: empty: every image kept
    n_workers: int  #: 0: in this process
    scheduler_address: str  #: "" for a local cluster
    images_per_task: int
    source: SourceInfo


class ExtractionCounts(TypedDict):
    """``extraction.json["counts"]`` (numbers of images, rows and patches)."""

    images: int  #: images given to the extraction (after the vendor filter)
    images_used: int  #: images that gave patches or were read without error
    images_skipped: int
    excluded_by_vendor: int
    skipped_rows: int  #: rows of ``skipped_files.csv``
    lesion_patches: int
    normal_patches: int
    normal_slots_unfilled: int  #: n_normal_per_image x images_used - normal_patches
    by_class: dict[str, int]  #: lesion patches per class, plus ``"normal"``


class ExtractionSummary(TypedDict):
    """The whole of ``extraction.json``."""

    stage: str  #: ``"01_extract_patches"``
    parameters: ExtractionParameters
    counts: ExtractionCounts


class ExtractionTimings(TypedDict):
    """``timings.json``: wall-clock seconds of one run (differs between identical runs)."""

    plan_s: float
    cluster_start_s: float
    extract_wall_s: float
    cluster_stop_s: float
    compaction_s: float
    total_s: float
    worker_decode_s: float  #: summed over workers
    worker_extract_s: float
    worker_write_s: float


class ReferenceParameters(TypedDict, total=False):
    """``data_manifest/<study>/parameters.json``: the settings that decide a run's patches.

    Every field of :class:`ExtractionParams` except the execution ones (workers, batching),
    plus ``vendor_filter``, ``source_kind``, ``source`` (``"built-in phantom"`` or the source
    folder as recorded, relative to the run folder) and, for the phantom, ``phantom`` (the
    generator's version and settings from ``PHANTOM.json``).
    """

    patch_size: int
    n_normal_per_image: int
    normalisation: str
    large_lesion: str
    lesion_context: float
    exclusion_margin: int
    min_breast_fraction: float
    min_lesion_breast_fraction: float
    normal_overlap: bool
    equalize_bins: int
    seed: int
    vendor_filter: list[str]
    source_kind: str
    source: str
    phantom: dict[str, Any]
