"""Stage 05 across generators: when the case set's synthetic cases come from several generators,
each generator is judged against the same real cases, per reader and across readers.

* **Per reader and per generator**: accuracy, sensitivity (real called real), specificity (this
  generator's patches called synthetic) and the AUC with DeLong and bootstrap CIs, on the real
  cases plus that generator's synthetic cases (:func:`mammo_lib.roc.reader_stats.reader_statistics`).
* **MRMC with the generator as the modality** (Obuchowski & Rockette 1995; Hillis 2007): reader
  j's AUC in modality g uses all real cases and generator g's synthetic cases. The real cases are
  shared by every modality (as in a paired design) and each synthetic case belongs to one
  modality, so the design is *partially paired*; the OR error covariances are estimated over the
  cases two AUCs share (:func:`mammo_lib.roc.mrmc.partial_auc_covariance`, jackknife or DeLong),
  which makes each generator's own variance exactly that of a one-generator analysis of its
  cases (the OR model read as a marginal-mean ANOVA whose error covariances the design induces,
  Hillis 2014; the estimator for this design is this project's, see
  :func:`mammo_lib.roc.mrmc.or_analysis`). The F test asks whether the generators' reader-averaged AUCs differ; each pairwise
  difference "A - B" (with CI and p, random readers and cases) answers "is generator A harder
  to tell from real than B?": a negative difference means readers separated A's patches from
  real ones less well than B's.
* **Readers**: a human reader reads every modality with one rating per case (a real case's
  rating counts in every modality). A machine observer is trained once per generator
  (``machine-pixels-<generator>``); across generators the observer (``machine-pixels``) is ONE
  reader, whose modality-g ratings are those of its copy trained against g. Ratings a copy gives
  to other generators' cases are not used here.

With one generator nothing here runs: stage 05's output is that of a one-modality study.

References
----------
Obuchowski NA, Rockette HE (1995) Commun Stat Simul Comput 24:285-308.
Hillis SL (2007) Stat Med 26:596-619.
Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS (2005) Stat Med 24:1579-1607.
Hillis SL (2014) Stat Med 33:330-360.
DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from mammo_lib.rating_scale import POSITIVE_TRUTH
from mammo_lib.reader_study.files import KeyedCaseSet
from mammo_lib.reader_study.machine_observers import machine_observer_ids
from mammo_lib.roc.mrmc import or_analysis
from mammo_lib.roc.mrmc_export import MRMCData, data_from_long
from mammo_lib.roc.reader_stats import reader_seed, reader_statistics

PER_GENERATOR_KEYS = ("n_cases", "n_real", "n_synthetic", "accuracy", "sensitivity", "specificity", "auc",
                      "auc_delong", "auc_hanley_mcneil_se", "auc_bootstrap")


@dataclass
class GeneratorAnalysis:
    """Stage 05 across generators (see the module docstring).

    generators: names in study order. n_real, n_synthetic: scored cases (per generator).
    per_reader: generator -> ratings id -> statistics (:data:`PER_GENERATOR_KEYS`, plus
    reader_kind, mrmc_reader, trained_on). mrmc: reader group -> :func:`mammo_lib.roc.mrmc.or_analysis`
    output (modalities = generators) with a note, or {"skipped": reason}. layout: the
    "all readers" MRMC layout (exported), or None. notes: what was left out and why.
    """

    generators: list[str]
    n_real: int
    n_synthetic: dict[str, int]
    per_reader: dict[str, dict[str, dict]]
    mrmc: dict[str, dict]
    layout: MRMCData | None = None
    layout_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The ``by_generator`` and ``mrmc_generators`` sections of ``roc/metrics.json``."""
        return {
            "by_generator": {g: {"n_real": self.n_real, "n_synthetic": self.n_synthetic[g],
                                 "readers": self.per_reader[g]} for g in self.generators},
            "mrmc_generators": self.mrmc,
        }


