"""Notebook 02 headless under papermill (smoke profile) on a lesion store the test builds."""

from __future__ import annotations

import json

from conftest import execute_notebook

from mammo_lib import run_folder
from mammo_lib.patch_store import open_patch_store
from mammo_lib.testing import write_toy_lesion_store


def test_notebook_02_smoke(tmp_path):
    write_toy_lesion_store(run_folder.lesion_store_path(tmp_path), n=24, size=32, seed=0)
    out = execute_notebook("02_train_dcgan", tmp_path, profile="smoke")
    synthetic = open_patch_store(run_folder.synthetic_store_path(tmp_path))
    assert len(synthetic) == 32 and synthetic.patch_size == 32
    assert set(synthetic.manifest["source_kind"]) == {"dcgan"}
    figures = tmp_path / "dcgan" / "figures"
    for name in ("loss_curves.png", "samples_over_training.png", "fig3_synthetic_vs_real.png"):
        assert (figures / name).stat().st_size > 1000, name
    assert (tmp_path / "dcgan" / "checkpoints" / "last.pt").exists()
    summary = json.loads((tmp_path / "dcgan" / "training_summary.json").read_text())
    assert summary["iterations_done"] == 4 and summary["stopped"] == "finished"
    executed = json.loads(out.read_text())
    images = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 3  # loss curves, samples over training, Fig. 3 shown inline
