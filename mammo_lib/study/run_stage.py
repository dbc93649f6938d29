"""Running one stage of the study: the notebook executed by papermill in the run folder, what
it replaces cleared first, and its entry in ``run.json`` (settings, parameters, digests of what
it read and wrote, status).

The notebook's kernel writes its own standard error (kernel start-up notices, messages of C
libraries, a crash) to ``<run>/logs/<stem>.kernel.log`` rather than to the terminal; what the
notebook prints is in its executed copy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mammo_lib.checkout import RUNS_DIR
from mammo_lib.fileio import atomic_write_text, json_safe, read_json_or_empty, write_json
from mammo_lib.study import provenance
from mammo_lib.study import state as run_state
from mammo_lib.study.results import headline_results
from mammo_lib.study.settings import Settings

#: the run folder's log folder (not a stage output: never digested nor compared)
LOGS_DIR = "logs"


class StudyError(RuntimeError):
    """The study could not run: a bad profile or parameter (before any notebook ran), or a
    notebook failed (the message names the notebook and the cell)."""


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage; :meth:`message` says what was interrupted, what is kept, and how
    to resume."""

    def __init__(self, run_dir: Path, notebook: Path, seconds: float):
        super().__init__(notebook.stem)
        self.run_dir, self.notebook, self.seconds = run_dir, notebook, seconds

    def message(self) -> str:
        """One line: ``interrupted in stage 02_train_dcgan after 41 s; kept: ...; resume: ...``."""
        kept = [f"the outputs of {', '.join(stems)}"] if (stems := _finished_before(self.run_dir, self.notebook)) else []
        checkpoint = self.run_dir / "dcgan" / "checkpoints" / "last.pt"
        if self.notebook.stem.startswith("02") and checkpoint.exists():
            kept.append(f"the DCGAN checkpoint {checkpoint.relative_to(self.run_dir)} (training resumes from it)")
        return (f"interrupted in stage {self.notebook.stem} after {self.seconds:.0f} s; kept: "
                f"{'; '.join(kept) if kept else 'nothing of this stage'}; resume with: "
                f"{runner_command(self.run_dir, '--from', self.notebook.stem[:2])}  (or --stale)")


#: the runner's module, as commands shown to people name it
RUNNER_MODULE = "mammo_lib.study.runner"


def runner_command(run_dir: Path, *args: str) -> str:
    """The command that runs the study runner on ``run_dir`` with ``args`` (to resume it, to
    rerun what is stale): this Python (relative when it lies below the working directory, as
    ``.venv/bin/python`` does), and ``--runs-root`` unless the folder is under the checkout's
    ``runs/``.

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.
    *args : str
        Further arguments, e.g. ``"--from", "03"``.

    Returns
    -------
    str
        E.g. ``".venv/bin/python -m mammo_lib.study.runner --name default --stale"``.
    """
    import sys


    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd())) if python.is_relative_to(Path.cwd()) else "python"
    except ValueError:
        shown = "python"
    run_dir = Path(run_dir).resolve()
    root = [] if run_dir.parent == RUNS_DIR.resolve() else ["--runs-root", str(run_dir.parent)]
    return " ".join([shown, "-m", RUNNER_MODULE, "--name", run_dir.name, *root, *args])


def _finished_before(run_dir: Path, notebook: Path) -> list[str]:
    record = read_json_or_empty(run_dir / provenance.RECORD_NAME)
    return [Path(e["notebook"]).stem[:2] for e in record.get("notebooks", [])
            if e.get("notebook", "") < notebook.name and str(e.get("status", "")).startswith("ok")]


@dataclass(frozen=True)
class PlannedStage:
    """One notebook about to run.

    Attributes
    ----------
    notebook : pathlib.Path
        The source notebook.
    settings : Settings
        The profile, seed and overrides it runs with.
    params : dict
        The parameters papermill injects.
    used : dict
        Every value the notebook will use (its own defaults included).
    all_names : list of str
        Every notebook name of the study (for stages whose inputs are not declared).
    """

    notebook: Path
    settings: Settings
    params: dict
    used: dict
    all_names: list[str]


