"""Stage 01: lesion-centred and normal-tissue patch extraction, on Dask, into zarr patch stores.

What one image gives (``extract_image_patches``):

- **Lesion patches**: one ``patch_size`` square per annotated lesion, centred on the lesion.
- **Normal-tissue patches**: ``n_normal_per_image`` squares drawn uniformly among the windows
  that lie inside the image, are at least ``min_breast_fraction`` breast (not mostly
  background), do not overlap any lesion's box grown by ``exclusion_margin`` pixels and, by
  default, do not overlap each other. An image with a lesion of unknown position gives no
  normal patches (no window could be shown to avoid it).

Rules, stated once here and recorded per patch in the manifest:

- **Border rule**: a window that would leave the image is *shifted* back inside it (never
  padded), so every patch is full image content; the shift (``shift_row``/``shift_col``) is
  recorded, and the lesion is then off-centre by that much. Only an image smaller than the
  window is reflect-padded (``padded`` = True).
- **Large-lesion rule** (``large_lesion``): a lesion whose extent times ``lesion_context``
  (default 1.2, a little surrounding tissue) exceeds the patch is, by default (``"resize"``),
  cropped as a square of that side centred on the lesion and resized (anti-aliased) down to
  ``patch_size``; ``scale`` = patch_size / side is recorded (1.0 for lesions that fit). The
  alternative ``"crop"`` keeps full resolution and truncates the lesion
  (``lesion_truncated`` = True). Resizing is the default because the DCGAN must see whole
  lesions: a truncated large mass is just a bright texture.
- **Annotation check**: a lesion whose window is less than ``min_lesion_breast_fraction``
  (default 25 %) breast is not extracted but reported in ``skipped_files.csv``: its annotation
  points into the air (real collections have such errors; MIAS mdb212 and mdb214 do), and a
  black "lesion" patch would poison the DCGAN's training set. A lesion centre outside the
  image skips the whole image (its annotations cannot be trusted).
- **Working resolution**: the breast mask (``datasets.breast_mask``), the equalisation CDF and
  the normal-window search use a copy subsampled to at most ``MASK_LONG_SIDE`` (256) pixels on
  its long side, so their cost does not grow with the detector size; patches are always cut
  from the full-resolution image, and ``breast_fraction`` is measured on that grid.
- **Histogram normalisation** (``normalisation``), the paper's "histogram normalisation":

  - ``"equalize_image"`` (default): histogram equalisation of each whole image, the CDF computed
    from breast pixels only (as ``skimage.exposure.equalize_hist(image, mask=breast)``). This
    removes vendor, exposure and bit-depth differences (OMI-DB mixes 12-16 bit detectors and
    processed/unprocessed images) while keeping the contrast *between* a lesion and the tissue
    around it within one image, which is exactly what readers judge. Computing the CDF inside
    the breast keeps the large air background from dominating it.
  - ``"equalize_patch"``: equalisation of each patch on its own. Every patch then fills the
    full grey range, so a faint lesion looks as contrasty as a dense one; offered for
    comparison.
  - ``"none"``: linear scaling of each image's own min..max to 0..1 (needed only to store
    uint8).

Scale: images are processed in batches (one Dask task per batch) on a ``LocalCluster`` of
``n_workers`` processes (or a real cluster at ``scheduler_address``; ``n_workers=0`` runs in
this process). Slots are planned from the annotations up front: batch *b* owns a chunk-aligned
region of a *staging* zarr array big enough for every lesion of its images and
``n_normal_per_image`` normal patches per image, so workers write in parallel without ever
touching the same chunk. A worker packs the patches it did make at the start of its region;
after all tasks, a compaction pass copies the filled slots, in image order, into the final
stores (``lesion.zarr``, ``normal.zarr``) and deletes the staging arrays. Unfilled slots
(skipped images, breasts too small for more normal windows) thus never reach the final store,
and the order of patches depends only on the inputs, never on which worker finished first.

With ``scheduler_address`` the workers of that cluster write the stores themselves, so
``out_dir`` must be on a file system they share with this process (as on any HPC cluster).

Determinism: each image has its own random generator seeded from ``(seed, image_id)``, so the
same seed and inputs give identical patches for any number of workers or batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import zarr

from mammo_lib import patch_store
from mammo_lib.fileio import atomic_write_text
from mammo_lib.records import ImageRecord, LesionAnnotation, SkippedFile

if TYPE_CHECKING:
    from mammo_lib.datasets import Collection

NORMALISATIONS = ("equalize_image", "equalize_patch", "none")
LARGE_LESION_POLICIES = ("resize", "crop")
STAGE = "01_extract_patches"
SKIPPED_COLUMNS = ("path", "problem", "stage")
#: Long side (pixels) of the subsampled image used for the breast mask, the equalisation CDF
#: and the normal-window search; the patches themselves are always cut at full resolution.
MASK_LONG_SIDE = 256


class ExtractionError(RuntimeError):
    """Extraction cannot produce anything usable; the message says why and what to do."""


class AnnotationError(ValueError):
    """An annotation does not fit its image (e.g. a centre outside the image)."""


@dataclass(frozen=True)
class ExtractionParams:
    """All knobs of the extraction (recorded in ``extraction.json``)."""

    patch_size: int = 128
    n_normal_per_image: int = 10
    normalisation: str = "equalize_image"
    large_lesion: str = "resize"
    lesion_context: float = 1.2  # side of a large-lesion crop = extent * lesion_context
    exclusion_margin: int = 16  # pixels around each lesion box that normal windows avoid
    min_breast_fraction: float = 0.9
    min_lesion_breast_fraction: float = 0.25  # below: the lesion annotation is in the air
    normal_overlap: bool = False  # may two normal windows of one image overlap?
    equalize_bins: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation {self.normalisation!r} is not one of {NORMALISATIONS}"
            )
        if self.large_lesion not in LARGE_LESION_POLICIES:
            raise ValueError(
                f"large_lesion {self.large_lesion!r} is not one of {LARGE_LESION_POLICIES}"
            )
        if self.patch_size < 8:
            raise ValueError(f"patch_size must be at least 8 pixels, got {self.patch_size}")
        if self.n_normal_per_image < 0:
            raise ValueError(f"n_normal_per_image must be >= 0, got {self.n_normal_per_image}")
        if not 0.0 <= self.min_breast_fraction <= 1.0:
            raise ValueError(f"min_breast_fraction must be in [0, 1], got {self.min_breast_fraction}")
        if self.lesion_context < 1.0:
            raise ValueError(f"lesion_context must be >= 1, got {self.lesion_context}")


# --------------------------------------------------------------------------- geometry helpers


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The random generator of one image: depends only on the seed and the image id."""
    digest = int(hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:16], 16)
    return np.random.default_rng([int(seed), digest])


