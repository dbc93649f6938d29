"""Stage 05, ROC analysis of the reader study: per-reader accuracy / sensitivity / specificity /
ROC / AUC with confidence intervals, reader agreement, the multi-reader (MRMC) analysis, tables,
figures and ``roc/metrics.json``.

Reads the case set, its key and the ratings files through :mod:`mammo_lib.reader_study.files` (the one
reader of those formats); the statistics come from :mod:`mammo_lib.auc_stats` and
:mod:`mammo_lib.roc.mrmc`. Writes ``<run_dir>/roc/metrics.json`` (schema: :class:`RocMetrics`; paths
relative to the run folder), ``roc/figures/*.png`` and ``roc/timings.json`` (seconds only there).

Conventions (from :mod:`mammo_lib.rating_scale`): a rating's mapped value is the reader's
probability that the patch is REAL, so the **positive class is "real"** throughout: sensitivity
is the fraction of real patches called real, specificity the fraction of synthetic patches
called synthetic, and an AUC above 0.5 means the reader tends to rate real patches as more real
than synthetic ones. A patch is "called real" when its value is above the paper's threshold 0.5.

Interim data never stop the analysis: a reader who has rated one case of a class gets an AUC
whose SE, CI and test are undefined (NaN, with a note naming the reader); a reader who rated one
class only is left out of the ROC statistics with a note; perfect or reversed separation is
flagged ``degenerate`` (the DeLong SE is then 0 and its p-value says nothing).

References
----------
DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845.
Hanley JA, McNeil BJ (1982) Radiology 143:29-36.
Sun X, Xu W (2014) IEEE Signal Processing Letters 21:1389-1393.
Obuchowski NA, Rockette HE (1995) Commun Stat Simul Comput 24:285-308.
Hillis SL (2007) Stat Med 26:596-619.
Cohen J (1968) Psychol Bull 70:213-220.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from mammo_lib.auc_stats import pairwise_kappa
from mammo_lib.fileio import json_safe, write_json
from mammo_lib.rating_scale import OPTION_VALUE, POSITIVE_TRUTH, THRESHOLD, TRUTHS
from mammo_lib.reader_study.files import (
    KeyedCaseSet,
    RatingsError,
    RatingsLoad,
    load_case_set,
    load_ratings,
    ratings_files,
    relative_text,
    run_relative,
)
from mammo_lib.roc.by_generator import GeneratorAnalysis, analyse_study_generators, synthetic_counts
from mammo_lib.roc.mrmc import or_analysis
from mammo_lib.roc.reader_stats import reader_seed, reader_statistics
from mammo_lib.run_folder import stage_dir
from mammo_lib.timings import update_timings

PAPER_RESULTS = (
    # Section 5.2 of the paper: two radiologists, 150 OMI-DB patches (75 real, 75 synthetic).
    {"reader": "paper observer 1", "accuracy": 0.48, "auc": 0.56},
    {"reader": "paper observer 2", "accuracy": 0.61, "auc": 0.45},
)


class RocMetrics(TypedDict):
    """``roc/metrics.json``: every key stage 05 writes (NaN and infinities are written as null).

    stage: "05_roc_analysis". case_set_id; case_set_dir (relative to the run folder);
    n_cases, n_real, n_synthetic: cases in the case set. positive_class ("real") and its note;
    threshold: 0.5 (value above = called real). n_bootstrap, seed: bootstrap settings.
    ratings_files: reader -> ratings file (relative). reader_kind: reader -> "human"/"machine".
    human_readers: the number of human readers analysed (0: machine observers only).
    revised_answers: reader -> cases answered more than once. unrated_cases: reader -> count.
    notes: every note of the analysis (torn lines, unrated cases, undefined statistics, ...).
    readers: reader -> per-reader statistics (:func:`reader_statistics` keys, plus reader_kind,
    revised_answers, file, option_counts {truth: {option: count}}).
    reading_time: reader -> {n, median_s, total_s} (humans; seconds from shown to answered).
    agreement: None (fewer than 2 readers) or {method, pairs: rows of
    :func:`mammo_lib.auc_stats.pairwise_kappa`}.
    mrmc: group ("all readers", "human readers", "machine readers") -> :func:`mammo_lib.roc.mrmc.or_analysis`
    output with a note, or {"skipped": reason}; {"skipped": ...} when there are fewer than 2 readers.
    paper_comparison: rows of :func:`paper_comparison_table`.
    generators: the case set's generators, in study order (one: the study of earlier versions).
    n_synthetic_by_generator: generator -> synthetic cases.
    by_generator: None with one generator; with several, generator -> {n_real, n_synthetic,
    readers: ratings id -> {n_cases, n_real, n_synthetic, accuracy, sensitivity, specificity (this
    generator's patches called synthetic), auc, auc_delong, auc_hanley_mcneil_se, auc_bootstrap
    (as in ``sources.formats``, computed on the real cases + this generator's), reader_kind, mrmc_reader
    (the reader it is in the MRMC: a machine observer's copies are one reader), trained_on (the
    generator a machine observer was trained against; None for humans)}}; the humans and the
    machine observers trained against that generator.
    mrmc_generators: None with one generator; with several, group ("all readers", "human
    readers", "machine readers") -> :func:`mammo_lib.roc.mrmc.or_analysis` output with the generators
    as modalities (partially paired: ``design``, ``n_cases_per_modality``; RRRC/FRRC/RRFC F or
    X2 tests and ``differences`` "A - B") and a note, or {"skipped": reason}
    (:mod:`mammo_lib.roc.by_generator`).
    """

    stage: str
    case_set_id: str
    case_set_dir: str
    n_cases: int
    n_real: int
    n_synthetic: int
    positive_class: str
    positive_class_note: str
    threshold: float
    n_bootstrap: int
    seed: int
    ratings_files: dict[str, str]
    reader_kind: dict[str, str]
    human_readers: int
    revised_answers: dict[str, int]
    unrated_cases: dict[str, int]
    notes: list[str]
    readers: dict[str, dict]
    reading_time: dict[str, dict]
    agreement: dict | None
    mrmc: dict
    paper_comparison: list[dict]
    generators: list[str]
    n_synthetic_by_generator: dict[str, int]
    by_generator: dict | None
    mrmc_generators: dict | None


# --------------------------------------------------------------------------------------------
# The whole stage
# --------------------------------------------------------------------------------------------

@dataclass
class StudyAnalysis:
    """Everything stage 05 computes; :meth:`to_metrics` gives the JSON written to the run folder."""

    case_set: KeyedCaseSet
    load: RatingsLoad
    per_reader: dict[str, dict]
    reader_kind: dict[str, str]
    kappa: pd.DataFrame | None
    mrmc: dict[str, dict]
    notes: list[str]
    n_bootstrap: int
    seed: int
    mrmc_covariance: str
    seconds: float = 0.0
    run_dir: Path | None = None
    across_generators: GeneratorAnalysis | None = None

    @property
    def generators(self) -> list[str]:
        return self.case_set.generators

    @property
    def human_readers(self) -> list[str]:
        return [r for r, k in self.reader_kind.items() if k == "human"]

    def to_metrics(self, run_dir: str | os.PathLike | None = None) -> RocMetrics:
        """The :class:`RocMetrics` dict; paths relative to ``run_dir`` (default: the analysis' run folder)."""
        run_dir = run_dir if run_dir is not None else self.run_dir
        per_reader = {r: {**s, "file": run_relative(s["file"], run_dir)} for r, s in self.per_reader.items()}
        notes = [relative_text(n, run_dir) for n in self.notes]
        return json_safe({
            "stage": "05_roc_analysis",
            "case_set_id": self.case_set.case_set_id,
            "case_set_dir": run_relative(self.case_set.case_set_dir, run_dir),
            "n_cases": int(len(self.case_set.cases)),
            "n_real": int((self.case_set.cases["truth"] == "real").sum()),
            "n_synthetic": int((self.case_set.cases["truth"] == "synthetic").sum()),
            "positive_class": POSITIVE_TRUTH,
            "positive_class_note": "mapped values are the probability that a patch is REAL; sensitivity = real "
                                   "patches called real, specificity = synthetic patches called synthetic",
            "threshold": THRESHOLD,
            "n_bootstrap": self.n_bootstrap, "seed": self.seed,
            "ratings_files": {r: run_relative(f, run_dir) for r, f in self.load.files.items()},
            "reader_kind": self.reader_kind,
            "human_readers": len(self.human_readers),
            "revised_answers": self.load.revised,
            "unrated_cases": {r: len(v) for r, v in self.load.missing.items()},
            "notes": notes,
            "readers": per_reader,
            "reading_time": reading_time_summary(self.load),
            "agreement": (None if self.kappa is None else {
                "method": "Cohen's kappa, unweighted and weighted (linear and quadratic weights) on options 1-6, "
                          "sklearn.metrics.cohen_kappa_score",
                "pairs": self.kappa.to_dict(orient="records")}),
            "mrmc": self.mrmc,
            "paper_comparison": paper_comparison_table(self).to_dict(orient="records"),
            "generators": self.generators,
            "n_synthetic_by_generator": synthetic_counts(self.case_set),
            **(self.across_generators.to_json() if self.across_generators is not None
               else {"by_generator": None, "mrmc_generators": None}),
        })


def reading_time_summary(load: RatingsLoad) -> dict[str, dict]:
    """Per human reader: n timed answers, median and total seconds from shown to answered."""
    return {r: {"n": len(t), "median_s": float(np.median(t)) if t else None,
                "total_s": float(np.sum(t)) if t else None} for r, t in load.timing.items()}


def _mrmc_for(ratings: pd.DataFrame, readers: list[str], truth: pd.Series, covariance: str,
              label: str, notes: list[str]) -> dict:

    wide = ratings[ratings["reader"].isin(readers)].pivot(index="case_id", columns="reader", values="value")
    wide = wide[readers].dropna()
    if len(wide) < len(truth):
        notes.append(f"MRMC ({label}): uses the {len(wide)} of {len(truth)} cases rated by every reader")
    t = (truth.loc[wide.index] == POSITIVE_TRUTH).to_numpy()
    if t.sum() < 2 or (~t).sum() < 2:
        return {"skipped": f"fewer than 2 real or 2 synthetic cases rated by all of {readers}"}
    out = or_analysis(wide.to_numpy().T[None, :, :], t, covariance=covariance, modalities=[label], readers=readers)
    out["note"] = ("one modality (this case set); random readers and random cases: reader-averaged AUC with "
                   "the Hillis (2007) single-modality df, test of AUC = 0.5")
    return out


def _one_reader(sub: pd.DataFrame, reader: str, kind: str, load: RatingsLoad, n_bootstrap: int, seed: int,
                notes: list[str]) -> dict | None:
    truth = sub["truth"].to_numpy()
    if len(set(truth)) < 2:
        notes.append(f"reader {reader!r}: rated cases of one class only ({len(sub)} case(s)); no ROC statistics yet")
        return None
    stats_r = reader_statistics(sub["value"].to_numpy(), truth, options=sub["option"].to_numpy(),
                                n_bootstrap=n_bootstrap, seed=reader_seed(seed, reader))
    if "undefined" in stats_r["auc_delong"]:
        notes.append(f"reader {reader!r}: {stats_r['auc_delong']['undefined']}; the AUC's SE, CI and test are "
                     "undefined (NaN) until more cases are rated")
    if stats_r["auc_delong"]["degenerate"] and "undefined" not in stats_r["auc_delong"]:
        notes.append(f"reader {reader!r}: AUC {stats_r['auc']:.2f}, {stats_r['auc_delong'].get('note', 'degenerate')}")
    stats_r.update({"reader_kind": kind, "revised_answers": load.revised.get(reader, 0),
                    "file": load.files[reader],
                    "option_counts": {t: {int(o): int(((sub["truth"] == t) & (sub["option"] == o)).sum())
                                          for o in OPTION_VALUE} for t in TRUTHS}})
    return stats_r


def _agreement_and_mrmc(df: pd.DataFrame, analysed: list[str], kind: dict, case_set: KeyedCaseSet,
                        covariance: str, notes: list[str]) -> tuple[pd.DataFrame | None, dict]:
    if len(analysed) < 2:
        notes.append(f"only {len(analysed)} reader(s) with ratings: reader agreement (kappa) and the MRMC "
                     "analysis need at least 2 readers and are skipped")
        return None, {"skipped": "fewer than 2 readers"}
    wide = df.pivot(index="case_id", columns="reader", values="option")[analysed]
    kappa = pairwise_kappa(wide)
    truth = case_set.cases.set_index("case_id")["truth"]
    mrmc = {"all readers": _mrmc_for(df, analysed, truth, covariance, "all readers", notes)}
    humans = [r for r in analysed if kind[r] == "human"]
    machines = [r for r in analysed if kind[r] == "machine"]
    if len(humans) >= 2 and machines:
        mrmc["human readers"] = _mrmc_for(df, humans, truth, covariance, "human readers", notes)
    if len(machines) >= 2 and humans:
        mrmc["machine readers"] = _mrmc_for(df, machines, truth, covariance, "machine readers", notes)
    return kappa, mrmc


def analyse_study(
    case_set_dir: str | Path, ratings: str | Path | Sequence[str | Path], n_bootstrap: int = 2000,
    seed: int = 0, include_machine: bool = True, mrmc_covariance: str = "jackknife",
    key_path: str | Path | None = None, run_dir: str | Path | None = None,
) -> StudyAnalysis:
    """Load and validate a case set and its ratings, then compute every statistic of stage 05.

    Parameters
    ----------
    case_set_dir : path
        The ``case_set`` folder (its key is ``../key/key.csv`` unless ``key_path`` is given).
    ratings : path or sequence of paths
        The ratings folder (its ``*.jsonl``) or a list of ratings files.
    n_bootstrap : int
        Bootstrap resamples per reader.
    seed : int
        Study seed; each reader's bootstrap stream is keyed by (seed, purpose, reader).
    include_machine : bool
        Analyse the machine observers too.
    mrmc_covariance : {"jackknife", "delong"}
    key_path : path, optional
    run_dir : path, optional
        The run folder: notes and metrics name files relative to it.

    Returns
    -------
    StudyAnalysis

    Raises
    ------
    RatingsError
        If the case set, key or ratings cannot be read or break the format (every problem listed,
        each with file:line), no ratings file exists, or nothing is left to analyse.

    References
    ----------
    DeLong et al. (1988); Sun & Xu (2014); Obuchowski & Rockette (1995); Hillis (2007); Cohen (1968).
    """
    started = time.perf_counter()
    case_set = load_case_set(case_set_dir, key_path)
    files = ratings_files(ratings)
    if not files:
        raise RatingsError(f"no *.jsonl ratings files in {ratings}; run the reader study (notebook 04) first")
    load = load_ratings(files, case_set, include_machine=include_machine)
    notes = list(load.notes)
    df = load.ratings
    readers = sorted(df["reader"].unique(), key=lambda r: (df.loc[df["reader"] == r, "reader_kind"].iloc[0], r))
    kind = {r: str(df.loc[df["reader"] == r, "reader_kind"].iloc[0]) for r in readers}
    per_reader = {}
    for reader in readers:
        res = _one_reader(df[df["reader"] == reader], reader, kind[reader], load, n_bootstrap, seed, notes)
        if res is not None:
            per_reader[reader] = res
    if not any(k == "human" for k in kind.values()):
        notes.append("no human reader has rated this case set yet: every result below comes from machine "
                     "observers only")
    kappa, mrmc = _agreement_and_mrmc(df, list(per_reader), kind, case_set, mrmc_covariance, notes)
    across = analyse_study_generators(df, case_set, {r: kind[r] for r in per_reader}, n_bootstrap, seed,
                                mrmc_covariance, notes)
    notes = [relative_text(n, run_dir) for n in notes]
    return StudyAnalysis(case_set=case_set, load=load, per_reader=per_reader, reader_kind=kind, kappa=kappa,
                         mrmc=mrmc, notes=notes, n_bootstrap=n_bootstrap, seed=seed,
                         mrmc_covariance=mrmc_covariance, seconds=time.perf_counter() - started,
                         run_dir=Path(run_dir) if run_dir is not None else None, across_generators=across)


def who_rated(analysis: StudyAnalysis) -> str:
    """Who has rated, as Markdown generated from the ratings (said plainly when no human has).

    Parameters
    ----------
    analysis : StudyAnalysis

    Returns
    -------
    str
        One or two Markdown sentences naming the human readers and machine observers.
    """
    humans = analysis.human_readers
    machines = [r for r, k in analysis.reader_kind.items() if k == "machine"]
    if not humans:
        return (f"**No human reader has rated this case set yet.** Every number below comes from the "
                f"{len(machines)} machine observer(s) ({', '.join(machines)}); it says how well classifiers "
                "trained on held-out real and synthetic patches separate them, not how radiologists do.")
    return (f"{len(humans)} human reader(s) ({', '.join(humans)}) and {len(machines)} machine observer(s) "
            f"({', '.join(machines) or 'none'}) have rated this case set.")


def ratings_overview(analysis: StudyAnalysis, run_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The interim view of the study, one row per reader (the coordinator's ``mammo-readers
    progress`` shows the same numbers).

    Parameters
    ----------
    analysis : StudyAnalysis
    run_dir : path, optional
        Ratings files are named relative to it.

    Returns
    -------
    DataFrame
        reader, kind, file, rated (cases), of (cases in the set), revised answers, last activity
        (ISO 8601 UTC of the last answer; "" for machine observers, whose ratings carry no time),
        median s per case and total s (reading time from shown to answered, humans).
    """
    n_cases = len(analysis.case_set.cases)
    timing = reading_time_summary(analysis.load)
    df = analysis.load.ratings
    rows = []
    for reader, kind in analysis.reader_kind.items():
        mine = df[df["reader"] == reader]
        stamps = mine["answered_at"].dropna()
        t = timing.get(reader, {})
        rows.append({"reader": reader, "kind": kind, "file": run_relative(analysis.load.files[reader], run_dir),
                     "rated": len(mine), "of": n_cases, "revised answers": analysis.load.revised.get(reader, 0),
                     "last activity": str(stamps.max()) if len(stamps) else "",
                     "median s per case": t.get("median_s"), "total s": t.get("total_s")})
    return pd.DataFrame(rows)


def reader_table(analysis: StudyAnalysis) -> pd.DataFrame:
    """One row per reader: the per-reader statistics as a table.

    Parameters
    ----------
    analysis : StudyAnalysis

    Returns
    -------
    DataFrame
        reader, kind, cases, revised, accuracy (proportion) with its exact 95% CI and binomial p
        against 0.5, sensitivity (real), specificity (synthetic), AUC with its DeLong and bootstrap
        95% CIs ("nan-nan" when undefined), the DeLong p against 0.5 and the binormal AUC.

    References
    ----------
    DeLong et al. (1988); Sun & Xu (2014); Hanley & McNeil (1982).
    """
    rows = []
    for reader, s in analysis.per_reader.items():
        acc, dl, bs = s["accuracy"], s["auc_delong"], s["auc_bootstrap"]
        rows.append({
            "reader": reader, "kind": s["reader_kind"], "cases": s["n_cases"], "revised": s["revised_answers"],
            "accuracy": acc["estimate"], "acc 95% CI (exact)": f"{acc['ci_low']:.2f}-{acc['ci_high']:.2f}",
            "p (binomial vs 0.5)": acc["p_value_vs_0.5"],
            "sensitivity (real)": s["sensitivity"]["estimate"], "specificity (synthetic)": s["specificity"]["estimate"],
            "AUC": s["auc"], "AUC 95% CI (DeLong)": f"{dl['ci_low']:.2f}-{dl['ci_high']:.2f}",
            "AUC 95% CI (bootstrap)": f"{bs['low']:.2f}-{bs['high']:.2f}", "p (DeLong z vs 0.5)": dl["p_value_vs_0.5"],
            "binormal AUC": (s.get("binormal") or {}).get("auc"),
        })
    return pd.DataFrame(rows)


def mrmc_table(analysis: StudyAnalysis) -> pd.DataFrame:
    """Reader-averaged AUC per reader group, from the Obuchowski-Rockette analysis.

    Random readers and random cases (Hillis df; the result generalises to other readers), and
    fixed readers with random cases (only these readers; far narrower when there are few).

    Parameters
    ----------
    analysis : StudyAnalysis

    Returns
    -------
    DataFrame
        readers (group), n readers, cases, mean AUC, SE, df (Hillis), 95% CI, t and p against 0.5,
        the fixed-reader CI and p, covariance method, degenerate; or readers + note when skipped.

    References
    ----------
    Obuchowski & Rockette (1995); Hillis (2007).
    """
    rows = []
    for group, res in analysis.mrmc.items():
        if "skipped" in res:
            rows.append({"readers": group, "note": res["skipped"]})
            continue
        for modality, s in res["RRRC"]["single_modality"].items():
            f = res["FRRC"]["single_modality"][modality]
            rows.append({"readers": group, "n readers": res["n_readers"], "cases": res["n_cases"],
                         "mean AUC": s["auc"], "SE": s["se"], "df (Hillis)": s["df"],
                         "95% CI": f"{s['ci'][0]:.3f} to {s['ci'][1]:.3f}", "t vs 0.5": s["t_vs_0.5"],
                         "p vs 0.5": s["p_vs_0.5"],
                         "95% CI, these readers only": f"{f['ci'][0]:.3f} to {f['ci'][1]:.3f}",
                         "p vs 0.5, these readers only": f["p_vs_0.5"], "covariance": res["covariance"],
                         "degenerate": s.get("degenerate", False)})
    return pd.DataFrame(rows)


def paper_comparison_table(analysis: StudyAnalysis) -> pd.DataFrame:
    """The paper's reported figures beside this run's (different readers AND different data).

    Parameters
    ----------
    analysis : StudyAnalysis

    Returns
    -------
    DataFrame
        source, reader, kind, data, cases, accuracy, AUC: the paper's two radiologists (sec. 5.2)
        first, then every reader of this run.
    """
    rows = [{"source": "paper (sec. 5.2)", "reader": p["reader"], "kind": "human (radiologist)",
             "data": "OMI-DB mass patches, DCGAN synthetic; 75 real + 75 synthetic", "cases": 150,
             "accuracy": p["accuracy"], "AUC": p["auc"]} for p in PAPER_RESULTS]
    n_real = int((analysis.case_set.cases["truth"] == "real").sum())
    n_syn = int((analysis.case_set.cases["truth"] == "synthetic").sum())
    for reader, s in analysis.per_reader.items():
        rows.append({"source": "this run (different readers, different data)", "reader": reader,
                     "kind": s["reader_kind"], "data": f"case set {analysis.case_set.case_set_id}; "
                     f"{n_real} real + {n_syn} synthetic", "cases": s["n_cases"],
                     "accuracy": round(s["accuracy"]["estimate"], 3), "AUC": round(s["auc"], 3)})
    return pd.DataFrame(rows)


def write_metrics(analysis: StudyAnalysis, run_dir: str | Path) -> Path:
    """Write ``<run_dir>/roc/metrics.json`` and ``roc/timings.json``.

    Parameters
    ----------
    analysis : StudyAnalysis
    run_dir : path

    Returns
    -------
    Path
        The metrics file (:class:`RocMetrics`, paths relative to the run folder, strict JSON with
        NaN as null), written atomically; the analysis time (seconds) goes to ``timings.json``.

    Raises
    ------
    OSError
        If the file cannot be written (nothing is half-written).
    """

    path = stage_dir(run_dir, "roc") / "metrics.json"
    write_json(path, analysis.to_metrics(run_dir), indent=1)
    update_timings(path.parent, {"analysis_seconds": round(analysis.seconds, 3)})
    return path
