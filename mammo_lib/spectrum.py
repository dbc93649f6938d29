"""The radial binning of a 2-D power spectrum, once: which ring or band each FFT coefficient of a
square image falls in. Shared by stage 02's spectral loss and spectral discriminator
(:func:`mammo_lib.generate.regularisers.radial_log_power`, torch, one value per ring of integer
radius) and stage 04's spectrum observer (:func:`mammo_lib.reader_study.machine_observers.patch_features`,
numpy, up to 16 equal-width bands); each computes its own power and averages it over these bins.

Both bin the distance of a coefficient from the zero frequency, :func:`frequency_radius`, in
cycles per image (so a radius r is a wave with r periods across the image). The two profiles are
different features on purpose and stay so (their outputs must not change):

- :func:`ring_index`: rings of integer radius, ``round(r)``, in the layout ``fft2`` returns
  (zero frequency at [0, 0]): the full-resolution 1-D profile of Durall et al. (2020).
- :func:`band_index`: ``n_bins`` bands of width ``size / 2 / n_bins`` in the ``fftshift``-ed
  layout, the corners beyond radius ``size / 2`` in the last band: a coarse profile for a
  logistic regression. Its radius is measured from ``size / 2``, as the spectrum observer always
  has: the zero frequency for an even size, half a pixel beside it (towards larger indices) for
  an odd one.

Shared plumbing: numpy only, imports no stage.

References
----------
R. Durall, M. Keuper, J. Keuper, "Watch your Up-Convolution: CNN Based Generative Deep Neural
Networks are Failing to Reproduce Spectral Distributions", CVPR 2020 (the azimuthal integration
of the power spectrum into a 1-D profile).
"""

from __future__ import annotations

import numpy as np


def frequency_radius(size: int, centre: float | None = None) -> np.ndarray:
    """Distance of each coefficient of a ``fftshift``-ed 2-D spectrum from its centre.

    Parameters
    ----------
    size : int
        Side of the square image (and of its spectrum), >= 1.
    centre : float, optional
        Row (= column) index of the centre. Default ``size // 2``, where ``np.fft.fftshift``
        puts the zero frequency, so that the radius is the frequency's magnitude in cycles per
        image.

    Returns
    -------
    float64 array, shape (size, size)
        ``hypot(row - centre, column - centre)``.

    References
    ----------
    R. Durall, M. Keuper, J. Keuper, CVPR 2020.
    """
    yy, xx = np.indices((size, size))
    c = size // 2 if centre is None else centre
    return np.hypot(yy - c, xx - c)


def ring_index(size: int) -> np.ndarray:
    """Ring of integer radius of each coefficient of an unshifted ``fft2`` of a square image.

    Parameters
    ----------
    size : int
        Side of the square image, >= 1.

    Returns
    -------
    int64 array, shape (size, size)
        ``round(|f|)``, |f| the frequency magnitude in cycles per image
        (:func:`frequency_radius`, moved back to ``fft2``'s layout by ``np.fft.ifftshift``);
        0 at [0, 0]. A profile keeps the rings below ``size // 2`` (the largest radius a
        frequency along one axis reaches).

    References
    ----------
    R. Durall, M. Keuper, J. Keuper, CVPR 2020 (the 1-D profile over rings of the spectrum).
    """
    return np.rint(np.fft.ifftshift(frequency_radius(size))).astype(np.int64)


def band_index(size: int, n_bins: int) -> np.ndarray:
    """Band of each coefficient of a ``fftshift``-ed 2-D spectrum of a square image.

    Parameters
    ----------
    size : int
        Side of the square image, >= 1.
    n_bins : int
        Number of bands, >= 1.

    Returns
    -------
    int array, shape (size, size)
        ``min(floor(r / (size / 2) * n_bins), n_bins - 1)`` for the radius r measured from
        ``size / 2`` (:func:`frequency_radius` with ``centre=size / 2``): equal-width bands
        of the radius up to ``size / 2``, the corners beyond it in the last band. For an odd
        size the centre lies half a pixel beside the zero frequency (kept: the spectrum
        observer's features must not change). A band may hold no coefficient.

    References
    ----------
    R. Durall, M. Keuper, J. Keuper, CVPR 2020.
    """
    radius = frequency_radius(size, centre=size / 2)
    return np.minimum((radius / (size / 2) * n_bins).astype(int), n_bins - 1)
