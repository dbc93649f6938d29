"""What each stage of a run folder owns, reads and wrote, and which stages are out of date.

Every stage (numbered notebook) owns a set of paths in the run folder (:data:`STAGE_FILES`):
before it runs, the runner removes what it is to replace (:func:`clear_stage_outputs`), so no
file of an earlier run of that stage survives beside the new one. Stage 02 keeps its DCGAN
checkpoints, loss log and samples only when its last recorded run had the same parameter values
(a resume after Ctrl-C or a time budget; :mod:`mammo_lib.generate.session` also checks that the
patches are the same), and stage 04 keeps the
case set, its key and people's ratings (it rebuilds the case set itself when its request
changed, and refuses when people have rated it).

The runner records, for each stage, a digest of every run-folder path the stage reads
(``inputs``) and writes (``outputs``) in ``run.json``. The staleness rule (as ``make`` and
DVC apply it): a stage that finished is **stale** when any of its inputs now on disk differs
from the digest recorded when it ran (an upstream stage was rerun and wrote something else, or
someone changed a file, or new ratings arrived), or when an earlier stage whose outputs it reads
is not up to date; it is **modified** when a file it wrote has changed since. A stage is **up to
date** when it finished and is neither; failed, interrupted and never-run stages are not up to
date either.
:func:`stage_states` computes this from the files, never from the order in which stages ran.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mammo_lib.reader_study.case_set import machine_ratings_only
from mammo_lib.timings import TIMINGS_NAME

#: file names never part of a digest: wall-clock timings and live lock files
UNDIGESTED = (TIMINGS_NAME, "*.lock")


@dataclass(frozen=True)
class StageFiles:
    """The run-folder paths of one stage (relative, POSIX; a glob in the last part is allowed).

    Attributes
    ----------
    inputs : tuple of str
        What the stage reads that an earlier stage (or a person) writes.
    outputs : tuple of str
        What the stage writes (its digests are recorded).
    cleared : tuple of str
        What the runner removes before the stage runs.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    cleared: tuple[str, ...]


#: keyed by the notebook's stem
STAGE_FILES: dict[str, StageFiles] = {
    "01_extract_patches": StageFiles(inputs=(), outputs=("phantom", "patches"), cleared=("phantom", "patches")),
    "02_train_dcgan": StageFiles(inputs=("patches/lesion.zarr",), outputs=("dcgan", "synthetic"),
                     cleared=("synthetic", "dcgan/figures", "dcgan/training_summary.json")),
    "03_feature_space": StageFiles(inputs=("patches/lesion.zarr", "patches/normal.zarr", "synthetic"),
                     outputs=("feature_space",), cleared=("feature_space",)),
    "04_reader_study": StageFiles(inputs=("patches/lesion.zarr", "synthetic"),
                     outputs=("reader_study/case_set", "reader_study/key", "reader_study/figures",
                              "reader_study/ratings/machine-*.jsonl"),
                     cleared=("reader_study/figures",)),
    "05_roc_analysis": StageFiles(inputs=("reader_study/case_set", "reader_study/key", "reader_study/ratings"),
                     outputs=("roc",), cleared=("roc",)),
}


def stage_files(notebook: str) -> StageFiles | None:
    """The :class:`StageFiles` of a notebook (``"03_feature_space.ipynb"`` or its stem), or None
    for a notebook the table does not know (a stage added later: nothing is cleared, and its
    staleness is judged by every earlier stage's outputs)."""
    return STAGE_FILES.get(Path(notebook).stem)


def _skipped(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in UNDIGESTED)


def _matches(run_dir: Path, rel: str) -> list[Path]:
    parent, _, last = rel.rpartition("/")
    if any(ch in last for ch in "*?["):
        base = run_dir / parent
        return sorted(p for p in base.glob(last)) if base.is_dir() else []
    path = run_dir / rel
    return [path] if path.exists() else []


def path_digest(run_dir: str | os.PathLike, rel: str) -> str | None:
    """SHA-256 over every file under one run-folder path (names and bytes), or None when absent.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    rel : str
        A path relative to it (``"patches/lesion.zarr"``); a glob in its last part
        (``"reader_study/ratings/machine-*.jsonl"``) digests every match.

    Returns
    -------
    str or None
        ``"sha256:<64 hex digits>"``; None when nothing exists at ``rel``. Timings files and
        lock files are left out (:data:`UNDIGESTED`): they change when nothing else does.
    """
    run_dir = Path(run_dir)
    matches = _matches(run_dir, rel)
    if not matches:
        return None
    files = []
    for match in matches:
        candidates = [match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()]
        files += [p for p in candidates if not _skipped(p.name)]
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(run_dir).as_posix()):
        digest.update(path.relative_to(run_dir).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def digests(run_dir: str | os.PathLike, paths: tuple[str, ...]) -> dict[str, str | None]:
    """``{path: path_digest}`` for each path (None for an absent one)."""
    return {rel: path_digest(run_dir, rel) for rel in paths}


def input_paths(notebook: str, all_notebooks: list[str]) -> tuple[str, ...]:
    """What a stage reads: its declared inputs, or (unknown stage) every earlier stage's outputs."""
    files = stage_files(notebook)
    if files is not None:
        return files.inputs
    earlier = [stage_files(nb) for nb in all_notebooks if Path(nb).name < Path(notebook).name]
    return tuple(p for f in earlier if f is not None for p in f.outputs)


def clear_stage_outputs(run_dir: str | os.PathLike, notebook: str, *, keep_dcgan: bool = True) -> list[str]:
    """Remove what a stage is about to rewrite (see the module docstring).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    notebook : str
        The stage's notebook name or stem.
    keep_dcgan : bool
        Stage 02 only: False removes all of ``dcgan/`` (the stage trains no DCGAN this time, or
        starts it afresh), True keeps its checkpoints, loss log and samples for a resume.

    Returns
    -------
    list of str
        The run-folder paths removed.
    """
    import shutil

    files = stage_files(notebook)
    if files is None:
        return []
    run_dir = Path(run_dir)
    cleared = list(files.cleared)
    if Path(notebook).stem == "02_train_dcgan" and not keep_dcgan:
        cleared.append("dcgan")
    removed = []
    for rel in cleared:
        for path in _matches(run_dir, rel):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.relative_to(run_dir).as_posix())
    if Path(notebook).stem == "04_reader_study":
        removed += _clear_machine_ratings(run_dir)
    return removed


