"""The real OPTIMAM Mammography Image Database (``source_kind`` ``"omidb"``), read through the
``omidb`` package, the OPTIMAM team's own parser (``omidb.DB``)::

    root/data/<client>/nbss_<client>.json          NBSS episodes, events, lesions
    root/data/<client>/imagedb_<client>.json       studies -> series -> images -> marks
    root/data/<client>/<study_uid>/<sop_uid>.json  DICOM header as JSON (optional here)
    root/images/<client>/<study_uid>/<sop_uid>.dcm the mammograms

(``root`` itself may hold the client folders when JSON and DICOM share one tree.) Client folders
are named ``demd*`` or ``optm*``. Each mark's bounding box (``X1, Y1, X2, Y2``, pixels, x =
column) is the lesion's extent; its flags map onto the study's classes: Mass → mass;
SuspiciousCalcifications (or calcification without a mass) → calcification;
ArchitecturalDistortion → architectural_distortion; FocalAsymmetry → asymmetry; others → other.
An image without marks is used as normal tissue only when its client's status is Normal (in a
client with findings, a view without marks may still show them); otherwise it is listed in the
skipped files. A client the package cannot parse is listed too. Ids are pseudonymous:
``image_id`` is the hash of the DICOM path, ``patient_id`` the hash of the client id
(:func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id`; an OMI-DB client is one woman, with
all her episodes and studies). Laterality, view and vendor come from the DICOM header.
"""

from __future__ import annotations

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


def mark_class(mark: Any) -> str:
    """The study's lesion class of an ``omidb.mark.Mark``."""
    if mark.mass:
        return "mass"
    if mark.suspicious_calcifications or mark.calcifications:
        return "calcification"
    if mark.architectural_distortion:
        return "architectural_distortion"
    if mark.focal_asymmetry:
        return "asymmetry"
    return "other"


def mark_lesion(image_id: str, mark: Any) -> LesionAnnotation:
    """An ``omidb.mark.Mark`` as a lesion (its bounding box is the extent)."""
    box = mark.boundingBox
    r0, r1 = sorted((int(box.y1), int(box.y2)))
    c0, c1 = sorted((int(box.x1), int(box.x2)))
    flags = [name for name in ("mass", "suspicious_calcifications", "calcifications",
                               "architectural_distortion", "focal_asymmetry") if getattr(mark, name)]
    conspicuity = mark.conspicuity.value if mark.conspicuity is not None else ""
    return LesionAnnotation(
        lesion_id=f"{image_id}-M{mark.id}", lesion_class=mark_class(mark),
        center_row=(r0 + r1) / 2.0, center_col=(c0 + c1) / 2.0, bbox=(r0, c0, r1 + 1, c1 + 1),
        pathology=None, source_label=" ".join(flags + ([conspicuity] if conspicuity else [])) or None)


def _folders(root: Path) -> tuple[Path, Path]:
    data = root / "data" if (root / "data").is_dir() else root
    images = root / "images" if (root / "images").is_dir() else data
    return data, images


def _open_db(root: Path):
    try:
        import omidb
    except ImportError as exc:  # pragma: no cover - a project dependency
        raise ValueError("reading the real OMI-DB layout needs the omidb package: "
                         "pip install omidb") from exc
    data_dir, image_dir = _folders(root)
    db = omidb.DB(data_dir, image_dir=image_dir)
    if not db.clients:
        raise ValueError(f"{data_dir}: no OMI-DB client folders (demd*/optm*); point source_path at "
                         "the folder that holds data/ and images/ (or the client folders)")
    return db, data_dir, image_dir


def _images(client: Any):
    """(study id, image) of every image of a parsed client, each once."""
    seen = set()
    for episode in client.episodes:
        for study in episode.studies:
            for series in study.series:
                for image in series.images:
                    if (study.id, image.id) not in seen:
                        seen.add((study.id, image.id))
                        yield study.id, image


def _add_image(collection: Collection, client: Any, study_id: str, image: Any, image_dir: Path,
               vendor_filter: str | Sequence[str] | None) -> None:
    dcm = image_dir / client.id / study_id / f"{image.id}.dcm"
    where = f"{client.id}/imagedb_{client.id}.json: study {study_id}, image {image.id}"
    if not image.marks and client.status.name != "N":  # omidb's client Status: N = normal
        collection.skipped.append(SkippedFile(
            str(dcm), f"no marks on this image of a client with findings (status "
            f"{client.status.value}): it may show unmarked findings, so it is not used as normal",
            STAGE, "annotation"))
        return
    meta = annotated_image_header(collection, dcm, where)
    if meta is None:
        return
    if not vendor_matches(vendor_filter, meta["manufacturer"], meta["model_name"]):
        collection.exclude_by_vendor(dcm, meta["manufacturer"], meta["model_name"])
        return
    image_id = pseudonymous_id(collection.root, dcm)
    lesions = [mark_lesion(image_id, mark) for mark in image.marks]
    bad = [les for les in lesions if not lesion_in_bounds(les, meta["rows"], meta["cols"])]
    if bad:
        collection.skipped.append(SkippedFile(
            where, out_of_bounds_problem(bad[0], meta["rows"], meta["cols"]), STAGE, "annotation"))
        return
    lesions = [LesionAnnotation(**{**les.__dict__, "bbox": clip_bbox(les.bbox, meta["rows"], meta["cols"])})
               for les in lesions]
    fields = dicom_record_fields(meta)
    fields["extra"].update(annotation=where, client_status=client.status.value, site=client.site)
    collection.records.append(ImageRecord(
        image_id=image_id, patient_id=pseudonymous_patient_id(client.id), path=dcm,
        source_kind="omidb", lesions=tuple(lesions),
        laterality=meta["laterality"], view=meta["view"], manufacturer=meta["manufacturer"],
        model_name=meta["model_name"], **fields))


def read_omidb(collection: Collection, vendor_filter: str | Sequence[str] | None,
               show_progress: bool = False) -> Collection:
    """Fill ``collection`` (its ``root`` set) from an OMI-DB folder (see the module docstring)."""
    db, data_dir, image_dir = _open_db(collection.root)
    parsed = set()
    for client in progress(sorted(db, key=lambda c: c.id), show_progress, "reading OMI-DB clients"):
        parsed.add(client.id)
        for study_id, image in _images(client):
            _add_image(collection, client, study_id, image, image_dir, vendor_filter)
    for client_id in sorted(set(db.clients) - parsed):
        collection.skipped.append(SkippedFile(
            str(data_dir / client_id), "the omidb package could not parse this client (its "
            f"nbss_{client_id}.json / imagedb_{client_id}.json)", STAGE, "annotation"))
    return collection
