"""Image handling: decode one mammogram into a float image and find the breast in it.

Every collection kind ends here: :func:`load_image_pixels` turns a DICOM (through
:mod:`mammo_lib.sources.dicom_io`) or a PGM/PNG/TIFF/JPEG file into one convention (float32, 2-D,
brighter = denser), and :func:`breast_mask` separates the breast from the background. Patch
extraction calls both on its workers; collection readers never decode pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mammo_lib.sources.dicom_io import read_dicom_pixels
from mammo_lib.sources.records import ImageRecord

#: File suffixes decoded with Pillow instead of pydicom.
RASTER_SUFFIXES = (".pgm", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def load_image_pixels(record: ImageRecord | str | os.PathLike) -> np.ndarray:
    """Decode one image as a float32 2-D array, brighter = denser.

    Parameters
    ----------
    record : ImageRecord or path
        The image (its ``path``) or a path. DICOM files go through
        :func:`mammo_lib.sources.dicom_io.read_dicom_pixels` (Modality LUT, MONOCHROME1 inversion);
        files ending in one of :data:`RASTER_SUFFIXES` through Pillow (RGB is averaged to grey).

    Returns
    -------
    float32 array, shape (rows, cols)
        Pixel values in the image's own units (stored values after the Modality LUT).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When a raster file cannot be decoded or is not 2-D (the message names the file).
    mammo_lib.sources.dicom_io.DicomReadError
        (a ``ValueError``) when a DICOM file cannot be used; the message names the file and
        the problem.
    """
    path = Path(record.path if isinstance(record, ImageRecord) else record)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
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
    """Boolean mask of the breast in a mammogram.

    Otsu threshold of a smoothed, downsampled copy (lowered half-way towards the 1st
    percentile, since the breast edge is much darker than the glandular core), then the largest
    connected component with holes filled, scaled back to full size. Labels, film markers and
    noise in the background are separate components and drop out; dark fatty regions inside the
    breast are holes and are filled.

    Parameters
    ----------
    pixels : float array, shape (rows, cols)
        The image, brighter = denser (as :func:`load_image_pixels` returns it).
    work_size : int
        Long side (pixels) of the downsampled copy the threshold is computed on.

    Returns
    -------
    bool array, shape (rows, cols)
        True inside the breast; all False for a constant image.

    Raises
    ------
    ValueError
        When ``pixels`` is not 2-D.

    References
    ----------
    N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. Systems,
    Man and Cybernetics 9(1), 62-66 (1979).
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
