"""CBIS-DDSM (``source_kind`` ``"cbis-ddsm"``) as downloaded from TCIA, description CSVs in the root,
images either where the CSVs say or in the NBIA Data Retriever's descriptive tree::

    root/*case_description*.csv        e.g. mass_case_description_train_set.csv
    root/<paths named in the CSVs>     image DICOMs and ROI mask DICOMs
    -- or --
    root/CBIS-DDSM/<case>/<date>-DDSM-NA-<n>/1.000000-full mammogram images-<n>/1-1.dcm
    root/CBIS-DDSM/<case>_<abnormality id>/<date>-DDSM-NA-<n>/1.000000-ROI mask images-<n>/1-1.dcm
                                        (cropped images beside them, sometimes in the same series)

In the NBIA tree the ``<case>`` (e.g. ``Mass-Training_P_00001_LEFT_CC``) and
``<case>_<abnormality id>`` folders are found from the first component of the CSV paths, and the
ROI mask is told from the cropped image by its content (binary, as large as the image), never by
its series name.

Each CSV row is one abnormality; the columns used are ``image file path`` and ``ROI mask file
path`` (paths relative to ``root``; surrounding whitespace and quotes are stripped, as the
published CSVs carry trailing newlines), ``abnormality type`` (mass / calcification),
``abnormality id``, ``pathology``, ``left or right breast``, ``image view`` (these two take
precedence over the DICOM header) and, when present, ``mass shape``/``calc type``. Rows naming
the same image become one record with several lesions. The lesion centre (mask centroid),
bounding box and outline (longest contour) come from the ROI mask, which must be binary and as
large as the image; when the ``ROI mask file path`` holds the cropped image instead (a known
mix-up in CBIS-DDSM), the ``cropped image file path`` is tried as the mask.

Ids are pseudonymous: ``image_id`` is the hash of the image's path inside ``root``;
``patient_id`` the hash (:func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id`) of the
woman's CBIS-DDSM id (``P_00001``): the ``patient_id`` column, else the ``P_<digits>`` in the
image file path's case folder (``Mass-Training_P_00001_LEFT_CC``). The ids are shared by the
mass and calcification CSVs, so both views and both lesion types of one woman get one
``patient_id``. A row with neither (not the published layout) has no patient information:
its image stands for itself (``patient_id`` = ``image_id``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mammo_lib.sources.dicom_io import DicomReadError, read_dicom_pixels
from mammo_lib.sources.formats.common import (
    STAGE,
    annotated_image_header,
    dicom_record_fields,
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

_CBIS_IMAGE = "image file path"
_CBIS_MASK = "ROI mask file path"
_CBIS_CROP = "cropped image file path"
_CBIS_PATIENT = re.compile(r"(?<![A-Za-z0-9])P_\d+")


def _clean_rel_path(value: str | None) -> str:
    return (value or "").strip().strip('"').strip()


def cbis_patient_id(row: dict[str, str], rel: str, image_id: str) -> str:
    """The pseudonymous ``patient_id`` of the image a description row names.

    Parameters
    ----------
    row : dict of str
        The row (keys stripped); its ``patient_id`` (e.g. ``P_00001``) is used when present.
    rel : str
        Its ``image file path``; the ``P_<digits>`` of its first component is the fallback.
    image_id : str
        The image's id, used when neither names the woman.

    Returns
    -------
    str
        :func:`~mammo_lib.sources.formats.common.pseudonymous_patient_id` of the CBIS-DDSM patient id,
        else ``image_id``.
    """
    patient = (row.get("patient_id") or "").strip()
    if not patient:
        parts = Path(rel).parts
        found = _CBIS_PATIENT.search(parts[0]) if parts else None
        patient = found.group(0) if found else ""
    return pseudonymous_patient_id(patient) if patient else image_id


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


Row = tuple[Path, int, dict[str, str]]  # (csv file, line number, cleaned row)


def _description_rows(root: Path, collection: Collection) -> dict[str, list[Row]]:
    """Rows of every description CSV in ``root``, grouped by the image they name."""
    csv_files = sorted(root.glob("*.csv"))
    described = [p for p in csv_files if "description" in p.name.lower()] or csv_files
    if not described:
        raise ValueError(
            f"{root}: no CBIS-DDSM description CSV (e.g. mass_case_description_train_set.csv) in "
            "the collection folder; put the CSVs in the root beside the image folders"
        )
    rows_by_image: dict[str, list[Row]] = {}
    for csv_path in described:
        try:
            with csv_path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip() for h in (reader.fieldnames or [])]
                missing = [c for c in (_CBIS_IMAGE, _CBIS_MASK) if c not in header]
                if missing:
                    collection.skipped.append(SkippedFile(
                        str(csv_path), f"CSV lacks the column(s) {missing}; not a CBIS-DDSM "
                        "description file", STAGE))
                    continue
                for line_no, row in enumerate(reader, start=2):
                    row = {(k or "").strip(): (v or "") for k, v in row.items()}
                    rel = _clean_rel_path(row.get(_CBIS_IMAGE))
                    rows_by_image.setdefault(rel, []).append((csv_path, line_no, row))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            collection.skipped.append(SkippedFile(str(csv_path), f"unreadable CSV ({exc})", STAGE))
    return rows_by_image


def _case_dicoms(root: Path, rel: str) -> list[Path]:
    """DICOMs under the folder named by the first component of ``rel`` (``<case>`` or
    ``<case>_<abnormality id>``), in ``root`` or ``root/CBIS-DDSM`` (the NBIA Data Retriever's
    descriptive tree: ``<case>/<date>-DDSM-NA-<n>/<series>-<n>/1-1.dcm``)."""
    parts = Path(rel).parts
    if not parts:
        return []
    for base in (root, root / "CBIS-DDSM"):
        folder = base / parts[0]
        if folder.is_dir():
            return sorted(folder.rglob("*.dcm"))
    return []


def resolve_image(root: Path, rel: str) -> Path:
    """The full mammogram a CSV row names: the path itself when it exists, else the DICOM of the
    case folder of the NBIA tree (a series called "full mammogram images" first)."""
    direct = root / rel
    if direct.is_file():
        return direct
    found = _case_dicoms(root, rel)
    full = [p for p in found if "full mammogram" in p.parent.name.lower()]
    return (full or found or [direct])[0]


def _find_mask(root: Path, row: dict[str, str], where: str,
               shape: tuple[int, int]) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """The ROI mask of one abnormality row, or ``(None, (where, problem))``.

    Tried in turn: the ROI-mask path the CSV names, its cropped-image path, then (the NBIA Data
    Retriever's tree) every DICOM under the abnormality's ``<case>_<abnormality id>`` folder; the
    mask is the one that is binary and as large as the image, whatever its series is called.
    """
    named = [_clean_rel_path(row.get(_CBIS_MASK)), _clean_rel_path(row.get(_CBIS_CROP))]
    candidates = [root / cand for cand in named if cand]
    if not any(path.is_file() for path in candidates):
        candidates += [path for cand in named if cand for path in _case_dicoms(root, cand)]
    tried = []
    problem = None
    for mask_path in candidates:
        tried.append(str(mask_path))
        if not mask_path.is_file():
            continue
        try:
            mask = _read_binary_mask(mask_path, shape)
        except DicomReadError as exc:
            problem = (where, str(exc))
            continue
        if mask is not None:
            return mask, None
    if problem is None:
        problem = (where, f"no usable ROI mask for this abnormality (tried "
                          f"{tried or 'nothing: empty mask path'}; a mask must exist, be binary "
                          f"and be {shape[0]}x{shape[1]} like its image)")
    return None, problem


def _lesion_from_row(row: dict[str, str], mask: np.ndarray, image_id: str,
                     index: int) -> LesionAnnotation:
    """One abnormality row and its ROI mask as a lesion (centre, box and outline from the mask)."""
    cr, cc, bbox, outline = _mask_geometry(mask)
    abn_type = row.get("abnormality type", "").strip().lower()
    cls = ("calcification" if abn_type.startswith("calc")
           else "mass" if abn_type.startswith("mass") else "other")
    pathology_raw = row.get("pathology", "").strip().upper()
    pathology = ("malignant" if pathology_raw.startswith("MALIGNANT")
                 else "benign" if pathology_raw.startswith("BENIGN") else None)
    label = (row.get("mass shape") or row.get("calc type") or abn_type or "").strip() or None
    abn_id = row.get("abnormality id", "").strip() or str(index + 1)
    return LesionAnnotation(
        lesion_id=f"{image_id}-A{abn_id}",
        lesion_class=cls,
        center_row=cr,
        center_col=cc,
        bbox=bbox,
        outline=outline or None,
        pathology=pathology,
        source_label=(f"{abn_type} {label}".strip() if label and label != abn_type
                      else abn_type or None),
    )


def _image_lesions(root: Path, rows: list[Row], image_id: str, shape: tuple[int, int]
                   ) -> tuple[list[LesionAnnotation], tuple[str, str] | None]:
    """Lesions of all rows naming one image, or the first problem (the image is then skipped)."""
    lesions: list[LesionAnnotation] = []
    for csv_path, line_no, row in rows:
        mask, problem = _find_mask(root, row, f"{csv_path}:{line_no}", shape)
        if mask is None:
            return lesions, problem
        lesions.append(_lesion_from_row(row, mask, image_id, len(lesions)))
    return lesions, None


def read_cbis_ddsm(collection: Collection, vendor_filter: str | Sequence[str] | None,
                   show_progress: bool = False) -> Collection:
    """Fill ``collection`` (its ``root`` set) from a CBIS-DDSM folder (see the module docstring)."""
    root = collection.root
    rows_by_image = _description_rows(root, collection)
    for rel, rows in progress(sorted(rows_by_image.items()), show_progress,
                              "reading CBIS-DDSM images and masks"):
        csv_path, line_no, first = rows[0]
        where = f"{csv_path}:{line_no}"
        if not rel:
            collection.skipped.append(SkippedFile(where, "row has an empty 'image file path'", STAGE))
            continue
        image_path = resolve_image(root, rel)
        meta = annotated_image_header(collection, image_path, where)
        if meta is None:
            continue
        if not vendor_matches(vendor_filter, meta["manufacturer"], meta["model_name"]):
            collection.exclude_by_vendor(image_path, meta["manufacturer"], meta["model_name"])
            continue
        image_id = pseudonymous_id(root, image_path)
        lesions, problem = _image_lesions(root, rows, image_id, (meta["rows"], meta["cols"]))
        if problem is not None:
            collection.skipped.append(SkippedFile(problem[0], problem[1], STAGE, "annotation"))
            continue
        side = first.get("left or right breast", "").strip().upper()
        fields = dicom_record_fields(meta)
        fields["extra"]["annotation"] = str(csv_path)
        # the curated CSV is the truth for side and view; the header only fills gaps
        collection.records.append(ImageRecord(
            image_id=image_id,
            patient_id=cbis_patient_id(first, rel, image_id),
            path=image_path,
            source_kind="cbis-ddsm",
            lesions=tuple(lesions),
            laterality={"LEFT": "L", "RIGHT": "R"}.get(side) or meta["laterality"],
            view=first.get("image view", "").strip().upper() or meta["view"],
            manufacturer=meta["manufacturer"],
            model_name=meta["model_name"],
            **fields,
        ))
    return collection
