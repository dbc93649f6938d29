"""Reruns of the real study's stages leave a run folder that holds one run: the phantom and the
patches of an earlier stage-01 run never survive beside a new one, and every input is checked
before any stage starts (the real notebooks, the smoke profile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mammo_lib.study.runner import StudyError, run_study


def _stage01(runs: Path, name: str, **kw) -> Path:
    return run_study("smoke", name=name, runs_root=runs, only=["01"], report=False, log=lambda s: None, **kw)


def _images(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "phantom").rglob("*.dcm"))


def test_a_stage_01_rerun_with_another_seed_or_phantom_size_replaces_the_phantom_and_patches(tmp_path):
    runs = tmp_path / "runs"
    fresh = _stage01(runs, "fresh", seed=2)
    run = _stage01(runs, "rerun", seed=1)
    first_images = _images(run)
    _stage01(runs, "rerun", seed=2)
    assert _images(run) == _images(fresh) and not set(first_images) & set(_images(run))
    for store in ("lesion.zarr", "normal.zarr"):  # the same patches as a clean seed-2 run, byte for byte
        assert (run / "patches" / store / "manifest.csv").read_bytes() == \
            (fresh / "patches" / store / "manifest.csv").read_bytes()
    _stage01(runs, "rerun", seed=2, overrides={"phantom_images": "3"})
    assert len(_images(run)) == 3
    assert json.loads((run / "phantom" / "PHANTOM.json").read_text())["parameters"]["n_images"] == 3
    assert json.loads((run / "run.json").read_text())["notebooks"][0]["parameters"]["phantom_images"] == 3


@pytest.mark.parametrize(("overrides", "seed", "message"), [
    ({"n_per_group": "-5"}, None, r"n_per_group must be an integer in \[1, inf\)"),
    ({}, -1, r"--seed -1: the seed must be an integer in \[0, 4294967295\]"),
    ({"generators": '[{"name": "dcgan", "kind": "dcgan"}, {"name": "mine", "kind": "folder", "path": "/no/such"}]'},
     None, r"generators\[1\] \(mine\): path"),
    ({"mrmc_covariance": "bogus"}, None, r"mrmc_covariance must be one of jackknife, delong"),
    ({"machine_observers": '["bogus"]'}, None, r"machine_observers must be one of"),
    ({"source_kind": "bogus"}, None, r"source_kind must be one of phantom"),
    ({"phantom_images": "0"}, None, r"phantom_images=0: the phantom is generated"),
    ({"source_kind": "mias", "source_path": "/no/such/folder"}, None, r"source_path='/no/such/folder'.*does not exist"),
    ({"lesion_classes": '["tumour"]'}, None, r"unknown lesion class 'tumour'"),
])
def test_bad_inputs_of_the_real_study_are_refused_before_stage_01(tmp_path, overrides, seed, message):
    with pytest.raises(StudyError, match=message):
        run_study("smoke", name="bad", runs_root=tmp_path / "runs", overrides=overrides, seed=seed,
                  log=lambda s: None)
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_generator_file_that_is_not_torchscript_is_refused_before_the_dcgan_trains(tmp_path):
    fake = tmp_path / "g.pt"
    fake.write_text("not a model")
    items = [{"name": "dcgan", "kind": "dcgan"}, {"name": "ts", "kind": "torchscript", "path": str(fake),
                                                  "latent_dim": 8}]
    with pytest.raises(StudyError, match=r"generators\[1\] \(ts\).*not a TorchScript model"):
        run_study("smoke", name="bad", runs_root=tmp_path / "runs", overrides={"generators": items},
                  log=lambda s: None)
    assert not (tmp_path / "runs" / "bad").exists()
