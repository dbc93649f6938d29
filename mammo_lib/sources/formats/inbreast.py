"""INbreast (``source_kind`` ``"inbreast"``) as distributed::

    root/AllDICOMs/<file name>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm
    root/AllXML/<file name>.xml        Apple plist of ROIs, only for images with findings
    root/INbreast.csv (or .xls)        the case table, ';'-separated: ..., Laterality, View,
                                       File Name, ACR, Bi-Rads

Every DICOM in ``AllDICOMs`` is an image; its ``<file name>`` (the number before the first
underscore) links it to ``AllXML/<file name>.xml``. The XML's ``Images[0].ROIs`` list the
findings: ``Name``, ``Center`` (``"(x, y)"``, pixels, x = column) and ``Point_px`` (the
outline). An image without an XML file is normal when the case table lists it (or when there is
no case table). Names map onto the study's classes: Mass, Spiculated Region → mass; Cluster,
Calcification → calcification; Asymmetry → asymmetry; Distortion, Architectural Distortion →
architectural_distortion; others → other. Single-point calcifications inside a Cluster ROI are
part of that cluster (not lesions of their own); isolated ones stay calcifications. The lesion
extent is the outline's bounding box. Pathology is not in INbreast's XML (BI-RADS is kept in
the record). The image id is the file name number (already anonymous). The second part of the
file name (``6c613a14b80a8591`` in ``20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm``) is INbreast's
anonymised patient id, shared by all views of one woman (the case table's ``Patient ID`` column
reads "removed"); its hash (:func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id`) is the
``patient_id``. A file name without that part carries no patient information: the image stands
for itself (``patient_id`` = ``image_id``).
"""

from __future__ import annotations

import csv
import plistlib
import re
from collections.abc import Sequence
from pathlib import Path

from mammo_lib.sources.formats.common import (
    STAGE,
    annotated_image_header,
    clip_bbox,
    dicom_record_fields,
    lesion_in_bounds,
    out_of_bounds_problem,
    progress,
    pseudonymous_patient_id,
)
from mammo_lib.sources.records import (
    Collection,
    ImageRecord,
    LesionAnnotation,
    SkippedFile,
    vendor_matches,
)

INBREAST_CLASSES = {
    "mass": "mass",
    "spiculated region": "mass",
    "cluster": "calcification",
    "calcification": "calcification",
    "calcifications": "calcification",
    "asymmetry": "asymmetry",
    "distortion": "architectural_distortion",
    "architectural distortion": "architectural_distortion",
}
_POINT = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def parse_point(text: str) -> tuple[float, float]:
    """``"(1234.5, 678)"`` or ``"{1234.5, 678}"`` → ``(x, y)``."""
    numbers = _POINT.findall(str(text))
    if len(numbers) < 2:
        raise ValueError(f"not a point: {text!r}")
    return float(numbers[0]), float(numbers[1])


def _case_table(root: Path) -> dict[str, dict[str, str]]:
    """``File Name`` → row of the case CSV (empty when there is none)."""
    candidates = sorted(root.glob("INbreast*.csv")) + sorted(root.glob("*.csv"))
    if not candidates:
        return {}
    text = candidates[0].read_text(encoding="utf-8-sig", errors="replace")
    delimiter = ";" if text.count(";") > text.count(",") else ","
    out = {}
    for row in csv.DictReader(text.splitlines(), delimiter=delimiter):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        name = row.get("File Name", "")
        if name:
            out[name.split(".")[0]] = row
    return out


def _rois(xml_path: Path) -> list[dict]:
    with xml_path.open("rb") as fh:
        data = plistlib.load(fh)
    images = data.get("Images") or []
    return list(images[0].get("ROIs") or []) if images else []


def _roi_box(roi: dict) -> tuple[float, float, tuple[int, int, int, int] | None, tuple]:
    """Centre (row, col), bbox and outline of one ROI."""
    cx, cy = parse_point(roi["Center"])
    points = [parse_point(p) for p in roi.get("Point_px") or []]
    if len(points) < 3:
        return cy, cx, None, ()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    bbox = (int(min(ys)), int(min(xs)), int(max(ys)) + 1, int(max(xs)) + 1)
    return cy, cx, bbox, tuple((y, x) for x, y in points)


def _inside(box: tuple[int, int, int, int], row: float, col: float) -> bool:
    return box[0] <= row < box[2] and box[1] <= col < box[3]


