"""VinDr-Mammo 1.0.0 (``source_kind`` ``"vindr-mammo"``) as downloaded from PhysioNet::

    root/finding_annotations.csv     one row per finding (or one "No Finding" row per image)
    root/metadata.csv                DICOM facts per image (vendor), optional
    root/images/<study_id>/<image_id>.dicom

``finding_annotations.csv`` columns used: ``study_id``, ``image_id``, ``laterality``,
``view_position``, ``finding_categories`` (a list-like string such as ``"['Mass',
'Suspicious Calcification']"``), ``finding_birads`` and the box ``xmin, ymin, xmax, ymax`` in
image pixels (x = column, y = row). An image whose only category is "No Finding" is a normal
image. Categories map onto the study's classes: Mass → mass; Suspicious Calcification →
calcification; Architectural Distortion → architectural_distortion; Asymmetry, Focal Asymmetry,
Global Asymmetry → asymmetry; anything else (skin thickening, lymph node, retraction, ...) →
other. A finding with several categories takes the first of that order. A finding without a box
has no position (the image then gives no normal patches). VinDr has no pathology (BI-RADS is
kept in ``source_label``). The image id is VinDr's own (already anonymous) ``image_id``.
Manufacturer and model come from the DICOM header, else from ``metadata.csv``. VinDr-Mammo
publishes no patient identifier: each ``study_id`` is one four-view exam of one woman, so the
hash of ``study_id`` (:func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id`) is the
``patient_id`` (a woman with two exams, if any, would count as two; a row without a
``study_id`` leaves its image standing for itself, ``patient_id`` = ``image_id``).
"""

from __future__ import annotations

import ast
import csv
import math
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

FINDINGS_CSV = "finding_annotations.csv"
METADATA_CSV = "metadata.csv"
#: VinDr categories in order of precedence, and the study class each maps onto.
VINDR_CLASSES = (
    ("mass", "mass"),
    ("suspicious calcification", "calcification"),
    ("architectural distortion", "architectural_distortion"),
    ("asymmetry", "asymmetry"),
    ("focal asymmetry", "asymmetry"),
    ("global asymmetry", "asymmetry"),
)
_REQUIRED = ("study_id", "image_id", "finding_categories", "xmin", "ymin", "xmax", "ymax")


def parse_categories(text: str) -> list[str]:
    """``"['Mass', 'Suspicious Calcification']"`` → ``["Mass", "Suspicious Calcification"]``."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = [part.strip(" '\"") for part in text.strip("[]").split(",")]
    if isinstance(value, str):
        value = [value]
    return [str(v).strip() for v in value if str(v).strip()]


def study_class(categories: Sequence[str]) -> str:
    """The study's lesion class of a finding with these VinDr categories."""
    lowered = {c.lower() for c in categories}
    for name, cls in VINDR_CLASSES:
        if name in lowered:
            return cls
    return "other"


def _float(value: str | None) -> float:
    try:
        out = float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return out


def _read_findings(root: Path) -> tuple[Path, dict[tuple[str, str], list[tuple[int, dict]]]]:
    path = root / FINDINGS_CSV
    if not path.is_file():
        raise ValueError(f"{root}: no {FINDINGS_CSV} (the VinDr-Mammo finding annotations) in the "
                         "collection folder; point source_path at the folder that holds it and images/")
    rows: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: lacks the column(s) {missing}; not a VinDr-Mammo {FINDINGS_CSV}")
        for line_no, row in enumerate(reader, start=2):
            key = (row["study_id"].strip(), row["image_id"].strip())
            rows.setdefault(key, []).append((line_no, row))
    return path, rows


def _read_vendors(root: Path) -> dict[str, tuple[str | None, str | None]]:
    """``image_id`` (SOP Instance UID) → (Manufacturer, model) from ``metadata.csv``, if present."""
    path = root / METADATA_CSV
    if not path.is_file():
        return {}
    out = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            uid = (row.get("SOP Instance UID") or row.get("image_id") or "").strip()
            if uid:
                out[uid] = ((row.get("Manufacturer") or "").strip() or None,
                            (row.get("Manufacturer's Model Name") or "").strip() or None)
    return out


