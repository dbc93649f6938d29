"""Stage 01, the pure per-image core: where the windows go, how grey levels are normalised,
how patches are cut. No file I/O: the caller passes decoded pixels (see :mod:`mammo_lib.extract.pipeline`
for the Dask orchestration that reads images and writes the stores).

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
- **Working resolution**: the breast mask (``images.breast_mask``), the equalisation CDF and
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

Determinism: each image has its own random generator seeded from ``(seed, image_id)``
(:func:`image_rng`), so the same seed and inputs give identical patches whatever the batching.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mammo_lib import rng as rng_streams
from mammo_lib.sources.images import breast_mask
from mammo_lib.sources.records import ImageRecord, LesionAnnotation, SkippedFile

NORMALISATIONS = ("equalize_image", "equalize_patch", "none")
LARGE_LESION_POLICIES = ("resize", "crop")
STAGE = "01_extract_patches"
#: Long side (pixels) of the subsampled image used for the breast mask, the equalisation CDF
#: and the normal-window search; the patches themselves are always cut at full resolution.
MASK_LONG_SIDE = 256
#: Columns of a stage 01 manifest row, in order (an empty store's manifest has them too);
#: ``patient_id`` is the record's pseudonymous woman, else its ``image_id``.
PATCH_ROW_COLUMNS = (
    "group", "source_kind", "image_id", "patient_id", "normalisation", "vendor", "model_name",
    "laterality", "view", "patch_id", "lesion_id", "lesion_class", "center_row", "center_col",
    "lesion_center_row", "lesion_center_col", "lesion_extent", "pathology", "window_size",
    "scale", "shift_row", "shift_col", "padded", "lesion_truncated", "breast_fraction",
    "checksum",
)


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
    return rng_streams.image_stream(seed, image_id)


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

    return np.asarray(breast_mask(pixels), dtype=bool)


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
        "patient_id": record.patient_id or record.image_id,
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
                "patch, and no normal patches from this image", STAGE, "annotation"))
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
                "the background (an annotation error); no lesion patch made", STAGE, "annotation"))
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

