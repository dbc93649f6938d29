"""The whole study, every numbered notebook in order, through the runner with the smoke
profile on the built-in phantom: the path `make study` takes, at tiny scale."""

import json

import pandas as pd

from mammo_lib.patch_store import open_patch_store
from mammo_lib.run_folder import lesion_store_path, normal_store_path, synthetic_store_path
from mammo_lib.study.runner import discover_notebooks
from mammo_lib.study.verify import compare_run_folders

# the fixtures smoke_runs / smoke_run (two whole smoke studies, same seed) live in conftest.py


def test_same_seed_same_bytes_except_timing_records(smoke_runs):
    """Every output file is byte-identical; only timings.json files and the executed notebooks'
    timing metadata may differ."""
    result = compare_run_folders(*smoke_runs)
    assert result["n_compared"] > 50
    assert result["differing"] == [] and result["only_here"] == [] and result["only_in_rerun"] == []


def test_every_notebook_ran_and_left_an_executed_copy(smoke_run):
    record = json.loads((smoke_run / "run.json").read_text())
    expected = [nb.name for nb in discover_notebooks()]
    assert [n["notebook"] for n in record["notebooks"]] == expected
    assert all(n["status"] == "ok" for n in record["notebooks"])
    for name in expected:
        executed = json.loads((smoke_run / name).read_text())
        assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code")


def test_stages_wrote_their_files(smoke_run):
    lesions = open_patch_store(lesion_store_path(smoke_run))
    normals = open_patch_store(normal_store_path(smoke_run))
    synthetic = open_patch_store(synthetic_store_path(smoke_run))
    assert lesions.patch_size == normals.patch_size == synthetic.patch_size
    assert lesions.verify_checksums() == [] and synthetic.verify_checksums() == []
    embedding = pd.read_csv(smoke_run / "feature_space" / "embedding.csv")
    assert {"lesion", "normal", "synthetic"} <= set(embedding["group"])
    assert list((smoke_run / "reader_study" / "ratings").glob("*.jsonl"))
    roc = json.loads((smoke_run / "roc" / "metrics.json").read_text())
    readers = roc["readers"]  # every machine observer analysed, each AUC an AUC
    assert set(readers) == {"machine-cnn", "machine-pixels", "machine-spectrum"}
    assert all(0.0 <= r["auc"] <= 1.0 and r["n_cases"] == roc["n_cases"] > 0 for r in readers.values())
    for stage in ("patches", "dcgan", "feature_space", "roc"):
        assert list((smoke_run / stage / "figures").glob("*.png")), f"{stage} saved no figure"


def test_two_generators_end_to_end(tmp_path_factory):
    """The whole smoke study with the DCGAN and a folder of patches written here: every stage
    shows both generators, and the report names them."""
    import numpy as np

    from mammo_lib.study.runner import run_study

    root = tmp_path_factory.mktemp("two")
    src = root / "my_patches"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):  # 8-bit grey PNG-like patches as a user's generator would leave them
        np.save(src / f"p{i:02d}.npy", rng.integers(60, 200, (64, 64)).astype(np.uint8))
    run = run_study("smoke", name="two", runs_root=root / "runs", log=lambda s: None, overrides={
        "generators": [{"name": "dcgan", "kind": "dcgan"}, {"name": "mine", "kind": "folder", "path": str(src)}]})
    embedding = pd.read_csv(run / "feature_space" / "embedding.csv")
    assert {"dcgan", "mine"} <= set(embedding["generator"].dropna())
    fs = json.loads((run / "feature_space" / "metrics.json").read_text())
    assert set(fs["metrics_by_generator"]) == {"dcgan", "mine"}
    key = pd.read_csv(run / "reader_study" / "key" / "key.csv", keep_default_na=False)
    assert set(key["generator"]) == {"", "dcgan", "mine"}
    roc = json.loads((run / "roc" / "metrics.json").read_text())
    assert set(roc["by_generator"]) == {"dcgan", "mine"} and roc["mrmc_generators"]
    page = (run / "report" / "index.html").read_text()
    assert "synthetic patches (mine)" in page and "Per generator" in page


def test_a_stage_rerun_by_hand_updates_run_json(smoke_run, tmp_path):
    """Under the runner each notebook's last cell leaves the record to the runner; rerun outside
    it (as from JupyterLab), the stage's entry in run.json is replaced and marked."""
    import shutil

    from conftest import execute_notebook

    for name in [nb.name for nb in discover_notebooks()]:
        last = json.loads((smoke_run / name).read_text())["cells"][-1]
        assert "recorded by the study runner" in json.dumps(last["outputs"]), name
    copy = tmp_path / "copy"
    shutil.copytree(smoke_run, copy)
    execute_notebook("05_roc_analysis", copy, profile="smoke", n_bootstrap=50)
    record = json.loads((copy / "run.json").read_text())
    entry = next(e for e in record["notebooks"] if e["notebook"] == "05_roc_analysis.ipynb")
    assert entry["status"] == "ok (rerun interactively)" and entry["parameters"]["n_bootstrap"] == 50
    assert record["results"]["05_roc_analysis"]["readers"]
