"""Stage 01 patch extraction: border and large-lesion rules, normal-tissue sampling, the Dask
run (determinism across workers), bad input and the rerun check against a reference manifest."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mammo_lib.extract import pipeline as patches
from mammo_lib.extract import reference_manifest
from mammo_lib.extract import rules as patch_core
from mammo_lib.extract.rules import ExtractionParams, extract_image_patches, place_window
from mammo_lib.patch_store import open_patch_store
from mammo_lib.sources.records import ImageRecord, LesionAnnotation, vendor_matches


def _disk(shape, center, radius, value=1.0, base=0.2):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, base, dtype=np.float32)
    img[(rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius**2] = value
    return img


def _whole_image_mask(pixels):
    return np.ones(pixels.shape, dtype=bool)


def _record(lesions, image_id="img"):
    return ImageRecord(image_id=image_id, path=f"/nowhere/{image_id}.png", source_kind="mias",
                       lesions=tuple(lesions))


def test_place_window_shifts_inside_and_records_shift():
    assert place_window(100, 64, 300) == (68, 0)
    assert place_window(5, 64, 300) == (0, 27)  # centred start would be -27
    assert place_window(295, 64, 300) == (236, -27)
    assert place_window(10, 64, 40) == (-22, 0)  # image smaller than the window: caller pads


def test_lesion_at_image_edge_gives_full_patch_inside_image():
    pixels = np.random.default_rng(0).uniform(0, 1000, size=(300, 260)).astype(np.float32)
    lesion = LesionAnnotation("l1", "mass", center_row=4.0, center_col=255.0, radius=10)
    params = ExtractionParams(patch_size=64, n_normal_per_image=0, normalisation="none")
    got = extract_image_patches(_record([lesion]), pixels, params, mask_fn=_whole_image_mask)
    row = got.lesion_rows[0]
    assert (row["shift_row"], row["shift_col"]) == (28, -27)
    assert not row["padded"] and row["scale"] == 1.0
    # the patch is exactly the image's top-right corner, linearly scaled (no padding)
    lo, hi = pixels.min(), pixels.max()
    expected = (pixels[0:64, 196:260] - lo) / (hi - lo)
    np.testing.assert_allclose(got.lesion_patches[0], expected, atol=1e-5)
    assert row["center_row"] == 32 and row["center_col"] == 228


def test_image_smaller_than_patch_is_reflect_padded():
    pixels = np.random.default_rng(1).uniform(0, 1, size=(40, 50)).astype(np.float32)
    lesion = LesionAnnotation("l1", "mass", center_row=20.0, center_col=25.0, radius=5)
    params = ExtractionParams(patch_size=64, n_normal_per_image=3)
    got = extract_image_patches(_record([lesion]), pixels, params, mask_fn=_whole_image_mask)
    assert got.lesion_patches[0].shape == (64, 64)
    assert got.lesion_rows[0]["padded"]
    assert got.normal_patches == []  # no full window fits


def test_large_lesion_is_resized_whole_or_truncated():
    shape, center, radius = (600, 600), (300, 300), 100  # extent 200 px * 1.2 > 64 px patch
    pixels = _disk(shape, center, radius)
    lesion = LesionAnnotation("big", "mass", center_row=300.0, center_col=300.0,
                              bbox=(200, 200, 401, 401))
    resized = extract_image_patches(
        _record([lesion]), pixels,
        ExtractionParams(patch_size=64, n_normal_per_image=0, normalisation="none"),
        mask_fn=_whole_image_mask)
    row = resized.lesion_rows[0]
    assert row["window_size"] == int(np.ceil(201 * 1.2))
    assert row["scale"] == pytest.approx(64 / row["window_size"])
    assert not row["lesion_truncated"]
    patch = resized.lesion_patches[0]
    assert patch.shape == (64, 64)
    # whole lesion visible: bright centre, background in every corner
    assert patch[32, 32] > 0.9
    assert max(patch[0, 0], patch[0, -1], patch[-1, 0], patch[-1, -1]) < 0.1

    cropped = extract_image_patches(
        _record([lesion]), pixels,
        ExtractionParams(patch_size=64, n_normal_per_image=0, normalisation="none",
                         large_lesion="crop"),
        mask_fn=_whole_image_mask)
    row = cropped.lesion_rows[0]
    assert row["lesion_truncated"] and row["scale"] == 1.0 and row["window_size"] == 64
    assert cropped.lesion_patches[0].min() > 0.9  # all inside the lesion: truncated


def _breast_image(shape=(512, 400)):
    """A half-ellipse 'breast' (chest wall on the left) on a dark background, with texture."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    breast = ((rr - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + (cc / (shape[1] * 0.8)) ** 2 <= 1
    rng = np.random.default_rng(3)
    img = np.where(breast, 0.5 + 0.1 * rng.standard_normal(shape), 0.0).astype(np.float32)
    return img, breast


