"""A deterministic synthetic full-field mammogram phantom, written as real DICOM files.

This is the built-in default data of the study: it lets the whole pipeline run anywhere, with
no download, and is a teaching and test source. **It is not clinical data** and says nothing
about how well anything works on real mammograms.

Layout written by :func:`generate_phantom` (OMI-DB-like: one folder per client and study, one
DICOM per image with its annotation JSON beside it)::

    out_dir/
      PHANTOM.json                        generator name, version, parameters, image count
      <client_id>/                        e.g. demd0003 (a pseudonymous client, 4 views)
        <study_uid>/
          <sop_uid>.dcm                   the image (Modality MG, For Presentation)
          <sop_uid>.json                  its annotation: {"image": {...}, "marks": [...]}

Each annotation JSON holds ``image`` (file, client_id, study_uid, sop_uid, laterality, view,
manufacturer, model_name, rows, cols, photometric, bits_stored, transfer_syntax) and ``marks``,
a list of findings, each with ``lesion_id``, ``class`` (``mass`` | ``calcification``),
``subtype`` (``circumscribed`` | ``spiculated`` | ``cluster``), ``center_row``, ``center_col``
(0-based pixel indices), ``bbox`` ``[row0, col0, row1, col1]`` (end exclusive), ``radius``,
``outline`` (list of ``[row, col]`` points) and ``pathology`` (``benign`` | ``malignant``).
Images with no findings ("normals") have ``"marks": []``.

How an image is made (all numpy, vectorised, one FFT per texture):

- **Breast outline**: a semi-ellipse against the chest wall (left image edge for a left breast,
  right edge for a right breast, as images are hung back to back), with a thickness profile
  that falls off towards the skin line, a thin brighter skin line, and for MLO views a
  pectoral-muscle triangle in the upper chest-wall corner. A small bright film/detector label
  sits in the background (the breast mask must ignore it).
- **Anatomical background**: fibroglandular density as power-law noise with a 1/f**beta
  spectrum, beta ~ 3, the exponent measured on real mammograms (Burgess AE, Jacobson FL,
  Judy PF. Human observer detection experiments with mammograms and power-law noise.
  Med Phys 2001;28(4):419-437; Heine JJ, Velthuizen RP. Spectral analysis of full field
  digital mammography data. Med Phys 2002;29(5):647-661), thresholded softly into
  fat/gland and denser towards the nipple-chest-wall axis.
- **Masses**: circumscribed (lobulated ellipsoid with smooth margin) and spiculated (dense core
  with radiating spicules), diameters ~15-180 px, so some exceed a 128-pixel patch and some sit
  near the skin line.
- **Microcalcification clusters**: 5-25 small very bright specks within a 10-40 px cluster.
- Quantum noise, then mapped to 12-16 bit stored values.

Vendors, photometric interpretation (MONOCHROME1/2), bit depth and RLE compression vary across
images so that vendor filters, inversion and decoding are all exercised. Same seed, same
parameters → byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammo_lib.fileio import atomic_write_text, file_sha256
from mammo_lib.progress import progress_bar
from mammo_lib.rng import phantom_image_stream
from mammo_lib.sources.dicom_io import deterministic_uid, write_mammogram_dicom

PHANTOM_VERSION = "1"

#: The "vendors" of the phantom: (Manufacturer, ManufacturerModelName, bits stored).
PHANTOM_VENDORS: tuple[tuple[str, str, int], ...] = (
    ("HOLOGIC, Inc.", "Selenia Dimensions", 12),
    ("GE MEDICAL SYSTEMS", "Senographe Essential", 14),
    ("SIEMENS", "Mammomat Inspiration", 16),
    ("FUJIFILM Corporation", "AMULET Innovality", 12),
)

#: Which vendor images client k: indices into PHANTOM_VENDORS, repeated (half are Hologic, as
#: the paper's vendor filter keeps only Hologic Selenia Dimensions; every vendor appears in any
#: phantom of 6 clients = 24 images or more).
VENDOR_CYCLE = (0, 1, 0, 2, 0, 3)


@dataclass(frozen=True)
class PhantomMark:
    """One inserted finding, in the image's pixel coordinates."""

    lesion_id: str
    lesion_class: str
    subtype: str
    center_row: float
    center_col: float
    radius: float
    bbox: tuple[int, int, int, int]
    outline: tuple[tuple[float, float], ...]
    pathology: str

    def to_json(self) -> dict[str, Any]:
        return {
            "lesion_id": self.lesion_id,
            "class": self.lesion_class,
            "subtype": self.subtype,
            "center_row": round(self.center_row, 2),
            "center_col": round(self.center_col, 2),
            "radius": round(self.radius, 2),
            "bbox": list(self.bbox),
            "outline": [[round(r, 1), round(c, 1)] for r, c in self.outline],
            "pathology": self.pathology,
        }


