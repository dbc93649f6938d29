"""Collections in the layouts they are downloaded in: a tiny synthetic
collection in each exact layout, bright lesions at known places, and every lesion patch
extracted from it centred on its lesion."""

from __future__ import annotations

import csv
import plistlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mammo_lib.extract import pipeline as patches
from mammo_lib.patch_store import MANIFEST_COLUMNS, open_patch_store
from mammo_lib.sources import collection as datasets
from mammo_lib.sources.dicom_io import write_mammogram_dicom
from mammo_lib.sources.formats.common import pseudonymous_patient_id
from mammo_lib.sources.formats.inbreast import parse_point
from mammo_lib.sources.formats.vindr_mammo import parse_categories, study_class

ROWS, COLS = 512, 384


def _mammogram(lesions, seed=0) -> np.ndarray:
    """A breast (half disc from the left edge) with faint texture and bright discs at
    ``lesions`` = [(row, col, radius), ...]; 12-bit stored values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ROWS, :COLS]
    breast = (yy - ROWS / 2) ** 2 + xx**2 < (0.95 * COLS) ** 2
    image = np.where(breast, 1500.0 + 150 * rng.standard_normal((ROWS, COLS)), 40.0)
    for r, c, radius in lesions:
        image[(yy - r) ** 2 + (xx - c) ** 2 <= radius**2] = 3800.0
    return np.clip(image, 0, 4095).astype(np.uint16)


def _write(path: Path, lesions, seed=0, **kw) -> Path:
    kw = {"manufacturer": "HOLOGIC, Inc.", "model_name": "Selenia Dimensions", **kw}
    return write_mammogram_dicom(path, _mammogram(lesions, seed), bits_stored=12,
                                 image_pseudonym=path.name, **kw)


def _assert_centred(collection, tmp_path, n_expected):
    """Every lesion patch has its lesion at the centre: window centred on the lesion centre
    (no border shift here) and the bright disc fills the middle of the patch."""
    result = patches.extract_patches(collection, tmp_path / "run" / "patches", patch_size=64,
                                     n_normal_per_image=2, n_workers=0, progress=False)
    store = open_patch_store(result.lesion_store)
    m = store.manifest
    assert len(store) == n_expected
    assert (m["shift_row"] == 0).all() and (m["shift_col"] == 0).all()
    assert ((m["center_row"] - m["lesion_center_row"]).abs() <= 1).all()
    assert ((m["center_col"] - m["lesion_center_col"]).abs() <= 1).all()
    data = store.load().astype(float)
    centre = data[:, 28:36, 28:36].mean(axis=(1, 2))
    ring = np.concatenate([data[:, :8, :].reshape(len(data), -1), data[:, -8:, :].reshape(len(data), -1)], 1)
    assert (centre > ring.mean(axis=1) + 40).all(), (centre, ring.mean(axis=1))
    _assert_patients_in_manifests(collection, result)
    return result, m


def _assert_patients_in_manifests(collection, result):
    """Both manifests carry ``patient_id`` (the first column after the store's own ones), each
    row its record's."""
    records = collection.records if hasattr(collection, "records") else collection
    owner = {r.image_id: r.patient_id for r in records}
    for path in (result.lesion_store, result.normal_store):
        m = open_patch_store(path).manifest
        assert list(m.columns[:len(MANIFEST_COLUMNS) + 1]) == [*MANIFEST_COLUMNS, "patient_id"]
        assert len(m) and (m["patient_id"] == m["image_id"].map(owner)).all()


def _assert_pseudonymous_patients(records, same, different, raw):
    """``same``/``different``: pairs of image ids of one woman / of two women; ``raw``: the
    collection's own patient identifiers, which no patient id may contain."""
    by_id = {r.image_id: r for r in records}
    for a, b in same:
        assert by_id[a].patient_id == by_id[b].patient_id
    for a, b in different:
        assert by_id[a].patient_id != by_id[b].patient_id
    for record in records:
        assert len(record.patient_id) == 16 and record.patient_id != record.image_id
        assert not any(text in record.patient_id for text in raw)


# ----------------------------------------------------------------------------- VinDr-Mammo


def _vindr(root: Path) -> Path:
    fields = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
              "breast_birads", "breast_density", "finding_categories", "finding_birads",
              "xmin", "ymin", "xmax", "ymax", "split"]
    rows = []

    def add(study, image, side, view, categories, box=None, birads=""):
        x0, y0, x1, y1 = box or ("", "", "", "")
        rows.append(dict(zip(fields, [study, "s1", image, side, view, ROWS, COLS, "BI-RADS 4",
                                      "DENSITY C", categories, birads, x0, y0, x1, y1, "training"],
                             strict=True)))
    _write(root / "images" / "st1" / "img1.dicom", [(200, 150, 18), (380, 100, 10)], seed=1)
    add("st1", "img1", "L", "CC", "['Mass']", (132.0, 182.0, 168.0, 218.0), "BI-RADS 4")
    add("st1", "img1", "L", "CC", "['Suspicious Calcification', 'Mass']", (90, 370, 110, 390), "BI-RADS 5")
    _write(root / "images" / "st1" / "img2.dicom", [], seed=2)
    add("st1", "img2", "R", "MLO", "['No Finding']")
    _write(root / "images" / "st2" / "img3.dicom", [(250, 120, 16)], seed=3)
    add("st2", "img3", "R", "CC", "['Architectural Distortion']", (104, 234, 136, 266), "BI-RADS 4")
    with (root / "finding_annotations.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    with (root / "metadata.csv").open("w", newline="") as fh:
        fh.write("SOP Instance UID,Manufacturer,Manufacturer's Model Name\nimg2,SIEMENS,Mammomat\n")
    return root


def test_vindr_mammo_reader_and_centred_patches(tmp_path):
    assert parse_categories("['Mass', 'Suspicious Calcification']") == ["Mass", "Suspicious Calcification"]
    assert study_class(["Suspicious Calcification", "Mass"]) == "mass"
    assert study_class(["Skin Thickening"]) == "other"
    collection = datasets.open_collection("vindr-mammo", _vindr(tmp_path / "vindr"))
    by_id = {r.image_id: r for r in collection.records}
    assert sorted(by_id) == ["img1", "img2", "img3"] and not collection.skipped
    assert by_id["img2"].lesions == () and (by_id["img2"].laterality, by_id["img2"].view) == ("R", "MLO")
    mass, calc = by_id["img1"].lesions
    assert (mass.lesion_class, calc.lesion_class) == ("mass", "mass")
    assert mass.bbox == (182, 132, 218, 168) and (mass.center_row, mass.center_col) == (200.0, 150.0)
    assert by_id["img3"].lesions[0].lesion_class == "architectural_distortion"
    assert "BI-RADS 5" in calc.source_label
    # one study is one woman's exam: img1 and img2 (study st1) share a patient id, img3 not
    _assert_pseudonymous_patients(collection.records, [("img1", "img2")], [("img1", "img3")],
                                  ["st1", "st2"])
    assert by_id["img3"].patient_id == pseudonymous_patient_id("st2")
    _assert_centred(collection, tmp_path, 3)


# ----------------------------------------------------------------------------- INbreast


def _roi(name, centre, points=()):
    return {"Name": name, "Center": f"({centre[0]}, {centre[1]})", "NumberOfPoints": len(points),
            "Point_px": [f"({x}, {y})" for x, y in points]}


def _circle(cx, cy, r, n=16):
    return [(round(cx + r * np.cos(t), 2), round(cy + r * np.sin(t), 2))
            for t in np.linspace(0, 2 * np.pi, n, endpoint=False)]


def _inbreast(root: Path) -> Path:
    (root / "AllXML").mkdir(parents=True)
    _write(root / "AllDICOMs" / "20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm", [(200, 150, 20)], seed=1)
    _write(root / "AllDICOMs" / "20586934_6c613a14b80a8591_MG_L_CC_ANON.dcm", [], seed=2)
    _write(root / "AllDICOMs" / "22678622_61b13c59bcba149e_MG_R_ML_ANON.dcm", [(300, 100, 12)], seed=3)
    rois = [_roi("Mass", (150.0, 200.0), _circle(150, 200, 20)),
            _roi("Cluster", (100.0, 300.0), _circle(100, 300, 12)),
            _roi("Calcification", (101.0, 301.0)),  # one point of the cluster
            _roi("Calcification", (40.0, 450.0))]  # an isolated calcification
    (root / "AllXML" / "20586908.xml").write_bytes(plistlib.dumps({"Images": [{"ROIs": rois}]}))
    other = [_roi("Distortion", (100.0, 300.0), _circle(100, 300, 12))]
    (root / "AllXML" / "22678622.xml").write_bytes(plistlib.dumps({"Images": [{"ROIs": other}]}))
    (root / "INbreast.csv").write_text(
        "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads\n"
        "removed;removed;R;CC;201001;20586908;4;4\n"
        "removed;removed;L;CC;201001;20586934;4;1\n"
        "removed;removed;R;MLO;201001;22678622;2;4a\n")
    return root


def test_inbreast_reader_and_centred_patches(tmp_path):
    assert parse_point("(12.5, 7)") == (12.5, 7.0) and parse_point("{3, 4}") == (3.0, 4.0)
    root = _inbreast(tmp_path / "inbreast")
    # a fourth image the case table does not list and with no XML: its findings are unknown
    _write(root / "AllDICOMs" / "99999999_x_MG_L_ML_ANON.dcm", [], seed=4)
    collection = datasets.open_collection("inbreast", root)
    by_id = {r.image_id: r for r in collection.records}
    assert sorted(by_id) == ["20586908", "20586934", "22678622"]
    assert [s.kind for s in collection.skipped] == ["annotation"]
    classes = [les.lesion_class for les in by_id["20586908"].lesions]
    assert classes == ["mass", "calcification", "calcification"]  # the cluster's point folded in
    mass = by_id["20586908"].lesions[0]
    assert (round(mass.center_row), round(mass.center_col)) == (200, 150)
    assert mass.bbox == (180, 130, 221, 171)
    assert by_id["20586934"].lesions == ()
    assert by_id["22678622"].view == "MLO" and by_id["22678622"].extra["birads"] == "4a"
    assert by_id["22678622"].lesions[0].lesion_class == "architectural_distortion"
    # the file name's second part is the woman: 20586908 (R CC) and 20586934 (L CC) are one
    _assert_pseudonymous_patients(collection.records, [("20586908", "20586934")],
                                  [("20586908", "22678622")], ["6c613a14b80a8591", "61b13c59bcba149e"])
    assert by_id["22678622"].patient_id == pseudonymous_patient_id("61b13c59bcba149e")
    # the cluster and the isolated calcification have no disc in the picture: check the rest
    bright = [replace(r, lesions=tuple(les for les in r.lesions if les.lesion_class != "calcification"))
              for r in collection.records]
    _assert_centred(bright, tmp_path, 2)


# ----------------------------------------------------------------------------- CBIS-DDSM (NBIA tree)

CBIS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view",
                "abnormality id", "abnormality type", "mass shape", "mass margins", "assessment",
                "pathology", "subtlety", "image file path", "cropped image file path",
                "ROI mask file path"]


