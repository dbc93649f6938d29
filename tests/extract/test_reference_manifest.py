"""The reference manifest of a study: writing it (also through the CLI), and comparing a rerun
with it (settings first, then every checksum); plus the stage 01 JSON being free of machine
paths and timings, so a rerun into another run folder writes the same bytes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mammo_lib.extract import pipeline as patches
from mammo_lib.extract.reference_manifest import compare_with_reference, reference_parameters
from mammo_lib.sources import collection as datasets
from mammo_lib.sources import phantom

RUN_KW = dict(patch_size=64, n_normal_per_image=2, progress=False, n_workers=0)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same phantom extracted into two run folders (each with its own phantom copy)."""
    runs = []
    for name in ("a", "b"):
        run = tmp_path_factory.mktemp(f"run_{name}")
        root = phantom.generate_phantom(run / "phantom", n_images=4, seed=1, rows=384, cols=320,
                                        progress=False)
        patches.extract_patches(datasets.open_collection("phantom", root), run / "patches", **RUN_KW)
        runs.append(run)
    return runs


def test_stage01_files_are_byte_identical_across_run_folders(two_runs):
    a, b = two_runs
    for name in ("extraction.json", "skipped_files.csv", "lesion.zarr/manifest.csv",
                 "normal.zarr/manifest.csv"):
        assert (a / "patches" / name).read_bytes() == (b / "patches" / name).read_bytes(), name
    summary = json.loads((a / "patches" / "extraction.json").read_text())
    assert summary["parameters"]["source"] == {"kind": "phantom", "root": "phantom"}
    assert "timings" not in summary and str(a) not in (a / "patches" / "extraction.json").read_text()
    timings = json.loads((a / "patches" / "timings.json").read_text())
    assert timings["total_s"] >= timings["extract_wall_s"] >= 0


def test_compare_with_reference_settings_then_checksums(two_runs, tmp_path, monkeypatch):
    a, b = two_runs
    assert compare_with_reference(a, "").status == "no reference"
    assert compare_with_reference(a, "").message == "no reference manifest to compare with"
    # the CLI writes into data_manifest/default_study of the current directory by default
    monkeypatch.chdir(tmp_path)
    assert patches.main(["write-reference", str(a)]) == 0
    ref = tmp_path / "data_manifest" / "default_study"
    params = json.loads((ref / "parameters.json").read_text())
    assert params["source"] == "built-in phantom" and params["phantom"]["n_images"] == 4
    assert params == json.loads(json.dumps(reference_parameters(
        patches.read_summary(a / "patches")["parameters"], a)))
    same = compare_with_reference(b, ref)
    assert same.status == "identical" and same.n_patches > 0
    assert f"all {same.n_patches} patch checksums match" in same.message
    table = pd.read_csv(ref / "lesion_manifest.csv", dtype=str, keep_default_na=False)
    table.loc[0, "checksum"] = "0" * 16
    table.to_csv(ref / "lesion_manifest.csv", index=False)
    changed = compare_with_reference(b, ref)
    assert changed.status == "differs" and changed.mismatches == [table.loc[0, "patch_id"]]
    params["seed"] = 99
    (ref / "parameters.json").write_text(json.dumps(params))
    other = compare_with_reference(b, ref)
    assert other.status == "settings differ" and other.differing == ["seed"]
    assert "differ from the reference" in other.message and "seed" in other.message