def place_window(center: float, size: int, length: int) -> tuple[int, int]:
    """Start of a ``size`` window centred on ``center`` and shifted to lie inside ``length``.

    Returns ``(start, shift)``; ``shift`` is how far the window moved from the centred
    position (positive = moved towards higher indices). If ``length < size`` the centred start
    is returned unchanged (the caller pads).
    """
    start0 = int(math.floor(center - size / 2.0 + 0.5))
    if length >= size:
        start = min(max(start0, 0), length - size)
    else:
        start = start0
    return start, start - start0


def lesion_box(lesion: LesionAnnotation) -> tuple[float, float, float, float]:
    """``(row0, col0, row1, col1)`` of a lesion: its bbox, else centre +- radius, else the point."""
    if lesion.bbox is not None:
        return tuple(float(v) for v in lesion.bbox)  # type: ignore[return-value]
    r = float(lesion.radius or 0.0)
    return (lesion.center_row - r, lesion.center_col - r, lesion.center_row + r + 1,
            lesion.center_col + r + 1)


def _has_position(lesion: LesionAnnotation) -> bool:
    return lesion.center_row is not None and lesion.center_col is not None and bool(
        np.isfinite(lesion.center_row) and np.isfinite(lesion.center_col))


def check_annotations(record: ImageRecord, shape: tuple[int, int]) -> None:
    """Raise :class:`AnnotationError` when a lesion centre lies outside the image."""
    h, w = shape
    for lesion in record.lesions:
        if not _has_position(lesion):
            continue
        if not (0 <= lesion.center_row < h and 0 <= lesion.center_col < w):
            raise AnnotationError(
                f"lesion {lesion.lesion_id!r} centre (row {lesion.center_row:.0f}, col "
                f"{lesion.center_col:.0f}) lies outside the {h}x{w} image: the annotation "
                "does not belong to this image or uses another coordinate origin"
            )


# ------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class IntensityTransform:
    """An image-level grey-level mapping to [0, 1] (equalisation CDF or linear range)."""

    kind: str
    xp: np.ndarray  # sample points (bin centres, or [lo, hi])
    fp: np.ndarray  # values at those points, in [0, 1]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float32)
        n = len(self.xp)
        step = (self.xp[-1] - self.xp[0]) / (n - 1) if n >= 2 else 0.0
        if step <= 0:
            return np.interp(values, self.xp, self.fp).astype(np.float32)
        # uniform sample points: the same piecewise-linear interpolation as np.interp, by
        # direct indexing (several times faster than np.interp's binary search)
        pos = np.clip((values - np.float32(self.xp[0])) / np.float32(step), 0.0, n - 1.0)
        idx = np.minimum(pos.astype(np.int32), n - 2)
        frac = pos - idx
        fp = self.fp.astype(np.float32)
        return fp[idx] + frac * (fp[idx + 1] - fp[idx])


def equalisation_transform(values: np.ndarray, nbins: int = 256) -> IntensityTransform:
    """Histogram-equalisation CDF of ``values`` (as ``skimage.exposure.equalize_hist``)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("cannot equalise an empty set of pixels")
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return IntensityTransform("equalize", np.array([lo, lo + 1.0]), np.array([0.5, 0.5]))
    hist, edges = np.histogram(values, bins=nbins, range=(lo, hi))
    cdf = np.cumsum(hist, dtype=np.float64)
    cdf /= cdf[-1]
    centres = (edges[:-1] + edges[1:]) / 2.0
    return IntensityTransform("equalize", centres, cdf)


def linear_transform(values: np.ndarray) -> IntensityTransform:
    """Linear map of ``values``' min..max onto 0..1."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        hi = lo + 1.0
    return IntensityTransform("linear", np.array([lo, hi]), np.array([0.0, 1.0]))


def subsample_stride(shape: tuple[int, int], long_side: int = MASK_LONG_SIDE) -> int:
    """Stride that brings the image's long side down to about ``long_side`` pixels."""
    return max(1, int(math.ceil(max(shape) / float(long_side))))


