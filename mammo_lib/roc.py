"""ROC analysis of reader ratings (stage 05): loading and validating ratings files, per-reader
accuracy / sensitivity / specificity / ROC / AUC with confidence intervals, reader agreement,
figures, and the metrics JSON.

Conventions (from :mod:`mammo_lib.rating_scale`): a rating's mapped value is the reader's
probability that the patch is REAL, so the **positive class is "real"** throughout: sensitivity
is the fraction of real patches called real, specificity the fraction of synthetic patches
called synthetic, and an AUC above 0.5 means the reader tends to rate real patches as more
real than synthetic ones (i.e. can tell them apart). A patch is "called real" when its value is
above the paper's threshold 0.5.

Statistics and their sources
----------------------------
* AUC: the area under the empirical (trapezoidal) ROC curve, which equals the Mann-Whitney
  statistic  A = 1/(m n) sum_i sum_j psi(X_i, Y_j),  psi = 1 if X > Y, 1/2 if X = Y, 0 otherwise,
  X the m positive (real) and Y the n negative (synthetic) scores (Hanley & McNeil 1982,
  Radiology 143:29-36; Bamber 1975).
* Hanley & McNeil (1982) standard error:  SE^2 = [A(1-A) + (m-1)(Q1-A^2) + (n-1)(Q2-A^2)]/(m n),
  Q1 = A/(2-A), Q2 = 2A^2/(1+A)  (their eq. 2; reported for reference only).
* DeLong, DeLong & Clarke-Pearson (1988, Biometrics 44:837-845) variance from the structural
  components V10(X_i) = 1/n sum_j psi(X_i, Y_j) and V01(Y_j) = 1/m sum_i psi(X_i, Y_j):
  S = S10/m + S01/n with S10, S01 the sample covariance matrices (ddof 1) of the components
  over the positive / negative cases (a matrix when several readers or modalities share the
  cases). The components are computed in O(N log N) from midranks (Sun & Xu 2014, IEEE Signal
  Processing Letters 21:1389-1393):  V10_i = (Tz_i - Tx_i)/n,  V01_j = 1 - (Tz_{m+j} - Ty_j)/m,
  with Tx, Ty, Tz the midranks within X, within Y and within the pooled sample Z.
  Test of AUC = 0.5: z = (A - 0.5)/SE_DeLong, two-sided normal p; CI  A +- z_{0.975} SE, clipped
  to [0, 1].
* Bootstrap CI: a case bootstrap *stratified by truth* (real and synthetic cases resampled
  separately, so every resample has both classes and the case mix is fixed as in the study),
  done by :func:`scipy.stats.bootstrap` with the two classes as two independent samples and
  the BCa interval (percentile interval when BCa is degenerate, e.g. A = 1).
* Accuracy at 0.5: k correct of N; exact binomial test against 0.5 and the exact
  Clopper-Pearson interval (:func:`scipy.stats.binomtest`, ``proportion_ci(method="exact")``).
* Agreement: Cohen's (1968) weighted kappa between each pair of readers on the six ordinal
  options, with linear AND quadratic weights (:func:`sklearn.metrics.cohen_kappa_score`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mammo_lib.fileio import json_safe
from mammo_lib.rating_scale import (
    OPTION_LABEL,
    OPTION_VALUE,
    OPTIONS,
    POSITIVE_TRUTH,
    READER_KINDS,
    THRESHOLD,
    TRUTHS,
)

PAPER_RESULTS = (
    # Section 5.2 of the paper: two radiologists, 150 OMI-DB patches (75 real, 75 synthetic).
    {"reader": "paper observer 1", "accuracy": 0.48, "auc": 0.56},
    {"reader": "paper observer 2", "accuracy": 0.61, "auc": 0.45},
)


class RatingsError(ValueError):
    """Ratings or case-set files that cannot be analysed; the message lists every problem found."""


# --------------------------------------------------------------------------------------------
# AUC, DeLong, Hanley-McNeil, bootstrap
# --------------------------------------------------------------------------------------------

def _as_binary_truth(truth: Sequence) -> np.ndarray:
    truth = np.asarray(truth)
    if truth.dtype.kind in "OUS":
        bad = set(np.unique(truth)) - set(TRUTHS)
        if bad:
            raise ValueError(f"truth values {sorted(bad)} are not one of {TRUTHS}")
        return truth == POSITIVE_TRUTH
    return truth.astype(bool)


def delong_components(scores: np.ndarray, truth: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong structural components by midranks (Sun & Xu 2014), O(N log N).

    ``scores``: shape (N,) or (K, N) — K readers/modalities scoring the same N cases; higher
    score = more likely positive. ``truth``: N booleans (or "real"/"synthetic", positive
    "real"). Returns (auc (K,), v10 (K, m), v01 (K, n)).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    is_pos = _as_binary_truth(truth)
    if scores.shape[1] != is_pos.size:
        raise ValueError(f"{scores.shape[1]} scores but {is_pos.size} truth labels")
    x, y = scores[:, is_pos], scores[:, ~is_pos]
    m, n = x.shape[1], y.shape[1]
    if m == 0 or n == 0:
        raise ValueError(f"AUC needs both classes: {m} positive and {n} negative cases")
    tx = stats.rankdata(x, axis=1)
    ty = stats.rankdata(y, axis=1)
    tz = stats.rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    auc = v10.mean(axis=1)
    return auc, v10, v01


def auc_mann_whitney(scores: Sequence[float], truth: Sequence) -> float:
    """Empirical (trapezoidal) AUC = Mann-Whitney U/(m n), ties counted half."""
    return float(delong_components(np.asarray(scores, dtype=float), truth)[0][0])


def delong_covariance(scores: np.ndarray, truth: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong et al. (1988) covariance matrix S10/m + S01/n (see module doc)."""
    auc, v10, v01 = delong_components(scores, truth)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((len(auc), len(auc)))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n > 1 else np.zeros((len(auc), len(auc)))
    return auc, s10 / m + s01 / n


