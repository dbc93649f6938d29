"""Stage 04, building the reader study: a balanced, blinded case set drawn from the real and
synthetic patch stores, its key, and the designer's summary figures.

The files and their formats are described (and read) in :mod:`mammo_lib.reader_study.files`; the
reading side is :mod:`mammo_lib.reader_study.session` (driven by the rating page,
:mod:`mammo_lib.reader_study.rating_app`); the machine observers are :mod:`mammo_lib.reader_study.machine_observers`.

Reads ``patches/lesion.zarr`` and every generator's ``synthetic/<name>.zarr`` (+ manifests;
the DCGAN's is ``synthetic/synthetic.zarr``); the sample is drawn in
:mod:`mammo_lib.reader_study.sampling`. Writes
``reader_study/case_set/``, ``reader_study/key/``, an empty ``reader_study/ratings/``,
``reader_study/figures/*.png`` and the build time in ``reader_study/timings.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import __version__ as APP_VERSION
from mammo_lib import rating_scale
from mammo_lib.clock import now_iso
from mammo_lib.fileio import atomic_write_text
from mammo_lib.patch_store import open_patch_store
from mammo_lib.reader_study.files import (
    CaseSet,
    ReaderStudyError,
    StudyJson,
    default_case_set_dir,
    load_key,
    open_case_set,
    ratings_table,
    study_paths,
)
from mammo_lib.reader_study.sampling import (  # noqa: F401  (draw_sample, CaseSample: re-exported)
    CaseSample,
    StudySample,
    draw_generator_sample,
    draw_sample,
    opaque_ids,
)
from mammo_lib.rng import case_ids_stream
from mammo_lib.run_folder import generator_of_store, lesion_store_path, synthetic_stores
from mammo_lib.sources.lesion_classes import (
    class_counts_text,
    normalise_lesion_classes,
    select_lesion_rows,
)
from mammo_lib.timings import update_timings

DEFAULT_DISPLAY_SCALE = 4  # 128 px patches are shown as 512 px images


def patch_png_bytes(patch: np.ndarray, display_scale: int = 1) -> bytes:
    """Encode a patch as an 8-bit grey PNG, upscaled by an integer factor (nearest neighbour).

    Parameters
    ----------
    patch : uint8 array, shape (h, w)
    display_scale : int
        Screen pixels per patch pixel (>= 1).

    Returns
    -------
    bytes
        The PNG, shape (h * display_scale, w * display_scale).
    """
    from PIL import Image

    arr = np.asarray(patch, dtype=np.uint8)
    if display_scale > 1:
        arr = np.repeat(np.repeat(arr, display_scale, axis=0), display_scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def read_png(path: str | os.PathLike) -> np.ndarray:
    """A PNG as a uint8 grey array, shape (h, w)."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


# --------------------------------------------------------------------------- sampling
# (drawn in mammo_lib.reader_study.sampling; re-exported here, where notebooks and tests used them)
def _source_fingerprint(stores: Sequence) -> str:
    h = hashlib.sha256()
    for store in stores:
        h.update("|".join(store.manifest["checksum"].astype(str)).encode())
    return h.hexdigest()[:16]


def machine_ratings_only(path: Path) -> bool:
    """True when every complete line of a ratings file comes from a machine observer."""
    kinds = set()
    for line in path.read_text(errors="replace").splitlines():
        try:
            kinds.add(json.loads(line).get("reader_kind"))
        except (json.JSONDecodeError, AttributeError):
            continue
    return kinds == {"machine"}


# --------------------------------------------------------------------------- building
def _sample_rows(real, synthetic: dict, classes, n_real, n_synthetic, n_practice, seed, shrink_to_fit,
                 min_held_out) -> StudySample:
    real_rows = select_lesion_rows(real.manifest, classes, real.path, purpose="for the real cases")
    try:
        sample = draw_generator_sample(len(real_rows), {g: len(st) for g, st in synthetic.items()}, n_real,
                                       n_synthetic, n_practice, seed, shrink_to_fit=shrink_to_fit,
                                       min_held_out=min_held_out)
    except ReaderStudyError as exc:
        if classes is None:
            raise
        raise ReaderStudyError(
            f"{exc} (real patches: only lesion_classes={classes} of {real.path}, which holds "
            f"{class_counts_text(real.manifest)})"
        ) from exc
    if classes is not None:  # positions among the selected rows -> rows of the real store
        sample.real_cases = real_rows[sample.real_cases]
        sample.real_practice = real_rows[sample.real_practice]
        sample.real_held_out = real_rows[sample.real_held_out]
    return sample


