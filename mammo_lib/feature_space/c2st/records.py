"""The CNN two-sample test's results in words, tables and records (stage 03): the verdict
sentence per generator, the controls' sentence, the summary table, the per-patch held-out
scores (``feature_space/c2st_scores.csv``) and the ``c2st`` entry of ``feature_space/metrics.json``.

Reads and writes no files; :mod:`mammo_lib.feature_space.c2st.study` runs the tests.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from mammo_lib.feature_space.c2st.study import NULL_AUC_LIMIT, POSITIVE, POSITIVE_AUC_MIN, C2STStudy
from mammo_lib.feature_space.c2st.two_sample import C2STResult
from mammo_lib.feature_space.sampling import GroupSample


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict_sentence(result: C2STResult, calibrated: bool | None = True, sensitive: bool | None = True) -> str:
    """One sentence in words: can the observer tell this generator's patches from real ones?

    Parameters
    ----------
    result : C2STResult
        Real lesions vs one generator.
    calibrated, sensitive : bool
        The controls' verdicts (:meth:`C2STStudy.calibrated`, :meth:`C2STStudy.sensitive`); when
        either fails, the sentence says that the test cannot be trusted on this data.

    Returns
    -------
    str
    """
    gen = result.names[1]
    if result.degenerate():
        ci = (f"held-out AUC {result.auc:.3f}, every fold separated perfectly so the DeLong interval has zero "
              f"width; permutation {_p_text(result.p_value)}")
    else:
        ci = (f"held-out AUC {result.auc:.3f}, 95% CI {result.auc_ci_low:.3f}-{result.auc_ci_high:.3f}, "
              f"permutation {_p_text(result.p_value)}")
    told_apart = result.auc_ci_low > 0.5 or (result.degenerate() and result.auc > 0.5)
    if told_apart:
        text = (f"A small CNN tells {gen}'s synthetic lesions from real ones in {result.pairs_in_100()} of 100 "
                f"(real, synthetic) pairs ({ci}): a machine can tell them apart.")
    else:
        text = (f"A small CNN ranks {result.pairs_in_100()} of 100 (real, synthetic) pairs of {gen} correctly "
                f"({ci}): it could not show that {gen}'s synthetic lesions differ from real ones.")
    if calibrated is None:
        text += " The null control (real vs real) could not be run on this data, so the test's calibration is unknown."
    elif not calibrated:
        text += " The null control (real vs real) is not at 0.5, so this test is not calibrated on this data."
    if sensitive is False and not told_apart:  # a difference found shows the observer was strong enough
        text += (" The positive control (real lesions vs normal tissue) is weak, so the observer may be too weak "
                 "to find differences: a low AUC here is no evidence of realism.")
    return text


def controls_sentence(study: C2STStudy) -> str:
    """The two controls in words (calibration and sensitivity of the test on this data).

    Parameters
    ----------
    study : C2STStudy

    Returns
    -------
    str
    """
    n, p = study.null, study.positive
    if n is None:
        null = "Null control not run (too few real lesions for it); the test's calibration is unknown."
    else:
        splits = "two random halves" if len(study.null_repeats) == 1 else \
            f"two random halves, mean of {len(study.null_repeats)} such splits"
        verdict = ("calibrated: about 0.5, as it must be" if study.calibrated() else
                   f"NOT calibrated (its interval excludes 0.5 or it exceeds {NULL_AUC_LIMIT}): the test's AUCs on "
                   "this data are not to be trusted")
        if study.calibrated() and n.auc_ci_high - n.auc_ci_low > 0.3:
            verdict += ", though its interval is too wide to show a miscalibration"
        null = (f"Null control, real lesions vs real lesions ({splits} of {n.n_given[0] + n.n_given[1]}): "
                f"AUC {n.auc:.2f} (95% CI {n.auc_ci_low:.2f}-{n.auc_ci_high:.2f}), {verdict}.")
    if p is None:
        pos = "Positive control not run (too few patches for it)."
    else:
        pos = (f"Positive control, real lesions vs normal tissue: AUC {p.auc:.2f} "
               f"(95% CI {p.auc_ci_low:.2f}-{p.auc_ci_high:.2f}), "
               + ("the observer sees lesions." if study.sensitive() else
                  f"below {POSITIVE_AUC_MIN}: the observer barely tells lesions from normal tissue."))
    return f"{null} {pos}"


def gallery_rows(result: C2STResult, k: int = 8) -> dict[str, np.ndarray]:
    """Rows (in the input arrays) of the patches for the galleries, from the held-out scores.

    Parameters
    ----------
    result : C2STResult
        Real (first set) vs synthetic (second set).
    k : int
        Patches per gallery.

    Returns
    -------
    dict of str to int array
        ``"synthetic_most_synthetic"``, ``"synthetic_most_real"`` (rows of the synthetic set),
        ``"real_most_synthetic"`` (rows of the real set); ties broken by row (stable sort).
    """
    syn = np.flatnonzero(result.is_second)
    real = np.flatnonzero(~result.is_second)
    syn_order = syn[np.argsort(-result.score[syn], kind="stable")]
    real_order = real[np.argsort(-result.score[real], kind="stable")]
    return {"synthetic_most_synthetic": result.index[syn_order[:k]],
            "synthetic_most_real": result.index[syn_order[::-1][:k]],
            "real_most_synthetic": result.index[real_order[:k]]}


def c2st_record(study: C2STStudy, sample: GroupSample) -> dict:
    """The ``c2st`` entry of ``feature_space/metrics.json`` (no timings, so reruns compare equal).

    Parameters
    ----------
    study : C2STStudy
    sample : GroupSample
        The sample the tests ran on (for the gallery patches' ids).

    Returns
    -------
    dict
        ``observer`` (recipe and a plain description), ``by_generator`` (generator -> test
        record of :meth:`mammo_lib.feature_space.c2st.two_sample.C2STResult.record` plus ``verdict`` and ``gallery``
        patch ids), ``controls`` (``null``, ``positive``), ``calibrated``, ``sensitive``,
        ``controls_text``, ``null_auc_limit``, ``positive_auc_min``, ``frequency_sweep``
        (generator and rows, or None).
    """
    calibrated, sensitive = study.calibrated(), study.sensitive()
    by_generator = {}
    for name, r in study.by_generator.items():
        ids = {"real": sample.patch_ids[sample.groups == "lesion"],
               "synthetic": sample.patch_ids[(sample.groups == "synthetic") & (sample.generators == name)]}
        gallery = {key: [str(ids["real" if key.startswith("real") else "synthetic"][i]) for i in rows]
                   for key, rows in gallery_rows(r).items()}
        by_generator[name] = {**r.record(), "verdict": verdict_sentence(r, calibrated, sensitive),
                              "gallery_patch_ids": gallery}
    sweep = None
    if study.sweep_generator is not None:
        rows = study.sweep.replace({np.nan: None}).to_dict(orient="records")
        sweep = {"generator": study.sweep_generator, "rows": rows,
                 "filter": "Butterworth, order 2 (scikit-image), cut-off as a fraction of the sampling frequency"}
    observer = {**asdict(study.config), "widths": list(study.config.widths)}
    null = None if study.null is None else {**study.null.record(), "repeats": len(study.null_repeats),
                                            "repeat_aucs": [r.auc for r in study.null_repeats],
                                            "repeat_p_values": [r.p_value for r in study.null_repeats]}
    return {"observer": {**observer, "description": study.config.describe()},
            "by_generator": by_generator,
            "controls": {"null": null,
                         "positive": None if study.positive is None else study.positive.record()},
            "notes": list(study.notes),
            "calibrated": calibrated, "sensitive": sensitive, "controls_text": controls_sentence(study),
            "null_auc_limit": NULL_AUC_LIMIT, "positive_auc_min": POSITIVE_AUC_MIN,
            "frequency_sweep": sweep}


def summary_table(study: C2STStudy) -> pd.DataFrame:
    """One row per test: generators first, then the controls (for the notebook and the report).

    Parameters
    ----------
    study : C2STStudy

    Returns
    -------
    pandas.DataFrame
        Columns: test, sets, AUC, 95% CI, permutation p, accuracy, accuracy p (binomial vs 0.5),
        fold AUCs, patches per set.
    """
    rows = []
    tests = [*(("generator", r) for r in study.by_generator.values()), ("null control", study.null),
             ("positive control", study.positive)]
    for kind, r in [(k, r) for k, r in tests if r is not None]:
        rows.append({"test": r.label if kind == "generator" else kind, "sets": f"{r.names[0]} vs {r.names[1]}",
                     "AUC": round(r.auc, 3), "95% CI": f"{r.auc_ci_low:.3f}-{r.auc_ci_high:.3f}",
                     "permutation p": _p_text(r.p_value).replace("p = ", "").replace("p ", ""),
                     "accuracy": round(r.accuracy["estimate"], 3),
                     "accuracy p": _p_text(r.accuracy["p_value_vs_0.5"]).replace("p = ", "").replace("p ", ""),
                     "fold AUCs": ", ".join(f"{a:.2f}" for a in r.fold_aucs), "patches per set": r.n_per_set})
    return pd.DataFrame(rows)


def score_table(study: C2STStudy, sample: GroupSample) -> pd.DataFrame:
    """Every held-out score of every generator's test and of the controls (``c2st_scores.csv``).

    Parameters
    ----------
    study : C2STStudy
    sample : GroupSample

    Returns
    -------
    pandas.DataFrame
        Columns: test, group ("lesion", "synthetic" or "normal"), generator ("" for real rows),
        patch_id, fold, score (held-out P(second set), rounded to 6 digits).
    """
    lesion_ids = sample.patch_ids[sample.groups == "lesion"]
    pos_l, pos_n = study.positive_rows
    sources = {r.label: (lesion_ids[a], lesion_ids[b], "lesion", "lesion", "")
               for r, (a, b) in zip(study.null_repeats, study.null_splits, strict=True)}
    sources |= {POSITIVE: (lesion_ids[pos_l], sample.patch_ids[sample.groups == "normal"][pos_n], "lesion", "normal",
                          "")}
    for name in study.by_generator:
        mask = (sample.groups == "synthetic") & (sample.generators == name)
        sources[name] = (lesion_ids, sample.patch_ids[mask], "lesion", "synthetic", name)
    frames = []
    for r in [*study.by_generator.values(), *study.null_repeats, *([study.positive] if study.positive else [])]:
        first_ids, second_ids, g1, g2, gen = sources[r.label]
        ids = np.array([second_ids[i] if sec else first_ids[i] for sec, i in zip(r.is_second, r.index, strict=True)])
        frames.append(pd.DataFrame({"test": r.label, "group": np.where(r.is_second, g2, g1),
                                    "generator": np.where(r.is_second, gen, ""), "patch_id": ids,
                                    "fold": r.fold, "score": np.round(r.score, 6)}))
    return pd.concat(frames, ignore_index=True)


def verdicts_markdown(study: C2STStudy) -> str:
    """The verdict sentence of every generator and the controls' sentence, as Markdown.

    Parameters
    ----------
    study : C2STStudy

    Returns
    -------
    str
    """
    calibrated, sensitive = study.calibrated(), study.sensitive()
    lines = [f"- **{name}**: {verdict_sentence(r, calibrated, sensitive)}" for name, r in study.by_generator.items()]
    lines.append(f"- **Controls**: {controls_sentence(study)}")
    lines += [f"- **Not run**: {note}" for note in study.notes]
    return "\n".join(lines)