def _default_breast_mask(pixels: np.ndarray) -> np.ndarray:
    from mammo_lib import datasets

    return np.asarray(datasets.breast_mask(pixels), dtype=bool)


def _default_loader(record: ImageRecord) -> np.ndarray:
    from mammo_lib import datasets

    return datasets.load_image_pixels(record)


# ------------------------------------------------------------------------- one image


@dataclass
class ImagePatches:
    """What one image gave: patches (float32 in [0, 1]) and their manifest rows."""

    lesion_patches: list[np.ndarray] = field(default_factory=list)
    lesion_rows: list[dict] = field(default_factory=list)
    normal_patches: list[np.ndarray] = field(default_factory=list)
    normal_rows: list[dict] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    breast_fraction: float = 0.0


def _crop(pixels: np.ndarray, r0: int, c0: int, size: int) -> tuple[np.ndarray, bool]:
    """``size`` square at (r0, c0); reflect-pads only if the image is smaller than ``size``."""
    h, w = pixels.shape
    if h >= size and w >= size:
        return pixels[r0:r0 + size, c0:c0 + size], False
    pad_r, pad_c = max(0, size - h), max(0, size - w)
    padded = np.pad(pixels, ((pad_r, pad_r), (pad_c, pad_c)), mode="symmetric")
    rr = min(max(r0 + pad_r, 0), padded.shape[0] - size)
    cc = min(max(c0 + pad_c, 0), padded.shape[1] - size)
    return padded[rr:rr + size, cc:cc + size], True


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    if crop.shape == (size, size):
        return crop
    from skimage.transform import resize

    return resize(crop, (size, size), order=1, anti_aliasing=True, preserve_range=True,
                  mode="reflect").astype(np.float32)


def _finish_patch(raw: np.ndarray, params: ExtractionParams,
                  transform: IntensityTransform | None) -> np.ndarray:
    """Normalise one raw float patch to float32 in [0, 1]."""
    if params.normalisation == "equalize_patch":
        return equalisation_transform(raw, params.equalize_bins)(raw)
    assert transform is not None
    return transform(raw)


def image_transform(pixels: np.ndarray, mask_lr: np.ndarray, stride: int,
                    params: ExtractionParams) -> IntensityTransform | None:
    """The image-level grey-level transform for ``params.normalisation`` (None per patch)."""
    if params.normalisation == "equalize_patch":
        return None
    if params.normalisation == "none":
        return linear_transform(pixels)
    sample = pixels[::stride, ::stride]
    breast = sample[mask_lr] if mask_lr.any() else sample
    return equalisation_transform(breast, params.equalize_bins)


def normal_windows(mask_lr: np.ndarray, stride: int, shape: tuple[int, int],
                   boxes: Sequence[tuple[float, float, float, float]], n: int,
                   params: ExtractionParams, rng: np.random.Generator
                   ) -> list[tuple[int, int, float]]:
    """Top-left corners (full resolution) and breast fractions of up to ``n`` normal windows.

    Candidates are the top-left corners on the subsampled grid whose window lies inside the
    image, is at least ``min_breast_fraction`` breast (measured on the subsampled mask) and
    stays clear of every lesion box grown by ``exclusion_margin`` (conservatively, by one
    grid step more). Windows are drawn uniformly among the candidates; unless
    ``normal_overlap``, each draw removes the candidates whose window would overlap it.
    """
    size = params.patch_size
    h, w = shape
    if n <= 0 or h < size or w < size:
        return []
    win = max(1, int(round(size / stride)))
    n_r = (h - size) // stride + 1  # top-left rows i*stride with i*stride + size <= h
    n_c = (w - size) // stride + 1
    m = mask_lr.astype(np.float64)
    integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    integral[1:, 1:] = m.cumsum(0).cumsum(1)
    n_r = min(n_r, m.shape[0] - win + 1)
    n_c = min(n_c, m.shape[1] - win + 1)
    if n_r <= 0 or n_c <= 0:
        return []
    sums = (integral[win:win + n_r, win:win + n_c] - integral[:n_r, win:win + n_c]
            - integral[win:win + n_r, :n_c] + integral[:n_r, :n_c])
    fraction = sums / float(win * win)
    valid = fraction >= params.min_breast_fraction
    margin = params.exclusion_margin
    for (r0, c0, r1, c1) in boxes:
        # a window [t, t+size) overlaps [r0-margin, r1+margin) iff r0-margin-size < t < r1+margin
        i_lo = int(math.floor((r0 - margin - size) / stride))
        i_hi = int(math.ceil((r1 + margin) / stride))
        j_lo = int(math.floor((c0 - margin - size) / stride))
        j_hi = int(math.ceil((c1 + margin) / stride))
        valid[max(0, i_lo):max(0, i_hi + 1), max(0, j_lo):max(0, j_hi + 1)] = False
    chosen: list[tuple[int, int, float]] = []
    block = int(math.ceil(size / stride))
    for _ in range(n):
        cand = np.flatnonzero(valid)
        if cand.size == 0:
            break
        k = int(cand[rng.integers(cand.size)])
        i, j = divmod(k, valid.shape[1])
        chosen.append((i * stride, j * stride, float(fraction[i, j])))
        if params.normal_overlap:
            valid[i, j] = False
        else:
            valid[max(0, i - block + 1):i + block, max(0, j - block + 1):j + block] = False
    return chosen


