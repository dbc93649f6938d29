"""One run per run folder: the lock file ``<run>/run.lock``.

A study run (and ``make verify``, on the run it checks) holds the lock from its first write to
its last; the lock file records who holds it::

    {"pid": 4711, "host": "ws-12", "started": "2026-12-06T08:40:12+00:00",
     "command": "python -m mammo_lib.study.runner --profile default --name default"}

A second run into the same folder is refused with a message naming the holder. A lock whose
holder is dead (same host, no such process) is taken over with a warning; a lock held from
another host cannot be checked and is only ever removed by hand. The rating server refuses to
start while a run holds its folder (:func:`live_holder`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mammo_lib.clock import now_iso

LOCK_NAME = "run.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock (the message names it)."""


def _now() -> str:

    return now_iso()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_holder(run_dir: str | os.PathLike) -> dict | None:
    """The lock file's content, ``{}`` when it exists but cannot be read, None when absent."""
    path = Path(run_dir) / LOCK_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(holder: dict) -> str:
    """``"PID 4711 on ws-12 since 2026-12-06T08:40:12+00:00 (python -m ...)"``."""
    return (f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


def holder_is_alive(holder: dict) -> bool | None:
    """True/False for a holder on this host; None when it runs on another host (cannot tell)."""
    if holder.get("host") != socket.gethostname():
        return None
    try:
        return _alive(int(holder.get("pid")))
    except (TypeError, ValueError):
        return False


def live_holder(run_dir: str | os.PathLike) -> dict | None:
    """The holder of the run folder's lock when it is (or may be) alive, else None.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.

    Returns
    -------
    dict or None
        The lock file's content when another process on this host holds it and lives, or a
        process on another host holds it; None when there is no lock or its holder is dead.
    """
    holder = read_holder(run_dir)
    if not holder or holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        return None
    return None if holder_is_alive(holder) is False else holder


def _command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv]) if sys.argv and sys.argv[0] else Path(sys.executable).name


def _try_create(path: Path, content: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh, indent=1)
        fh.write("\n")
    return True


def acquire(run_dir: str | os.PathLike, command: str | None = None) -> dict:
    """Take the run folder's lock (the folder must exist).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    command : str, optional
        What holds it, for the message another process sees (default: this process's command line).

    Returns
    -------
    dict
        The lock content written.

    Raises
    ------
    RunFolderBusy
        When a live process (or one on another host) holds the lock.
    """
    path = Path(run_dir) / LOCK_NAME
    content = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "command": command or _command()}
    for _ in range(3):
        if _try_create(path, content):
            return content
        holder = read_holder(run_dir)
        if holder is None:
            continue  # released in between: try again
        alive = holder_is_alive(holder) if holder else False
        if alive is not False:
            where = "" if alive else " (on another host: if that run has ended, delete the lock file by hand)"
            raise RunFolderBusy(f"{Path(run_dir)} is in use by {describe_holder(holder)}{where}; wait for it to "
                                f"finish or stop it, or use another --name. Lock file: {path}")
        warnings.warn(f"{path}: taking over the lock of {describe_holder(holder) if holder else 'an unreadable lock'}, "
                      "whose process no longer exists (a run that was killed)", stacklevel=2)
        path.unlink(missing_ok=True)
    raise RunFolderBusy(f"{path}: could not take the lock (another process keeps taking it)")


def release(run_dir: str | os.PathLike, content: dict) -> None:
    """Remove the lock file if it still holds ``content`` (never another process's lock)."""
    path = Path(run_dir) / LOCK_NAME
    holder = read_holder(run_dir)
    if holder and holder.get("pid") == content.get("pid") and holder.get("started") == content.get("started") \
            and holder.get("host") == content.get("host"):
        path.unlink(missing_ok=True)


@contextmanager
def holding(run_dir: str | os.PathLike, command: str | None = None) -> Iterator[dict]:
    """``with holding(run_dir): ...``: :func:`acquire` on entry, :func:`release` on any exit.

    Raises
    ------
    RunFolderBusy
        As :func:`acquire`.
    """
    content = acquire(run_dir, command)
    try:
        yield content
    finally:
        release(run_dir, content)
