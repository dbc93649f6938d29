"""Reader-study files, part 2: ``ratings/<reader>.jsonl`` (reading with one rule for torn lines,
validating, appending) and the validated table stage 05 analyses. The formats are described in
:mod:`mammo_lib.reader_study.files`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mammo_lib import __version__ as APP_VERSION
from mammo_lib import rating_scale
from mammo_lib.clock import now_iso
from mammo_lib.rating_scale import OPTION_LABEL, OPTION_VALUE, READER_KINDS
from mammo_lib.reader_study.files.case_set import (
    CaseSet,
    KeyedCaseSet,
    RatingsError,
    ReaderStudyError,
)

REQUIRED_FIELDS = ("reader", "reader_kind", "case_set_id", "case_id", "option", "value")


# --------------------------------------------------------------------------- ratings: reading
@dataclass
class RatingsLog:
    """The complete lines of one ratings file (in file order) and what was wrong with the rest.

    ``records`` are the valid lines as written, each with its line number under ``"_line"``;
    ``problems`` the skipped torn lines (tolerated); ``errors`` the complete lines that break the
    format (only filled with ``strict=False``; otherwise they are raised).
    """

    path: Path
    records: list[dict]
    problems: list[str]
    errors: list[str] = field(default_factory=list)

    def last_per_case(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rec in self.records:
            out[rec["case_id"]] = rec
        return out


def _torn_line_note(path: Path, number: int, line: bytes, last: bool) -> str:
    if last:
        return (f"{path}:{number}: incomplete last line skipped (truncated last line {number}, {len(line)} "
                f"bytes, cut off mid-write, e.g. by a power cut); the {number - 1} complete line(s) before "
                "it are kept and that case will be asked again")
    return (f"{path}:{number}: damaged line skipped (damaged line {number}, {len(line)} bytes: an answer "
            "cut off mid-write, most likely asked again later)")


def _option_problem(rec: dict) -> str | None:
    option = rec["option"]
    if isinstance(option, bool) or not isinstance(option, (int, float)) or option not in OPTION_VALUE:
        return f"option {option!r} is not on the six-option scale 1-6"
    option = int(option)
    try:
        value = float(rec["value"])
    except (TypeError, ValueError):
        return f"value {rec['value']!r} is not a number"
    if not abs(value - OPTION_VALUE[option]) < 1e-9:
        return (f"value {value} does not match option {option} (which maps to {OPTION_VALUE[option]}); "
                f"values on the scale are {sorted(OPTION_VALUE.values())}")
    if "label" in rec and rec["label"] not in (None, OPTION_LABEL[option]):
        return f"label {rec['label']!r} does not match option {option} ({OPTION_LABEL[option]!r})"
    return None


def record_problem(rec: object, case_set: CaseSet | None = None) -> str | None:
    """What is wrong with one decoded ratings line, or None when it is valid.

    Parameters
    ----------
    rec : object
        The decoded JSON line.
    case_set : CaseSet, optional
        When given, the line must belong to it (its case_set_id, one of its case ids).

    Returns
    -------
    str or None
        A sentence naming the problem (without file and line).
    """
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
        return f"missing field(s) {missing}"
    if case_set is not None and str(rec["case_set_id"]) != case_set.case_set_id:
        return (f"rating for case set {rec['case_set_id']!r}, but the case set in {case_set.case_set_dir} is "
                f"{case_set.case_set_id!r}: it is another study's ratings; move ratings of other studies "
                "out of the ratings folder")
    if case_set is not None and str(rec["case_id"]) not in set(case_set.case_ids):
        return (f"unknown case id {rec['case_id']!r} (not in case set {case_set.case_set_dir}, "
                f"{case_set.case_set_dir / 'cases.csv'})")
    if rec["reader_kind"] not in READER_KINDS:
        return f"reader_kind {rec['reader_kind']!r} is not one of {READER_KINDS}"
    return _option_problem(rec)


def read_ratings(path: str | os.PathLike, case_set: CaseSet | KeyedCaseSet | None = None,
                 strict: bool = True) -> RatingsLog:
    """Read one ratings file, keeping every complete, valid line.

    Parameters
    ----------
    path : path
        ``ratings/<reader>.jsonl`` (a missing file reads as empty).
    case_set : CaseSet or KeyedCaseSet, optional
        Check that every line belongs to this case set.
    strict : bool
        Raise on a line that breaks the format (default); with False, collect it in ``errors``.

    Returns
    -------
    RatingsLog

    Raises
    ------
    RatingsError
        With ``strict``, when a complete line breaks the format; the message names file:line of
        each. The file is never changed.
    """
    path = Path(path)
    if isinstance(case_set, KeyedCaseSet):
        case_set = case_set.case_set
    if not path.exists():
        return RatingsLog(path, [], [])
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    ends_clean = raw.endswith(b"\n") or not raw
    if ends_clean:
        lines = lines[:-1]
    log = RatingsLog(path, [], [])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError):
            log.problems.append(_torn_line_note(path, number, line, number == len(lines) and not ends_clean))
            continue
        problem = record_problem(rec, case_set)
        if problem:
            log.errors.append(f"{path}:{number}: {problem}")
            continue
        log.records.append({**rec, "_line": number})
    if strict and log.errors:
        raise RatingsError(f"{len(log.errors)} problem(s) in {path} (the file was not changed):\n"
                           + "\n".join(log.errors[:30]))
    return log


def ratings_files(ratings: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """A folder (its ``*.jsonl``, sorted) or a list of files -> the list of files.

    Raises
    ------
    RatingsError
        If a named path does not exist.
    """
    items = [Path(ratings)] if isinstance(ratings, (str, os.PathLike)) else [Path(p) for p in ratings]
    out = []
    for p in items:
        if p.is_dir():
            out.extend(sorted(p.glob("*.jsonl")))
        elif not p.exists():
            raise RatingsError(f"ratings path {p} does not exist: pass the folder of *.jsonl ratings files "
                               "(default <run_dir>/reader_study/ratings, written by notebook 04) or a list of files")
        else:
            out.append(p)
    return out


@dataclass
class RatingsLoad:
    """Validated ratings: the last answer per (reader, case) and what was found on the way."""

    ratings: pd.DataFrame  # one row per (reader, case): reader, reader_kind, case_id, option, value, truth, ...
    files: dict[str, str]  # reader -> file
    revised: dict[str, int]  # reader -> number of cases answered more than once
    missing: dict[str, list[str]]  # reader -> case ids never rated
    notes: list[str] = field(default_factory=list)  # human-readable warnings (truncation, ...)
    excluded_readers: list[str] = field(default_factory=list)
    timing: dict[str, list[float]] = field(default_factory=dict)  # reader -> seconds shown-to-answered


LOAD_COLUMNS = ["reader", "reader_kind", "case_id", "option", "value", "event", "shown_at", "answered_at",
                "file", "line"]


def _read_all(files: Sequence[str | os.PathLike], case_set: KeyedCaseSet) -> tuple[list[dict], list[str], list[str], dict]:
    records, notes, problems, reader_file = [], [], [], {}
    for path in files:
        log = read_ratings(path, case_set, strict=False)
        notes += log.problems
        problems += log.errors
        readers_here = set()
        for rec in log.records:
            option = int(rec["option"])
            records.append({"reader": str(rec["reader"]), "reader_kind": rec["reader_kind"],
                            "case_id": str(rec["case_id"]), "option": option, "value": OPTION_VALUE[option],
                            "event": rec.get("event", "answer"), "shown_at": rec.get("shown_at"),
                            "answered_at": rec.get("answered_at"), "file": str(path), "line": rec["_line"]})
            readers_here.add(str(rec["reader"]))
        for reader in sorted(readers_here):
            if reader in reader_file and reader_file[reader] != str(path):
                problems.append(f"reader id {reader!r} appears in two files: {reader_file[reader]} and {path}; "
                                "each reader must have one ratings file (rename one reader or merge the files)")
            reader_file.setdefault(reader, str(path))
    return records, notes, problems, reader_file


def _drop_machines(last: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    excluded = sorted(last.loc[last["reader_kind"] == "machine", "reader"].unique())
    last = last[last["reader_kind"] != "machine"]
    if excluded:
        notes.append(f"machine readers left out (include_machine=False): {excluded}")
    if last.empty:
        raise RatingsError(f"only machine readers ({excluded}) have rated this case set and include_machine "
                           "is False: nothing to analyse; set include_machine=True or add human ratings")
    return last, excluded


def load_ratings(
    files: Sequence[str | os.PathLike], case_set: KeyedCaseSet, include_machine: bool = True,
    max_problems: int = 30,
) -> RatingsLoad:
    """Read ratings files, validate them against the case set and keep the last answer per case.

    Parameters
    ----------
    files : sequence of paths
        ``*.jsonl`` ratings files (see :func:`ratings_files`).
    case_set : KeyedCaseSet
        From :func:`load_case_set`.
    include_machine : bool
        Keep the machine observers' ratings.
    max_problems : int
        At most this many problems are listed in the error message.

    Returns
    -------
    RatingsLoad
        Torn lines (see the module docstring), revised answers (the last counts) and unrated
        cases are reported in ``notes``.

    Raises
    ------
    RatingsError
        Every problem at once, each naming file:line: a complete line that breaks the format
        (:func:`record_problem`), two files claiming one reader id, a reader recorded with two
        reader kinds, no ratings at all, or only machine ratings with ``include_machine=False``.
    """
    records, notes, problems, reader_file = _read_all(files, case_set)
    df = pd.DataFrame(records, columns=LOAD_COLUMNS)
    for reader, kinds in df.groupby("reader")["reader_kind"].unique().items():
        if len(kinds) > 1:
            problems.append(f"reader {reader!r} ({reader_file.get(reader)}) is recorded with several "
                            f"reader_kind values {sorted(kinds)}")
    if problems:
        more = f"\n... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise RatingsError(f"{len(problems)} problem(s) in the ratings files:\n"
                           + "\n".join(problems[:max_problems]) + more)
    if df.empty:
        raise RatingsError(f"no ratings found in {[str(f) for f in files]}; run the reader study (notebook 04) "
                           "or point ratings= at the folder of *.jsonl files")
    counts = df.groupby(["reader", "case_id"]).size()
    revised = {r: int((counts.loc[r] > 1).sum()) for r in counts.index.get_level_values(0).unique()}
    last = df.groupby(["reader", "case_id"], sort=False).tail(1)
    excluded: list[str] = []
    if not include_machine:
        last, excluded = _drop_machines(last, notes)
    known = set(case_set.cases["case_id"])
    missing = {}
    for reader, grp in last.groupby("reader"):
        gone = sorted(known - set(grp["case_id"]))
        if gone:
            missing[reader] = gone
            notes.append(f"reader {reader!r} ({reader_file[reader]}) has not rated {len(gone)} of {len(known)} "
                         f"cases (e.g. {gone[:3]}); their statistics use the {len(known) - len(gone)} rated cases")
    kept = sorted(set(last["reader"]))
    notes += [f"reader {r!r}: {revised[r]} case(s) answered more than once; the last answer counts"
              for r in revised if revised[r] and r in kept]
    truth = case_set.cases.set_index("case_id")["truth"]
    last = last.assign(truth=last["case_id"].map(truth)).reset_index(drop=True)
    return RatingsLoad(ratings=last, files={r: reader_file[r] for r in kept},
                       revised={r: revised[r] for r in kept}, missing=missing, notes=notes,
                       excluded_readers=excluded, timing=reading_times(df[df["reader"].isin(kept)]))


def reading_times(ratings: pd.DataFrame) -> dict[str, list[float]]:
    """Seconds from shown to answered of every first answer, per reader (humans only).

    Parameters
    ----------
    ratings : DataFrame
        Rows with ``reader``, ``reader_kind``, ``event``, ``shown_at``, ``answered_at`` (ISO 8601).

    Returns
    -------
    dict
        reader -> list of seconds (lines without both stamps are left out).
    """
    out: dict[str, list[float]] = {}
    rows = ratings[(ratings["reader_kind"] == "human") & (ratings["event"] == "answer")]
    for reader, grp in rows.groupby("reader"):
        shown = pd.to_datetime(grp["shown_at"], errors="coerce", utc=True, format="ISO8601")
        answered = pd.to_datetime(grp["answered_at"], errors="coerce", utc=True, format="ISO8601")
        secs = (answered - shown).dt.total_seconds().dropna()
        out[str(reader)] = [float(s) for s in secs if s >= 0]
    return out


def ratings_table(case_set: CaseSet) -> pd.DataFrame:
    """Last answer per (reader, case) of every ratings file of the case set, with a revise flag.

    Parameters
    ----------
    case_set : CaseSet

    Returns
    -------
    DataFrame
        The columns of :data:`mammo_lib.rating_scale.RATING_FIELDS` and ``revised`` (bool).

    Raises
    ------
    RatingsError
        If a file holds a line that breaks the format (see :func:`read_ratings`).
    """
    rows = []
    for path in sorted(case_set.ratings_dir.glob("*.jsonl")):
        log = read_ratings(path, case_set)
        revised = {r["case_id"] for r in log.records if r.get("event") == "revise"}
        for rec in log.last_per_case().values():
            rows.append({**{f: rec.get(f) for f in rating_scale.RATING_FIELDS}, "revised": rec["case_id"] in revised})
    return pd.DataFrame(rows, columns=list(rating_scale.RATING_FIELDS) + ["revised"])


# --------------------------------------------------------------------------- ratings: writing
class RatingsWriter:
    """Appends answers to one reader's ratings file: one line each, flushed and fsynced.

    Never rewrites the file: if its last line is incomplete, a newline is appended first so the
    fragment stays as it was and the next answer starts on a line of its own.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        """Append one record (all of :data:`rating_scale.RATING_FIELDS`; ReaderStudyError otherwise)."""
        missing = [f for f in rating_scale.RATING_FIELDS if f not in record]
        if missing:
            raise ReaderStudyError(f"rating record for {self.path} lacks fields {missing}")
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
    shown_at: str | None, answered_at: str | None = None, event: str = "answer",
) -> dict:
    """One ratings line in the format of :mod:`mammo_lib.rating_scale`.

    Parameters
    ----------
    reader, reader_kind, case_set_id, case_id : str
    option : int
        1-6 (a bool is refused).
    shown_at, answered_at : str or None
        ISO 8601 UTC stamps; ``answered_at`` defaults to now. Machine observers pass None for both
        (their ratings carry no wall-clock time, so a rerun writes identical bytes).
    event : {"answer", "revise"}

    Returns
    -------
    dict

    Raises
    ------
    ReaderStudyError
        If reader_kind, event or option is not allowed.
    """
    if reader_kind not in READER_KINDS:
        raise ReaderStudyError(f"reader_kind {reader_kind!r} must be one of {READER_KINDS}")
    if event not in ("answer", "revise"):
        raise ReaderStudyError(f"event {event!r} must be 'answer' or 'revise'")
    if isinstance(option, bool) or int(option) not in OPTION_VALUE:
        raise ReaderStudyError(f"rating option {option!r} is not on the six-option scale 1-6")
    option = int(option)
    if answered_at is None and shown_at is not None:
        answered_at = now_iso("milliseconds")
    return {
        "reader": reader, "reader_kind": reader_kind, "case_set_id": case_set_id,
        "case_id": case_id, "option": option, "label": OPTION_LABEL[option],
        "value": OPTION_VALUE[option], "shown_at": shown_at,
        "answered_at": answered_at, "event": event, "app_version": APP_VERSION,
    }