def _existing_case_set(case_set_dir: Path, key_dir: Path, ratings_dir: Path, request: dict) -> CaseSet | None:
    """The existing case set when it was built from ``request``; otherwise clear the way for a
    new one (machine ratings removed) or refuse (human ratings, or ratings without a key)."""
    if not (case_set_dir / "study.json").is_file():
        return None
    existing = json.loads((case_set_dir / "study.json").read_text())
    if existing.get("request") == request and (key_dir / "key.csv").is_file():
        return open_case_set(case_set_dir)
    rated = sorted(ratings_dir.glob("*.jsonl")) if ratings_dir.is_dir() else []
    if rated and existing.get("request") == request:
        raise ReaderStudyError(
            f"case set {case_set_dir} has ratings but no key at {key_dir / 'key.csv'}: "
            "restore the key folder from your backup (a new case set would orphan the ratings)"
        )
    human = [p for p in rated if not machine_ratings_only(p)]
    if human:
        raise ReaderStudyError(
            f"{case_set_dir} already holds a different case set that human readers rated "
            f"({', '.join(p.name for p in human)}); keep those ratings and build the new case set "
            "elsewhere: another run folder (--name) or another case_set_dir"
        )
    for path in rated:  # machine observers' ratings are regenerated with the new case set
        warnings.warn(f"removing {path.name}: machine-observer ratings of the previous case set", stacklevel=3)
        path.unlink()
    return None


def _parts(sample: StudySample, real, synthetic: dict, part: str) -> list[tuple[str, object, str, int]]:
    """(truth, store, generator, row) of one part ("cases", "practice", "held_out"): real rows
    first, then each generator's in study order (the order ids are drawn in)."""
    real_rows = {"cases": sample.real_cases, "practice": sample.real_practice, "held_out": sample.real_held_out}[part]
    out = [("real", real, "", int(i)) for i in real_rows]
    for g, rows in sample.synthetic.items():
        out += [("synthetic", synthetic[g], g, int(i)) for i in getattr(rows, part)]
    return out


def _write_cases(tmp_cases: Path, tmp_key: Path, ids, sample: StudySample, real, synthetic: dict,
                 display_scale) -> None:
    case_rows, key_rows = [], []
    for case_id, (t, store, generator, row) in zip(ids, _parts(sample, real, synthetic, "cases"), strict=True):
        image = f"cases/{case_id}.png"
        (tmp_cases / image).write_bytes(patch_png_bytes(store.load([row])[0], display_scale))
        case_rows.append({"case_id": case_id, "image": image})
        key_rows.append({"case_id": case_id, "truth": t, "store": store.path.name,
                         "patch_id": str(store.manifest["patch_id"].iloc[row]), "generator": generator})
    pd.DataFrame(case_rows).sort_values("case_id").to_csv(tmp_cases / "cases.csv", index=False)
    pd.DataFrame(key_rows).sort_values("case_id").to_csv(tmp_key / "key.csv", index=False)


def _write_practice(tmp_cases: Path, tmp_key: Path, rng, sample: StudySample, real, synthetic: dict,
                    display_scale) -> list[str]:
    prac = _parts(sample, real, synthetic, "practice")
    order = rng.permutation(len(prac)) if prac else []
    rows = []
    for k, j in enumerate(order):
        t, store, generator, row = prac[int(j)]
        pid = f"p{k + 1:02d}"
        image = f"practice/{pid}.png"
        (tmp_cases / image).write_bytes(patch_png_bytes(store.load([row])[0], display_scale))
        rows.append({"practice_id": pid, "image": image, "truth": t, "store": store.path.name,
                     "patch_id": str(store.manifest["patch_id"].iloc[row]), "generator": generator})
    df = pd.DataFrame(rows, columns=["practice_id", "image", "truth", "store", "patch_id", "generator"])
    df[["practice_id", "image", "truth"]].to_csv(tmp_cases / "practice" / "practice.csv", index=False)
    df.to_csv(tmp_key / "practice_sources.csv", index=False)  # provenance lives with the key
    held = pd.DataFrame([{"store": st.path.name, "row": row, "generator": g}
                         for _, st, g, row in _parts(sample, real, synthetic, "held_out")],
                        columns=["store", "row", "generator"])
    held.to_csv(tmp_key / "held_out.csv", index=False)
    return [r["practice_id"] for r in rows]


