"""What a run was: the record ``run.json`` and the timing record ``timings.json`` of a run folder.

``run.json`` holds everything needed to audit and repeat a run, and nothing that changes from
one identical rerun to the next:

```
{
  "up_to_date": true,              every stage of the study finished and none is stale or modified
  "not_up_to_date": {stem: state}, the others: "stale", "modified", "failed", "interrupted",
                                   "running" or "not run" (mammo_lib.study.state)
  "profile": "default",            the settings of the last stage (see "settings")
  "seed": 0,
  "overrides": {...},              the -p / --params-file values, typed
  "settings": [                    which stages ran with which settings (one group when all agree)
     {"stages": ["01_extract_patches", ...], "profile": "default", "seed": 0, "overrides": {...}}],
  "stale_stages": [...],           stages whose inputs changed after they ran (rerun: --stale)
  "study_notebooks": [...],        every notebook of the study
  "code": {"git_commit": "...", "dirty": false, "dirty_files": []},   at the latest invocation
  "python": "3.11.7", "packages": {name: version},
  "notebooks": [                   one entry per stage, in order
     {"notebook": "01_extract_patches.ipynb",
      "status": "ok" | "failed" | "interrupted" | "running" | "ok (rerun interactively)",
      "settings": {"profile", "seed", "overrides"},   what this stage ran with
      "code": {"git_commit", "dirty"},                the code it ran with
      "parameters": {...},         every value the notebook used, its own defaults included
      "inputs": {path: "sha256:..."},   digest of each run-folder path it read (None: absent)
      "outputs": {path: "sha256:..."},  digest of each path it wrote
      "stale": true, "stale_because": ["synthetic changed since this stage ran"],   (stale only)
      "modified_after": ["patches changed after this stage wrote it"],   (modified only)
      "error": {"cell": 7, "exception": "ValueError", "message": "..."}   (failed only)
     }, ...],
  "results": {stem: {headline figures of that stage}}
}
```

The staleness rule is :mod:`mammo_lib.study.state`'s; the settings rule :mod:`mammo_lib.study.settings`'s.

``timings.json`` beside it holds the wall-clock start and end and the seconds of each notebook:
timings are kept apart so that two runs with the same seed and inputs give byte-identical
``run.json`` files.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mammo_lib import timings as timings_file
from mammo_lib.checkout import NOTEBOOK_DIR
from mammo_lib.clock import now_iso
from mammo_lib.fileio import read_json_or_empty, write_json
from mammo_lib.study import state as run_state
from mammo_lib.study.parameters import ParameterError, parameter_specs
from mammo_lib.study.results import headline_results
from mammo_lib.study.settings import settings_groups
from mammo_lib.study.state import stage_states
from mammo_lib.timings import TIMINGS_NAME  # noqa: F401 (re-exported)

RECORD_NAME = "run.json"
#: environment variable the runner sets while it executes notebooks
RUNNER_ENV = "MAMMO_STUDY_RUNNER"
PACKAGES = ("mammo-synth-study", "torch", "numpy", "scipy", "scikit-learn", "scikit-image", "pydicom",
            "zarr", "dask", "openTSNE", "papermill", "pandas", "matplotlib", "seaborn")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages the study's numbers depend on (None when absent)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in packages:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def code_state(repo: str | os.PathLike) -> dict[str, Any]:
    """The git commit of ``repo`` and whether its tracked files differ from it.

    Parameters
    ----------
    repo : str or os.PathLike
        A folder inside the checkout.

    Returns
    -------
    dict
        ``{"git_commit": str, "dirty": bool | None, "dirty_files": list[str]}`` (changed and
        untracked files; ignored ones such as ``runs/`` are not listed); the commit is
        ``"unknown"`` and ``dirty`` None outside a git checkout (an installed package).
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                              timeout=30).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=normal")  # untracked code counts too
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "dirty": None, "dirty_files": []}
    files = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"git_commit": commit, "dirty": bool(files), "dirty_files": files}


