"""Wall-clock records: every stage's ``timings.json``, the one file a rerun may change.

Durations and stamps live only in these files (and are never digested nor compared), so every
other output of a stage is byte-identical on a rerun with the same seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mammo_lib.fileio import read_json_or_empty, write_json

TIMINGS_NAME = "timings.json"


def write_timings(folder: str | os.PathLike, timings: dict[str, Any]) -> Path:
    """Write ``<folder>/timings.json`` (replacing it), atomically.

    Parameters
    ----------
    folder : str or os.PathLike
        A stage's folder (or the run folder).
    timings : dict
        JSON-able seconds and stamps.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    return write_json(Path(folder) / TIMINGS_NAME, timings)


def update_timings(folder: str | os.PathLike, entries: dict[str, Any], nested: tuple[str, ...] = ()) -> Path:
    """Merge ``entries`` into ``<folder>/timings.json`` (created when missing), atomically.

    Parameters
    ----------
    folder : str or os.PathLike
        A stage's folder (or the run folder).
    entries : dict
        Keys replace earlier ones, except those named in ``nested``, whose dicts are merged key
        by key (the run folder's per-notebook times).
    nested : tuple of str
        Keys merged one level deeper.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(folder) / TIMINGS_NAME
    timings = read_json_or_empty(path)
    for key, value in entries.items():
        if key in nested and isinstance(value, dict):
            timings.setdefault(key, {}).update(value)
        else:
            timings[key] = value
    return write_json(path, timings)
