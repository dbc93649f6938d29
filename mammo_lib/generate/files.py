"""Stage 02 files: what DCGAN training reads and writes in ``<run>/dcgan/``, and their formats.

Reads the lesion patch store of stage 01 (:func:`load_training_patches`, with the fingerprint
that ties a checkpoint to its training data). Writes, under the stage folder:

- ``loss_log.csv``: one row per iteration, columns :data:`LOG_COLUMNS` (no times, so a rerun
  with the same seed on a CPU writes the same bytes); :class:`LossLog`, :func:`read_loss_log`;
- ``training_summary.json``: :class:`TrainingSummary`, what the last call did, its settings
  and paths relative to the run folder (no times);
- ``timings.json``: :class:`TrainingTimings`, every wall-clock figure of training (seconds,
  images/s, UTC stamps), kept apart so that every other file is byte-identical on a rerun;
- ``checkpoints/last.pt``, ``previous.pt`` and ``samples/`` (written by
  :mod:`mammo_lib.generate.training`; the checkpoint format is in :mod:`mammo_lib.generate.model`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TypedDict

import pandas as pd
import torch

from mammo_lib.fileio import atomic_write_text, write_json
from mammo_lib.generate.model import (
    Architecture,
    CheckpointError,
    check_architecture,
    load_checkpoint,
)
from mammo_lib.patch_store import PatchStoreError, open_patch_store
from mammo_lib.sources.lesion_classes import select_lesion_rows
from mammo_lib.timings import TIMINGS_NAME

LOG_COLUMNS = ("iteration", "epoch", "batch", "loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2")
LOSS_LOG_NAME = "loss_log.csv"


class TrainingSummary(TypedDict):
    """``dcgan/training_summary.json``: what the last call of training did (no times).

    Keys: ``iterations_done`` (iterations completed in total), ``total_iterations`` (planned),
    ``start_iteration`` (where this call began; 0 when fresh), ``stopped`` ("finished",
    "time_budget" or "already_done"), ``checkpoint``, ``loss_log``, ``samples_dir``, ``store``
    (paths relative to the run folder, absolute when outside it), ``n_patches`` (training
    patches), ``world_size`` (processes), ``iters_per_epoch``, ``device`` (e.g. "cpu"),
    ``device_name`` ("cpu", or the GPU's name, e.g. "NVIDIA H100 80GB HBM3"), ``amp`` (whether
    G and D ran under bfloat16 autocast: only on CUDA with ``amp``), ``config`` (every :class:`~mammo_lib.generate.training.TrainConfig` field) and
    ``architecture`` (every :class:`~mammo_lib.generate.model.Architecture` field).
    """

    iterations_done: int
    total_iterations: int
    start_iteration: int
    stopped: str
    checkpoint: str
    loss_log: str
    samples_dir: str
    store: str
    n_patches: int
    world_size: int
    iters_per_epoch: int
    device: str
    device_name: str
    amp: bool
    config: dict
    architecture: dict


class TimedCall(TypedDict):
    """One call of training in ``timings.json``: iterations ``start_iteration`` to
    ``end_iteration`` took ``seconds`` of wall-clock time (``images_per_s`` real images per
    second over all processes), between the UTC stamps ``started_utc`` and ``finished_utc``
    (ISO 8601); ``stopped`` as in :class:`TrainingSummary`."""

    start_iteration: int
    end_iteration: int
    seconds: float
    images_per_s: float
    started_utc: str
    finished_utc: str
    stopped: str


class TrainingTimings(TypedDict):
    """``dcgan/timings.json``: ``calls`` (one :class:`TimedCall` per call of training that
    contributed to the current checkpoint, oldest first) and ``total_seconds`` (their sum)."""

    calls: list[TimedCall]
    total_seconds: float


def dcgan_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    """The files of stage 02 under ``out_dir`` (``<run>/dcgan``), by role.

    Keys: ``checkpoints``, ``last``, ``previous``, ``loss_log``, ``samples``, ``summary``,
    ``timings``.
    """
    out = Path(out_dir)
    return {
        "checkpoints": out / "checkpoints",
        "last": out / "checkpoints" / "last.pt",
        "previous": out / "checkpoints" / "previous.pt",
        "loss_log": out / LOSS_LOG_NAME,
        "samples": out / "samples",
        "summary": out / "training_summary.json",
        "timings": out / TIMINGS_NAME,
    }


# ------------------------------------------------------------------ training data


def training_data_fingerprint(store_path: str | os.PathLike,
                              lesion_classes: list[str] | None = None) -> str:
    """SHA-256 over the per-patch checksums of the patches a checkpoint is trained on.

    Only the patches of ``lesion_classes`` (None: all) count, so a changed class filter, like a
    changed store, makes a checkpoint's fingerprint differ and training start afresh.

    Raises
    ------
    PatchStoreError
        When the store is missing or empty.
    LesionClassError
        When a class is unknown or the filter leaves no patch.
    """
    store = open_patch_store(store_path)
    rows = select_lesion_rows(store.manifest, lesion_classes, store_path)
    checksums = store.manifest["checksum"].astype(str).to_numpy()[rows]
    text = f"{store.patch_size}\n" + "\n".join(checksums)
    return hashlib.sha256(text.encode()).hexdigest()


def load_training_patches(store_path: str | os.PathLike,
                          lesion_classes: list[str] | None = None) -> torch.Tensor:
    """The lesion patches of a store (only ``lesion_classes``; None: all).

    Parameters
    ----------
    store_path : str or os.PathLike
        A patch store (``patches/lesion.zarr``).
    lesion_classes : list of str, optional
        Manifest ``lesion_class`` values to keep (None: every patch).

    Returns
    -------
    torch.Tensor, uint8, shape (n, size, size)

    Raises
    ------
    PatchStoreError
        When the store is missing or empty, or its patch size is not a power of two >= 32.
    LesionClassError
        When a class is unknown (the message lists the store's classes with their counts) or
        the filter leaves no patch.
    """
    store = open_patch_store(store_path)
    size = store.patch_size
    if size < 32 or size & (size - 1):
        raise PatchStoreError(
            f"patch store {store_path} holds {size}x{size} patches; the DCGAN needs a power of two >= 32 "
            "(extract patches at 32, 64, 128 ... pixels)"
        )
    if lesion_classes is None:
        return torch.from_numpy(store.load())
    rows = select_lesion_rows(store.manifest, lesion_classes, store_path, purpose="to train the DCGAN on")
    return torch.from_numpy(store.load(rows))


# ------------------------------------------------------------------ loss log


class LossLog:
    """Append-only per-iteration CSV; on resume, rows after the checkpoint's iteration are dropped."""

    def __init__(self, path: Path, keep_through_iteration: int | None) -> None:
        self.path = Path(path)
        header = ",".join(LOG_COLUMNS) + "\n"
        kept: list[str] = []
        if keep_through_iteration and self.path.exists():
            kept = self._rows_through(keep_through_iteration)
        atomic_write_text(self.path, header + "".join(kept))
        self._fh = open(self.path, "a", newline="")

    def _rows_through(self, last: int) -> list[str]:
        kept = []
        with open(self.path, newline="") as fh:
            for row in csv.reader(fh):
                if len(row) != len(LOG_COLUMNS) or not row[0].isdigit():
                    continue  # header, a line cut by a kill, or a log of another format
                if int(row[0]) <= last:
                    kept.append(",".join(row) + "\n")
        return kept

    def append(self, values: tuple) -> None:
        """Append one row (values in :data:`LOG_COLUMNS` order) and flush it."""
        self._fh.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in values) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_loss_log(path: str | os.PathLike) -> pd.DataFrame:
    """The loss log as a DataFrame, one row per iteration (rows cut by a kill are skipped).

    Parameters
    ----------
    path : str or os.PathLike
        ``dcgan/loss_log.csv``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LOG_COLUMNS`: ``iteration`` (1-based), ``epoch``, ``batch``, ``loss_D``
        and ``loss_G`` (binary cross-entropy, nats), ``D_x``, ``D_G_z1`` (D's mean probability
        "real" for the real and the fake batch before D's update) and ``D_G_z2`` (for the fake
        batch after it).

    Raises
    ------
    FileNotFoundError
        When the log does not exist.
    """
    return pd.read_csv(path, on_bad_lines="skip")


