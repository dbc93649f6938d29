"""The study runner: executes every numbered notebook in ``notebooks/`` in order with papermill
into one run folder, with a parameter profile.

    python -m mammo_lib.study.runner --profile default --name default
    python -m mammo_lib.study.runner --profile smoke --name ci-smoke
    python -m mammo_lib.study.runner --profile default --name mias \
        -p source_kind=mias -p source_path=../shared/data/mini-mias

Override values that name an existing file or folder relative to where the command runs are
made absolute (the notebooks themselves run with ``notebooks/`` as working directory).

Profiles live beside the notebooks, one file per notebook: ``notebooks/params/<stem>.json``
maps a profile name (``smoke``, ``default``, ``long``, ``paper``) to that notebook's parameters. Every
notebook also receives ``run_dir`` (absolute) and ``seed``. Later stages only add a notebook and
its params file; the runner needs no change for them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from mammo_lib import run_lock
from mammo_lib.checkout import NOTEBOOK_DIR, REPO_ROOT
from mammo_lib.clock import now_iso
from mammo_lib.fileio import read_json_or_empty
from mammo_lib.study import provenance
from mammo_lib.study import state as run_state
from mammo_lib.study.checks import check_planned
from mammo_lib.study.parameters import (
    ParameterError,
    ParameterSpec,
    convert_value,
    parameter_specs,
    split_override,
)
from mammo_lib.study.report import build_report
from mammo_lib.study.run_stage import PlannedStage, StudyError, StudyInterrupted, run_stage
from mammo_lib.study.settings import DEFAULT_PROFILE, Settings, check_seed, resolve_settings

PROFILES = ("smoke", "default", "long", "paper")
RUN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


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
    (:mod:`mammo_lib.study.parameters`); this loose form is for callers without a notebook at hand.

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


def _known_specs(specs: dict[Path, dict[str, ParameterSpec]]) -> dict[str, ParameterSpec]:
    known: dict[str, ParameterSpec] = {}
    for nb_specs in specs.values():
        for name, spec in nb_specs.items():
            known.setdefault(name, spec)
    return known


def _typed_overrides(overrides: dict, specs: dict[Path, dict[str, ParameterSpec]], selected: list[Path],
                     log=print) -> dict:
    """Every override converted by the type the study's notebooks declare; errors collected, one
    message. A parameter no notebook declares is an error; one that only notebooks not being run
    declare is kept (it is recorded, and inherited by later reruns) with a warning."""
    known = _known_specs(specs)
    unknown = sorted(set(overrides) - set(known))
    if "run_dir" in overrides:
        raise StudyError("-p run_dir: the run folder is chosen with --name (and --runs-root), not as a parameter")
    if unknown:
        raise StudyError(
            f"-p/--params-file {', '.join(unknown)}: no notebook of the study declares "
            f"{'this parameter' if len(unknown) == 1 else 'these parameters'} (check the spelling "
            "against the parameters cells or notebooks/params/*.json)"
        )
    used_here = set().union(*(specs[nb] for nb in selected)) if selected else set()
    idle = sorted(set(overrides) - used_here - {"seed"})
    for key in idle:
        users = [nb.stem for nb, nb_specs in specs.items() if key in nb_specs]
        log(f"warning: -p {key}: ignored, no notebook being run ({', '.join(nb.stem for nb in selected)}) "
            f"uses it; it is a parameter of {', '.join(users)} (rerun {'that stage' if len(users) == 1 else 'those'} "
            "to use it)")
    typed, problems = {}, []
    for key, raw in overrides.items():
        try:
            typed[key] = convert_value(known[key], raw)
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise StudyError("\n".join(problems))
    return absolute_path_values(typed)


def _notebook_parameters(nb: Path, specs: dict[str, ParameterSpec], settings: Settings,
                         run_dir: Path) -> tuple[dict, dict]:
    """(the parameters injected into the notebook, every value it will use)."""
    params = {k: _relative_to_run(v, nb.parent, run_dir)
              for k, v in profile_parameters(nb, settings.profile).items()}
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise StudyError(f"{nb.name}: profile {settings.profile!r} sets parameters the notebook does not declare: "
                         f"{unknown}")
    params.update({key: val for key, val in settings.overrides.items() if key in specs and key != "seed"})
    params["run_dir"] = "."  # notebooks run inside the run folder
    if "seed" in specs:
        params["seed"] = settings.seed
    used = {name: spec.default for name, spec in specs.items()}
    used.update(params)
    return params, used


def _check_values(planned: list[PlannedStage], specs: dict[Path, dict[str, ParameterSpec]], run_dir: Path) -> None:
    """Every value every planned notebook will use, checked before any work
    (:func:`mammo_lib.study.checks.check_planned`); all problems in one message."""

    origins = {}
    for stage in planned:
        origins[stage.notebook] = {k: f"profile {stage.settings.profile}"
                                   for k in profile_parameters(stage.notebook, stage.settings.profile)}
        origins[stage.notebook].update({k: "-p" for k in stage.settings.overrides})
    problems = check_planned(planned, specs, run_dir, origins)
    if problems:
        raise StudyError("\n".join(problems))


def _forget_earlier_results(run_dir: Path) -> None:
    """Before any run into an existing folder: the report and the rerun check describe the folder
    as it was, so they go (the report is written anew at the end)."""
    shutil.rmtree(run_dir / "report", ignore_errors=True)
    (run_dir / "verify.json").unlink(missing_ok=True)


def _plan(notebook_dir: Path, only, start_from, stale: bool, profile, seed, overrides, inherit: bool,
          run_dir: Path, log) -> tuple[list[PlannedStage], Settings]:
    """Every check that needs no lock: notebooks, names, types, ranges, generators."""
    if profile is not None and profile not in PROFILES:
        raise StudyError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    notebooks = discover_notebooks(notebook_dir)
    selected = notebooks if stale else _select(notebooks, only, start_from)
    partial = stale or bool(only) or bool(start_from)
    record = read_json_or_empty(run_dir / provenance.RECORD_NAME)
    if stale and not record.get("notebooks"):
        raise StudyError(f"--stale: {run_dir / provenance.RECORD_NAME} records no stage; run the study first")
    try:
        specs = {nb: parameter_specs(nb, list(_profiles_table(nb).values())) for nb in notebooks}
        given = _typed_overrides(dict(overrides or {}), specs, selected, log)
    except ParameterError as exc:
        raise StudyError(str(exc)) from None
    where = "--seed"
    if "seed" in given:
        seed, where = given.pop("seed"), "-p seed="
    try:
        seed = check_seed(seed, where) if seed is not None else None
    except ValueError as exc:
        raise StudyError(str(exc)) from None
    settings = resolve_settings(selected, record, inherit=inherit and partial, profile=profile, seed=seed,
                                overrides=given)
    names = [nb.name for nb in notebooks]
    planned = []
    for nb in selected:  # a stage records only the overrides it declares (what it ran with)
        own = settings[nb.name]
        own = Settings(own.profile, own.seed, {k: v for k, v in own.overrides.items() if k in specs[nb]})
        params, used = _notebook_parameters(nb, specs[nb], own, run_dir)
        planned.append(PlannedStage(nb, own, params, used, names))
    _check_values(planned, specs, run_dir)
    first = planned[0].settings if planned else Settings()
    return planned, first


def run_study(
    profile: str | None = None,
    name: str | None = None,
    runs_root: Path | str = REPO_ROOT / "runs",
    overrides: dict | None = None,
    only: list[str] | None = None,
    start_from: str | None = None,
    seed: int | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
    log=print,
    report: bool = True,
    stale: bool = False,
    inherit: bool = True,
) -> Path:
    """Execute the numbered notebooks in order into ``runs_root/name``.

    Every check (profile, parameter names, types and ranges, stage 02's generators, the seed)
    happens before anything is written, so a mistyped command leaves nothing behind. The run
    then holds the folder's lock (:mod:`mammo_lib.run_lock`) to its end. Each stage first
    removes what it will rewrite (:func:`mammo_lib.study.state.clear_stage_outputs`), runs with the
    run folder as its working directory and ``run_dir="."``, and is recorded in ``run.json``
    with its settings, parameters and the digests of what it read and wrote; ``timings.json``
    holds how long it took.

    Parameters
    ----------
    profile : {"smoke", "default", "long", "paper"}, optional
        The parameter profile (``notebooks/params/<stem>.json``); None: ``"default"`` for a full
        run, the recorded one for a partial rerun.
    name : str, optional
        Run folder name under ``runs_root`` (default: the profile, else ``"default"``).
    runs_root : str or pathlib.Path
        Folder of run folders.
    overrides : dict, optional
        ``{key: value}`` for any parameter any notebook declares; a ``str`` value is converted
        by the parameter's declared type (as typed after ``-p key=``), any other value must
        already fit it. ``seed`` sets the study seed.
    only, start_from : optional
        Run only notebooks whose names start with these / start at this one; the records of the
        others are kept.
    seed : int, optional
        The study seed in [0, 2**32 - 1] (``overrides["seed"]`` wins); None: 0 for a full run,
        the recorded one for a partial rerun.
    notebook_dir : pathlib.Path
        The folder of numbered notebooks and their ``params/``.
    log : callable
        Receives one progress line per notebook.
    report : bool
        Write ``report/index.html`` at the end (:func:`mammo_lib.study.report.build_report`).
    stale : bool
        Rerun exactly the stages that are not up to date (stale, failed, interrupted or never
        run; judged before each stage, so a rerun that changes its outputs makes later stages
        stale in turn), as ``make`` would.
    inherit : bool
        A partial rerun starts from each stage's recorded settings (:mod:`mammo_lib.study.settings`);
        False uses only what is given (``make verify`` replays each stage's settings this way).

    Returns
    -------
    pathlib.Path
        The run folder.

    Raises
    ------
    StudyError
        Unknown profile, unknown, ill-typed or out-of-range parameter or seed, unusable
        generator (nothing written), a failing notebook (``run.json`` records the notebook,
        cell and exception), or ``--stale`` on a folder without a record.
    mammo_lib.run_lock.RunFolderBusy
        When another live process holds the run folder.
    StudyInterrupted
        On Ctrl-C (``run.json`` records the stage as interrupted).
    """
    notebook_dir = Path(notebook_dir).resolve()
    name = name or profile or DEFAULT_PROFILE
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise StudyError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only (it names a folder "
                         f"under {runs_root}, never a path)")
    run_dir = (Path(runs_root) / name).resolve()
    planned, first = _plan(notebook_dir, only, start_from, stale, profile, seed, overrides, inherit, run_dir, log)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock.holding(run_dir):
        _forget_earlier_results(run_dir)
        code = provenance.code_state(REPO_ROOT)
        provenance.start_invocation(run_dir, first.to_json(), REPO_ROOT, planned[0].all_names if planned else None)
        provenance.update_timings(run_dir, started=now_iso(), finished=None)
        log(f"study: profile={first.profile} seed={first.seed} run folder={run_dir} ({len(planned)} notebooks"
            + (", stale ones only)" if stale else ")"))
        try:
            for k, stage in enumerate(planned, start=1):
                if stale:
                    state = run_state.entry_state(run_dir, _entry(run_dir, stage.notebook.name), stage.notebook.name)
                    if state.up_to_date:
                        log(f"[{k}/{len(planned)}] {stage.notebook.stem} up to date")
                        continue
                    log(f"[{k}/{len(planned)}] {stage.notebook.stem}: {state.state}"
                        + (f" ({'; '.join(state.reasons)})" if state.reasons else ""))
                run_stage(run_dir, stage, {"git_commit": code["git_commit"], "dirty": code["dirty"]},
                           log, k, len(planned))
        except StudyError:
            if report:  # the report of a failed run says so, and names what is missing

                build_report(run_dir)
            raise
        provenance.update_timings(run_dir, finished=now_iso())
        if report:

            index = build_report(run_dir)
            log(f"report: {index}")
    log(f"study finished: {run_dir}")
    return run_dir


def _entry(run_dir: Path, notebook: str) -> dict | None:
    record = read_json_or_empty(run_dir / provenance.RECORD_NAME)
    return next((e for e in record.get("notebooks", []) if e.get("notebook") == notebook), None)


def main(argv: list[str] | None = None) -> int:
    """``mammo-study`` / ``python -m mammo_lib.study.runner``: run the study; exit 1 with the reason on failure.

    ``mammo-study readers add|list|revoke|progress ...`` is the study coordinator's command
    (:mod:`mammo_lib.reader_study.readers_cli`).
    """
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["readers"]:
        from mammo_lib.reader_study.readers_cli import main as readers_main

        return readers_main(args_in[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The study coordinator's command: mammo-study readers add|list|revoke|progress ... "
               "(mammo-study readers --help).")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help="parameter profile (default: 'default' for a whole run; a partial rerun keeps the "
                             "recorded one)")
    parser.add_argument("--name", default=None, help="run folder name under runs/ (default: the profile)")
    parser.add_argument("--runs-root", default=None, help=f"folder of run folders (default: {REPO_ROOT / 'runs'})")
    parser.add_argument("--notebooks", default=str(NOTEBOOK_DIR),
                        help="folder of the numbered notebooks and params/ (default: this checkout's notebooks/)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every notebook that declares it; the value is converted "
                             "by the parameter's declared type (true/false, null, [\"a\", \"b\"], numbers, text)")
    parser.add_argument("--params-file", default=None, metavar="JSON",
                        help="a JSON object {parameter: value} of overrides (e.g. stage 02's generators list); "
                             "-p wins over it")
    parser.add_argument("--only", nargs="*", default=None,
                        help="rerun only notebooks whose name starts with these (settings: as recorded, unless given)")
    parser.add_argument("--from", dest="start_from", default=None,
                        help="rerun from this notebook on (earlier outputs are reused; settings: as recorded, "
                             "unless given)")
    parser.add_argument("--stale", action="store_true",
                        help="rerun exactly the stages that are stale, failed, interrupted or not run, in order")
    parser.add_argument("--seed", type=int, default=None,
                        help="study seed in [0, 4294967295] (default: 0 for a whole run, the recorded one for a rerun)")
    parser.add_argument("--no-report", action="store_true", help="do not write report/index.html at the end")
    args = parser.parse_args(args_in)
    return _run_cli(args)


def _run_cli(args: argparse.Namespace) -> int:
    """Run what the parsed command asks; one line on stderr for every way it can end badly."""
    import logging
    import signal

    def interrupted(signum, frame):  # Ctrl-C: silence the libraries' shutdown chatter, then stop
        logging.disable(logging.CRITICAL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the record short
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        overrides = read_params_file(args.params_file) if args.params_file else {}
        for item in args.param:
            key, raw = split_override(item)
            overrides[key] = raw
        if "seed" in overrides and args.seed is not None and str(overrides["seed"]).strip() != str(args.seed):
            raise StudyError(f"--seed {args.seed} and -p seed={overrides['seed']} disagree: give the seed once")
        run_study(profile=args.profile, name=args.name, runs_root=args.runs_root or REPO_ROOT / "runs",
                  overrides=overrides, only=args.only, start_from=args.start_from, seed=args.seed,
                  notebook_dir=Path(args.notebooks), report=not args.no_report, stale=args.stale)
    except (StudyError, ParameterError, run_lock.RunFolderBusy) as exc:
        print(f"\nstudy failed: {exc}", file=sys.stderr)
        return 1
    except StudyInterrupted as exc:
        print(f"\n{exc.message()}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted before any stage started; nothing was changed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
