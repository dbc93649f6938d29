"""Notebook 03 headless (papermill, smoke profile) on patch stores this test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from mammo_lib import patch_store, run_folder, testing
from mammo_lib.feature_space import sampling as fs
from mammo_lib.generate.imported import GeneratorSpec, import_generator
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
    # no timings in metrics.json (the C2ST's CPU limit is a parameter, not a timing)
    assert metrics["tsne"]["stop_early"] is True and "seconds" not in json.dumps(metrics).replace("max_cpu_seconds", "")
    assert json.loads((stage / "timings.json").read_text())["tsne_seconds"] >= 0
    assert (stage / "metrics_table.csv").stat().st_size > 200
    # one generator: the DCGAN's legacy store is "dcgan", and `metrics` is its metrics
    assert [g["name"] for g in metrics["generators"]] == ["dcgan"]
    assert metrics["metrics"] == metrics["metrics_by_generator"]["dcgan"]
    assert set(table.loc[table["group"] == "synthetic", "generator"]) == {"dcgan"}
    assert (stage / "figures" / "metric_forest.png").stat().st_size > 5000
    # the CNN two-sample test with its controls, its figures and held-out scores
    c2 = metrics["c2st"]
    assert list(c2["by_generator"]) == ["dcgan"] and set(c2["controls"]) == {"null", "positive"}
    assert 0.0 <= c2["by_generator"]["dcgan"]["auc"]["value"] <= 1.0 and c2["by_generator"]["dcgan"]["verdict"]
    assert c2["frequency_sweep"]["rows"][0]["filter"] == "none"
    for name in ("c2st_verdict.png", "c2st_gallery_dcgan.png", "c2st_saliency_dcgan.png",
                 "c2st_frequency_sweep.png", "fig2_tsne_cnn.png"):
        assert (stage / "figures" / name).stat().st_size > 5000, name
    scores = pd.read_csv(stage / "c2st_scores.csv")
    assert set(scores["test"]) == {"dcgan", "null-control", "positive-control"} and scores["score"].between(0, 1).all()
    assert set(metrics["tsne_readability"]) == {"pixels", "cnn"}
    assert "Can a machine tell them apart?" in json.dumps([c.source for c in nbformat.read(out, as_version=4).cells])
    assert json.loads((stage / "timings.json").read_text())["c2st_cpu_seconds"] > 0


def _write_npy_folder(folder: Path, patches: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, patch in enumerate(patches):
        np.save(folder / f"patch_{i:03d}.npy", patch)
    return folder


@pytest.mark.timeout(400)
def test_notebook_03_compares_generators_against_the_same_real_set(tmp_path):
    """A DCGAN-like legacy store plus two folder-imported generators: the real lesions
    themselves ("copies") and flat bright patches unlike any lesion ("flat")."""
    run_dir = tmp_path / "run"
    write_demo_stores(run_dir, 30)
    lesions = patch_store.open_patch_store(run_folder.lesion_store_path(run_dir)).load()
    flat = np.clip(np.random.default_rng(1).normal(235, 3, lesions.shape), 0, 255).astype(np.uint8)
    for name, patches in (("copies", lesions), ("flat", flat)):
        folder = _write_npy_folder(tmp_path / name, patches)
        import_generator(GeneratorSpec(name, "folder", {"path": str(folder)}), run_dir / "synthetic", 128)
    assert list(run_folder.synthetic_stores(run_dir)) == ["dcgan", "copies", "flat"]

    out = execute_notebook("03_feature_space", run_dir, profile="smoke")
    stage = run_dir / "feature_space"
    table = pd.read_csv(stage / "embedding.csv", keep_default_na=False)
    synthetic = table[table["group"] == "synthetic"]
    assert synthetic["generator"].value_counts().to_dict() == {"dcgan": 20, "copies": 20, "flat": 20}
    assert len(table) == 5 * 20 and set(table.loc[table["group"] != "synthetic", "generator"]) == {""}
    assert set(synthetic.loc[synthetic["generator"] == "copies", "patch_id"].str[:7]) == {"copies-"}

    metrics = json.loads((stage / "metrics.json").read_text())
    assert [(g["name"], g["store"], g["n"]) for g in metrics["generators"]] == [
        ("dcgan", "synthetic/synthetic.zarr", 20), ("copies", "synthetic/copies.zarr", 20),
        ("flat", "synthetic/flat.zarr", 20)]
    by_gen = metrics["metrics_by_generator"]
    assert list(by_gen) == ["dcgan", "copies", "flat"] and metrics["metrics"] == by_gen["dcgan"]
    assert metrics["sample"]["sources"]["synthetic"] == "synthetic/synthetic.zarr"
    for space in ("pixels", "cnn"):
        # the same real set for every generator: same real lesions, same leave-one-out distances
        real_loo = {g: by_gen[g][space]["memorisation"]["median_nn_distance_real_to_train_loo"] for g in by_gen}
        assert len(set(real_loo.values())) == 1, real_loo
        assert {by_gen[g][space]["n"]["lesion"] for g in by_gen} == {20}
    copies, far = by_gen["copies"]["pixels"], by_gen["flat"]["pixels"]
    # patches that ARE the real ones: memorisation flagged (exact duplicates, share far above 5%),
    # and the 1-NN test cannot tell them from real (<= about 0.5: copies are each other's neighbours)
    assert copies["memorisation"]["exact_duplicates"] >= 3
    assert copies["memorisation"]["share_synthetic_below_real_q05"]["value"] > 0.3  # about 0.05 if not copied
    assert copies["memorisation"]["median_ratio_synthetic_to_real"]["value"] < 0.5
    assert copies["one_nn_accuracy"]["value"] < 0.6
    # flat bright patches: trivially told apart, no memorisation
    assert far["one_nn_accuracy"]["value"] > 0.9 and far["prdc"]["precision"]["value"] < 0.2
    assert far["memorisation"]["exact_duplicates"] == 0
    assert metrics["outliers_tsne_by_generator"].keys() == {"dcgan", "copies", "flat"}

    rows = pd.read_csv(stage / "metrics_table.csv", keep_default_na=False)
    assert list(rows.columns[:3]) == ["feature_space", "generator", "metric"]
    assert rows.groupby(["feature_space", "generator"]).size().to_dict() == {
        (s, g): 10 for s in ("pixels", "cnn", "random-cnn") for g in ("dcgan", "copies", "flat")}
    # the CNN two-sample test of every generator, against the same real lesions
    c2 = metrics["c2st"]["by_generator"]
    assert list(c2) == ["dcgan", "copies", "flat"]
    assert {c2[g]["n_given"][0] for g in c2} == {20}
    for name in ("c2st_gallery_dcgan.png", "c2st_gallery_copies.png", "c2st_saliency_flat.png"):
        assert (stage / "figures" / name).stat().st_size > 5000

    for name in ("fig2_tsne.png", "tsne_thumbnails.png", "closest_pairs_pixels.png", "closest_pairs_cnn.png",
                 "metric_forest.png"):
        assert (stage / "figures" / name).stat().st_size > 5000
    cells = nbformat.read(out, as_version=4).cells
    shown = "\n".join(o.get("data", {}).get("text/markdown", "") for c in cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "3 generators in this run" in shown
    for name in ("dcgan", "copies", "flat"):
        assert f"**{name}**" in shown
    legend_run = json.dumps([c.get("outputs", []) for c in cells])
    assert "group 'synthetic' (generator" not in legend_run  # 30 patches each: no shortage warning


def test_notebook_03_holds_no_logic():
    """Cells call mammo_lib: no function definitions, no file writes of their own."""
    nb = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / "03_feature_space.ipynb", as_version=4)
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
