"""What makes a file unusable as a mammogram, each kind named: the checks behind
:mod:`mammo_lib.sources.dicom_io`'s reading.

Three families, each problem a short *kind* (recorded as ``DicomReadError.kind``) plus a message
that names the file and says what is wrong:

- **broken** (:data:`BROKEN_KINDS`): an empty file; another format named ``.dcm`` (PNG, JPEG,
  gzip, zip, PDF, text: :func:`sniff_format`); a header cut short; header dimensions that do not
  match the pixel data (:func:`pixel_length_problem`) or that are implausible (no allocation is
  attempted); Rows or Columns 0; corrupt compressed pixel data; a transfer syntax that no
  decoder knows; a decoder that is not installed (only this one says what to install,
  :func:`decoder_problem`);
- **not a mammogram to use** (:func:`usability_problem`): a Modality other than MG; a SOP class
  that is not a 2-D image (DICOMDIR, structured report, presentation state, ...); a FOR
  PROCESSING (raw) image, unless a study keeps them; a multi-frame object (breast tomosynthesis
  among them); PALETTE COLOR, RGB and other colour images;
- **valid but unusual** files are read, with a :class:`DicomWarning`: no 128-byte preamble or
  no file meta ("not a Part-10 file"), Photometric Interpretation missing (read as MONOCHROME2).

Messages hold no memory addresses or timings, so a skipped-files report is identical on a rerun.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: Images larger than this on a side (pixels) are refused before any allocation: the largest
#: mammography detectors are about 4,000 x 5,000 pixels, digitised film about 7,000 x 5,000.
MAX_SIDE = 30_000
#: ... and larger than this in total bytes of pixel data.
MAX_PIXEL_BYTES = 2 << 30

#: SOP classes that are never a 2-D image (by UID prefix or exact UID), with a plain name.
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.1.3.10": "a DICOMDIR (media directory)",
    "1.2.840.10008.5.1.4.1.1.88.": "a structured report",
    "1.2.840.10008.5.1.4.1.1.11.": "a presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "an encapsulated document",
    "1.2.840.10008.5.1.4.1.1.66": "a raw data or registration object",
    "1.2.840.10008.5.1.4.1.1.481.": "a radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.9.": "a waveform",
}
#: SOP classes of raw (FOR PROCESSING) projection images.
FOR_PROCESSING_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.3.1": "Digital Intra-Oral X-Ray Image Storage - For Processing",
}
BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"

BROKEN_KINDS = ("empty file", "not DICOM", "header cut short", "pixel data size mismatch",
                "implausible dimensions", "zero dimensions", "corrupt pixel data",
                "unknown transfer syntax", "decoder missing")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a zip archive"),
    (b"%PDF", "a PDF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"P5", "a PGM image"),
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class DicomWarning(UserWarning):
    """A DICOM file is unusual but read (e.g. not a Part-10 file); the message names it."""


class DicomNotes:
    """Context manager that collects :class:`DicomWarning` messages instead of printing them
    (so a report can list each once); any other warning passes through unchanged.

    >>> with DicomNotes() as notes:  # doctest: +SKIP
    ...     read_dicom_pixels(path)
    >>> notes.messages  # doctest: +SKIP
    """

    def __enter__(self) -> DicomNotes:
        import warnings

        self.messages: list[str] = []
        self._context = warnings.catch_warnings(record=True)
        self._caught = self._context.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc_info) -> None:
        import warnings

        self._context.__exit__(*exc_info)
        for w in self._caught:
            if issubclass(w.category, DicomWarning):
                self.messages.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def clean_message(text: str) -> str:
    """``text`` without memory addresses (``<object at 0x7f...>``), so messages repeat exactly."""
    return _ADDRESS.sub("", str(text))


def sniff_format(head: bytes) -> str | None:
    """What a file that is not DICOM is, from its first bytes (None when it may be DICOM).

    Parameters
    ----------
    head : bytes
        The first 132 bytes or more of the file.

    Returns
    -------
    str or None
        e.g. ``"a PNG image"``, ``"a gzip archive"``, ``"a text file"``, ``"an empty file"``.
    """
    if not head:
        return "an empty file"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return None
    if len(head) < 132 and not any(head):
        return None  # a file that ends inside the 128-byte preamble: a header cut short
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if looks_like_raw_dataset(head):
        return None
    sample = head[:512]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable >= 0.95 * len(sample):
        return "a text file"
    return "an unknown binary format"


def looks_like_raw_dataset(head: bytes) -> bool:
    """Whether a file without preamble starts like a DICOM data set (a group 0002 or 0008 tag,
    little endian), as old or non-conformant writers leave them."""
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    return group in (0x0002, 0x0008) and element < 0x0100


def header_facts(ds: Any) -> dict[str, Any]:
    """The header attributes the checks and the image record use (none decodes pixels)."""
    file_meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or "")
    if not sop and file_meta is not None:
        sop = str(file_meta.get("MediaStorageSOPClassUID", "") or "")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    return {
        "modality": str(ds.get("Modality", "") or "").strip() or None,
        "sop_class_uid": sop or None,
        "sop_class": _uid_name(sop) if sop else None,
        "presentation_intent": str(ds.get("PresentationIntentType", "") or "").strip() or None,
        "pixel_intensity_relationship":
            str(ds.get("PixelIntensityRelationship", "") or "").strip() or None,
        "n_frames": frames,
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
        "directory": "DirectoryRecordSequence" in ds,
    }


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    return str(UID(uid).name)


def structure_problem(meta: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, message)`` for impossible image dimensions, or None.

    Parameters
    ----------
    meta : dict
        :func:`mammo_lib.sources.dicom_io.dicom_header_meta` of the file (``rows``, ``cols``).
    """
    rows, cols = meta.get("rows"), meta.get("cols")
    if rows is None and cols is None:
        return None
    if not rows or not cols:
        return ("zero dimensions",
                f"the DICOM header gives Rows {rows} x Columns {cols}: an image with no pixels")
    frames = max(1, int(meta.get("n_frames") or 1))
    bits = int(meta.get("bits_allocated") or 16)
    samples = max(1, int(meta.get("samples_per_pixel") or 1))
    size = rows * cols * frames * samples * max(1, bits // 8)
    if rows > MAX_SIDE or cols > MAX_SIDE or size > MAX_PIXEL_BYTES:
        return ("implausible dimensions",
                f"implausible dimensions in the DICOM header ({rows} x {cols} x {frames} frames x "
                f"{bits} bits = {size} bytes); no memory was allocated for it")
    return None


def usability_problem(meta: dict[str, Any], keep_for_processing: bool = False
                      ) -> tuple[str, str] | None:
    """``(kind, reason)`` when a readable DICOM is not a 2-D grey-scale mammogram to use.

    Parameters
    ----------
    meta : dict
        :func:`mammo_lib.sources.dicom_io.dicom_header_meta` (with :func:`header_facts`).
    keep_for_processing : bool
        Keep FOR PROCESSING (raw) images (a study that wants raw images).

    Returns
    -------
    (str, str) or None
        The kind (e.g. ``"multi-frame"``) and a sentence; None when the image is usable.
    """
    sop = meta.get("sop_class_uid") or ""
    for prefix, what in NON_IMAGE_SOP_CLASSES.items():
        if sop == prefix or (prefix.endswith(".") and sop.startswith(prefix)):
            return "not an image", f"SOP class {meta.get('sop_class')} is {what}, not a 2-D image"
    if meta.get("directory"):
        return "not an image", "a DICOMDIR (media directory), not a 2-D image"
    modality = meta.get("modality")
    if modality and modality.upper() != "MG":
        return ("not mammography",
                f"Modality is {modality}, not MG (mammography); a {modality} image is not used")
    if meta.get("n_frames", 1) > 1:
        what = ("a breast tomosynthesis object" if sop == BREAST_TOMOSYNTHESIS
                else "a multi-frame object")
        return ("multi-frame",
                f"{what} with {meta['n_frames']} frames (SOP class {meta.get('sop_class')}); "
                "a single 2-D mammogram is expected")
    photometric = (meta.get("photometric") or "").upper()
    if photometric == "PALETTE COLOR":
        return "colour", "PALETTE COLOR image (a colour lookup table); a grey-scale mammogram is expected"
    if meta.get("samples_per_pixel", 1) != 1 or (photometric and not photometric.startswith("MONOCHROME")):
        return ("colour", f"colour image ({photometric or 'samples per pixel'} "
                          f"{meta.get('samples_per_pixel', 1)}); a grey-scale mammogram is expected")
    if not keep_for_processing and is_for_processing(meta):
        return ("for processing",
                "FOR PROCESSING (raw) image (Presentation Intent Type "
                f"{meta.get('presentation_intent') or 'absent'}, Pixel Intensity Relationship "
                f"{meta.get('pixel_intensity_relationship') or 'absent'}): its grey levels are not "
                "those a reader sees and its breast mask finds the air; set keep_for_processing "
                "to use raw images")
    return None


def is_for_processing(meta: dict[str, Any]) -> bool:
    """Whether the header says the image is raw: Presentation Intent Type FOR PROCESSING, a
    For-Processing SOP class, or (with no Presentation Intent) Pixel Intensity Relationship LIN."""
    intent = (meta.get("presentation_intent") or "").upper()
    if intent == "FOR PROCESSING" or (meta.get("sop_class_uid") or "") in FOR_PROCESSING_SOP_CLASSES:
        return True
    return not intent and (meta.get("pixel_intensity_relationship") or "").upper() == "LIN"


def pixel_length_problem(ds: Any, meta: dict[str, Any]) -> tuple[str, str] | None:
    """For native (uncompressed) pixel data: ``(kind, message)`` when its length does not match
    Rows x Columns x Bits Allocated (x frames x samples), else None."""
    from pydicom.uid import UID

    ts = meta.get("transfer_syntax")
    try:
        compressed = UID(ts).is_compressed if ts else True
    except ValueError:  # not a transfer syntax: decoder_problem names it
        return None
    if compressed or "PixelData" not in ds:
        return None
    value = ds["PixelData"].value
    if value is None:
        return None
    rows, cols = int(meta.get("rows") or 0), int(meta.get("cols") or 0)
    bits = int(meta.get("bits_allocated") or 16)
    frames = max(1, int(meta.get("n_frames") or 1))
    samples = max(1, int(meta.get("samples_per_pixel") or 1))
    expected = (rows * cols * frames * samples * bits + 7) // 8
    held = len(value)
    if held < expected or held > expected + 1:  # one pad byte makes the length even
        state = "truncated" if held < expected else "longer than the header says"
        return ("pixel data size mismatch",
                f"pixel data is {state}: header says {rows} x {cols} x {bits} bits"
                + (f" x {frames} frames" if frames > 1 else "")
                + f" = {expected} bytes, file holds {held}")
    return None


def decoder_problem(ts: str | None) -> tuple[str, str] | None:
    """``(kind, message)`` when pixel data in transfer syntax ``ts`` cannot be decoded here.

    Three cases, three messages: a UID that is not a known transfer syntax; a known one that no
    pydicom decoder handles (installing nothing helps); one whose decoder plugins are not
    installed (the message says what to install). None when a decoder is available.
    """
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    if not ts:
        return None
    uid = UID(ts)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        if uid.name == str(uid):
            return ("unknown transfer syntax",
                    f"transfer syntax {uid} is not a known DICOM transfer syntax; the pixel data "
                    "cannot be interpreted (the file may be damaged or from a private writer)")
        return ("unknown transfer syntax",
                f"cannot decode transfer syntax {uid.name} ({uid}): no pixel-data decoder "
                "exists for it (no `pip install` adds one); convert the file to an image "
                "transfer syntax")
    if decoder.is_available:
        return None
    missing = "; ".join(f"{name}: {why}" for name, why in decoder.missing_dependencies.items())
    return ("decoder missing",
            f"cannot decode transfer syntax {uid.name} ({uid}): its decoder is not installed "
            f"({missing}); install the pixel-data plugins: `pip install pylibjpeg "
            "pylibjpeg-openjpeg pylibjpeg-libjpeg` or `pip install python-gdcm`")


def describe_unreadable(path: Path, exc: BaseException) -> tuple[str, str]:
    """``(kind, message)`` for a file pydicom could not parse."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(600)
    except OSError:
        head = b""
    fmt = sniff_format(head)
    if fmt == "an empty file":
        return "empty file", "empty file (0 bytes), not DICOM"
    if fmt is not None:
        return ("not DICOM", f"not a DICOM file: it is {fmt} (named {path.suffix or 'without a suffix'}); "
                             "remove it from the collection or convert it to DICOM")
    return ("header cut short",
            f"unreadable or truncated DICOM header ({type(exc).__name__}: {clean_message(exc)}); "
            "re-copy or re-export the file")
