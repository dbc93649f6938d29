"""Stage 04, the reader study: blinded case sets, per-reader orders, append-only ratings files,
the reading session state machine and the machine observer.

Folder layout (``study_root`` is ``<run_dir>/reader_study`` by default)::

  case_set/study.json       case_set_id, counts, seed, display scale, app version, practice ids
  case_set/cases.csv        case_id, image                (sorted by the opaque id: no order)
  case_set/cases/<id>.png   the patch, upscaled by ``display_scale`` (nearest neighbour)
  case_set/practice/        practice.csv (practice_id, image, truth) + PNGs: unscored, feedback
  key/key.csv               case_id, truth, store, patch_id  (designer side only)
  ratings/<reader>.jsonl    one JSON line per answer (mammo_lib.rating_scale), append-only

The reading side (:class:`CaseSet`, :class:`ReadingSession`, the rating app) only ever opens
``case_set/`` and ``ratings/``; the key is read by the machine observer and the ROC stage.
Every answer is appended, flushed and fsynced the moment it is given, so a crash, a closed tab
or a restarted kernel never loses one; the reader resumes at the first unanswered case.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import __version__ as APP_VERSION
from mammo_lib import rating_scale
from mammo_lib.fileio import atomic_write_text
from mammo_lib.lesion_classes import class_counts_text, normalise_lesion_classes, select_lesion_rows
from mammo_lib.patch_store import open_patch_store
from mammo_lib.run_folder import (
    lesion_store_path,
    stage_dir,
    synthetic_store_path,
)

READER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CASE_SET_DIRNAME = "case_set"
KEY_DIRNAME = "key"
RATINGS_DIRNAME = "ratings"
DEFAULT_DISPLAY_SCALE = 4  # 128 px patches are shown as 512 px images
DEFAULT_MACHINE_OBSERVERS = ("machine-pixels", "machine-spectrum")


class ReaderStudyError(ValueError):
    """Bad input to the reader study; the message names the file and says what to do."""


# --------------------------------------------------------------------------- small helpers
def now_iso() -> str:
    """UTC time with milliseconds, the timestamp format of ratings files."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def validate_reader_id(reader_id: str) -> str:
    """Return the reader id if it is 1-32 letters, digits, '_' or '-' (it names a file)."""
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
    return stage_dir(run_dir, "reader_study", create=False) / CASE_SET_DIRNAME


