"""Time stamps: the one place the study reads the clock for a record (ISO 8601, UTC).

Stamps go only where time belongs: ``timings.json`` files, ratings, invitations, locks; never into
a file a rerun compares.
"""

from __future__ import annotations

import datetime as _dt


def now_iso(timespec: str = "seconds") -> str:
    """The current UTC time in ISO 8601.

    Parameters
    ----------
    timespec : {"seconds", "milliseconds"}
        ``"seconds"`` for run records and timings, ``"milliseconds"`` for ratings (a reader
        answers several cases a second apart).

    Returns
    -------
    str
        E.g. ``"2026-12-06T08:40:12+00:00"``.

    Raises
    ------
    ValueError
        For another ``timespec``.
    """
    if timespec not in ("seconds", "milliseconds"):
        raise ValueError(f"timespec must be 'seconds' or 'milliseconds', got {timespec!r}")
    return _dt.datetime.now(_dt.UTC).isoformat(timespec=timespec)
