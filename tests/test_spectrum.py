"""The radial binning of a power spectrum (mammo_lib.spectrum), shared by stage 02's spectral loss
and stage 04's spectrum observer."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_lib import spectrum


@pytest.mark.parametrize("size", [1, 2, 7, 8, 9, 32, 33, 64, 100])
def test_rings_are_rounded_frequency_magnitudes_in_fft2_layout(size):
    f = np.fft.fftfreq(size) * size  # cycles per image, in fft2's order
    expected = np.rint(np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)).astype(np.int64)
    rings = spectrum.ring_index(size)
    assert rings.dtype == np.int64 and np.array_equal(rings, expected) and rings[0, 0] == 0
    # the shifted radius has the zero frequency where fftshift puts it
    assert spectrum.frequency_radius(size)[size // 2, size // 2] == 0.0


def test_bands_split_the_radius_up_to_half_the_side_and_keep_the_corners_in_the_last():
    bands = spectrum.band_index(64, 16)  # width 2 cycles per image, centre at 32
    assert bands.shape == (64, 64) and bands[32, 32] == 0
    assert bands[32, 33] == 0 and bands[32, 34] == 1 and bands[32, 63] == 15  # radii 1, 2, 31
    assert bands[0, 0] == 15 and bands[0, 32] == 15  # radius 32 * sqrt(2) and 32: the last band
    assert np.array_equal(np.unique(bands), np.arange(16))
    # an even side: the band radius is the frequency magnitude; an odd one keeps its half-pixel offset
    assert np.array_equal(spectrum.frequency_radius(64, centre=32.0), spectrum.frequency_radius(64))
    assert spectrum.frequency_radius(9, centre=4.5)[4, 4] == pytest.approx(np.sqrt(0.5))


def test_radial_log_power_peaks_at_the_ring_of_a_pure_wave():
    torch = pytest.importorskip("torch")
    from mammo_lib.generate.regularisers import radial_log_power

    x = torch.arange(32, dtype=torch.float64)
    wave = torch.cos(2 * torch.pi * 5 * x / 32)[None, :].expand(32, 32)  # 5 periods across
    profile = radial_log_power(wave[None, None])
    assert profile.shape == (1, 16) and int(profile[0].argmax()) == 5
