"""The built-in phantom: determinism, real DICOM with the promised variety, annotations that sit
on visible lesions, and a 1/f^beta background with beta near 3."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pydicom
import pytest

from mammo_lib.sources.dicom_io import DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION, read_dicom_pixels
from mammo_lib.sources.phantom import (
    PHANTOM_VENDORS,
    collection_digest,
    generate_phantom,
    power_law_noise,
    synthesize_mammogram,
)


@pytest.fixture(scope="module")
def phantom24(tmp_path_factory):
    """24 full-size images (6 clients x 4 views): every vendor appears."""
    return generate_phantom(tmp_path_factory.mktemp("phantom24"), n_images=24, seed=0, progress=False)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    kwargs = dict(n_images=5, rows=384, cols=288, mass_diameter_px=(10.0, 60.0), progress=False)
    a = generate_phantom(tmp_path / "a", seed=1, **kwargs)
    b = generate_phantom(tmp_path / "b", seed=1, **kwargs)
    c = generate_phantom(tmp_path / "c", seed=2, **kwargs)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files_a) == 2 * 5 + 1  # DICOM + JSON per image, PHANTOM.json
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert collection_digest(a) == collection_digest(b)
    assert collection_digest(a) != collection_digest(c)


def test_layout_and_dicom_headers(phantom24):
    dicoms = sorted(phantom24.glob("*/*/*.dcm"))
    jsons = sorted(phantom24.glob("*/*/*.json"))
    assert len(dicoms) == len(jsons) == 24
    assert json.loads((phantom24 / "PHANTOM.json").read_text())["parameters"]["n_images"] == 24
    seen = Counter()
    for dcm in dicoms:
        ds = pydicom.dcmread(dcm, stop_before_pixels=True)
        annotation = json.loads(dcm.with_suffix(".json").read_text())
        info = annotation["image"]
        assert ds.Modality == "MG" and ds.SOPClassUID == DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
        assert ds.SOPInstanceUID == dcm.stem == info["sop_uid"]
        assert ds.StudyInstanceUID == dcm.parent.name == info["study_uid"]
        assert dcm.parent.parent.name == info["client_id"] == ds.PatientID  # a pseudonym
        assert 12 <= ds.BitsStored <= 16 and ds.HighBit == ds.BitsStored - 1
        assert ds.ImageLaterality == info["laterality"] and ds.ViewPosition == info["view"]
        assert (ds.Manufacturer, ds.ManufacturerModelName) == (info["manufacturer"], info["model_name"])
        assert [float(v) for v in ds.PixelSpacing] == [0.2, 0.2]
        seen["photometric", ds.PhotometricInterpretation] += 1
        seen["ts", ds.file_meta.TransferSyntaxUID.name] += 1
        seen["vendor", ds.Manufacturer] += 1
        seen["bits", ds.BitsStored] += 1
    assert seen["photometric", "MONOCHROME1"] and seen["photometric", "MONOCHROME2"]
    assert seen["ts", "RLE Lossless"] and seen["ts", "Explicit VR Little Endian"]
    assert {m for m, _, _ in PHANTOM_VENDORS} == {k[1] for k in seen if k[0] == "vendor"}
    assert seen["vendor", "HOLOGIC, Inc."] == 12
    assert {12, 14, 16} <= {k[1] for k in seen if k[0] == "bits"}


def test_marks_cover_the_promised_variety(phantom24):
    marks = [m for j in phantom24.glob("*/*/*.json") for m in json.loads(j.read_text())["marks"]]
    normals = [j for j in phantom24.glob("*/*/*.json") if not json.loads(j.read_text())["marks"]]
    kinds = Counter((m["class"], m["subtype"]) for m in marks)
    assert kinds["mass", "circumscribed"] and kinds["mass", "spiculated"] and kinds["calcification", "cluster"]
    assert 1 <= len(normals) <= 12
    assert 1.5 <= len(marks) / (24 - len(normals)) <= 4.5  # ~3 per abnormal image
    diameters = [2 * m["radius"] for m in marks if m["class"] == "mass"]
    assert min(diameters) < 40 and max(diameters) > 128  # some masses exceed a 128 px patch
    for m in marks:
        r0, c0, r1, c1 = m["bbox"]
        assert 0 <= r0 <= m["center_row"] < r1 <= 1024 and 0 <= c0 <= m["center_col"] < c1 <= 768
        assert len(m["outline"]) >= 8 and m["pathology"] in ("benign", "malignant")
        outline = np.array(m["outline"])
        assert outline.min() >= 0 and outline[:, 0].max() <= 1023 and outline[:, 1].max() <= 767


def test_lesions_are_visible_where_annotated(phantom24):
    """Mean brightness at each mass centre exceeds its surrounding ring; calcification
    clusters hold pixels brighter than the tissue ring around them."""
    mass_contrast, calc_peak = [], []
    for j in sorted(phantom24.glob("*/*/*.json"))[:12]:
        marks = json.loads(j.read_text())["marks"]
        if not marks:
            continue
        pixels, _ = read_dicom_pixels(j.with_suffix(".dcm"))
        yy, xx = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
        for m in marks:
            d = np.hypot(yy - m["center_row"], xx - m["center_col"])
            r = max(m["radius"], 6.0)
            ring = pixels[(d > 1.8 * r) & (d < 2.5 * r) & (pixels > 0.1 * pixels.max())]
            if m["class"] == "mass":
                mass_contrast.append(pixels[d < 0.4 * r].mean() - ring.mean())
            else:
                calc_peak.append(np.percentile(pixels[d < r], 99.5) - np.percentile(ring, 99.5))
    assert len(mass_contrast) >= 5 and len(calc_peak) >= 3
    assert np.mean(np.array(mass_contrast) > 0) >= 0.85
    assert np.mean(np.array(calc_peak) > 0) >= 0.85


def test_background_texture_has_a_power_law_spectrum_with_beta_near_3():
    rng = np.random.default_rng(0)
    field = power_law_noise((256, 256), 3.0, rng)
    power = np.abs(np.fft.fft2(field)) ** 2
    fr = np.fft.fftfreq(256)[:, None]
    fc = np.fft.fftfreq(256)[None, :]
    f = np.hypot(fr, fc)
    band = (f > 0.02) & (f < 0.3)
    slope, _ = np.polyfit(np.log(f[band]), np.log(power[band]), 1)
    assert -3.3 < slope < -2.7
    assert abs(field.mean()) < 1e-5 and abs(field.std() - 1) < 1e-4


def test_synthesized_image_is_a_breast_against_the_chest_wall():
    for laterality in ("L", "R"):
        image, marks = synthesize_mammogram(512, 384, laterality, "CC", 2, np.random.default_rng(5))
        assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
        chest_side = image[:, :20] if laterality == "L" else image[:, -20:]
        far_side = image[:, -20:] if laterality == "L" else image[:, :20]
        assert chest_side[100:400].mean() > 0.3 > far_side[100:400].mean()
        assert len(marks) == 2


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_images"):
        generate_phantom(tmp_path, n_images=0)
