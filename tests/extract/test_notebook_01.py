"""Notebook 01 runs headless with papermill (smoke profile: a tiny generated phantom) and
writes the patch stores, the reports and the figures into the run folder."""

from __future__ import annotations

import json

import nbformat

from mammo_lib.patch_store import open_patch_store
from mammo_lib.run_folder import lesion_store_path, normal_store_path
from tests.conftest import execute_notebook


def test_notebook_01_smoke_profile(tmp_path):
    run_dir = tmp_path / "run"
    executed = execute_notebook("01_extract_patches", run_dir, profile="smoke")
    lesion = open_patch_store(lesion_store_path(run_dir))
    normal = open_patch_store(normal_store_path(run_dir))
    assert lesion.patch_size == 64 and len(lesion) > 0 and len(normal) > 0
    assert lesion.verify_checksums() == [] and normal.verify_checksums() == []
    summary = json.loads((run_dir / "patches" / "extraction.json").read_text())
    assert summary["counts"]["lesion_patches"] == len(lesion)
    assert (run_dir / "patches" / "skipped_files.csv").exists()
    for name in ("class_counts", "lesion_examples", "normal_examples", "intensity_histograms"):
        png = run_dir / "patches" / "figures" / f"{name}.png"
        assert png.exists() and png.stat().st_size > 1000, png
    nb = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "lesion and" in text and "no reference manifest" in text


def test_notebook_01_finishes_on_a_mias_folder_of_normal_images_only(tmp_path, mias_dir):
    """No lesion patch at all: every figure and summary cell still runs and says so plainly."""
    import shutil

    src = mias_dir
    folder = tmp_path / "mias_normals"
    (folder / "images").mkdir(parents=True)
    lines = [line for line in (src / "Info.txt").read_text(encoding="latin-1").splitlines()
             if line.startswith(("mdb003 ", "mdb004 "))]
    assert lines and all(" NORM" in line for line in lines)
    (folder / "Info.txt").write_text("\n".join(lines) + "\n", encoding="latin-1")
    for ref in ("mdb003", "mdb004"):
        shutil.copy(src / "images" / f"{ref}.png", folder / "images" / f"{ref}.png")
    run_dir = tmp_path / "run"
    executed = execute_notebook("01_extract_patches", run_dir, profile="smoke",
                                source_kind="mias", source_path=str(folder))
    normal = open_patch_store(normal_store_path(run_dir))
    lesion = open_patch_store(lesion_store_path(run_dir), require_nonempty=False)
    assert len(lesion) == 0 and len(normal) > 0
    nb = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "0 lesion and" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    for name in ("class_counts", "lesion_examples", "lesion_border", "intensity_histograms"):
        assert (run_dir / "patches" / "figures" / f"{name}.png").stat().st_size > 1000
