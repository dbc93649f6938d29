"""Reader-study files, part 1: names and paths, ``case_set/`` (study.json, cases.csv, practice)
and ``key/``; the timings file. The formats are described in :mod:`mammo_lib.reader_study.files`."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from mammo_lib.rating_scale import TRUTHS
from mammo_lib.rng import text_stream
from mammo_lib.run_folder import (
    generator_of_store,
    run_relative,  # noqa: F401 (re-exported by files/)
)

READER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
STUDY_DIRNAME = "reader_study"
CASE_SET_DIRNAME = "case_set"
KEY_DIRNAME = "key"
RATINGS_DIRNAME = "ratings"


class ReaderStudyError(ValueError):
    """Bad reader-study input; the message names the file and says what to do."""


class RatingsError(ReaderStudyError):
    """Ratings or case-set files that cannot be analysed; the message lists every problem found."""


class StudyJson(TypedDict, total=False):
    """``case_set/study.json``, written by :func:`mammo_lib.reader_study.case_set.build_case_set`.

    case_set_id: opaque id of the case set, ``cs-`` + 12 hex digits of a digest of the request
        and the case ids (ratings lines carry it). n_real, n_synthetic: scored cases per class.
    seed: the study seed (the readers' case orders derive from it). display_scale: screen pixels
        per patch pixel. patch_size: patch side in pixels. app_version: mammo_lib version.
    practice_ids: ids of the practice cases, in the order shown. request: the parameters and the
        source fingerprint the case set was built from (a rebuild with the same request returns
        it unchanged). lesion_classes: the real cases' lesion classes (None: every class).
    warnings: what the build said (e.g. a sample shrunk to fit). Wall-clock times are not here
        but in ``reader_study/timings.json``, so a rebuild writes identical bytes.
    generators: the generators whose patches are the synthetic cases, in study order (absent in
        case sets built before generators were named: one generator). n_synthetic_by_generator:
        generator -> scored synthetic cases (they sum to n_synthetic). Neither says which case
        comes from which generator: that is in ``key/key.csv`` only.
    """

    case_set_id: str
    n_real: int
    n_synthetic: int
    seed: int
    display_scale: int
    patch_size: int
    app_version: str
    practice_ids: list[str]
    request: dict
    lesion_classes: list[str] | None
    warnings: list[str]
    generators: list[str]
    n_synthetic_by_generator: dict[str, int]


# --------------------------------------------------------------------------- names and paths
def validate_reader_id(reader_id: str) -> str:
    """Return the reader id if it is 1-32 letters, digits, '_' or '-' (it names a file).

    Raises
    ------
    ReaderStudyError
        If the id is not a string of that form (surrounding spaces are stripped first).
    """
    if not isinstance(reader_id, str) or not READER_ID_PATTERN.match(reader_id.strip()):
        raise ReaderStudyError(
            f"reader id {reader_id!r} is not valid: use 1-32 letters, digits, '_' or '-' "
            "(for example R01 or dr_smith)"
        )
    return reader_id.strip()


def study_paths(case_set_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(case_set_dir, key_dir, ratings_dir): key and ratings are siblings of the case set."""
    case_set_dir = Path(case_set_dir)
    root = case_set_dir.parent
    return case_set_dir, root / KEY_DIRNAME, root / RATINGS_DIRNAME


def default_case_set_dir(run_dir: str | os.PathLike) -> Path:
    """The default case set folder of a run.

    Parameters
    ----------
    run_dir : path

    Returns
    -------
    Path
        ``<run_dir>/reader_study/case_set`` (it need not exist).
    """
    return Path(run_dir) / STUDY_DIRNAME / CASE_SET_DIRNAME


def default_ratings_dir(run_dir: str | os.PathLike) -> Path:
    """The default ratings folder of a run.

    Parameters
    ----------
    run_dir : path

    Returns
    -------
    Path
        ``<run_dir>/reader_study/ratings`` (it need not exist).
    """
    return Path(run_dir) / STUDY_DIRNAME / RATINGS_DIRNAME


def relative_text(text: str, run_dir: str | os.PathLike | None) -> str:
    """``text`` with every mention of the run folder's absolute path made relative to it (notes
    that name files, written to metrics.json)."""
    if run_dir is None:
        return text
    for prefix in {str(Path(run_dir).resolve()), str(Path(run_dir).absolute())}:
        text = text.replace(prefix + os.sep, "").replace(prefix, ".")
    return text


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from a SHA-256 of the parts (not Python's salted hash)."""
    return text_stream(*parts)


# --------------------------------------------------------------------------- the case set
@dataclass
class CaseSet:
    """The reading side's view of a case set: ids, images, practice cases. Never the key."""

    case_set_dir: Path
    study: dict
    cases: pd.DataFrame  # case_id, image
    practice: pd.DataFrame  # practice_id, image, truth

    @property
    def case_set_id(self) -> str:
        return str(self.study["case_set_id"])

    @property
    def case_ids(self) -> list[str]:
        return list(self.cases["case_id"])

    @property
    def seed(self) -> int:
        return int(self.study.get("seed", 0))

    @property
    def ratings_dir(self) -> Path:
        return study_paths(self.case_set_dir)[2]

    @property
    def key_path(self) -> Path:
        return study_paths(self.case_set_dir)[1] / "key.csv"

    def image_path(self, case_id: str) -> Path:
        row = self.cases.loc[self.cases["case_id"] == case_id]
        if row.empty:
            raise ReaderStudyError(f"case {case_id!r} is not in case set {self.case_set_dir}")
        return self.case_set_dir / str(row["image"].iloc[0])

    def image_bytes(self, case_id: str) -> bytes:
        """The PNG bytes of a case (ReaderStudyError naming the file when it is missing)."""
        path = self.image_path(case_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ReaderStudyError(
                f"case image {path} is missing: the case set {self.case_set_dir} is incomplete; "
                "copy it again or rebuild it (ratings already given are kept)"
            ) from None

    def practice_image_bytes(self, practice_id: str) -> bytes:
        row = self.practice.loc[self.practice["practice_id"] == practice_id]
        path = self.case_set_dir / str(row["image"].iloc[0])
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ReaderStudyError(f"practice image {path} is missing: rebuild the case set") from None

    def practice_truth(self, practice_id: str) -> str:
        return str(self.practice.loc[self.practice["practice_id"] == practice_id, "truth"].iloc[0])

    def missing_images(self) -> list[Path]:
        paths = [self.case_set_dir / p for p in self.cases["image"]]
        paths += [self.case_set_dir / p for p in self.practice["image"]]
        return [p for p in paths if not p.is_file()]

    def reader_order(self, reader_id: str) -> list[str]:
        """This reader's own case order, fixed by (study seed, case set id, reader id)."""
        reader_id = validate_reader_id(reader_id)
        rng = stable_rng("order", self.seed, self.case_set_id, reader_id)
        ids = sorted(self.case_ids)
        return [ids[i] for i in rng.permutation(len(ids))]

    def ratings_path(self, reader_id: str) -> Path:
        return self.ratings_dir / f"{validate_reader_id(reader_id)}.jsonl"


def open_case_set(case_set_dir: str | os.PathLike, check_images: bool = True) -> CaseSet:
    """Open a case set for reading (never the key).

    Parameters
    ----------
    case_set_dir : path
        The ``case_set`` folder.
    check_images : bool
        Also check that every case and practice PNG exists.

    Returns
    -------
    CaseSet

    Raises
    ------
    ReaderStudyError
        If study.json or cases.csv is missing or unreadable, cases.csv lacks its columns, or (with
        ``check_images``) an image is missing.
    """
    case_set_dir = Path(case_set_dir)
    study_file = case_set_dir / "study.json"
    cases_file = case_set_dir / "cases.csv"
    if not study_file.is_file() or not cases_file.is_file():
        raise ReaderStudyError(
            f"{case_set_dir} is not a case set (no study.json/cases.csv): build it first with "
            "notebook 04 (reader_study.build_case_set)"
        )
    try:
        study = json.loads(study_file.read_text())
        str(study["case_set_id"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RatingsError(f"{study_file} has no readable 'case_set_id' ({exc!r})") from exc
    cases = pd.read_csv(cases_file, dtype=str, keep_default_na=False)
    if list(cases.columns[:2]) != ["case_id", "image"]:
        raise ReaderStudyError(f"{cases_file} must have columns case_id, image")
    practice_file = case_set_dir / "practice" / "practice.csv"
    if practice_file.is_file():
        practice = pd.read_csv(practice_file, dtype=str, keep_default_na=False)
    else:
        practice = pd.DataFrame(columns=["practice_id", "image", "truth"])
    cs = CaseSet(case_set_dir=case_set_dir, study=study, cases=cases, practice=practice)
    if check_images:
        missing = cs.missing_images()
        if missing:
            raise ReaderStudyError(
                f"case set {case_set_dir} lacks {len(missing)} image(s), e.g. {missing[0]}: "
                "copy the whole case_set folder again or rebuild it"
            )
    return cs


def _key_problems(key: pd.DataFrame, cases: pd.DataFrame, key_path: Path, cases_csv: Path) -> list[str]:
    problems = []
    if not {"case_id", "truth"} <= set(key.columns):
        return [f"{key_path}: missing column(s) {sorted({'case_id', 'truth'} - set(key.columns))}"]
    for df, path in ((cases, cases_csv), (key, key_path)):
        dup = df["case_id"][df["case_id"].duplicated()].unique()
        if len(dup):
            problems.append(f"{path}: case id(s) listed twice: {list(dup)[:10]}")
    bad_truth = sorted(set(key["truth"]) - set(TRUTHS))
    if bad_truth:
        problems.append(f"{key_path}: truth values {bad_truth} are not one of {TRUTHS}")
    only_cases = sorted(set(cases["case_id"]) - set(key["case_id"]))
    only_key = sorted(set(key["case_id"]) - set(cases["case_id"]))
    if only_cases:
        problems.append(f"{key_path}: no truth for {len(only_cases)} case(s) of {cases_csv}, e.g. {only_cases[:5]}")
    if only_key:
        problems.append(f"{key_path}: {len(only_key)} case(s) not in {cases_csv}, e.g. {only_key[:5]}; "
                        "are the key and the case set from the same study?")
    return problems


def load_key(case_set: CaseSet, key_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The truth of a case set (designer side: machine observers, stage 05).

    Parameters
    ----------
    case_set : CaseSet
    key_path : path, optional
        ``key.csv`` (default: ``key/key.csv`` beside the case set).

    Returns
    -------
    DataFrame
        ``case_id``, ``truth`` ("real"/"synthetic"), ``store``, ``patch_id`` and, in case sets
        built since generators were named, ``generator`` (empty for real cases) (strings).

    Raises
    ------
    RatingsError
        If the key is missing, lacks a column, lists a case twice, has a truth value other than
        real/synthetic, or does not list exactly the cases of the case set.
    """
    path = Path(key_path) if key_path is not None else case_set.key_path
    if not path.is_file():
        raise RatingsError(
            f"case set {case_set.case_set_dir} has no key at {path} (key.csv does not exist): its "
            "ratings cannot be scored; restore the key folder from your backup or build a new case set"
        )
    key = pd.read_csv(path, dtype=str, keep_default_na=False)
    problems = _key_problems(key, case_set.cases, path, case_set.case_set_dir / "cases.csv")
    if problems:
        raise RatingsError("case set and key do not match:\n" + "\n".join(problems))
    return key


@dataclass
class KeyedCaseSet:
    """A case set with its truth joined from the key (stage 05's view)."""

    case_set: CaseSet
    key_path: Path
    cases: pd.DataFrame  # case_id, image, truth, store, patch_id, generator ("" for real cases)

    @property
    def generators(self) -> list[str]:
        """The generators of the synthetic cases, in study order (study.json, else the key)."""
        listed = [str(g) for g in self.case_set.study.get("generators") or []]
        found = sorted(set(self.cases.loc[self.cases["truth"] == "synthetic", "generator"]))
        return [g for g in listed if g in found] + [g for g in found if g not in listed]

    @property
    def case_set_id(self) -> str:
        return self.case_set.case_set_id

    @property
    def case_set_dir(self) -> Path:
        return self.case_set.case_set_dir


def load_case_set(case_set_dir: str | os.PathLike, key_path: str | os.PathLike | None = None) -> KeyedCaseSet:
    """Open a case set (images not needed) and join the truth from its key.

    Parameters
    ----------
    case_set_dir : path
        The ``case_set`` folder.
    key_path : path, optional
        ``key.csv`` (default ``<case_set_dir>/../key/key.csv``).

    Returns
    -------
    KeyedCaseSet

    Raises
    ------
    RatingsError
        If study.json, cases.csv or key.csv does not exist, or the key does not match the cases
        (see :func:`load_key`).
    """
    case_set_dir = Path(case_set_dir)
    key_path = Path(key_path) if key_path is not None else study_paths(case_set_dir)[1] / "key.csv"
    for name in ("study.json", "cases.csv"):
        if not (case_set_dir / name).exists():
            raise RatingsError(f"{case_set_dir / name} does not exist: the case set's {name} is needed; run "
                               "notebook 04 (reader study) first or pass case_set_dir= pointing at a case set folder")
    case_set = open_case_set(case_set_dir, check_images=False)
    key = load_key(case_set, key_path)
    key_cols = [c for c in ("case_id", "truth", "store", "patch_id", "generator") if c in key.columns]
    merged = case_set.cases.merge(key[key_cols], on="case_id", how="left", suffixes=("", "_key"))
    if "generator" not in merged.columns:
        merged["generator"] = [_legacy_generator(t, st) for t, st in
                               zip(merged["truth"], merged.get("store", [""] * len(merged)), strict=True)]
    return KeyedCaseSet(case_set=case_set, key_path=key_path, cases=merged)


def _legacy_generator(truth: str, store: str) -> str:
    """The generator of a synthetic case in a key written before keys named it: the store's
    folder stem (the DCGAN's ``synthetic.zarr``: "dcgan")."""
    if truth != "synthetic":
        return ""

    return generator_of_store(store)


