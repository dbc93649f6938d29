"""Notebook 03 headless (papermill, smoke profile) on patch stores this test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from mammo_lib import feature_space as fs
from mammo_lib import patch_store, run_folder, testing
from tests.conftest import execute_notebook


def write_demo_stores(run_dir: Path, n_per_group: int, seed: int = 0, size: int = 128,
                      counts: dict | None = None) -> None:
    """The three stores of a run folder, filled with feature_space.demo_groups patches."""
    groups = testing.demo_groups(n_per_group, size=size, seed=seed)
    paths = {"lesion": run_folder.lesion_store_path(run_dir), "normal": run_folder.normal_store_path(run_dir),
             "synthetic": run_folder.synthetic_store_path(run_dir)}
    for g, path in paths.items():
        arr = groups[g][: (counts or {}).get(g, n_per_group)]
        n = len(arr)
        manifest = pd.DataFrame({
            "patch_id": [f"{g}-{i:04d}" for i in range(n)], "group": g,
            "source_kind": "dcgan" if g == "synthetic" else "phantom",
            "image_id": "" if g == "synthetic" else [f"img{i % 7}" for i in range(n)],
            "lesion_id": [f"l{i}" for i in range(n)] if g == "lesion" else "",
            "lesion_class": "normal" if g == "normal" else "mass",
            "center_row": -1, "center_col": -1, "normalisation": "none", "checksum": "",
        })
        patch_store.write_patch_store(path, arr, manifest)


@pytest.mark.timeout(300)
def test_notebook_03_smoke(tmp_path):
    run_dir = tmp_path / "run"
    write_demo_stores(run_dir, 30, counts={"synthetic": 15})
    out = execute_notebook("03_feature_space", run_dir, profile="smoke")
    stage = run_dir / "feature_space"
    table = pd.read_csv(stage / "embedding.csv")
    assert len(table) == 20 + 15 + 20
    assert set(table["group"]) == {"lesion", "synthetic", "normal"}
    for col in ("patch_id", "x1", "x2", "outlier_tsne", "outlier_pixels", "outlier_cnn"):
        assert col in table.columns
    assert np.isfinite(table[["x1", "x2"]].to_numpy()).all()
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["tsne"]["kl_divergence"] > 0
    assert metrics["sample"]["warnings"], "the short synthetic group must produce a visible warning"
    for space in ("pixels", "cnn"):
        m = metrics["metrics"][space]
        acc = m["one_nn_accuracy"]
        assert 0.0 <= acc["ci_low"] <= acc["value"] <= acc["ci_high"] <= 1.0
        assert m["prdc"]["precision"]["value"] is not None
    for name in ("fig2_tsne.png", "tsne_thumbnails.png", "closest_pairs_pixels.png", "closest_pairs_cnn.png"):
        assert (stage / "figures" / name).stat().st_size > 5000
    text = "\n".join(
        o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
        for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )
    assert "WARNING: group 'synthetic' has only 15 patches" in text
    # each warning shown once, no widget progress bars, no absolute paths, timings apart
    every_output = json.dumps([c.get("outputs", []) for c in nbformat.read(out, as_version=4).cells])
    assert every_output.count("has only 15 patches") == 1
    assert "application/vnd.jupyter.widget-view+json" not in every_output
    assert str(run_dir) not in every_output and str(run_dir) not in (stage / "metrics.json").read_text()
    assert metrics["sample"]["sources"]["synthetic"] == "synthetic/synthetic.zarr"
    assert metrics["tsne"]["stop_early"] is True and "seconds" not in json.dumps(metrics)
    assert json.loads((stage / "timings.json").read_text())["tsne_seconds"] >= 0
    assert (stage / "metrics_table.csv").stat().st_size > 200


def test_notebook_03_holds_no_logic():
    """Cells call mammo_lib: no function definitions, no file writes of their own."""
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "03_feature_space.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for forbidden in ("def ", "lambda", "open(", ".to_csv(", "atomic_write", "json.dump", "write_text"):
        assert forbidden not in code, forbidden
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_notebook_03_mismatched_patch_sizes_fail_clearly(tmp_path):
    run_dir = tmp_path / "run"
    write_demo_stores(run_dir, 12)
    small = testing.demo_groups(12, size=64, seed=1)["synthetic"]
    manifest = pd.read_csv(run_folder.synthetic_store_path(run_dir) / "manifest.csv", keep_default_na=False)
    patch_store.write_patch_store(run_folder.synthetic_store_path(run_dir), small, manifest)
    with pytest.raises(fs.FeatureSpaceError, match="different patch sizes"):
        fs.load_groups(run_dir, n_per_group=10)
