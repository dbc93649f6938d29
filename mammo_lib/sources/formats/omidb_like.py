"""The OMI-DB-like layout the built-in phantom writes (``source_kind`` ``"omidb-like"`` / ``"phantom"``)::

    root/<client_id>/<study_uid>/<sop_uid>.dcm
    root/<client_id>/<study_uid>/<sop_uid>.json   {"image": {...}, "marks": [...]}

Every annotation JSON (``*/*/*.json``) names its image (``image.file``, default the DICOM of the
same stem); marks carry ``lesion_id``, ``class``, ``center_row``/``center_col``, ``bbox``,
``radius``, ``outline``, ``pathology``. Laterality, view, manufacturer and size come from the
DICOM header. A DICOM with no JSON beside it is a skipped file (its findings, if any, are
unknown, so it cannot serve as a normal either).

Ids are pseudonymous: ``image_id`` is the hash of the DICOM's path inside ``root``
(:func:`~mammo_lib.sources.formats.common.pseudonymous_id`); ``patient_id`` the hash of the client
folder's name (:func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id`), as every view and
study of one client (one woman) lies in her folder: the phantom's CC and MLO views of a breast
show the same lesion.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mammo_lib.sources.formats.common import (
    STAGE,
    annotated_image_header,
    clip_bbox,
    dicom_record_fields,
    lesion_in_bounds,
    out_of_bounds_problem,
    progress,
    pseudonymous_id,
    pseudonymous_patient_id,
)
from mammo_lib.sources.records import (
    Collection,
    ImageRecord,
    LesionAnnotation,
    SkippedFile,
    vendor_matches,
)


def _lesion_from_mark(mark: dict[str, Any], index: int, image_id: str) -> LesionAnnotation:
    cls = str(mark.get("class", mark.get("lesion_class", "other"))).strip().lower()
    cls = {"calc": "calcification", "calcifications": "calcification", "masses": "mass"}.get(cls, cls)
    bbox = mark.get("bbox")
    outline = mark.get("outline")
    if "center_row" in mark and "center_col" in mark:
        cr, cc = float(mark["center_row"]), float(mark["center_col"])
    elif bbox is not None:
        cr, cc = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
    else:
        raise ValueError(f"mark {index} has neither center_row/center_col nor bbox")
    return LesionAnnotation(
        lesion_id=str(mark.get("lesion_id") or f"{image_id}-L{index + 1}"),
        lesion_class=cls if cls in ("mass", "calcification", "architectural_distortion", "asymmetry") else "other",
        center_row=cr,
        center_col=cc,
        bbox=tuple(int(v) for v in bbox) if bbox is not None else None,
        radius=float(mark["radius"]) if mark.get("radius") is not None else None,
        outline=tuple((float(p[0]), float(p[1])) for p in outline) if outline else None,
        pathology=(str(mark["pathology"]).lower() if mark.get("pathology") else None),
        source_label=str(mark.get("subtype") or mark.get("class") or "") or None,
    )



def read_omidb_like(collection: Collection, vendor_filter: str | Sequence[str] | None,
                    show_progress: bool = False) -> Collection:
    """Fill ``collection`` (its ``kind`` and ``root`` set) from an OMI-DB-like folder (see the
    module docstring)."""
    kind, root = collection.kind, collection.root
    json_files = sorted(root.glob("*/*/*.json"))
    dicoms_with_json: set[Path] = set()
    for json_path in progress(json_files, show_progress, f"reading {kind} annotations"):
        dicoms_with_json.add(json_path.with_suffix(".dcm").resolve())  # reported once, via its JSON
        try:
            annotation = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            collection.skipped.append(SkippedFile(str(json_path), f"unreadable annotation JSON ({exc})", STAGE))
            continue
        if not isinstance(annotation, dict) or "marks" not in annotation:
            collection.skipped.append(
                SkippedFile(str(json_path), "annotation JSON has no 'marks' list (expected {'image': {...}, 'marks': [...]})", STAGE)
            )
            continue
        image_info = annotation.get("image") or {}
        image_path = json_path.parent / str(image_info.get("file") or json_path.with_suffix(".dcm").name)
        dicoms_with_json.add(image_path.resolve())
        meta = annotated_image_header(collection, image_path, str(json_path))
        if meta is None:
            continue
        image_id = pseudonymous_id(root, image_path)
        client = json_path.relative_to(root).parts[0]  # root/<client>/<study>/<sop>.json
        manufacturer = meta["manufacturer"] or image_info.get("manufacturer")
        model_name = meta["model_name"] or image_info.get("model_name")
        if not vendor_matches(vendor_filter, manufacturer, model_name):
            collection.exclude_by_vendor(image_path, manufacturer, model_name)
            continue
        try:
            lesions = tuple(
                _lesion_from_mark(m, i, image_id) for i, m in enumerate(annotation.get("marks") or [])
            )
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            collection.skipped.append(SkippedFile(str(json_path), f"malformed mark: {exc}", STAGE,
                                                  "annotation"))
            continue
        rows, cols = meta["rows"], meta["cols"]
        bad = [les for les in lesions if not lesion_in_bounds(les, rows, cols)]
        if bad:
            collection.skipped.append(SkippedFile(str(json_path), out_of_bounds_problem(bad[0], rows, cols),
                                                  STAGE, "annotation"))
            continue
        lesions = tuple(
            LesionAnnotation(**{**les.__dict__, "bbox": clip_bbox(les.bbox, rows, cols)}) for les in lesions
        )
        fields = dicom_record_fields(meta)
        fields["extra"]["annotation"] = str(json_path)
        collection.records.append(ImageRecord(
            image_id=image_id,
            patient_id=pseudonymous_patient_id(client),
            path=image_path,
            source_kind=kind,
            lesions=lesions,
            laterality=meta["laterality"] or image_info.get("laterality"),
            view=meta["view"] or image_info.get("view"),
            manufacturer=manufacturer,
            model_name=model_name,
            **fields,
        ))
    for dcm in sorted(root.glob("*/*/*.dcm")):
        if dcm.resolve() not in dicoms_with_json:
            collection.skipped.append(
                SkippedFile(str(dcm), "DICOM image has no annotation JSON beside it (findings unknown)", STAGE)
            )
    return collection