def test_normal_patches_avoid_lesions_and_each_other_and_are_mostly_breast():
    img, breast = _breast_image()
    lesions = [LesionAnnotation("a", "mass", 200.0, 100.0, radius=30),
               LesionAnnotation("b", "calcification", 330.0, 180.0, bbox=(310, 160, 350, 200))]
    params = ExtractionParams(patch_size=48, n_normal_per_image=12, exclusion_margin=10)
    got = extract_image_patches(_record(lesions, "breast"), img, params,
                                mask_fn=lambda a: a > 0.05)
    assert len(got.normal_rows) >= 6
    boxes = [patch_core.lesion_box(les) for les in lesions]
    windows = []
    for row in got.normal_rows:
        r0, c0 = row["center_row"] - 24, row["center_col"] - 24
        win = (r0, c0, r0 + 48, c0 + 48)
        for b in boxes:  # clear of every lesion box grown by the margin
            grown = (b[0] - 10, b[1] - 10, b[2] + 10, b[3] + 10)
            assert not patch_core._boxes_overlap(win, grown), (row["patch_id"], b)
        assert breast[r0:r0 + 48, c0:c0 + 48].mean() >= 0.85  # mostly breast at full resolution
        assert row["breast_fraction"] >= 0.9
        windows.append(win)
    for i, a in enumerate(windows):  # normal windows do not overlap each other
        for b in windows[i + 1:]:
            assert not patch_core._boxes_overlap(a, b)
    # deterministic per (seed, image id); another seed draws other windows
    again = extract_image_patches(_record(lesions, "breast"), img, params, mask_fn=lambda a: a > 0.05)
    assert [r["center_row"] for r in again.normal_rows] == [r["center_row"] for r in got.normal_rows]
    other = extract_image_patches(_record(lesions, "breast"), img,
                                  ExtractionParams(patch_size=48, n_normal_per_image=12, seed=1),
                                  mask_fn=lambda a: a > 0.05)
    assert [r["center_row"] for r in other.normal_rows] != [r["center_row"] for r in got.normal_rows]


def test_every_row_names_its_woman_or_else_its_image():
    """``patient_id`` follows ``image_id`` in a row; a record without one stands for itself; the
    pixels (and so the patches and the normal windows) do not depend on it."""
    img, _ = _breast_image()
    lesions = [LesionAnnotation("a", "mass", 200.0, 100.0, radius=20)]
    params = ExtractionParams(patch_size=48, n_normal_per_image=3)
    alone = extract_image_patches(_record(lesions, "img7"), img, params, mask_fn=lambda a: a > 0.05)
    woman = extract_image_patches(replace(_record(lesions, "img7"), patient_id="9f3a0c11d2e4b5a6"),
                                  img, params, mask_fn=lambda a: a > 0.05)
    assert patch_core.PATCH_ROW_COLUMNS[2:4] == ("image_id", "patient_id")
    for got, expected in ((alone, "img7"), (woman, "9f3a0c11d2e4b5a6")):
        rows = got.lesion_rows + got.normal_rows
        assert len(got.lesion_rows) == 1 and len(got.normal_rows) == 3
        assert all(row["patient_id"] == expected for row in rows)
        assert all(list(row)[:4] == list(patch_core.PATCH_ROW_COLUMNS[:4]) for row in rows)
        assert set(got.lesion_rows[0]) == set(patch_core.PATCH_ROW_COLUMNS) - {"checksum"}
    for a, b in zip(alone.lesion_patches + alone.normal_patches,
                    woman.lesion_patches + woman.normal_patches, strict=True):
        np.testing.assert_array_equal(a, b)