def jackknife_aucs(scores: np.ndarray, truth: Sequence) -> np.ndarray:
    """Leave-one-case-out AUCs, shape (K, N) in the cases' original order, exactly and in
    O(N log N): dropping positive i gives (m A - V10_i)/(m - 1), dropping negative j gives
    (n A - V01_j)/(n - 1), because A is the mean of either set of components."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    is_pos = _as_binary_truth(truth)
    auc, v10, v01 = delong_components(scores, is_pos)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        raise ValueError("the jackknife needs at least 2 cases of each class")
    out = np.empty_like(scores)
    out[:, is_pos] = (m * auc[:, None] - v10) / (m - 1)
    out[:, ~is_pos] = (n * auc[:, None] - v01) / (n - 1)
    return out


def jackknife_covariance(scores: np.ndarray, truth: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and the jackknife covariance (c-1)/c sum_k (A_(k) - mean)(A_(k) - mean)^T over all
    c cases (as in OR-DBM MRMC; Hillis, Obuchowski, Schartz & Berbaum 2005)."""
    auc = delong_components(scores, truth)[0]
    jk = jackknife_aucs(scores, truth)
    c = jk.shape[1]
    centred = jk - jk.mean(axis=1, keepdims=True)
    return auc, (c - 1) / c * centred @ centred.T


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC by Hanley & McNeil (1982), eq. 2 (exponential approximation)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _auc_two_sample(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorised Mann-Whitney AUC of positives x vs negatives y along ``axis`` (for bootstrap)."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    m, n = x.shape[-1], y.shape[-1]
    lead = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    x = np.broadcast_to(x, lead + (m,))
    y = np.broadcast_to(y, lead + (n,))
    tz = stats.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    return (tz[..., :m].sum(axis=-1) - m * (m + 1) / 2) / (m * n)


def bootstrap_auc_ci(
    scores: Sequence[float], truth: Sequence, n_resamples: int = 2000, seed: int = 0,
    confidence_level: float = 0.95,
) -> dict:
    """Stratified case-bootstrap CI of the AUC by :func:`scipy.stats.bootstrap` (BCa; the
    percentile interval when BCa is degenerate). Returns low, high, method, n_resamples."""
    scores = np.asarray(scores, dtype=float)
    is_pos = _as_binary_truth(truth)
    samples = (scores[is_pos], scores[~is_pos])
    method = "BCa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(samples, _auc_two_sample, n_resamples=n_resamples, vectorized=True,
                              paired=False, confidence_level=confidence_level, method="BCa",
                              random_state=np.random.default_rng(seed))
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            method = "percentile"
            res = stats.bootstrap(samples, _auc_two_sample, n_resamples=n_resamples, vectorized=True,
                                  paired=False, confidence_level=confidence_level,
                                  method="percentile", random_state=np.random.default_rng(seed))
            low, high = res.confidence_interval
    return {"low": float(low), "high": float(high), "method": f"stratified case bootstrap ({method}, "
            f"scipy.stats.bootstrap, real and synthetic cases resampled separately)",
            "n_resamples": int(n_resamples), "se": float(res.standard_error)}


# --------------------------------------------------------------------------------------------
# Per-reader statistics
# --------------------------------------------------------------------------------------------

def accuracy_test(n_correct: int, n_total: int, confidence_level: float = 0.95) -> dict:
    """Accuracy with an exact two-sided binomial test against 0.5 and the Clopper-Pearson CI."""
    res = stats.binomtest(int(n_correct), int(n_total), 0.5)
    ci = res.proportion_ci(confidence_level=confidence_level, method="exact")
    return {"estimate": n_correct / n_total, "n_correct": int(n_correct), "n": int(n_total),
            "ci_low": float(ci.low), "ci_high": float(ci.high), "p_value_vs_0.5": float(res.pvalue),
            "test": "exact binomial test vs 0.5 (two-sided); Clopper-Pearson exact CI"}


def _proportion(k: int, n: int) -> dict:
    if n == 0:
        return {"estimate": None, "k": 0, "n": 0, "ci_low": None, "ci_high": None}
    ci = stats.binomtest(int(k), int(n)).proportion_ci(method="exact")
    return {"estimate": k / n, "k": int(k), "n": int(n), "ci_low": float(ci.low), "ci_high": float(ci.high)}


