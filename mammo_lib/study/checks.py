"""Everything a run can check before any work: every value in its declared range or set, and what
each stage's own library checks without doing work (the data source, the generators, lesion
classes, folders given as inputs)."""

from __future__ import annotations

from pathlib import Path

from mammo_lib.generate.contract import GeneratorError
from mammo_lib.generate.sources import check_generators
from mammo_lib.sources.collection import check_source
from mammo_lib.sources.lesion_classes import check_lesion_classes
from mammo_lib.study.parameters import ParameterSpec, check_values
from mammo_lib.study.run_stage import PlannedStage


def stage_checks(stage: PlannedStage, spec: dict[str, ParameterSpec], run_dir: Path, patch_size) -> list[str]:
    """What a stage's own library checks without doing any work: the data source (stage 01),
    the generators (stage 02), lesion classes, and folders given for the ratings or case set.

    Parameters
    ----------
    stage : PlannedStage
        The stage and every value it will use.
    spec : dict of str to ParameterSpec
        Its declared parameters.
    run_dir : pathlib.Path
        The run folder (relative paths are relative to it, as in the notebooks).
    patch_size : int or None
        Stage 01's patch size, for the generators' trial call.

    Returns
    -------
    list of str
        One sentence per problem, naming the notebook.
    """

    used, problems = stage.used, []
    kind = used.get("source_kind")
    if "source_kind" in spec and (not spec["source_kind"].choices or kind in spec["source_kind"].choices):
        problems += check_source(kind, used.get("source_path") or "", used.get("phantom_images", 1), run_dir)
    if "generators" in spec:
        try:
            check_generators(used.get("generators"), patch_size=patch_size)
        except GeneratorError as exc:
            problems.append(str(exc))
    if "lesion_classes" in spec:
        problems += check_lesion_classes(used.get("lesion_classes"))
    for key in ("ratings", "case_set_dir"):  # folders of an earlier study, read as given
        value = used.get(key)
        if key in spec and isinstance(value, str) and value and not (run_dir / value).exists() \
                and key in stage.settings.overrides:
            problems.append(f"{key}={value!r}: {run_dir / value} does not exist")
    return [f"{p} ({stage.notebook.name})" for p in problems]


def check_planned(planned: list[PlannedStage], specs: dict[Path, dict[str, ParameterSpec]], run_dir: Path,
                  origins: dict[Path, dict[str, str]]) -> list[str]:
    """Every problem of a planned run, before any work.

    Parameters
    ----------
    planned : list of PlannedStage
        The stages about to run.
    specs : dict of pathlib.Path to dict
        Each notebook's declared parameters (:func:`mammo_lib.study.parameters.parameter_specs`).
    run_dir : pathlib.Path
        The run folder.
    origins : dict of pathlib.Path to dict
        Per notebook, how each value was given (``"-p"``, ``"profile smoke"``), for the messages.

    Returns
    -------
    list of str
        One sentence per problem (each once), empty when the run can start.
    """
    problems = []
    patch_size = next((s.used.get("patch_size") for s in planned if "patch_size" in specs[s.notebook]), None)
    for stage in planned:
        problems += check_values(specs[stage.notebook], stage.used, where=stage.notebook.name,
                                 origins={**origins.get(stage.notebook, {}), "seed": "--seed"})
        problems += stage_checks(stage, specs[stage.notebook], run_dir, patch_size)
    return list(dict.fromkeys(problems))