def test_lesion_without_position_blocks_normal_patches_and_is_reported():
    img, _ = _breast_image()
    lesions = [LesionAnnotation("nopos", "calcification", float("nan"), float("nan"))]
    got = extract_image_patches(_record(lesions), img, ExtractionParams(patch_size=48),
                                mask_fn=lambda a: a > 0.05)
    assert got.lesion_patches == [] and got.normal_patches == []
    assert "no position" in got.skipped[0].problem


def test_lesion_annotated_in_the_background_is_reported_not_extracted():
    img, breast = _breast_image()
    assert not breast[30, 390]
    lesions = [LesionAnnotation("air", "calcification", 30.0, 390.0, radius=4),
               LesionAnnotation("ok", "mass", 256.0, 60.0, radius=10)]
    got = extract_image_patches(_record(lesions), img, ExtractionParams(patch_size=48),
                                mask_fn=lambda a: a > 0.05)
    assert [r["lesion_id"] for r in got.lesion_rows] == ["ok"]
    assert got.lesion_rows[0]["breast_fraction"] > 0.5
    assert "'air'" in got.skipped[0].problem and "background" in got.skipped[0].problem


def test_annotation_outside_image_raises_naming_the_lesion():
    img, _ = _breast_image()
    lesion = LesionAnnotation("far", "mass", 900.0, 50.0, radius=5)
    with pytest.raises(patch_core.AnnotationError, match="'far'.*outside"):
        extract_image_patches(_record([lesion]), img, ExtractionParams(patch_size=48),
                              mask_fn=lambda a: a > 0.05)


def test_equalize_image_uses_breast_pixels_and_spreads_grey_levels():
    img, breast = _breast_image()
    params = ExtractionParams(patch_size=48, n_normal_per_image=4)
    got = extract_image_patches(_record([], "eq"), img, params, mask_fn=lambda a: a > 0.05)
    values = np.concatenate([p.ravel() for p in got.normal_patches])
    # equalised inside the breast: breast grey levels spread over ~[0, 1] with mean ~0.5
    assert values.min() < 0.1 and values.max() > 0.9
    assert abs(values.mean() - 0.5) < 0.1


# ------------------------------------------------------------------ whole runs on the phantom

RUN_KW = dict(patch_size=64, n_normal_per_image=3, progress=False)


@pytest.fixture(scope="module")
def phantom_collection(tmp_path_factory):
    from mammo_lib.sources import collection as datasets
    from mammo_lib.sources import phantom

    root = phantom.generate_phantom(tmp_path_factory.mktemp("phantom"), n_images=6, seed=0,
                                    rows=512, cols=384, progress=False)
    return datasets.open_collection("phantom", root)


def _load_all(out_dir):
    lesion = open_patch_store(out_dir / "lesion.zarr")
    normal = open_patch_store(out_dir / "normal.zarr")
    return lesion, normal


