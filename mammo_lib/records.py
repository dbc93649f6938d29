"""Common record types that every collection reader (OMI-DB-like, CBIS-DDSM, MIAS, phantom)
produces, so that patch extraction never needs to know where an image came from."""

from __future__ import annotations

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
    from the collection's own anonymous reference number.
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


@dataclass
class SkippedFile:
    """A file a stage could not use, and why (written to the run folder's skipped-files report)."""

    path: str
    problem: str
    stage: str = ""
