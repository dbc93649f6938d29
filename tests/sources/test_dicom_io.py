"""DICOM reading and writing: round trips (MONOCHROME1/2, rescale, RLE, JPEG 2000), the real
CBIS-DDSM RLE samples, and the error messages for broken files."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from mammo_lib.sources.dicom_io import (
    DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION,
    DicomReadError,
    read_dicom_header,
    read_dicom_pixels,
    write_mammogram_dicom,
)


def _picture(bits: int, shape=(96, 80), seed=0) -> np.ndarray:
    """A test picture that uses the full stored range, incl. 0 and the maximum."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 1 << bits, size=shape, dtype=np.int64)
    img[0, 0], img[-1, -1] = 0, (1 << bits) - 1
    img[10:30, 10:40] = (1 << bits) // 2  # flat runs, so RLE has something to compress
    return img.astype(np.uint16)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("compress", [None, "rle", "jpeg2000"])
@pytest.mark.parametrize("bits", [12, 16])
def test_round_trip_returns_the_written_picture(tmp_path, photometric, compress, bits):
    img = _picture(bits)
    path = write_mammogram_dicom(
        tmp_path / "x.dcm", img, photometric=photometric, bits_stored=bits, compress=compress,
        manufacturer="GE MEDICAL SYSTEMS", model_name="Senographe Essential", laterality="R",
        view="MLO", pixel_spacing_mm=0.07, image_pseudonym="img-1",
    )
    pixels, meta = read_dicom_pixels(path)
    assert pixels.dtype == np.float32 and pixels.shape == img.shape
    np.testing.assert_array_equal(pixels, img.astype(np.float32))
    expected_ts = {None: ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless}[compress]
    assert meta == {
        "manufacturer": "GE MEDICAL SYSTEMS", "model_name": "Senographe Essential",
        "photometric": photometric, "bits_stored": bits, "rows": 96, "cols": 80,
        "laterality": "R", "view": "MLO", "pixel_spacing": (0.07, 0.07), "transfer_syntax": expected_ts,
    }
    ds = pydicom.dcmread(path)
    assert ds.Modality == "MG" and ds.SOPClassUID == DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    assert ds.file_meta.TransferSyntaxUID == expected_ts
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID  # not regenerated
    assert ds.HighBit == bits - 1 and ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
    raw = ds.pixel_array  # what is stored: inverted for MONOCHROME1
    if photometric == "MONOCHROME1":
        np.testing.assert_array_equal(raw, (1 << bits) - 1 - img)
    else:
        np.testing.assert_array_equal(raw, img)


def test_rle_is_really_compressed_and_smaller_on_smooth_images(tmp_path):
    img = np.repeat(np.linspace(0, 4000, 256).astype(np.uint16)[:, None], 256, axis=1)
    plain = write_mammogram_dicom(tmp_path / "plain.dcm", img, bits_stored=12)
    rle = write_mammogram_dicom(tmp_path / "rle.dcm", img, bits_stored=12, compress="rle")
    assert rle.stat().st_size < plain.stat().st_size / 2
    assert pydicom.dcmread(rle).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(read_dicom_pixels(rle)[0], img)