def open_generator_stores(run_dir: str | os.PathLike, synthetic_store: str | os.PathLike | None = None,
                          generator_stores: Mapping[str, str | os.PathLike] | None = None) -> dict:
    """The synthetic stores of a reader study, opened.

    Parameters
    ----------
    run_dir : path
    synthetic_store : path, optional
        One store: one generator, named "dcgan" when it is the DCGAN's ``synthetic.zarr``, else
        by its folder stem.
    generator_stores : mapping of str to path, optional
        Generator name -> store (wins over ``synthetic_store``).

    Returns
    -------
    dict
        Generator name -> :class:`mammo_lib.patch_store.PatchStore`, in study order (default:
        every store of :func:`mammo_lib.run_folder.synthetic_stores`, the DCGAN first).

    Raises
    ------
    FileNotFoundError
        If the run has no synthetic store and none is given.
    PatchStoreError
        If a store cannot be opened.
    """

    if generator_stores is None and synthetic_store is not None:
        path = Path(synthetic_store)
        name = generator_of_store(path.name)
        generator_stores = {name: path}
    if generator_stores is None:
        generator_stores = synthetic_stores(run_dir)
    return {str(g): open_patch_store(p) for g, p in generator_stores.items()}


def _swap_in(pairs: Sequence[tuple[Path, Path]]) -> None:
    for tmp, final in pairs:
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)