def reader_roles(kinds: dict[str, str], generators: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """Each ratings id -> (MRMC reader, generator it reads for; None = every generator).

    Parameters
    ----------
    kinds : dict
        Ratings id -> "human" / "machine".
    generators : sequence of str

    Returns
    -------
    dict
        Machine observers named by :func:`mammo_lib.reader_study.machine_observers.machine_reader_id` map to
        (observer, generator); every other reader to (its id, None).
    """

    machines = machine_observer_ids(generators)
    return {r: (machines[r] if r in machines and kinds[r] == "machine" else (r, None)) for r in kinds}


def _one(sub: pd.DataFrame, rid: str, generator: str, kind: str, mrmc_reader: str, trained: str | None,
         n_bootstrap: int, seed: int, notes: list[str]) -> dict | None:
    if sub["truth"].nunique() < 2:
        notes.append(f"generator {generator!r}, reader {rid!r}: rated cases of one class only ({len(sub)}); "
                     "no per-generator statistics yet")
        return None
    full = reader_statistics(sub["value"].to_numpy(), sub["truth"].to_numpy(), n_bootstrap=n_bootstrap,
                             seed=reader_seed(seed, rid, generator), binormal=False)
    out = {k: full[k] for k in PER_GENERATOR_KEYS}
    out.update({"reader_kind": kind, "mrmc_reader": mrmc_reader, "trained_on": trained})
    return out


def per_generator_statistics(ratings: pd.DataFrame, roles: dict, kinds: dict[str, str], generators: Sequence[str],
                             n_bootstrap: int, seed: int, notes: list[str]) -> dict[str, dict[str, dict]]:
    """Per generator and reader: statistics on the real cases plus that generator's cases.

    Parameters
    ----------
    ratings : DataFrame
        Last answer per (reader, case): reader, case_id, value, truth, generator ("" for real).
    roles : dict
        From :func:`reader_roles`.
    kinds : dict
        Ratings id -> reader kind.
    generators : sequence of str
    n_bootstrap, seed : int
        Bootstrap resamples; each (reader, generator) stream is keyed by (seed, purpose, reader,
        generator).
    notes : list of str
        Appended to: readers left out of a generator and why.

    Returns
    -------
    dict
        generator -> ratings id -> statistics (humans, and the machine observers trained
        against that generator).
    """
    out: dict[str, dict[str, dict]] = {}
    for g in generators:
        out[g] = {}
        for rid, (mrmc_reader, trained) in roles.items():
            if trained not in (None, g):
                continue
            sub = ratings[(ratings["reader"] == rid) & ratings["generator"].isin(["", g])]
            res = _one(sub, rid, g, kinds[rid], mrmc_reader, trained, n_bootstrap, seed, notes)
            if res is not None:
                out[g][rid] = res
    return out


def long_table(ratings: pd.DataFrame, roles: dict, generators: Sequence[str], mrmc_readers: Sequence[str]) -> pd.DataFrame:
    """The MRMC layout across generators as a long table, one row per (reader, case, modality).

    Parameters
    ----------
    ratings : DataFrame
        As in :func:`per_generator_statistics`.
    roles : dict
        From :func:`reader_roles`.
    generators : sequence of str
        The modalities, in order.
    mrmc_readers : sequence of str
        The MRMC readers to include, in order.

    Returns
    -------
    DataFrame
        reader, case, modality (the generator), truth (1 = real), rating (the mapped value): the
        real cases under every generator, generator g's synthetic cases under g only.
    """
    parts = []
    for g in generators:
        for reader in mrmc_readers:
            ids = [rid for rid, (mr, trained) in roles.items() if mr == reader and trained in (None, g)]
            sub = ratings[ratings["reader"].isin(ids) & ratings["generator"].isin(["", g])]
            parts.append(pd.DataFrame({"reader": reader, "case": sub["case_id"].astype(str), "modality": g,
                                       "truth": (sub["truth"] == POSITIVE_TRUTH).astype(int),
                                       "rating": sub["value"].astype(float)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["reader", "case", "modality", "truth", "rating"])


def _fully_rated(long: pd.DataFrame, readers: Sequence[str], label: str, notes: list[str]) -> pd.DataFrame:
    """Keep, per modality, the cases every reader rated (each modality must be crossed)."""
    counts = long.groupby(["modality", "case"])["reader"].nunique()
    keep = counts[counts == len(readers)].index
    kept = long[pd.MultiIndex.from_frame(long[["modality", "case"]]).isin(keep)]
    if len(keep) < len(counts):
        notes.append(f"MRMC across generators ({label}): {len(counts) - len(keep)} (generator, case) pair(s) not "
                     "rated by every reader are left out")
    return kept.reset_index(drop=True)


def generator_or_analysis(long: pd.DataFrame, covariance: str = "jackknife", label: str = "ratings") -> tuple[dict, MRMCData]:
    """Obuchowski-Rockette analysis with the generator as the modality, from a long table.

    Parameters
    ----------
    long : DataFrame
        reader, case, modality, truth (1 = real), rating; a case may be read in some modalities
        only (the real cases in all, a synthetic case in its generator's), by every reader.
    covariance : {"jackknife", "delong"}
    label : str
        Named in error messages.

    Returns
    -------
    result : dict
        :func:`mammo_lib.roc.mrmc.or_analysis` output (modalities in order of first appearance),
        partially paired unless every case is read in every modality, in which case it is the
        fully crossed analysis (e.g. the Van Dyke data read as two generators reproduce OR-DBM
        MRMC 2.51).
    data : MRMCData
        The layout analysed.

    Raises
    ------
    mammo_lib.roc.mrmc_export.ExportError
        If a rating is missing within a modality or a case has two truth values.
    ValueError
        As :func:`mammo_lib.roc.mrmc.or_analysis` (fewer than 2 readers, or a modality with fewer than
        2 cases of a class).

    References
    ----------
    Obuchowski & Rockette (1995); Hillis (2007); Hillis et al. (2005); DeLong et al. (1988).
    """
    data = data_from_long(long, label)
    result = or_analysis(data.ratings, data.truth, covariance=covariance, modalities=data.modalities,
                         readers=data.readers, present=data.present)
    return result, data


def _group(ratings, roles, generators, readers, covariance, label, notes) -> tuple[dict, MRMCData | None]:
    long = _fully_rated(long_table(ratings, roles, generators, readers), readers, label, notes)
    per_class = long.groupby(["modality", "truth"])["case"].nunique()
    if any(per_class.get((g, t), 0) < 2 for g in generators for t in (0, 1)):
        return {"skipped": f"a generator has fewer than 2 real or 2 synthetic cases rated by all of {list(readers)}"}, None
    result, data = generator_or_analysis(long, covariance, f"MRMC across generators ({label})")
    result["note"] = ("modality = generator; reader j's AUC in modality g uses all real cases and g's synthetic "
                      "cases (real cases shared by every modality: partially paired); random readers and random "
                      "cases, Hillis (2007) df")
    return result, data


def analyse_generators(ratings: pd.DataFrame, kinds: dict[str, str], generators: Sequence[str], n_real: int,
                       n_synthetic: dict[str, int], n_bootstrap: int = 2000, seed: int = 0,
                       covariance: str = "jackknife") -> GeneratorAnalysis:
    """Every statistic across generators (see the module docstring).

    Parameters
    ----------
    ratings : DataFrame
        Last answer per (reader, case): reader, reader_kind, case_id, value, truth ("real" /
        "synthetic") and generator ("" for real cases).
    kinds : dict
        Ratings id -> "human" / "machine" (the readers analysed).
    generators : sequence of str
        At least two, in study order.
    n_real : int
        Real cases in the case set.
    n_synthetic : dict
        Generator -> its synthetic cases in the case set.
    n_bootstrap, seed : int
    covariance : {"jackknife", "delong"}

    Returns
    -------
    GeneratorAnalysis

    References
    ----------
    Obuchowski & Rockette (1995); Hillis (2007); DeLong et al. (1988).
    """
    generators = list(generators)
    notes: list[str] = []
    ratings = ratings[ratings["reader"].isin(list(kinds))]
    roles = reader_roles(kinds, generators)
    per_reader = per_generator_statistics(ratings, roles, kinds, generators, n_bootstrap, seed, notes)
    humans = sorted({mr for rid, (mr, _) in roles.items() if kinds[rid] == "human"})
    machines = sorted({mr for rid, (mr, _) in roles.items() if kinds[rid] == "machine"})
    groups = {"all readers": humans + machines}
    if len(humans) >= 2 and machines:
        groups["human readers"] = humans
    if len(machines) >= 2 and humans:
        groups["machine readers"] = machines
    mrmc: dict[str, dict] = {}
    layout, layout_notes = None, []
    for label, readers in groups.items():
        if len(readers) < 2:
            mrmc[label] = {"skipped": f"fewer than 2 readers ({readers})"}
            continue
        group_notes: list[str] = []
        mrmc[label], data = _group(ratings, roles, generators, readers, covariance, label, group_notes)
        notes += group_notes
        if label == "all readers":
            layout, layout_notes = data, group_notes
    if layout is None:
        layout_notes = layout_notes + [f"exports skipped: {mrmc['all readers'].get('skipped', 'no layout')}"]
    return GeneratorAnalysis(generators, int(n_real), {g: int(n_synthetic.get(g, 0)) for g in generators},
                             per_reader, mrmc, layout, layout_notes, notes)


def synthetic_counts(case_set: KeyedCaseSet) -> dict[str, int]:
    """Generator -> synthetic cases of a keyed case set, in study order."""
    syn = case_set.cases[case_set.cases["truth"] == "synthetic"]
    return {g: int((syn["generator"] == g).sum()) for g in case_set.generators}


def analyse_study_generators(ratings: pd.DataFrame, case_set: KeyedCaseSet, kinds: dict[str, str], n_bootstrap: int,
                      seed: int, covariance: str, notes: list[str]) -> GeneratorAnalysis | None:
    """:func:`analyse_generators` for stage 05's ratings table, or None with one generator.

    Parameters
    ----------
    ratings : DataFrame
        Last answer per (reader, case) (:class:`mammo_lib.reader_study.files.RatingsLoad`); the
        generator of each case is joined from the key.
    case_set : KeyedCaseSet
    kinds : dict
        The analysed readers -> kind.
    n_bootstrap, seed : int
    covariance : {"jackknife", "delong"}
    notes : list of str
        Appended to.

    Returns
    -------
    GeneratorAnalysis or None
    """
    if len(case_set.generators) < 2 or not kinds:
        return None
    generator = case_set.cases.set_index("case_id")["generator"]
    across = analyse_generators(ratings.assign(generator=ratings["case_id"].map(generator)), kinds,
                                case_set.generators, int((case_set.cases["truth"] == "real").sum()),
                                synthetic_counts(case_set), n_bootstrap, seed, covariance)
    notes += across.notes
    return across


def generator_reader_table(analysis: GeneratorAnalysis) -> pd.DataFrame:
    """One row per generator and reader: that generator's cases against the real ones.

    Parameters
    ----------
    analysis : GeneratorAnalysis

    Returns
    -------
    DataFrame
        generator, reader (ratings id), kind, cases, accuracy with its exact 95% CI, sensitivity
        (real called real), specificity (this generator's patches called synthetic), AUC with its
        DeLong and bootstrap 95% CIs and the DeLong p against 0.5.
    """
    rows = []
    for g, readers in analysis.per_reader.items():
        for rid, s in readers.items():
            acc, dl, bs = s["accuracy"], s["auc_delong"], s["auc_bootstrap"]
            rows.append({"generator": g, "reader": rid, "kind": s["reader_kind"], "cases": s["n_cases"],
                         "accuracy": acc["estimate"], "acc 95% CI (exact)": f"{acc['ci_low']:.2f}-{acc['ci_high']:.2f}",
                         "sensitivity (real)": s["sensitivity"]["estimate"],
                         "specificity (this generator)": s["specificity"]["estimate"], "AUC": s["auc"],
                         "AUC 95% CI (DeLong)": f"{dl['ci_low']:.2f}-{dl['ci_high']:.2f}",
                         "AUC 95% CI (bootstrap)": f"{bs['low']:.2f}-{bs['high']:.2f}",
                         "p (DeLong z vs 0.5)": dl["p_value_vs_0.5"]})
    return pd.DataFrame(rows)


def generator_mrmc_table(analysis: GeneratorAnalysis) -> pd.DataFrame:
    """Reader-averaged AUC per generator and reader group (random readers and cases).

    Parameters
    ----------
    analysis : GeneratorAnalysis

    Returns
    -------
    DataFrame
        readers (group), generator, n readers, cases (real + this generator's), mean AUC, SE,
        df (Hillis), 95% CI, p against 0.5; or readers + note when a group is skipped.
    """
    rows = []
    for group, res in analysis.mrmc.items():
        if "skipped" in res:
            rows.append({"readers": group, "note": res["skipped"]})
            continue
        for g, s in res["RRRC"]["single_modality"].items():
            rows.append({"readers": group, "generator": g, "n readers": res["n_readers"],
                         "cases": res.get("n_cases_per_modality", {}).get(g, res["n_cases"]), "mean AUC": s["auc"],
                         "SE": s["se"], "df (Hillis)": s["df"], "95% CI": f"{s['ci'][0]:.3f} to {s['ci'][1]:.3f}",
                         "p vs 0.5": s["p_vs_0.5"]})
    return pd.DataFrame(rows)


def generator_difference_table(analysis: GeneratorAnalysis) -> pd.DataFrame:
    """The comparison of generators: the OR F test and every pairwise difference of reader-averaged
    AUCs, random readers and cases (RRRC) and, for these readers only, fixed readers (FRRC).

    Parameters
    ----------
    analysis : GeneratorAnalysis

    Returns
    -------
    DataFrame
        readers (group), comparison ("A - B"), AUC difference, SE, df (Hillis), 95% CI, p; the
        F test of "all generators alike" (F, df, p) on each row of its group; p with the
        readers fixed. A negative difference: A's patches were harder to tell from real.
    """
    rows = []
    for group, res in analysis.mrmc.items():
        if "skipped" in res:
            continue
        fixed = {d["comparison"]: d for d in res["FRRC"]["differences"]}
        for d in res["RRRC"]["differences"]:
            rows.append({"readers": group, "comparison": d["comparison"], "AUC difference": d["difference"],
                         "SE": d["se"], "df (Hillis)": d["df"], "95% CI": f"{d['ci'][0]:.3f} to {d['ci'][1]:.3f}",
                         "p": d["p"], "F (all alike)": res["RRRC"]["F"],
                         "F df": f"{res['RRRC']['df_num']}, {res['RRRC']['ddf_H']:.1f}", "p (F)": res["RRRC"]["p"],
                         "p, these readers only": fixed[d["comparison"]]["p"]})
    return pd.DataFrame(rows)


def generators_text(analysis: GeneratorAnalysis | None, generators: Sequence[str]) -> str:
    """Markdown on the generators of the case set, generated from the analysis.

    Parameters
    ----------
    analysis : GeneratorAnalysis or None
        None with one generator.
    generators : sequence of str

    Returns
    -------
    str
    """
    if analysis is None:
        name = generators[0] if generators else "one generator"
        return (f"All synthetic cases come from **{name}**: one modality, so the MRMC analysis below asks "
                "whether the readers' average AUC differs from 0.5, and there is nothing to compare it with.")
    counts = ", ".join(f"**{g}** ({analysis.n_synthetic[g]} synthetic cases)" for g in analysis.generators)
    res = analysis.mrmc.get("all readers", {})
    text = (f"The case set compares {len(analysis.generators)} generators: {counts}, each against the same "
            f"{analysis.n_real} real cases.")
    if "skipped" not in res and "RRRC" in res:
        means = ", ".join(f"{g} {res['modality_mean_auc'][g]:.3f}" for g in analysis.generators)
        text += (f" Reader-averaged AUC (all {res['n_readers']} readers): {means}; the F test that the generators "
                 f"are alike gives F = {res['RRRC']['F']:.2f} on ({res['RRRC']['df_num']}, {res['RRRC']['ddf_H']:.1f}) "
                 f"df, p = {res['RRRC']['p']:.3g}.")
    return text
