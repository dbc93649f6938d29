"""The settings a stage runs with (profile, seed, overrides), and how a partial rerun inherits them.

A full run takes the settings given on the command line (``--profile``, default ``default``;
``--seed``, default 0; ``-p`` / ``--params-file``). A partial rerun (``--from``, ``--only``,
``--stale``) takes, for each stage, the settings that stage last ran with as recorded in
``run.json`` (a stage that never ran: the run's top-level settings), and changes only what the
command gives: a given profile or seed replaces the recorded one, given overrides are merged
over the recorded ones. So ``--from 05`` on a run made with ``--seed 1 -p n_per_group=100``
runs stage 05 with seed 1 and that override, as MLflow never changes a run's recorded
parameters under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "default"
DEFAULT_SEED = 0
#: numpy's seed range, the study seed's allowed values
SEED_RANGE = (0, 2**32 - 1)


@dataclass(frozen=True)
class Settings:
    """What a stage runs with besides its profile's values.

    Attributes
    ----------
    profile : str
        The parameter profile (``notebooks/params/<stem>.json``).
    seed : int
        The study seed.
    overrides : dict
        ``{parameter: typed value}`` given with ``-p`` / ``--params-file``.
    """

    profile: str = DEFAULT_PROFILE
    seed: int = DEFAULT_SEED
    overrides: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """``{"profile", "seed", "overrides"}`` as recorded in ``run.json``."""
        return {"profile": self.profile, "seed": self.seed, "overrides": dict(self.overrides)}

    def key(self) -> str:
        """A canonical text of the settings (equal settings, equal keys)."""
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: dict) -> Settings:
        """The inverse of :meth:`to_json` (missing keys take the defaults)."""
        return cls(str(data.get("profile", DEFAULT_PROFILE)), int(data.get("seed", DEFAULT_SEED)),
                   dict(data.get("overrides") or {}))


def recorded_settings(record: dict, notebook: str | None = None) -> Settings | None:
    """The settings ``run.json`` records for one stage (its own entry's ``settings``), else the
    run's top-level settings; None when the record has neither.

    Parameters
    ----------
    record : dict
        The run's ``run.json``.
    notebook : str, optional
        The stage's notebook name (``"05_roc_analysis.ipynb"``); None: the top-level settings.
    """
    for entry in record.get("notebooks", []):
        if notebook is not None and entry.get("notebook") == notebook and entry.get("settings"):
            return Settings.from_json(entry["settings"])
    if "profile" in record:
        return Settings.from_json(record)
    return None


def resolve_settings(notebooks: list[Path], record: dict, *, inherit: bool, profile: str | None,
                     seed: int | None, overrides: dict) -> dict[str, Settings]:
    """Each notebook's settings for this run (see the module docstring).

    Parameters
    ----------
    notebooks : list of pathlib.Path
        The notebooks that may run.
    record : dict
        The run folder's ``run.json`` (``{}`` when there is none).
    inherit : bool
        True for a partial rerun: start from what the record says.
    profile, seed : optional
        Given on the command line (None: not given).
    overrides : dict
        Given overrides, typed.

    Returns
    -------
    dict of str to Settings
        Keyed by notebook name.
    """
    out = {}
    for nb in notebooks:
        base = (recorded_settings(record, nb.name) if inherit else None) or Settings()
        out[nb.name] = Settings(profile if profile is not None else base.profile,
                                seed if seed is not None else base.seed,
                                {**base.overrides, **overrides} if inherit else dict(overrides))
    return out


def _fits_group(group: dict, entry: dict, settings: Settings) -> bool:
    """Whether a stage could have run in the same command as a group: same profile and seed, and
    no override it declares (a parameter it used) set to another value, or set for the group but
    not for it, or the other way round."""
    if (group["profile"], group["seed"]) != (settings.profile, settings.seed):
        return False
    declared = set(entry.get("parameters") or {})
    for key in (set(group["overrides"]) | set(settings.overrides)) & declared:
        if key not in group["overrides"] and key in group["_declared"]:
            return False
        if group["overrides"].get(key, settings.overrides.get(key)) != settings.overrides.get(key):
            return False
    return not any(key in group["overrides"] for key in declared - set(settings.overrides))


def settings_groups(entries: list[dict]) -> list[dict]:
    """Runs of consecutive stages that one command could have run, for ``run.json``'s top level.

    A stage records only the overrides it declares; consecutive stages belong to one group when
    they share profile and seed and no override of the group is missing from, or different in,
    a stage that declares it. ``make verify`` reruns each group as one command.

    Parameters
    ----------
    entries : list of dict
        ``run.json``'s ``notebooks`` entries in stage order.

    Returns
    -------
    list of dict
        ``[{"stages": ["01_extract_patches", ...], "profile", "seed", "overrides"}, ...]`` (the
        group's overrides: every stage's, merged); one group when every stage ran with the
        same settings. Entries without recorded settings are left out.
    """
    groups: list[dict] = []
    for entry in entries:
        if not entry.get("settings"):
            continue
        settings = Settings.from_json(entry["settings"])
        stem = Path(entry["notebook"]).stem
        declared = set(entry.get("parameters") or {})
        if groups and _fits_group(groups[-1], entry, settings):
            groups[-1]["stages"].append(stem)
            groups[-1]["overrides"].update(settings.overrides)
            groups[-1]["_declared"] |= declared
        else:
            groups.append({"stages": [stem], **settings.to_json(), "_declared": declared})
    for group in groups:
        del group["_declared"]
        group["overrides"] = dict(sorted(group["overrides"].items()))
    return groups


def describe_groups(groups: list[dict]) -> str:
    """One line per group: ``"01-02: profile default, seed 1, overrides {...}"``."""
    def stages(names: list[str]) -> str:
        nums = [n[:2] for n in names]
        return nums[0] if len(nums) == 1 else f"{nums[0]}-{nums[-1]}"

    return "; ".join(f"stage{'s' if len(g['stages']) > 1 else ''} {stages(g['stages'])}: profile {g['profile']}, seed {g['seed']}"
                     + (f", overrides {json.dumps(g['overrides'], sort_keys=True)}" if g["overrides"] else "")
                     for g in groups)


def check_seed(seed: Any, where: str = "--seed") -> int:
    """The study seed as an int in numpy's range.

    Raises
    ------
    ValueError
        When it is not an integer in [0, 2**32 - 1]; the message names ``where`` and the range.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        shown = f"{where}{seed!r}" if where.endswith("=") else f"{where} {seed!r}"
        raise ValueError(f"{shown}: the seed must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}] "
                         "(numpy's seed range)")
    return seed