def _kernel_manager_class(log_path: Path):
    """An asynchronous kernel manager whose kernel writes its standard error to ``log_path``."""
    from jupyter_client.manager import AsyncKernelManager

    class StageKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):  # noqa: D102 (jupyter_client's)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._stage_log = open(log_path, "w")  # noqa: SIM115 (closed with the kernel)
            kw.setdefault("stderr", self._stage_log)
            return await super().start_kernel(**kw)

        async def shutdown_kernel(self, *args, **kw):  # noqa: D102
            try:
                return await super().shutdown_kernel(*args, **kw)
            finally:
                if getattr(self, "_stage_log", None) is not None:
                    self._stage_log.close()

    return StageKernelManager


def execute_notebook(nb: Path, run_dir: Path, params: dict) -> dict | None:
    """Run one notebook in the run folder with papermill.

    Parameters
    ----------
    nb : pathlib.Path
        The source notebook.
    run_dir : pathlib.Path
        The run folder (the kernel's working directory; the executed copy goes there).
    params : dict
        The parameters to inject.

    Returns
    -------
    dict or None
        None when it succeeded, else ``{"cell", "execution_count", "exception", "message"}``.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C (the kernel, in a session of its own, is shut down, not interrupted).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    os.environ[provenance.RUNNER_ENV] = "1"
    try:
        pm.execute_notebook(str(nb), str(run_dir / nb.name), parameters=params, cwd=str(run_dir),
                            kernel_name="python3", language="python", progress_bar=False, log_output=False,
                            kernel_manager_class=_kernel_manager_class(run_dir / LOGS_DIR / f"{nb.stem}.kernel.log"))
    except PapermillExecutionError as exc:
        return {"cell": exc.cell_index, "execution_count": exc.exec_count, "exception": exc.ename,
                "message": str(exc.evalue)}
    finally:
        os.environ.pop(provenance.RUNNER_ENV, None)
        canonical_executed_copy(nb, run_dir / nb.name)
    return None


def canonical_executed_copy(source: Path, executed: Path) -> None:
    """Make an executed notebook independent of where the run folder is: papermill's input and
    output paths relative (to the checkout and the run folder) and a fixed id for its injected
    parameters cell (papermill draws a random one), so reruns compare byte for byte."""
    import nbformat


    if not executed.exists():
        return
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):  # cut off by an interrupt: left as it is
        return
    meta = nb.metadata.get("papermill", {})
    meta["input_path"] = f"{source.parent.name}/{source.name}"
    meta["output_path"] = executed.name
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["id"] = "injected-parameters"
    atomic_write_text(executed, nbformat.writes(nb))


def _same_parameters(run_dir: Path, stage: PlannedStage) -> bool:
    """Whether the stage's last recorded run used exactly these values: only then is what it left
    (stage 02's checkpoints) a part of this run, to be resumed (after Ctrl-C, a time budget, a
    crash) rather than replaced."""
    import json


    record = read_json_or_empty(run_dir / provenance.RECORD_NAME)
    old = next((e for e in record.get("notebooks", []) if e.get("notebook") == stage.notebook.name), None)
    if old is None:
        return False
    return json.dumps(old.get("parameters"), sort_keys=True) == json.dumps(json_safe(stage.used), sort_keys=True)


def prepare_stage(run_dir: Path, stage: PlannedStage) -> dict:
    """Clear what the stage will rewrite (its outputs, executed copy, kernel log and timing).

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.
    stage : PlannedStage
        The stage about to run. Stage 02 keeps its DCGAN checkpoints, loss log and samples only
        when it trains the DCGAN with ``resume`` and its last recorded run used the same values
        (a resume); with any other value all of ``dcgan/`` goes, and training starts afresh.

    Returns
    -------
    dict
        ``{path: digest}`` of what the stage reads (:func:`mammo_lib.study.state.digests`).
    """
    nb = stage.notebook
    (run_dir / nb.name).unlink(missing_ok=True)
    (run_dir / LOGS_DIR / f"{nb.stem}.kernel.log").unlink(missing_ok=True)
    timings = read_json_or_empty(run_dir / provenance.TIMINGS_NAME)
    if (timings.get("notebooks") or {}).pop(nb.name, None) is not None:
        write_json(run_dir / provenance.TIMINGS_NAME, timings)
    generators = stage.used.get("generators") or [{"kind": "dcgan"}]
    trains_dcgan = any(isinstance(g, dict) and g.get("kind") == "dcgan" for g in generators)
    keep = trains_dcgan and bool(stage.used.get("resume", True)) and _same_parameters(run_dir, stage)
    run_state.clear_stage_outputs(run_dir, nb.name, keep_dcgan=keep)
    return run_state.digests(run_dir, run_state.input_paths(nb.name, stage.all_names))


def stage_entry(run_dir: Path, stage: PlannedStage, status: str, inputs: dict, code: dict,
                error: dict | None = None) -> dict:
    """The stage's ``run.json`` entry (see :mod:`mammo_lib.study.provenance`); output digests taken now."""
    files = run_state.stage_files(stage.notebook.name)
    entry = {"notebook": stage.notebook.name, "status": status, "settings": stage.settings.to_json(),
             "code": code, "parameters": stage.used, "inputs": inputs,
             "outputs": run_state.digests(run_dir, files.outputs) if files else {}}
    if error:
        entry["error"] = error
    return entry


