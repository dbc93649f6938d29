"""Reading and writing mammogram DICOM files.

Reading (:func:`read_dicom_pixels`) returns a float32 image in one convention for every
source: *higher value = more attenuating = brighter tissue*. To get there it

- applies the Modality LUT through ``pydicom.pixels.apply_modality_lut`` (Rescale Slope /
  Intercept, or a Modality LUT Sequence),
- inverts MONOCHROME1 images (where the *stored* value grows towards black) over the output
  range of the full stored range, so a MONOCHROME1 file and a MONOCHROME2 file holding the same
  picture read back identically,
- decodes compressed transfer syntaxes (RLE Lossless, JPEG 2000, JPEG-LS, JPEG Lossless)
  through pydicom 3's pixel-data plugins; RLE needs nothing beyond numpy, the JPEG family
  needs ``pylibjpeg`` with ``pylibjpeg-openjpeg`` (JPEG 2000) and ``pylibjpeg-libjpeg``
  (JPEG-LS, JPEG Lossless), which are project dependencies.

Every failure is a :class:`DicomReadError` (a ``ValueError``) whose message names the file and
the problem, and says what to do.

Writing (:func:`write_mammogram_dicom`) produces a genuine DICOM Part 10 file of the SOP class
*Digital Mammography X-Ray Image Storage - For Presentation* (1.2.840.10008.5.1.4.1.1.1.2),
Modality MG, with the attributes a real reader needs. UIDs are derived deterministically from
``seed`` and the pseudonym, dates are fixed, so the same inputs give the same bytes. It is used
by the built-in phantom (:mod:`mammo_lib.sources.phantom`) and by the tests.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from mammo_lib.fileio import atomic_write_bytes
from mammo_lib.sources.dicom_checks import (
    DicomWarning,
    clean_message,
    decoder_problem,
    describe_unreadable,
    header_facts,
    looks_like_raw_dataset,
    pixel_length_problem,
    structure_problem,
    usability_problem,
)

__all__ = ["DicomReadError", "DicomWarning", "read_dicom_header", "read_dicom_pixels",
           "usability_problem", "write_mammogram_dicom"]

#: SOP Class UID of "Digital Mammography X-Ray Image Storage - For Presentation".
DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")

#: Root of the deterministic UIDs this project writes ("2.25." = UUID-derived, no registration).
DEFAULT_UID_ROOT = "2.25."

#: The keys of the ``meta`` :func:`read_dicom_pixels` returns (the header reader gives more).
PIXEL_META_KEYS = ("manufacturer", "model_name", "photometric", "bits_stored", "rows", "cols",
                   "laterality", "view", "pixel_spacing", "transfer_syntax")


class DicomReadError(ValueError):
    """A DICOM file could not be used; the message names the file and the problem, ``kind``
    names the kind of problem (see :mod:`mammo_lib.sources.dicom_checks`)."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # picklable with its kind (errors cross Dask worker boundaries)
        return (type(self), (str(self), self.kind))


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _tag_text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def dicom_header_meta(ds: Dataset) -> dict[str, Any]:
    """The header facts the study uses, from a dataset read with or without pixels."""
    spacing = None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None:
            try:
                spacing = (float(value[0]), float(value[1]))
                break
            except (TypeError, ValueError, IndexError):
                spacing = None
    laterality = _tag_text(ds, "ImageLaterality") or _tag_text(ds, "Laterality")
    ts = None
    if getattr(ds, "file_meta", None) is not None:
        ts = ds.file_meta.get("TransferSyntaxUID")
    return {
        "manufacturer": _tag_text(ds, "Manufacturer"),
        "model_name": _tag_text(ds, "ManufacturerModelName"),
        "photometric": _tag_text(ds, "PhotometricInterpretation"),
        "bits_stored": int(ds.BitsStored) if "BitsStored" in ds else None,
        "rows": int(ds.Rows) if "Rows" in ds else None,
        "cols": int(ds.Columns) if "Columns" in ds else None,
        "laterality": laterality,
        "view": _tag_text(ds, "ViewPosition"),
        "pixel_spacing": spacing,
        "transfer_syntax": str(ts) if ts is not None else None,
        "bits_allocated": int(ds.BitsAllocated) if "BitsAllocated" in ds else None,
        **header_facts(ds),
    }


def _fill_transfer_syntax(ds: Dataset) -> None:
    """Give a data set read without file meta the transfer syntax it was encoded in."""
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit or implicit is None:
        ts = ImplicitVRLittleEndian
    else:
        ts = ExplicitVRLittleEndian if little or little is None else ExplicitVRBigEndian
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts


