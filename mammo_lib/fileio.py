"""Safe file writing, JSON sanitising and file digests shared by every stage.

Every file a stage writes goes through :func:`atomic_write`: the content is written to a unique
temporary file beside the target, flushed and fsynced, then renamed into place, so a killed
process never leaves half a file and two writers never share a temporary name. This module
imports nothing from the rest of ``mammo_lib``, so the lowest layers (DICOM writing, the patch
store) can use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def _default_file_mode() -> int:
    """0o666 less the process umask: what ``open()`` would give a new file (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file through a callback, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its folder is created when missing.
    write : callable
        Called once with a binary file object open for writing (a unique temporary file in the
        target's folder); it writes the whole content, e.g. ``lambda fh: torch.save(state, fh)``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OSError
        When the folder cannot be created or the file cannot be written or renamed. Whatever
        ``write`` raises is re-raised. In every failure the temporary file is removed and an
        existing file at ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_file_mode())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of a bytes object (same errors)."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text, newlines written as given (same errors)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """Turn nested results into plain JSON values.

    Dict keys become strings, tuples and arrays lists, NumPy scalars Python numbers, NaN and
    infinities ``None`` (JSON has no NaN), paths strings; anything else is returned unchanged.

    Parameters
    ----------
    obj : Any
        A dict, list, tuple, NumPy array or scalar, path, or plain value, nested arbitrarily.

    Returns
    -------
    Any
        The same structure made of dict, list, str, int, float, bool and None.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``json_safe(obj)`` atomically as strict JSON (no NaN).

    Raises
    ------
    TypeError
        When ``obj`` holds a value JSON cannot represent (after :func:`json_safe`).
    OSError
        As :func:`atomic_write`.
    """
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """Full SHA-256 hex digest of a file's bytes (``hashlib.file_digest``).

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_json_or_empty(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``, or ``{}`` when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