def test_extraction_identical_in_process_and_on_two_dask_workers(phantom_collection, tmp_path):
    r0 = patches.extract_patches(phantom_collection, tmp_path / "w0", n_workers=0, seed=5, **RUN_KW)
    r2 = patches.extract_patches(phantom_collection, tmp_path / "w2", n_workers=2, seed=5,
                                 images_per_task=1, **RUN_KW)
    assert r0.n_lesion == phantom_collection.n_lesions() > 0
    assert r0.n_normal > 0 and (r0.n_lesion, r0.n_normal) == (r2.n_lesion, r2.n_normal)
    for a, b in zip(_load_all(tmp_path / "w0"), _load_all(tmp_path / "w2"), strict=True):
        np.testing.assert_array_equal(a.load(), b.load())
        pd.testing.assert_frame_equal(a.manifest, b.manifest)
        assert a.verify_checksums() == []
    lesion, normal = _load_all(tmp_path / "w0")
    assert set(lesion.manifest["group"]) == {"lesion"} and set(normal.manifest["group"]) == {"normal"}
    assert normal.manifest["patch_id"].is_unique and lesion.manifest["patch_id"].is_unique
    assert (normal.manifest["lesion_class"] == "normal").all()
    assert (lesion.manifest["scale"] < 1).any()  # the phantom has masses larger than 64 px
    assert (normal.manifest["breast_fraction"] >= 0.9).all()
    # 6 phantom images = client 0 (4 views) and client 1 (2 views): two women in both stores
    owner = {r.image_id: r.patient_id for r in phantom_collection.records}
    assert len(set(owner.values())) == 2
    for store in (lesion, normal):
        assert (store.manifest["patient_id"] == store.manifest["image_id"].map(owner)).all()
    assert set(normal.manifest["patient_id"]) == set(owner.values())
    summary = patches.read_summary(tmp_path / "w0")
    assert summary["counts"]["lesion_patches"] == r0.n_lesion
    assert (tmp_path / "w0" / "skipped_files.csv").exists()
    assert not (tmp_path / "w0" / "_staging").exists()

    # the rerun check: identical run -> no mismatch; a changed reference checksum is reported
    ref = tmp_path / "reference"
    reference_manifest.write_reference_manifest(tmp_path / "w0", ref)
    assert reference_manifest.verify_against_manifest(tmp_path / "w2", ref) == []
    table = pd.read_csv(ref / "normal_manifest.csv", dtype=str, keep_default_na=False)
    table.loc[0, "checksum"] = "0" * 16
    table.to_csv(ref / "normal_manifest.csv", index=False)
    assert reference_manifest.verify_against_manifest(tmp_path / "w2", ref) == [table.loc[0, "patch_id"]]
    # another seed, rerun into the same folder: the old stores are replaced, other normal patches
    r_other = patches.extract_patches(phantom_collection, tmp_path / "w0", n_workers=0, seed=6, **RUN_KW)
    assert reference_manifest.verify_against_manifest(r_other.out_dir, ref)
    assert all(store.verify_checksums() == [] for store in _load_all(tmp_path / "w0"))
    assert patches.read_summary(tmp_path / "w0")["parameters"]["seed"] == 6


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")  # the truncated file
def test_bad_files_become_skipped_rows_and_the_run_goes_on(phantom_collection, tmp_path):
    import dataclasses

    good = phantom_collection.records
    src = next(r for r in good if r.lesions)
    truncated = tmp_path / "truncated.dcm"
    data = src.path.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    bad = [
        dataclasses.replace(src, image_id="missing-file", path=tmp_path / "nope.dcm"),
        dataclasses.replace(src, image_id="truncated", path=truncated),
        dataclasses.replace(src, image_id="outside", lesions=(
            LesionAnnotation("far", "mass", 5000.0, 10.0, radius=8),)),
    ]
    result = patches.extract_patches(list(good) + bad, tmp_path / "out", n_workers=0, **RUN_KW)
    skipped = pd.read_csv(result.skipped_path, keep_default_na=False)
    assert len(skipped) == 3
    by_path = dict(zip(skipped["path"], skipped["problem"], strict=True))
    # paths in skipped_files.csv (and in the messages) are relative to the run folder (tmp_path)
    assert "not found" in by_path["nope.dcm"]
    assert "truncated.dcm" in by_path and by_path["truncated.dcm"]
    assert "outside" in by_path[os.path.relpath(src.path.resolve(), tmp_path.resolve())]
    assert not any(str(tmp_path) in text for text in skipped["problem"])
    assert set(skipped["stage"]) == {"01_extract_patches:read", "01_extract_patches:extract"}
    assert result.n_images == len(good) + 3 and result.n_images_used == len(good)
    assert result.n_lesion == phantom_collection.n_lesions()

    with pytest.raises(patches.ExtractionError, match="no patch could be extracted.*skipped_files.csv"):
        patches.extract_patches(bad, tmp_path / "all_bad", n_workers=0, **RUN_KW)
    assert len(pd.read_csv(tmp_path / "all_bad" / "skipped_files.csv")) == 3