def build_case_set(
    run_dir: str | os.PathLike, n_real: int = 75, n_synthetic: int = 75, n_practice: int = 0,
    seed: int = 0, case_set_dir: str | os.PathLike | None = None,
    display_scale: int = DEFAULT_DISPLAY_SCALE, shrink_to_fit: bool = False, min_held_out: int = 0,
    real_store: str | os.PathLike | None = None, synthetic_store: str | os.PathLike | None = None,
    lesion_classes: list[str] | None = None, generator_stores: Mapping[str, str | os.PathLike] | None = None,
) -> CaseSet:
    """Draw a balanced sample from the real and synthetic stores and write a blinded case set.

    Half the scored cases are real, half synthetic (the paper's balance); with several generators
    the synthetic half is split evenly across them (:func:`mammo_lib.reader_study.sampling.split_evenly`,
    seeded from (seed, purpose)), ``key/key.csv`` records each case's generator (empty for real
    cases) and ``study.json`` lists the generators and their case counts. With one generator the
    case set is the one earlier versions built (same rows, ids and request).

    Real cases, real practice cases and the real held-out patches (the machine observers'
    training data) come only from the real patches whose ``lesion_class`` is in
    ``lesion_classes``. The filter is part of the request recorded in ``study.json``, so a
    changed filter gives a new case set. Rebuilding with the same parameters and inputs returns
    the existing case set unchanged (same bytes). A different existing case set is replaced only
    when nobody but machine observers has rated it (their ratings are removed, to be regenerated).

    Parameters
    ----------
    run_dir : path
        The run folder (stores from stage 01/02 unless given).
    n_real, n_synthetic, n_practice, seed, shrink_to_fit, min_held_out
        See :func:`draw_sample` (paper: 75 + 75).
    case_set_dir : path, optional
        Default ``<run_dir>/reader_study/case_set``; key and ratings are its siblings.
    display_scale : int
        Screen pixels per patch pixel in the case PNGs (default 4: 128 px -> 512 px).
    real_store, synthetic_store : path, optional
        Patch stores (default the run folder's ``patches/lesion.zarr`` and every
        ``synthetic/*.zarr``, :func:`mammo_lib.run_folder.synthetic_stores`); one
        ``synthetic_store`` is one generator.
    lesion_classes : list of str, optional
        Real cases only of these classes (None: every class; the paper used ``["mass"]``).
    generator_stores : mapping of str to path, optional
        Generator name -> synthetic store, in study order (overrides ``synthetic_store``).

    Returns
    -------
    CaseSet

    Raises
    ------
    ReaderStudyError
        If the stores are too small (see :func:`mammo_lib.reader_study.sampling.draw_generator_sample`),
        there are fewer synthetic cases than generators, or the folder holds a different case set
        that humans rated, or ratings without a key.
    FileNotFoundError
        If the run has no synthetic store (:func:`mammo_lib.run_folder.synthetic_stores`).
    LesionClassError
        If a lesion class is unknown (:mod:`mammo_lib.sources.lesion_classes`).
    """
    case_set_dir = Path(case_set_dir) if case_set_dir else default_case_set_dir(run_dir)
    case_set_dir, key_dir, ratings_dir = study_paths(case_set_dir)
    real = open_patch_store(real_store or lesion_store_path(run_dir))
    synthetic = open_generator_stores(run_dir, synthetic_store, generator_stores)
    classes = normalise_lesion_classes(lesion_classes)
    sample = _sample_rows(real, synthetic, classes, n_real, n_synthetic, n_practice, seed, shrink_to_fit,
                          min_held_out)
    request = {
        "n_real_requested": n_real, "n_synthetic_requested": n_synthetic,
        "n_practice": n_practice, "seed": seed, "display_scale": display_scale,
        "min_held_out": min_held_out, "source_fingerprint": _source_fingerprint([real, *synthetic.values()]),
    }
    if len(synthetic) > 1:  # absent for one generator, so one-generator case sets stay valid
        request["generators"] = list(synthetic)
    if classes is not None:  # absent for all classes, so case sets built before the filter stay valid
        request["lesion_classes"] = classes
    existing = _existing_case_set(case_set_dir, key_dir, ratings_dir, request)
    if existing is not None:
        return existing
    rng = case_ids_stream(seed)
    ids = opaque_ids(rng, len(sample.real_cases) + sample.n_synthetic)
    case_set_id = "cs-" + hashlib.sha256(json.dumps([request, ids]).encode()).hexdigest()[:12]

    # write into temporary folders, then swap them in (a killed build leaves the old set intact)
    tmp_cases, tmp_key = case_set_dir.with_name(".case_set.tmp"), key_dir.with_name(".key.tmp")
    for tmp in (tmp_cases, tmp_key):
        shutil.rmtree(tmp, ignore_errors=True)
    (tmp_cases / "cases").mkdir(parents=True)
    (tmp_cases / "practice").mkdir()
    tmp_key.mkdir(parents=True)
    _write_cases(tmp_cases, tmp_key, ids, sample, real, synthetic, display_scale)
    practice_ids = _write_practice(tmp_cases, tmp_key, rng, sample, real, synthetic, display_scale)
    study: StudyJson = {
        "case_set_id": case_set_id, "n_real": int(len(sample.real_cases)),
        "n_synthetic": sample.n_synthetic, "seed": int(seed),
        "display_scale": int(display_scale), "patch_size": int(real.patch_size), "app_version": APP_VERSION,
        "practice_ids": practice_ids, "request": request, "lesion_classes": classes,
        "warnings": sample.warnings, "generators": list(synthetic),
        "n_synthetic_by_generator": {g: int(len(rows.cases)) for g, rows in sample.synthetic.items()},
    }
    atomic_write_text(tmp_cases / "study.json", json.dumps(study, indent=2))
    _swap_in(((tmp_key, key_dir), (tmp_cases, case_set_dir)))
    ratings_dir.mkdir(parents=True, exist_ok=True)
    update_timings(case_set_dir.parent, {"case_set_built_at": now_iso("milliseconds")})
    return open_case_set(case_set_dir)