def _read_dataset(path: Path, stop_before_pixels: bool) -> Dataset:
    """``pydicom.dcmread`` with every failure named: a non-Part-10 file (no preamble or no file
    meta) is read with a :class:`DicomWarning`; anything else that is not DICOM raises."""
    if not path.is_file():
        raise DicomReadError(f"{path}: file not found (check the path and the collection folder)",
                             "file not found")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        with open(path, "rb") as fh:
            head = fh.read(600)
        if not looks_like_raw_dataset(head):
            kind, message = describe_unreadable(path, exc)
            raise DicomReadError(f"{path}: {message}", kind) from exc
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
        except Exception as exc2:  # pydicom raises many types on damaged files
            kind, message = describe_unreadable(path, exc2)
            raise DicomReadError(f"{path}: {message}", kind) from exc2
        warnings.warn(f"{path}: not a Part-10 file (no 128-byte preamble and 'DICM' marker); "
                      "read anyway", DicomWarning, stacklevel=3)
        _fill_transfer_syntax(ds)
    except Exception as exc:  # pydicom raises many types on damaged files
        kind, message = describe_unreadable(path, exc)
        raise DicomReadError(f"{path}: {message}", kind) from exc
    if getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
        warnings.warn(f"{path}: not a Part-10 file (no file meta information); read with the "
                      "transfer syntax it is encoded in", DicomWarning, stacklevel=3)
        _fill_transfer_syntax(ds)
    return ds


def read_dicom_header(path: str | os.PathLike) -> tuple[Dataset, dict[str, Any]]:
    """Read only the header of a DICOM file (``stop_before_pixels``): fast, never decodes.

    Parameters
    ----------
    path : str or path-like
        The DICOM file.

    Returns
    -------
    ds : pydicom.Dataset
        The header.
    meta : dict
        :func:`dicom_header_meta`: vendor, geometry, photometric interpretation, Modality, SOP
        class, Presentation Intent Type, Pixel Intensity Relationship, number of frames.

    Raises
    ------
    DicomReadError
        Naming the file: missing, empty, another format (PNG, JPEG, gzip, text, ...), a header
        cut short, Rows or Columns 0, or implausible dimensions (``kind`` says which).
    """
    path = Path(path)
    ds = _read_dataset(path, stop_before_pixels=True)
    meta = dicom_header_meta(ds)
    problem = structure_problem(meta)
    if problem is not None:
        raise DicomReadError(f"{path}: {problem[1]}", problem[0])
    return ds, meta


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _shape_problem(meta: dict[str, Any]) -> tuple[str, str] | None:
    """The structural kinds of :func:`usability_problem` (not an image, multi-frame, colour):
    whatever the study keeps, such a file cannot be read as one 2-D grey image."""
    problem = usability_problem(meta, keep_for_processing=True)
    if problem is not None and problem[0] in ("not an image", "multi-frame", "colour"):
        return problem
    return None


def modality_values(stored: np.ndarray, ds: Dataset, photometric: str | None) -> np.ndarray:
    """Stored values through the Modality LUT, MONOCHROME1 inverted, as float32.

    The Modality LUT is ``pydicom.pixels.apply_modality_lut``: Rescale Slope/Intercept, or a
    Modality LUT Sequence when the file has one. A MONOCHROME1 image is then inverted within
    the output range of the stored range, ``out = m(lo) + m(hi) - m(stored)`` (``m`` the
    Modality LUT, ``lo..hi`` the stored range), so a MONOCHROME1 file and a MONOCHROME2 file
    of the same picture read back the same.

    Parameters
    ----------
    stored : integer array, shape (rows, cols)
        Stored pixel values (``Dataset.pixel_array``).
    ds : pydicom.Dataset
        The dataset (its Modality LUT attributes, Bits Stored, Pixel Representation).
    photometric : str or None
        Photometric Interpretation.

    Returns
    -------
    float32 array, shape (rows, cols)
        Output values (modality units), brighter = denser.
    """
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if photometric == "MONOCHROME1":
        lo, hi = _stored_range(ds)
        ends = np.asarray(apply_modality_lut(np.array([lo, hi]), ds), dtype=np.float64)
        values = (ends[0] + ends[1]) - values
    return values.astype(np.float32)


