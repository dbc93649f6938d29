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
import os
import re
import shutil
import sys
import time
from pathlib import Path

from mammo_lib import provenance
from mammo_lib.fileio import read_json_or_empty, write_json
from mammo_lib.parameters import (
    ParameterError,
    ParameterSpec,
    convert_value,
    parameter_specs,
    split_override,
)
from mammo_lib.run_results import headline_results

#: the checkout this module sits in; an installed package passes ``--notebooks`` instead
REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "default", "paper")
RUN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class StudyError(RuntimeError):
    """The study could not run: a bad profile or parameter (before any notebook ran), or a
    notebook failed (the message names the notebook and the cell)."""


def discover_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.ipynb``) in execution order.

    Raises
    ------
    StudyError
        When the folder holds no numbered notebook (e.g. an installed package without
        ``--notebooks`` pointing at a checkout's ``notebooks/``).
    """
    found = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not found:
        raise StudyError(f"no numbered notebooks (NN_name.ipynb) found in {notebook_dir}; pass "
                         "--notebooks pointing at the notebooks/ folder of a mammo-synth-study checkout")
    return found


def _profiles_table(notebook: Path) -> dict:
    import json

    params_file = notebook.parent / "params" / f"{notebook.stem}.json"
    if not params_file.exists():
        return {}
    try:
        return json.loads(params_file.read_text())
    except json.JSONDecodeError as exc:
        raise StudyError(f"{params_file} is not valid JSON: {exc}") from exc


def profile_parameters(notebook: Path, profile: str) -> dict:
    """The parameters of one notebook for one profile (empty when the notebook has no params file).

    Raises
    ------
    StudyError
        When the params file is not valid JSON or lacks the profile.
    """
    table = _profiles_table(notebook)
    if not table:
        return {}
    if profile not in table:
        raise StudyError(f"{notebook.parent / 'params' / notebook.stem}.json has no profile {profile!r}; "
                         f"it has {sorted(table)}")
    return dict(table[profile])


def parse_overrides(items: list[str]) -> dict:
    """``-p key=value`` pairs with each value read loosely (JSON where it parses, else text).

    The runner itself keeps the text and converts it by the parameter's declared type
    (:mod:`mammo_lib.parameters`); this loose form is for callers without a notebook at hand.

    Raises
    ------
    StudyError
        When an item has no ``=``.
    """
    import json

    out = {}
    for item in items:
        try:
            key, raw = split_override(item)
        except ParameterError as exc:
            raise StudyError(str(exc)) from None
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    return set(parameter_specs(notebook))


#: keys of nested items (e.g. a generator of stage 02) whose values name files or folders
NESTED_PATH_KEYS = ("path", "metadata")


def _absolute(value):
    if isinstance(value, str) and value and not Path(value).is_absolute() and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _absolute_nested(value):
    if isinstance(value, list):
        return [_absolute_nested(v) for v in value]
    if isinstance(value, dict):
        return {k: _absolute(v) if k in NESTED_PATH_KEYS else _absolute_nested(v) for k, v in value.items()}
    return value


def absolute_path_values(overrides: dict) -> dict:
    """Make override values that name an existing file or folder (relative to the caller's working
    directory) absolute: notebooks run in the run folder, not where the command was typed. Inside
    lists and dicts (e.g. stage 02's ``generators``) the values of ``path`` and ``metadata`` keys
    are made absolute the same way."""
    return {key: _absolute(value) if isinstance(value, str) else _absolute_nested(value)
            for key, value in overrides.items()}


def read_params_file(path: str | os.PathLike) -> dict:
    """``--params-file``: a JSON object ``{parameter: value}`` of overrides, values already typed.

    Raises
    ------
    StudyError
        When the file is missing, not JSON, or not an object.
    """
    import json

    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise StudyError(f"--params-file {path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise StudyError(f"--params-file {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StudyError(f"--params-file {path}: must hold a JSON object {{\"parameter\": value, ...}}")
    return data


def _relative_to_run(value, notebook_dir: Path, run_dir: Path):
    """A profile value naming an existing path relative to ``notebooks/`` (where the profiles are
    written), re-expressed relative to the run folder (where notebooks run)."""
    if isinstance(value, str) and value and not Path(value).is_absolute() and (notebook_dir / value).exists():
        return os.path.relpath((notebook_dir / value).resolve(), run_dir)
    return value


def _select(notebooks: list[Path], only: list[str] | None, start_from: str | None) -> list[Path]:
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
    return notebooks


def _typed_overrides(overrides: dict, specs: dict[Path, dict[str, ParameterSpec]]) -> dict:
    """Every override converted by the type its notebooks declare; errors collected, one message."""
    known: dict[str, ParameterSpec] = {}
    for nb_specs in specs.values():
        for name, spec in nb_specs.items():
            known.setdefault(name, spec)
    unused = sorted(set(overrides) - set(known))
    if unused:
        raise StudyError(
            f"-p {', '.join(unused)}: no notebook being run declares "
            f"{'this parameter' if len(unused) == 1 else 'these parameters'} (check the spelling "
            "against the parameters cells or notebooks/params/*.json)"
        )
    typed, problems = {}, []
    for key, raw in overrides.items():
        try:
            typed[key] = convert_value(known[key], raw)
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise StudyError("\n".join(problems))
    return absolute_path_values(typed)


def _notebook_parameters(nb: Path, specs: dict[str, ParameterSpec], profile: str, overrides: dict,
                         seed: int, run_dir: Path) -> tuple[dict, dict]:
    """(the parameters injected into the notebook, every value it will use)."""
    params = {k: _relative_to_run(v, nb.parent, run_dir) for k, v in profile_parameters(nb, profile).items()}
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise StudyError(f"{nb.name}: profile {profile!r} sets parameters the notebook does not declare: {unknown}")
    params.update({key: val for key, val in overrides.items() if key in specs and key != "seed"})
    params["run_dir"] = "."  # notebooks run inside the run folder
    if "seed" in specs:
        params["seed"] = seed
    used = {name: spec.default for name, spec in specs.items()}
    used.update(params)
    return params, used


def _forget_earlier_run(run_dir: Path, notebooks: list[Path]) -> None:
    """Before a run into an existing folder: remove what would describe an earlier run as this one
    (the report, the rerun check, the executed copies and timings of the notebooks about to run).
    Stage outputs stay: each stage replaces its own, and human ratings are never touched."""
    shutil.rmtree(run_dir / "report", ignore_errors=True)
    (run_dir / "verify.json").unlink(missing_ok=True)
    timings = read_json_or_empty(run_dir / provenance.TIMINGS_NAME)
    for nb in notebooks:
        (run_dir / nb.name).unlink(missing_ok=True)
        (timings.get("notebooks") or {}).pop(nb.name, None)
    if timings:
        write_json(run_dir / provenance.TIMINGS_NAME, timings)


def _execute(nb: Path, run_dir: Path, params: dict) -> dict | None:
    """Run one notebook in the run folder; None when it succeeded, else the error record."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    os.environ[provenance.RUNNER_ENV] = "1"
    try:
        pm.execute_notebook(str(nb), str(run_dir / nb.name), parameters=params, cwd=str(run_dir),
                            kernel_name="python3", language="python", progress_bar=False, log_output=False)
    except PapermillExecutionError as exc:
        return {"cell": exc.cell_index, "execution_count": exc.exec_count, "exception": exc.ename,
                "message": str(exc.evalue)}
    finally:
        os.environ.pop(provenance.RUNNER_ENV, None)
        _canonical_executed_copy(nb, run_dir / nb.name)
    return None


def _canonical_executed_copy(source: Path, executed: Path) -> None:
    """Make an executed notebook independent of where the run folder is: papermill's input and
    output paths relative (to the checkout and the run folder) and a fixed id for its injected
    parameters cell (papermill draws a random one), so reruns compare byte for byte."""
    import nbformat

    from mammo_lib.fileio import atomic_write_text

    if not executed.exists():
        return
    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    meta["input_path"] = f"{source.parent.name}/{source.name}"
    meta["output_path"] = executed.name
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["id"] = "injected-parameters"
    atomic_write_text(executed, nbformat.writes(nb))


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
    report: bool = True,
) -> Path:
    """Execute the numbered notebooks in order into ``runs_root/name``.

    Every check (profile, parameter names and types) happens before the run folder is created,
    so a mistyped command leaves nothing behind. Each notebook runs with the run folder as its
    working directory and ``run_dir="."``; ``run.json`` records what each one used, and
    ``timings.json`` how long it took.

    Parameters
    ----------
    profile : {"smoke", "default", "paper"}
        The parameter profile (``notebooks/params/<stem>.json``).
    name : str, optional
        Run folder name under ``runs_root`` (default: the profile).
    runs_root : str or pathlib.Path
        Folder of run folders.
    overrides : dict, optional
        ``{key: value}``; a ``str`` value is converted by the parameter's declared type (as typed
        after ``-p key=``), any other value must already fit it. ``seed`` sets the study seed.
    only, start_from : optional
        Run only notebooks whose names start with these / start at this one; the records of the
        others are kept.
    seed : int
        The study seed (``overrides["seed"]`` wins).
    notebook_dir : pathlib.Path
        The folder of numbered notebooks and their ``params/``.
    log : callable
        Receives one progress line per notebook.
    report : bool
        Write ``report/index.html`` at the end (:func:`mammo_lib.report.build_report`).

    Returns
    -------
    pathlib.Path
        The run folder.

    Raises
    ------
    StudyError
        Unknown profile, unknown or ill-typed parameter (nothing written), or a failing
        notebook (``run.json`` records the notebook, cell and exception).
    """
    if profile not in PROFILES:
        raise StudyError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    notebook_dir = Path(notebook_dir).resolve()
    notebooks = _select(discover_notebooks(notebook_dir), only, start_from)
    try:
        specs = {nb: parameter_specs(nb, list(_profiles_table(nb).values())) for nb in notebooks}
        typed = _typed_overrides(dict(overrides or {}), specs)
    except ParameterError as exc:
        raise StudyError(str(exc)) from None
    seed = int(typed.get("seed", seed))
    name = name or profile
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise StudyError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only (it names a folder "
                         f"under {runs_root}, never a path)")
    run_dir = (Path(runs_root) / name).resolve()
    rerun = {nb.name for nb in notebooks}
    planned = [(nb, *_notebook_parameters(nb, specs[nb], profile, typed, seed, run_dir)) for nb in notebooks]

    run_dir.mkdir(parents=True, exist_ok=True)
    _forget_earlier_run(run_dir, notebooks)
    previous = read_json_or_empty(run_dir / provenance.RECORD_NAME)  # kept on --from/--only
    record = provenance.base_record(profile, seed, typed, REPO_ROOT)
    record["notebooks"] = [e for e in previous.get("notebooks", []) if e.get("notebook") not in rerun]
    record["results"] = {k: v for k, v in previous.get("results", {}).items() if f"{k}.ipynb" not in rerun}
    write_json(run_dir / provenance.RECORD_NAME, record)
    provenance.update_timings(run_dir, started=provenance.now_iso(), finished=None)
    log(f"study: profile={profile} run folder={run_dir} ({len(planned)} notebooks)")
    for k, (nb, params, used) in enumerate(planned, start=1):
        log(f"[{k}/{len(planned)}] {nb.stem} ...")
        t0 = time.perf_counter()
        error = _execute(nb, run_dir, params)
        entry = {"notebook": nb.name, "status": "failed" if error else "ok", "parameters": used}
        if error:
            entry["error"] = error
        provenance.update_notebook_entry(run_dir, entry)
        provenance.update_timings(run_dir, notebooks={nb.name: {"seconds": round(time.perf_counter() - t0, 1)}})
        if not error:
            provenance.update_results(run_dir, nb.stem, headline_results(run_dir, nb.stem))
        if error:
            log(f"[{k}/{len(planned)}] {nb.stem} FAILED")
            if report:  # the report of a failed run says so, and names what is missing
                from mammo_lib.report import build_report

                build_report(run_dir)
            raise StudyError(
                f"notebook {nb.name} failed in cell {error['cell']} (execution count {error['execution_count']}): "
                f"{error['exception']}: {error['message']}\n  executed copy with the full traceback: {run_dir / nb.name}"
            )
        log(f"[{k}/{len(planned)}] {nb.stem} ok ({time.perf_counter() - t0:.1f} s)")
    provenance.update_timings(run_dir, finished=provenance.now_iso())
    if report:
        from mammo_lib.report import build_report

        index = build_report(run_dir)
        log(f"report: {index}")
    log(f"study finished: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """``mammo-study`` / ``python -m mammo_lib.runner``: run the study; exit 1 with the reason on failure.

    ``mammo-study readers add|list|revoke|progress ...`` is the study coordinator's command
    (:mod:`mammo_lib.readers_cli`).
    """
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["readers"]:
        from mammo_lib.readers_cli import main as readers_main

        return readers_main(args_in[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The study coordinator's command: mammo-study readers add|list|revoke|progress ... "
               "(mammo-study readers --help).")
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--name", default=None, help="run folder name under runs/ (default: the profile)")
    parser.add_argument("--runs-root", default=str(REPO_ROOT / "runs"))
    parser.add_argument("--notebooks", default=str(NOTEBOOK_DIR),
                        help="folder of the numbered notebooks and params/ (default: this checkout's notebooks/)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every notebook that declares it; the value is converted "
                             "by the parameter's declared type (true/false, null, [\"a\", \"b\"], numbers, text)")
    parser.add_argument("--params-file", default=None, metavar="JSON",
                        help="a JSON object {parameter: value} of overrides (e.g. stage 02's generators list); "
                             "-p wins over it")
    parser.add_argument("--only", nargs="*", default=None, help="run only notebooks whose name starts with these")
    parser.add_argument("--from", dest="start_from", default=None,
                        help="start at this notebook (earlier outputs in the run folder are reused)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-report", action="store_true", help="do not write report/index.html at the end")
    args = parser.parse_args(args_in)
    try:
        overrides = read_params_file(args.params_file) if args.params_file else {}
        for item in args.param:
            key, raw = split_override(item)
            overrides[key] = raw
        if "seed" in overrides and args.seed != 0 and str(overrides["seed"]).strip() != str(args.seed):
            raise StudyError(f"--seed {args.seed} and -p seed={overrides['seed']} disagree: give the seed once")
        run_study(profile=args.profile, name=args.name, runs_root=args.runs_root, overrides=overrides,
                  only=args.only, start_from=args.start_from, seed=args.seed,
                  notebook_dir=Path(args.notebooks), report=not args.no_report)
    except (StudyError, ParameterError) as exc:
        print(f"\nstudy failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