def update_notebook_entry(run_dir: str | os.PathLike, entry: dict) -> Path:
    """Put one notebook's entry into ``run.json`` (replacing its earlier one), atomically.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    entry : dict
        ``{"notebook": "<stem>.ipynb", "status": ..., "parameters": {...}, ...}``.

    Returns
    -------
    pathlib.Path
        The ``run.json`` written.
    """
    path = Path(run_dir) / RECORD_NAME
    record = read_json_or_empty(path)
    entries = [e for e in record.get("notebooks", []) if e.get("notebook") != entry["notebook"]]
    record["notebooks"] = sorted([*entries, entry], key=lambda e: e["notebook"])
    return write_json(path, record)


def update_results(run_dir: str | os.PathLike, stem: str, results: dict) -> Path:
    """Put one stage's headline figures into ``run.json``'s ``results`` (replacing earlier ones)."""
    path = Path(run_dir) / RECORD_NAME
    record = read_json_or_empty(path)
    record.setdefault("results", {})[stem] = results
    return write_json(path, record)


def update_timings(run_dir: str | os.PathLike, **fields: Any) -> Path:
    """Merge ``fields`` into ``timings.json`` (``notebooks`` merged per notebook)."""
    return timings_file.update_timings(run_dir, fields, nested=("notebooks",))


def record_interactive_rerun(run_dir: str | os.PathLike, notebook_stem: str, namespace: dict) -> str:
    """Called by a notebook's last cell: record a rerun that the runner did not make.

    Under the runner (``MAMMO_STUDY_RUNNER`` set) this does nothing, since the runner records the
    stage itself. Opened in JupyterLab and rerun, the stage's entry in ``run.json`` is replaced by
    ``status: "ok (rerun interactively)"`` with the parameter values the notebook used, and the
    stage's headline results are refreshed, so the record never silently describes an older run.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder the notebook wrote into.
    notebook_stem : str
        E.g. ``"03_feature_space"``.
    namespace : dict
        The notebook's globals (``globals()``); the values of the parameters its ``parameters``
        cell declares are taken from it (the notebook is found in the working directory, where
        JupyterLab runs it, else in the checkout's ``notebooks/``).

    Returns
    -------
    str
        A sentence for the notebook to show: what was recorded, or that the runner records it.
    """

    if os.environ.get(RUNNER_ENV):
        return f"this stage is recorded by the study runner in {RECORD_NAME}"
    run_dir = Path(run_dir)
    if not (run_dir / RECORD_NAME).exists():
        return (f"this run folder has no {RECORD_NAME}: this stage was run outside the study runner "
                "and is not recorded")
    source = next((p for p in (Path.cwd() / f"{notebook_stem}.ipynb",
                               NOTEBOOK_DIR / f"{notebook_stem}.ipynb")
                   if p.exists()), None)
    try:
        names = list(parameter_specs(source)) if source else []
    except ParameterError:
        names = []
    parameters = {name: namespace[name] for name in names if name in namespace}
    update_notebook_entry(run_dir, _interactive_entry(run_dir, f"{notebook_stem}.ipynb", parameters))
    update_results(run_dir, notebook_stem, headline_results(run_dir, notebook_stem))
    refresh_record(run_dir)
    update_timings(run_dir, notebooks={f"{notebook_stem}.ipynb": {"rerun_interactively_at": now_iso()}})
    return (f"{RECORD_NAME} updated: this stage was rerun interactively with the parameters above; "
            "stages after it were not rerun and may no longer match it")