def _clear_machine_ratings(run_dir: Path) -> list[str]:
    """Stage 04's machine observers rate afresh: their ratings files (only machine lines) go;
    files holding any person's rating are never touched."""

    ratings = run_dir / "reader_study" / "ratings"
    removed = []
    for path in sorted(ratings.glob("*.jsonl")) if ratings.is_dir() else []:
        if machine_ratings_only(path):
            path.unlink()
            removed.append(path.relative_to(run_dir).as_posix())
    return removed


#: what a stage's entry says, and what that means for ``--stale``
UP_TO_DATE = "ok"


@dataclass(frozen=True)
class StageState:
    """One stage's state in a run folder.

    Attributes
    ----------
    notebook : str
        ``"03_feature_space.ipynb"``.
    state : str
        ``"ok"`` (finished, inputs and outputs unchanged), ``"stale"`` (finished, an input
        changed since, or an earlier stage it reads from is not up to date), ``"modified"`` (a
        file it wrote was changed afterwards), ``"failed"``, ``"interrupted"``, ``"running"`` (a
        run holds the folder, or one was killed) or ``"not run"``.
    reasons : tuple of str
        For ``"stale"`` and ``"modified"``: each changed path (``"synthetic changed since this
        stage ran"``, ``"patches changed after this stage wrote it"``).
    """

    notebook: str
    state: str
    reasons: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """Finished and not stale."""
        return self.state == UP_TO_DATE


def entry_state(run_dir: str | os.PathLike, entry: dict | None, notebook: str) -> StageState:
    """The :class:`StageState` of one ``run.json`` entry (None: the stage never ran).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder (its files are digested now).
    entry : dict or None
        The stage's entry in ``run.json``'s ``notebooks``.
    notebook : str
        The stage's notebook name.

    Returns
    -------
    StageState
        An entry without recorded ``inputs`` (a run.json written before digests were recorded)
        counts as up to date when it finished.
    """
    if not entry:
        return StageState(notebook, "not run")
    status = str(entry.get("status", ""))
    if not status.startswith("ok"):
        return StageState(notebook, status or "not run")
    modified = tuple(f"{rel} {_change(digest, path_digest(run_dir, rel), 'after this stage wrote it')}"
                     for rel, digest in sorted((entry.get("outputs") or {}).items())
                     if path_digest(run_dir, rel) != digest)
    if modified:
        return StageState(notebook, "modified", modified)
    stale = tuple(f"{rel} {_change(digest, path_digest(run_dir, rel), 'since this stage ran')}"
                  for rel, digest in sorted((entry.get("inputs") or {}).items())
                  if path_digest(run_dir, rel) != digest)
    return StageState(notebook, "stale" if stale else UP_TO_DATE, stale)


def _change(recorded: str | None, now: str | None, when: str) -> str:
    if now is None:
        return "is missing"
    return f"appeared {when}" if recorded is None else f"changed {when}"


def stage_states(run_dir: str | os.PathLike, record: dict, notebooks: list[str] | None = None) -> list[StageState]:
    """Every stage's state, in notebook order: a finished stage whose own inputs are unchanged is
    still stale when it reads what an earlier stage that is not up to date writes (``make``'s
    transitive rule; ``--stale`` reruns it only if that stage's rerun changes those files).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    record : dict
        Its ``run.json``.
    notebooks : list of str, optional
        The study's notebook names (default: those with an entry in the record).

    Returns
    -------
    list of StageState
    """
    entries = {e.get("notebook"): e for e in record.get("notebooks", [])}
    names = sorted(set(notebooks or []) | set(entries))
    states = []
    doubtful: dict[str, str] = {}  # output path -> the earlier stage, not up to date, that writes it
    for name in names:
        state = entry_state(run_dir, entries.get(name), name)
        if state.up_to_date:
            read_from: dict[str, list[str]] = {}
            for rel in input_paths(name, names):
                for stage in dict.fromkeys(doubtful[out] for out in doubtful if _overlap(rel, out)):
                    read_from.setdefault(stage, []).append(rel)
            if read_from:
                state = StageState(name, "stale", tuple(
                    f"it reads {', '.join(rels)}, written by {Path(stage).stem}, which is not up to date"
                    for stage, rels in read_from.items()))
        if not state.up_to_date and (files := stage_files(name)) is not None:
            doubtful.update({out: name for out in files.outputs})
        states.append(state)
    return states


def _overlap(a: str, b: str) -> bool:
    """Whether two run-folder paths (globs in the last part) can name the same file."""
    glob = "*" in a or "*" in b
    a, b = a.split("*")[0].rstrip("/"), b.split("*")[0].rstrip("/")
    if glob:  # "reader_study/ratings/machine-" against "reader_study/ratings": compare the prefixes
        return a.startswith(b) or b.startswith(a)
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
