"""Progress bars that read right everywhere: live on a terminal, plain and time-free elsewhere.

On a terminal a normal tqdm bar (rate, elapsed and remaining time). Anywhere else (a Jupyter
kernel, papermill, a log file) a plain-text bar on standard output (a notebook shows it as plain
text, not as a red error block), printed only when it starts and when it ends,
without times or rates: an executed notebook then shows ``extract patches: 100%|##########| 140/140 img``
offline (no widget showing "0%"), and a rerun writes exactly the same text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

PLAIN_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit}"


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True, initial: int = 0) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one of ``total`` steps).

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; omit it for a bar updated by hand with ``.update(n)``.
    total : int, optional
        Number of steps (taken from ``len(iterable)`` when possible).
    desc, unit : str
        Label and unit shown in the bar.
    enabled : bool
        False gives a bar that prints nothing.
    initial : int
        Steps already done (a resumed job).

    Returns
    -------
    tqdm.std.tqdm
        Use it as an iterator or call ``update`` / ``close``.
    """
    from tqdm.std import tqdm

    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, initial=initial,
                    dynamic_ncols=True, mininterval=1.0)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, initial=initial,
                ascii=True, bar_format=PLAIN_FORMAT, mininterval=float("inf"), file=sys.stdout)
