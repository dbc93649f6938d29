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


def test_notebook_02_with_another_generator_and_without_the_dcgan(tmp_path):
    """A folder of patches beside the DCGAN; then the folder alone: the DCGAN's store goes, and a
    generator no longer listed is removed."""
    import numpy as np

    from mammo_lib.run_folder import synthetic_stores

    write_toy_lesion_store(run_folder.lesion_store_path(tmp_path), n=24, size=32, seed=0)
    src = tmp_path / "mine"
    src.mkdir()
    np.save(src / "stack.npy", np.random.default_rng(1).integers(0, 256, (10, 32, 32)).astype(np.uint8))
    both = [{"name": "dcgan", "kind": "dcgan"}, {"name": "mine", "kind": "folder", "path": str(src)}]
    execute_notebook("02_train_dcgan", tmp_path, profile="smoke", generators=both)
    stores = synthetic_stores(tmp_path)
    assert list(stores) == ["dcgan", "mine"]
    mine = open_patch_store(stores["mine"])
    assert len(mine) == 10 and set(mine.manifest["source_file"]) == {f"stack.npy[{i}]" for i in range(10)}
    assert (tmp_path / "dcgan" / "figures" / "generator_mine_examples.png").stat().st_size > 1000
    out = execute_notebook("02_train_dcgan", tmp_path, profile="smoke",
                           generators=[{"name": "mine", "kind": "folder", "path": str(src)}])
    assert list(synthetic_stores(tmp_path)) == ["mine"]
    text = out.read_text()
    assert "removed the stores of generators no longer listed: dcgan" in text
    assert "no DCGAN in `generators`: training skipped" in text