def binormal_fit(options: Sequence[int], truth: Sequence) -> dict | None:
    """Maximum-likelihood binormal ROC fit (Dorfman & Alf 1969) to ordinal ratings.

    Latent decision variable ~ N(0,1) for negatives (synthetic) and N(a/b, 1/b^2) for positives
    (real); ordered category thresholds. Fitted AUC = Phi(a / sqrt(1 + b^2)). Returns None when
    the fit is not identifiable (fewer than 2 used categories) or does not converge.
    """
    from scipy.optimize import minimize

    is_pos = _as_binary_truth(truth)
    # rank categories so that higher = more "real" (option 1 is most real)
    level = 7 - np.asarray(options, dtype=int)
    used = np.unique(level)
    if used.size < 2:
        return None
    idx = np.searchsorted(used, level)
    k = used.size
    n_pos = np.bincount(idx[is_pos], minlength=k)
    n_neg = np.bincount(idx[~is_pos], minlength=k)
    cum = np.cumsum(n_neg + n_pos)[:-1] / (n_neg.sum() + n_pos.sum())
    z0 = stats.norm.ppf(np.clip(cum, 0.02, 0.98))
    z0 = np.maximum.accumulate(z0 + np.arange(k - 1) * 1e-3)

    def unpack(theta):
        a, logb = theta[0], theta[1]
        z = theta[2] + np.concatenate([[0.0], np.cumsum(np.exp(theta[3:]))])
        return a, math.exp(logb), z

    def nll(theta):
        a, b, z = unpack(theta)
        edges = np.concatenate([[-np.inf], z, [np.inf]])
        p_neg = np.diff(stats.norm.cdf(edges))
        p_pos = np.diff(stats.norm.cdf(b * edges - a))
        return -(n_neg @ np.log(np.clip(p_neg, 1e-300, None)) + n_pos @ np.log(np.clip(p_pos, 1e-300, None)))

    theta0 = np.concatenate([[0.5, 0.0, z0[0]], np.log(np.maximum(np.diff(z0), 1e-2))])
    res = minimize(nll, theta0, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-9})
    if not res.success and not np.isfinite(res.fun):
        return None
    a, b, z = unpack(res.x)
    return {"a": float(a), "b": float(b), "auc": float(stats.norm.cdf(a / math.sqrt(1 + b * b))),
            "thresholds": [float(v) for v in z], "converged": bool(res.success),
            "method": "ML binormal fit (Dorfman & Alf 1969) to the ordinal options"}


def binormal_curve(a: float, b: float, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the binormal ROC curve TPF = Phi(a + b Phi^-1(FPF))."""
    fpf = np.linspace(1e-4, 1 - 1e-4, n_points)
    return fpf, stats.norm.cdf(a + b * stats.norm.ppf(fpf))


def reader_statistics(
    values: Sequence[float], truth: Sequence, options: Sequence[int] | None = None,
    n_bootstrap: int = 2000, seed: int = 0, binormal: bool = True,
) -> dict:
    """All per-reader statistics of one reader's mapped values (probability of real) vs truth."""
    from sklearn.metrics import confusion_matrix, roc_curve

    values = np.asarray(values, dtype=float)
    is_pos = _as_binary_truth(truth)
    called_real = values > THRESHOLD
    correct = called_real == is_pos
    tp = int(np.sum(called_real & is_pos))
    fn = int(np.sum(~called_real & is_pos))
    tn = int(np.sum(~called_real & ~is_pos))
    fp = int(np.sum(called_real & ~is_pos))
    cm = confusion_matrix(np.where(is_pos, "real", "synthetic"), np.where(called_real, "real", "synthetic"),
                          labels=["real", "synthetic"])
    fpr, tpr, thr = roc_curve(is_pos.astype(int), values, drop_intermediate=False)
    auc, cov = delong_covariance(values, is_pos)
    auc, se = float(auc[0]), float(math.sqrt(cov[0, 0]))
    zcrit = stats.norm.ppf(0.975)
    z = (auc - 0.5) / se if se > 0 else (math.inf if auc > 0.5 else -math.inf if auc < 0.5 else 0.0)
    out = {
        "n_cases": int(values.size), "n_real": int(is_pos.sum()), "n_synthetic": int((~is_pos).sum()),
        "positive_class": POSITIVE_TRUTH, "threshold": THRESHOLD,
        "accuracy": accuracy_test(int(correct.sum()), int(values.size)),
        "sensitivity": _proportion(tp, tp + fn), "specificity": _proportion(tn, tn + fp),
        "confusion_matrix": {"rows_truth": ["real", "synthetic"], "cols_called": ["real", "synthetic"],
                             "counts": cm.tolist(), "tp": tp, "fn": fn, "fp": fp, "tn": tn},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                "thresholds": [float(t) if np.isfinite(t) else None for t in thr]},
        "auc": auc,
        "auc_delong": {"se": se, "ci_low": max(0.0, auc - zcrit * se), "ci_high": min(1.0, auc + zcrit * se),
                       "z_vs_0.5": float(z), "p_value_vs_0.5": float(2 * stats.norm.sf(abs(z)))},
        "auc_hanley_mcneil_se": hanley_mcneil_se(auc, int(is_pos.sum()), int((~is_pos).sum())),
        "auc_bootstrap": bootstrap_auc_ci(values, is_pos, n_resamples=n_bootstrap, seed=seed),
    }
    if binormal and options is not None:
        try:
            out["binormal"] = binormal_fit(options, is_pos)
        except Exception as exc:  # an optional extra must never sink the analysis
            out["binormal"] = {"error": str(exc)}
    return out