# --------------------------------------------------------------------------- designer's summary
def case_set_text(case_set: CaseSet) -> str:
    """The case set described in Markdown, generated from its ``study.json``.

    Parameters
    ----------
    case_set : CaseSet

    Returns
    -------
    str
        Counts, practice cases, display scale, lesion classes, and each warning of the build
        (e.g. a sample shrunk to fit) once.
    """
    study = case_set.study
    classes = study.get("lesion_classes")
    scale = study.get("display_scale")
    text = (f"Case set **{case_set.case_set_id}**: {study['n_real']} real + {study['n_synthetic']} synthetic "
            f"scored cases, {len(study.get('practice_ids', []))} practice cases, display scale {scale} "
            f"(each patch pixel shown as {scale}x{scale} screen pixels); real cases from "
            f"{'the lesion classes ' + ', '.join(classes) if classes else 'every lesion class'}.")
    counts = study.get("n_synthetic_by_generator") or {}
    if len(counts) > 1:
        text += (f" The synthetic half is split evenly across {len(counts)} generators: "
                 + ", ".join(f"**{g}** ({n} cases)" for g, n in counts.items())
                 + "; each generator's cases are compared with the same real cases in stage 05.")
    elif counts:
        text += f" The synthetic cases come from the generator **{next(iter(counts))}**."
    for note in study.get("warnings", []):
        text += f"\n\n**Note:** {note}."
    return text


def case_set_balance(case_set: CaseSet) -> pd.DataFrame:
    """Real and synthetic patches per part of the study (reads the key: designer side only).

    Parameters
    ----------
    case_set : CaseSet

    Returns
    -------
    DataFrame, shape (1 + G, 3) for G > 1 generators, else (2, 3)
        Rows "real" and "synthetic" (one generator) or "real" and "synthetic: <generator>" per
        generator (several); columns "scored cases", "practice", "held out (machine training)"
        (patch counts, int).

    Raises
    ------
    RatingsError
        If the key is missing or does not match the case set.
    """
    key = load_key(case_set)
    key_dir = case_set.key_path.parent
    held = pd.read_csv(key_dir / "held_out.csv", dtype={"store": str})
    practice = pd.read_csv(key_dir / "practice_sources.csv", dtype=str)
    generators = case_set.study.get("generators") or []
    label = dict(zip(key["store"], key["truth"], strict=False))
    rows = ["real", "synthetic"]
    if len(generators) > 1:
        label = {st: (t if t == "real" else f"synthetic: {g}")
                 for st, t, g in zip(key["store"], key["truth"], key["generator"], strict=True)}
        rows = ["real"] + [f"synthetic: {g}" for g in generators]
    return pd.DataFrame({
        "scored cases": key["store"].map(label).value_counts(),
        "practice": practice["store"].map(label).value_counts(),
        "held out (machine training)": held["store"].map(label).value_counts(),
    }).reindex(rows).fillna(0).astype(int).rename_axis(None)


def option_counts(case_set: CaseSet) -> pd.DataFrame:
    """How often each reader gave each option (last answer per case).

    Parameters
    ----------
    case_set : CaseSet

    Returns
    -------
    DataFrame, shape (n_readers, 6)
        Index reader; columns "<option> <label>" for options 1-6 (case counts, int).
    """
    table = ratings_table(case_set)
    options = [o for o, _, _ in rating_scale.OPTIONS]
    counts = (table.groupby(["reader", "option"]).size().unstack(fill_value=0)
              .reindex(columns=options, fill_value=0))
    counts.columns = [f"{o} {rating_scale.OPTION_LABEL[o]}" for o in counts.columns]
    return counts


def ratings_summary(case_set: CaseSet) -> pd.DataFrame:
    """Per reader so far: how many cases they rated.

    Parameters
    ----------
    case_set : CaseSet

    Returns
    -------
    DataFrame
        reader, reader_kind, cases_rated, revised (answers revised), of (cases in the set).

    Raises
    ------
    RatingsError
        If a ratings file breaks the format.
    """
    table = ratings_table(case_set)
    summary = (table.groupby(["reader", "reader_kind"])
               .agg(cases_rated=("case_id", "nunique"), revised=("revised", "sum")).reset_index())
    summary["of"] = len(case_set.case_ids)
    return summary