def _interactive_entry(run_dir: Path, notebook: str, parameters: dict) -> dict:
    """The entry of a stage rerun in JupyterLab: its parameters as the notebook held them, the
    digests of what it read and wrote now, and the settings and code of its last runner entry
    (the seed and overrides it inherited are in its parameters)."""

    record = read_json_or_empty(run_dir / RECORD_NAME)
    old = next((e for e in record.get("notebooks", []) if e.get("notebook") == notebook), {})
    names = [e.get("notebook", "") for e in record.get("notebooks", [])]
    files = run_state.stage_files(notebook)
    entry = {"notebook": notebook, "status": "ok (rerun interactively)"}
    entry.update({k: old[k] for k in ("settings", "code") if k in old})
    entry["parameters"] = parameters
    entry["inputs"] = run_state.digests(run_dir, run_state.input_paths(notebook, names))
    entry["outputs"] = run_state.digests(run_dir, files.outputs) if files else {}
    return entry


def base_record(profile: str, seed: int, overrides: dict, repo: str | os.PathLike) -> dict:
    """The run-level part of ``run.json`` (no notebooks yet)."""
    return {"profile": profile, "seed": seed, "overrides": overrides, "code": code_state(repo),
            "python": platform.python_version(), "packages": package_versions(), "notebooks": [],
            "results": {}}


def start_invocation(run_dir: str | os.PathLike, settings: dict, repo: str | os.PathLike,
                     notebooks: list[str] | None = None) -> dict:
    """Write ``run.json``'s run-level part for a new invocation of the runner, keeping the entries
    and results of the stages it does not rerun (each stage's entry is replaced when it runs).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    settings : dict
        ``{"profile", "seed", "overrides"}`` for a run folder without stage entries yet.
    repo : str or os.PathLike
        The checkout (its code state is recorded).
    notebooks : list of str, optional
        Every notebook of the study (recorded, so that a stage that never ran counts as not up
        to date).

    Returns
    -------
    dict
        The record written.
    """
    previous = read_json_or_empty(Path(run_dir) / RECORD_NAME)
    record = base_record(settings["profile"], settings["seed"], settings["overrides"], repo)
    record["study_notebooks"] = list(notebooks or previous.get("study_notebooks") or [])
    record["notebooks"] = list(previous.get("notebooks", []))
    record["results"] = dict(previous.get("results", {}))
    write_json(Path(run_dir) / RECORD_NAME, record)
    return refresh_record(run_dir)


def refresh_record(run_dir: str | os.PathLike) -> dict:
    """Recompute ``run.json``'s derived parts from its entries and the files: each entry's
    ``stale`` flag and reasons, ``stale_stages``, the ``settings`` groups and the top-level
    settings (those of the last stage). Keys are written in a fixed order, so the same entries
    and files give the same bytes.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.

    Returns
    -------
    dict
        The record written (``{}``, nothing written, when the folder has no ``run.json``).
    """

    path = Path(run_dir) / RECORD_NAME
    record = read_json_or_empty(path)
    if not record:
        return record
    entries = sorted(record.get("notebooks", []), key=lambda e: e.get("notebook", ""))
    stale = []
    all_states = stage_states(run_dir, {"notebooks": entries}, record.get("study_notebooks"))
    states = {st.notebook: st for st in all_states}
    for entry in entries:
        state = states[entry.get("notebook", "")]
        for key in ("stale", "stale_because", "modified_after"):
            entry.pop(key, None)
        if state.state == "stale":
            entry["stale"], entry["stale_because"] = True, list(state.reasons)
            stale.append(Path(entry["notebook"]).stem)
        elif state.state == "modified":
            entry["modified_after"] = list(state.reasons)
    groups = settings_groups(entries)
    last = groups[-1] if groups else record
    behind = {Path(st.notebook).stem: st.state for st in all_states if not st.up_to_date}
    out = {"up_to_date": not behind, "not_up_to_date": behind,
           "profile": last.get("profile"), "seed": last.get("seed"), "overrides": last.get("overrides") or {},
           "settings": groups, "stale_stages": stale}
    out.update({k: v for k, v in record.items() if k not in out and k not in ("notebooks", "results")})
    out["notebooks"] = entries
    out["results"] = record.get("results", {})
    write_json(path, out)
    return out
