"""Stages 04 and 05 end to end with two generators, headless under papermill: a run
folder with the DCGAN-like store of write_example_stores and a second generator imported from a
folder of patches written here. Both generators are in key.csv, the machine observers are trained
per generator, metrics.json holds the per-generator statistics and the MRMC with the generator as
the modality, and every figure is written."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
from conftest import execute_notebook

from mammo_lib import testing
from mammo_lib.generate.contract import GeneratorSpec
from mammo_lib.generate.imported import import_generator
from mammo_lib.roc import mrmc, mrmc_export


def two_generator_run(run_dir, n=30, size=16, seed=4):
    """write_example_stores (real + the DCGAN-like synthetic.zarr) and a folder-imported "mine"
    (PNG-free: one .npy stack of smooth blobs with a coarse grid artefact)."""
    testing.write_example_stores(run_dir, n, n, size=size, seed=seed)
    rng = np.random.default_rng(seed + 100)
    yy, xx = np.mgrid[:size, :size] / size
    patches = np.empty((n, size, size), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(0.35, 0.65, 2).tolist() + [rng.uniform(0.1, 0.25)]
        img = 0.25 + 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(0, 0.05, (size, size))
        img += 0.1 * ((np.arange(size) // 4) % 2)[None, :]
        patches[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    folder = run_dir.parent / "my_generator_patches"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "patches.npy", patches)
    import_generator(GeneratorSpec("mine", "folder", {"path": str(folder)}), run_dir / "synthetic", size)
    return run_dir


def _errors(path):
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"], nb


def test_notebooks_04_and_05_with_two_generators(tmp_path):
    run_dir = two_generator_run(tmp_path / "run")
    out04 = execute_notebook("04_reader_study", run_dir, profile="smoke")
    errors, nb04 = _errors(out04)
    assert not errors
    root = run_dir / "reader_study"
    study = json.loads((root / "case_set" / "study.json").read_text())
    assert study["generators"] == ["dcgan", "mine"] and study["n_synthetic_by_generator"] == {"dcgan": 2, "mine": 2}
    key = pd.read_csv(root / "key" / "key.csv", dtype=str, keep_default_na=False)
    assert list(key.columns) == ["case_id", "truth", "store", "patch_id", "generator"]
    assert sorted(key.loc[key["truth"] == "synthetic", "generator"]) == ["dcgan", "dcgan", "mine", "mine"]
    assert set(key.loc[key["truth"] == "real", "generator"]) == {""}
    assert set(key.loc[key["generator"] == "mine", "store"]) == {"mine.zarr"}
    ratings = sorted(p.stem for p in (root / "ratings").glob("*.jsonl"))
    assert ratings == ["machine-pixels-dcgan", "machine-pixels-mine", "machine-spectrum-dcgan",
                       "machine-spectrum-mine"]
    for name in ratings:
        lines = (root / "ratings" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == 8 and {json.loads(line)["reader"] for line in lines} == {name}
    text04 = json.dumps([c.get("outputs", []) for c in nb04.cells])
    assert "**dcgan** (2 cases), **mine** (2 cases)" in text04 and "synthetic: mine" in text04
    assert sorted(p.name for p in (root / "figures").glob("*.png")) == [
        "case_set_balance.png", "example_cases.png", "ratings_per_option.png"]

    out05 = execute_notebook("05_roc_analysis", run_dir, profile="smoke")
    errors, nb05 = _errors(out05)
    assert not errors
    metrics = json.loads((run_dir / "roc" / "metrics.json").read_text())
    assert metrics["generators"] == ["dcgan", "mine"] and metrics["n_synthetic_by_generator"] == {"dcgan": 2, "mine": 2}
    for g in ("dcgan", "mine"):
        section = metrics["by_generator"][g]
        assert section["n_real"] == 4 and section["n_synthetic"] == 2
        assert set(section["readers"]) == {f"machine-pixels-{g}", f"machine-spectrum-{g}"}
        for s in section["readers"].values():
            assert s["n_cases"] == 6 and s["trained_on"] == g and 0 <= s["auc"] <= 1
    across = metrics["mrmc_generators"]["all readers"]
    assert across["modalities"] == ["dcgan", "mine"] and across["readers"] == ["machine-pixels", "machine-spectrum"]
    assert across["n_cases"] == 8 and across["n_cases_per_modality"] == {"dcgan": 6, "mine": 6}
    assert across["RRRC"]["differences"][0]["comparison"] == "dcgan - mine" and "partially paired" in across["design"]
    figures = {p.name: p.stat().st_size for p in (run_dir / "roc" / "figures").glob("*.png")}
    assert set(figures) == {"roc_curves.png", "ratings_by_truth.png", "confusion_matrices.png", "auc_forest.png",
                            "agreement.png", "generator_differences.png"} and min(figures.values()) > 5000
    text05 = json.dumps([c.get("outputs", []) for c in nb05.cells])
    assert "The case set compares 2 generators: **dcgan** (2 synthetic cases), **mine** (2 synthetic cases)" in text05
    # the exports carry the generator as the modality and give back the analysis' numbers
    data = mrmc_export.read_long_csv(run_dir / "roc" / "exports" / "ratings_long.csv")
    assert data.modalities == ["dcgan", "mine"] and data.present is not None and data.present.sum() == 12
    again = mrmc.or_analysis(data.ratings, data.truth, modalities=data.modalities, readers=data.readers,
                             present=data.present)
    assert again["modality_mean_auc"] == across["modality_mean_auc"]
    back = mrmc_export.read_imrmc(run_dir / "roc" / "exports" / "ratings.imrmc")
    np.testing.assert_array_equal(back.present, data.present)