# --------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------

def pairwise_kappa(options_by_reader: pd.DataFrame) -> pd.DataFrame:
    """Cohen's weighted kappa (linear and quadratic weights) and unweighted kappa for every pair
    of readers (columns of ``options_by_reader``, rows = cases), on the cases both rated."""
    from sklearn.metrics import cohen_kappa_score

    labels = [number for number, _, _ in OPTIONS]
    rows = []
    for a, b in combinations(options_by_reader.columns, 2):
        both = options_by_reader[[a, b]].dropna()
        ra, rb = both[a].astype(int), both[b].astype(int)
        row = {"reader_a": a, "reader_b": b, "n_cases": len(both)}
        for name, w in (("kappa_unweighted", None), ("kappa_linear", "linear"), ("kappa_quadratic", "quadratic")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = cohen_kappa_score(ra, rb, labels=labels, weights=w) if len(both) else float("nan")
            row[name] = float(k)
        row["exact_agreement"] = float((ra == rb).mean()) if len(both) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=["reader_a", "reader_b", "n_cases", "kappa_unweighted",
                                       "kappa_linear", "kappa_quadratic", "exact_agreement"])


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

@dataclass
class CaseSet:
    """The case set readers saw, with the truth joined from the key."""

    case_set_id: str
    cases: pd.DataFrame  # case_id, image, truth, store, patch_id
    case_set_dir: Path
    key_path: Path


@dataclass
class RatingsLoad:
    """Validated ratings: the last answer per (reader, case) and what was found on the way."""

    ratings: pd.DataFrame  # one row per (reader, case): reader, reader_kind, case_id, option, value, ...
    files: dict[str, str]  # reader -> file
    revised: dict[str, int]  # reader -> number of cases answered more than once
    missing: dict[str, list[str]]  # reader -> case ids never rated
    notes: list[str] = field(default_factory=list)  # human-readable warnings (truncation, ...)
    excluded_readers: list[str] = field(default_factory=list)


def default_case_set_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "reader_study" / "case_set"


def default_ratings_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "reader_study" / "ratings"