def test_rle_encoders_agree_byte_for_byte():
    """pydicom's own RLE encoder and pylibjpeg-rle (used when installed, 10x faster) give the
    same bytes, so phantom files do not depend on which is installed."""
    from pydicom.pixels import get_encoder

    encoder = get_encoder(RLELossless)
    if "pylibjpeg" not in encoder.available_plugins:
        pytest.skip("pylibjpeg-rle is not installed: only pydicom's encoder is available")
    img = _picture(12, shape=(64, 48))
    kwargs = dict(rows=64, columns=48, samples_per_pixel=1, bits_allocated=16, bits_stored=12,
                  pixel_representation=0, photometric_interpretation="MONOCHROME2", number_of_frames=1)
    assert encoder.encode(img, encoding_plugin="pydicom", **kwargs) == encoder.encode(
        img, encoding_plugin="pylibjpeg", **kwargs)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_jpeg_ls_round_trip(tmp_path, photometric):
    from pydicom.pixels import get_encoder

    if not get_encoder(JPEGLSLossless).is_available:
        pytest.skip("no JPEG-LS encoder here (pip install pyjpegls); decoding is still covered by pylibjpeg-libjpeg")
    img = _picture(16)
    path = write_mammogram_dicom(tmp_path / "ls.dcm", img, photometric=photometric, bits_stored=16,
                                 compress="jpegls")
    pixels, meta = read_dicom_pixels(path)
    assert meta["transfer_syntax"] == JPEGLSLossless
    np.testing.assert_array_equal(pixels, img)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_rescale_slope_and_intercept_are_applied(tmp_path, photometric):
    img = _picture(14)
    path = write_mammogram_dicom(
        tmp_path / "r.dcm", img, bits_stored=14, photometric=photometric,
        rescale_slope=0.5, rescale_intercept=-100.0,
    )
    pixels, _ = read_dicom_pixels(path)
    np.testing.assert_allclose(pixels, img * 0.5 - 100.0)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert float(ds.RescaleSlope) == 0.5 and float(ds.RescaleIntercept) == -100.0


def test_same_inputs_same_bytes_and_pseudonymous_ids(tmp_path):
    img = _picture(12)
    kwargs = dict(bits_stored=12, image_pseudonym="case-7", seed=3, compress="rle")
    a = write_mammogram_dicom(tmp_path / "a.dcm", img, **kwargs)
    b = write_mammogram_dicom(tmp_path / "b.dcm", img, **kwargs)
    c = write_mammogram_dicom(tmp_path / "c.dcm", img, **{**kwargs, "seed": 4})
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(a) == digest(b) != digest(c)
    ds = pydicom.dcmread(a, stop_before_pixels=True)
    assert ds.PatientID == "case-7" and ds.StudyDate == "20000101"
    assert ds.SOPInstanceUID.startswith("2.25.") and ds.SOPInstanceUID.is_valid
    assert ds.SOPInstanceUID != pydicom.dcmread(c, stop_before_pixels=True).SOPInstanceUID


def test_writer_rejects_values_that_do_not_fit(tmp_path):
    with pytest.raises(ValueError, match="do not fit in 12 bits"):
        write_mammogram_dicom(tmp_path / "x.dcm", np.full((8, 8), 5000, np.uint16), bits_stored=12)
    with pytest.raises(ValueError, match="2-D"):
        write_mammogram_dicom(tmp_path / "x.dcm", np.zeros((2, 8, 8), np.uint16))


def test_real_cbis_ddsm_rle_samples_decode_to_the_documented_shapes(dicom_samples_dir):
    expected = {
        "Mass-Test_P_00173_RIGHT_CC.dcm": (4560, 2864),
        "Mass-Test_P_00820_LEFT_CC.dcm": (4736, 2624),
    }
    for name, shape in expected.items():
        pixels, meta = read_dicom_pixels(dicom_samples_dir / name)
        assert pixels.shape == shape and pixels.dtype == np.float32
        assert meta["transfer_syntax"] == RLELossless
        assert meta["photometric"] == "MONOCHROME2" and meta["bits_stored"] == 16
        assert meta["pixel_spacing"] is None and meta["view"] is None
        assert pixels.max() > 10_000 and pixels.min() >= 0  # a real 16-bit film scan, not blank


# --------------------------------------------------------------------------------------------
# broken files
# --------------------------------------------------------------------------------------------


def test_truncated_dicom_names_the_file_and_the_problem(tmp_path):
    path = write_mammogram_dicom(tmp_path / "whole.dcm", _picture(12, shape=(200, 200)), bits_stored=12)
    cut = tmp_path / "cut.dcm"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) - 30_000])
    with pytest.raises(DicomReadError, match=r"cut\.dcm.*truncated"):
        read_dicom_pixels(cut)
    header_cut = tmp_path / "header_cut.dcm"
    header_cut.write_bytes(data[:300])
    with pytest.raises(DicomReadError, match=r"header_cut\.dcm: DICOM file has no pixel data.*truncated"):
        read_dicom_pixels(header_cut)


