"""The report's first result, "Can a machine tell them apart?", read from the files the stages wrote.

Stage 03's CNN two-sample test (C2ST) is the strongest observer the study trains: its record is
the ``c2st`` entry of ``feature_space/metrics.json`` (keys of
:func:`mammo_lib.feature_space.c2st.records.c2st_record`). This module turns it into the report's lead: a
table of every generator's test and of the two controls (null: real against real; positive: real
lesions against normal tissue), plain statements when a control fails, the AUCs of the human
readers (and of the ``machine-cnn`` reader) of stage 05 beside the machine's, the C2ST row of
the paper-comparison table, the rows that lead the realism-metrics table with the sentence said
when a weak measure disagrees with the strong one, and the t-SNE readability statements.

Every function reads files only; a stage that did not run (or an older run without the test)
gives an empty result and a sentence saying so, never an exception.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mammo_lib.fileio import read_json_or_empty
from mammo_lib.reader_study.machine_observers import machine_reader_id

#: the reader id of stage 04's CNN machine reader (shown beside the humans)
CNN_READER = "machine-cnn"  # stage 04's C2ST reader (machine_cnn.CNN_OBSERVER)
#: a 1-NN accuracy this close to 0.5 reads as "no difference" (the weak measure's verdict)
ONE_NN_NEAR = 0.1
NOT_RUN = ("The CNN two-sample test was not run in this run (it came with a later version of stage 03, or "
           "stage 03 did not run): the report cannot say whether a machine can tell the synthetic lesions "
           "from real ones.")
#: readable names of stage 03's feature spaces
SPACE_NAMES = {"pixels": "raw pixels", "cnn": "the lesion-CNN features", "random-cnn": "a random CNN's features"}


def c2st_of(run_dir: Path) -> dict | None:
    """The ``c2st`` record of stage 03 (None when the test was not run)."""
    record = read_json_or_empty(run_dir / "feature_space" / "metrics.json").get("c2st")
    return record if isinstance(record, dict) and record.get("by_generator") is not None else None


def _num(v: Any) -> str:
    return "undefined" if not isinstance(v, (int, float)) or v != v else f"{v:.3f}"


def _p(v: Any) -> str:
    if not isinstance(v, (int, float)) or v != v:
        return "undefined"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _ci(d: dict | None) -> str:
    d = d or {}
    if not isinstance(d.get("ci_low"), (int, float)) or not isinstance(d.get("ci_high"), (int, float)):
        return "undefined"
    return f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def auc_text(test: dict) -> str:
    """``"0.972 [0.960, 0.984]"``: a test record's held-out AUC with its 95% CI."""
    auc = test.get("auc") or {}
    return f"{_num(auc.get('value'))} {_ci(auc)}"


def _test_row(name: str, test: dict) -> dict:
    acc = test.get("accuracy") or {}
    sets = test.get("sets") or ["?", "?"]
    return {"test": name, "sets": f"{sets[0]} vs {sets[1]}", "AUC": _num((test.get("auc") or {}).get("value")),
            "AUC 95% CI (DeLong)": _ci(test.get("auc")), "permutation p": _p(test.get("p_value_permutation")),
            "accuracy": _num(acc.get("estimate")), "accuracy 95% CI": _ci(acc),
            "p (accuracy = 0.5)": _p(acc.get("p_value_vs_0.5")),
            "fold AUCs": ", ".join(f"{a:.2f}" for a in test.get("fold_aucs") or []),
            "patches per set": test.get("n_per_set")}


def test_table(c2st: dict) -> pd.DataFrame:
    """One row per test: every generator against real lesions, then the null and positive controls."""
    controls = c2st.get("controls") or {}
    rows = [_test_row(name, t) for name, t in (c2st.get("by_generator") or {}).items()]
    rows += [_test_row(label, controls[key]) for key, label in (("null", "null control"),
                                                                ("positive", "positive control"))
             if controls.get(key)]  # a control too small to run is None (its note says why)
    return pd.DataFrame(rows)


def control_alarms(c2st: dict) -> list[str]:
    """Plain statements when a control fails: the test not calibrated, or the observer too weak."""
    controls = c2st.get("controls") or {}
    out = []
    if c2st.get("calibrated") is False:
        out.append("The test is not calibrated on this data: the null control (two random halves of the real "
                   f"lesions) gave AUC {auc_text(controls.get('null') or {})} where it must be about 0.5 (its "
                   f"interval excludes 0.5 or it exceeds {c2st.get('null_auc_limit', 0.6)}), so its AUCs "
                   "cannot be taken at face value on this data.")
    out += [f"Not run on this data: {note}" for note in c2st.get("notes") or []]
    if c2st.get("sensitive") is False:
        out.append("The observer is too weak on this data: the positive control (real lesions against normal "
                   f"tissue) gave AUC {auc_text(controls.get('positive') or {})}, below "
                   f"{c2st.get('positive_auc_min', 0.75)}, so a low AUC for a generator is no evidence that its "
                   "lesions are realistic."
                   + (" Here every generator was told apart all the same, so it was strong enough to find those "
                      "differences." if _all_told_apart(c2st) else ""))
    return out