# ------------------------------------------------------------------ checkpoints on resume


def load_resume_state(paths: dict[str, Path], arch: Architecture) -> tuple[dict | None, Path | None]:
    """Newest loadable checkpoint (last, else previous with a warning); architecture must match.

    Returns ``(state, path)``, or ``(None, None)`` when there is no checkpoint.

    Raises
    ------
    CheckpointError
        When checkpoints exist but none can be loaded, or one is of another architecture.
    """
    errors = []
    for key in ("last", "previous"):
        path = paths[key]
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=3)
            continue
        check_architecture(state, arch, path)  # a wrong model is an error, not a fallback
        if errors:
            warnings.warn(f"resuming from {path} (iteration {state['iteration']}) because the newer checkpoint is unusable",
                          stacklevel=3)
        return state, path
    if errors:
        raise CheckpointError(
            "no usable checkpoint to resume from: " + " | ".join(errors)
            + " -- start fresh with resume=False (the old log and samples are replaced)"
        )
    return None, None


def clear_outputs(paths: dict[str, Path]) -> None:
    """Remove the checkpoints, samples and timings of an earlier run (a fresh start)."""
    for key in ("last", "previous", "timings"):
        paths[key].unlink(missing_ok=True)
    if paths["samples"].exists():
        for old_sample in paths["samples"].glob("iter_*"):
            old_sample.unlink()


# ------------------------------------------------------------------ summary, timings


def write_summary(path: Path, summary: TrainingSummary) -> Path:
    """Write ``training_summary.json`` atomically (strict JSON)."""
    return write_json(path, summary)


def append_timing(path: Path, call: TimedCall) -> TrainingTimings:
    """Add one call to ``timings.json``, dropping calls past its start (undone by a resume)."""
    calls: list[TimedCall] = []
    if path.exists():
        try:
            calls = json.loads(path.read_text()).get("calls", [])
        except (OSError, ValueError, AttributeError):
            calls = []
    calls = [c for c in calls if c.get("end_iteration", 0) <= call["start_iteration"]] + [call]
    timings = TrainingTimings(calls=calls, total_seconds=round(sum(c["seconds"] for c in calls), 3))
    write_json(path, timings)
    return timings