def patch_png_bytes(patch: np.ndarray, display_scale: int = 1) -> bytes:
    """Encode a uint8 patch as an 8-bit grey PNG, upscaled by an integer factor (nearest)."""
    from PIL import Image

    arr = np.asarray(patch, dtype=np.uint8)
    if display_scale > 1:
        arr = np.repeat(np.repeat(arr, display_scale, axis=0), display_scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def read_png(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def _rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded from a stable hash of the parts (not Python's salted hash)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------- sampling
@dataclass
class CaseSample:
    """Which store rows form the scored cases, the practice cases and the held-out rest."""

    real_cases: np.ndarray
    synthetic_cases: np.ndarray
    real_practice: np.ndarray
    synthetic_practice: np.ndarray
    real_held_out: np.ndarray
    synthetic_held_out: np.ndarray
    warnings: list[str] = field(default_factory=list)


def draw_sample(
    n_real_available: int,
    n_synthetic_available: int,
    n_real: int,
    n_synthetic: int,
    n_practice: int = 0,
    seed: int = 0,
    shrink_to_fit: bool = False,
    min_held_out: int = 0,
) -> CaseSample:
    """Balanced random sample of store rows.

    Practice cases (half real, half synthetic) and ``min_held_out`` patches per class are kept
    out of the scored sample. With ``shrink_to_fit`` a too-small store gives the largest
    balanced sample possible (with a warning); otherwise it is an error.
    """
    if n_real < 1 or n_synthetic < 1 or n_practice < 0 or min_held_out < 0:
        raise ReaderStudyError(
            f"case counts must be positive (n_real={n_real}, n_synthetic={n_synthetic}, "
            f"n_practice={n_practice}, min_held_out={min_held_out})"
        )
    prac_real = (n_practice + 1) // 2
    prac_syn = n_practice // 2
    room_real = n_real_available - prac_real - min_held_out
    room_syn = n_synthetic_available - prac_syn - min_held_out
    notes: list[str] = []
    if n_real > room_real or n_synthetic > room_syn:
        msg = (
            f"the stores hold {n_real_available} real and {n_synthetic_available} synthetic "
            f"patches; {n_real} + {n_synthetic} cases, {n_practice} practice cases and "
            f"{min_held_out} held-out patches per class do not fit"
        )
        if not shrink_to_fit:
            raise ReaderStudyError(
                msg + ": extract/generate more patches (notebooks 01/02) or ask for fewer cases"
            )
        n_each = min(n_real, n_synthetic, room_real, room_syn)
        if n_each < 1:
            raise ReaderStudyError(msg + ": not even one balanced pair is left")
        notes.append(msg + f"; using the most balanced sample possible: {n_each} + {n_each}")
        n_real = n_synthetic = n_each
    rng = np.random.default_rng(seed)
    perm_real = rng.permutation(n_real_available)
    perm_syn = rng.permutation(n_synthetic_available)
    return CaseSample(
        real_cases=np.sort(perm_real[:n_real]),
        synthetic_cases=np.sort(perm_syn[:n_synthetic]),
        real_practice=np.sort(perm_real[n_real:n_real + prac_real]),
        synthetic_practice=np.sort(perm_syn[n_synthetic:n_synthetic + prac_syn]),
        real_held_out=np.sort(perm_real[n_real + prac_real:]),
        synthetic_held_out=np.sort(perm_syn[n_synthetic + prac_syn:]),
        warnings=notes,
    )


def opaque_ids(rng: np.random.Generator, n: int, prefix: str = "c") -> list[str]:
    """``n`` distinct random hex ids (they reveal nothing about truth or source)."""
    ids: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        token = prefix + "".join(f"{b:02x}" for b in rng.integers(0, 256, size=5))
        if token not in ids:
            ids.add(token)
            out.append(token)
    return out


# --------------------------------------------------------------------------- case set
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
        return int(self.study["seed"])

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

    def missing_images(self) -> list[Path]:
        paths = [self.case_set_dir / p for p in self.cases["image"]]
        paths += [self.case_set_dir / p for p in self.practice["image"]]
        return [p for p in paths if not p.is_file()]

    def reader_order(self, reader_id: str) -> list[str]:
        """This reader's own case order, fixed by (study seed, case set id, reader id)."""
        reader_id = validate_reader_id(reader_id)
        rng = _rng_for("order", self.seed, self.case_set_id, reader_id)
        ids = sorted(self.case_ids)
        return [ids[i] for i in rng.permutation(len(ids))]

    def ratings_path(self, reader_id: str) -> Path:
        return self.ratings_dir / f"{validate_reader_id(reader_id)}.jsonl"


def open_case_set(case_set_dir: str | os.PathLike, check_images: bool = True) -> CaseSet:
    """Open a case set for reading (no key), with errors that name the folder."""
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
    except json.JSONDecodeError as exc:
        raise ReaderStudyError(f"{study_file} is not valid JSON: {exc}") from exc
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


def load_key(case_set: CaseSet) -> pd.DataFrame:
    """The truth of a case set (designer side: machine observer, ROC stage)."""
    path = case_set.key_path
    if not path.is_file():
        raise ReaderStudyError(
            f"case set {case_set.case_set_dir} has no key at {path}: its ratings cannot be "
            "scored; restore the key folder from your backup or build a new case set"
        )
    key = pd.read_csv(path, dtype=str, keep_default_na=False)
    if set(key["case_id"]) != set(case_set.case_ids):
        raise ReaderStudyError(f"{path} does not match the cases of {case_set.case_set_dir}")
    return key


def _source_fingerprint(stores: Sequence) -> str:
    h = hashlib.sha256()
    for store in stores:
        h.update("|".join(store.manifest["checksum"].astype(str)).encode())
    return h.hexdigest()[:16]


def _machine_ratings_only(path: Path) -> bool:
    """True when every complete line of a ratings file comes from a machine observer."""
    kinds = set()
    for line in path.read_text(errors="replace").splitlines():
        try:
            kinds.add(json.loads(line).get("reader_kind"))
        except (json.JSONDecodeError, AttributeError):
            continue
    return kinds == {"machine"}


def build_case_set(
    run_dir: str | os.PathLike,
    n_real: int = 75,
    n_synthetic: int = 75,
    n_practice: int = 0,
    seed: int = 0,
    case_set_dir: str | os.PathLike | None = None,
    display_scale: int = DEFAULT_DISPLAY_SCALE,
    shrink_to_fit: bool = False,
    min_held_out: int = 0,
    real_store: str | os.PathLike | None = None,
    synthetic_store: str | os.PathLike | None = None,
    lesion_classes: list[str] | None = None,
) -> CaseSet:
    """Draw a balanced sample from the real and synthetic stores and write a blinded case set.

    Real cases, real practice cases and the real held-out patches (the machine observers'
    training data) come only from the real patches whose ``lesion_class`` is in
    ``lesion_classes`` (None: every class; the paper used ``["mass"]``). The filter is part of
    the request recorded in ``study.json``, so a changed filter gives a new case set.

    Rebuilding with the same parameters and inputs returns the existing case set unchanged.
    A different existing case set is replaced only when nobody has rated it yet; otherwise
    this is an error (ratings must never be orphaned).
    """
    case_set_dir = Path(case_set_dir) if case_set_dir else default_case_set_dir(run_dir)
    case_set_dir, key_dir, ratings_dir = study_paths(case_set_dir)
    real = open_patch_store(real_store or lesion_store_path(run_dir))
    synthetic = open_patch_store(synthetic_store or synthetic_store_path(run_dir))
    classes = normalise_lesion_classes(lesion_classes)
    real_rows = select_lesion_rows(real.manifest, classes, real.path, purpose="for the real cases")
    try:
        sample = draw_sample(len(real_rows), len(synthetic), n_real, n_synthetic, n_practice, seed,
                             shrink_to_fit=shrink_to_fit, min_held_out=min_held_out)
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
    for note in sample.warnings:
        warnings.warn(note, stacklevel=2)
    request = {
        "n_real_requested": n_real, "n_synthetic_requested": n_synthetic,
        "n_practice": n_practice, "seed": seed, "display_scale": display_scale,
        "min_held_out": min_held_out, "source_fingerprint": _source_fingerprint([real, synthetic]),
    }
    if classes is not None:  # absent for all classes, so case sets built before the filter existed stay valid
        request["lesion_classes"] = classes
    if (case_set_dir / "study.json").is_file():
        existing = json.loads((case_set_dir / "study.json").read_text())
        if existing.get("request") == request and (key_dir / "key.csv").is_file():
            return open_case_set(case_set_dir)
        rated = sorted(ratings_dir.glob("*.jsonl")) if ratings_dir.is_dir() else []
        if rated and existing.get("request") == request:
            raise ReaderStudyError(
                f"case set {case_set_dir} has ratings but no key at {key_dir / 'key.csv'}: "
                "restore the key folder from your backup (a new case set would orphan the ratings)"
            )
        human = [p for p in rated if not _machine_ratings_only(p)]
        if human:
            raise ReaderStudyError(
                f"{case_set_dir} already holds a different case set that human readers rated "
                f"({', '.join(p.name for p in human)}); keep those ratings and build the new case set "
                "elsewhere: another run folder (--name) or another case_set_dir"
            )
        for path in rated:  # machine observers' ratings are regenerated with the new case set
            warnings.warn(f"removing {path}: machine-observer ratings of the previous case set", stacklevel=2)
            path.unlink()
    rng = np.random.default_rng([seed, 4])
    n_cases = len(sample.real_cases) + len(sample.synthetic_cases)
    ids = opaque_ids(rng, n_cases)
    truth = ["real"] * len(sample.real_cases) + ["synthetic"] * len(sample.synthetic_cases)
    stores = [real] * len(sample.real_cases) + [synthetic] * len(sample.synthetic_cases)
    rows = list(sample.real_cases) + list(sample.synthetic_cases)
    case_set_id = "cs-" + hashlib.sha256(
        json.dumps([request, ids]).encode()).hexdigest()[:12]

    # write into temporary folders, then swap them in (a killed build leaves the old set intact)
    tmp_cases, tmp_key = case_set_dir.with_name(".case_set.tmp"), key_dir.with_name(".key.tmp")
    for tmp in (tmp_cases, tmp_key):
        shutil.rmtree(tmp, ignore_errors=True)
    (tmp_cases / "cases").mkdir(parents=True)
    (tmp_cases / "practice").mkdir()
    tmp_key.mkdir(parents=True)
    real_data = real.load(sample.real_cases)
    syn_data = synthetic.load(sample.synthetic_cases)
    patches = list(real_data) + list(syn_data)
    case_rows, key_rows = [], []
    for case_id, patch, t, store, row in zip(ids, patches, truth, stores, rows, strict=True):
        image = f"cases/{case_id}.png"
        (tmp_cases / image).write_bytes(patch_png_bytes(patch, display_scale))
        case_rows.append({"case_id": case_id, "image": image})
        key_rows.append({"case_id": case_id, "truth": t, "store": store.path.name,
                         "patch_id": str(store.manifest["patch_id"].iloc[int(row)])})
    pd.DataFrame(case_rows).sort_values("case_id").to_csv(tmp_cases / "cases.csv", index=False)
    pd.DataFrame(key_rows).sort_values("case_id").to_csv(tmp_key / "key.csv", index=False)
    practice_rows = []
    prac = [("real", real, i) for i in sample.real_practice]
    prac += [("synthetic", synthetic, i) for i in sample.synthetic_practice]
    order = rng.permutation(len(prac)) if prac else []
    for k, j in enumerate(order):
        t, store, row = prac[int(j)]
        pid = f"p{k + 1:02d}"
        image = f"practice/{pid}.png"
        (tmp_cases / image).write_bytes(patch_png_bytes(store.load([int(row)])[0], display_scale))
        practice_rows.append({"practice_id": pid, "image": image, "truth": t,
                              "store": store.path.name,
                              "patch_id": str(store.manifest["patch_id"].iloc[int(row)])})
    prac_df = pd.DataFrame(practice_rows, columns=["practice_id", "image", "truth", "store", "patch_id"])
    prac_df[["practice_id", "image", "truth"]].to_csv(tmp_cases / "practice" / "practice.csv", index=False)
    # the held-out rows (for the machine observer) and practice provenance live with the key
    prac_df.to_csv(tmp_key / "practice_sources.csv", index=False)
    held = pd.DataFrame(
        [{"store": real.path.name, "row": int(i)} for i in sample.real_held_out]
        + [{"store": synthetic.path.name, "row": int(i)} for i in sample.synthetic_held_out],
        columns=["store", "row"],
    )
    held.to_csv(tmp_key / "held_out.csv", index=False)
    study = {
        "case_set_id": case_set_id,
        "n_real": int(len(sample.real_cases)),
        "n_synthetic": int(len(sample.synthetic_cases)),
        "seed": int(seed),
        "display_scale": int(display_scale),
        "patch_size": int(real.patch_size),
        "created": now_iso(),
        "app_version": APP_VERSION,
        "practice_ids": [r["practice_id"] for r in practice_rows],
        "request": request,
        "lesion_classes": classes,  # real patches drawn only from these classes (None: all)
        "warnings": sample.warnings,
    }
    atomic_write_text(tmp_cases / "study.json", json.dumps(study, indent=2))
    for tmp, final in ((tmp_key, key_dir), (tmp_cases, case_set_dir)):
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    ratings_dir.mkdir(parents=True, exist_ok=True)
    return open_case_set(case_set_dir)


# --------------------------------------------------------------------------- ratings files
@dataclass
class RatingsLog:
    """The complete lines of one ratings file, plus what was wrong with the rest."""

    path: Path
    records: list[dict]
    problems: list[str]

    def last_per_case(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rec in self.records:
            out[rec["case_id"]] = rec
        return out


def read_ratings(path: str | os.PathLike, case_set: CaseSet | None = None) -> RatingsLog:
    """Read a ratings file, keeping every complete line.

    A damaged line (a truncated last line after a power cut, or such a fragment followed by
    later answers) is reported in ``problems`` and skipped. Lines of another case set or for
    cases not in the set are errors: that file does not belong to this study.
    """
    path = Path(path)
    if not path.exists():
        return RatingsLog(path, [], [])
    raw = path.read_bytes()
    records: list[dict] = []
    problems: list[str] = []
    lines = raw.split(b"\n")
    ends_clean = raw.endswith(b"\n") or not raw
    if ends_clean:
        lines = lines[:-1]
    case_ids = set(case_set.case_ids) if case_set else None
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
            if not isinstance(rec, dict) or any(f not in rec for f in rating_scale.RATING_FIELDS):
                raise ValueError("missing fields")
        except (ValueError, UnicodeDecodeError):
            where = "truncated last line" if last and not ends_clean else "damaged line"
            problems.append(
                f"{path}: {where} {number} ({len(line)} bytes) ignored; the answer it held "
                "was not recorded completely and that case will be asked again"
            )
            continue
        if case_set is not None and rec["case_set_id"] != case_set.case_set_id:
            raise ReaderStudyError(
                f"{path} line {number} belongs to case set {rec['case_set_id']!r}, not "
                f"{case_set.case_set_id!r} ({case_set.case_set_dir}): it is another study's "
                "ratings file; move it away (it was not changed)"
            )
        if case_ids is not None and rec["case_id"] not in case_ids:
            raise ReaderStudyError(
                f"{path} line {number} rates case {rec['case_id']!r}, which is not in case set "
                f"{case_set.case_set_dir}; the file was not changed, check it"
            )
        records.append(rec)
    return RatingsLog(path, records, problems)


class RatingsWriter:
    """Appends answers to one reader's ratings file: one line each, flushed and fsynced.

    Never rewrites the file: if its last line is incomplete, a newline is appended first so
    the fragment stays as it was and the next answer starts on a line of its own.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        missing = [f for f in rating_scale.RATING_FIELDS if f not in record]
        if missing:
            raise ReaderStudyError(f"rating record lacks fields {missing}")
        line = json.dumps({f: record[f] for f in rating_scale.RATING_FIELDS}) + "\n"
        with open(self.path, "ab+") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())


def make_record(
    reader: str, reader_kind: str, case_set_id: str, case_id: str, option: int,
    shown_at: str, answered_at: str | None = None, event: str = "answer",
) -> dict:
    """One ratings line in the shared format of mammo_lib.rating_scale."""
    if reader_kind not in rating_scale.READER_KINDS:
        raise ReaderStudyError(f"reader_kind {reader_kind!r} must be one of {rating_scale.READER_KINDS}")
    if event not in ("answer", "revise"):
        raise ReaderStudyError(f"event {event!r} must be 'answer' or 'revise'")
    option = int(option)
    return {
        "reader": reader, "reader_kind": reader_kind, "case_set_id": case_set_id,
        "case_id": case_id, "option": option, "label": rating_scale.OPTION_LABEL[option],
        "value": rating_scale.option_value(option), "shown_at": shown_at,
        "answered_at": answered_at or now_iso(), "event": event, "app_version": APP_VERSION,
    }


# --------------------------------------------------------------------------- reading session
class ReadingSession:
    """One reader's progress through a case set (no widgets: the app drives it, tests too).

    Practice cases come first (feedback, not written to the ratings file), unless the reader
    already answered scored cases. Then the reader's own order; answering moves to the first
    unanswered case; ``go_back`` shows the previous case again so its answer can be revised.
    """

    def __init__(self, case_set: CaseSet, reader_id: str, reader_kind: str = "human",
                 double_answer_guard_s: float = 0.3, clock: Callable[[], float] = time.monotonic):
        self.case_set = case_set
        self.reader_id = validate_reader_id(reader_id)
        self.reader_kind = reader_kind
        self.order = case_set.reader_order(self.reader_id)
        self.path = case_set.ratings_path(self.reader_id)
        log = read_ratings(self.path, case_set)
        self.problems = log.problems
        self.answers: dict[str, dict] = log.last_per_case()
        self.writer = RatingsWriter(self.path)
        self.guard_s = double_answer_guard_s
        self.clock = clock
        self.practice_ids = list(case_set.practice["practice_id"])
        self.practice_index = 0 if (self.practice_ids and not self.answers) else len(self.practice_ids)
        self.index = self.first_unanswered()
        self.shown_at = now_iso()
        self.shown_clock = clock()
        self.ignored = 0

    # -- state
    @property
    def n_cases(self) -> int:
        return len(self.order)

    @property
    def in_practice(self) -> bool:
        return self.practice_index < len(self.practice_ids)

    @property
    def finished(self) -> bool:
        return not self.in_practice and self.index >= self.n_cases

    def first_unanswered(self) -> int:
        for i, cid in enumerate(self.order):
            if cid not in self.answers:
                return i
        return self.n_cases

    @property
    def current_id(self) -> str | None:
        """The id of what is shown now: a practice id, a case id, or None at the end."""
        if self.in_practice:
            return self.practice_ids[self.practice_index]
        return None if self.finished else self.order[self.index]

    def current_image(self) -> bytes:
        cid = self.current_id
        if cid is None:
            raise ReaderStudyError("all cases are answered; there is no current case")
        if self.in_practice:
            return self.case_set.practice_image_bytes(cid)
        return self.case_set.image_bytes(cid)

    def progress_text(self) -> str:
        if self.in_practice:
            return f"Practice case {self.practice_index + 1} of {len(self.practice_ids)} (not scored)"
        if self.finished:
            return f"All {self.n_cases} cases rated"
        return f"Case {self.index + 1} of {self.n_cases}"

    @property
    def n_answered(self) -> int:
        return len(self.answers)

    @property
    def can_go_back(self) -> bool:
        return not self.in_practice and self.index > 0 and self.order[self.index - 1] in self.answers

    def _mark_shown(self) -> None:
        self.shown_at = now_iso()
        self.shown_clock = self.clock()

    # -- actions
    def answer(self, shown_id: str | None, option: int) -> dict | None:
        """Record ``option`` for the case ``shown_id`` and move on.

        Returns the written record (or, for practice, ``{"practice": truth, ...}``), or None
        when the answer is ignored: it is for a case no longer shown, or it came within the
        double-answer guard after the case appeared (a double click or a bounced key).
        """
        option = int(option)
        rating_scale.option_value(option)
        if shown_id is None or shown_id != self.current_id:
            self.ignored += 1
            return None
        if self.clock() - self.shown_clock < self.guard_s:
            self.ignored += 1
            return None
        if self.in_practice:
            row = self.case_set.practice.loc[self.case_set.practice["practice_id"] == shown_id]
            truth = str(row["truth"].iloc[0])
            called = "real" if rating_scale.option_value(option) > rating_scale.THRESHOLD else "synthetic"
            self.practice_index += 1
            self._mark_shown()
            return {"practice": truth, "called": called, "correct": truth == called}
        event = "revise" if shown_id in self.answers else "answer"
        record = make_record(self.reader_id, self.reader_kind, self.case_set.case_set_id,
                             shown_id, option, self.shown_at, event=event)
        self.writer.append(record)
        self.answers[shown_id] = record
        self.index = self.first_unanswered()
        self._mark_shown()
        return record

    def go_back(self) -> bool:
        """Show the previous case again (its answer can be revised). False if there is none."""
        if self.finished and self.n_cases and self.order[-1] in self.answers:
            self.index = self.n_cases - 1
            self._mark_shown()
            return True
        if not self.can_go_back:
            return False
        self.index -= 1
        self._mark_shown()
        return True

    def previous_answer(self) -> dict | None:
        cid = self.current_id
        return None if self.in_practice or cid is None else self.answers.get(cid)

    def skip_practice(self) -> None:
        self.practice_index = len(self.practice_ids)
        self._mark_shown()


# --------------------------------------------------------------------------- machine observer
def patch_features(patches: np.ndarray, kind: str) -> np.ndarray:
    """Simple features of uint8 patches for the machine observers.

    ``pixels``: the patch block-averaged to 16x16 (what the image looks like);
    ``spectrum``: radially averaged log power spectrum + grey-level histogram + gradient
    statistics (how its texture looks; GAN upsampling leaves traces in the spectrum).
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
    reader: str
    ratings_path: Path
    n_train_real: int
    n_train_synthetic: int
    train_accuracy: float
    written: int
    note: str = ""


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

    A logistic regression on :func:`patch_features` learns P(real) from the real and
    synthetic patches that are in neither the cases nor the practice set; each case's
    probability is mapped to the nearest of the six options and appended to
    ``ratings/<reader>.jsonl`` with ``reader_kind="machine"``. Cases already rated in that
    file are not rated again (a rerun adds nothing, and nothing is overwritten).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if reader not in MACHINE_FEATURES:
        raise ReaderStudyError(f"unknown machine observer {reader!r}; choose from {sorted(MACHINE_FEATURES)}")
    validate_reader_id(reader)
    key = load_key(case_set)
    key_dir = case_set.key_path.parent
    real = open_patch_store(real_store or lesion_store_path(run_dir))
    synthetic = open_patch_store(synthetic_store or synthetic_store_path(run_dir))
    by_name = {real.path.name: real, synthetic.path.name: synthetic}
    held = pd.read_csv(key_dir / "held_out.csv")
    tr_real = held.loc[held["store"] == real.path.name, "row"].to_numpy(int)
    tr_syn = held.loc[held["store"] == synthetic.path.name, "row"].to_numpy(int)
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
    writer = RatingsWriter(path)
    if len(todo):
        patches = []
        for store_name, patch_id in zip(todo["store"], todo["patch_id"], strict=True):
            store = by_name.get(store_name)
            if store is None:
                raise ReaderStudyError(f"key names store {store_name!r}, which is not an input store")
            row = np.flatnonzero(store.manifest["patch_id"].to_numpy() == patch_id)
            if len(row) != 1:
                raise ReaderStudyError(f"patch {patch_id!r} of the key is not in {store.path}")
            patches.append(store.load([int(row[0])])[0])
        prob_real = model.predict_proba(patch_features(np.stack(patches), kind))[:, 1]
        for case_id, p in zip(todo["case_id"], prob_real, strict=True):
            t = now_iso()
            writer.append(make_record(reader, "machine", case_set.case_set_id, case_id,
                                      rating_scale.value_to_option(float(p)), t, t))
    note = "" if len(todo) else f"{path.name} already rates every case; nothing added"
    return MachineObserverResult(reader, path, len(tr_real), len(tr_syn), train_acc, len(todo), note)


def ratings_table(case_set: CaseSet) -> pd.DataFrame:
    """Last answer per (reader, case) of every ratings file of the case set, with a revise count."""
    rows = []
    for path in sorted(case_set.ratings_dir.glob("*.jsonl")):
        log = read_ratings(path, case_set)
        revised = {r["case_id"] for r in log.records if r["event"] == "revise"}
        for rec in log.last_per_case().values():
            rows.append({**rec, "revised": rec["case_id"] in revised})
    return pd.DataFrame(rows, columns=list(rating_scale.RATING_FIELDS) + ["revised"])