def _all_told_apart(c2st: dict) -> bool:
    """Every generator's C2ST interval lies above 0.5 (or it separated perfectly)."""
    tests = (c2st.get("by_generator") or {}).values()
    return bool(tests) and all((t.get("auc") or {}).get("ci_low") is not None and
                               (t["auc"]["ci_low"] > 0.5 or (t["auc"].get("degenerate") and t["auc"]["value"] > 0.5))
                               for t in tests)


def _reader_blocks(roc: dict, generators: list[str]) -> dict[str, dict]:
    """generator -> {reader: statistics}: per generator with several, the whole case set with one."""
    by_gen = roc.get("by_generator") or {}
    if by_gen:
        return {g: (by_gen.get(g) or {}).get("readers") or {} for g in generators}
    readers = roc.get("readers") or {}
    return {g: readers for g in generators[:1]}


def readers_beside(run_dir: Path, c2st: dict) -> pd.DataFrame:
    """Per generator: the C2ST's AUC, then the human readers' and ``machine-cnn``'s AUCs of stage 05.

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.
    c2st : dict
        The ``c2st`` record (:func:`c2st_of`).

    Returns
    -------
    pandas.DataFrame
        Columns: generator, observer, kind, what it rated, AUC, 95% CI. Every AUC reads 0.5 as
        "cannot tell them apart" and 1 as "always tells them apart".
    """
    roc = read_json_or_empty(run_dir / "roc" / "metrics.json")
    generators = list(c2st.get("by_generator") or {})
    blocks = _reader_blocks(roc, generators)
    rows = []
    for gen in generators:
        test = c2st["by_generator"][gen]
        rows.append({"generator": gen, "observer": "CNN two-sample test (stage 03)", "kind": "machine",
                     "what it rated": f"{test.get('n_per_set')} real and {test.get('n_per_set')} synthetic "
                                      "patches, each scored held-out",
                     "AUC": _num((test.get("auc") or {}).get("value")), "95% CI": _ci(test.get("auc"))})
        cnn_reader = machine_reader_id(CNN_READER, gen, generators)  # machine-cnn-<gen> with several
        for reader, st in (blocks.get(gen) or {}).items():
            if st.get("reader_kind") != "human" and reader not in (CNN_READER, cnn_reader):
                continue
            rows.append({"generator": gen, "observer": reader, "kind": st.get("reader_kind"),
                         "what it rated": f"case set of stage 04 ({st.get('n_cases')} cases, six-option scale)",
                         "AUC": _num(st.get("auc")), "95% CI": _ci(st.get("auc_delong"))})
    return pd.DataFrame(rows)


def _beside_note(run_dir: Path) -> str:
    roc = read_json_or_empty(run_dir / "roc" / "metrics.json")
    kinds = roc.get("reader_kind") or {}
    if not roc:
        return "Stage 05 did not run: no reader's AUC can stand beside the machine's."
    if not any(k == "human" for k in kinds.values()):
        return ("No human has rated this run's case set yet: when radiologists rate it (notebook 04), their AUCs "
                "stand here beside the machine's.")
    return ("The readers rated the blinded case set of stage 04 (positive class real); the two-sample test scored "
            "every patch held out by cross-fitting. Both AUCs read 0.5 as \"cannot tell them apart\".")


def machine_verdict(run_dir: Path) -> dict:
    """Everything the report's first section shows (tables as DataFrames, statements as text).

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.

    Returns
    -------
    dict
        ``ran`` (bool), ``not_run`` (the sentence for a run without the test), ``tests``
        (:func:`test_table`), ``verdicts`` ([(generator, sentence)]), ``controls_text``,
        ``alarms`` (:func:`control_alarms`), ``observer`` (the observer in one paragraph),
        ``beside`` (:func:`readers_beside`) and ``beside_note``.
    """
    c2st = c2st_of(run_dir)
    if c2st is None:
        return {"ran": False, "not_run": NOT_RUN, "tests": pd.DataFrame(), "verdicts": [], "controls_text": "",
                "alarms": [], "observer": "", "beside": pd.DataFrame(), "beside_note": ""}
    return {"ran": True, "not_run": "", "tests": test_table(c2st),
            "verdicts": [(g, t.get("verdict", "")) for g, t in c2st["by_generator"].items()],
            "controls_text": c2st.get("controls_text", ""), "alarms": control_alarms(c2st),
            "observer": (c2st.get("observer") or {}).get("description", ""),
            "beside": readers_beside(run_dir, c2st), "beside_note": _beside_note(run_dir)}


def paper_row(run_dir: Path) -> dict:
    """The paper-comparison table's C2ST row (the paper measured none)."""
    c2st = c2st_of(run_dir)
    if c2st is None:
        this_run = "not run in this run"
    else:
        controls = c2st.get("controls") or {}
        this_run = "; ".join(f"{g}: AUC {auc_text(t)}, permutation p {_p(t.get('p_value_permutation'))}"
                             for g, t in c2st["by_generator"].items())
        this_run += (f" (null control {auc_text(controls.get('null') or {})}, positive control "
                     f"{auc_text(controls.get('positive') or {})}"
                     + ("; not calibrated on this data" if c2st.get("calibrated") is False else "")
                     + ("; observer too weak on this data" if c2st.get("sensitive") is False else "") + ")")
    return {"finding": "can a machine tell them apart? CNN two-sample test, held-out AUC [95% CI]",
            "paper": "not measured", "this run": this_run}