def window_breast_fraction(mask_lr: np.ndarray, stride: int, r0: int, c0: int, size: int) -> float:
    """Share of breast (subsampled mask) in the full-resolution window at (r0, c0)."""
    i0, j0 = max(0, r0 // stride), max(0, c0 // stride)
    i1 = max(i0 + 1, int(math.ceil((r0 + size) / stride)))
    j1 = max(j0 + 1, int(math.ceil((c0 + size) / stride)))
    part = mask_lr[i0:i1, j0:j1]
    return float(part.mean()) if part.size else 0.0


def _boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _base_row(record: ImageRecord, group: str, params: ExtractionParams) -> dict:
    return {
        "group": group,
        "source_kind": record.source_kind,
        "image_id": record.image_id,
        "normalisation": params.normalisation,
        "vendor": record.manufacturer or "",
        "model_name": record.model_name or "",
        "laterality": record.laterality or "",
        "view": record.view or "",
    }


def extract_image_patches(record: ImageRecord, pixels: np.ndarray, params: ExtractionParams,
                          mask_fn: Callable[[np.ndarray], np.ndarray] | None = None
                          ) -> ImagePatches:
    """All lesion and normal patches of one image (pixels already loaded, float, bright=dense).

    Raises :class:`AnnotationError` when an annotation lies outside the image (the caller
    skips the whole image: its annotations cannot be trusted).
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"{record.path}: expected a 2-D grey image, got shape {pixels.shape}")
    check_annotations(record, pixels.shape)
    mask_fn = mask_fn or _default_breast_mask
    h, w = pixels.shape
    size = params.patch_size
    stride = subsample_stride(pixels.shape)
    mask_lr = np.asarray(mask_fn(pixels[::stride, ::stride]), dtype=bool)
    transform = image_transform(pixels, mask_lr, stride, params)
    out = ImagePatches(breast_fraction=float(mask_lr.mean()))
    rng = image_rng(params.seed, record.image_id)

    boxes = []
    unknown_position = False
    for lesion in record.lesions:
        if not _has_position(lesion):
            unknown_position = True
            out.skipped.append(SkippedFile(
                str(record.path),
                f"lesion {lesion.lesion_id!r} ({lesion.lesion_class}) has no position: no lesion "
                "patch, and no normal patches from this image", STAGE))
            continue
        box = lesion_box(lesion)
        boxes.append(box)
        ext_h, ext_w = lesion.extent()
        side = max(ext_h, ext_w) * params.lesion_context
        large = side > size
        if large and params.large_lesion == "resize":
            window = min(int(math.ceil(side)), max(size, min(h, w)))
        else:
            window = size
        r0, shift_r = place_window(lesion.center_row, window, h)
        c0, shift_c = place_window(lesion.center_col, window, w)
        lesion_fraction = window_breast_fraction(mask_lr, stride, r0, c0, window)
        if lesion_fraction < params.min_lesion_breast_fraction:
            out.skipped.append(SkippedFile(
                str(record.path),
                f"lesion {lesion.lesion_id!r} ({lesion.lesion_class}) at (row "
                f"{lesion.center_row:.0f}, col {lesion.center_col:.0f}): its window is only "
                f"{100 * lesion_fraction:.0f}% breast, so the annotation most likely points into "
                "the background (an annotation error); no lesion patch made", STAGE))
            continue
        crop, padded = _crop(pixels, r0, c0, window)
        patch = _finish_patch(_resize(crop, size), params, transform)
        row = _base_row(record, "lesion", params)
        row.update(
            patch_id=f"{record.image_id}-{lesion.lesion_id}",
            lesion_id=lesion.lesion_id,
            lesion_class=lesion.lesion_class,
            center_row=int(r0 + window // 2),
            center_col=int(c0 + window // 2),
            lesion_center_row=round(float(lesion.center_row), 1),
            lesion_center_col=round(float(lesion.center_col), 1),
            lesion_extent=round(float(max(ext_h, ext_w)), 1),
            pathology=lesion.pathology or "",
            window_size=int(window),
            scale=round(size / window, 6),
            shift_row=int(shift_r),
            shift_col=int(shift_c),
            padded=bool(padded),
            lesion_truncated=bool(params.large_lesion == "crop" and max(ext_h, ext_w) > size),
            breast_fraction=round(lesion_fraction, 4),
        )
        out.lesion_patches.append(patch)
        out.lesion_rows.append(row)

    if not unknown_position:
        windows = normal_windows(mask_lr, stride, (h, w), boxes, params.n_normal_per_image,
                                 params, rng)
        margin = params.exclusion_margin
        grown = [(b[0] - margin, b[1] - margin, b[2] + margin, b[3] + margin) for b in boxes]
        for k, (r0, c0, frac) in enumerate(windows):
            win_box = (r0, c0, r0 + size, c0 + size)
            if any(_boxes_overlap(win_box, g) for g in grown):  # pragma: no cover - by design
                raise AssertionError(f"{record.image_id}: normal window {win_box} hits a lesion")
            raw = pixels[r0:r0 + size, c0:c0 + size]
            row = _base_row(record, "normal", params)
            row.update(
                patch_id=f"{record.image_id}-n{k:03d}",
                lesion_id="",
                lesion_class="normal",
                center_row=int(r0 + size // 2),
                center_col=int(c0 + size // 2),
                lesion_center_row=float("nan"),
                lesion_center_col=float("nan"),
                lesion_extent=float("nan"),
                pathology="",
                window_size=size,
                scale=1.0,
                shift_row=0,
                shift_col=0,
                padded=False,
                lesion_truncated=False,
                breast_fraction=round(frac, 4),
            )
            out.normal_patches.append(_finish_patch(raw, params, transform))
            out.normal_rows.append(row)
    return out


# ------------------------------------------------------------------------- batches (Dask tasks)


@dataclass
class _BatchSpec:
    index: int
    records: list[ImageRecord]
    lesion_start: int
    normal_start: int
    staging_lesion: str
    staging_normal: str
    params: ExtractionParams


def _run_batch(spec: _BatchSpec) -> dict:
    """One Dask task: load, cut and normalise the patches of a batch of images and write them,
    packed, at the start of the batch's own chunk-aligned staging regions."""
    t_decode = t_extract = t_write = 0.0
    lesions: list[np.ndarray] = []
    normals: list[np.ndarray] = []
    lesion_rows: list[dict] = []
    normal_rows: list[dict] = []
    skipped: list[SkippedFile] = []
    images_used = 0
    for record in spec.records:
        t0 = time.perf_counter()
        try:
            pixels = _default_loader(record)
        except Exception as exc:  # any reader error becomes a skipped-file row
            skipped.append(SkippedFile(str(record.path), _describe(exc), STAGE + ":read"))
            t_decode += time.perf_counter() - t0
            continue
        t1 = time.perf_counter()
        t_decode += t1 - t0
        try:
            got = extract_image_patches(record, pixels, spec.params)
        except (AnnotationError, ValueError) as exc:
            skipped.append(SkippedFile(str(record.path), _describe(exc), STAGE + ":extract"))
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
        arr = zarr.open_array(store=path, mode="r+")
        arr[start:start + len(data)] = data
    t_write = time.perf_counter() - t2
    return {
        "index": spec.index,
        "lesion_rows": lesion_rows,
        "normal_rows": normal_rows,
        "skipped": [dataclasses.asdict(s) for s in skipped],
        "images": len(spec.records),
        "images_used": images_used,
        "decode_s": t_decode,
        "extract_s": t_extract,
        "write_s": t_write,
    }


def _warm_worker() -> None:
    """Run a tiny extraction once in a fresh worker (imports, lazy loaders, zarr's event loop),
    so that this start-up cost is paid with the cluster, not by the first real task."""
    rr, cc = np.mgrid[:320, :320]
    pixels = np.where((rr - 160) ** 2 + (cc - 40) ** 2 < 250**2, 1000.0, 10.0).astype(np.float32)
    record = ImageRecord("warm-up", Path("warm-up"), "phantom",
                         (LesionAnnotation("w", "mass", 160.0, 60.0, radius=80.0),))
    got = extract_image_patches(record, pixels, ExtractionParams(patch_size=64, n_normal_per_image=1))
    arr = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(1, 64, 64), dtype="uint8")
    arr[0:1] = patch_store.to_uint8(np.stack(got.lesion_patches))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


