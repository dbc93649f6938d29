"""Machine observers of the reader study (stage 04): classifiers trained on held-out real and
synthetic patches (never the case-set patches) that rate every case on the six-option scale,
written as ratings files with ``reader_kind = "machine"`` in exactly a human reader's format.

Each observer is trained per generator: real patches against ONE generator's held-out patches
(:func:`machine_reader_id` names it; with several generators ``machine-pixels-<generator>``),
and rates every case of the case set. ``machine-pixels`` and ``machine-spectrum`` are logistic
regressions on simple features (:func:`patch_features`); ``machine-cnn`` is stage 03's
two-sample-test network trained on the held-out patches (:mod:`mammo_lib.reader_study.machine_cnn`).

Reads the case set, its key (``key/key.csv``, ``key/held_out.csv``) and the patch stores;
appends to ``ratings/<reader id>.jsonl`` and records its run time in ``reader_study/timings.json``
(``<reader id>_seconds``; ``machine-cnn`` also ``<reader id>_cpu_seconds``).
Machine ratings carry no wall-clock stamps (``shown_at``/``answered_at`` are null), so a rerun
with the same seed writes identical bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import rating_scale, spectrum
from mammo_lib.patch_store import open_patch_store
from mammo_lib.reader_study import machine_cnn
from mammo_lib.reader_study.case_set import open_generator_stores
from mammo_lib.reader_study.files import (
    CaseSet,
    RatingsWriter,
    ReaderStudyError,
    load_case_set,
    make_record,
    read_ratings,
    validate_reader_id,
)
from mammo_lib.reader_study.machine_cnn import CNN_OBSERVER
from mammo_lib.run_folder import lesion_store_path
from mammo_lib.timings import update_timings

DEFAULT_MACHINE_OBSERVERS = ("machine-pixels", "machine-spectrum")


def patch_features(patches: np.ndarray, kind: str) -> np.ndarray:
    """Simple features of patches for the machine observers.

    Parameters
    ----------
    patches : uint8 array, shape (n, size, size)
    kind : {"pixels", "spectrum"}
        ``pixels``: the patch block-averaged to 16x16 (what the image looks like);
        ``spectrum``: radially averaged log power spectrum (``log1p`` of the mean power in
        each non-empty band of :func:`mammo_lib.spectrum.band_index`, max(2, min(16, size // 4))
        bands) + grey-level histogram + gradient statistics (how its texture looks; GAN
        upsampling leaves traces in the spectrum, Durall et al., CVPR 2020).

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
        n_bins = max(2, min(16, size // 4))
        bins = spectrum.band_index(size, n_bins)
        radial = np.stack([np.log1p(power[:, bins == k].mean(axis=1))
                           for k in range(n_bins) if np.any(bins == k)], axis=1)
        hist = np.stack([np.histogram(p, bins=16, range=(0, 1))[0] for p in x]) / (size * size)
        gy, gx = np.gradient(x, axis=(1, 2))
        grad = np.hypot(gx, gy)
        stats = np.stack([x.mean((1, 2)), x.std((1, 2)), grad.mean((1, 2)), grad.std((1, 2))], axis=1)
        return np.concatenate([radial, hist, stats], axis=1)
    raise ReaderStudyError(f"unknown feature kind {kind!r}; use 'pixels' or 'spectrum'")


MACHINE_FEATURES = {"machine-pixels": "pixels", "machine-spectrum": "spectrum"}
MACHINE_OBSERVERS = (*MACHINE_FEATURES, CNN_OBSERVER)


def machine_reader_id(observer: str, generator: str, generators: Sequence[str]) -> str:
    """The reader id (and ratings file name) of ``observer`` trained against ``generator``.

    With one generator it is the observer's name (``machine-pixels``, as before generators were
    named); with several, ``<observer>-<generator>`` (``machine-pixels-dcgan``), so each ratings
    file says which generator's observer wrote it. A name longer than a reader id's 32
    characters keeps the start of the generator name and 6 hex digits of its SHA-256.

    Parameters
    ----------
    observer : str
        One of :data:`MACHINE_OBSERVERS`.
    generator : str
        The generator the observer was trained against.
    generators : sequence of str
        Every generator of the case set.

    Returns
    -------
    str
        A valid reader id (:func:`mammo_lib.reader_study.files.validate_reader_id`).
    """
    if len(generators) <= 1:
        return observer
    rid = f"{observer}-{generator}"
    if len(rid) > 32:
        digest = hashlib.sha256(generator.encode()).hexdigest()[:6]
        rid = f"{observer}-{generator[:32 - len(observer) - 8]}-{digest}"
    return rid


def machine_observer_ids(generators: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Every machine reader id of a case set -> (observer, generator it was trained against).

    Parameters
    ----------
    generators : sequence of str
        The case set's generators, in study order.

    Returns
    -------
    dict
        ``machine_reader_id(o, g, generators)`` -> (o, g) for every observer o of
        :data:`MACHINE_OBSERVERS` and generator g.
    """
    return {machine_reader_id(o, g, generators): (o, g) for g in generators for o in MACHINE_OBSERVERS}


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
    observer: str = ""
    generator: str = ""


def _held_out_rows(case_set: CaseSet, real_name: str, synthetic_name: str) -> tuple[np.ndarray, np.ndarray]:
    held = pd.read_csv(case_set.key_path.parent / "held_out.csv", dtype={"store": str})
    return (held.loc[held["store"] == real_name, "row"].to_numpy(int),
            held.loc[held["store"] == synthetic_name, "row"].to_numpy(int))


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


def _open_stores(run_dir, real_store, synthetic_store, generator_stores) -> tuple[object, dict]:
    """The real store and every synthetic store, keyed by folder name (the key's ``store``)."""

    real = open_patch_store(real_store or lesion_store_path(run_dir))
    synthetic = open_generator_stores(run_dir, synthetic_store, generator_stores)
    return real, {real.path.name: real, **{st.path.name: st for st in synthetic.values()}}


def _generator_store_name(keyed, generator: str | None) -> tuple[str, str]:
    """(generator, store folder name) the observer is trained against."""
    generators = keyed.generators
    if generator is None:
        if len(generators) != 1:
            raise ReaderStudyError(f"case set {keyed.case_set_dir} has {len(generators)} generators "
                                   f"({', '.join(generators)}): name the one to train against (generator=...)")
        generator = generators[0]
    stores = keyed.cases.loc[keyed.cases["generator"] == generator, "store"].unique()
    if generator not in generators or len(stores) != 1:
        raise ReaderStudyError(f"generator {generator!r} has no cases in case set {keyed.case_set_dir} "
                               f"(its generators: {', '.join(generators)})")
    return generator, str(stores[0])


def _check_unseen(case_set: CaseSet, keyed, stores: dict, held: dict[str, np.ndarray]) -> None:
    """Refuse held-out rows that are also a case or a practice patch (a damaged or edited key)."""
    shown = keyed.cases[["store", "patch_id"]]
    practice_file = case_set.key_path.parent / "practice_sources.csv"
    if practice_file.is_file():
        practice = pd.read_csv(practice_file, dtype=str, keep_default_na=False)
        shown = pd.concat([shown, practice[["store", "patch_id"]]])
    for store_name, rows in held.items():
        ids = set(stores[store_name].manifest["patch_id"].to_numpy()[rows])
        both = sorted(ids & set(shown.loc[shown["store"] == store_name, "patch_id"]))
        if both:
            raise ReaderStudyError(f"key/held_out.csv lists {len(both)} patch(es) of {store_name} that are also "
                                   f"cases or practice cases (e.g. {both[0]!r}): a machine observer must never "
                                   "train on a patch a reader sees; rebuild the case set")


def _fit_features(kind: str, real_patches: np.ndarray, synthetic_patches: np.ndarray, seed: int):
    """Logistic regression on :func:`patch_features`: (training accuracy, patches -> P(real))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = np.concatenate([patch_features(real_patches, kind), patch_features(synthetic_patches, kind)])
    y_train = np.r_[np.ones(len(real_patches)), np.zeros(len(synthetic_patches))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced",
                                                               max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    return float(model.score(x_train, y_train)), lambda p: model.predict_proba(patch_features(p, kind))[:, 1]


def run_machine_observer(
    case_set: CaseSet,
    run_dir: str | os.PathLike,
    reader: str = "machine-pixels",
    seed: int = 0,
    min_train_per_class: int = 5,
    real_store: str | os.PathLike | None = None,
    synthetic_store: str | os.PathLike | None = None,
    generator: str | None = None,
    generator_stores: Mapping[str, str | os.PathLike] | None = None,
    cnn_config=None,
    progress: bool = False,
) -> MachineObserverResult:
    """Train a classifier on held-out patches and rate every case like a reader.

    The classifier learns P(real) from the real patches and the patches of ONE generator that
    are in neither the cases nor the practice set: ``machine-pixels`` and ``machine-spectrum``
    are logistic regressions on :func:`patch_features`; ``machine-cnn`` is stage 03's observer
    network (:mod:`mammo_lib.reader_study.machine_cnn`; Lopez-Paz & Oquab, ICLR 2017), trained on equal
    numbers of held-out real and synthetic patches. Every case (of every generator) gets its
    probability mapped to the nearest of the six options, appended to ``ratings/<id>.jsonl``
    with ``reader_kind="machine"``; the id is :func:`machine_reader_id` (the observer's name
    with one generator, ``<observer>-<generator>`` with several). Cases already rated in that
    file are not rated again (a rerun adds nothing, and nothing is overwritten; ``machine-cnn``
    is then not even trained).

    Parameters
    ----------
    case_set : CaseSet
    run_dir : path
        The run folder (patch stores, unless given).
    reader : {"machine-pixels", "machine-spectrum", "machine-cnn"}
        The observer.
    seed : int
        Seed of the classifier (``machine-cnn``: of its balancing subsample and network streams).
    min_train_per_class : int
        Fewest held-out patches per class to train on.
    real_store, synthetic_store : path, optional
        As in :func:`mammo_lib.reader_study.case_set.build_case_set`.
    generator : str, optional
        The generator to train against (needed when the case set has several).
    generator_stores : mapping of str to path, optional
        Generator name -> synthetic store (default: every ``synthetic/*.zarr`` of the run).
    cnn_config : ObserverConfig, optional
        ``machine-cnn`` only: its network and recipe (default
        :func:`mammo_lib.reader_study.machine_cnn.reader_config`, stage 03's defaults).
    progress : bool
        Print one plain line per stage of work (``machine-cnn``: training started and done,
        cases rated).

    Returns
    -------
    MachineObserverResult
        ``train_accuracy`` is NaN when ``machine-cnn`` had nothing to rate and was not trained.

    Raises
    ------
    ReaderStudyError
        If the observer or generator is unknown (or not named with several generators), too few
        held-out patches remain (the message gives how many there are and are needed), a held-out
        patch is also a case or practice patch, the key names a store or patch that is not in
        the inputs, or (``machine-cnn``) the patches are smaller than its network takes.
    RatingsError
        If the key or the observer's ratings file is broken.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    if reader not in MACHINE_OBSERVERS:
        raise ReaderStudyError(f"unknown machine observer {reader!r}; choose from {sorted(MACHINE_OBSERVERS)}")
    keyed = load_case_set(case_set.case_set_dir, case_set.key_path)
    generator, store_name = _generator_store_name(keyed, generator)
    rid = validate_reader_id(machine_reader_id(reader, generator, keyed.generators))
    real, stores = _open_stores(run_dir, real_store, synthetic_store, generator_stores)
    if store_name not in stores:
        raise ReaderStudyError(f"the key names store {store_name!r} for generator {generator!r}, which is not an "
                               f"input store ({sorted(stores)})")
    tr_real, tr_syn = _held_out_rows(case_set, real.path.name, store_name)
    if min(len(tr_real), len(tr_syn)) < min_train_per_class:
        raise ReaderStudyError(
            f"machine observer {rid}: only {len(tr_real)} real and {len(tr_syn)} synthetic ({generator}) "
            f"held-out patches remain outside the case set (need {min_train_per_class} of each): "
            "generate more synthetic patches / extract more lesions, or draw fewer cases"
        )
    _check_unseen(case_set, keyed, stores, {real.path.name: tr_real, store_name: tr_syn})
    path = case_set.ratings_path(rid)
    done = read_ratings(path, case_set).last_per_case()
    key = keyed.cases
    todo = key.loc[~key["case_id"].isin(done)].sort_values("case_id")
    notes = []
    if reader == CNN_OBSERVER:
        fit = _fit_cnn(real, stores[store_name], tr_real, tr_syn, generator, cnn_config, seed, progress,
                       train=len(todo) > 0)
        n_real, n_syn, train_acc, prob_real, notes = fit
    else:
        n_real, n_syn = len(tr_real), len(tr_syn)
        train_acc, prob_real = _fit_features(MACHINE_FEATURES[reader], real.load(tr_real),
                                             stores[store_name].load(tr_syn), seed)
    if len(todo):
        values = prob_real(_key_patches(todo, stores))
        writer = RatingsWriter(path)
        for case_id, p in zip(todo["case_id"], values, strict=True):
            writer.append(make_record(rid, "machine", case_set.case_set_id, case_id,
                                      rating_scale.value_to_option(float(p)), None, None))
    timings = {f"{rid}_seconds": round(time.perf_counter() - started, 3)}
    if reader == CNN_OBSERVER:
        timings[f"{rid}_cpu_seconds"] = round(time.process_time() - cpu_started, 3)
    update_timings(case_set.case_set_dir.parent, timings)
    if progress and reader == CNN_OBSERVER:
        print(f"{rid}: rated {len(todo)} case(s)", flush=True)
    if not len(todo):
        notes.append(f"{path.name} already rates every case; nothing added")
    return MachineObserverResult(rid, path, n_real, n_syn, train_acc, len(todo), "; ".join(notes), reader,
                                 generator)


def _fit_cnn(real_store, synthetic_store, real_rows: np.ndarray, synthetic_rows: np.ndarray, generator: str,
             config, seed: int, progress: bool, train: bool):
    """``machine-cnn`` trained on balanced held-out patches: (n real, n synthetic, training accuracy,
    patches -> P(real), warnings); only the balanced subsample is loaded, and nothing is trained
    when ``train`` is False (nothing to rate)."""
    import warnings


    pick_real, pick_syn = machine_cnn.balanced_rows(len(real_rows), len(synthetic_rows), generator, seed)
    if not train:
        return len(pick_real), len(pick_syn), float("nan"), None, []
    cnn = machine_cnn.train_cnn_reader(real_store.load(real_rows[pick_real]),
                                       synthetic_store.load(synthetic_rows[pick_syn]), generator, config, seed,
                                       progress)
    for text in cnn.warnings:
        warnings.warn(text, stacklevel=3)
    return cnn.n_per_class, cnn.n_per_class, cnn.train_accuracy, cnn.prob_real, list(cnn.warnings)


def run_machine_observers(case_set: CaseSet, run_dir: str | os.PathLike,
                          readers=DEFAULT_MACHINE_OBSERVERS, seed: int = 0,
                          generator_stores: Mapping[str, str | os.PathLike] | None = None,
                          cnn_config=None, progress: bool = False) -> pd.DataFrame:
    """Run several machine observers, one per observer and generator; one that cannot run is
    skipped with the reason.

    Parameters
    ----------
    case_set : CaseSet
    run_dir : path
    readers : sequence of str
        Names in :data:`MACHINE_OBSERVERS`; each is trained once per generator of the case set.
    seed : int
    generator_stores : mapping of str to path, optional
        As in :func:`run_machine_observer`.
    cnn_config : ObserverConfig, optional
        ``machine-cnn``'s network and recipe, as in :func:`run_machine_observer`.
    progress : bool
        Print one plain line per observer and generator, and ``machine-cnn``'s stages of work.

    Returns
    -------
    DataFrame
        One row per (observer, generator): reader (its id), generator (trained against), trained
        on real / synthetic (patches), training accuracy, ratings written, file (name), note (the
        reason when skipped, or a warning such as the CPU limit cutting ``machine-cnn``'s training
        short).
    """
    generators = load_case_set(case_set.case_set_dir, case_set.key_path).generators
    rows = []
    for generator in generators:
        for reader in readers:
            if progress:
                print(f"machine observer {machine_reader_id(reader, generator, generators)} ...", flush=True)
            try:
                r = run_machine_observer(case_set, run_dir, reader, seed=seed, generator=generator,
                                         generator_stores=generator_stores, cnn_config=cnn_config,
                                         progress=progress)
            except ReaderStudyError as exc:
                if progress:
                    print(f"  skipped: {exc}", flush=True)
                rows.append({"reader": machine_reader_id(reader, generator, generators), "generator": generator,
                             "note": f"skipped: {exc}"})
                continue
            rows.append({"reader": r.reader, "generator": generator, "trained on real": r.n_train_real,
                         "trained on synthetic": r.n_train_synthetic,
                         "training accuracy": round(r.train_accuracy, 3), "ratings written": r.written,
                         "file": r.ratings_path.name, "note": r.note})
    return pd.DataFrame(rows, columns=["reader", "generator", "trained on real", "trained on synthetic",
                                       "training accuracy", "ratings written", "file", "note"])