def inbreast_lesions(image_id: str, rois: list[dict]) -> list[LesionAnnotation]:
    """The lesions of one image from its ROIs (see the module docstring for the rules)."""
    parsed = []
    for roi in rois:
        name = str(roi.get("Name", "")).strip()
        cr, cc, bbox, outline = _roi_box(roi)
        parsed.append((name, INBREAST_CLASSES.get(name.lower(), "other"), cr, cc, bbox, outline))
    clusters = [p[4] for p in parsed if p[0].lower() == "cluster" and p[4] is not None]
    lesions = []
    for name, cls, cr, cc, bbox, outline in parsed:
        if cls == "calcification" and bbox is None and any(_inside(b, cr, cc) for b in clusters):
            continue  # a point calcification of a cluster outlined on its own
        lesions.append(LesionAnnotation(
            lesion_id=f"{image_id}-R{len(lesions) + 1}", lesion_class=cls, center_row=cr,
            center_col=cc, bbox=bbox, radius=None if bbox else 2.0, outline=outline or None,
            pathology=None, source_label=name or None))
    return lesions


def _file_number(path: Path) -> str:
    return path.name.split("_")[0].split(".")[0]


def inbreast_patient_id(path: Path) -> str:
    """The pseudonymous ``patient_id`` of an INbreast DICOM, from its file name.

    Parameters
    ----------
    path : pathlib.Path
        ``<file name>_<patient>_MG_<L|R>_<CC|ML>_ANON.dcm``.

    Returns
    -------
    str
        :func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id` of ``<patient>``; the image's
        own id (the file name number) when the name has no patient part.
    """
    parts = path.stem.split("_")
    if len(parts) >= 3 and parts[1].strip():
        return pseudonymous_patient_id(parts[1])
    return _file_number(path)


def read_inbreast(collection: Collection, vendor_filter: str | Sequence[str] | None,
                  show_progress: bool = False) -> Collection:
    """Fill ``collection`` (its ``root`` set) from an INbreast folder (see the module docstring)."""
    root = collection.root
    dicom_dir, xml_dir = root / "AllDICOMs", root / "AllXML"
    if not dicom_dir.is_dir():
        raise ValueError(f"{root}: no AllDICOMs folder (INbreast's images); point source_path at "
                         "the folder that holds AllDICOMs/ and AllXML/")
    cases = _case_table(root)
    for image_path in progress(sorted(dicom_dir.glob("*.dcm")), show_progress,
                               "reading INbreast images"):
        number = _file_number(image_path)
        xml_path = xml_dir / f"{number}.xml"
        if not xml_path.is_file() and cases and number not in cases:
            collection.skipped.append(SkippedFile(
                str(image_path), f"image {number} is neither in AllXML nor in the case table: its "
                "findings are unknown", STAGE, "annotation"))
            continue
        meta = annotated_image_header(collection, image_path, str(image_path))
        if meta is None:
            continue
        if not vendor_matches(vendor_filter, meta["manufacturer"], meta["model_name"]):
            collection.exclude_by_vendor(image_path, meta["manufacturer"], meta["model_name"])
            continue
        try:
            lesions = inbreast_lesions(number, _rois(xml_path)) if xml_path.is_file() else []
        except (OSError, ValueError, KeyError, IndexError, TypeError,
                plistlib.InvalidFileException) as exc:
            collection.skipped.append(SkippedFile(str(xml_path), f"unreadable INbreast XML ({exc})",
                                                  STAGE, "annotation"))
            continue
        n_rows, n_cols = meta["rows"], meta["cols"]
        bad = [les for les in lesions if not lesion_in_bounds(les, n_rows, n_cols)]
        if bad:
            collection.skipped.append(SkippedFile(str(xml_path), out_of_bounds_problem(bad[0], n_rows, n_cols),
                                                  STAGE, "annotation"))
            continue
        lesions = [LesionAnnotation(**{**les.__dict__, "bbox": clip_bbox(les.bbox, n_rows, n_cols)})
                   for les in lesions]
        case = cases.get(number, {})
        fields = dicom_record_fields(meta)
        fields["extra"].update(annotation=str(xml_path) if xml_path.is_file() else "",
                               birads=case.get("Bi-Rads", ""), acr=case.get("ACR", ""))
        view = (case.get("View") or meta["view"] or "").upper() or None
        collection.records.append(ImageRecord(
            image_id=number, patient_id=inbreast_patient_id(image_path), path=image_path,
            source_kind="inbreast", lesions=tuple(lesions),
            laterality=(case.get("Laterality") or meta["laterality"] or "").upper() or None,
            view="MLO" if view == "ML" else view,
            manufacturer=meta["manufacturer"], model_name=meta["model_name"], **fields))
    return collection
