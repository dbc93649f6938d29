"""What several collection readers share: header checks, pseudonymous image and patient ids,
bounds checks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from mammo_lib.progress import progress_bar
from mammo_lib.sources.dicom_checks import DicomNotes
from mammo_lib.sources.dicom_io import DicomReadError, read_dicom_header, usability_problem
from mammo_lib.sources.records import Collection, LesionAnnotation, SkippedFile

#: The ``stage`` of skipped-file rows written while reading a collection.
STAGE = "datasets"


def annotated_image_header(collection: Collection, image_path: Path, where: str) -> dict | None:
    """Header of the image an annotation points at, or None with a skipped-file row saying why
    (missing image: the annotation's place is named; unreadable DICOM: the image is)."""
    if not image_path.is_file():
        collection.skipped.append(SkippedFile(
            where, f"annotation points at a missing image {image_path}", STAGE, "missing image"))
        return None
    try:
        with DicomNotes() as notes:
            _, meta = read_dicom_header(image_path)
        collection.notes.extend(notes.messages)
    except DicomReadError as exc:
        collection.skipped.append(SkippedFile(str(image_path), str(exc), STAGE, exc.kind))
        return None
    problem = usability_problem(meta, collection.keep_for_processing)
    if problem is not None:
        collection.skipped.append(SkippedFile(str(image_path), f"{image_path}: {problem[1]}",
                                              STAGE, problem[0]))
        return None
    return meta


def dicom_record_fields(meta: dict) -> dict:
    """The :class:`ImageRecord` fields and ``extra`` entries every DICOM reader fills from a
    header (:func:`mammo_lib.sources.dicom_io.read_dicom_header`)."""
    return {
        "photometric": meta.get("photometric"),
        "presentation_intent": meta.get("presentation_intent"),
        "sop_class": meta.get("sop_class"),
        "n_frames": int(meta.get("n_frames") or 1),
        "extra": {key: meta.get(key) for key in (
            "rows", "cols", "photometric", "bits_stored", "pixel_spacing", "transfer_syntax",
            "modality", "sop_class", "presentation_intent", "n_frames")},
    }


def pseudonymous_id(root: Path, path: Path) -> str:
    """First 16 hex digits of sha256 of ``path`` relative to ``root`` (POSIX form)."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        rel = Path(path).as_posix()
    return hashlib.sha256(rel.encode("utf-8")).hexdigest()[:16]


def pseudonymous_patient_id(patient: str) -> str:
    """The pseudonymous ``patient_id`` of a collection's own patient identifier.

    Parameters
    ----------
    patient : str
        What the collection calls the woman (an OMI-DB client folder such as ``demd0001``, a
        CBIS-DDSM ``P_00001``, an INbreast patient hash, a VinDr-Mammo ``study_id``); never
        written anywhere itself.

    Returns
    -------
    str
        First 16 hex digits of the sha256 of ``"patient:" + patient`` (stripped): the same
        identifier always gives the same id, and the prefix keeps it apart from any image id.

    Raises
    ------
    ValueError
        When ``patient`` is empty.
    """
    text = str(patient).strip()
    if not text:
        raise ValueError("an empty patient identifier has no pseudonym")
    return hashlib.sha256(f"patient:{text}".encode()).hexdigest()[:16]


def lesion_in_bounds(lesion: LesionAnnotation, rows: int | None, cols: int | None) -> bool:
    """Whether the lesion centre lies inside a ``rows`` x ``cols`` image (True when unknown)."""
    if rows is None or cols is None:
        return True
    return 0 <= lesion.center_row < rows and 0 <= lesion.center_col < cols


def out_of_bounds_problem(lesion: LesionAnnotation, rows: int, cols: int) -> str:
    """The skipped-file message for a lesion centre outside its image."""
    return (
        f"annotation {lesion.lesion_id} centre (row {lesion.center_row:.1f}, col "
        f"{lesion.center_col:.1f}) lies outside the {rows}x{cols} image; fix or remove the annotation"
    )


def clip_bbox(bbox: tuple[int, int, int, int] | None, rows: int | None,
              cols: int | None) -> tuple[int, int, int, int] | None:
    """``bbox`` (row0, col0, row1, col1) clipped to the image (unchanged when the size is unknown)."""
    if bbox is None or rows is None or cols is None:
        return bbox
    r0, c0, r1, c1 = bbox
    return (max(0, r0), max(0, c0), min(rows, r1), min(cols, c1))


def progress(items: Iterable, enabled: bool, desc: str) -> Iterable:
    """``items``, wrapped in :func:`mammo_lib.progress.progress_bar` when ``enabled`` (live on a
    terminal, plain and time-free in a notebook)."""
    if not enabled:
        return items

    return progress_bar(items, desc=desc, unit="file")
