"""Exports of the reader study's ratings for the field's reference MRMC tools, so that a user can
check stage 05's numbers with them (stage 05 writes them to ``<run_dir>/roc/exports/``):

* ``ratings.imrmc``: the input format of iMRMC (FDA/DIDSR), which RJafroc's
  ``DfReadDataFile(..., format = "iMRMC")`` also reads. A description line, ``N0:``, ``N1:``
  (negative / positive cases), ``NR:`` (readers), ``NM:`` (modalities), ``BEGIN DATA:``, then one
  ``readerID,caseID,modalityID,score`` line per rating, preceded by one truth line per case,
  ``-1,caseID,truth,0|1``. Reader and case ids are the integers 1..n (RJafroc requires integers);
  ``reader_ids.csv`` and ``case_ids.csv`` map them back to the study's names.
* ``ratings_long.csv``: one row per rating, ``reader,case,modality,truth,rating``, the long layout
  of MRMCaov (``mrmc(rating, truth, modality, reader, case)``) and RJafroc's data frames.

Positive ("signal present", truth 1) is a REAL patch and the score is the mapped value (the
reader's probability of real), as in stage 05. With one generator both files hold the fully
crossed part of the data (the cases every exported reader has rated), which these tools need.
With several generators the generator is the modality: the real cases appear under every
generator, each synthetic case under its own generator only (a partially paired layout: iMRMC
reads it; readers below read it back).

References
----------
iMRMC: https://github.com/DIDSR/iMRMC (input format in its user manual).
RJafroc: Chakraborty DP, ``DfReadDataFile``; MRMCaov: Smith BJ, Hillis SL.
Obuchowski & Rockette (1995); Hillis (2007).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib.fileio import atomic_write_text
from mammo_lib.rating_scale import POSITIVE_TRUTH
from mammo_lib.run_folder import stage_dir


class ExportError(ValueError):
    """An MRMC file that cannot be written or read; the message names the file and the problem."""


@dataclass
class MRMCData:
    """An MRMC layout: ``ratings`` (modalities t, readers r, cases c), ``truth`` (c,) booleans
    (True = positive), the names of modalities, readers and cases, and ``present`` (t, c): which
    cases are read in which modality (None: fully crossed). In a partially paired layout every
    reader reads every case of a modality; absent cells of ``ratings`` are NaN."""

    ratings: np.ndarray
    truth: np.ndarray
    modalities: list[str]
    readers: list[str]
    cases: list[str]
    present: np.ndarray | None = None

    def cells(self) -> np.ndarray:
        """bool array, shape (t, r, c): the (modality, reader, case) cells that hold a rating."""
        t, r, c = np.shape(self.ratings)
        mask = np.ones((t, c), bool) if self.present is None else np.asarray(self.present, bool)
        return np.broadcast_to(mask[:, None, :], (t, r, c))


def _num(value: float) -> str:
    return format(float(value), ".12g")


def write_imrmc(path: str | os.PathLike, data: MRMCData, description: str = "mammo-synth-study ratings") -> Path:
    """Write ``data`` in iMRMC's input format (read by iMRMC and RJafroc).

    Parameters
    ----------
    path : path
        The ``.imrmc`` file (RJafroc insists on that extension).
    data : MRMCData
        ratings: float array, shape (t, r, c); truth: bool array, shape (c,).
    description : str
        The first line (no newline).

    Returns
    -------
    Path

    Raises
    ------
    ExportError
        If shapes do not match, a rating is not finite, a modality name holds a comma, or a class
        is empty.
    """
    ratings, truth = _check(data, path)
    t, r, c = ratings.shape
    cells = data.cells()
    lines = [description.replace("\n", " "), f"N0:{int((~truth).sum())}", f"N1:{int(truth.sum())}",
             f"NR:{r}", f"NM:{t}", "BEGIN DATA:"]
    lines += [f"-1,{k + 1},truth,{int(truth[k])}" for k in range(c)]
    for i, modality in enumerate(data.modalities):
        for j in range(r):
            lines += [f"{j + 1},{k + 1},{modality},{_num(ratings[i, j, k])}" for k in range(c) if cells[i, j, k]]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _check(data: MRMCData, path) -> tuple[np.ndarray, np.ndarray]:
    ratings = np.asarray(data.ratings, dtype=float)
    truth = np.asarray(data.truth, dtype=bool)
    t, r, c = ratings.shape
    if (len(data.modalities), len(data.readers), len(data.cases), truth.size) != (t, r, c, c):
        raise ExportError(f"{path}: ratings shaped {ratings.shape} do not match {len(data.modalities)} modalities, "
                          f"{len(data.readers)} readers, {len(data.cases)} cases and {truth.size} truth values")
    if data.present is not None and np.shape(data.present) != (t, c):
        raise ExportError(f"{path}: present is shaped {np.shape(data.present)}, not (modalities, cases) = {(t, c)}")
    bad = ~np.isfinite(ratings) & data.cells()
    if bad.any():
        raise ExportError(f"{path}: {int(bad.sum())} rating(s) are not finite numbers")
    if any("," in m for m in data.modalities):
        raise ExportError(f"{path}: modality names may not contain commas: {data.modalities}")
    if truth.all() or not truth.any():
        raise ExportError(f"{path}: both classes are needed ({int(truth.sum())} positive of {c} cases)")
    return ratings, truth


def read_imrmc(path: str | os.PathLike) -> MRMCData:
    """Read an iMRMC input file into a fully crossed or partially paired layout.

    Parameters
    ----------
    path : path

    Returns
    -------
    MRMCData
        Modalities, readers and cases in order of first appearance; names as in the file.
        ``present`` is None when every case is read in every modality; a case read in some
        modalities only gives the partially paired layout.

    Raises
    ------
    ExportError
        If the header or ``BEGIN DATA:`` is missing, a line is not ``reader,case,modality,score``, a
        case has no truth line, the counts disagree with the header, or a rating is missing (a
        reader who did not rate a case of a modality the others rated, or a case nobody rated).
    """
    path = Path(path)
    text = path.read_text().splitlines()
    try:
        start = [line.strip() for line in text].index("BEGIN DATA:")
    except ValueError:
        raise ExportError(f"{path}: no 'BEGIN DATA:' line; not an iMRMC file") from None
    header = dict(line.split(":", 1) for line in text[:start] if ":" in line)
    rows = [line.split(",") for line in text[start + 1:] if line.strip()]
    bad = [n for n, row in enumerate(rows, start=start + 2) if len(row) != 4]
    if bad:
        raise ExportError(f"{path}: line(s) {bad[:5]} are not 'reader,case,modality,score'")
    df = pd.DataFrame(rows, columns=["reader", "case", "modality", "score"])
    df["score"] = df["score"].astype(float)
    truth_rows = df[df["reader"] == "-1"].set_index("case")["score"]
    scores = df[df["reader"] != "-1"]
    return _crossed(scores.rename(columns={"score": "rating"}), truth_rows, path, header)


def _crossed(df: pd.DataFrame, truth: pd.Series, path: Path, header: dict | None = None) -> MRMCData:
    modalities = list(dict.fromkeys(df["modality"]))
    readers = list(dict.fromkeys(df["reader"]))
    cases = list(truth.index)
    missing = sorted(set(df["case"]) - set(truth.index))
    if missing:
        raise ExportError(f"{path}: case(s) {missing[:5]} have no truth")
    if header is not None:
        want = {"NM": len(modalities), "NR": len(readers), "N1": int((truth.loc[cases] == 1).sum()),
                "N0": int((truth.loc[cases] == 0).sum())}
        wrong = {k: (header.get(k, "").strip(), v) for k, v in want.items() if header.get(k, "").strip() != str(v)}
        if wrong:
            raise ExportError(f"{path}: header counts do not match the data (header, data): {wrong}")
    cube = (df.set_index(["modality", "reader", "case"])["rating"]
            .reindex(pd.MultiIndex.from_product([modalities, readers, cases])))
    ratings = cube.to_numpy(dtype=float).reshape(len(modalities), len(readers), len(cases))
    rated = ~np.isnan(ratings)
    present = rated.any(axis=1)  # (t, c): someone read the case in that modality
    missing = int((~rated & present[:, None, :]).sum()) + len(readers) * len(modalities) * int(
        (~present.any(axis=0)).sum())
    if missing:
        raise ExportError(f"{path}: {missing} (modality, reader, case) rating(s) are missing; every reader must "
                          "rate every case of a modality (fully crossed, or partially paired: a case read in "
                          "some modalities only, by every reader)")
    return MRMCData(ratings, truth.loc[cases].to_numpy() == 1, modalities, readers, cases,
                    None if present.all() else present)


def write_long_csv(path: str | os.PathLike, data: MRMCData) -> Path:
    """Write one row per rating: ``reader,case,modality,truth,rating`` (truth 1 = positive).

    Parameters
    ----------
    path : path
    data : MRMCData

    Returns
    -------
    Path

    Raises
    ------
    ExportError
        As :func:`write_imrmc`.
    """
    ratings, truth = _check(data, path)
    t, r, c = ratings.shape
    keep = data.cells().ravel()
    df = pd.DataFrame({
        "reader": np.tile(np.repeat(data.readers, c), t), "case": np.tile(data.cases, t * r),
        "modality": np.repeat(data.modalities, r * c), "truth": np.tile(truth.astype(int), t * r),
        "rating": [_num(v) if k else "" for v, k in zip(ratings.ravel(), keep, strict=True)],
    })
    return atomic_write_text(path, df[keep].to_csv(index=False))


def read_long_csv(path: str | os.PathLike) -> MRMCData:
    """Read a long ``reader,case,modality,truth,rating`` CSV into an MRMC layout.

    Parameters
    ----------
    path : path

    Returns
    -------
    MRMCData
        As :func:`data_from_long`.

    Raises
    ------
    ExportError
        If a column is missing, a case has two truth values, or a rating is missing.
    """
    path = Path(path)
    return data_from_long(pd.read_csv(path, dtype={"reader": str, "case": str, "modality": str}), path)


def data_from_long(df: pd.DataFrame, path: str | os.PathLike = "ratings") -> MRMCData:
    """The MRMC layout of a long table, one row per rating.

    Parameters
    ----------
    df : DataFrame
        Columns ``reader``, ``case``, ``modality`` (str), ``truth`` (1 = positive, 0), ``rating``
        (float). A case may be read in some modalities only (by every reader of the table).
    path : path or str
        Named in error messages.

    Returns
    -------
    MRMCData
        Modalities, readers and cases in order of first appearance; ``present`` None when fully
        crossed.

    Raises
    ------
    ExportError
        If a column is missing, a case has two truth values, or a rating is missing.
    """
    path = Path(path)
    need = {"reader", "case", "modality", "truth", "rating"}
    if not need <= set(df.columns):
        raise ExportError(f"{path}: missing column(s) {sorted(need - set(df.columns))}")
    per_case = df.groupby("case", sort=False)["truth"].nunique()
    if (per_case > 1).any():
        raise ExportError(f"{path}: case(s) {list(per_case[per_case > 1].index[:5])} have two truth values")
    truth = df.drop_duplicates("case").set_index("case")["truth"]
    return _crossed(df, truth, path)


def study_data(ratings: pd.DataFrame, modality: str) -> tuple[MRMCData, list[str]]:
    """The fully crossed layout of stage 05's ratings table (one modality).

    Parameters
    ----------
    ratings : DataFrame
        One row per (reader, case): ``reader``, ``case_id``, ``value``, ``truth`` ("real"/"synthetic").
    modality : str
        The modality's name (e.g. the case set id).

    Returns
    -------
    data : MRMCData
        Readers sorted; only the cases every reader has rated, sorted by id.
    notes : list of str
        What was left out.
    """
    wide = ratings.pivot(index="case_id", columns="reader", values="value").sort_index()
    readers = sorted(wide.columns)
    crossed = wide[readers].dropna()
    notes = []
    if len(crossed) < len(wide):
        notes.append(f"exports: {len(wide) - len(crossed)} case(s) not rated by every reader are left out "
                     f"(the tools need a fully crossed layout); {len(crossed)} remain")
    truth = ratings.drop_duplicates("case_id").set_index("case_id")["truth"].loc[crossed.index]
    data = MRMCData(crossed.to_numpy().T[None, :, :], (truth == POSITIVE_TRUTH).to_numpy(), [modality],
                    readers, list(crossed.index))
    return data, notes


def export_ratings(ratings: pd.DataFrame, out_dir: str | os.PathLike, modality: str) -> tuple[dict[str, Path], list[str]]:
    """Write ``ratings.imrmc``, ``ratings_long.csv``, ``reader_ids.csv`` and ``case_ids.csv``.

    Parameters
    ----------
    ratings : DataFrame
        Stage 05's ratings table (see :func:`study_data`).
    out_dir : path
        Usually ``<run_dir>/roc/exports``.
    modality : str

    Returns
    -------
    paths : dict
        name -> path (empty when nothing can be exported).
    notes : list of str
        What was left out, or why nothing was written (one class only, no common cases).
    """
    data, notes = study_data(ratings, modality)
    if data.truth.all() or not data.truth.any() or not data.cases:
        return {}, notes + ["exports skipped: the cases every reader rated do not hold both real and synthetic ones"]
    return write_exports(data, out_dir, f"mammo-synth-study ratings, modality {modality}, "
                         "truth 1 = real, score = probability of real"), notes


def write_exports(data: MRMCData, out_dir: str | os.PathLike, description: str) -> dict[str, Path]:
    """Write one layout as ``ratings.imrmc`` (integer reader and case ids), ``ratings_long.csv``
    (the study's names), ``reader_ids.csv`` and ``case_ids.csv``.

    Parameters
    ----------
    data : MRMCData
        Fully crossed or partially paired (only the cells read are written).
    out_dir : path
    description : str
        The iMRMC file's first line.

    Returns
    -------
    dict
        name ("imrmc", "long_csv", "reader_ids", "case_ids") -> path.

    Raises
    ------
    ExportError
        As :func:`write_imrmc`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    numbered = MRMCData(data.ratings, data.truth, data.modalities, [str(j + 1) for j in range(len(data.readers))],
                        [str(k + 1) for k in range(len(data.cases))], data.present)
    return {
        "imrmc": write_imrmc(out_dir / "ratings.imrmc", numbered, description),
        "long_csv": write_long_csv(out_dir / "ratings_long.csv", data),
        "reader_ids": atomic_write_text(out_dir / "reader_ids.csv", pd.DataFrame(
            {"imrmc_reader": numbered.readers, "reader": data.readers}).to_csv(index=False)),
        "case_ids": atomic_write_text(out_dir / "case_ids.csv", pd.DataFrame(
            {"imrmc_case": numbered.cases, "case_id": data.cases}).to_csv(index=False)),
    }


def export_study(analysis, run_dir: str | os.PathLike) -> tuple[dict[str, Path], list[str]]:
    """Stage 05's exports: the analysed readers' ratings under ``<run_dir>/roc/exports/``.

    With one generator the modality is named after the case set (one fully crossed modality).
    With several, the generator is the modality: the partially paired layout of the MRMC across
    generators (``analysis.across_generators.layout``: the real cases under every generator, each
    generator's synthetic cases under its own; machine observers as one reader per observer,
    rating in modality g with the copy trained against g), readable by iMRMC, which takes any
    design; tools that need a fully crossed layout cannot analyse it.

    Parameters
    ----------
    analysis : mammo_lib.roc.analysis.StudyAnalysis
    run_dir : path

    Returns
    -------
    paths, notes
        As :func:`export_ratings`.
    """

    out_dir = stage_dir(run_dir, "roc") / "exports"
    across = getattr(analysis, "across_generators", None)
    if across is not None and across.layout is not None:
        return write_exports(across.layout, out_dir, "mammo-synth-study ratings, modality = generator, "
                             "truth 1 = real, score = probability of real"), list(across.layout_notes)
    if across is not None:
        return {}, list(across.layout_notes) or ["exports skipped: no layout across generators"]
    ratings = analysis.load.ratings
    ratings = ratings[ratings["reader"].isin(list(analysis.per_reader))]
    if ratings.empty:
        return {}, ["exports skipped: no reader has ROC statistics yet"]
    return export_ratings(ratings, out_dir, analysis.case_set.case_set_id)