def load_case_set(case_set_dir: str | Path, key_path: str | Path | None = None) -> CaseSet:
    """Read ``study.json`` + ``cases.csv`` of a case set and join the truth from the key
    (default ``<case_set_dir>/../key/key.csv``), checking that both list the same cases."""
    case_set_dir = Path(case_set_dir)
    key_path = Path(key_path) if key_path is not None else case_set_dir.parent / "key" / "key.csv"
    study_json, cases_csv = case_set_dir / "study.json", case_set_dir / "cases.csv"
    for path, what in ((study_json, "study.json"), (cases_csv, "cases.csv"), (key_path, "key.csv")):
        if not path.exists():
            raise RatingsError(f"{path} does not exist: the case set's {what} is needed; run notebook 04 "
                               "(reader study) first or pass case_set_dir= pointing at a case set folder")
    try:
        case_set_id = str(json.loads(study_json.read_text())["case_set_id"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise RatingsError(f"{study_json} has no readable 'case_set_id' ({exc!r})") from exc
    cases = pd.read_csv(cases_csv, dtype={"case_id": str})
    key = pd.read_csv(key_path, dtype={"case_id": str})
    problems = []
    for df, path, need in ((cases, cases_csv, {"case_id"}), (key, key_path, {"case_id", "truth"})):
        if not need <= set(df.columns):
            problems.append(f"{path}: missing column(s) {sorted(need - set(df.columns))}")
    if problems:
        raise RatingsError("\n".join(problems))
    for df, path in ((cases, cases_csv), (key, key_path)):
        dup = df["case_id"][df["case_id"].duplicated()].unique()
        if len(dup):
            problems.append(f"{path}: case id(s) listed twice: {list(dup)[:10]}")
    bad_truth = sorted(set(key["truth"]) - set(TRUTHS))
    if bad_truth:
        problems.append(f"{key_path}: truth values {bad_truth} are not one of {TRUTHS}")
    only_cases = sorted(set(cases["case_id"]) - set(key["case_id"]))
    only_key = sorted(set(key["case_id"]) - set(cases["case_id"]))
    if only_cases:
        problems.append(f"{key_path}: no truth for {len(only_cases)} case(s) of {cases_csv}, e.g. {only_cases[:5]}")
    if only_key:
        problems.append(f"{key_path}: {len(only_key)} case(s) not in {cases_csv}, e.g. {only_key[:5]}; "
                        "are the key and the case set from the same study?")
    if problems:
        raise RatingsError("case set and key do not match:\n" + "\n".join(problems))
    key_cols = [c for c in ("case_id", "truth", "store", "patch_id") if c in key.columns]
    merged = cases.merge(key[key_cols], on="case_id", how="left", suffixes=("", "_key"))
    return CaseSet(case_set_id=case_set_id, cases=merged, case_set_dir=case_set_dir, key_path=key_path)


def ratings_files(ratings: str | Path | Iterable[str | Path]) -> list[Path]:
    """A folder (its ``*.jsonl``, sorted) or a list of files -> list of existing files."""
    if isinstance(ratings, (str, Path)):
        items = [Path(ratings)]
    else:
        items = [Path(p) for p in ratings]
    out = []
    for p in items:
        if p.is_dir():
            out.extend(sorted(p.glob("*.jsonl")))
        elif not p.exists():
            raise RatingsError(f"ratings path {p} does not exist: pass the folder of *.jsonl ratings files "
                               "(default <run_dir>/reader_study/ratings, written by notebook 04) or a list of files")
        else:
            out.append(p)
    return out


def load_ratings(
    files: Sequence[str | Path], case_set: CaseSet, include_machine: bool = True, max_problems: int = 30,
) -> RatingsLoad:
    """Read ratings JSONL files and validate them against the case set.

    Errors (raised together as one :class:`RatingsError`, each naming file:line): a missing
    field, another case_set_id, an unknown case id, an option off the 1-6 scale, a value or
    label that does not match its option, a reader_kind other than human/machine, two files
    claiming one reader id. Reported in ``notes`` and tolerated: a truncated last line (e.g. a
    power cut mid-write; the complete lines are kept) or such a fragment followed by later
    answers (the reader-study app starts its next answer on a new line), revised answers (the
    last line per reader and case counts), cases a reader has not rated.
    """
    known = set(case_set.cases["case_id"])
    problems: list[str] = []
    notes: list[str] = []
    records: list[dict] = []
    reader_file: dict[str, str] = {}
    required = ("reader", "reader_kind", "case_set_id", "case_id", "option", "value")

    def problem(msg: str) -> None:
        problems.append(msg)

    for path in files:
        path = Path(path)
        raw = path.read_bytes().decode("utf-8", errors="replace")
        lines = raw.split("\n")
        ends_with_newline = raw.endswith("\n")
        if ends_with_newline:
            lines = lines[:-1]
        readers_here: set[str] = set()
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            is_last = lineno == len(lines)
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except (json.JSONDecodeError, ValueError) as exc:
                if is_last:
                    notes.append(f"{path}:{lineno}: incomplete last line skipped (the file was cut off mid-write, "
                                 f"e.g. by a power cut; the {lineno - 1} complete line(s) before it are kept): "
                                 f"{line[:60]!r}")
                else:
                    # the reader-study app appends a newline before its next answer when the
                    # file ends in a fragment, so a torn write can also sit between good lines
                    notes.append(f"{path}:{lineno}: damaged line skipped (not valid JSON: {exc}; most likely "
                                 f"an answer cut off mid-write and asked again later): {line[:60]!r}")
                continue
            where = f"{path}:{lineno}"
            missing = [k for k in required if k not in rec]
            if missing:
                problem(f"{where}: missing field(s) {missing}")
                continue
            reader = str(rec["reader"])
            readers_here.add(reader)
            if str(rec["case_set_id"]) != case_set.case_set_id:
                problem(f"{where}: rating for case set {rec['case_set_id']!r}, but the case set in "
                        f"{case_set.case_set_dir} is {case_set.case_set_id!r}; move ratings of other studies "
                        "out of the ratings folder")
                continue
            if str(rec["case_id"]) not in known:
                problem(f"{where}: unknown case id {rec['case_id']!r} (not in {case_set.case_set_dir / 'cases.csv'})")
                continue
            if rec["reader_kind"] not in READER_KINDS:
                problem(f"{where}: reader_kind {rec['reader_kind']!r} is not one of {READER_KINDS}")
                continue
            try:
                option = int(rec["option"])
                if option != rec["option"] or option not in OPTION_VALUE:
                    raise ValueError
            except (TypeError, ValueError):
                problem(f"{where}: option {rec['option']!r} is not on the six-option scale 1-6")
                continue
            try:
                value = float(rec["value"])
            except (TypeError, ValueError):
                problem(f"{where}: value {rec['value']!r} is not a number")
                continue
            if not abs(value - OPTION_VALUE[option]) < 1e-9:
                allowed = sorted(OPTION_VALUE.values())
                problem(f"{where}: value {value} does not match option {option} (which maps to "
                        f"{OPTION_VALUE[option]}); values on the scale are {allowed}")
                continue
            if "label" in rec and rec["label"] not in (None, OPTION_LABEL[option]):
                problem(f"{where}: label {rec['label']!r} does not match option {option} "
                        f"({OPTION_LABEL[option]!r})")
                continue
            records.append({"reader": reader, "reader_kind": rec["reader_kind"], "case_id": str(rec["case_id"]),
                            "option": option, "value": OPTION_VALUE[option], "event": rec.get("event", "answer"),
                            "answered_at": rec.get("answered_at"), "file": str(path), "line": lineno})
        for reader in readers_here:
            if reader in reader_file and reader_file[reader] != str(path):
                problem(f"reader id {reader!r} appears in two files: {reader_file[reader]} and {path}; "
                        "each reader must have one ratings file (rename one reader or merge the files)")
            reader_file.setdefault(reader, str(path))
    df = pd.DataFrame(records, columns=["reader", "reader_kind", "case_id", "option", "value", "event",
                                        "answered_at", "file", "line"])
    for reader, kinds in df.groupby("reader")["reader_kind"].unique().items():
        if len(kinds) > 1:
            problem(f"reader {reader!r} ({reader_file.get(reader)}) is recorded with several reader_kind values "
                    f"{sorted(kinds)}")
    if problems:
        shown = problems[:max_problems]
        more = f"\n... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise RatingsError(f"{len(problems)} problem(s) in the ratings files:\n" + "\n".join(shown) + more)
    if df.empty:
        raise RatingsError(f"no ratings found in {[str(f) for f in files]}; run the reader study (notebook 04) "
                           "or point ratings= at the folder of *.jsonl files")
    counts = df.groupby(["reader", "case_id"]).size()
    revised = {r: int((counts.loc[r] > 1).sum()) for r in counts.index.get_level_values(0).unique()}
    last = df.groupby(["reader", "case_id"], sort=False).tail(1)
    excluded = []
    if not include_machine:
        excluded = sorted(last.loc[last["reader_kind"] == "machine", "reader"].unique())
        last = last[last["reader_kind"] != "machine"]
        if excluded:
            notes.append(f"machine readers left out (include_machine=False): {excluded}")
        if last.empty:
            raise RatingsError(f"only machine readers ({excluded}) have rated this case set and include_machine "
                               "is False: nothing to analyse; set include_machine=True or add human ratings")
    missing = {}
    for reader, grp in last.groupby("reader"):
        gone = sorted(known - set(grp["case_id"]))
        if gone:
            missing[reader] = gone
            notes.append(f"reader {reader!r} ({reader_file[reader]}) has not rated {len(gone)} of {len(known)} "
                         f"cases (e.g. {gone[:3]}); their statistics use the {len(known) - len(gone)} rated cases")
    for reader, n in revised.items():
        if n and reader in set(last["reader"]):
            notes.append(f"reader {reader!r}: {n} case(s) answered more than once; the last answer counts")
    truth = case_set.cases.set_index("case_id")["truth"]
    last = last.assign(truth=last["case_id"].map(truth)).reset_index(drop=True)
    return RatingsLoad(ratings=last, files={r: reader_file[r] for r in sorted(set(last["reader"]))},
                       revised={r: revised[r] for r in sorted(set(last["reader"]))}, missing=missing,
                       notes=notes, excluded_readers=excluded)


# --------------------------------------------------------------------------------------------
# The whole stage: analysis, tables, metrics JSON
# --------------------------------------------------------------------------------------------

@dataclass
class StudyAnalysis:
    """Everything stage 05 computes; ``to_metrics()`` gives the JSON written to the run folder."""

    case_set: CaseSet
    load: RatingsLoad
    per_reader: dict[str, dict]
    reader_kind: dict[str, str]
    kappa: pd.DataFrame | None
    mrmc: dict[str, dict]
    notes: list[str]
    n_bootstrap: int
    seed: int
    mrmc_covariance: str

    def to_metrics(self) -> dict:
        return json_safe({
            "stage": "05_roc_analysis",
            "case_set_id": self.case_set.case_set_id,
            "case_set_dir": str(self.case_set.case_set_dir),
            "n_cases": int(len(self.case_set.cases)),
            "n_real": int((self.case_set.cases["truth"] == "real").sum()),
            "n_synthetic": int((self.case_set.cases["truth"] == "synthetic").sum()),
            "positive_class": POSITIVE_TRUTH,
            "positive_class_note": "mapped values are the probability that a patch is REAL; sensitivity = real "
                                   "patches called real, specificity = synthetic patches called synthetic",
            "threshold": THRESHOLD,
            "n_bootstrap": self.n_bootstrap, "seed": self.seed,
            "ratings_files": self.load.files, "reader_kind": self.reader_kind,
            "revised_answers": self.load.revised,
            "unrated_cases": {r: len(v) for r, v in self.load.missing.items()},
            "notes": self.notes,
            "readers": self.per_reader,
            "agreement": (None if self.kappa is None else {
                "method": "Cohen's kappa, unweighted and weighted (linear and quadratic weights) on options 1-6, "
                          "sklearn.metrics.cohen_kappa_score",
                "pairs": self.kappa.to_dict(orient="records")}),
            "mrmc": self.mrmc,
            "paper_comparison": paper_comparison_table(self).to_dict(orient="records"),
        })


def _mrmc_for(ratings: pd.DataFrame, readers: list[str], truth: pd.Series, covariance: str,
              label: str, notes: list[str]) -> dict:
    from mammo_lib.mrmc import or_analysis

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


def analyse_study(
    case_set_dir: str | Path, ratings: str | Path | Sequence[str | Path], n_bootstrap: int = 2000,
    seed: int = 0, include_machine: bool = True, mrmc_covariance: str = "jackknife",
    key_path: str | Path | None = None,
) -> StudyAnalysis:
    """Load and validate a case set and its ratings, then compute every statistic of stage 05."""
    from tqdm.auto import tqdm

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
    for i, reader in enumerate(tqdm(readers, desc="readers", leave=False)):
        sub = df[df["reader"] == reader]
        truth = sub["truth"].to_numpy()
        if len(set(truth)) < 2:
            notes.append(f"reader {reader!r}: rated cases of one class only; no ROC statistics")
            continue
        stats_r = reader_statistics(sub["value"].to_numpy(), truth, options=sub["option"].to_numpy(),
                                    n_bootstrap=n_bootstrap, seed=seed + i)
        stats_r.update({"reader_kind": kind[reader], "revised_answers": load.revised.get(reader, 0),
                        "file": load.files[reader],
                        "option_counts": {t: {int(o): int(((sub["truth"] == t) & (sub["option"] == o)).sum())
                                              for o in OPTION_VALUE} for t in TRUTHS}})
        per_reader[reader] = stats_r
    analysed = list(per_reader)
    kappa, mrmc = None, {}
    if len(analysed) < 2:
        notes.append(f"only {len(analysed)} reader(s) with ratings: reader agreement (kappa) and the MRMC "
                     "analysis need at least 2 readers and are skipped")
        mrmc = {"skipped": "fewer than 2 readers"}
    else:
        wide = df.pivot(index="case_id", columns="reader", values="option")[analysed]
        kappa = pairwise_kappa(wide)
        truth = case_set.cases.set_index("case_id")["truth"]
        mrmc["all readers"] = _mrmc_for(df, analysed, truth, mrmc_covariance, "all readers", notes)
        humans = [r for r in analysed if kind[r] == "human"]
        machines = [r for r in analysed if kind[r] == "machine"]
        if len(humans) >= 2 and machines:
            mrmc["human readers"] = _mrmc_for(df, humans, truth, mrmc_covariance, "human readers", notes)
        if len(machines) >= 2 and humans:
            mrmc["machine readers"] = _mrmc_for(df, machines, truth, mrmc_covariance, "machine readers", notes)
    return StudyAnalysis(case_set=case_set, load=load, per_reader=per_reader, reader_kind=kind, kappa=kappa,
                         mrmc=mrmc, notes=notes, n_bootstrap=n_bootstrap, seed=seed,
                         mrmc_covariance=mrmc_covariance)


def reader_table(analysis: StudyAnalysis) -> pd.DataFrame:
    """One row per reader: accuracy with exact CI and binomial p, sensitivity, specificity, AUC
    with DeLong and bootstrap CIs and the DeLong test of AUC = 0.5."""
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
    """Reader-averaged AUC per reader group: random readers and random cases (Hillis df; the
    result generalises to other readers), and fixed readers with random cases (only these
    readers; far narrower when there are few readers)."""
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
                         "p vs 0.5, these readers only": f["p_vs_0.5"], "covariance": res["covariance"]})
    return pd.DataFrame(rows)