# ------------------------------------------------------------------------- the whole run


@dataclass
class ExtractionResult:
    """Summary of one extraction run (also written to ``extraction.json``)."""

    out_dir: Path
    lesion_store: Path
    normal_store: Path
    skipped_path: Path
    summary_path: Path
    n_images: int
    n_images_used: int
    n_lesion: int
    n_normal: int
    counts_by_class: dict
    skipped: list[SkippedFile]
    excluded_by_vendor: int
    timings: dict
    parameters: dict

    @property
    def n_patches(self) -> int:
        return self.n_lesion + self.n_normal

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(s) for s in self.skipped], columns=SKIPPED_COLUMNS)


def vendor_matches(record: ImageRecord, vendor_filter: Sequence[str] | None) -> bool:
    """True when no filter is set or any filter string occurs (case-insensitively) in the
    record's Manufacturer or ManufacturerModelName (e.g. "Selenia Dimensions", "HOLOGIC")."""
    if not vendor_filter:
        return True
    if isinstance(vendor_filter, str):
        vendor_filter = [vendor_filter]
    text = f"{record.manufacturer or ''} | {record.model_name or ''}".lower()
    return any(str(v).lower() in text for v in vendor_filter)


def _plan_batches(records: list[ImageRecord], images_per_task: int, n_normal: int,
                  chunk: int) -> tuple[list[tuple[list[ImageRecord], int, int]], int, int]:
    """Split records into batches and give each chunk-aligned lesion and normal regions."""
    batches = []
    lesion_pos = normal_pos = 0
    for k in range(0, len(records), images_per_task):
        recs = records[k:k + images_per_task]
        n_les = sum(len(r.lesions) for r in recs)
        n_nor = n_normal * len(recs)
        batches.append((recs, lesion_pos, normal_pos))
        lesion_pos += int(math.ceil(n_les / chunk)) * chunk
        normal_pos += int(math.ceil(n_nor / chunk)) * chunk
    return batches, lesion_pos, normal_pos


def _write_skipped(path: Path, skipped: list[SkippedFile]) -> None:
    table = pd.DataFrame([dataclasses.asdict(s) for s in skipped], columns=SKIPPED_COLUMNS)
    atomic_write_text(path, table.to_csv(index=False))