def read_dicom_pixels(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a single-frame grey-scale DICOM image into float32, brighter = denser tissue.

    Parameters
    ----------
    path : str or path-like
        The DICOM file.

    Returns
    -------
    pixels : float32 array, shape (rows, cols)
        Output (modality) values after :func:`modality_values`: Modality LUT applied,
        MONOCHROME1 inverted (for rescale: ``slope * (max_stored + min_stored - stored) +
        intercept``), so the same picture written as MONOCHROME1 or MONOCHROME2 reads the same.
    meta : dict
        :data:`PIXEL_META_KEYS` of :func:`dicom_header_meta`: ``manufacturer``,
        ``model_name``, ``photometric``, ``bits_stored``, ``rows``, ``cols``, ``laterality``,
        ``view``, ``pixel_spacing`` (mm, ``None`` when absent) and ``transfer_syntax``.

    Raises
    ------
    DicomReadError
        (a ``ValueError``) naming the file when it is missing, not DICOM, truncated, has no or
        undecodable pixel data (the message says what to install when a decoder is missing),
        is a colour image, is not 2-D, or its Modality LUT cannot be applied.
    """
    path = Path(path)
    ds = _read_dataset(path, stop_before_pixels=False)
    meta = dicom_header_meta(ds)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if "Rows" in ds or "BitsAllocated" in ds:
            raise DicomReadError(
                f"{path}: DICOM file has no pixel data although its header describes an image "
                f"({ds.get('Rows', '?')}x{ds.get('Columns', '?')}): the file looks truncated; "
                "re-copy or re-export it", "header cut short")
        raise DicomReadError(
            f"{path}: DICOM file has no pixel data (truncated, or not an image: e.g. a "
            "structured report, a presentation state or a header-only copy); it cannot be used "
            "as a mammogram", "not an image")
    problem = (structure_problem(meta) or _shape_problem(meta)
               or decoder_problem(meta["transfer_syntax"]) or pixel_length_problem(ds, meta))
    if problem is not None:
        raise DicomReadError(f"{path}: {problem[1]}", problem[0])
    if meta["photometric"] is None and meta["samples_per_pixel"] == 1:
        warnings.warn(f"{path}: Photometric Interpretation is missing; read as MONOCHROME2",
                      DicomWarning, stacklevel=2)
        ds.PhotometricInterpretation = meta["photometric"] = "MONOCHROME2"
    try:
        stored = ds.pixel_array
    except Exception as exc:
        ts = meta["transfer_syntax"] or "unknown"
        ts_name = UID(ts).name if ts != "unknown" else ts
        raise DicomReadError(
            f"{path}: pixel data is corrupt or truncated (transfer syntax {ts_name}; "
            f"{type(exc).__name__}: {clean_message(exc)}); re-copy or re-export the file",
            "corrupt pixel data") from exc
    if stored.ndim != 2:
        raise DicomReadError(f"{path}: expected a 2-D image, got pixel array of shape {stored.shape}",
                             "not 2-D")
    try:
        pixels = modality_values(stored, ds, meta["photometric"])
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise DicomReadError(
            f"{path}: the Modality LUT (Rescale Slope/Intercept or Modality LUT Sequence) cannot "
            f"be applied ({type(exc).__name__}: {exc})") from exc
    return pixels, {key: meta[key] for key in PIXEL_META_KEYS}


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def deterministic_uid(*parts: object, uid_root: str = DEFAULT_UID_ROOT) -> UID:
    """A valid DICOM UID derived from ``parts`` (same parts → same UID).

    With the default root ``2.25.`` the UID is the decimal form of a 128-bit hash, the scheme
    DICOM PS3.5 B.2 allows without a registered root. With another root, the hash digits are
    appended and truncated to 64 characters.
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    number = int.from_bytes(digest[:16], "big")
    if uid_root == "2.25.":
        return UID(f"2.25.{number}")
    root = uid_root if uid_root.endswith(".") else uid_root + "."
    return UID((root + str(number))[:64].rstrip("."))


def _rle_encoding_plugin() -> str:
    """pylibjpeg-rle (compiled, ~10x faster) when installed, else pydicom's own encoder.

    Both implement the same DICOM PS3.5 Annex G PackBits scheme and give identical bytes
    (checked in tests/test_dicom_io.py), so the phantom's bytes do not depend on which is used.
    """
    from pydicom.pixels import get_encoder

    plugins = get_encoder(RLELossless).available_plugins
    return "pylibjpeg" if "pylibjpeg" in plugins else "pydicom"


def write_mammogram_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    manufacturer: str = "HOLOGIC, Inc.",
    model_name: str = "Selenia Dimensions",
    image_pseudonym: str = "anon",
    laterality: str = "L",
    view: str = "CC",
    pixel_spacing_mm: float | tuple[float, float] | None = 0.1,
    rescale_slope: float | None = None,
    rescale_intercept: float | None = None,
    compress: str | None = None,
    seed: int = 0,
    uid_root: str = DEFAULT_UID_ROOT,
    study_pseudonym: str | None = None,
    patient_pseudonym: str | None = None,
) -> Path:
    """Write ``pixels`` (uint16, 2-D) as a For-Presentation digital mammogram DICOM file.

    ``pixels`` is the picture as it should be *seen* (brighter = denser), in stored units
    (0..2**bits_stored-1). For ``photometric="MONOCHROME1"`` the values are inverted before
    storing (``stored = 2**bits_stored - 1 - pixels``), so :func:`read_dicom_pixels` returns
    ``rescale_slope * pixels + rescale_intercept`` for both photometric interpretations.
    ``rescale_slope``/``rescale_intercept`` of ``None`` leave the attributes out.
    ``compress``: ``None`` (Explicit VR Little Endian), ``"rle"`` (RLE Lossless; pylibjpeg-rle
    when installed, else pydicom's own encoder, same bytes), ``"jpeg2000"`` (JPEG 2000
    Lossless, needs pylibjpeg-openjpeg) or ``"jpegls"`` (JPEG-LS Lossless, needs pyjpegls).
    UIDs derive from ``(uid_root, seed, image_pseudonym)``; dates are fixed (2000-01-01), so
    identical arguments give identical bytes. Patient ID/Name are the ``patient_pseudonym``
    (default: the image pseudonym), never real identifiers. Written atomically.
    """
    path = Path(path)
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        raise ValueError(f"{path}: pixels must be a 2-D image, got shape {arr.shape}")
    if not 8 <= int(bits_stored) <= 16:
        raise ValueError(f"{path}: bits_stored must be 8..16, got {bits_stored}")
    bits_stored = int(bits_stored)
    max_value = (1 << bits_stored) - 1
    if arr.dtype.kind not in "ui":
        raise ValueError(f"{path}: pixels must be an integer array (uint16), got {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > max_value):
        raise ValueError(
            f"{path}: pixel values {int(arr.min())}..{int(arr.max())} do not fit in "
            f"{bits_stored} bits stored (0..{max_value})"
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"{path}: photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    stored = arr.astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (max_value - stored).astype(np.uint16)
    stored = np.ascontiguousarray(stored)

    patient = patient_pseudonym or image_pseudonym
    study = study_pseudonym or f"{patient}-study"
    sop_uid = deterministic_uid("sop", seed, image_pseudonym, uid_root=uid_root)
    study_uid = deterministic_uid("study", seed, study, uid_root=uid_root)
    series_uid = deterministic_uid("series", seed, study, laterality, view, uid_root=uid_root)
    frame_uid = deterministic_uid("frame", seed, study, uid_root=uid_root)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("2.25.302561234590432179208718493047150734571")
    meta.ImplementationVersionName = "MAMMO_SYNTH_01"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model_name
    ds.InstitutionName = "mammo-synth-study phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic mammography phantom"
    ds.SeriesDescription = f"{laterality}{view}"
    ds.PatientName = patient
    ds.PatientID = patient
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = view
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["A", "R"] if laterality == "L" else ["P", "L"]
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    # PS3.3 C.8.11.3.1.2: -1 = higher pixel values correspond to less X-ray beam intensity
    # (MONOCHROME2 here: bright = dense), +1 = lower values correspond to less intensity
    ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME2" else 1
    if pixel_spacing_mm is not None:
        if isinstance(pixel_spacing_mm, (tuple, list)):
            sp = [float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])]
        else:
            sp = [float(pixel_spacing_mm)] * 2
        ds.PixelSpacing = [f"{v:.6g}" for v in sp]
        ds.ImagerPixelSpacing = [f"{v:.6g}" for v in sp]
    if rescale_slope is not None or rescale_intercept is not None:
        ds.RescaleSlope = f"{float(rescale_slope if rescale_slope is not None else 1.0):.10g}"
        ds.RescaleIntercept = f"{float(rescale_intercept or 0.0):.10g}"
        ds.RescaleType = "US"
    # window covering the stored range actually used, in output (rescaled) units
    lo = float(arr.min()) if arr.size else 0.0
    hi = float(arr.max()) if arr.size else float(max_value)
    slope = float(rescale_slope) if rescale_slope is not None else 1.0
    intercept = float(rescale_intercept) if rescale_intercept is not None else 0.0
    if photometric == "MONOCHROME1":
        lo, hi = max_value - hi, max_value - lo
    center = slope * (lo + hi) / 2.0 + intercept
    width = max(abs(slope) * (hi - lo + 1.0), 1.0)
    ds.WindowCenter = f"{center:.6g}"
    ds.WindowWidth = f"{width:.6g}"
    ds.VOILUTFunction = "LINEAR"
    ds.LossyImageCompression = "00"
    ds.PixelData = stored.tobytes()

    if compress is not None:
        name = compress.lower()
        if name == "rle":
            ds.compress(RLELossless, stored, encoding_plugin=_rle_encoding_plugin(),
                        generate_instance_uid=False)
        elif name in ("jpeg2000", "j2k"):
            ds.compress(JPEG2000Lossless, stored, generate_instance_uid=False)
        elif name in ("jpegls", "jpeg-ls"):
            ds.compress(JPEGLSLossless, stored, generate_instance_uid=False)
        else:
            raise ValueError(
                f"{path}: compress must be None, 'rle', 'jpeg2000' or 'jpegls', got {compress!r}"
            )

    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