def test_vendor_filter_keeps_only_matching_images(phantom_collection, tmp_path):
    vendor = phantom_collection.records[0].model_name
    expected = [r for r in phantom_collection.records if r.model_name == vendor]
    result = patches.extract_patches(phantom_collection, tmp_path / "v", n_workers=0,
                                     vendor_filter=[vendor.lower()], **RUN_KW)
    assert result.n_images == len(expected)
    assert result.excluded_by_vendor == len(phantom_collection.records) - len(expected)
    lesion, normal = _load_all(tmp_path / "v")
    assert set(normal.manifest["model_name"]) == {vendor}
    assert vendor_matches(vendor.upper(), expected[0].manufacturer, expected[0].model_name)  # one name as a plain string
    assert not vendor_matches(["zz"], expected[0].manufacturer, expected[0].model_name)
    with pytest.raises(patches.ExtractionError, match="vendor filter"):
        patches.extract_patches(phantom_collection, tmp_path / "none", n_workers=0,
                                vendor_filter=["No Such Vendor"], **RUN_KW)


def test_mias_circumscribed_masses_are_bright_at_the_patch_centre(mias_dir, tmp_path):
    """Real data: MIAS CIRC masses (row = 1023 - y) must sit at the centre of their patches,
    i.e. the central disk of the lesion's own size is brighter than the patch's outer ring."""
    from mammo_lib.sources import collection as datasets

    collection = datasets.open_collection("mias", mias_dir)
    records = [r for r in collection.records
               if r.lesions and all(les.source_label == "CIRC" for les in r.lesions)][:12]
    result = patches.extract_patches(records, tmp_path / "mias", n_workers=0,
                                     n_normal_per_image=2, normalisation="none", progress=False)
    store = open_patch_store(result.lesion_store)
    data = store.load().astype(np.float32)
    rr, cc = np.mgrid[:128, :128] - 63.5
    dist = np.hypot(rr, cc)
    brighter = []
    for patch, row in zip(data, store.manifest.itertuples(), strict=True):
        radius = max(6.0, 0.5 * row.lesion_extent * row.scale)
        inner = patch[dist <= 0.6 * radius].mean()
        ring = patch[(dist >= 1.3 * radius) & (dist <= 1.3 * radius + 10)]
        brighter.append(ring.size == 0 or inner > ring.mean())
    assert len(brighter) >= 10
    assert np.mean(brighter) >= 0.8, brighter


def test_running_dask_cluster_by_scheduler_address(phantom_collection, tmp_path):
    """The real-cluster path: connect to a scheduler that is already running."""
    import logging

    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster:
        remote = patches.extract_patches(phantom_collection, tmp_path / "remote",
                                         scheduler_address=cluster.scheduler_address,
                                         n_workers=0, **RUN_KW)
    patches.extract_patches(phantom_collection, tmp_path / "local", n_workers=0, **RUN_KW)
    assert remote.parameters["scheduler_address"] == cluster.scheduler_address
    for a, b in zip(_load_all(tmp_path / "remote"), _load_all(tmp_path / "local"), strict=True):
        np.testing.assert_array_equal(a.load(), b.load())
