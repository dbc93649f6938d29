"""Machine observers of the reader study (stage 04): classifiers trained on held-out real and
synthetic patches (never the case-set patches) that rate every case on the six-option scale,
written as ratings files with ``reader_kind = "machine"`` in exactly a human reader's format.

Reads the case set, its key (``key/key.csv``, ``key/held_out.csv``) and the patch stores;
appends to ``ratings/<observer>.jsonl`` and records its run time in ``reader_study/timings.json``.
Machine ratings carry no wall-clock stamps (``shown_at``/``answered_at`` are null), so a rerun
with the same seed writes identical bytes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import rating_scale
from mammo_lib.patch_store import open_patch_store
from mammo_lib.run_folder import lesion_store_path, synthetic_store_path
from mammo_lib.study_files import (
    CaseSet,
    RatingsWriter,
    ReaderStudyError,
    load_key,
    make_record,
    read_ratings,
    update_timings,
    validate_reader_id,
)

DEFAULT_MACHINE_OBSERVERS = ("machine-pixels", "machine-spectrum")


def patch_features(patches: np.ndarray, kind: str) -> np.ndarray:
    """Simple features of patches for the machine observers.

    Parameters
    ----------
    patches : uint8 array, shape (n, size, size)
    kind : {"pixels", "spectrum"}
        ``pixels``: the patch block-averaged to 16x16 (what the image looks like);
        ``spectrum``: radially averaged log power spectrum + grey-level histogram + gradient
        statistics (how its texture looks; GAN upsampling leaves traces in the spectrum).

    Returns
    -------
    float32 array, shape (n, n_features)

    Raises
    ------
    ReaderStudyError
        If ``kind`` is unknown.
    """
    x = np.asarray(patches, dtype=np.float32) / 255.0
    n, size, _ = x.shape
    if kind == "pixels":
        b = max(1, size // 16)
        s = (size // b) * b
        small = x[:, :s, :s].reshape(n, s // b, b, s // b, b).mean(axis=(2, 4))
        return small.reshape(n, -1)
    if kind == "spectrum":
        centred = x - x.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fftshift(np.fft.fft2(centred), axes=(1, 2))) ** 2
        yy, xx = np.indices((size, size))
        radius = np.hypot(yy - size / 2, xx - size / 2)
        n_bins = max(2, min(16, size // 4))
        bins = np.minimum((radius / (size / 2) * n_bins).astype(int), n_bins - 1)
        radial = np.stack([np.log1p(power[:, bins == k].mean(axis=1))
                           for k in range(n_bins) if np.any(bins == k)], axis=1)
        hist = np.stack([np.histogram(p, bins=16, range=(0, 1))[0] for p in x]) / (size * size)
        gy, gx = np.gradient(x, axis=(1, 2))
        grad = np.hypot(gx, gy)
        stats = np.stack([x.mean((1, 2)), x.std((1, 2)), grad.mean((1, 2)), grad.std((1, 2))], axis=1)
        return np.concatenate([radial, hist, stats], axis=1)
    raise ReaderStudyError(f"unknown feature kind {kind!r}; use 'pixels' or 'spectrum'")


MACHINE_FEATURES = {"machine-pixels": "pixels", "machine-spectrum": "spectrum"}


@dataclass
class MachineObserverResult:
    """What one machine observer did: training set sizes and accuracy, ratings written."""

    reader: str
    ratings_path: Path
    n_train_real: int
    n_train_synthetic: int
    train_accuracy: float
    written: int
    note: str = ""


def _held_out_rows(case_set: CaseSet, real, synthetic) -> tuple[np.ndarray, np.ndarray]:
    held = pd.read_csv(case_set.key_path.parent / "held_out.csv", dtype={"store": str})
    return (held.loc[held["store"] == real.path.name, "row"].to_numpy(int),
            held.loc[held["store"] == synthetic.path.name, "row"].to_numpy(int))


def _key_patches(todo: pd.DataFrame, stores: dict) -> np.ndarray:
    patches = []
    for store_name, patch_id in zip(todo["store"], todo["patch_id"], strict=True):
        store = stores.get(store_name)
        if store is None:
            raise ReaderStudyError(f"the key names store {store_name!r}, which is not an input store "
                                   f"({sorted(stores)})")
        row = np.flatnonzero(store.manifest["patch_id"].to_numpy() == patch_id)
        if len(row) != 1:
            raise ReaderStudyError(f"patch {patch_id!r} of the key is not in {store.path}")
        patches.append(store.load([int(row[0])])[0])
    return np.stack(patches)


def run_machine_observer(
    case_set: CaseSet,
    run_dir: str | os.PathLike,
    reader: str = "machine-pixels",
    seed: int = 0,
    min_train_per_class: int = 5,
    real_store: str | os.PathLike | None = None,
    synthetic_store: str | os.PathLike | None = None,
) -> MachineObserverResult:
    """Train a classifier on held-out patches and rate every case like a reader.

    A logistic regression on :func:`patch_features` learns P(real) from the real and synthetic
    patches that are in neither the cases nor the practice set; each case's probability is
    mapped to the nearest of the six options and appended to ``ratings/<reader>.jsonl`` with
    ``reader_kind="machine"``. Cases already rated in that file are not rated again (a rerun adds
    nothing, and nothing is overwritten).

    Parameters
    ----------
    case_set : CaseSet
    run_dir : path
        The run folder (patch stores, unless given).
    reader : {"machine-pixels", "machine-spectrum"}
    seed : int
        Seed of the classifier.
    min_train_per_class : int
        Fewest held-out patches per class to train on.
    real_store, synthetic_store : path, optional

    Returns
    -------
    MachineObserverResult

    Raises
    ------
    ReaderStudyError
        If the observer is unknown, too few held-out patches remain, or the key names a store or
        patch that is not in the inputs.
    RatingsError
        If the key or the observer's ratings file is broken.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    if reader not in MACHINE_FEATURES:
        raise ReaderStudyError(f"unknown machine observer {reader!r}; choose from {sorted(MACHINE_FEATURES)}")
    validate_reader_id(reader)
    key = load_key(case_set)
    real = open_patch_store(real_store or lesion_store_path(run_dir))
    synthetic = open_patch_store(synthetic_store or synthetic_store_path(run_dir))
    tr_real, tr_syn = _held_out_rows(case_set, real, synthetic)
    if min(len(tr_real), len(tr_syn)) < min_train_per_class:
        raise ReaderStudyError(
            f"machine observer {reader}: only {len(tr_real)} real and {len(tr_syn)} synthetic "
            f"held-out patches remain outside the case set (need {min_train_per_class} of each): "
            "generate more synthetic patches / extract more lesions, or draw fewer cases"
        )
    kind = MACHINE_FEATURES[reader]
    x_train = np.concatenate([patch_features(real.load(tr_real), kind),
                              patch_features(synthetic.load(tr_syn), kind)])
    y_train = np.r_[np.ones(len(tr_real)), np.zeros(len(tr_syn))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced",
                                                               max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    train_acc = float(model.score(x_train, y_train))

    path = case_set.ratings_path(reader)
    done = read_ratings(path, case_set).last_per_case()
    todo = key.loc[~key["case_id"].isin(done)].sort_values("case_id")
    if len(todo):
        patches = _key_patches(todo, {real.path.name: real, synthetic.path.name: synthetic})
        prob_real = model.predict_proba(patch_features(patches, kind))[:, 1]
        writer = RatingsWriter(path)
        for case_id, p in zip(todo["case_id"], prob_real, strict=True):
            writer.append(make_record(reader, "machine", case_set.case_set_id, case_id,
                                      rating_scale.value_to_option(float(p)), None, None))
    update_timings(case_set.case_set_dir.parent / "timings.json",
                   {f"{reader}_seconds": round(time.perf_counter() - started, 3)})
    note = "" if len(todo) else f"{path.name} already rates every case; nothing added"
    return MachineObserverResult(reader, path, len(tr_real), len(tr_syn), train_acc, len(todo), note)


def run_machine_observers(case_set: CaseSet, run_dir: str | os.PathLike,
                          readers=DEFAULT_MACHINE_OBSERVERS, seed: int = 0) -> pd.DataFrame:
    """Run several machine observers; one that cannot run is skipped with the reason.

    Parameters
    ----------
    case_set : CaseSet
    run_dir : path
    readers : sequence of str
        Names in :data:`MACHINE_FEATURES`.
    seed : int

    Returns
    -------
    DataFrame
        One row per observer: reader, trained on real / synthetic (patches), training accuracy,
        ratings written, file (name), note (the reason when skipped).
    """
    rows = []
    for reader in readers:
        try:
            r = run_machine_observer(case_set, run_dir, reader, seed=seed)
        except ReaderStudyError as exc:
            rows.append({"reader": reader, "note": f"skipped: {exc}"})
            continue
        rows.append({"reader": r.reader, "trained on real": r.n_train_real,
                     "trained on synthetic": r.n_train_synthetic,
                     "training accuracy": round(r.train_accuracy, 3), "ratings written": r.written,
                     "file": r.ratings_path.name, "note": r.note})
    return pd.DataFrame(rows, columns=["reader", "trained on real", "trained on synthetic", "training accuracy",
                                       "ratings written", "file", "note"])