def _compact(staging: str, results: list[dict], key: str, starts: dict[int, int],
             final_path: Path, params: ExtractionParams, attrs: dict) -> pd.DataFrame:
    """Copy the filled staging slots, in batch (= image) order, into the final store.

    Works one final chunk at a time: the staging slots of that chunk form one contiguous span
    (batch regions are in order and packed from their start), read with a single zarr call.
    """
    rows = [row for res in results for row in res[key]]
    total = len(rows)
    arr = patch_store.create_patch_store(final_path, total, params.patch_size, attrs=attrs)
    if total:
        src = zarr.open_array(store=staging, mode="r")
        slots = np.concatenate([starts[res["index"]] + np.arange(len(res[key]))
                                for res in results if res[key]])
        block = arr.chunks[0]
        for pos in range(0, total, block):
            idx = slots[pos:pos + block]
            span = np.asarray(src[int(idx[0]):int(idx[-1]) + 1])
            arr[pos:pos + len(idx)] = span[idx - idx[0]]
    manifest = pd.DataFrame(rows)
    if manifest.empty:
        manifest = pd.DataFrame(columns=list(patch_store.MANIFEST_COLUMNS))
    patch_store.write_manifest(final_path, manifest)
    return manifest


def extract_patches(
    collection: Collection | Sequence[ImageRecord],
    out_dir: str | os.PathLike,
    *,
    patch_size: int = 128,
    n_normal_per_image: int = 10,
    normalisation: str = "equalize_image",
    large_lesion: str = "resize",
    vendor_filter: Sequence[str] | None = None,
    seed: int = 0,
    n_workers: int = 2,
    scheduler_address: str | None = None,
    images_per_task: int | None = None,
    staging_chunk: int = 32,
    progress: bool = True,
    **extra_params,
) -> ExtractionResult:
    """Extract lesion and normal patches from a collection into ``out_dir`` (= <run>/patches).

    ``collection`` is a ``datasets.Collection`` or a list of :class:`ImageRecord`. Writes
    ``lesion.zarr`` and ``normal.zarr`` (+ manifest.csv each), ``skipped_files.csv`` and
    ``extraction.json``. ``n_workers=0`` runs in this process; otherwise a Dask LocalCluster of
    ``n_workers`` single-threaded processes, or the cluster at ``scheduler_address``.
    Further keyword arguments are fields of :class:`ExtractionParams` (e.g.
    ``exclusion_margin``, ``min_breast_fraction``). Raises :class:`ExtractionError` when no
    patch at all could be made (after writing ``skipped_files.csv``).
    """
    t_start = time.perf_counter()
    params = ExtractionParams(patch_size=int(patch_size), n_normal_per_image=int(n_normal_per_image),
                              normalisation=normalisation, large_lesion=large_lesion,
                              seed=int(seed), **extra_params)
    if isinstance(vendor_filter, str):  # one name given on its own
        vendor_filter = [vendor_filter]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped_path = out_dir / "skipped_files.csv"
    summary_path = out_dir / "extraction.json"

    if isinstance(collection, (list, tuple)):
        records = list(collection)
        skipped: list[SkippedFile] = []
        source = {"kind": records[0].source_kind if records else "", "root": ""}
        excluded_by_vendor = 0
    else:
        records = list(collection.records)
        skipped = list(getattr(collection, "skipped", []))
        source = {"kind": collection.kind, "root": str(collection.root)}
        excluded_by_vendor = int(getattr(collection, "excluded_by_vendor", 0))
    kept = [r for r in records if vendor_matches(r, vendor_filter)]
    excluded_by_vendor += len(records) - len(kept)
    records = sorted(kept, key=lambda r: (r.image_id, str(r.path)))
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ExtractionError(f"image ids are not unique (e.g. {dup}): patch ids would collide")
    if not records:
        _write_skipped(skipped_path, skipped)
        why = (f"the vendor filter {list(vendor_filter)} excluded all {excluded_by_vendor} images"
               if excluded_by_vendor else "the collection has no images")
        raise ExtractionError(f"nothing to extract from {source['root'] or 'the given records'}: "
                              f"{why}; {len(skipped)} files were skipped (see {skipped_path})")

    n_workers = int(n_workers)
    parallel = n_workers > 0 or bool(scheduler_address)
    if images_per_task is None:
        lanes = max(1, n_workers)
        images_per_task = max(1, min(64, int(math.ceil(len(records) / (lanes * 6)))))
    batches, lesion_cap, normal_cap = _plan_batches(records, int(images_per_task),
                                                    params.n_normal_per_image, staging_chunk)
    # a new run first removes the outputs of an earlier one, so that a run killed half-way
    # never leaves stores or a summary that look finished (manifest.csv and extraction.json
    # are written last, atomically)
    for old_output in (out_dir / "lesion.zarr", out_dir / "normal.zarr", summary_path):
        if old_output.is_dir():
            shutil.rmtree(old_output)
        elif old_output.exists():
            old_output.unlink()
    staging_dir = out_dir / "_staging"
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    staging_lesion = str(staging_dir / "lesion.zarr")
    staging_normal = str(staging_dir / "normal.zarr")
    for path, cap in ((staging_lesion, lesion_cap), (staging_normal, normal_cap)):
        zarr.create_array(store=path, shape=(cap, patch_size, patch_size),
                          chunks=(staging_chunk, patch_size, patch_size), dtype="uint8",
                          fill_value=0, overwrite=True, compressors=None)
    specs = [_BatchSpec(i, recs, ls, ns, staging_lesion, staging_normal, params)
             for i, (recs, ls, ns) in enumerate(batches)]
    t_plan = time.perf_counter()

    from tqdm.auto import tqdm

    bar = tqdm(total=len(records), unit="img", desc="extract patches", disable=not progress)
    results: list[dict] = []
    t_cluster = t_shutdown = 0.0
    if not parallel:
        for spec in specs:
            res = _run_batch(spec)
            results.append(res)
            bar.update(res["images"])
    else:
        tc = time.perf_counter()
        from dask.distributed import Client, LocalCluster, as_completed

        if scheduler_address:
            cluster = None
            client = Client(scheduler_address)
        else:
            import logging

            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL)
            client = Client(cluster)
        try:
            client.run(_warm_worker)  # imports once per worker, counted as start-up
            t_cluster = time.perf_counter() - tc
            futures = [client.submit(_run_batch, spec, pure=False) for spec in specs]
            for fut in as_completed(futures):
                res = fut.result()
                results.append(res)
                bar.update(res["images"])
        finally:
            t_stop = time.perf_counter()
            client.close()
            if cluster is not None:
                cluster.close()
            t_shutdown = time.perf_counter() - t_stop
    bar.close()
    t_extract = time.perf_counter() - t_shutdown

    results.sort(key=lambda r: r["index"])
    for res in results:
        skipped.extend(SkippedFile(**s) for s in res["skipped"])
    _write_skipped(skipped_path, skipped)
    n_lesion = sum(len(r["lesion_rows"]) for r in results)
    n_normal = sum(len(r["normal_rows"]) for r in results)
    if n_lesion + n_normal == 0:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise ExtractionError(
            f"no patch could be extracted from {len(records)} images "
            f"({len(skipped)} files skipped; see {skipped_path} for each file and its problem)")

    attrs = {"stage": STAGE, "normalisation": params.normalisation, "seed": params.seed,
             "source_kind": source["kind"]}
    lesion_starts = {s.index: s.lesion_start for s in specs}
    normal_starts = {s.index: s.normal_start for s in specs}
    lesion_manifest = _compact(staging_lesion, results, "lesion_rows", lesion_starts,
                               out_dir / "lesion.zarr", params, {**attrs, "group": "lesion"})
    _compact(staging_normal, results, "normal_rows", normal_starts, out_dir / "normal.zarr",
             params, {**attrs, "group": "normal"})
    shutil.rmtree(staging_dir, ignore_errors=True)
    t_end = time.perf_counter()

    counts_by_class = {str(k): int(v) for k, v in
                       lesion_manifest["lesion_class"].value_counts().sort_index().items()} \
        if n_lesion else {}
    counts_by_class["normal"] = n_normal
    n_used = sum(r["images_used"] for r in results)
    timings = {
        "plan_s": round(t_plan - t_start, 3),
        "cluster_start_s": round(t_cluster, 3),
        "extract_wall_s": round(t_extract - t_plan - t_cluster, 3),
        "cluster_stop_s": round(t_shutdown, 3),
        "compaction_s": round(t_end - t_extract - t_shutdown, 3),
        "total_s": round(t_end - t_start, 3),
        "worker_decode_s": round(sum(r["decode_s"] for r in results), 3),
        "worker_extract_s": round(sum(r["extract_s"] for r in results), 3),
        "worker_write_s": round(sum(r["write_s"] for r in results), 3),
    }
    parameters = {**dataclasses.asdict(params), "vendor_filter": list(vendor_filter or []),
                  "n_workers": n_workers, "scheduler_address": scheduler_address or "",
                  "images_per_task": int(images_per_task), "source": source}
    result = ExtractionResult(
        out_dir=out_dir, lesion_store=out_dir / "lesion.zarr", normal_store=out_dir / "normal.zarr",
        skipped_path=skipped_path, summary_path=summary_path, n_images=len(records),
        n_images_used=n_used, n_lesion=n_lesion, n_normal=n_normal,
        counts_by_class=counts_by_class, skipped=skipped, excluded_by_vendor=excluded_by_vendor,
        timings=timings, parameters=parameters)
    summary = {
        "stage": STAGE,
        "parameters": parameters,
        "counts": {
            "images": len(records), "images_used": n_used,
            "images_skipped": len(records) - n_used, "excluded_by_vendor": excluded_by_vendor,
            "skipped_rows": len(skipped), "lesion_patches": n_lesion, "normal_patches": n_normal,
            "normal_slots_unfilled": params.n_normal_per_image * n_used - n_normal
            if params.n_normal_per_image else 0,
            "by_class": counts_by_class,
        },
        "timings": timings,
    }
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    return result