def test_non_dicom_file_is_reported(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a text file, not an image\n" * 20)
    with pytest.raises(DicomReadError, match=r"notes\.dcm: not a DICOM file"):
        read_dicom_pixels(path)
    with pytest.raises(DicomReadError, match=r"notes\.dcm: not a DICOM file"):
        read_dicom_header(path)
    with pytest.raises(DicomReadError, match=r"missing\.dcm: file not found"):
        read_dicom_pixels(tmp_path / "missing.dcm")


def _header_only_dataset(transfer_syntax) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = "2.25.1"
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    ds.SOPInstanceUID = "2.25.1"
    ds.Modality = "MG"
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def test_dicom_without_pixel_data_is_reported(tmp_path):
    path = tmp_path / "sr.dcm"
    _header_only_dataset(ExplicitVRLittleEndian).save_as(path, enforce_file_format=True)
    with pytest.raises(DicomReadError, match=r"sr\.dcm: DICOM file has no pixel data"):
        read_dicom_pixels(path)


def test_undecodable_transfer_syntax_says_what_to_install(tmp_path):
    from pydicom.encaps import encapsulate

    path = tmp_path / "mpeg.dcm"
    ds = _header_only_dataset(pydicom.uid.MPEG2MPML)
    ds.PixelData = encapsulate([b"\x00\x01" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomReadError, match=r"mpeg\.dcm: cannot decode transfer syntax .*pip install"):
        read_dicom_pixels(path)


def test_corrupt_compressed_stream_is_reported(tmp_path):
    from pydicom.encaps import encapsulate

    path = tmp_path / "bad_j2k.dcm"
    ds = _header_only_dataset(JPEG2000Lossless)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomReadError, match=r"bad_j2k\.dcm"):
        read_dicom_pixels(path)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_modality_lut_sequence_is_applied(tmp_path, photometric):
    """A Modality LUT Sequence (ignored before pydicom's apply_modality_lut was used) maps
    stored values; MONOCHROME1 is then inverted within the LUT's output range."""
    img = _picture(12, shape=(40, 30))
    path = write_mammogram_dicom(tmp_path / "lut.dcm", img, photometric=photometric, bits_stored=12)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    lut = (np.arange(4096, dtype=np.uint32) * 3 // 2).astype(np.uint16)  # out = 1.5 * stored
    item.add_new("LUTData", "US", lut.tolist())
    ds.ModalityLUTSequence = [item]
    ds.save_as(path, enforce_file_format=True)
    pixels, _ = read_dicom_pixels(path)
    stored = pydicom.dcmread(path).pixel_array.astype(np.int64)
    mapped = lut[stored].astype(np.float64)
    if photometric == "MONOCHROME1":
        mapped = float(lut[0]) + float(lut[4095]) - mapped
    np.testing.assert_array_equal(pixels, mapped.astype(np.float32))
    # the picture as seen (img, brighter = denser) maps monotonically in both interpretations
    assert np.corrcoef(pixels.ravel(), img.ravel())[0, 1] > 0.99


def test_pixel_intensity_relationship_sign_follows_ps3_3(tmp_path):
    """PS3.3 C.8.11.3.1.2: -1 when higher values mean less X-ray intensity (MONOCHROME2 of a
    mammogram: bright = dense), +1 when lower values do (MONOCHROME1)."""
    for photometric, sign in (("MONOCHROME2", -1), ("MONOCHROME1", 1)):
        path = write_mammogram_dicom(tmp_path / f"{photometric}.dcm", _picture(12, shape=(16, 16)),
                                     photometric=photometric, bits_stored=12)
        ds = pydicom.dcmread(path)
        assert ds.PixelIntensityRelationship == "LOG" and ds.PixelIntensityRelationshipSign == sign
