"""Common record types that every collection reader (OMI-DB-like, CBIS-DDSM, MIAS, phantom)
produces, so that patch extraction never needs to know where an image came from, and the one
vendor filter every stage applies to them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Lesion classes used across the study (source labels are mapped onto these).
LESION_CLASSES = ("mass", "calcification", "architectural_distortion", "asymmetry", "other")


@dataclass(frozen=True)
class LesionAnnotation:
    """One annotated finding on one image, in pixel coordinates of that image.

    ``center_row``/``center_col`` are 0-based array indices (row down, column right).
    ``bbox`` is ``(row0, col0, row1, col1)`` with the end exclusive, when known.
    ``outline`` is a sequence of ``(row, col)`` points, when known.
    """

    lesion_id: str
    lesion_class: str
    center_row: float
    center_col: float
    bbox: tuple[int, int, int, int] | None = None
    radius: float | None = None
    outline: tuple[tuple[float, float], ...] | None = None
    pathology: str | None = None  # "benign", "malignant" or None when unknown
    source_label: str | None = None  # the collection's own label, e.g. MIAS "CIRC"

    def extent(self) -> tuple[float, float]:
        """Height and width of the finding in pixels (bbox, else 2*radius, else 0)."""
        if self.bbox is not None:
            r0, c0, r1, c1 = self.bbox
            return float(r1 - r0), float(c1 - c0)
        if self.radius is not None:
            return 2.0 * self.radius, 2.0 * self.radius
        return 0.0, 0.0


@dataclass(frozen=True)
class ImageRecord:
    """One mammogram and its annotations.

    ``image_id`` is pseudonymous (never a patient name or ID): readers derive it from a hash or
    from the collection's own anonymous reference number. ``patient_id`` names the woman the
    image shows, pseudonymously too (a hash of the collection's own patient identifier,
    :func:`mammo_lib.sources.formats.common.pseudonymous_patient_id`, or the image id where the
    collection says nothing about patients), so that the views of one woman can be kept
    together (e.g. in one cross-validation fold); ``None`` means unknown: the image stands for
    itself.
    """

    image_id: str
    path: Path
    source_kind: str  # "phantom", "omidb", "cbis-ddsm", "mias"
    lesions: tuple[LesionAnnotation, ...] = ()
    laterality: str | None = None  # "L" / "R"
    view: str | None = None  # "CC", "MLO", ...
    manufacturer: str | None = None
    model_name: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    #: DICOM facts for filters and reports (None for non-DICOM sources)
    photometric: str | None = None
    presentation_intent: str | None = None  # "FOR PRESENTATION" / "FOR PROCESSING"
    sop_class: str | None = None  # SOP class name, e.g. "Digital Mammography X-Ray Image ..."
    n_frames: int = 1
    #: pseudonymous id of the woman (views of one woman share it); None: unknown
    patient_id: str | None = None


@dataclass
class SkippedFile:
    """A file a stage could not use, and why (written to the run folder's skipped-files report).

    ``kind`` names the kind of problem in a few words (e.g. ``"multi-frame"``, ``"not DICOM"``,
    ``"vendor filter"``, ``"annotation"``), so a report can be grouped by it.
    """

    path: str
    problem: str
    stage: str = ""
    kind: str = ""


@dataclass
class Collection:
    """What a collection reader found: usable records, skipped files, vendor exclusions."""

    kind: str
    root: Path
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    excluded_by_vendor: int = 0
    keep_for_processing: bool = False  # keep FOR PROCESSING (raw) images
    #: files read with a warning (e.g. "not a Part-10 file"), one message each
    notes: list[str] = field(default_factory=list)

    def exclude_by_vendor(self, path: str | Path, manufacturer: str | None,
                          model_name: str | None, stage: str = "datasets") -> None:
        """Count an image left out by the vendor filter and list it, with its vendor."""
        self.excluded_by_vendor += 1
        self.skipped.append(SkippedFile(
            str(path), f"left out by vendor_filter: Manufacturer {manufacturer or '(none)'!r}, "
            f"model {model_name or '(none)'!r}", stage, "vendor filter"))

    def n_lesions(self) -> int:
        """Number of annotated lesions over all records."""
        return sum(len(r.lesions) for r in self.records)

    def lesion_counts(self) -> dict[str, int]:
        """Number of lesions per class, sorted by class name."""
        counts: dict[str, int] = {}
        for record in self.records:
            for lesion in record.lesions:
                counts[lesion.lesion_class] = counts.get(lesion.lesion_class, 0) + 1
        return dict(sorted(counts.items()))


def vendor_needles(vendor_filter: str | Sequence[str] | None) -> list[str]:
    """The filter as lower-case, stripped, non-empty names (one name or a list of names)."""
    if vendor_filter is None:
        return []
    names = [vendor_filter] if isinstance(vendor_filter, str) else list(vendor_filter)
    return [str(v).strip().lower() for v in names if str(v).strip()]


def vendor_matches(vendor_filter: str | Sequence[str] | None, manufacturer: str | None,
                   model_name: str | None) -> bool:
    """Whether an image passes the vendor filter.

    Parameters
    ----------
    vendor_filter : str, sequence of str or None
        One name or several (e.g. ``["Selenia Dimensions"]``); an image passes when any name
        occurs, case-insensitively, in its Manufacturer or ManufacturerModelName. ``None``, an
        empty string or an empty list lets every image pass.
    manufacturer, model_name : str or None
        The image's DICOM Manufacturer (0008,0070) and ManufacturerModelName (0008,1090).

    Returns
    -------
    bool
        True when the image is kept. An image with neither tag never passes a non-empty filter.
    """
    needles = vendor_needles(vendor_filter)
    if not needles:
        return True
    texts = [(text or "").lower() for text in (manufacturer, model_name)]
    return any(needle in text for needle in needles for text in texts)
