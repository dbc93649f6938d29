"""The study runner: executes every numbered notebook in ``notebooks/`` in order with papermill
into one run folder, with a parameter profile.

    python -m mammo_lib.runner --profile default --name default
    python -m mammo_lib.runner --profile smoke --name ci-smoke
    python -m mammo_lib.runner --profile default --name mias \
        -p source_kind=mias -p source_path=../shared/data/mini-mias

Override values that name an existing file or folder relative to where the command runs are
made absolute (the notebooks themselves run with ``notebooks/`` as working directory).

Profiles live beside the notebooks, one file per notebook: ``notebooks/params/<stem>.json``
maps a profile name (``smoke``, ``default``, ``paper``) to that notebook's parameters. Every
notebook also receives ``run_dir`` (absolute) and ``seed``. Later stages only add a notebook and
its params file; the runner needs no change for them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "default", "paper")


class StudyError(RuntimeError):
    """A notebook of the study failed; the message names the notebook and the cell."""


def discover_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.ipynb``) in execution order."""
    found = sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not found:
        raise StudyError(f"no numbered notebooks (NN_name.ipynb) found in {notebook_dir}")
    return found


def profile_parameters(notebook: Path, profile: str) -> dict:
    """The parameters of one notebook for one profile (empty when the notebook has no params file)."""
    params_file = notebook.parent / "params" / f"{notebook.stem}.json"
    if not params_file.exists():
        return {}
    try:
        table = json.loads(params_file.read_text())
    except json.JSONDecodeError as exc:
        raise StudyError(f"{params_file} is not valid JSON: {exc}") from exc
    if profile not in table:
        raise StudyError(
            f"{params_file} has no profile {profile!r}; it has {sorted(table)}"
        )
    return dict(table[profile])


