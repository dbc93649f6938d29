"""Choosing real lesion patches by lesion class (stages 02, 03 and 04).

The paper trained and evaluated on *mass* lesions; the lesion store of stage 01 holds every
class (``records.LESION_CLASSES``). Stages 02-04 take a ``lesion_classes`` parameter (a list of
class names, or None for all) and use :func:`select_lesion_rows` to pick the store rows, so one
rule and one set of error messages applies everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from mammo_lib.sources.records import LESION_CLASSES


class LesionClassError(ValueError):
    """A lesion-class filter names an unknown class or leaves too few patches."""


def normalise_lesion_classes(lesion_classes: str | Iterable[str] | None) -> list[str] | None:
    """None (all classes) or a sorted list of unique lower-case class names.

    A single string is one class. An empty list is an error (it would select nothing; use None
    for all classes). The sorted form makes the filter a stable key for fingerprints.
    """
    if lesion_classes is None:
        return None
    if isinstance(lesion_classes, str):
        lesion_classes = [lesion_classes]
    names = sorted({str(c).strip().lower() for c in lesion_classes})
    if not names:
        raise LesionClassError(
            "lesion_classes is an empty list: give class names such as ['mass'], or None for every class"
        )
    return names


def class_counts_text(manifest: pd.DataFrame) -> str:
    """'mass: 30, calcification: 12' -- the classes of a store manifest with their patch counts."""
    if "lesion_class" not in manifest.columns or not len(manifest):
        return "no patches"
    counts = manifest["lesion_class"].astype(str).value_counts()
    return ", ".join(f"{name}: {int(n)}" for name, n in counts.items())


def select_lesion_rows(
    manifest: pd.DataFrame,
    lesion_classes: str | Iterable[str] | None,
    store_path: str | os.PathLike,
    min_patches: int = 1,
    purpose: str = "",
) -> np.ndarray:
    """Positions (sorted) of the manifest rows whose ``lesion_class`` is in ``lesion_classes``.

    ``None`` selects every row. A name that is neither a known lesion class nor present in the
    store raises :class:`LesionClassError` listing the classes the store holds with their counts;
    so does a filter that leaves fewer than ``min_patches`` rows (``purpose`` says what for).
    """
    classes = normalise_lesion_classes(lesion_classes)
    if classes is None:
        return np.arange(len(manifest))
    if "lesion_class" not in manifest.columns:
        raise LesionClassError(f"patch store {store_path}: the manifest has no lesion_class column, "
                               "so lesion_classes cannot be applied; rerun notebook 01")
    present = manifest["lesion_class"].astype(str).str.strip().str.lower()
    known = set(LESION_CLASSES) | set(present)
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise LesionClassError(
            f"unknown lesion class {', '.join(map(repr, unknown))} in lesion_classes={classes}: "
            f"patch store {store_path} holds {class_counts_text(manifest)} "
            f"(known classes: {', '.join(LESION_CLASSES)}); use those names, or None for every class"
        )
    rows = np.flatnonzero(present.isin(classes).to_numpy())
    if len(rows) < min_patches:
        need = f"at least {min_patches}" + (f" {purpose}" if purpose else "")
        raise LesionClassError(
            f"lesion_classes={classes} leaves {len(rows)} patches in patch store {store_path} "
            f"(need {need}); the store holds {class_counts_text(manifest)}: "
            "choose classes the store has more of, extract more patches (notebook 01), or use None for every class"
        )
    return rows


def check_lesion_classes(value) -> list[str]:
    """What is wrong with a ``lesion_classes`` parameter, found without opening a patch store.

    The value is normalised as stages 02-04 do (:func:`normalise_lesion_classes`: one string is
    one class, names are stripped and lower-cased), and every name must be a known lesion class
    (``records.LESION_CLASSES``, the classes stage 01's readers give their lesions). Whether the
    store holds enough patches of the classes is :func:`select_lesion_rows`' check, once it exists.

    Parameters
    ----------
    value : str, list of str or None
        The parameter's value; None selects every class.

    Returns
    -------
    list of str
        One sentence per problem (a value that is neither None, a name nor a list of names; an
        empty list; unknown class names, listed with the known ones); empty when the value is
        usable.
    """
    if value is not None and not isinstance(value, str | list | tuple):
        return [f"lesion_classes={value!r}: must be a list of lesion class names such as ['mass'], "
                f"or None for every class, not {type(value).__name__}"]
    try:
        classes = normalise_lesion_classes(value)
    except LesionClassError as exc:
        return [str(exc)]
    unknown = [c for c in classes or [] if c not in LESION_CLASSES]
    if unknown:
        return [f"unknown lesion class {', '.join(map(repr, unknown))} in lesion_classes={classes} "
                f"(known classes: {', '.join(LESION_CLASSES)}); use those names, or None for every class"]
    return []
