"""The MIAS / mini-MIAS distribution (``source_kind`` ``"mias"``): ``root/Info.txt`` plus
``mdbNNN.pgm`` (or ``.png``) in ``root`` or ``root/images``.

MIAS coordinates have their origin at the *bottom-left* corner: row = 1023 - y
(``height - 1 - y``), column = x. Each abnormality row becomes one lesion (several rows →
several lesions); NORM images have none; rows without coordinates (mdb059 and the widely
distributed calcifications, *NOTE 3*) make the image a skipped file, since its findings cannot
be located. Classes: CALC → calcification; CIRC/SPIC/MISC → mass; ARCH →
architectural_distortion; ASYM → asymmetry. The MIAS reference number (already anonymous) is
the image id; odd numbers are right breasts, even numbers left (MIAS note 1); all views are MLO.
MIAS note 1 also says the list is "arranged in pairs of films, where each pair represents the
left (even filename numbers) and right mammograms (odd filename numbers) of a single patient":
mdb001 and mdb002 are one woman, so both get the ``patient_id`` ``"mdb001-mdb002"``
(:func:`mias_patient_id`, made of the anonymous reference numbers; MIAS has no other patient
information).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mammo_lib.sources.formats.common import STAGE, lesion_in_bounds, out_of_bounds_problem
from mammo_lib.sources.records import (
    Collection,
    ImageRecord,
    LesionAnnotation,
    SkippedFile,
    vendor_needles,
)

MIAS_CLASSES = {
    "CALC": "calcification",
    "CIRC": "mass",
    "SPIC": "mass",
    "MISC": "mass",
    "ARCH": "architectural_distortion",
    "ASYM": "asymmetry",
}
_PATHOLOGY = {"B": "benign", "M": "malignant"}
_MIAS_ROW = re.compile(r"^(mdb\d{3})\s+([FGD])\s+([A-Z]+)(.*)$")


def mias_patient_id(ref: str) -> str:
    """The ``patient_id`` of a MIAS image: its pair of reference numbers (MIAS note 1).

    Parameters
    ----------
    ref : str
        A reference number, ``mdbNNN``.

    Returns
    -------
    str
        ``"mdbOOO-mdbEEE"``, the odd (right breast) and the following even (left breast) number
        of the woman's pair, e.g. ``"mdb001-mdb002"`` for both ``mdb001`` and ``mdb002``.
    """
    number = int(ref[3:])
    first = number if number % 2 == 1 else number - 1
    return f"mdb{first:03d}-mdb{first + 1:03d}"


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


MiasRow = tuple[int, str, str, str, list[str]]  # (line number, tissue, class, rest, fields)


def _info_rows(root: Path) -> tuple[Path, dict[str, list[MiasRow]]]:
    """The Info.txt file and its data rows grouped by reference number."""
    info = root / "Info.txt"
    if not info.is_file():
        candidates = sorted(root.glob("[Ii]nfo*.txt"))
        if not candidates:
            raise ValueError(f"{root}: no Info.txt (the MIAS truth file) in the collection folder")
        info = candidates[0]
    rows_by_ref: dict[str, list[MiasRow]] = {}
    for line_no, line in enumerate(info.read_text(encoding="latin-1").splitlines(), start=1):
        match = _MIAS_ROW.match(line.strip())
        if not match:
            continue
        ref, tissue, cls, rest = match.groups()
        rows_by_ref.setdefault(ref, []).append((line_no, tissue, cls, rest.strip(), rest.split()))
    if not rows_by_ref:
        raise ValueError(f"{info}: no data rows (lines starting 'mdbNNN') found; is this the MIAS Info.txt?")
    return info, rows_by_ref


def _mias_lesion(ref: str, row: MiasRow, index: int, shape: tuple[int, int]) -> LesionAnnotation:
    """One abnormality row as a lesion; ``ValueError`` with the problem when it cannot be."""
    _line_no, _tissue, cls, rest, fields = row
    if cls not in MIAS_CLASSES:
        raise ValueError(f"unknown MIAS class {cls!r} for {ref}")
    severity = fields[0] if fields and fields[0] in _PATHOLOGY else None
    numbers = fields[1:4] if severity else fields[0:3]
    try:
        x, y, radius = (float(v) for v in numbers)
    except ValueError:
        note = " (*NOTE 3*: widely distributed calcifications)" if "NOTE" in rest else ""
        raise ValueError(
            f"{ref} {cls} row has no x, y, radius{note}: its finding cannot be located, "
            "so the image is used neither as lesion nor as normal") from None
    n_rows, n_cols = shape
    row_index, col_index = (n_rows - 1) - y, x
    lesion = LesionAnnotation(
        lesion_id=f"{ref}-L{index + 1}",
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
    if not lesion_in_bounds(lesion, n_rows, n_cols):
        raise ValueError(f"{ref}: " + out_of_bounds_problem(lesion, n_rows, n_cols))
    return lesion


def _mias_lesions(info: Path, ref: str, rows: list[MiasRow], shape: tuple[int, int]
                  ) -> tuple[list[LesionAnnotation], tuple[str, str] | None]:
    """Lesions of one image, or the first problem (the image is then skipped)."""
    lesions: list[LesionAnnotation] = []
    for row in rows:
        if row[2] == "NORM":
            continue
        try:
            lesions.append(_mias_lesion(ref, row, len(lesions), shape))
        except ValueError as exc:
            return lesions, (f"{info}:{row[0]}", str(exc))
    return lesions, None


def read_mias(collection: Collection, vendor_filter: str | Sequence[str] | None,
              show_progress: bool = False) -> Collection:
    """Fill ``collection`` (its ``root`` set) from a MIAS folder (see the module docstring).

    MIAS has no manufacturer information: a non-empty vendor filter excludes every image.
    """
    root = collection.root
    info, rows_by_ref = _info_rows(root)
    if vendor_needles(vendor_filter):
        for ref, rows in sorted(rows_by_ref.items()):
            collection.exclude_by_vendor(f"{info}:{rows[0][0]} ({ref}: MIAS has no vendor tags)", None, None)
        return collection
    for ref, rows in sorted(rows_by_ref.items()):
        image_path = _find_mias_image(root, ref)
        if image_path is None:
            collection.skipped.append(SkippedFile(
                f"{info}:{rows[0][0]}", f"annotation points at a missing image {ref}.pgm/.png "
                f"in {root} or {root / 'images'}", STAGE))
            continue
        try:
            n_rows, n_cols = _image_size(image_path)
        except Exception as exc:  # PIL raises several types on broken files
            collection.skipped.append(SkippedFile(str(image_path), f"unreadable image header ({exc})", STAGE))
            continue
        lesions, problem = _mias_lesions(info, ref, rows, (n_rows, n_cols))
        if problem is not None:
            collection.skipped.append(SkippedFile(problem[0], problem[1], STAGE, "annotation"))
            continue
        number = int(ref[3:])
        collection.records.append(ImageRecord(
            image_id=ref,
            patient_id=mias_patient_id(ref),
            path=image_path,
            source_kind="mias",
            lesions=tuple(lesions),
            laterality="R" if number % 2 == 1 else "L",
            view="MLO",
            manufacturer=None,
            model_name=None,
            extra={"rows": n_rows, "cols": n_cols, "background_tissue": rows[0][1],
                   "pixel_spacing": (0.2, 0.2)},
        ))
    return collection
