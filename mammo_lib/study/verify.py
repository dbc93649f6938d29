"""Bitwise rerun check: rerun a study with its recorded parameters and compare every file.

``python -m mammo_lib.study.verify NAME`` (``make verify NAME=...``) reads ``runs/NAME/run.json``,
reruns each stage with the profile, seed and overrides it recorded into ``runs/NAME-verify`` (a
fresh folder), and compares the two run folders byte by byte. A folder with a stale, failed or
interrupted stage is refused (no rerun makes such a folder). Expected: no difference. Not compared:
the timing records (every ``timings.json``), the report, and in executed notebooks only the
timing metadata papermill and Jupyter add (start and end times, durations) and how the kernel
chunked standard output into stream outputs (merged before comparing), the study
coordinator's invitations (``reader_study/access/``), the kernels' logs (``logs/``) and lock files. People's
ratings are inputs, not outputs: a rerun has only the machine observers' ratings, so a run that
people have rated reports their ratings files as "only in the run". The result is written to
``runs/NAME/verify.json`` and shown in the run's report.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from mammo_lib import run_lock
from mammo_lib.clock import now_iso
from mammo_lib.fileio import read_json_or_empty, write_json
from mammo_lib.run_lock import LOCK_NAME, RunFolderBusy
from mammo_lib.study.provenance import RECORD_NAME, TIMINGS_NAME
from mammo_lib.study.report import build_report
from mammo_lib.study.run_stage import runner_command
from mammo_lib.study.runner import NOTEBOOK_DIR, StudyError, run_study
from mammo_lib.study.state import stage_states

VERIFY_NAME = "verify.json"
#: files and folders never compared (relative to the run folder)
IGNORED_TOP = {"report", "logs", VERIFY_NAME}
_TIMING_KEYS = ("start_time", "end_time", "duration", "execution")


class VerifyError(RuntimeError):
    """The run to verify has no usable ``run.json``."""


def _strip_timing(meta: dict) -> None:
    papermill = meta.get("papermill")
    if isinstance(papermill, dict):
        for key in _TIMING_KEYS:
            papermill.pop(key, None)
    meta.pop("execution", None)


def notebook_without_timings(path: Path) -> bytes:
    """An executed notebook's JSON with papermill's and Jupyter's timing metadata removed.

    Parameters
    ----------
    path : pathlib.Path
        An ``.ipynb`` file.

    Returns
    -------
    bytes
        Canonical JSON (sorted keys) of the notebook without timings and with each cell's
        consecutive stream outputs merged (the kernel's chunking of stdout depends on timing);
        the raw bytes when the file is not valid JSON (so a broken notebook still compares as
        different).
    """
    raw = path.read_bytes()
    try:
        nb = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw
    _strip_timing(nb.get("metadata", {}))
    for cell in nb.get("cells", []):
        _strip_timing(cell.get("metadata", {}))
        _join_text(cell)
    nb = _coalesced(nb)
    return json.dumps(nb, sort_keys=True).encode("utf-8")


def _join_text(cell: dict) -> None:
    """Stream texts as one string (a notebook may store them as a list of lines)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and isinstance(out.get("text"), list):
            out["text"] = "".join(out["text"])


def _coalesced(nb: dict) -> dict:
    """Consecutive stream outputs of a cell merged into one (nbconvert's CoalesceStreamsPreprocessor):
    how the kernel happened to chunk standard output between flushes depends on timing, not on
    what was printed, so a rerun that printed the same text compares equal."""
    import nbformat
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    try:
        node = nbformat.from_dict(nb)
        CoalesceStreamsPreprocessor().preprocess(node, {})
    except (KeyError, AttributeError, TypeError):  # not a notebook nbformat understands: compare as is
        return nb
    return node


def _compared(rel: Path) -> bool:
    """Whether a file of the run folder is a study output to compare (see the module docstring)."""
    if rel.parts[0] in IGNORED_TOP or rel.name == TIMINGS_NAME or rel.name == LOCK_NAME:
        return False
    if rel.parts[:2] == ("reader_study", "access"):  # the coordinator's invitations, not an output
        return False
    return not (rel.parts[:2] == ("reader_study", "ratings") and rel.name.endswith(".lock"))


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")
            if path.is_file() and _compared(path.relative_to(root))}


def _same(a: Path, b: Path) -> bool:
    if a.suffix == ".ipynb":
        return notebook_without_timings(a) == notebook_without_timings(b)
    if a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def compare_run_folders(reference: str | os.PathLike, rerun: str | os.PathLike) -> dict:
    """Compare two run folders file by file.

    Parameters
    ----------
    reference, rerun : str or os.PathLike
        Run folders.

    Returns
    -------
    dict
        ``{"identical": bool, "n_compared": int, "differing": [...], "only_here": [...],
        "only_in_rerun": [...]}``, paths relative to the run folders, sorted.
    """
    reference, rerun = Path(reference), Path(rerun)
    here, there = _files(reference), _files(rerun)
    both = sorted(here & there)
    differing = [rel for rel in both if not _same(reference / rel, rerun / rel)]
    only_here, only_there = sorted(here - there), sorted(there - here)
    return {"identical": not (differing or only_here or only_there), "n_compared": len(both),
            "differing": differing, "only_here": only_here, "only_in_rerun": only_there}


