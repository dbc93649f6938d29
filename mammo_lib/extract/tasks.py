"""One Dask task of stage 01: read the images of a batch, cut their patches with
:mod:`mammo_lib.extract.rules` and write them, packed, into the batch's own staging region.

Every failure of one image (unreadable file, annotation outside the image) becomes a
skipped-file row; the task itself never fails because of a bad image.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_lib import patch_store
from mammo_lib.extract.rules import STAGE, AnnotationError, ExtractionParams, extract_image_patches
from mammo_lib.sources.dicom_checks import DicomNotes, clean_message
from mammo_lib.sources.images import load_image_pixels
from mammo_lib.sources.records import ImageRecord, LesionAnnotation, SkippedFile


@dataclass
class BatchSpec:
    index: int
    records: list[ImageRecord]
    lesion_start: int
    normal_start: int
    staging_lesion: str
    staging_normal: str
    params: ExtractionParams


def run_batch(spec: BatchSpec) -> dict:
    """One Dask task: load, cut and normalise the patches of a batch of images and write them,
    packed, at the start of the batch's own chunk-aligned staging regions."""
    t_decode = t_extract = t_write = 0.0
    lesions: list[np.ndarray] = []
    normals: list[np.ndarray] = []
    lesion_rows: list[dict] = []
    normal_rows: list[dict] = []
    skipped: list[SkippedFile] = []
    notes: list[str] = []
    images_used = 0
    for record in spec.records:
        t0 = time.perf_counter()
        try:
            with DicomNotes() as read_notes:
                pixels = load_image_pixels(record)
            notes.extend(read_notes.messages)
        except Exception as exc:  # any reader error becomes a skipped-file row
            skipped.append(SkippedFile(str(record.path), _describe(exc), STAGE + ":read",
                                       getattr(exc, "kind", "unreadable")))
            t_decode += time.perf_counter() - t0
            continue
        t1 = time.perf_counter()
        t_decode += t1 - t0
        try:
            got = extract_image_patches(record, pixels, spec.params)
        except (AnnotationError, ValueError) as exc:
            skipped.append(SkippedFile(str(record.path), _describe(exc), STAGE + ":extract",
                                       "annotation"))
            t_extract += time.perf_counter() - t1
            continue
        t_extract += time.perf_counter() - t1
        images_used += 1
        skipped.extend(got.skipped)
        lesions.extend(got.lesion_patches)
        normals.extend(got.normal_patches)
        lesion_rows.extend(got.lesion_rows)
        normal_rows.extend(got.normal_rows)
    t2 = time.perf_counter()
    for patches, rows, path, start in ((lesions, lesion_rows, spec.staging_lesion, spec.lesion_start),
                                       (normals, normal_rows, spec.staging_normal, spec.normal_start)):
        if not patches:
            continue
        data = patch_store.to_uint8(np.stack(patches))
        for row, patch in zip(rows, data, strict=True):
            row["checksum"] = patch_store.patch_checksum(patch)
        arr = patch_store.open_staging_array(path, writable=True)
        arr[start:start + len(data)] = data
    t_write = time.perf_counter() - t2
    return {
        "index": spec.index,
        "lesion_rows": lesion_rows,
        "normal_rows": normal_rows,
        "skipped": [dataclasses.asdict(s) for s in skipped],
        "notes": notes,
        "images": len(spec.records),
        "images_used": images_used,
        "decode_s": t_decode,
        "extract_s": t_extract,
        "write_s": t_write,
    }


def warm_worker() -> None:
    """Run a tiny extraction once in a fresh worker (imports, lazy loaders, zarr's event loop),
    so that this start-up cost is paid with the cluster, not by the first real task."""
    rr, cc = np.mgrid[:320, :320]
    pixels = np.where((rr - 160) ** 2 + (cc - 40) ** 2 < 250**2, 1000.0, 10.0).astype(np.float32)
    record = ImageRecord("warm-up", Path("warm-up"), "phantom",
                         (LesionAnnotation("w", "mass", 160.0, 60.0, radius=80.0),))
    got = extract_image_patches(record, pixels, ExtractionParams(patch_size=64, n_normal_per_image=1))
    arr = patch_store.create_staging_array("", 1, 64, 1, store=patch_store.memory_store())
    arr[0:1] = patch_store.to_uint8(np.stack(got.lesion_patches))


def _describe(exc: BaseException) -> str:
    text = clean_message(str(exc)).strip() or type(exc).__name__
    if hasattr(exc, "kind") or type(exc).__name__ in text:  # DicomReadError: its kind is a column
        return text
    return f"{type(exc).__name__}: {text}"