# ------------------------------------------------------------------------- verification


def _manifest_of(patch_dir: Path, group: str) -> pd.DataFrame:
    store = patch_store.open_patch_store(Path(patch_dir) / f"{group}.zarr", require_nonempty=False)
    return store.manifest


def verify_against_manifest(patch_dir: str | os.PathLike, manifest_dir: str | os.PathLike) -> list[str]:
    """Patch ids that differ between a run's stores and a reference manifest folder.

    ``manifest_dir`` holds ``lesion_manifest.csv`` and ``normal_manifest.csv`` (as written by
    :func:`write_reference_manifest`). A patch id whose checksum differs, that is missing from
    the run, or that the run has in excess is reported; so is one whose stored bytes no longer
    match the run's own manifest. An empty list means the run reproduced the reference exactly.
    """
    patch_dir, manifest_dir = Path(patch_dir), Path(manifest_dir)
    bad: set[str] = set()
    for group in ("lesion", "normal"):
        ref_path = manifest_dir / f"{group}_manifest.csv"
        if not ref_path.exists():
            raise FileNotFoundError(f"reference manifest {ref_path} does not exist")
        ref = pd.read_csv(ref_path, dtype={"patch_id": str, "checksum": str}, keep_default_na=False)
        store = patch_store.open_patch_store(patch_dir / f"{group}.zarr", require_nonempty=False)
        bad.update(store.verify_checksums())
        run = dict(zip(store.manifest["patch_id"], store.manifest["checksum"], strict=True))
        want = dict(zip(ref["patch_id"], ref["checksum"], strict=True))
        bad.update(pid for pid in want if run.get(pid) != want[pid])
        bad.update(pid for pid in run if pid not in want)
    return sorted(bad)