def replay_groups(record: dict) -> list[dict]:
    """The settings groups of a run in stage order (``run.json``'s ``settings``), or one group of
    its top-level settings for a record written before stages recorded their own."""
    groups = record.get("settings") or []
    if groups:
        return groups
    stems = [Path(e["notebook"]).stem for e in record.get("notebooks", [])]
    return [{"stages": stems, "profile": record["profile"], "seed": int(record.get("seed", 0)),
             "overrides": dict(record.get("overrides") or {})}]


def _check_replayable(run_dir: Path, record: dict) -> None:

    bad = [s for s in stage_states(run_dir, record) if not s.up_to_date]
    if bad:
        raise VerifyError(
            f"{run_dir}: not every stage is up to date ("
            + "; ".join(f"{s.notebook}: {s.state}" for s in bad)
            + "), so no rerun can reproduce this folder; bring it up to date first "
              f"({runner_command(run_dir, '--stale')}), then verify")


def verify_run(run_dir: str | os.PathLike, log=print, notebook_dir: str | os.PathLike | None = None) -> dict:
    """Rerun ``run_dir``'s study, each stage with its recorded settings, and compare (see the
    module docstring).

    Consecutive stages that ran with the same settings (``run.json``'s ``settings`` groups) are
    rerun together, in stage order, into a fresh ``<run>-verify`` folder, so a run made of a
    whole run and later partial reruns is replayed as it was made. The run folder's lock is
    held throughout (no run may change it meanwhile).

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder with ``run.json`` whose stages are all up to date.
    log : callable
        Progress lines.
    notebook_dir : str or os.PathLike, optional
        The notebooks the run was made with (default: this checkout's ``notebooks/``).

    Returns
    -------
    dict
        :func:`compare_run_folders`'s result plus ``reference``, ``rerun`` (folder names) and
        ``checked_at``; also written to ``<run_dir>/verify.json``.

    Raises
    ------
    VerifyError
        When ``run.json`` is missing or lacks the profile, or a stage is stale, failed,
        interrupted or running (such a folder is not the result of any rerun).
    mammo_lib.run_lock.RunFolderBusy
        When a run holds the folder.
    mammo_lib.study.runner.StudyError
        When the rerun fails.
    """

    run_dir = Path(run_dir).resolve()
    record = read_json_or_empty(run_dir / RECORD_NAME)
    if "profile" not in record:
        raise VerifyError(f"{run_dir / RECORD_NAME} is missing or has no profile: not a run made by the study runner")
    with run_lock.holding(run_dir):
        _check_replayable(run_dir, record)
        rerun_dir = run_dir.with_name(run_dir.name + "-verify")
        shutil.rmtree(rerun_dir, ignore_errors=True)
        for group in replay_groups(record):
            log(f"verify: rerunning {', '.join(group['stages'])} of {run_dir.name} (profile {group['profile']}, "
                f"seed {group['seed']}) into {rerun_dir.name}")
            run_study(group["profile"], name=rerun_dir.name, runs_root=run_dir.parent,
                      overrides=dict(group.get("overrides") or {}), seed=int(group["seed"]),
                      only=list(group["stages"]), inherit=False, log=log, report=False,
                      notebook_dir=Path(notebook_dir or NOTEBOOK_DIR))
        result = compare_run_folders(run_dir, rerun_dir)
        result.update(reference=run_dir.name, rerun=rerun_dir.name, checked_at=now_iso())
        write_json(run_dir / VERIFY_NAME, result)
        build_report(run_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m mammo_lib.study.verify RUN_DIR``; exit 0 when every file is identical, else 1."""
    import argparse


    parser = argparse.ArgumentParser(description="Rerun a study with its recorded parameters and compare every file.")
    parser.add_argument("run_dir", help="the run folder to verify, e.g. runs/default")
    args = parser.parse_args(argv)

    try:
        result = verify_run(args.run_dir)
    except (VerifyError, StudyError, RunFolderBusy) as exc:
        print(f"verify failed: {exc}", file=sys.stderr)
        return 1
    print(f"compared {result['n_compared']} files")
    for label, key in (("differ", "differing"), ("only in the run", "only_here"), ("only in the rerun", "only_in_rerun")):
        for rel in result[key]:
            print(f"  {label}: {rel}")
    print("byte-identical rerun" if result["identical"] else "the rerun differs (see above)")
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