def run_stage(run_dir: Path, stage: PlannedStage, code: dict, log, k: int, n: int) -> None:
    """Run one planned stage and record it: ``running`` first (so a killed run leaves a trace),
    then ``ok``, ``failed`` or ``interrupted``; ``run.json``'s derived parts are refreshed after.

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder (its lock held by the caller).
    stage : PlannedStage
        What to run.
    code : dict
        ``{"git_commit", "dirty"}`` recorded in the entry.
    log : callable
        Receives the progress lines.
    k, n : int
        Its position and the number of planned stages, for the progress lines.

    Raises
    ------
    StudyError
        When the notebook fails (naming the notebook, cell and exception).
    StudyInterrupted
        On Ctrl-C.
    """
    nb = stage.notebook
    log(f"[{k}/{n}] {nb.stem} ...")
    t0 = time.perf_counter()
    inputs = prepare_stage(run_dir, stage)
    provenance.update_notebook_entry(run_dir, stage_entry(run_dir, stage, "running", inputs, code))
    try:
        error = execute_notebook(nb, run_dir, stage.params)
    except KeyboardInterrupt:
        provenance.update_notebook_entry(run_dir, stage_entry(run_dir, stage, "interrupted", inputs, code))
        provenance.update_timings(run_dir, notebooks={nb.name: {"interrupted_after_s": round(time.perf_counter() - t0, 1)}})
        provenance.refresh_record(run_dir)
        raise StudyInterrupted(run_dir, nb, time.perf_counter() - t0) from None
    provenance.update_notebook_entry(run_dir, stage_entry(run_dir, stage, "failed" if error else "ok", inputs,
                                                           code, error))
    provenance.update_timings(run_dir, notebooks={nb.name: {"seconds": round(time.perf_counter() - t0, 1)}})
    if not error:
        provenance.update_results(run_dir, nb.stem, headline_results(run_dir, nb.stem))
    provenance.refresh_record(run_dir)
    if error:
        log(f"[{k}/{n}] {nb.stem} FAILED")
        raise StudyError(
            f"notebook {nb.name} failed in cell {error['cell']} (execution count {error['execution_count']}): "
            f"{error['exception']}: {error['message']}\n  executed copy with the full traceback: {run_dir / nb.name}"
        )
    log(f"[{k}/{n}] {nb.stem} ok ({time.perf_counter() - t0:.1f} s)")