REFERENCE_COLUMNS = ("patch_id", "group", "source_kind", "image_id", "lesion_id", "lesion_class",
                     "center_row", "center_col", "normalisation", "checksum", "vendor",
                     "laterality", "view", "scale", "shift_row", "shift_col", "breast_fraction")


def reference_parameters(parameters: dict) -> dict:
    """The settings that decide a run's patches (from ``ExtractionResult.parameters`` or
    ``extraction.json``), to check that a rerun is comparable with a reference. For a generated
    phantom the generator's own settings (``PHANTOM.json``) stand in for the source path."""
    out = {key: parameters[key] for key in (
        "patch_size", "n_normal_per_image", "normalisation", "large_lesion", "lesion_context",
        "exclusion_margin", "min_breast_fraction", "min_lesion_breast_fraction", "normal_overlap",
        "equalize_bins", "seed",
        "vendor_filter")}
    source = parameters.get("source", {})
    out["source_kind"] = source.get("kind", "")
    info_path = Path(source.get("root", "")) / "PHANTOM.json"
    if source.get("root") and info_path.is_file():
        info = patch_store.read_json(info_path)
        out["source"] = "built-in phantom"
        out["phantom"] = {"version": info.get("version"), **info.get("parameters", {})}
    else:
        out["source"] = source.get("root", "")
    return out


def write_reference_manifest(patch_dir: str | os.PathLike, manifest_dir: str | os.PathLike,
                             parameters: dict | None = None) -> list[Path]:
    """Copy a run's manifests (the audit columns, no image data) and, when given, the settings
    (:func:`reference_parameters`) into ``manifest_dir``."""
    manifest_dir = Path(manifest_dir)
    manifest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if parameters is not None:
        path = manifest_dir / "parameters.json"
        atomic_write_text(path, json.dumps(parameters, indent=2, sort_keys=True) + "\n")
        written.append(path)
    for group in ("lesion", "normal"):
        table = _manifest_of(Path(patch_dir), group)
        cols = [c for c in REFERENCE_COLUMNS if c in table.columns]
        path = manifest_dir / f"{group}_manifest.csv"
        atomic_write_text(path, table[cols].to_csv(index=False))
        written.append(path)
    return written


# ------------------------------------------------------------------------- notebook helpers


def read_summary(out_dir: str | os.PathLike) -> dict:
    """``extraction.json`` of a finished extraction (parameters, counts, timings)."""
    return patch_store.read_json(Path(out_dir) / "extraction.json")


def intensity_samples(records: Sequence[ImageRecord], normalisation: str = "equalize_image",
                      max_values: int = 20000, seed: int = 0) -> list[dict]:
    """Breast-pixel grey levels of some images before and after the image-level normalisation
    (for the notebook's histograms). ``equalize_patch`` is shown with the linear map, since it
    has no image-level transform; its effect is visible in the stored patches."""
    params = ExtractionParams(normalisation="none" if normalisation == "equalize_patch"
                              else normalisation)
    out = []
    for record in records:
        pixels = _default_loader(record)
        stride = subsample_stride(pixels.shape)
        mask_lr = _default_breast_mask(pixels[::stride, ::stride])
        transform = image_transform(pixels, mask_lr, stride, params)
        values = pixels[::stride, ::stride][mask_lr]
        if values.size > max_values:
            values = image_rng(seed, record.image_id).choice(values, max_values, replace=False)
        out.append({"image_id": record.image_id,
                    "vendor": record.model_name or record.manufacturer or record.source_kind,
                    "raw": values, "normalised": transform(values)})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mammo_lib.patches write-reference <run_dir> [--to data_manifest/default_study]``:
    store a run's manifests as the reference a later rerun is verified against."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("write-reference", help="copy a run's patch manifests as the reference")
    ref.add_argument("run_dir")
    ref.add_argument("--to", default=str(Path(__file__).resolve().parent.parent / "data_manifest"
                                         / "default_study"))
    args = parser.parse_args(argv)
    patch_dir = Path(args.run_dir) / "patches"
    summary = read_summary(patch_dir)
    for path in write_reference_manifest(patch_dir, args.to,
                                         reference_parameters(summary["parameters"])):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
