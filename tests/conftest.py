"""Shared test fixtures: the real data beside the repo (skipped when absent) and a papermill
helper to execute one notebook headless with tiny parameters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MAMMO_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data_dir(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (the repo's ../shared/data is not beside this checkout)")
    return path


@pytest.fixture
def mias_dir() -> Path:
    return shared_data_dir("mini-mias")


@pytest.fixture
def dicom_samples_dir() -> Path:
    return shared_data_dir("dicom-samples")


@pytest.fixture
def roc_reference_dir() -> Path:
    return shared_data_dir("roc-reference")


def execute_notebook(stem: str, run_dir: Path, profile: str = "smoke", **params) -> Path:
    """Run ``notebooks/<stem>.ipynb`` with papermill into ``run_dir`` (profile + overrides)."""
    import papermill as pm

    from mammo_lib.study.runner import NOTEBOOK_DIR, profile_parameters

    nb = NOTEBOOK_DIR / f"{stem}.ipynb"
    merged = profile_parameters(nb, profile)
    merged.update(params)
    merged["run_dir"] = str(run_dir)
    out = Path(run_dir) / f"{stem}.ipynb"
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(nb), str(out), parameters=merged, cwd=str(NOTEBOOK_DIR),
                        kernel_name="python3", language="python", progress_bar=False)
    return out


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """Two whole smoke studies through the runner, same seed, two run folders (report included)."""
    from mammo_lib.study.runner import run_study

    runs = tmp_path_factory.mktemp("runs")
    return [run_study("smoke", name=name, runs_root=runs, log=lambda s: None) for name in ("smoke", "again")]


@pytest.fixture(scope="session")
def smoke_run(smoke_runs):
    """The first of :func:`smoke_runs`."""
    return smoke_runs[0]


def parameters_notebook(path: Path, params: str, *body: str) -> Path:
    """Write a notebook whose first cell, tagged ``parameters``, holds ``params`` and whose
    further code cells hold ``body`` (a stand-in stage for the runner's and parameters' tests)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(b) for b in body)]
    nbformat.write(nb, path)
    return Path(path)
