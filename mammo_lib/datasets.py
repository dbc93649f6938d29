"""Readers of mammography collections into one record type (:class:`ImageRecord`).

:func:`open_collection` reads *annotations and DICOM headers only* (``stop_before_pixels``):
listing a collection of millions of images never decodes one. Pixels are decoded later, one
image at a time, by :func:`load_image_pixels` (which is what patch extraction calls on the
workers). :func:`breast_mask` finds the breast in a decoded image.

Collection kinds and the folder layouts they expect:

``"phantom"`` / ``"omidb"``
    The OMI-DB-like layout the built-in phantom writes (see :mod:`mammo_lib.phantom`)::

        root/<client_id>/<study_uid>/<sop_uid>.dcm
        root/<client_id>/<study_uid>/<sop_uid>.json   {"image": {...}, "marks": [...]}

    Every annotation JSON (``*/*/*.json``) names its image (``image.file``, default the DICOM
    of the same stem); marks carry ``lesion_id``, ``class``, ``center_row``/``center_col``,
    ``bbox``, ``radius``, ``outline``, ``pathology``. Laterality, view, manufacturer and size
    come from the DICOM header. A DICOM with no JSON beside it is a skipped file (its findings,
    if any, are unknown, so it cannot serve as a normal either).

``"cbis-ddsm"``
    CBIS-DDSM as downloaded from TCIA, with the description CSVs in the root::

        root/*case_description*.csv        e.g. mass_case_description_train_set.csv
        root/<paths named in the CSVs>     image DICOMs and ROI mask DICOMs

    Each CSV row is one abnormality; the columns used are ``image file path`` and ``ROI mask
    file path`` (paths relative to ``root``; surrounding whitespace and quotes are stripped, as
    the published CSVs carry trailing newlines), ``abnormality type`` (mass / calcification),
    ``abnormality id``, ``pathology``, ``left or right breast``, ``image view`` (these two
    take precedence over the DICOM header) and, when present, ``mass shape``/``calc type``. Rows naming the same image become one record with
    several lesions. The lesion centre (mask centroid), bounding box and outline (longest
    contour) come from the ROI mask, which must be binary and as large as the image; when the
    ``ROI mask file path`` holds the cropped image instead (a known mix-up in CBIS-DDSM), the
    ``cropped image file path`` is tried as the mask.

``"mias"``
    The MIAS / mini-MIAS distribution: ``root/Info.txt`` plus ``mdbNNN.pgm`` (or ``.png``) in
    ``root`` or ``root/images``. MIAS coordinates have their origin at the *bottom-left*
    corner: row = 1023 - y (``height - 1 - y``), column = x. Each abnormality row becomes one
    lesion (several rows → several lesions); NORM images have none; rows without coordinates
    (mdb059 and the widely distributed calcifications, *NOTE 3*) make the image a skipped
    file, since its findings cannot be located. Classes: CALC → calcification;
    CIRC/SPIC/MISC → mass; ARCH → architectural_distortion; ASYM → asymmetry. The MIAS
    reference number (already anonymous) is the image id; odd numbers are right breasts, even
    numbers left (MIAS note 1); all views are MLO.

Problems with single files (an annotation naming a missing image, a finding outside the
image, an unreadable header) become :class:`SkippedFile` entries naming the file and the
problem; the rest of the collection goes on. A wrong kind, a missing or empty folder, or a
collection with nothing usable raise ``ValueError``/``FileNotFoundError`` with a message that
says what was expected.

Image ids are pseudonymous: never PatientName/PatientID, but the first 16 hex digits of the
sha256 of the image path relative to the collection root (MIAS: its reference number).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammo_lib.dicom_io import DicomReadError, read_dicom_header, read_dicom_pixels
from mammo_lib.records import ImageRecord, LesionAnnotation, SkippedFile

#: Collection kinds :func:`open_collection` understands.
COLLECTION_KINDS = ("phantom", "omidb", "cbis-ddsm", "mias")

MIAS_CLASSES = {
    "CALC": "calcification",
    "CIRC": "mass",
    "SPIC": "mass",
    "MISC": "mass",
    "ARCH": "architectural_distortion",
    "ASYM": "asymmetry",
}
_PATHOLOGY = {"B": "benign", "M": "malignant"}
_STAGE = "datasets"


@dataclass
class Collection:
    """What :func:`open_collection` found: usable records, skipped files, vendor exclusions."""

    kind: str
    root: Path
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    excluded_by_vendor: int = 0

    def n_lesions(self) -> int:
        return sum(len(r.lesions) for r in self.records)

    def lesion_counts(self) -> dict[str, int]:
        """Number of lesions per class."""
        counts: dict[str, int] = {}
        for record in self.records:
            for lesion in record.lesions:
                counts[lesion.lesion_class] = counts.get(lesion.lesion_class, 0) + 1
        return dict(sorted(counts.items()))


def _annotated_image_header(collection: Collection, image_path: Path, where: str) -> dict | None:
    """Header of the image an annotation points at, or None with a skipped-file row saying why
    (missing image: the annotation's place is named; unreadable DICOM: the image is)."""
    if not image_path.is_file():
        collection.skipped.append(SkippedFile(where, f"annotation points at a missing image {image_path}", _STAGE))
        return None
    try:
        _, meta = read_dicom_header(image_path)
    except DicomReadError as exc:
        collection.skipped.append(SkippedFile(str(image_path), str(exc), _STAGE))
        return None
    return meta


def pseudonymous_id(root: Path, path: Path) -> str:
    """First 16 hex digits of sha256 of ``path`` relative to ``root`` (POSIX form)."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        rel = Path(path).as_posix()
    return hashlib.sha256(rel.encode("utf-8")).hexdigest()[:16]


def vendor_matches(vendor_filter: str | None, manufacturer: str | None, model_name: str | None) -> bool:
    """Case-insensitive substring match of the filter on Manufacturer or ManufacturerModelName.

    ``None`` or an empty filter matches everything; an image with neither tag never matches
    a non-empty filter.
    """
    if not vendor_filter or not vendor_filter.strip():
        return True
    needle = vendor_filter.strip().lower()
    return any(needle in (text or "").lower() for text in (manufacturer, model_name))


_KIND_ALIASES = {"cbis_ddsm": "cbis-ddsm", "cbis": "cbis-ddsm", "omi-db": "omidb", "omi_db": "omidb",
                 "mini-mias": "mias", "minimias": "mias"}


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
    vendor_filter: str | None = None,
    progress: bool = False,
) -> Collection:
    """List the images and annotations of a collection (no pixel decoding).

    ``vendor_filter``: keep only images whose Manufacturer or ManufacturerModelName contains
    it (case-insensitive); the others are counted in ``excluded_by_vendor``. ``progress``
    shows a tqdm bar over the annotation files (worth it for large DICOM collections). Raises
    ``ValueError`` when the kind is unknown, the folder empty, or nothing usable is found.
    """
    kind, root = _check_root(kind, path)
    if kind in ("phantom", "omidb"):
        collection = _read_omidb_like(kind, root, vendor_filter, progress)
    elif kind == "cbis-ddsm":
        collection = _read_cbis_ddsm(root, vendor_filter, progress)
    else:
        collection = _read_mias(root, vendor_filter)
    collection.records.sort(key=lambda r: (str(r.path), r.image_id))
    if not collection.records:
        why = "; ".join(f"{s.path}: {s.problem}" for s in collection.skipped[:5])
        if collection.excluded_by_vendor and not collection.skipped:
            why = f"all {collection.excluded_by_vendor} images were excluded by vendor_filter={vendor_filter!r}"
        raise ValueError(
            f"no usable images in {root} (kind {kind!r}); "
            + (why or "no annotation files in the expected layout were found")
            + (f" (and {len(collection.skipped) - 5} more skipped files)" if len(collection.skipped) > 5 else "")
            + "; see mammo_lib.datasets for the layout each kind expects"
        )
    return collection


# --------------------------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------------------------


def _lesion_in_bounds(lesion: LesionAnnotation, rows: int | None, cols: int | None) -> bool:
    if rows is None or cols is None:
        return True
    return 0 <= lesion.center_row < rows and 0 <= lesion.center_col < cols


def _out_of_bounds_problem(lesion: LesionAnnotation, rows: int, cols: int) -> str:
    return (
        f"annotation {lesion.lesion_id} centre (row {lesion.center_row:.1f}, col "
        f"{lesion.center_col:.1f}) lies outside the {rows}x{cols} image; fix or remove the annotation"
    )


def _clip_bbox(bbox: tuple[int, int, int, int] | None, rows: int | None, cols: int | None):
    if bbox is None or rows is None or cols is None:
        return bbox
    r0, c0, r1, c1 = bbox
    return (max(0, r0), max(0, c0), min(rows, r1), min(cols, c1))


# --------------------------------------------------------------------------------------------
# OMI-DB-like (and the phantom)
# --------------------------------------------------------------------------------------------


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


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file")


def _read_omidb_like(kind: str, root: Path, vendor_filter: str | None, progress: bool = False) -> Collection:
    collection = Collection(kind=kind, root=root)
    json_files = sorted(root.glob("*/*/*.json"))
    dicoms_with_json: set[Path] = set()
    for json_path in _progress(json_files, progress, f"reading {kind} annotations"):
        dicoms_with_json.add(json_path.with_suffix(".dcm").resolve())  # reported once, via its JSON
        try:
            annotation = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            collection.skipped.append(SkippedFile(str(json_path), f"unreadable annotation JSON ({exc})", _STAGE))
            continue
        if not isinstance(annotation, dict) or "marks" not in annotation:
            collection.skipped.append(
                SkippedFile(str(json_path), "annotation JSON has no 'marks' list (expected {'image': {...}, 'marks': [...]})", _STAGE)
            )
            continue
        image_info = annotation.get("image") or {}
        image_path = json_path.parent / str(image_info.get("file") or json_path.with_suffix(".dcm").name)
        dicoms_with_json.add(image_path.resolve())
        meta = _annotated_image_header(collection, image_path, str(json_path))
        if meta is None:
            continue
        image_id = pseudonymous_id(root, image_path)
        manufacturer = meta["manufacturer"] or image_info.get("manufacturer")
        model_name = meta["model_name"] or image_info.get("model_name")
        if not vendor_matches(vendor_filter, manufacturer, model_name):
            collection.excluded_by_vendor += 1
            continue
        try:
            lesions = tuple(
                _lesion_from_mark(m, i, image_id) for i, m in enumerate(annotation.get("marks") or [])
            )
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            collection.skipped.append(SkippedFile(str(json_path), f"malformed mark: {exc}", _STAGE))
            continue
        rows, cols = meta["rows"], meta["cols"]
        bad = [les for les in lesions if not _lesion_in_bounds(les, rows, cols)]
        if bad:
            collection.skipped.append(SkippedFile(str(json_path), _out_of_bounds_problem(bad[0], rows, cols), _STAGE))
            continue
        lesions = tuple(
            LesionAnnotation(**{**les.__dict__, "bbox": _clip_bbox(les.bbox, rows, cols)}) for les in lesions
        )
        collection.records.append(
            ImageRecord(
                image_id=image_id,
                path=image_path,
                source_kind=kind,
                lesions=lesions,
                laterality=meta["laterality"] or image_info.get("laterality"),
                view=meta["view"] or image_info.get("view"),
                manufacturer=manufacturer,
                model_name=model_name,
                extra={
                    "rows": rows,
                    "cols": cols,
                    "photometric": meta["photometric"],
                    "bits_stored": meta["bits_stored"],
                    "pixel_spacing": meta["pixel_spacing"],
                    "transfer_syntax": meta["transfer_syntax"],
                    "annotation": str(json_path),
                },
            )
        )
    for dcm in sorted(root.glob("*/*/*.dcm")):
        if dcm.resolve() not in dicoms_with_json:
            collection.skipped.append(
                SkippedFile(str(dcm), "DICOM image has no annotation JSON beside it (findings unknown)", _STAGE)
            )
    return collection


# --------------------------------------------------------------------------------------------
# CBIS-DDSM
# --------------------------------------------------------------------------------------------

_CBIS_IMAGE = "image file path"
_CBIS_MASK = "ROI mask file path"
_CBIS_CROP = "cropped image file path"


def _clean_rel_path(value: str | None) -> str:
    return (value or "").strip().strip('"').strip()


def _mask_geometry(mask: np.ndarray) -> tuple[float, float, tuple[int, int, int, int], tuple[tuple[float, float], ...]]:
    """Centroid, bbox (end exclusive) and outline (longest contour, <= 64 points) of a mask."""
    from skimage import measure

    rows_idx, cols_idx = np.nonzero(mask)
    cr, cc = float(rows_idx.mean()), float(cols_idx.mean())
    bbox = (int(rows_idx.min()), int(cols_idx.min()), int(rows_idx.max()) + 1, int(cols_idx.max()) + 1)
    r0, c0, r1, c1 = bbox
    sub = np.pad(mask[r0:r1, c0:c1].astype(np.uint8), 1)
    contours = measure.find_contours(sub, 0.5)
    outline: tuple[tuple[float, float], ...] = ()
    if contours:
        longest = max(contours, key=len)
        step = max(1, len(longest) // 64)
        outline = tuple((float(p[0] + r0 - 1), float(p[1] + c0 - 1)) for p in longest[::step])
    return cr, cc, bbox, outline


def _read_binary_mask(path: Path, shape: tuple[int, int] | None) -> np.ndarray | None:
    """The mask as bool when the file is a binary image of ``shape``; ``None`` otherwise."""
    pixels, _ = read_dicom_pixels(path)
    values = np.unique(pixels[:: max(1, pixels.shape[0] // 256), :: max(1, pixels.shape[1] // 256)])
    if values.size > 2:
        return None
    if shape is not None and pixels.shape != tuple(shape):
        return None
    mask = pixels > (pixels.min() + pixels.max()) / 2.0
    if mask.mean() > 0.5:  # a MONOCHROME1 mask reads inverted; no lesion covers half an image
        mask = ~mask
    return mask if mask.any() else None


def _read_cbis_ddsm(root: Path, vendor_filter: str | None, progress: bool = False) -> Collection:
    collection = Collection(kind="cbis-ddsm", root=root)
    csv_files = sorted(root.glob("*.csv"))
    described = [p for p in csv_files if "description" in p.name.lower()] or csv_files
    if not described:
        raise ValueError(
            f"{root}: no CBIS-DDSM description CSV (e.g. mass_case_description_train_set.csv) in "
            "the collection folder; put the CSVs in the root beside the image folders"
        )
    rows_by_image: dict[str, list[tuple[Path, int, dict[str, str]]]] = {}
    for csv_path in described:
        try:
            with csv_path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip() for h in (reader.fieldnames or [])]
                missing = [c for c in (_CBIS_IMAGE, _CBIS_MASK) if c not in header]
                if missing:
                    collection.skipped.append(
                        SkippedFile(str(csv_path), f"CSV lacks the column(s) {missing}; not a CBIS-DDSM description file", _STAGE)
                    )
                    continue
                for line_no, row in enumerate(reader, start=2):
                    row = {(k or "").strip(): (v or "") for k, v in row.items()}
                    rel = _clean_rel_path(row.get(_CBIS_IMAGE))
                    rows_by_image.setdefault(rel, []).append((csv_path, line_no, row))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            collection.skipped.append(SkippedFile(str(csv_path), f"unreadable CSV ({exc})", _STAGE))
    for rel, rows in _progress(sorted(rows_by_image.items()), progress, "reading CBIS-DDSM images and masks"):
        csv_path, line_no, first = rows[0]
        where = f"{csv_path}:{line_no}"
        if not rel:
            collection.skipped.append(SkippedFile(where, "row has an empty 'image file path'", _STAGE))
            continue
        image_path = root / rel
        meta = _annotated_image_header(collection, image_path, where)
        if meta is None:
            continue
        if not vendor_matches(vendor_filter, meta["manufacturer"], meta["model_name"]):
            collection.excluded_by_vendor += 1
            continue
        image_id = pseudonymous_id(root, image_path)
        shape = (meta["rows"], meta["cols"])
        lesions: list[LesionAnnotation] = []
        problem = None
        for csv_path_i, line_i, row in rows:
            where_i = f"{csv_path_i}:{line_i}"
            candidates = [_clean_rel_path(row.get(_CBIS_MASK)), _clean_rel_path(row.get(_CBIS_CROP))]
            mask = None
            tried = []
            for cand in candidates:
                if not cand:
                    continue
                mask_path = root / cand
                tried.append(str(mask_path))
                if not mask_path.is_file():
                    continue
                try:
                    mask = _read_binary_mask(mask_path, shape)
                except DicomReadError as exc:
                    problem = (where_i, str(exc))
                    continue
                if mask is not None:
                    break
            if mask is None:
                if problem is None:
                    problem = (
                        where_i,
                        f"no usable ROI mask for this abnormality (tried {tried or 'nothing: empty mask path'}; "
                        f"a mask must exist, be binary and be {shape[0]}x{shape[1]} like its image)",
                    )
                break
            cr, cc, bbox, outline = _mask_geometry(mask)
            abn_type = row.get("abnormality type", "").strip().lower()
            cls = "calcification" if abn_type.startswith("calc") else "mass" if abn_type.startswith("mass") else "other"
            pathology_raw = row.get("pathology", "").strip().upper()
            pathology = "malignant" if pathology_raw.startswith("MALIGNANT") else (
                "benign" if pathology_raw.startswith("BENIGN") else None
            )
            label = (row.get("mass shape") or row.get("calc type") or abn_type or "").strip() or None
            abn_id = row.get("abnormality id", "").strip() or str(len(lesions) + 1)
            lesions.append(
                LesionAnnotation(
                    lesion_id=f"{image_id}-A{abn_id}",
                    lesion_class=cls,
                    center_row=cr,
                    center_col=cc,
                    bbox=bbox,
                    outline=outline or None,
                    pathology=pathology,
                    source_label=f"{abn_type} {label}".strip() if label and label != abn_type else abn_type or None,
                )
            )
        if problem is not None:
            collection.skipped.append(SkippedFile(problem[0], problem[1], _STAGE))
            continue
        side = first.get("left or right breast", "").strip().upper()
        # the curated CSV is the truth for side and view; the header only fills gaps
        laterality = {"LEFT": "L", "RIGHT": "R"}.get(side) or meta["laterality"]
        collection.records.append(
            ImageRecord(
                image_id=image_id,
                path=image_path,
                source_kind="cbis-ddsm",
                lesions=tuple(lesions),
                laterality=laterality,
                view=first.get("image view", "").strip().upper() or meta["view"],
                manufacturer=meta["manufacturer"],
                model_name=meta["model_name"],
                extra={
                    "rows": meta["rows"],
                    "cols": meta["cols"],
                    "photometric": meta["photometric"],
                    "bits_stored": meta["bits_stored"],
                    "pixel_spacing": meta["pixel_spacing"],
                    "transfer_syntax": meta["transfer_syntax"],
                    "annotation": str(csv_path),
                },
            )
        )
    return collection


# --------------------------------------------------------------------------------------------
# MIAS
# --------------------------------------------------------------------------------------------

_MIAS_ROW = re.compile(r"^(mdb\d{3})\s+([FGD])\s+([A-Z]+)(.*)$")


def _find_mias_image(root: Path, ref: str) -> Path | None:
    for folder in (root, root / "images"):
        for suffix in (".pgm", ".png", ".PGM", ".PNG"):
            candidate = folder / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _image_size(path: Path) -> tuple[int, int]:
    """(rows, cols) from the image header only (Pillow opens lazily)."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    return height, width


def _read_mias(root: Path, vendor_filter: str | None) -> Collection:
    collection = Collection(kind="mias", root=root)
    info = root / "Info.txt"
    if not info.is_file():
        candidates = sorted(root.glob("[Ii]nfo*.txt"))
        if not candidates:
            raise ValueError(f"{root}: no Info.txt (the MIAS truth file) in the collection folder")
        info = candidates[0]
    rows_by_ref: dict[str, list[tuple[int, str, str, str, list[str]]]] = {}
    for line_no, line in enumerate(info.read_text(encoding="latin-1").splitlines(), start=1):
        match = _MIAS_ROW.match(line.strip())
        if not match:
            continue
        ref, tissue, cls, rest = match.groups()
        rows_by_ref.setdefault(ref, []).append((line_no, tissue, cls, rest.strip(), rest.split()))
    if not rows_by_ref:
        raise ValueError(f"{info}: no data rows (lines starting 'mdbNNN') found; is this the MIAS Info.txt?")
    if vendor_filter and vendor_filter.strip():
        # MIAS has no manufacturer information: a vendor filter excludes every image
        collection.excluded_by_vendor = len(rows_by_ref)
        return collection
    for ref, rows in sorted(rows_by_ref.items()):
        image_path = _find_mias_image(root, ref)
        if image_path is None:
            collection.skipped.append(
                SkippedFile(f"{info}:{rows[0][0]}", f"annotation points at a missing image {ref}.pgm/.png in {root} or {root / 'images'}", _STAGE)
            )
            continue
        try:
            n_rows, n_cols = _image_size(image_path)
        except Exception as exc:  # PIL raises several types on broken files
            collection.skipped.append(SkippedFile(str(image_path), f"unreadable image header ({exc})", _STAGE))
            continue
        lesions: list[LesionAnnotation] = []
        problem = None
        for line_no, _tissue, cls, rest, fields in rows:
            if cls == "NORM":
                continue
            if cls not in MIAS_CLASSES:
                problem = f"{info}:{line_no}", f"unknown MIAS class {cls!r} for {ref}"
                break
            severity = fields[0] if fields and fields[0] in _PATHOLOGY else None
            numbers = fields[1:4] if severity else fields[0:3]
            try:
                x, y, radius = (float(v) for v in numbers)
                if len(numbers) != 3:
                    raise ValueError
            except ValueError:
                note = " (*NOTE 3*: widely distributed calcifications)" if "NOTE" in rest else ""
                problem = (
                    f"{info}:{line_no}",
                    f"{ref} {cls} row has no x, y, radius{note}: its finding cannot be located, "
                    "so the image is used neither as lesion nor as normal",
                )
                break
            row_index, col_index = (n_rows - 1) - y, x
            lesion = LesionAnnotation(
                lesion_id=f"{ref}-L{len(lesions) + 1}",
                lesion_class=MIAS_CLASSES[cls],
                center_row=row_index,
                center_col=col_index,
                bbox=(
                    max(0, int(np.floor(row_index - radius))),
                    max(0, int(np.floor(col_index - radius))),
                    min(n_rows, int(np.ceil(row_index + radius)) + 1),
                    min(n_cols, int(np.ceil(col_index + radius)) + 1),
                ),
                radius=radius,
                pathology=_PATHOLOGY.get(severity or ""),
                source_label=cls,
            )
            if not _lesion_in_bounds(lesion, n_rows, n_cols):
                problem = f"{info}:{line_no}", f"{ref}: " + _out_of_bounds_problem(lesion, n_rows, n_cols)
                break
            lesions.append(lesion)
        if problem is not None:
            collection.skipped.append(SkippedFile(problem[0], problem[1], _STAGE))
            continue
        number = int(ref[3:])
        collection.records.append(
            ImageRecord(
                image_id=ref,
                path=image_path,
                source_kind="mias",
                lesions=tuple(lesions),
                laterality="R" if number % 2 == 1 else "L",
                view="MLO",
                manufacturer=None,
                model_name=None,
                extra={"rows": n_rows, "cols": n_cols, "background_tissue": rows[0][1], "pixel_spacing": (0.2, 0.2)},
            )
        )
    return collection


# --------------------------------------------------------------------------------------------
# pixels and the breast mask
# --------------------------------------------------------------------------------------------


def load_image_pixels(record: ImageRecord | str | os.PathLike) -> np.ndarray:
    """Decode one image as float32 2-D, brighter = denser (DICOM via dicom_io; PGM/PNG/TIFF via
    Pillow). Raises ``ValueError`` (``DicomReadError`` for DICOM) naming the file."""
    path = Path(record.path if isinstance(record, ImageRecord) else record)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    if suffix in (".pgm", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"):
        from PIL import Image

        try:
            with Image.open(path) as im:
                arr = np.asarray(im)
        except Exception as exc:
            raise ValueError(f"{path}: unreadable {suffix} image ({type(exc).__name__}: {exc})") from exc
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=-1)
        if arr.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D grey image, got shape {arr.shape}")
        return arr.astype(np.float32)
    pixels, _ = read_dicom_pixels(path)
    return pixels


def breast_mask(pixels: np.ndarray, *, work_size: int = 512) -> np.ndarray:
    """Boolean mask of the breast: Otsu threshold of a smoothed, downsampled copy, then the
    largest connected component with holes filled, scaled back to full size.

    Labels, film markers and noise in the background are separate components and drop out;
    dark fatty regions inside the breast are holes and are filled.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"breast_mask expects a 2-D image, got shape {image.shape}")
    factor = max(1, int(np.ceil(max(image.shape) / work_size)))
    small = image[::factor, ::factor] if factor > 1 else image
    smooth = ndimage.gaussian_filter(small, sigma=2.0)
    if float(smooth.max()) <= float(smooth.min()):
        return np.zeros(image.shape, dtype=bool)
    threshold = threshold_otsu(smooth)
    # the breast edge is much darker than the glandular core: threshold below Otsu's level
    low = float(np.percentile(smooth, 1))
    level = low + 0.5 * (threshold - low)
    fg = smooth > level
    fg = ndimage.binary_opening(fg, structure=np.ones((3, 3), bool), iterations=2)
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    largest = ndimage.binary_fill_holes(largest)
    if factor > 1:
        full = np.repeat(np.repeat(largest, factor, axis=0), factor, axis=1)
        return np.ascontiguousarray(full[: image.shape[0], : image.shape[1]])
    return largest