# --------------------------------------------------------------------------------------------
# image synthesis
# --------------------------------------------------------------------------------------------


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance 2-D noise with power spectrum ~ 1/f**beta (one real FFT)."""
    rows, cols = shape
    fr = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fc = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    f = np.sqrt(fr * fr + fc * fc)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    white = rng.standard_normal((2, *f.shape), dtype=np.float32)
    spectrum = (white[0] + 1j * white[1]) * amplitude.astype(np.float32)
    field = np.fft.irfft2(spectrum, s=shape)
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def _breast_geometry(
    rows: int, cols: int, laterality: str, view: str, rng: np.random.Generator
) -> dict[str, np.ndarray | float]:
    """Normalised elliptical radius ``rad`` (<1 inside the breast), distance to the chest wall."""
    rr = np.arange(rows, dtype=np.float32)[:, None]
    cc = np.arange(cols, dtype=np.float32)[None, :]
    depth = cc if laterality == "L" else (cols - 1 - cc)  # distance from the chest wall
    center_row = rows * rng.uniform(0.46, 0.54)
    semi_depth = cols * rng.uniform(0.70, 0.86)  # how far the nipple reaches
    semi_height = rows * rng.uniform(0.40, 0.47)
    if view == "MLO":  # MLO breasts are taller and the upper part reaches the edge
        semi_height = rows * rng.uniform(0.45, 0.52)
        center_row = rows * rng.uniform(0.52, 0.58)
    rad = np.sqrt((depth / semi_depth) ** 2 + ((rr - center_row) / semi_height) ** 2)
    return {
        "rad": rad.astype(np.float32),
        "depth": np.broadcast_to(depth, (rows, cols)).astype(np.float32),
        "rr": np.broadcast_to(rr, (rows, cols)),
        "center_row": center_row,
        "semi_depth": semi_depth,
        "semi_height": semi_height,
    }


def _mass_radius_profile(n_angles: int, radius: float, rng: np.random.Generator, lobulation: float):
    """Radius as a function of angle: a few low harmonics give a lobulated outline."""
    angles = np.linspace(0.0, 2.0 * np.pi, n_angles, endpoint=False)
    profile = np.ones_like(angles)
    for k in (2, 3, 4, 5):
        profile += lobulation / k * rng.standard_normal() * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    return angles, radius * np.clip(profile, 0.6, 1.4)


def _clip_outline(points, rows: int, cols: int) -> tuple[tuple[float, float], ...]:
    """Outline points clipped to the image (a finding at the border is cut by it)."""
    return tuple(
        (float(min(max(r, 0.0), rows - 1.0)), float(min(max(c, 0.0), cols - 1.0))) for r, c in points
    )


def _render_mass(
    image: np.ndarray,
    center: tuple[float, float],
    radius: float,
    spiculated: bool,
    contrast: float,
    rng: np.random.Generator,
    texture: np.ndarray | None = None,
) -> tuple[tuple[int, int, int, int], tuple[tuple[float, float], ...]]:
    """Add one mass (attenuation units) into ``image`` in place; returns its bbox and outline.

    ``texture`` (same shape as ``image``) gives the mass a mottled interior."""
    rows, cols = image.shape
    cr, cc = center
    angles, radii = _mass_radius_profile(64, radius, rng, 0.25 if not spiculated else 0.15)
    reach = radius * (2.4 if spiculated else 1.3) + 4
    r0, r1 = max(int(cr - reach), 0), min(int(cr + reach) + 1, rows)
    c0, c1 = max(int(cc - reach), 0), min(int(cc + reach) + 1, cols)
    yy = np.arange(r0, r1, dtype=np.float32)[:, None] - cr
    xx = np.arange(c0, c1, dtype=np.float32)[None, :] - cc
    dist = np.sqrt(yy * yy + xx * xx)
    theta = np.mod(np.arctan2(yy, xx), 2 * np.pi)
    local_radius = np.interp(theta, np.append(angles, 2 * np.pi), np.append(radii, radii[0]))
    u = dist / local_radius
    margin = 0.08 if not spiculated else 0.15  # soft edge width, relative
    # projected thickness of a (lobulated) ellipsoid, softened at the margin
    body = np.sqrt(np.clip(1.0 - np.minimum(u, 1.0) ** 2, 0.0, 1.0))
    edge = 1.0 / (1.0 + np.exp((u - 1.0) / margin))
    blob = (0.55 * body + 0.45) * edge
    if spiculated:
        n_spicules = int(rng.integers(12, 28))
        spic = np.zeros_like(blob)
        for _ in range(n_spicules):
            phi = rng.uniform(0, 2 * np.pi)
            length = radius * rng.uniform(1.4, 2.6)
            width = max(1.2, radius * rng.uniform(0.04, 0.09))
            ux, uy = math.cos(phi), math.sin(phi)
            along = xx * ux + yy * uy
            across = np.abs(-xx * uy + yy * ux)
            taper = np.clip(1.0 - along / length, 0.0, 1.0) * (along > 0)
            spic = np.maximum(spic, taper * np.exp(-0.5 * (across / (width * (0.3 + taper))) ** 2))
        blob = np.maximum(blob, 0.8 * spic)
    if texture is not None:
        blob = blob * (1.0 + 0.12 * texture[r0:r1, c0:c1])
    image[r0:r1, c0:c1] += np.float32(contrast) * blob.astype(np.float32)
    outline = _clip_outline(
        [(cr + rad * math.sin(a), cc + rad * math.cos(a)) for a, rad in zip(angles[::2], radii[::2], strict=True)],
        rows, cols,
    )
    ext = float(np.max(radii)) * (1.6 if spiculated else 1.0)
    bbox = (
        max(int(math.floor(cr - ext)), 0),
        max(int(math.floor(cc - ext)), 0),
        min(int(math.ceil(cr + ext)) + 1, rows),
        min(int(math.ceil(cc + ext)) + 1, cols),
    )
    return bbox, outline


def _render_calcifications(
    image: np.ndarray,
    center: tuple[float, float],
    radius: float,
    contrast: float,
    rng: np.random.Generator,
) -> tuple[tuple[int, int, int, int], tuple[tuple[float, float], ...]]:
    """Add a cluster of bright specks; returns its bbox and a circular outline."""
    rows, cols = image.shape
    cr, cc = center
    # about one speck per 60 square pixels of cluster, 5..25, so specks stay apart
    n = int(np.clip(rng.integers(5, 26), 5, max(5, int(math.pi * radius * radius / 60.0))))
    rad = radius * np.sqrt(rng.uniform(0, 1, n))
    ang = rng.uniform(0, 2 * np.pi, n)
    pr, pc = cr + rad * np.sin(ang), cc + rad * np.cos(ang)
    for r, c in zip(pr, pc, strict=True):
        size = rng.uniform(0.7, 2.0)
        half = int(math.ceil(3 * size)) + 1
        r0, r1 = max(int(r) - half, 0), min(int(r) + half + 1, rows)
        c0, c1 = max(int(c) - half, 0), min(int(c) + half + 1, cols)
        if r0 >= r1 or c0 >= c1:
            continue
        yy = np.arange(r0, r1, dtype=np.float32)[:, None] - r
        xx = np.arange(c0, c1, dtype=np.float32)[None, :] - c
        speck = np.exp(-0.5 * (yy * yy + xx * xx) / (size * size))
        # maximum, not sum: touching specks do not merge into one saturated blob
        image[r0:r1, c0:c1] = np.maximum(
            image[r0:r1, c0:c1], np.float32(contrast * rng.uniform(0.6, 1.2)) * speck
        )
    extent = float(np.max(rad)) + 3.0 if n else radius
    bbox = (
        max(int(math.floor(cr - extent)), 0),
        max(int(math.floor(cc - extent)), 0),
        min(int(math.ceil(cr + extent)) + 1, rows),
        min(int(math.ceil(cc + extent)) + 1, cols),
    )
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    outline = _clip_outline([(cr + extent * math.sin(a), cc + extent * math.cos(a)) for a in angles], rows, cols)
    return bbox, outline


def synthesize_mammogram(
    rows: int,
    cols: int,
    laterality: str,
    view: str,
    n_lesions: int,
    rng: np.random.Generator,
    *,
    beta: float = 3.0,
    mass_fraction: float = 0.65,
    mass_diameter_px: tuple[float, float] = (15.0, 180.0),
    image_tag: str = "img",
) -> tuple[np.ndarray, list[PhantomMark]]:
    """One synthetic mammogram as float32 in [0, 1] (brighter = denser) and its marks."""
    geo = _breast_geometry(rows, cols, laterality, view, rng)
    rad = geo["rad"]
    depth = geo["depth"]
    inside = rad < 1.0
    # compressed-breast thickness: flat in the middle, falling off over the outer ~20 %
    thickness = np.clip((1.0 - rad) / 0.2, 0.0, 1.0)
    thickness = np.sqrt(thickness * (2.0 - thickness)).astype(np.float32)  # rounded fall-off
    # fibroglandular tissue: 1/f^beta texture, denser centrally and towards the chest wall
    texture = power_law_noise((rows, cols), beta, rng)
    fine = power_law_noise((rows, cols), 2.0, rng)
    density_bias = rng.uniform(-0.6, 0.8)  # fatty ... dense breasts
    central = 1.2 * (1.0 - rad) - 0.5 * (depth / geo["semi_depth"]) ** 2
    gland_logit = 1.3 * texture + 0.3 * fine + 1.6 * central + density_bias - 0.6
    gland = 1.0 / (1.0 + np.exp(-1.1 * gland_logit))
    atten = thickness * (0.30 + 0.34 * gland)
    # skin line: thin brighter rim just inside the boundary
    skin = np.exp(-0.5 * ((rad - 0.995) / 0.006) ** 2) * 0.10
    atten = atten + skin.astype(np.float32)
    # pectoral muscle on MLO: bright triangle in the upper chest-wall corner
    if view == "MLO":
        rr = geo["rr"]
        pec_depth = cols * rng.uniform(0.22, 0.32)
        pec_height = rows * rng.uniform(0.35, 0.5)
        pec = (depth / pec_depth + rr / pec_height) < 1.0
        pec_edge = 1.0 / (1.0 + np.exp(np.clip(((depth / pec_depth + rr / pec_height) - 1.0) / 0.02, -50, 50)))
        atten = np.where(inside, atten + 0.12 * pec_edge * thickness, atten)
        del pec
    atten = np.where(inside, atten, 0.0).astype(np.float32)

    lesion_layer = np.zeros_like(atten)  # findings, added inside the breast only
    marks: list[PhantomMark] = []
    occupied: list[tuple[float, float, float]] = []
    lo_d, hi_d = mass_diameter_px

    def place(reach: float) -> tuple[float, float] | None:
        """A centre inside the breast, clear of earlier findings (up to 60 tries)."""
        for _ in range(60):
            # a quarter of the findings near the skin line / image border
            near_edge = rng.uniform() < 0.25
            target_rad = rng.uniform(0.80, 0.93) if near_edge else rng.uniform(0.1, 0.78)
            phi = rng.uniform(-0.5 * np.pi, 0.5 * np.pi)
            d = target_rad * geo["semi_depth"] * math.cos(phi)
            r = geo["center_row"] + target_rad * geo["semi_height"] * math.sin(phi)
            c = d if laterality == "L" else cols - 1 - d
            if not (0 <= r < rows and 0 <= c < cols) or not inside[int(r), int(c)]:
                continue
            if any(math.hypot(r - orr, c - oc) < reach + orad + 8 for orr, oc, orad in occupied):
                continue
            return r, c
        return None

    for _ in range(n_lesions):
        is_mass = rng.uniform() < mass_fraction
        if is_mass:
            radius = float(np.exp(rng.uniform(math.log(lo_d), math.log(hi_d)))) / 2.0
            spiculated = bool(rng.uniform() < 0.45)
        else:
            radius = float(rng.uniform(10.0, 40.0))
            spiculated = False
        spot = None
        for _shrink in range(4):  # keep the drawn size when it fits; shrink only if crowded
            reach = radius * (1.6 if spiculated else 1.0)
            spot = place(reach)
            if spot is not None:
                break
            radius *= 0.8
        if spot is None:
            continue
        r, c = spot
        occupied.append((r, c, reach))
        lesion_id = f"{image_tag}-L{len(marks) + 1}"
        if is_mass:
            contrast = rng.uniform(0.14, 0.24)
            bbox, outline = _render_mass(lesion_layer, (r, c), radius, spiculated, contrast, rng, fine)
            pathology = "malignant" if rng.uniform() < (0.8 if spiculated else 0.25) else "benign"
            marks.append(
                PhantomMark(lesion_id, "mass", "spiculated" if spiculated else "circumscribed",
                            r, c, radius, bbox, outline, pathology)
            )
        else:
            contrast = rng.uniform(0.30, 0.50)
            bbox, outline = _render_calcifications(lesion_layer, (r, c), radius, contrast, rng)
            pathology = "malignant" if rng.uniform() < 0.45 else "benign"
            marks.append(
                PhantomMark(lesion_id, "calcification", "cluster", r, c, radius, bbox, outline, pathology)
            )
    atten += lesion_layer * np.clip(thickness * 3.0, 0.0, 1.0)  # no tissue, no lesion
    # detector: quantum noise, a dark background with slight offset, and a burned-in label
    noise = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.008)
    image = np.clip(atten + 0.03 + noise * (0.4 + atten), 0.0, 1.0)
    label_r = int(rows * 0.05)
    label_c = int(cols * 0.82) if laterality == "L" else int(cols * 0.05)
    image[label_r : label_r + int(rows * 0.03), label_c : label_c + int(cols * 0.1)] = 0.95
    return image.astype(np.float32), marks


# --------------------------------------------------------------------------------------------
# study writer
# --------------------------------------------------------------------------------------------


def generate_phantom(
    out_dir: str | os.PathLike,
    n_images: int = 60,
    seed: int = 0,
    rows: int = 1024,
    cols: int = 768,
    *,
    lesions_per_image: float = 3.0,
    normal_fraction: float = 0.2,
    mass_fraction: float = 0.65,
    mass_diameter_px: tuple[float, float] = (15.0, 180.0),
    monochrome1_fraction: float = 0.3,
    rle_fraction: float = 0.25,
    pixel_spacing_mm: float = 0.2,
    beta: float = 3.0,
    progress: bool = True,
) -> Path:
    """Write a synthetic mammography collection (DICOM + annotation JSON) into ``out_dir``.

    ``n_images`` images in clients of four views (LCC, RCC, LMLO, RMLO); a ``normal_fraction``
    share have no findings, the others ``1 + Poisson(lesions_per_image - 1)`` findings, of which
    ``mass_fraction`` are masses. Deterministic: the same arguments give byte-identical files
    (each image draws from its own ``numpy`` generator seeded by ``(seed, index)``). Existing
    files of an earlier run are overwritten; returns ``out_dir``.

    An earlier phantom in ``out_dir`` (its ``PHANTOM.json``, or only phantom client folders
    ``demd*`` left by a killed run) is removed first, so a phantom of other parameters never
    mixes with it. A folder holding anything else is refused.

    Raises
    ------
    ValueError
        When ``n_images`` < 1, ``rows`` or ``cols`` < 64, or ``out_dir`` holds files that are not
        a phantom's.
    """
    out = Path(out_dir)
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if rows < 64 or cols < 64:
        raise ValueError(f"rows and cols must be >= 64, got {rows}x{cols}")
    _clear_earlier_phantom(out)
    out.mkdir(parents=True, exist_ok=True)
    views = (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))
    iterator = range(n_images)
    if progress:  # live on a terminal, plain and time-free in a notebook

        iterator = progress_bar(iterator, desc="phantom images", unit="img")
    for index in iterator:
        rng = phantom_image_stream(seed, index)
        client = index // 4
        manufacturer, model, bits = PHANTOM_VENDORS[VENDOR_CYCLE[client % len(VENDOR_CYCLE)]]
        laterality, view = views[index % 4]
        client_id = f"demd{seed % 10000:04d}{client:04d}"
        image_tag = f"{client_id}-{laterality}{view}"
        is_normal = rng.uniform() < normal_fraction
        n_lesions = 0 if is_normal else 1 + int(rng.poisson(max(lesions_per_image - 1.0, 0.0)))
        image, marks = synthesize_mammogram(
            rows, cols, laterality, view, n_lesions, rng, beta=beta,
            mass_fraction=mass_fraction, mass_diameter_px=mass_diameter_px, image_tag=image_tag,
        )
        photometric = "MONOCHROME1" if rng.uniform() < monochrome1_fraction else "MONOCHROME2"
        compress = "rle" if rng.uniform() < rle_fraction else None
        max_value = (1 << bits) - 1
        stored = np.round(image * (max_value * 0.97)).astype(np.uint16)
        sop_uid = str(deterministic_uid("sop", seed, image_tag))
        study_uid = str(deterministic_uid("study", seed, client_id))
        folder = out / client_id / study_uid
        dcm_path = folder / f"{sop_uid}.dcm"
        write_mammogram_dicom(
            dcm_path, stored, photometric=photometric, bits_stored=bits,
            manufacturer=manufacturer, model_name=model, image_pseudonym=image_tag,
            laterality=laterality, view=view, pixel_spacing_mm=pixel_spacing_mm,
            rescale_slope=1.0, rescale_intercept=0.0, compress=compress, seed=seed,
            study_pseudonym=client_id, patient_pseudonym=client_id,
        )
        annotation = {
            "image": {
                "file": dcm_path.name,
                "client_id": client_id,
                "study_uid": study_uid,
                "sop_uid": sop_uid,
                "laterality": laterality,
                "view": view,
                "manufacturer": manufacturer,
                "model_name": model,
                "rows": rows,
                "cols": cols,
                "photometric": photometric,
                "bits_stored": bits,
                "transfer_syntax": "RLE Lossless" if compress else "Explicit VR Little Endian",
            },
            "marks": [m.to_json() for m in marks],
        }
        atomic_write_text(folder / f"{sop_uid}.json", json.dumps(annotation, indent=1, sort_keys=True) + "\n")
    info = {
        # recorded in every PHANTOM.json: the text is kept as first written (when the module was
        # mammo_lib.phantom) so that outputs stay byte-identical; the rule now lives in mammo_lib.sources.phantom
        "generator": "mammo_lib.phantom.generate_phantom",
        "version": PHANTOM_VERSION,
        "note": "synthetic phantom for running and teaching the pipeline; NOT clinical data",
        "parameters": {
            "n_images": n_images, "seed": seed, "rows": rows, "cols": cols,
            "lesions_per_image": lesions_per_image, "normal_fraction": normal_fraction,
            "mass_fraction": mass_fraction, "mass_diameter_px": list(mass_diameter_px),
            "monochrome1_fraction": monochrome1_fraction, "rle_fraction": rle_fraction,
            "pixel_spacing_mm": pixel_spacing_mm, "beta": beta,
        },
    }
    atomic_write_text(out / "PHANTOM.json", json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out


def _clear_earlier_phantom(out: Path) -> None:
    """Remove an earlier phantom from ``out``; refuse a folder that holds anything else."""
    import shutil

    if not out.is_dir():
        return
    entries = list(out.iterdir())
    foreign = [p.name for p in entries if p.name != "PHANTOM.json" and not (p.is_dir() and p.name.startswith("demd"))]
    if foreign:
        raise ValueError(f"{out}: holds files that are not a generated phantom ({', '.join(sorted(foreign)[:5])}); "
                         "the phantom is written only into an empty folder or over an earlier phantom")
    for path in entries:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def collection_digest(root: str | os.PathLike) -> str:
    """sha256 over every file under ``root`` (relative path + the file's own sha256, through
    :func:`mammo_lib.fileio.file_sha256`), for determinism checks."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(file_sha256(path).encode())
    return h.hexdigest()