def paper_comparison_table(analysis: StudyAnalysis) -> pd.DataFrame:
    """The paper's reported figures beside this run's — different readers AND different data."""
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
    """Write ``<run_dir>/roc/metrics.json`` atomically and return its path."""
    from mammo_lib.fileio import atomic_write_text
    from mammo_lib.run_folder import stage_dir

    path = stage_dir(run_dir, "roc") / "metrics.json"
    atomic_write_text(path, json.dumps(analysis.to_metrics(), indent=1, allow_nan=False))
    return path


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

def _grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.2, 2.8)):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def plot_roc_curves(analysis: StudyAnalysis):
    """Empirical ROC curves of every reader on one plot, operating points marked (the paper's
    0.5 threshold as a large marker), chance line, AUC with DeLong CI in the legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="chance (AUC 0.5)")
    cmap = plt.get_cmap("tab10")
    for i, (reader, s) in enumerate(analysis.per_reader.items()):
        color = cmap(i % 10)
        fpr, tpr = np.asarray(s["roc"]["fpr"]), np.asarray(s["roc"]["tpr"])
        ls = "-" if s["reader_kind"] == "human" else "--"
        dl = s["auc_delong"]
        ax.plot(fpr, tpr, ls=ls, marker="o", ms=4, color=color, lw=1.6,
                label=f"{reader} ({s['reader_kind']}): AUC {s['auc']:.2f} [{dl['ci_low']:.2f}, {dl['ci_high']:.2f}]")
        cm = s["confusion_matrix"]
        fp_rate = cm["fp"] / max(cm["fp"] + cm["tn"], 1)
        tp_rate = cm["tp"] / max(cm["tp"] + cm["fn"], 1)
        ax.plot([fp_rate], [tp_rate], marker="D", ms=9, mfc=color, mec="black", mew=1.2, ls="none")
    ax.plot([], [], marker="D", ms=8, mfc="white", mec="black", ls="none", label="operating point at 0.5")
    ax.set_xlabel("1 - specificity (synthetic patches called real)")
    ax.set_ylabel("sensitivity (real patches called real)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_title("ROC per reader (positive class = real; 95% CI by DeLong)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_ratings_by_truth(analysis: StudyAnalysis):
    """Per reader: how often each of the six options was given to real and to synthetic cases."""
    fig, axes = _grid(len(analysis.per_reader), ncols=3, size=(4.0, 3.0))
    x = np.arange(1, 7)
    for ax, (reader, s) in zip(axes, analysis.per_reader.items(), strict=False):
        counts = s["option_counts"]
        ax.bar(x - 0.2, [counts["real"][o] for o in x], width=0.4, color="tab:red", label="real")
        ax.bar(x + 0.2, [counts["synthetic"][o] for o in x], width=0.4, color="tab:green", label="synthetic")
        ax.set_xticks(x, ["ext.\nreal", "mod.\nreal", "sl.\nreal", "sl.\nsyn", "mod.\nsyn", "ext.\nsyn"], fontsize=7)
        ax.axvline(3.5, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"{reader} ({s['reader_kind']})", fontsize=9)
        ax.set_ylabel("cases", fontsize=8)
        ax.legend(fontsize=7, title="truth", title_fontsize=7)
    fig.suptitle("Ratings by truth (left of the dotted line: called real)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion_matrices(analysis: StudyAnalysis):
    """2 x 2 confusion matrix per reader at the 0.5 threshold (rows truth, columns call)."""
    fig, axes = _grid(len(analysis.per_reader), ncols=4, size=(2.9, 2.7))
    for ax, (reader, s) in zip(axes, analysis.per_reader.items(), strict=False):
        cm = np.asarray(s["confusion_matrix"]["counts"])
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.sum(axis=1).max(), 1))
        for (i, j), v in np.ndenumerate(cm):
            frac = v / max(cm[i].sum(), 1)
            ax.text(j, i, f"{v}\n({frac:.0%})", ha="center", va="center", fontsize=9,
                    color="white" if frac > 0.6 else "black")
        ax.set_xticks([0, 1], ["real", "synthetic"], fontsize=8)
        ax.set_yticks([0, 1], ["real", "synthetic"], fontsize=8)
        ax.set_xlabel("called", fontsize=8)
        ax.set_ylabel("truth", fontsize=8)
        ax.set_title(f"{reader}\naccuracy {s['accuracy']['estimate']:.0%}", fontsize=9)
    fig.suptitle("Confusion matrices at threshold 0.5 (positive = real)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_auc_forest(analysis: StudyAnalysis):
    """AUC per reader with DeLong and bootstrap 95% CIs, plus the MRMC reader-averaged AUCs."""
    import matplotlib.pyplot as plt

    rows = [(r, s["auc"], (s["auc_delong"]["ci_low"], s["auc_delong"]["ci_high"]),
             (s["auc_bootstrap"]["low"], s["auc_bootstrap"]["high"])) for r, s in analysis.per_reader.items()]
    for group, res in analysis.mrmc.items():
        if "skipped" not in res:
            for s in res["RRRC"]["single_modality"].values():
                rows.append((f"MRMC: {group}", s["auc"], tuple(s["ci"]), None))
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(rows) + 1.6))
    for k, (_name, auc, ci_d, ci_b) in enumerate(rows):
        y = len(rows) - k
        ax.plot(ci_d, [y + 0.1, y + 0.1], color="tab:blue", lw=2, label="DeLong / MRMC (Hillis df)" if k == 0 else None)
        if ci_b is not None:
            ax.plot(ci_b, [y - 0.1, y - 0.1], color="tab:orange", lw=2, label="bootstrap" if k == 0 else None)
        ax.plot([auc], [y], "ko", ms=5)
        if ci_d[0] < 0 or ci_d[1] > 1:  # wide CIs (few readers): print them, the axis stops at [0, 1]
            ax.annotate(f"CI {ci_d[0]:.2f} to {ci_d[1]:.2f}", (auc, y), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=7)
    ax.axvline(0.5, color="0.5", ls=":", lw=1)
    ax.set_title("AUC per reader and reader-averaged (MRMC), 95% CIs", fontsize=10, pad=20)
    ax.set_yticks([len(rows) - k for k in range(len(rows))], [r[0] for r in rows], fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0.4, len(rows) + 0.6)
    ax.set_xlabel("AUC (real vs synthetic) with 95% CI")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def save_all_figures(analysis: StudyAnalysis, run_dir: str | Path) -> dict[str, Path]:
    """Draw every stage-05 figure and save it under ``<run_dir>/roc/figures``; returns name -> path."""
    from mammo_lib.plotting import save_figure
    from mammo_lib.run_folder import figures_dir

    out_dir = figures_dir(run_dir, "roc")
    figs = {"roc_curves": plot_roc_curves, "ratings_by_truth": plot_ratings_by_truth,
            "confusion_matrices": plot_confusion_matrices, "auc_forest": plot_auc_forest}
    return {name: save_figure(fn(analysis), out_dir / f"{name}.png") for name, fn in figs.items()}
