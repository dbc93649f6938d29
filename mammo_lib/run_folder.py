"""Layout of a run folder: every stage reads and writes files here and nowhere else.

```
runs/<name>/
  run.json                       the runner's record (profile, versions, notebook status)
  NN_<stage>.ipynb               executed notebooks
  phantom/                       built-in data, when the phantom is the source (stage 01)
  patches/lesion.zarr            real lesion patches + manifest.csv (stage 01)
  patches/normal.zarr            real normal-tissue patches + manifest.csv (stage 01)
  patches/skipped_files.csv      files that could not be used, and why (stage 01)
  dcgan/                         checkpoints/, loss_log.csv, samples/ (stage 02)
  synthetic/synthetic.zarr       synthetic lesion patches + manifest.csv (stage 02)
  feature_space/                 embedding.csv, metrics.json (stage 03)
  reader_study/case_set/         what readers see: case PNGs + cases.csv (stage 04)
  reader_study/key/key.csv       the truth, never loaded by the reading side (stage 04)
  reader_study/ratings/*.jsonl   append-only ratings, one file per reader (stage 04)
  roc/                           metrics.json (stage 05)
  <stage>/figures/*.png          every figure a stage saves
```
"""

from __future__ import annotations

import os
from pathlib import Path

STAGE_DIRS = {
    "phantom": "phantom",
    "patches": "patches",
    "dcgan": "dcgan",
    "synthetic": "synthetic",
    "feature_space": "feature_space",
    "reader_study": "reader_study",
    "roc": "roc",
}


def stage_dir(run_dir: str | os.PathLike, stage: str, create: bool = True) -> Path:
    """The folder of one stage inside a run folder (created on request)."""
    if stage not in STAGE_DIRS:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGE_DIRS)}")
    path = Path(run_dir) / STAGE_DIRS[stage]
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(run_dir: str | os.PathLike, stage: str) -> Path:
    """``<run>/<stage>/figures``, created."""
    path = stage_dir(run_dir, stage) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def lesion_store_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "patches" / "lesion.zarr"


def normal_store_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "patches" / "normal.zarr"


def synthetic_store_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "synthetic" / "synthetic.zarr"