def _nbia(root: Path) -> Path:
    tree = root / "CBIS-DDSM"
    lesions = {"Mass-Training_P_00001_LEFT_CC": [(200, 150, 18), (380, 120, 12)],
               "Mass-Training_P_00001_LEFT_MLO": [(240, 140, 16)],
               "Mass-Training_P_00002_RIGHT_MLO": [(260, 110, 15)]}
    rows = []
    for k, (case, discs) in enumerate(lesions.items()):
        _write(tree / case / "07-20-2016-DDSM-NA-74994" / "1.000000-full mammogram images-24515"
               / "1-1.dcm", discs, seed=k, manufacturer="", model_name="")
        for abn, (r, c, radius) in enumerate(discs, start=1):
            mask = np.zeros((ROWS, COLS), np.uint16)
            yy, xx = np.mgrid[:ROWS, :COLS]
            mask[(yy - r) ** 2 + (xx - c) ** 2 <= radius**2] = 255
            series = tree / f"{case}_{abn}" / "07-21-2016-DDSM-NA-09887" / "1.000000-ROI mask images-25005"
            # the known mix-up: the cropped image and the mask share one series, crop first
            crop = _mammogram(discs, seed=k)[r - 30:r + 30, c - 30:c + 30]
            write_mammogram_dicom(series / "1-1.dcm", crop, bits_stored=12, manufacturer="",
                                  model_name="", image_pseudonym=f"{case}-{abn}-crop")
            write_mammogram_dicom(series / "1-2.dcm", mask, bits_stored=8, manufacturer="",
                                  model_name="", image_pseudonym=f"{case}-{abn}-mask")
            uid = f"1.3.6.1.4.1.9590.100.1.2.{k}{abn}"
            rows.append({
                "patient_id": case.split("_", 1)[1][:7], "breast_density": "2",
                "left or right breast": case.split("_")[-2], "image view": case.split("_")[-1],
                "abnormality id": str(abn), "abnormality type": "mass", "mass shape": "OVAL",
                "mass margins": "CIRCUMSCRIBED", "assessment": "4", "pathology": "MALIGNANT",
                "subtlety": "3", "image file path": f"{case}/1.3.6.{k}.1/1.3.6.{k}.2/000000.dcm",
                "cropped image file path": f"{case}_{abn}/{uid}.3/{uid}.4/000000.dcm",
                "ROI mask file path": f"{case}_{abn}/{uid}.3/{uid}.4/000001.dcm\n"})
    with (root / "mass_case_description_train_set.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CBIS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_cbis_ddsm_as_the_nbia_data_retriever_saves_it(tmp_path):
    collection = datasets.open_collection("cbis-ddsm", _nbia(tmp_path / "cbis"))
    assert not collection.skipped, collection.skipped
    assert len(collection.records) == 3
    a, a_mlo, b = sorted(collection.records, key=lambda r: str(r.path))
    assert "full mammogram images" in str(a.path) and (a.laterality, a.view) == ("L", "CC")
    assert [(round(les.center_row), round(les.center_col)) for les in a.lesions] == [(200, 150), (380, 120)]
    assert (a_mlo.laterality, a_mlo.view, b.laterality, b.view) == ("L", "MLO", "R", "MLO")
    # P_00001's CC and MLO views are one woman, P_00002 another; only hashes are kept
    _assert_pseudonymous_patients(collection.records, [(a.image_id, a_mlo.image_id)],
                                  [(a.image_id, b.image_id)], ["P_0000", "00001", "00002"])
    assert b.patient_id == pseudonymous_patient_id("P_00002")
    _assert_centred(collection, tmp_path, 4)


@pytest.mark.parametrize("kind", ["vindr-mammo", "inbreast", "cbis-ddsm"])
def test_an_empty_or_wrong_folder_names_what_is_missing(tmp_path, kind):
    (tmp_path / "something.txt").write_text("x")
    expected = {"vindr-mammo": "finding_annotations.csv", "inbreast": "AllDICOMs",
                "cbis-ddsm": "description CSV"}[kind]
    with pytest.raises(ValueError, match=expected):
        datasets.open_collection(kind, tmp_path)


# ----------------------------------------------------------------------------- OMI-DB (real layout)


def _omidb(root: Path) -> Path:
    """Two clients in the OPTIMAM layout: demd0001 (a mass marked on two left views, the right
    view unmarked, a benign biopsy) and demd0002 (normal screening, no marks)."""
    import json

    def client(cid, study, series, images, episode_type, opinion, biopsy=None):
        data = root / "data" / cid
        (data / study).mkdir(parents=True)  # omidb finds studies by their data folders
        nbss = {"1": {"EpisodeType": episode_type, "EpisodeIsClosed": "Y",
                      "SCREENING": {"L": {"DateTaken": "2010-01-01", "Opinion": opinion},
                                    "R": {"DateTaken": "2010-01-01", "Opinion": opinion}}}}
        if biopsy:
            nbss["1"]["BIOPSYWIDE"] = {"left_opinion": biopsy, "dateperformed": "2010-02-01"}
        (data / f"nbss_{cid}.json").write_text(json.dumps(nbss))
        series_dict = {}
        for k, (sop, ((discs, side), marks)) in enumerate(images.items()):
            _write(root / "images" / cid / study / f"{sop}.dcm", discs, seed=k, laterality=side,
                   view="CC")
            series_dict[sop] = {str(m): mark for m, mark in enumerate(marks)}
        imagedb = {"Site": "adder", "STUDIES": {study: {"StudyDate": "20100101", "EpisodeID": "1",
                                                        series: series_dict}}}
        (data / f"imagedb_{cid}.json").write_text(json.dumps(imagedb))

    mass = {"MarkID": 7, "X1": 132, "Y1": 182, "X2": 168, "Y2": 218, "Mass": "1",
            "Conspicuity": "Obvious", "LinkedNBSSLesionNumber": "1"}
    client("demd0001", "1.2.826.1.1", "1.2.826.1.1.1",
           {"1.2.826.1.1.1.1": (([(200, 150, 18)], "L"), [mass]),
            "1.2.826.1.1.1.2": (([], "R"), []),
            "1.2.826.1.1.1.3": (([(200, 150, 18)], "L"), [{**mass, "MarkID": 8}])},
           "RA", "RR", biopsy="OB")
    client("demd0002", "1.2.826.2.1", "1.2.826.2.1.1",
           {"1.2.826.2.1.1.1": (([], "L"), [])}, "RN", "RN")
    return root


def test_real_omidb_layout_through_the_omidb_package(tmp_path):
    omidb = pytest.importorskip("omidb", reason="the omidb package (a project dependency) is needed")
    root = _omidb(tmp_path / "omidb")
    # the package itself parses the test tree
    clients = {c.id: c for c in omidb.DB(root / "data", image_dir=root / "images")}
    assert sorted(clients) == ["demd0001", "demd0002"]
    images = [im for ep in clients["demd0001"].episodes for st in ep.studies for se in st.series
              for im in se.images]
    assert sorted(len(im.marks) for im in images) == [0, 1, 1]
    assert (clients["demd0001"].status.name, clients["demd0002"].status.name) == ("B", "N")
    collection = datasets.open_collection("omidb", root)
    assert len(collection.records) == 3
    marked = next(r for r in collection.records if r.lesions)
    lesion = marked.lesions[0]
    assert (lesion.lesion_class, lesion.bbox) == ("mass", (182, 132, 219, 169))
    assert (lesion.center_row, lesion.center_col) == (200.0, 150.0) and "Obvious" in lesion.source_label
    assert marked.laterality == "L" and marked.manufacturer == "HOLOGIC, Inc."
    assert {r.extra["client_status"] for r in collection.records} == {"Benign", "Normal"}
    # the unmarked view of the client with findings is named, not used as normal
    unmarked = [s for s in collection.skipped if "no marks on this image" in s.problem]
    assert len(unmarked) == 1 and unmarked[0].path.endswith("1.2.826.1.1.1.2.dcm")
    # the client is the woman: her two marked views share a patient id, the other client not
    first, second = (r.image_id for r in collection.records if r.lesions)
    normal = next(r.image_id for r in collection.records if not r.lesions)
    _assert_pseudonymous_patients(collection.records, [(first, second)], [(first, normal)],
                                  ["demd0001", "demd0002"])
    assert marked.patient_id == pseudonymous_patient_id("demd0001")
    _assert_centred(collection, tmp_path, 2)