def _lesion(image_id: str, index: int, row: dict, categories: list[str]) -> LesionAnnotation:
    x0, y0, x1, y1 = (_float(row.get(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    birads = (row.get("finding_birads") or "").strip()
    label = ", ".join(categories) + (f" ({birads})" if birads else "")
    common = dict(lesion_id=f"{image_id}-F{index + 1}", lesion_class=study_class(categories),
                  pathology=None, source_label=label)
    if any(math.isnan(v) for v in (x0, y0, x1, y1)):
        return LesionAnnotation(center_row=math.nan, center_col=math.nan, **common)
    bbox = (int(math.floor(y0)), int(math.floor(x0)), int(math.ceil(y1)), int(math.ceil(x1)))
    return LesionAnnotation(center_row=(y0 + y1) / 2.0, center_col=(x0 + x1) / 2.0, bbox=bbox,
                            **common)


def _image_lesions(image_id: str, rows: list[tuple[int, dict]]) -> list[LesionAnnotation]:
    lesions = []
    for _line, row in rows:
        categories = parse_categories(row.get("finding_categories", ""))
        if not categories or [c.lower() for c in categories] == ["no finding"]:
            continue
        lesions.append(_lesion(image_id, len(lesions), row, categories))
    return lesions


def read_vindr_mammo(collection: Collection, vendor_filter: str | Sequence[str] | None,
                     show_progress: bool = False) -> Collection:
    """Fill ``collection`` (its ``root`` set) from a VinDr-Mammo folder (see the module docstring)."""
    root = collection.root
    findings, rows_by_image = _read_findings(root)
    vendors = _read_vendors(root)
    for (study_id, image_id), rows in progress(sorted(rows_by_image.items()), show_progress,
                                               "reading VinDr-Mammo images"):
        where = f"{findings}:{rows[0][0]}"
        image_path = root / "images" / study_id / f"{image_id}.dicom"
        if not image_path.is_file() and (image_path.with_suffix(".dcm")).is_file():
            image_path = image_path.with_suffix(".dcm")
        meta = annotated_image_header(collection, image_path, where)
        if meta is None:
            continue
        manufacturer = meta["manufacturer"] or vendors.get(image_id, (None, None))[0]
        model_name = meta["model_name"] or vendors.get(image_id, (None, None))[1]
        if not vendor_matches(vendor_filter, manufacturer, model_name):
            collection.exclude_by_vendor(image_path, manufacturer, model_name)
            continue
        lesions = _image_lesions(image_id, rows)
        n_rows, n_cols = meta["rows"], meta["cols"]
        bad = [les for les in lesions if not math.isnan(les.center_row)
               and not lesion_in_bounds(les, n_rows, n_cols)]
        if bad:
            collection.skipped.append(SkippedFile(where, out_of_bounds_problem(bad[0], n_rows, n_cols),
                                                  STAGE, "annotation"))
            continue
        lesions = [LesionAnnotation(**{**les.__dict__, "bbox": clip_bbox(les.bbox, n_rows, n_cols)})
                   for les in lesions]
        first = rows[0][1]
        fields = dicom_record_fields(meta)
        fields["extra"]["annotation"] = where
        collection.records.append(ImageRecord(
            image_id=image_id, path=image_path,
            patient_id=pseudonymous_patient_id(study_id) if study_id else image_id,
            source_kind="vindr-mammo", lesions=tuple(lesions),
            laterality=(first.get("laterality") or "").strip().upper() or meta["laterality"],
            view=(first.get("view_position") or "").strip().upper() or meta["view"],
            manufacturer=manufacturer, model_name=model_name, **fields))
    return collection
