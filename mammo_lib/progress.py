"""Progress output, the one home of it: live on a terminal, plain and time-free elsewhere.

:func:`progress_bar` (tqdm) for loops over files and images, :class:`QuarterProgress` for the
t-SNE iterations, :class:`TrainingProgress` for the DCGAN's iterations with their losses.

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


class QuarterProgress:
    """Plain-text progress: one printed line per quarter of the work (reads right offline)."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = 0
        self._next = max(1, total // 4)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and (self.done >= self._next or self.done == self.total):
            print(f"{self.desc}: {self.done} of {self.total}", flush=True)
            self._next = self.done + max(1, self.total // 4)


class TrainingProgress:
    """Training progress: a tqdm bar on a terminal; elsewhere (a notebook, a log file) plain
    lines at every tenth of the run without times, so an executed notebook reads right offline
    and is the same on a rerun."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar = None
        self._next_line = start
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, desc="DCGAN", unit="it", dynamic_ncols=True,
                             mininterval=5.0, file=sys.stderr)

    def update(self, it: int, stats: list[float]) -> None:
        """Report that iteration ``it`` (1-based) finished with ``stats`` (loss_D, loss_G, D_x, D_G_z1, D_G_z2)."""
        if not self.enabled:
            return
        loss_d, loss_g, d_x, _, d_g_z = stats
        if self._bar is not None:
            if it % 10 == 0 or it == self.total:
                self._bar.set_postfix(loss_D=f"{loss_d:.3f}", loss_G=f"{loss_g:.3f}", D_x=f"{d_x:.2f}",
                                      D_G_z=f"{d_g_z:.2f}", refresh=False)
            self._bar.update(1)
        elif it >= self._next_line or it == self.total:
            print(f"DCGAN iteration {it}/{self.total}: loss_D {loss_d:.3f}, loss_G {loss_g:.3f}, "
                  f"D(x) {d_x:.2f}, D(G(z)) {d_g_z:.2f}", flush=True)
            step = max(1, self.total // 10)
            self._next_line = (it // step + 1) * step

    def write(self, text: str) -> None:
        """Print one line (through the bar on a terminal, so it is not overwritten)."""
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
