"""Multi-reader multi-case (MRMC) ROC analysis by the Obuchowski-Rockette (OR) method with
Hillis's denominator degrees of freedom, ratings shaped (modalities t, readers r, cases c): the
fully crossed layout (every reader reads every case in every modality, "treatment") and the
partially paired one of a study whose modalities are generators (every reader reads every case
of a modality; the real cases are in every modality, each synthetic case in one): see
:func:`partial_auc_covariance` and :func:`or_analysis`.

Model (Obuchowski & Rockette 1995, Commun. Stat. Simul. Comput. 24:285-308):
    A_ij = mu + tau_i + R_j + (tau R)_ij + e_ij
for the AUC of reader j in modality i; R and (tau R) random (readers), the errors e correlated
because the same cases are read: Var(e) = Var_error, Cov1 (same reader, different modality),
Cov2 (different reader, same modality), Cov3 (different reader and modality). These are
estimated from the case-level covariance matrix of the t*r AUCs, by the jackknife over cases,
(c-1)/c sum_k (A_(k) - mean)(A_(k) - mean)^T, or by the DeLong et al. (1988) method, and
averaged over the pairs of each kind (Hillis, Obuchowski, Schartz & Berbaum 2005, Stat. Med.
24:1579-1607).

Mean squares of the t x r table of AUCs: MS_T, MS_R, MS_TR (two-way ANOVA without replication).

Random readers and random cases (RRRC; Hillis 2007, Stat. Med. 26:596-619; Hillis, Berbaum &
Metz 2008, Acad. Radiol. 15:647-661):
    F = MS_T / [MS_TR + r max(Cov2 - Cov3, 0)]  on (t-1, ddf_H) degrees of freedom,
    ddf_H = [MS_TR + r max(Cov2 - Cov3, 0)]^2 / {MS_TR^2 / [(t-1)(r-1)]},
    difference of two modality means: SE = sqrt(2/r [MS_TR + r max(Cov2 - Cov3, 0)]), t on ddf_H.
    One modality i alone (its reader-averaged AUC; Hillis 2007 "ddf_H_single"):
    SE = sqrt([MS_R(i) + r max(Cov2(i), 0)]/r),  df = [MS_R(i) + r max(Cov2(i),0)]^2 / [MS_R(i)^2/(r-1)],
    used here for the CI and for the test of AUC = 0.5.
Fixed readers, random cases (FRRC): X2 = (t-1) MS_T / [Var_error - Cov1 + (r-1) max(Cov2 - Cov3, 0)]
    on t-1 df; SE of a difference sqrt(2/r [Var_error - Cov1 + (r-1) max(Cov2 - Cov3, 0)]);
    one modality: SE = sqrt([Var_error(i) + (r-1) max(Cov2(i), 0)]/r), normal quantiles.
Random readers, fixed cases (RRFC): F = MS_T/MS_TR on (t-1, (t-1)(r-1)) df.
Variance components: Var_TR = MS_TR - Var_error + Cov1 + Cov2 - Cov3,
    Var_R = [MS_R - Var_error - (t-1)Cov1 + Cov2 + (t-1)Cov3 - Var_TR]/t  (expected mean squares
    of the OR model; they can be negative, as in the Iowa software's output).

These are the formulas printed by OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce & Berbaum), whose
Van Dyke et al. (1993) output the tests reproduce; RJafroc's StSignificanceTesting and MRMCaov
implement the same method in R.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from mammo_lib.auc_stats import (
    as_binary_truth,
    delong_components,
    delong_covariance,
    jackknife_aucs,
    jackknife_covariance,
)

COVARIANCE_METHODS = ("jackknife", "delong")
PARTIAL_DESIGN = ("partially paired: each modality's AUCs use its own cases; cases shared by modalities (e.g. the "
                  "real cases, read once and scored in every generator's modality) correlate them, the others "
                  "do not (covariances over the shared cases, mammo_lib.roc.mrmc.partial_auc_covariance)")


@dataclass
class ORComponents:
    """AUCs (t, r), their covariance (t*r, t*r, modality-major), mean squares and OR covariances."""

    auc: np.ndarray
    cov: np.ndarray
    ms_t: float
    ms_r: float
    ms_tr: float
    ms_r_per_modality: np.ndarray
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_error_per_modality: np.ndarray
    cov2_per_modality: np.ndarray
    var_error_per_reader: np.ndarray
    cov1_per_reader: np.ndarray


def auc_covariance(ratings: np.ndarray, truth: Sequence, method: str = "jackknife") -> tuple[np.ndarray, np.ndarray]:
    """AUCs (t, r) and their (t*r, t*r) covariance over cases by ``method`` ('jackknife'|'delong')."""
    ratings = np.asarray(ratings, dtype=float)
    if ratings.ndim != 3:
        raise ValueError(f"ratings must be shaped (modalities, readers, cases); got {ratings.shape}")
    t, r, c = ratings.shape
    flat = ratings.reshape(t * r, c)
    if method == "jackknife":
        auc, cov = jackknife_covariance(flat, truth)
    elif method == "delong":
        auc, cov = delong_covariance(flat, truth)
    else:
        raise ValueError(f"covariance method {method!r} is not one of {COVARIANCE_METHODS}")
    return auc.reshape(t, r), cov


def _modality_cases(ratings: np.ndarray, is_pos: np.ndarray, present: np.ndarray, i: int) -> tuple:
    idx = present[i]
    if min(int((is_pos & idx).sum()), int((~is_pos & idx).sum())) < 2:
        raise ValueError(f"modality {i + 1} holds {int((is_pos & idx).sum())} positive and "
                         f"{int((~is_pos & idx).sum())} negative case(s); the analysis needs 2 of each")
    return idx, ratings[i][:, idx], is_pos[idx]


def _partial_jackknife(ratings: np.ndarray, is_pos: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, r, c = ratings.shape
    auc = np.empty((t, r))
    loo = np.empty((t, r, c))
    for i in range(t):
        idx, scores, truth_i = _modality_cases(ratings, is_pos, present, i)
        auc[i] = delong_components(scores, truth_i)[0]
        loo[i] = auc[i][:, None]  # a case outside modality i leaves its AUCs unchanged
        loo[i][:, idx] = jackknife_aucs(scores, truth_i)
    cov = np.empty((t * r, t * r))
    for i in range(t):
        for k in range(t):
            union = present[i] | present[k]
            n_u = int(union.sum())
            di = loo[i][:, union] - loo[i][:, union].mean(axis=1, keepdims=True)
            dk = loo[k][:, union] - loo[k][:, union].mean(axis=1, keepdims=True)
            cov[i * r:(i + 1) * r, k * r:(k + 1) * r] = (n_u - 1) / n_u * di @ dk.T
    return auc, cov


def _shared_term(comp: list[np.ndarray], means: np.ndarray, sets: list[np.ndarray], i: int, k: int) -> np.ndarray:
    """Sum over the cases modalities i and k share of the products of centred components, scaled
    as DeLong's S/m when they share all (m_i m_k) and 0 when they share none."""
    shared = sets[i] & sets[k]
    n_ik = int(shared.sum())
    r = means.shape[1]
    if n_ik == 0:
        return np.zeros((r, r))
    if n_ik == 1:
        return np.full((r, r), np.nan)
    m_i, m_k = int(sets[i].sum()), int(sets[k].sum())
    ci = comp[i][:, shared[sets[i]]] - means[i][:, None]
    ck = comp[k][:, shared[sets[k]]] - means[k][:, None]
    return ci @ ck.T / (m_i * m_k) * n_ik / (n_ik - 1)


