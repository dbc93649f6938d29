"""Stage 03's in-memory patch arrays: validation and flattening to pixel rows.

Shared by the sampling (``feature_space``), the t-SNE (``tsne``) and the lesion CNN
(``lesion_cnn``); reads and writes no files.
"""

from __future__ import annotations

import numpy as np


class FeatureSpaceError(ValueError):
    """Bad input or parameters for the feature-space stage; the message says what to do."""


class FeatureSpaceWarning(UserWarning):
    """A stage-03 condition worth seeing (too few patches, perplexity clamped).

    Every such warning is also returned as text by the function that issues it, so a notebook
    that prints those texts can silence this category to show each warning once.
    """


def check_patch_array(patches: np.ndarray, name: str) -> np.ndarray:
    """Validate one group's patches.

    Parameters
    ----------
    patches : numeric array, shape (n, s, s)
        Square patches; uint8 in [0, 255] or floats in [0, 1].
    name : str
        What the array is (a store path or a group), used in error messages.

    Returns
    -------
    numpy.ndarray
        The same array, unchanged.

    Raises
    ------
    FeatureSpaceError
        When the array is not (n, s, s), not numeric, or holds NaN or infinite values.
    """
    arr = np.asarray(patches)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise FeatureSpaceError(f"{name}: patches must have shape (n, size, size), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.all(np.isfinite(arr.reshape(len(arr), -1)), axis=1)))
        raise FeatureSpaceError(
            f"{name}: {bad} patch(es) contain NaN or infinite values; fix or drop them "
            "(patch_store.write_patch_store refuses them, so this array did not come from a store)"
        )
    if arr.dtype.kind not in "uif":
        raise FeatureSpaceError(f"{name}: patches must be numeric, got dtype {arr.dtype}")
    return arr


def flatten_pixels(patches: np.ndarray) -> np.ndarray:
    """Raw pixels flattened to rows, the paper's t-SNE input.

    Parameters
    ----------
    patches : uint8 or float array, shape (n, s, s)
        uint8 patches are scaled by 1/255; float patches are taken as they are.

    Returns
    -------
    float32 array, shape (n, s * s)
        Pixel values in [0, 1] (for uint8 input).

    Raises
    ------
    FeatureSpaceError
        As :func:`check_patch_array`.
    """
    arr = check_patch_array(patches, "patches")
    flat = arr.reshape(len(arr), -1).astype(np.float32)
    if arr.dtype == np.uint8:
        flat /= 255.0
    return flat
