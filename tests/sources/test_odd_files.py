"""Every odd file answered by name: each test writes such a file.

Valid but unusual files are read (with a warning where the standard is bent); files that are not
a usable 2-D grey-scale mammogram are refused with a reason naming what is wrong; broken files
get a message that names the file and the kind of damage. Messages are deterministic.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian

from mammo_lib.extract import pipeline as patches
from mammo_lib.sources import collection as datasets
from mammo_lib.sources import phantom
from mammo_lib.sources.dicom_checks import DicomWarning, decoder_problem, usability_problem
from mammo_lib.sources.dicom_io import (
    DicomReadError,
    read_dicom_header,
    read_dicom_pixels,
    write_mammogram_dicom,
)
from mammo_lib.sources.images import load_image_pixels


def _picture(shape=(64, 48), bits=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << bits, size=shape, dtype=np.int64).astype(np.uint16)


def _valid(tmp_path, name="valid.dcm", **kw):
    img = _picture()
    return write_mammogram_dicom(tmp_path / name, img, bits_stored=12, **kw), img


def _edit(path, out, change):
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(out, enforce_file_format=False)
    return out


def _problem(path):
    with pytest.raises(DicomReadError) as info:
        read_dicom_pixels(path)
    return info.value


# ----------------------------------------------------------------------------- valid, unusual


def test_no_preamble_and_no_file_meta_is_read_with_a_warning(tmp_path):
    path, img = _valid(tmp_path)
    ds = pydicom.dcmread(path)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)  # the data set alone: no preamble, no 'DICM', no group 0002
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(buffer.getvalue())
    with pytest.warns(DicomWarning, match=r"raw\.dcm: not a Part-10 file"):
        pixels, _ = read_dicom_pixels(raw)
    np.testing.assert_array_equal(pixels, img.astype(np.float32))


def test_missing_photometric_interpretation_reads_as_monochrome2(tmp_path):
    path, img = _valid(tmp_path)
    odd = _edit(path, tmp_path / "nophot.dcm", lambda ds: delattr(ds, "PhotometricInterpretation"))
    with pytest.warns(DicomWarning, match="Photometric Interpretation is missing; read as MONOCHROME2"):
        pixels, meta = read_dicom_pixels(odd)
    np.testing.assert_array_equal(pixels, img.astype(np.float32))
    assert meta["photometric"] == "MONOCHROME2"


def test_signed_and_8_bit_images(tmp_path):
    path, _ = _valid(tmp_path)
    signed = np.arange(-1000, 64 * 48 - 1000, dtype=np.int16).reshape(64, 48)

    def make_signed(ds):
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
        ds.PixelData = signed.tobytes()
    pixels, _ = read_dicom_pixels(_edit(path, tmp_path / "signed.dcm", make_signed))
    np.testing.assert_array_equal(pixels, signed.astype(np.float32))
    eight = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(64, 48)

    def make_8bit(ds):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = eight.tobytes()
    pixels, _ = read_dicom_pixels(_edit(path, tmp_path / "eight.dcm", make_8bit))
    np.testing.assert_array_equal(pixels, eight.astype(np.float32))


def test_odd_file_names_are_read_as_dicom(tmp_path):
    path, img = _valid(tmp_path)
    for name in ("IMG 0001.DCM", "1.2.840.113619.2.1", "image.dicom"):
        odd = tmp_path / name
        shutil.copy(path, odd)
        np.testing.assert_array_equal(load_image_pixels(odd), img.astype(np.float32))


# ----------------------------------------------------------------------- not a mammogram to use


def _header_kind(path, keep_for_processing=False):
    _, meta = read_dicom_header(path)
    return usability_problem(meta, keep_for_processing)


def test_other_modality_non_image_sop_classes_and_raw_images_are_refused(tmp_path):
    path, _ = _valid(tmp_path)
    ct = _edit(path, tmp_path / "ct.dcm", lambda ds: setattr(ds, "Modality", "CT"))
    assert _header_kind(ct) == ("not mammography",
                                "Modality is CT, not MG (mammography); a CT image is not used")
    for uid, what in (("1.2.840.10008.5.1.4.1.1.88.22", "structured report"),
                      ("1.2.840.10008.5.1.4.1.1.11.1", "presentation state")):
        odd = _edit(path, tmp_path / f"{what[:5]}.dcm", lambda ds, u=uid: setattr(ds, "SOPClassUID", u))
        kind, reason = _header_kind(odd)
        assert kind == "not an image" and what in reason
        assert _problem(odd).kind == "not an image"
    raw = _edit(path, tmp_path / "raw.dcm",
                lambda ds: setattr(ds, "PresentationIntentType", "FOR PROCESSING"))
    kind, reason = _header_kind(raw)
    assert kind == "for processing" and "keep_for_processing" in reason
    assert _header_kind(raw, keep_for_processing=True) is None
    lin = _edit(path, tmp_path / "lin.dcm", lambda ds: (delattr(ds, "PresentationIntentType"),
                                                        setattr(ds, "PixelIntensityRelationship", "LIN")))
    assert _header_kind(lin)[0] == "for processing"


def test_dicomdir_is_not_an_image(tmp_path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = "2.25.7"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "MAMMO"
    ds.DirectoryRecordSequence = []
    path = tmp_path / "DICOMDIR"
    ds.save_as(path, enforce_file_format=True)
    kind, reason = _header_kind(path)
    assert kind == "not an image" and "DICOMDIR" in reason


def test_multi_frame_tomosynthesis_and_colour_are_refused(tmp_path):
    path, _ = _valid(tmp_path)
    frames = np.stack([_picture(seed=k) for k in range(3)])

    def tomo(ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.13.1.3"
        ds.NumberOfFrames = 3
        ds.PixelData = frames.tobytes()
    odd = _edit(path, tmp_path / "tomo.dcm", tomo)
    kind, reason = _header_kind(odd)
    assert kind == "multi-frame" and "breast tomosynthesis object with 3 frames" in reason
    assert _problem(odd).kind == "multi-frame"  # never silently its first slice

    def rgb(ds):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.zeros((64, 48, 3), np.uint8).tobytes()
    assert _problem(_edit(path, tmp_path / "rgb.dcm", rgb)).kind == "colour"

    def palette(ds):
        ds.PhotometricInterpretation = "PALETTE COLOR"
    err = _problem(_edit(path, tmp_path / "palette.dcm", palette))
    assert err.kind == "colour" and "PALETTE COLOR" in str(err)


# ----------------------------------------------------------------------------- broken files


def test_empty_other_formats_and_text_named_dcm(tmp_path):
    from PIL import Image

    cases = {"empty.dcm": b"", "text.dcm": b"patient notes, not an image\n" * 10,
             "gz.dcm": gzip.compress(b"\x00" * 500)}
    png, jpg = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpg, format="JPEG")
    cases["png.dcm"], cases["jpg.dcm"] = png.getvalue(), jpg.getvalue()
    expected = {"empty.dcm": "empty file (0 bytes)", "text.dcm": "it is a text file",
                "gz.dcm": "it is a gzip archive", "png.dcm": "it is a PNG image",
                "jpg.dcm": "it is a JPEG image"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for reader in (read_dicom_header, read_dicom_pixels):
            with pytest.raises(DicomReadError) as info:
                reader(tmp_path / name)
            assert str(info.value).startswith(f"{tmp_path / name}: ")
            assert expected[name] in str(info.value), (name, str(info.value))
            assert "truncated" not in str(info.value)


def test_header_cut_short_and_size_mismatch(tmp_path):
    path, _ = _valid(tmp_path)
    data = path.read_bytes()
    (tmp_path / "cut100.dcm").write_bytes(data[:100])  # ends inside the preamble
    assert _problem(tmp_path / "cut100.dcm").kind == "header cut short"
    longer = _edit(path, tmp_path / "rows.dcm", lambda ds: setattr(ds, "Rows", 80))
    err = _problem(longer)
    assert err.kind == "pixel data size mismatch"
    assert "header says 80 x 48 x 16 bits = 7680 bytes, file holds 6144" in str(err)


def test_implausible_and_zero_dimensions_need_no_allocation(tmp_path):
    path, _ = _valid(tmp_path)
    huge = _edit(path, tmp_path / "huge.dcm", lambda ds: (setattr(ds, "Rows", 65000),
                                                          setattr(ds, "Columns", 65000)))
    with pytest.raises(DicomReadError, match=r"huge\.dcm: implausible dimensions.*65000 x 65000"):
        read_dicom_header(huge)
    zero = _edit(path, tmp_path / "zero.dcm", lambda ds: setattr(ds, "Columns", 0))
    with pytest.raises(DicomReadError, match=r"zero\.dcm: the DICOM header gives Rows 64 x Columns 0"):
        read_dicom_header(zero)


def test_unknown_transfer_syntax_and_corrupt_data_are_different_messages(tmp_path):
    path, _ = _valid(tmp_path, compress="rle")
    unknown = _edit(path, tmp_path / "unknown_ts.dcm",
                    lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5"))
    err = _problem(unknown)
    assert err.kind == "unknown transfer syntax" and "not a known DICOM transfer syntax" in str(err)
    assert "pip install" not in str(err)

    def corrupt(ds):
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\x00" * 60 + b"\x05\x07"])
    err = _problem(_edit(path, tmp_path / "corrupt.dcm", corrupt))
    assert err.kind == "corrupt pixel data" and "corrupt" in str(err)
    assert decoder_problem(str(pydicom.uid.RLELossless)) is None  # available here


def test_messages_are_deterministic(tmp_path):
    path, _ = _valid(tmp_path, compress="rle")

    def corrupt(ds):
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff" * 70])
    bad = _edit(path, tmp_path / "bad.dcm", corrupt)
    first, second = str(_problem(bad)), str(_problem(bad))
    assert first == second and " at 0x" not in first


# ----------------------------------------------------------------- a collection mixing them all


@pytest.fixture
def mixed_collection(tmp_path):
    """An omidb-like folder: a small phantom plus one annotated file of each odd kind."""
    root = phantom.generate_phantom(tmp_path / "mixed", n_images=8, seed=2, rows=384, cols=320,
                                    progress=False)
    template = sorted(root.glob("*/*/*.json"))[0]
    folder = template.parent
    src = template.with_suffix(".dcm")
    rows, cols = pydicom.dcmread(src).pixel_array.shape

    def tomo(ds):
        ds.SOPClassUID, ds.NumberOfFrames = "1.2.840.10008.5.1.4.1.1.13.1.3", 2
        ds.PixelData = np.zeros((2, rows, cols), np.uint16).tobytes()

    def rgb(ds):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.zeros((rows, cols, 3), np.uint8).tobytes()

    def native(ds):  # the phantom may have RLE-compressed the template
        ds.decompress()

    odd = {
        "ct": lambda ds: setattr(ds, "Modality", "CT"),
        "raw": lambda ds: setattr(ds, "PresentationIntentType", "FOR PROCESSING"),
        "zero": lambda ds: setattr(ds, "Rows", 0),
        "sr": lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.88.22"),
        "tomo": lambda ds: (native(ds), tomo(ds)),
        "rgb": lambda ds: (native(ds), rgb(ds)),
        "short": lambda ds: (native(ds), setattr(ds, "Rows", rows + 7)),
        "nophot": lambda ds: delattr(ds, "PhotometricInterpretation"),
    }
    for name, change in odd.items():
        _edit(src, folder / f"{name}.dcm", change)
    ds = pydicom.dcmread(src)
    ds.decompress()
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    (folder / "noprefix.dcm").write_bytes(buffer.getvalue())  # valid, but not Part 10
    (folder / "text.dcm").write_text("not an image\n" * 20)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "gz.dcm").write_bytes(gzip.compress(src.read_bytes()))
    (folder / "png.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    for name in (*odd, "noprefix", "text", "empty", "gz", "png"):
        annotation = json.loads(template.read_text())
        annotation["image"]["file"] = f"{name}.dcm"
        (folder / f"{name}.json").write_text(json.dumps(annotation))
    return root


def test_a_folder_mixing_every_kind_is_read_and_every_odd_file_named(mixed_collection, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomWarning)  # collected as notes, never printed
        collection = datasets.open_collection("omidb-like", mixed_collection)
    assert [n.rsplit("/", 1)[-1] for n in collection.notes] == [
        "noprefix.dcm: not a Part-10 file (no 128-byte preamble and 'DICM' marker); read anyway"]
    names = sorted(r.path.name for r in collection.records)
    assert len(names) == 8 + 3 and {"noprefix.dcm", "nophot.dcm", "short.dcm"} <= set(names)
    kinds = {s.path.rsplit("/", 1)[-1]: s.kind for s in collection.skipped}
    assert kinds == {"ct.dcm": "not mammography", "raw.dcm": "for processing",
                     "zero.dcm": "zero dimensions", "sr.dcm": "not an image",
                     "tomo.dcm": "multi-frame", "rgb.dcm": "colour", "text.dcm": "not DICOM",
                     "empty.dcm": "empty file", "gz.dcm": "not DICOM", "png.dcm": "not DICOM"}
    kept = datasets.open_collection("omidb-like", mixed_collection, keep_for_processing=True)
    assert len(kept.records) == 12 and any(r.presentation_intent == "FOR PROCESSING" for r in kept.records)
    assert all(r.sop_class and r.n_frames == 1 for r in kept.records)
    # the extraction goes on, lists every skipped file with its kind, and reruns identically
    vendor = collection.records[0].model_name
    runs = []
    for name in ("a", "b"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DicomWarning)  # collected as notes, never printed
            result = patches.extract_patches(collection, tmp_path / name / "patches", patch_size=64,
                                             n_normal_per_image=2, n_workers=0, progress=False)
        runs.append(result.skipped_path.read_bytes())
    assert runs[0] == runs[1]
    # each warning once: noprefix was noted while listing, nophot while decoding
    nophot = next(r.path for r in collection.records if r.path.name == "nophot.dcm")
    assert result.notes == [nophot.relative_to(mixed_collection).as_posix()
                            + ": Photometric Interpretation is missing; read as MONOCHROME2"]
    table = pd.read_csv(result.skipped_path, keep_default_na=False)
    by_name = dict(zip(table["path"].str.rsplit("/", n=1).str[-1], table["kind"], strict=True))
    assert by_name == {**kinds, "short.dcm": "pixel data size mismatch"}
    assert result.n_images_used == 10  # the 8 phantom images, noprefix and nophot
    assert "header says" in table.loc[table["kind"] == "pixel data size mismatch", "problem"].iloc[0]
    assert not table["path"].str.startswith("/").any()
    filtered = patches.extract_patches(collection, tmp_path / "v" / "patches", patch_size=64,
                                       n_normal_per_image=2, n_workers=0, progress=False,
                                       vendor_filter=[vendor])
    table = pd.read_csv(filtered.skipped_path, keep_default_na=False)
    vendor_rows = table[table["kind"] == "vendor filter"]
    assert len(vendor_rows) == filtered.excluded_by_vendor > 0
    assert all("left out by vendor_filter" in p for p in vendor_rows["problem"])