def parse_overrides(items: list[str]) -> dict:
    """``-p key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, bools)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise StudyError(f"parameter override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import tempfile

    import nbformat
    import papermill as pm

    nb = nbformat.read(notebook, as_version=4)
    if "kernelspec" not in nb.metadata:  # papermill's inspection needs one to pick a translator
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / notebook.name
        nbformat.write(nb, copy)
        return set(pm.inspect_notebook(str(copy)).keys())


def absolute_path_values(overrides: dict) -> dict:
    """Make override values that name an existing file or folder (relative to the caller's working
    directory) absolute: notebooks run with ``notebooks/`` as their working directory."""
    out = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value and not Path(value).is_absolute() and Path(value).exists():
            value = str(Path(value).resolve())
        out[key] = value
    return out


def _package_versions() -> dict:
    from importlib import metadata

    versions = {}
    for dist in ("mammo-synth-study", "torch", "numpy", "scipy", "scikit-learn", "pydicom", "zarr",
                 "dask", "openTSNE", "papermill", "pandas"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _earlier_entries(record_path: Path, rerun: set[str]) -> list[dict]:
    """Entries of an earlier run.json for notebooks not rerun now (``--from``/``--only`` keep them)."""
    if not record_path.exists():
        return []
    try:
        previous = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [e for e in previous.get("notebooks", []) if e.get("notebook") not in rerun]


def _save_record(record_path: Path, record: dict, entry: dict | None = None) -> None:
    from mammo_lib.fileio import atomic_write_text

    if entry is not None:
        record["notebooks"].append(entry)
        record["notebooks"].sort(key=lambda e: e["notebook"])
    atomic_write_text(record_path, json.dumps(record, indent=2))


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        return "unknown"


def run_study(
    profile: str = "default",
    name: str | None = None,
    runs_root: Path | str = REPO_ROOT / "runs",
    overrides: dict | None = None,
    only: list[str] | None = None,
    start_from: str | None = None,
    seed: int = 0,
    notebook_dir: Path = NOTEBOOK_DIR,
    log=print,
) -> Path:
    """Execute the numbered notebooks in order into ``runs_root/name``; return the run folder."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    if profile not in PROFILES:
        raise StudyError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    name = name or profile
    run_dir = (Path(runs_root) / name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    notebooks = discover_notebooks(notebook_dir)
    if start_from:
        stems = [nb.stem for nb in notebooks]
        matches = [i for i, s in enumerate(stems) if s.startswith(start_from)]
        if not matches:
            raise StudyError(f"--from {start_from!r} matches no notebook in {stems}")
        notebooks = notebooks[matches[0]:]
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
        if not notebooks:
            raise StudyError(f"--only {only} matches no notebook")
    overrides = absolute_path_values(overrides or {})
    seed = int(overrides.pop("seed", seed))
    declared_by = {nb: declared_parameters(nb) for nb in notebooks}
    unused = sorted(set(overrides) - set().union(*declared_by.values()))
    if unused:
        raise StudyError(
            f"-p {', '.join(unused)}: no notebook being run declares "
            f"{'this parameter' if len(unused) == 1 else 'these parameters'} (check the spelling "
            "against the parameters cells or notebooks/params/*.json)"
        )
    record_path = run_dir / "run.json"
    earlier = _earlier_entries(record_path, {nb.name for nb in notebooks})
    record = {
        "profile": profile,
        "name": name,
        "seed": seed,
        "overrides": overrides,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "packages": _package_versions(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "notebooks": list(earlier),
    }
    total = len(notebooks)
    log(f"study: profile={profile} run folder={run_dir} ({total} notebooks)")
    for k, nb in enumerate(notebooks, start=1):
        params = profile_parameters(nb, profile)
        declared = declared_by[nb]
        params.update({key: val for key, val in overrides.items() if key in declared})
        params["run_dir"] = str(run_dir)
        if "seed" in declared and "seed" not in params:
            params["seed"] = seed
        unknown = sorted(set(params) - declared)
        if unknown:
            raise StudyError(
                f"{nb.name}: profile {profile!r} sets parameters the notebook does not declare: {unknown}"
            )
        out_nb = run_dir / nb.name
        log(f"[{k}/{total}] {nb.stem} ...", end=" ", flush=True) if log is print else log(f"[{k}/{total}] {nb.stem} ...")
        t0 = time.perf_counter()
        entry = {"notebook": nb.name, "parameters": params}
        try:
            pm.execute_notebook(
                str(nb),
                str(out_nb),
                parameters=params,
                cwd=str(nb.parent),
                kernel_name="python3",
                language="python",
                progress_bar=False,
                log_output=False,
            )
        except PapermillExecutionError as exc:
            entry.update(status="failed", seconds=round(time.perf_counter() - t0, 1))
            _save_record(record_path, record, entry)
            msg = (
                f"notebook {nb.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
                f"{exc.ename}: {exc.evalue}\n  executed copy with the full traceback: {out_nb}"
            )
            log("FAILED")
            raise StudyError(msg) from None
        seconds = time.perf_counter() - t0
        entry.update(status="ok", seconds=round(seconds, 1))
        _save_record(record_path, record, entry)
        log(f"ok ({seconds:.1f} s)")
    record["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    _save_record(record_path, record)
    log(f"study finished: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--name", default=None, help="run folder name under runs/ (default: the profile)")
    parser.add_argument("--runs-root", default=str(REPO_ROOT / "runs"))
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every notebook that declares it")
    parser.add_argument("--only", nargs="*", default=None, help="run only notebooks whose name starts with these")
    parser.add_argument("--from", dest="start_from", default=None,
                        help="start at this notebook (earlier outputs in the run folder are reused)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        run_study(
            profile=args.profile,
            name=args.name,
            runs_root=args.runs_root,
            overrides=parse_overrides(args.param),
            only=args.only,
            start_from=args.start_from,
            seed=args.seed,
        )
    except StudyError as exc:
        print(f"\nstudy failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