def _partial_delong(ratings: np.ndarray, is_pos: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, r, _ = ratings.shape
    auc = np.empty((t, r))
    v10, v01 = [], []
    for i in range(t):
        _, scores, truth_i = _modality_cases(ratings, is_pos, present, i)
        auc[i], a10, a01 = delong_components(scores, truth_i)
        v10.append(a10)
        v01.append(a01)
    pos_sets = [present[i] & is_pos for i in range(t)]
    neg_sets = [present[i] & ~is_pos for i in range(t)]
    cov = np.empty((t * r, t * r))
    for i in range(t):
        for k in range(t):
            cov[i * r:(i + 1) * r, k * r:(k + 1) * r] = (_shared_term(v10, auc, pos_sets, i, k)
                                                         + _shared_term(v01, auc, neg_sets, i, k))
    return auc, cov


def partial_auc_covariance(ratings: np.ndarray, truth: Sequence, present: np.ndarray,
                           method: str = "jackknife") -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance when a case need not be read in every modality.

    Reader j's AUC in modality i uses the cases present in modality i only. The covariance of
    two AUCs comes from the cases they share:

    * ``jackknife``: leave-one-case-out AUCs over the union of the two AUCs' cases (a case
      outside a modality leaves that modality's AUC unchanged),
      cov = (u-1)/u sum_k (A_(k) - mean)(B_(k) - mean) with u the size of the union. For one
      modality (or two that hold the same cases) this is the OR-DBM jackknife of Hillis et al.
      (2005) on that modality's cases, so a modality's variance and Cov2 equal those of a
      one-modality analysis of its own cases.
    * ``delong``: DeLong et al.'s (1988) structural components; the positive-case term of
      AUCs a, b is sum over their shared positives of (V10_a - A_a)(V10_b - A_b) / (m_a m_b)
      times s/(s-1) (s shared positives), likewise for negatives: S10/m + S01/n when all cases
      are shared, 0 for a class they share none of.

    Parameters
    ----------
    ratings : float array, shape (t, r, c)
        Ratings of every reader; cells of absent cases are ignored (NaN allowed there).
    truth : array-like, shape (c,)
        Positive-case labels (see :func:`mammo_lib.auc_stats.as_binary_truth`).
    present : bool array, shape (t, c)
        Which cases are read in which modality (every reader reads every present case).
    method : {"jackknife", "delong"}

    Returns
    -------
    auc : float array, shape (t, r)
    cov : float array, shape (t*r, t*r), modality-major

    Raises
    ------
    ValueError
        If a modality holds fewer than 2 cases of a class, or ``method`` is unknown.

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845.
    Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS (2005) Stat Med 24:1579-1607.
    """
    ratings = np.asarray(ratings, dtype=float)
    is_pos = as_binary_truth(truth)
    present = np.asarray(present, dtype=bool)
    if present.shape != (ratings.shape[0], ratings.shape[2]) or is_pos.size != ratings.shape[2]:
        raise ValueError(f"present must be shaped (modalities, cases) = {(ratings.shape[0], ratings.shape[2])} "
                         f"and truth (cases,); got {present.shape} and {is_pos.shape}")
    if method == "jackknife":
        return _partial_jackknife(ratings, is_pos, present)
    if method == "delong":
        return _partial_delong(ratings, is_pos, present)
    raise ValueError(f"covariance method {method!r} is not one of {COVARIANCE_METHODS}")


def or_components(auc: np.ndarray, cov: np.ndarray) -> ORComponents:
    """Mean squares of the AUC table and the OR error (co)variances averaged by pair type."""
    auc = np.asarray(auc, dtype=float)
    t, r = auc.shape
    grand = auc.mean()
    mod_means, rdr_means = auc.mean(axis=1), auc.mean(axis=0)
    ms_t = r * np.sum((mod_means - grand) ** 2) / (t - 1) if t > 1 else float("nan")
    ms_r = t * np.sum((rdr_means - grand) ** 2) / (r - 1) if r > 1 else float("nan")
    resid = auc - mod_means[:, None] - rdr_means[None, :] + grand
    ms_tr = np.sum(resid**2) / ((t - 1) * (r - 1)) if t > 1 and r > 1 else float("nan")
    ms_r_i = auc.var(axis=1, ddof=1) if r > 1 else np.full(t, np.nan)

    mod = np.repeat(np.arange(t), r)
    rdr = np.tile(np.arange(r), t)
    same_mod = mod[:, None] == mod[None, :]
    same_rdr = rdr[:, None] == rdr[None, :]
    diag = np.eye(t * r, dtype=bool)

    def mean_of(mask: np.ndarray) -> float:
        return float(cov[mask].mean()) if mask.any() else float("nan")

    var_error = mean_of(diag)
    cov1 = mean_of(~same_mod & same_rdr)
    cov2 = mean_of(same_mod & ~same_rdr)
    cov3 = mean_of(~same_mod & ~same_rdr)
    var_i = np.array([mean_of(diag & (mod[:, None] == i)) for i in range(t)])
    cov2_i = np.array([mean_of(same_mod & ~same_rdr & (mod[:, None] == i)) for i in range(t)])
    var_j = np.array([mean_of(diag & (rdr[:, None] == j)) for j in range(r)])
    cov1_j = np.array([mean_of(~same_mod & same_rdr & (rdr[:, None] == j)) for j in range(r)])
    return ORComponents(auc=auc, cov=cov, ms_t=float(ms_t), ms_r=float(ms_r), ms_tr=float(ms_tr),
                        ms_r_per_modality=ms_r_i, var_error=var_error, cov1=cov1, cov2=cov2, cov3=cov3,
                        var_error_per_modality=var_i, cov2_per_modality=cov2_i,
                        var_error_per_reader=var_j, cov1_per_reader=cov1_j)


def _ratio(num: float, den: float) -> float:
    """num/den for test statistics, inf or nan (not an exception) when the error term is 0
    (e.g. readers with identical ratings)."""
    if den > 0:
        return num / den
    return math.inf if num > 0 else math.nan


def _t_ci(est: float, se: float, df: float, alpha: float) -> list[float]:
    q = stats.t.ppf(1 - alpha / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - alpha / 2)
    return [float(est - q * se), float(est + q * se)]


def single_modality_rrrc(auc_i: np.ndarray, ms_r_i: float, cov2_i: float, alpha: float = 0.05,
                         null_auc: float = 0.5) -> dict:
    """Reader-averaged AUC of one modality, random readers and cases (Hillis 2007 ddf_H_single):
    CI and the t test of mean AUC = ``null_auc``."""
    r = auc_i.size
    mean = float(auc_i.mean())
    denom = ms_r_i + r * max(cov2_i, 0.0)
    se = math.sqrt(denom / r)
    df = denom**2 / (ms_r_i**2 / (r - 1)) if ms_r_i > 0 else math.inf
    tstat = _ratio(mean - null_auc, se) if mean >= null_auc else -_ratio(null_auc - mean, se)
    p = 2 * (stats.t.sf(abs(tstat), df) if np.isfinite(df) else stats.norm.sf(abs(tstat)))
    out = {"auc": mean, "se": se, "df": float(df), "ci": _t_ci(mean, se, df, alpha),
           "t_vs_0.5": float(tstat), "p_vs_0.5": float(p), "ms_r": float(ms_r_i), "cov2": float(cov2_i),
           "degenerate": not se > 0}
    if not se > 0:
        out["note"] = ("degenerate: the readers' AUCs do not vary (e.g. perfect or reversed separation), so the "
                       "SE is 0 and the test and CI say nothing")
    return out


def or_analysis(
    ratings: np.ndarray, truth: Sequence, covariance: str = "jackknife", alpha: float = 0.05,
    modalities: Sequence[str] | None = None, readers: Sequence[str] | None = None,
    present: np.ndarray | None = None,
) -> dict:
    """Obuchowski-Rockette analysis of ratings shaped (modalities, readers, cases).

    Fully crossed by default. With ``present``, a case may be read in some modalities only
    (every reader reads every case of a modality): the partially paired design of a study whose
    modalities are generators, where the real cases are read in every modality and each
    generator's synthetic cases in its own. Each reader x modality AUC is computed on that
    modality's cases and the OR error covariances (Var_error, Cov1, Cov2, Cov3) come from the
    cases the AUCs share (:func:`partial_auc_covariance`); the OR model and every formula above
    then apply unchanged: the OR model is a marginal-mean ANOVA of the AUCs whose error
    covariances (Var_error, Cov1-Cov3) are whatever the case structure induces (Hillis 2014),
    and OR-type analyses of other designs (e.g. split-plot, Obuchowski, Gallas & Hillis 2012)
    differ only in how those covariances are estimated. This partially paired design is not one
    derived in those papers: the estimator here is OR-DBM's jackknife (or DeLong's) restricted
    to shared cases, checked to give the OR-DBM MRMC 2.51 figures when every case is in every
    modality and, for each modality, exactly a one-modality analysis of its own cases. Cov1 and
    Cov3 (different modalities) are smaller than in a fully paired design because only the
    shared cases correlate them, so modality differences get less help from pairing. A fully
    crossed ``present`` (all True) gives exactly the fully crossed analysis.

    Parameters
    ----------
    ratings : float array, shape (t, r, c)
        Ratings (higher = more likely positive); NaN allowed only in absent cells.
    truth : array-like, shape (c,)
        Positive-case labels.
    covariance : {"jackknife", "delong"}
    alpha : float
        1 - confidence level of the CIs.
    modalities, readers : sequence of str, optional
        Names (default "modality i", "reader j").
    present : bool array, shape (t, c), optional
        Which cases are read in which modality (None: every case in every modality).

    Returns
    -------
    dict
        JSON-able: per-reader AUCs, mean squares, variance components, and for RRRC / FRRC /
        RRFC the single-modality AUCs with CIs (and, RRRC, the test of AUC = 0.5) and, with two
        or more modalities, the overall F (or chi-square) test with df and p and every pairwise
        difference with SE, df, p and CI. With a partially paired ``present``, also ``design``
        (a sentence) and ``n_cases_per_modality``; ``n_cases`` counts the union of cases.

    Raises
    ------
    ValueError
        If the layout is not 3-D, there are fewer than 2 readers, a modality holds fewer than 2
        cases of a class, or the covariance method is unknown.

    References
    ----------
    Obuchowski NA, Rockette HE (1995) Commun Stat Simul Comput 24:285-308.
    Hillis SL (2007) Stat Med 26:596-619.
    Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS (2005) Stat Med 24:1579-1607.
    Hillis SL (2014) Stat Med 33:330-360 (the OR model as a marginal-mean ANOVA).
    Obuchowski NA, Gallas BD, Hillis SL (2012) Acad Radiol 19:1508-1517 (OR for split-plot designs).
    DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845.
    """
    ratings = np.asarray(ratings, dtype=float)
    if ratings.ndim != 3:
        raise ValueError(f"ratings must be shaped (modalities, readers, cases); got {ratings.shape}")
    t, r, _ = ratings.shape
    if r < 2:
        raise ValueError(f"the Obuchowski-Rockette analysis needs at least 2 readers; got {r}")
    modalities = list(modalities) if modalities is not None else [f"modality {i + 1}" for i in range(t)]
    readers = list(readers) if readers is not None else [f"reader {j + 1}" for j in range(r)]
    partial = present is not None and not np.asarray(present, dtype=bool).all()
    if partial:
        auc, cov = partial_auc_covariance(ratings, truth, present, covariance)
    else:
        auc, cov = auc_covariance(ratings, truth, covariance)
    comp = or_components(auc, cov)
    z = stats.norm.ppf(1 - alpha / 2)
    out: dict = {
        "method": "Obuchowski-Rockette (1995) with Hillis (2007, 2008) denominator df",
        "covariance": covariance, "alpha": alpha, "n_modalities": t, "n_readers": r,
        "n_cases": int(np.asarray(present, bool).any(axis=0).sum()) if partial else int(ratings.shape[2]),
        "modalities": modalities, "readers": readers,
        "auc": {m: dict(zip(readers, map(float, auc[i]), strict=True)) for i, m in enumerate(modalities)},
        "modality_mean_auc": dict(zip(modalities, map(float, auc.mean(axis=1)), strict=True)),
        "anova": {"MS_T": comp.ms_t, "MS_R": comp.ms_r, "MS_TR": comp.ms_tr,
                  "MS_R_per_modality": dict(zip(modalities, map(float, comp.ms_r_per_modality), strict=True))},
        "covariances": {"Var_error": comp.var_error, "Cov1": comp.cov1, "Cov2": comp.cov2, "Cov3": comp.cov3,
                        "Var_error_per_modality": dict(zip(modalities, map(float, comp.var_error_per_modality), strict=True)),
                        "Cov2_per_modality": dict(zip(modalities, map(float, comp.cov2_per_modality), strict=True))},
    }
    if t > 1:
        var_tr = comp.ms_tr - comp.var_error + comp.cov1 + comp.cov2 - comp.cov3
        var_r = (comp.ms_r - comp.var_error - (t - 1) * comp.cov1 + comp.cov2 + (t - 1) * comp.cov3 - var_tr) / t
    else:
        var_tr = float("nan")
        var_r = comp.ms_r - comp.var_error + comp.cov2
    out["variance_components"] = {"Var_R": float(var_r), "Var_TR": float(var_tr)}
    if partial:
        out["design"] = PARTIAL_DESIGN
        out["n_cases_per_modality"] = dict(zip(modalities, map(int, np.asarray(present, bool).sum(axis=1)),
                                               strict=True))

    # single-modality analyses (each modality on its own data)
    rrrc_single, frrc_single, rrfc_single = {}, {}, {}
    for i, m in enumerate(modalities):
        rrrc_single[m] = single_modality_rrrc(auc[i], comp.ms_r_per_modality[i], comp.cov2_per_modality[i], alpha)
        mean = float(auc[i].mean())
        se_f = math.sqrt((comp.var_error_per_modality[i] + (r - 1) * max(comp.cov2_per_modality[i], 0.0)) / r)
        zf = _ratio(mean - 0.5, se_f) if mean >= 0.5 else -_ratio(0.5 - mean, se_f)
        frrc_single[m] = {"auc": mean, "se": se_f, "ci": [mean - z * se_f, mean + z * se_f],
                          "z_vs_0.5": float(zf), "p_vs_0.5": float(2 * stats.norm.sf(abs(zf))),
                          "degenerate": not se_f > 0}
        se_rf = math.sqrt(comp.ms_r_per_modality[i] / r)
        rrfc_single[m] = {"auc": mean, "se": se_rf, "df": r - 1, "ci": _t_ci(mean, se_rf, r - 1, alpha)}
    out["RRRC"] = {"single_modality": rrrc_single}
    out["FRRC"] = {"single_modality": frrc_single}
    out["RRFC"] = {"single_modality": rrfc_single}

    if t > 1:
        # random readers, random cases
        err = comp.ms_tr + r * max(comp.cov2 - comp.cov3, 0.0)
        ddf = err**2 / (comp.ms_tr**2 / ((t - 1) * (r - 1))) if comp.ms_tr > 0 else math.inf
        f = _ratio(comp.ms_t, err)
        se_d = math.sqrt(2 / r * err)
        # fixed readers, random cases
        err_f = comp.var_error - comp.cov1 + (r - 1) * max(comp.cov2 - comp.cov3, 0.0)
        x2 = _ratio((t - 1) * comp.ms_t, err_f)
        se_df = math.sqrt(max(2 / r * err_f, 0.0))
        # random readers, fixed cases
        f_rf = _ratio(comp.ms_t, comp.ms_tr)
        df_rf = (t - 1) * (r - 1)
        se_drf = math.sqrt(2 / r * comp.ms_tr)
        diffs_rrrc, diffs_frrc, diffs_rrfc = [], [], []
        means = auc.mean(axis=1)
        for a, b in combinations(range(t), 2):
            d = float(means[a] - means[b])
            name = f"{modalities[a]} - {modalities[b]}"
            tt = _ratio(d, se_d) if d >= 0 else -_ratio(-d, se_d)
            diffs_rrrc.append({"comparison": name, "difference": d, "se": se_d, "df": float(ddf), "t": tt,
                               "p": float(2 * stats.t.sf(abs(tt), ddf)), "ci": _t_ci(d, se_d, ddf, alpha)})
            zz = _ratio(d, se_df) if d >= 0 else -_ratio(-d, se_df)
            diffs_frrc.append({"comparison": name, "difference": d, "se": se_df, "z": zz,
                               "p": float(2 * stats.norm.sf(abs(zz))), "ci": [d - z * se_df, d + z * se_df]})
            t3 = _ratio(d, se_drf) if d >= 0 else -_ratio(-d, se_drf)
            diffs_rrfc.append({"comparison": name, "difference": d, "se": se_drf, "df": df_rf, "t": t3,
                               "p": float(2 * stats.t.sf(abs(t3), df_rf)), "ci": _t_ci(d, se_drf, df_rf, alpha)})
        out["RRRC"].update({"F": float(f), "df_num": t - 1, "ddf_H": float(ddf), "error_MS": float(err),
                            "p": float(stats.f.sf(f, t - 1, ddf)), "differences": diffs_rrrc})
        out["FRRC"].update({"X2": float(x2), "df": t - 1, "p": float(stats.chi2.sf(x2, t - 1)),
                            "differences": diffs_frrc})
        out["RRFC"].update({"F": float(f_rf), "df": [t - 1, df_rf], "p": float(stats.f.sf(f_rf, t - 1, df_rf)),
                            "differences": diffs_rrfc})
        if t == 2:
            per_reader = []
            for j in range(r):
                d = float(auc[0, j] - auc[1, j])
                se_j = math.sqrt(max(2 * (comp.var_error_per_reader[j] - comp.cov1_per_reader[j]), 0.0))
                zj = d / se_j if se_j > 0 else math.nan
                per_reader.append({"reader": readers[j], "difference": d, "se": se_j,
                                   "p": float(2 * stats.norm.sf(abs(zj))), "ci": [d - z * se_j, d + z * se_j],
                                   "Var_error": float(comp.var_error_per_reader[j]),
                                   "Cov1": float(comp.cov1_per_reader[j])})
            out["FRRC"]["per_reader_differences"] = per_reader
    return out
