"""Collection readers (phantom/OMI-DB-like, CBIS-DDSM, MIAS), pixel loading, the breast mask,
the messages for bad collections, and the check of a data source before any work."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mammo_lib.sources.collection import COLLECTION_KINDS, check_source, open_collection
from mammo_lib.sources.dicom_io import DicomReadError, write_mammogram_dicom
from mammo_lib.sources.formats.cbis_ddsm import cbis_patient_id
from mammo_lib.sources.formats.common import pseudonymous_patient_id
from mammo_lib.sources.images import breast_mask, load_image_pixels
from mammo_lib.sources.phantom import generate_phantom
from mammo_lib.sources.records import vendor_matches


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> Path:
    return generate_phantom(tmp_path_factory.mktemp("phantom"), n_images=12, seed=4, progress=False)


@pytest.fixture
def phantom_copy(phantom_root, tmp_path) -> Path:
    """A private copy the test may damage."""
    return Path(shutil.copytree(phantom_root, tmp_path / "phantom"))


# --------------------------------------------------------------------------------------------
# phantom / OMI-DB-like
# --------------------------------------------------------------------------------------------


def test_phantom_reader_lists_every_image_with_its_marks(phantom_root):
    collection = open_collection("phantom", phantom_root)
    assert collection.kind == "phantom" and collection.skipped == [] and collection.excluded_by_vendor == 0
    assert len(collection.records) == 12
    marks = {}
    for j in phantom_root.glob("*/*/*.json"):
        annotation = json.loads(j.read_text())
        marks[j.with_suffix(".dcm").resolve()] = annotation
    for record in collection.records:
        annotation = marks[record.path.resolve()]
        info = annotation["image"]
        assert (record.laterality, record.view) == (info["laterality"], info["view"])
        assert (record.manufacturer, record.model_name) == (info["manufacturer"], info["model_name"])
        assert record.extra["rows"] == 1024 and record.extra["cols"] == 768
        assert len(record.lesions) == len(annotation["marks"])
        for lesion, mark in zip(record.lesions, annotation["marks"], strict=True):
            assert lesion.lesion_class == mark["class"] and lesion.center_row == mark["center_row"]
            assert lesion.bbox == tuple(mark["bbox"]) and lesion.pathology == mark["pathology"]
            assert lesion.outline is not None and len(lesion.outline) == len(mark["outline"])
        # pseudonymous: neither the PatientID nor the client folder name
        patient_id = pydicom.dcmread(record.path, stop_before_pixels=True).PatientID
        assert len(record.image_id) == 16 and patient_id not in record.image_id
        assert info["client_id"] not in record.image_id
        # the woman: every view of one client folder, by the hash of its name only
        client = record.path.relative_to(phantom_root).parts[0]
        assert client == info["client_id"] == patient_id
        assert record.patient_id == pseudonymous_patient_id(client)
        assert len(record.patient_id) == 16 and client not in record.patient_id
        assert record.patient_id not in (client, record.image_id)
    assert len({r.image_id for r in collection.records}) == 12
    views = {}
    for record in collection.records:
        views.setdefault(record.patient_id, set()).add((record.laterality, record.view))
    # 12 images = 3 women of 4 views each (LCC, RCC, LMLO, RMLO), each woman one patient_id
    assert len(views) == 3
    assert all(v == {("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")} for v in views.values())
    assert open_collection("omidb-like", phantom_root, progress=True).records[0].source_kind == "omidb-like"


def test_vendor_filter_is_a_case_insensitive_substring_on_manufacturer_or_model(phantom_root):
    everything = open_collection("phantom", phantom_root)
    by_vendor = Counter(r.manufacturer for r in everything.records)
    hologic = open_collection("phantom", phantom_root, vendor_filter="hologic")
    selenia = open_collection("phantom", phantom_root, vendor_filter="SELENIA dimensions")
    assert len(hologic.records) == len(selenia.records) == by_vendor["HOLOGIC, Inc."] > 0
    assert hologic.excluded_by_vendor == 12 - len(hologic.records)
    assert all(r.manufacturer == "HOLOGIC, Inc." for r in hologic.records)
    with pytest.raises(ValueError, match="excluded by vendor_filter='Agfa'"):
        open_collection("phantom", phantom_root, vendor_filter="Agfa")
    assert vendor_matches(None, None, None) and vendor_matches("", "X", None)
    assert not vendor_matches("ge", None, None)


def test_reader_reads_headers_only_and_pixels_load_later(phantom_copy):
    """A file whose pixel data is cut off is still listed (no decoding at listing time);
    load_image_pixels then reports it by name."""
    collection = open_collection("phantom", phantom_copy)
    victim = collection.records[0].path
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    again = open_collection("phantom", phantom_copy)
    assert victim in [r.path for r in again.records]
    with pytest.raises(DicomReadError, match=rf"{victim.name}.*truncated"):
        load_image_pixels(next(r for r in again.records if r.path == victim))
    pixels = load_image_pixels(again.records[1])
    assert pixels.dtype == np.float32 and pixels.shape == (1024, 768)


def test_bad_files_in_a_collection_are_skipped_with_reasons(phantom_copy):
    jsons = sorted(phantom_copy.glob("*/*/*.json"))
    # 1. annotation pointing at a missing image
    jsons[0].with_suffix(".dcm").unlink()
    # 2. annotation outside the image
    annotation = json.loads(jsons[1].read_text())
    annotation["marks"] = [{"lesion_id": "far", "class": "mass", "center_row": 5000, "center_col": 10}]
    jsons[1].write_text(json.dumps(annotation))
    # 3. a text file posing as the image
    jsons[2].with_suffix(".dcm").write_text("not a dicom")
    # 4. a DICOM without annotation
    jsons[3].unlink()
    # 5. broken JSON
    jsons[4].write_text("{not json")
    collection = open_collection("phantom", phantom_copy)
    assert len(collection.records) == 12 - 5
    problems = {Path(s.path).name: s.problem for s in collection.skipped}
    assert len(collection.skipped) == 5
    assert "missing image" in problems[jsons[0].name]
    assert "outside the 1024x768 image" in problems[jsons[1].name] and "far" in problems[jsons[1].name]
    assert "not a DICOM file" in problems[jsons[2].with_suffix(".dcm").name]
    assert "no annotation JSON" in problems[jsons[3].with_suffix(".dcm").name]
    assert "unreadable annotation JSON" in problems[jsons[4].name]


def test_a_collection_with_nothing_usable_fails_clearly(tmp_path):
    folder = tmp_path / "c1" / "s1"
    folder.mkdir(parents=True)
    (folder / "img.json").write_text(json.dumps({"image": {"file": "img.dcm"}, "marks": []}))
    with pytest.raises(ValueError, match=r"no usable images in .*img\.json: annotation points at a missing image"):
        open_collection("omidb-like", tmp_path)


def test_wrong_kind_missing_and_empty_folders(tmp_path):
    with pytest.raises(ValueError, match="unknown collection kind 'ddsm'.*phantom, omidb-like, omidb, cbis-ddsm, vindr-mammo, inbreast, mias"):
        open_collection("ddsm", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        open_collection("mias", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty is empty"):
        open_collection("phantom", tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"other: no Info.txt"):
        open_collection("mias", tmp_path / "other")
    with pytest.raises(ValueError, match=r"other: no CBIS-DDSM description CSV"):
        open_collection("cbis-ddsm", tmp_path / "other")
    with pytest.raises(ValueError, match=r"no usable images in .*other"):
        open_collection("phantom", tmp_path / "other")
    assert COLLECTION_KINDS == ("phantom", "omidb-like", "omidb", "cbis-ddsm", "vindr-mammo", "inbreast", "mias")
    with pytest.raises(ValueError, match=r"other: no CBIS-DDSM description CSV"):
        open_collection("CBIS_DDSM", tmp_path / "other")  # spelling variants are accepted


# --------------------------------------------------------------------------------------------
# CBIS-DDSM
# --------------------------------------------------------------------------------------------

CBIS_COLUMNS = [
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
    "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]


def _cbis_folder(root: Path) -> Path:
    """A CBIS-DDSM-like folder: one image with two masses (two masks, one MONOCHROME1), one image whose CSV row
    has its mask and crop columns swapped, one row naming a missing image, one wrong-size mask."""
    rows, cols = 400, 300
    yy, xx = np.mgrid[:rows, :cols]
    image = (1000 + 200 * np.exp(-((yy - 120) ** 2 + (xx - 100) ** 2) / 800.0)).astype(np.uint16)

    def write(rel: str, pixels: np.ndarray, bits: int = 16, photometric="MONOCHROME2") -> str:
        write_mammogram_dicom(root / rel, pixels, bits_stored=bits, image_pseudonym=rel,
                              manufacturer="", model_name="", pixel_spacing_mm=None,
                              photometric=photometric)
        return rel

    def mask(r0, c0, r1, c1, shape=(rows, cols)) -> np.ndarray:
        m = np.zeros(shape, np.uint16)
        m[r0:r1, c0:c1] = 255
        return m

    img_a = write("Mass-Training_P_00001_LEFT_CC/1.1/1.2/000000.dcm", image)
    mask_a1 = write("Mass-Training_P_00001_LEFT_CC_1/1.3/1.4/000001.dcm", mask(100, 80, 141, 121), 8)
    mask_a2 = write("Mass-Training_P_00001_LEFT_CC_2/1.3/1.4/000001.dcm", mask(300, 200, 320, 260), 8,
                    "MONOCHROME1")
    crop_a1 = write("Mass-Training_P_00001_LEFT_CC_1/1.3/1.4/000000.dcm", image[100:141, 80:121])
    img_b = write("Mass-Training_P_00002_RIGHT_MLO/2.1/2.2/000000.dcm", image)
    mask_b = write("Mass-Training_P_00002_RIGHT_MLO_1/2.3/2.4/000000.dcm", mask(50, 50, 61, 71), 8)
    crop_b = write("Mass-Training_P_00002_RIGHT_MLO_1/2.3/2.4/000001.dcm", image[50:61, 50:71])
    img_c = write("Mass-Training_P_00003_LEFT_MLO/3.1/3.2/000000.dcm", image)
    mask_c = write("Mass-Training_P_00003_LEFT_MLO_1/3.3/3.4/000000.dcm", mask(5, 5, 20, 20, (200, 150)), 8)

    def row(pid, side, view, abn, img, crop, roi, pathology="MALIGNANT"):
        return {"patient_id": pid, "breast_density": "2", "left or right breast": side,
                "image view": view, "abnormality id": abn, "abnormality type": "mass",
                "mass shape": "OVAL", "mass margins": "CIRCUMSCRIBED", "assessment": "4",
                "pathology": pathology, "subtlety": "3", "image file path": img,
                "cropped image file path": crop, "ROI mask file path": roi + "\n"}

    rows_csv = [
        row("P_00001", "LEFT", "CC", "1", img_a, crop_a1, mask_a1),
        row("P_00001", "LEFT", "CC", "2", img_a, "", mask_a2, "BENIGN_WITHOUT_CALLBACK"),
        row("P_00002", "RIGHT", "MLO", "1", img_b, mask_b, crop_b, "BENIGN"),  # swapped columns
        row("P_00003", "LEFT", "MLO", "1", img_c, "", mask_c),  # mask of the wrong size
        row("P_00004", "LEFT", "CC", "1", "Mass-Training_P_00004_LEFT_CC/4.1/4.2/000000.dcm", "", ""),
    ]
    with (root / "mass_case_description_train_set.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CBIS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows_csv)
    return root


def test_cbis_ddsm_reader_takes_lesions_from_the_roi_masks(tmp_path):
    root = _cbis_folder(tmp_path / "cbis")
    collection = open_collection("cbis-ddsm", root)
    assert len(collection.records) == 2
    a, b = sorted(collection.records, key=lambda r: str(r.path))
    assert (a.laterality, a.view, b.laterality, b.view) == ("L", "CC", "R", "MLO")
    assert len(a.lesions) == 2 and len(b.lesions) == 1
    first, second = a.lesions
    assert first.bbox == (100, 80, 141, 121) and (first.center_row, first.center_col) == (120.0, 100.0)
    assert second.bbox == (300, 200, 320, 260) and (second.center_row, second.center_col) == (309.5, 229.5)
    assert first.pathology == "malignant" and second.pathology == "benign"
    assert first.lesion_class == "mass" and first.source_label == "mass OVAL"
    outline = np.array(first.outline)
    assert outline[:, 0].min() >= 99 and outline[:, 0].max() <= 141 and len(outline) >= 8
    assert b.lesions[0].bbox == (50, 50, 61, 71)  # found via the cropped-image column
    problems = [s.problem for s in collection.skipped]
    assert len(problems) == 2
    assert any("missing image" in p and "P_00004" in p for p in problems)
    assert any("no usable ROI mask" in p and "400x300" in p for p in problems)
    assert all(len(r.image_id) == 16 and "P_0000" not in r.image_id for r in collection.records)
    # two women, two patient ids: hashes of P_00001 / P_00002, never the ids themselves
    assert (a.patient_id, b.patient_id) == (pseudonymous_patient_id("P_00001"),
                                            pseudonymous_patient_id("P_00002"))
    assert a.patient_id != b.patient_id
    assert all(len(r.patient_id) == 16 and "P_0000" not in r.patient_id for r in collection.records)


def test_cbis_ddsm_patient_from_the_csv_column_else_the_case_folder():
    rel = "Calc-Test_P_00038_LEFT_MLO/1.3.6/1.3.6.2/000000.dcm"
    from_column = cbis_patient_id({"patient_id": " P_00038 "}, rel, "img")
    from_path = cbis_patient_id({"patient_id": ""}, rel, "img")
    assert from_column == from_path == pseudonymous_patient_id("P_00038")
    # the same woman in the mass set: same patient id; another woman: another one
    assert cbis_patient_id({}, "Mass-Training_P_00038_LEFT_CC/1/2/000000.dcm", "x") == from_path
    assert cbis_patient_id({}, "Mass-Training_P_00039_LEFT_CC/1/2/000000.dcm", "x") != from_path
    # neither names a woman: the image stands for itself
    assert cbis_patient_id({}, "some_folder/000000.dcm", "abc123") == "abc123"


# --------------------------------------------------------------------------------------------
# MIAS
# --------------------------------------------------------------------------------------------


def test_mias_reader_on_the_real_data(mias_dir):
    collection = open_collection("mias", mias_dir)
    assert len(collection.records) == 322 - 4
    skipped = {s.problem.split()[0]: s for s in collection.skipped}
    assert set(skipped) == {"mdb059", "mdb216", "mdb233", "mdb245"}
    assert "no x, y, radius" in skipped["mdb059"].problem and "Info.txt:" in skipped["mdb059"].path
    assert "NOTE 3" in skipped["mdb216"].problem
    labels = Counter(les.source_label for r in collection.records for les in r.lesions)
    # SOURCE.md counts, less the four rows without coordinates (3 CALC, 1 CIRC)
    assert labels == {"CALC": 27, "CIRC": 24, "SPIC": 19, "MISC": 15, "ARCH": 19, "ASYM": 15}
    assert collection.lesion_counts() == {
        "architectural_distortion": 19, "asymmetry": 15, "calcification": 27, "mass": 58}
    by_id = {r.image_id: r for r in collection.records}
    assert len(by_id["mdb005"].lesions) == 2  # two rows, two lesions
    assert sum(1 for r in collection.records if not r.lesions) == 207  # NORM images
    first = by_id["mdb001"].lesions[0]
    assert (first.center_row, first.center_col, first.radius) == (1023 - 425, 535, 197)
    assert first.pathology == "benign" and first.lesion_class == "mass"
    assert (by_id["mdb001"].laterality, by_id["mdb002"].laterality) == ("R", "L")
    # MIAS note 1: mdb001/mdb002, mdb003/mdb004, ... are the right and left film of one woman
    assert by_id["mdb001"].patient_id == by_id["mdb002"].patient_id == "mdb001-mdb002"
    assert by_id["mdb003"].patient_id == by_id["mdb004"].patient_id == "mdb003-mdb004"
    assert by_id["mdb002"].patient_id != by_id["mdb003"].patient_id
    women = {}
    for record in collection.records:
        women.setdefault(record.patient_id, []).append(record.laterality)
    # 161 women; the 4 skipped films (right: mdb059, mdb233, mdb245; left: mdb216) each leave
    # their partner alone
    assert len(women) == 161
    assert sorted(Counter(tuple(sorted(v)) for v in women.values()).items()) == [
        (("L",), 3), (("L", "R"), 157), (("R",), 1)]
    assert vendor_matches("hologic", by_id["mdb001"].manufacturer, by_id["mdb001"].model_name) is False


def test_mias_bottom_left_origin_puts_the_centre_on_the_mass(mias_dir):
    """For circumscribed masses the disc at the (row = 1023 - y) centre is brighter than the
    ring around it; with y taken as a row (top-left origin) that mostly fails."""
    collection = open_collection("mias", mias_dir)
    circ = [(r, les) for r in collection.records for les in r.lesions
            if les.source_label == "CIRC" and 15 <= les.radius <= 80][:10]
    assert len(circ) == 10
    right, wrong = [], []
    for record, lesion in circ:
        pixels = load_image_pixels(record)
        yy, xx = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
        for centre_row, out in ((lesion.center_row, right), (1023 - lesion.center_row, wrong)):
            d = np.hypot(yy - centre_row, xx - lesion.center_col)
            r = lesion.radius
            out.append(pixels[d < 0.5 * r].mean() - pixels[(d > 1.5 * r) & (d < 2 * r)].mean())
    assert np.mean(np.array(right) > 0) == 1.0
    assert np.mean(right) > np.mean(wrong) + 20


def test_mias_pgm_files_and_bad_rows(mias_dir, tmp_path):
    """A MIAS-like folder with PGM images in the root: the PGM is read, a row for a missing
    image and a row outside the image are skipped with reasons."""
    from PIL import Image

    root = tmp_path / "mias"
    root.mkdir()
    for ref in ("mdb001", "mdb003", "mdb005"):
        Image.open(mias_dir / "images" / f"{ref}.png").save(root / f"{ref}.pgm")
    (root / "Info.txt").write_text(
        "MIAS truth data (header text is ignored)\n"
        "mdb001 G CIRC B 535 425 197 \n"
        "mdb003 D NORM \n"
        "mdb005 F CIRC B 1500 133 30\n"
        "mdb007 G NORM\n"
    )
    collection = open_collection("mias", root)
    assert [r.image_id for r in collection.records] == ["mdb001", "mdb003"]
    assert [r.patient_id for r in collection.records] == ["mdb001-mdb002", "mdb003-mdb004"]
    assert collection.records[0].path.suffix == ".pgm"
    pgm = load_image_pixels(collection.records[0])
    png = load_image_pixels(mias_dir / "images" / "mdb001.png")
    assert pgm.dtype == np.float32 and pgm.shape == (1024, 1024)
    np.testing.assert_array_equal(pgm, png)
    problems = {s.path.rsplit(":", 1)[-1]: s.problem for s in collection.skipped}
    assert "outside the 1024x1024 image" in problems["4"] and "mdb005" in problems["4"]
    assert "missing image mdb007" in problems["5"]
    with pytest.raises(FileNotFoundError, match="mdb999.png: image file not found"):
        load_image_pixels(root / "mdb999.png")


# --------------------------------------------------------------------------------------------
# breast mask
# --------------------------------------------------------------------------------------------


def test_breast_mask_on_a_phantom_image(phantom_root):
    for record in open_collection("phantom", phantom_root).records[:4]:
        pixels = load_image_pixels(record)
        mask = breast_mask(pixels)
        assert mask.shape == pixels.shape and mask.dtype == bool
        assert 0.3 < mask.mean() < 0.95
        for lesion in record.lesions:
            assert mask[int(lesion.center_row), int(lesion.center_col)]
        chest = mask[:, :5] if record.laterality == "L" else mask[:, -5:]
        assert chest[300:700].mean() > 0.95  # the chest-wall edge is breast
        label_col = int(768 * 0.85) if record.laterality == "L" else int(768 * 0.08)
        assert not mask[int(1024 * 0.06), label_col]  # the burned-in label is not
        assert pixels[mask].mean() > 5 * pixels[~mask].mean()


def test_breast_mask_on_mias_images(mias_dir):
    collection = open_collection("mias", mias_dir)
    by_id = {r.image_id: r for r in collection.records}
    for ref in ("mdb001", "mdb002", "mdb005", "mdb006", "mdb012"):
        record = by_id[ref]
        pixels = load_image_pixels(record)
        mask = breast_mask(pixels)
        assert 0.15 < mask.mean() < 0.7, ref
        assert pixels[mask].mean() > 3 * pixels[~mask].mean(), ref
        for lesion in record.lesions:
            assert mask[int(lesion.center_row), int(lesion.center_col)], ref
        # the film label ("R ML"/"LM" etc.) sits in the background, top corner away from the
        # chest wall: the top rows on the non-chest-wall half are mostly outside the mask
        far_half = mask[:150, :512] if record.laterality == "R" else mask[:150, 512:]
        assert far_half.mean() < 0.3, ref


def test_breast_mask_on_real_cbis_ddsm_film(dicom_samples_dir):
    """A digitised film with a burned-in label ("RCC") top left: the label is not breast."""
    pixels = load_image_pixels(dicom_samples_dir / "Mass-Test_P_00173_RIGHT_CC.dcm")
    mask = breast_mask(pixels)
    assert 0.1 < mask.mean() < 0.4
    assert not mask[:800, :1000].any()  # the label corner
    assert mask[2000:2600, -50:].all()  # the chest wall (right edge) is breast


# --------------------------------------------------------------------------------------------
# check_source: the data source checked before a study starts, without reading the collection
# --------------------------------------------------------------------------------------------


def test_check_source_accepts_a_real_collection_and_the_phantom(phantom_root, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert check_source("omidb-like", str(phantom_root), 0, run_dir) == []
    assert check_source(" Phantom ", str(phantom_root), 0, run_dir) == []  # open_collection's spellings
    assert open_collection(" Phantom ", phantom_root).records  # ... which it does accept
    assert check_source("phantom", "", 12, run_dir) == []
    assert list(run_dir.iterdir()) == []  # nothing generated, nothing written


def test_check_source_relative_path_is_relative_to_the_run_folder(phantom_root, tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    run_dir.mkdir(parents=True)
    shutil.copytree(phantom_root, tmp_path / "collection")
    assert check_source("omidb-like", "../../collection", 0, run_dir) == []
    problems = check_source("omidb-like", "collection", 0, run_dir)  # exists beside runs/, not in the run folder
    assert problems == [f"source_path='collection': folder {run_dir / 'collection'} does not exist "
                        f"(a relative source_path is taken relative to the run folder {run_dir})"]


def test_check_source_missing_file_and_empty_folders(tmp_path):
    missing = tmp_path / "nowhere"
    assert check_source("mias", str(missing), 0, tmp_path) == [
        f"source_path={str(missing)!r}: folder {missing} does not exist"]  # absolute: no word on the run folder
    a_file = tmp_path / "Info.txt"
    a_file.write_text("mdb001 G CIRC B 535 425 197\n")
    assert check_source("mias", str(a_file), 0, tmp_path) == [
        f"source_path={str(a_file)!r}: {a_file} is a file, not a folder"]
    assert check_source("mias", "Info.txt", 0, tmp_path) == [
        f"source_path='Info.txt': {a_file} is a file, not a folder "
        f"(a relative source_path is taken relative to the run folder {tmp_path})"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_source("inbreast", str(empty), 0, tmp_path) == [
        f"source_path={str(empty)!r}: folder {empty} is empty; nothing to read"]
    with pytest.raises(ValueError, match="is empty"):  # what open_collection would have said later
        open_collection("inbreast", empty)


def test_check_source_unknown_kind_lists_the_kinds(phantom_root, tmp_path):
    problems = check_source("dicom", str(phantom_root), 0, tmp_path)
    assert problems == ["source_kind='dicom' is not a collection kind; expected one of "
                        f"{', '.join(COLLECTION_KINDS)} (see mammo_lib.sources.collection)"]
    assert "omidb" in problems[0] and "vindr-mammo" in problems[0]
    # an unknown kind and a missing folder: both at once
    assert len(check_source("dicom", str(tmp_path / "nowhere"), 0, tmp_path)) == 2
    # an unknown kind without a folder: only the kind (whether it needs a folder is unknown)
    assert check_source("phantm", "", 12, tmp_path) == [problems[0].replace("'dicom'", "'phantm'")]


def test_check_source_only_the_phantom_comes_without_a_folder(tmp_path):
    assert check_source("cbis-ddsm", "", 100, tmp_path) == [
        "source_kind='cbis-ddsm' needs a source_path (the collection's folder); only the phantom is built in "
        "(source_kind='phantom' with source_path empty)"]
    assert len(check_source("omidb-like", "", 100, tmp_path)) == 1  # read like the phantom, but not built in
    assert len(check_source("mini-mias", "", 100, tmp_path)) == 1  # an accepted spelling of mias
    assert list(tmp_path.iterdir()) == []


def test_check_source_phantom_images(tmp_path):
    assert check_source("phantom", "", 0, tmp_path) == [
        "phantom_images=0: the phantom is generated (source_path is empty), so it needs at least 1 image"]
    assert len(check_source("phantom", "", -3, tmp_path)) == 1
    assert check_source("phantom", "", 1, tmp_path) == []
    assert check_source("mias", str(tmp_path), 0, tmp_path) == [  # a real collection: phantom_images unused
        f"source_path={str(tmp_path)!r}: folder {tmp_path} is empty; nothing to read"]
    with pytest.raises(ValueError, match="n_images must be >= 1"):  # what generating it would have said
        generate_phantom(tmp_path / "phantom", n_images=0, seed=0, progress=False)