def c2st_realism_rows(run_dir: Path) -> pd.DataFrame:
    """The rows that lead the realism-metrics table: each generator's C2ST AUC (columns of
    ``metrics_table.csv``), with the controls as its reference; empty without the test."""
    c2st = c2st_of(run_dir)
    if c2st is None:
        return pd.DataFrame()
    controls = c2st.get("controls") or {}
    reference = (f"0.5 = a machine cannot tell them apart, 1 = it always can; null control (real vs real) "
                 f"{auc_text(controls.get('null') or {})}, positive control (lesion vs normal) "
                 f"{auc_text(controls.get('positive') or {})}")
    note = "; ".join(a.split(":")[0] for a in control_alarms(c2st))
    rows = []
    for gen, test in c2st["by_generator"].items():
        auc = test.get("auc") or {}
        rows.append({"feature_space": "whole patch (CNN two-sample test)", "generator": gen,
                     "metric": "C2ST held-out AUC real vs synthetic",
                     **{k: _rounded(auc.get(src)) for k, src in (("value", "value"), ("ci_low", "ci_low"),
                                                                  ("ci_high", "ci_high"))},
                     "reference": reference, "note": note})
    return pd.DataFrame(rows)


def _rounded(v: Any) -> float | str:
    return round(float(v), 4) if isinstance(v, (int, float)) else ""


def _weak_near_no_difference(spaces: dict) -> list[str]:
    """The weak measures of one generator that read "no difference", in words: a 1-NN accuracy
    within ``ONE_NN_NEAR`` of 0.5, a Fréchet distance (at half size) within its real-vs-real
    yardstick; one phrase per measure, naming the feature spaces."""
    near_nn, near_fd = [], []
    for space, m in (spaces or {}).items():
        if not isinstance(m, dict):
            continue
        where = SPACE_NAMES.get(space, space)
        nn = (m.get("one_nn_accuracy") or {}).get("value")
        if isinstance(nn, (int, float)) and abs(nn - 0.5) < ONE_NN_NEAR:
            near_nn.append(f"{nn:.2f} in {where}")
        fd = m.get("frechet_distance") or {}
        half, yard = fd.get("real_half_vs_synthetic_half"), fd.get("real_split_half")
        if isinstance(half, (int, float)) and isinstance(yard, (int, float)) and half <= yard:
            near_fd.append(f"in {where} ({half:.3g} against {yard:.3g})")
    out = []
    if near_nn:
        out.append(f"the 1-NN accuracy is {_and(near_nn)}")
    if near_fd:
        out.append(f"the Fréchet distance is within its real-vs-real yardstick {_and(near_fd)}")
    return out


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def disagreements(run_dir: Path) -> list[str]:
    """One sentence per generator whose strong and weak measures disagree: the C2ST's interval lies
    above 0.5 while a weak measure (:func:`_weak_near_no_difference`) reads "no difference"."""
    c2st = c2st_of(run_dir)
    if c2st is None:
        return []
    fs = read_json_or_empty(run_dir / "feature_space" / "metrics.json")
    by_space = fs.get("metrics_by_generator") or ({"dcgan": fs["metrics"]} if fs.get("metrics") else {})
    out = []
    for gen, test in c2st["by_generator"].items():
        low = (test.get("auc") or {}).get("ci_low")
        weak = _weak_near_no_difference(by_space.get(gen) or {})
        if not isinstance(low, (int, float)) or low <= 0.5 or not weak:
            continue
        out.append(f"For {gen} the strong and the weak measures disagree, and the report leads with the strong "
                   f"one: the CNN two-sample test tells its patches from real ones (AUC {auc_text(test)}), "
                   f"while {_and(weak)}, which only says that these weaker measures found no difference"
                   + (" (read the test with its null control, which is not calibrated on this data)."
                      if c2st.get("calibrated") is False else "."))
    return out


def tsne_readability(run_dir: Path) -> dict:
    """What the t-SNE pictures can show (stage 03's ``feature_space.tsne.readability``).

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.

    Returns
    -------
    dict
        ``sentences`` ([(space, sentence, readable)]), ``measured`` (bool: the run recorded the rule) and
        ``pixels_readable`` (bool, or None when not measured).
    """
    record = read_json_or_empty(run_dir / "feature_space" / "metrics.json").get("tsne_readability") or {}
    sentences = [(r.get("space", key), r.get("sentence", ""), bool(r.get("readable")))
                 for key, r in record.items() if isinstance(r, dict)]
    pixels = record.get("pixels") if isinstance(record.get("pixels"), dict) else {}
    return {"sentences": sentences, "measured": bool(record),
            "pixels_readable": pixels.get("readable") if pixels else None}
