"""The sections of the study report, each read from the files a stage wrote.

Every function takes the run folder (and the parsed ``run.json`` where needed) and returns a
table or a short list of statements; a stage that did not run gives an empty table, never an
exception, so a report can be written for a partial or failed run too.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_lib.checkout import RUNS_DIR
from mammo_lib.fileio import read_json_or_empty
from mammo_lib.study import report_c2st
from mammo_lib.study.results import generator_stores, manifest_rows
from mammo_lib.study.run_stage import runner_command
from mammo_lib.study.settings import describe_groups
from mammo_lib.study.state import stage_states

#: key figures of the report: (stage folder, file stem or fnmatch pattern, caption); in a caption
#: ``{name}`` is the part of the stem the pattern's ``*`` stands for (the generator). The verdict
#: figure of the two-sample test leads the report's first section and the t-SNE pictures have their
#: own section, so neither is here.
KEY_FIGURES = (
    ("feature_space", "metric_forest", "Realism metrics of every generator with 95% confidence intervals, "
                                       "against the real split-half yardstick where one exists"),
    ("feature_space", "c2st_gallery_*", "Where the CNN two-sample test's verdict on {name} comes from: top row, "
                                        "the synthetic patches it finds most synthetic; middle row, those it finds "
                                        "most real; bottom row, the real lesions it finds most synthetic. Read the "
                                        "top row against the bottom one: what sets them apart is what gives the "
                                        "generator away."),
    ("feature_space", "c2st_saliency_*", "Where the CNN observer looks when it calls {name}'s patches synthetic: "
                                         "their mean image (left) beside the observer's mean gradient (right; "
                                         "bright = the pixels that sway its verdict most). A bright centre points "
                                         "at the lesion itself, bright borders or a regular pattern at the "
                                         "background or the generator's texture."),
    ("feature_space", "c2st_frequency_sweep", "Does the difference lie in the shapes or in the fine texture? The "
                                              "two-sample test's AUC after low-pass (blue: only coarse shapes kept) "
                                              "and high-pass (red: only fine texture kept) filtering of both sets; "
                                              "the black line is the unfiltered test on the same patches (fewer "
                                              "than the main test, so it sits lower). A high AUC after high-pass "
                                              "filtering means the fine texture gives the synthetic patches away."),
    ("dcgan", "fig3_synthetic_vs_real", "Fig. 3: synthetic lesions beside real ones"),
    ("roc", "roc_curves", "ROC curves of every reader (positive class: real)"),
    ("roc", "auc_forest", "AUC of every reader (per generator when there are several) with confidence intervals, "
                          "and the MRMC reader average"),
    ("roc", "generator_differences", "Differences in reader-averaged AUC between generators (MRMC, generator as "
                                     "modality): is one generator harder to tell from real than another?"),
)
#: the t-SNE pictures: the paper's (raw pixels) and the same embedding in the lesion-CNN features
TSNE_FIGURES = (
    ("fig2_tsne", "Fig. 2 (the paper's t-SNE, raw pixels): real lesions, synthetic lesions and normal tissue"),
    ("fig2_tsne_cnn", "The same t-SNE in the lesion-CNN feature space, where real lesions and normal tissue "
                      "separate: there the picture can show where the synthetic lesions lie"),
)


#: how each collection must be cited when a run uses it (also in the README's "Your own data")
DATA_CITATIONS = {
    "mias": "Suckling J et al., \"The Mammographic Image Analysis Society digital mammogram database\", "
            "Excerpta Medica, International Congress Series 1069:375-378 (1994).",
    "cbis-ddsm": "Sawyer-Lee R et al., Curated Breast Imaging Subset of DDSM, TCIA (2016), "
                 "doi:10.7937/K9/TCIA.2016.7O02S9CY; Lee RS et al., Scientific Data 4:170177 (2017); "
                 "Clark K et al., J Digit Imaging 26(6):1045-1057 (2013). CC BY 3.0.",
    "vindr-mammo": "Nguyen HT et al., \"VinDr-Mammo: a large-scale benchmark dataset for computer-aided diagnosis "
                   "in full-field digital mammography\", Scientific Data 10:277 (2023); PhysioNet (Goldberger AL "
                   "et al., Circulation 101(23), 2000).",
    "inbreast": "Moreira IC et al., \"INbreast: toward a full-field digital mammographic database\", Academic "
                "Radiology 19(2):236-248 (2012).",
    "omidb": "Halling-Brown MD et al., \"OPTIMAM Mammography Image Database: a large-scale resource of mammography "
             "images and clinical data\", Radiology: Artificial Intelligence 3(1):e200103 (2021).",
}


def _describe_groups(groups: list[dict]) -> str:

    return describe_groups(groups)


def _notebook_params(record: dict, stem: str) -> dict:
    for entry in record.get("notebooks", []):
        if entry.get("notebook", "").startswith(stem):
            return entry.get("parameters") or {}
    return {}


def overview(run_dir: Path, record: dict, timings: dict) -> list[tuple[str, str]]:
    """(label, value) rows: what was run, on what, with which code, and how long each stage took."""
    p01 = _notebook_params(record, "01_")
    code = record.get("code") or {}
    dirty = code.get("dirty")
    groups = record.get("settings") or []
    mixed = len(groups) > 1
    rows = [
        ("profile", "differs by stage (below)" if mixed else str(record.get("profile", "?"))),
        ("seed", "differs by stage (below)" if mixed else str(record.get("seed", "?"))),
        ("overrides (-p)", "differ by stage (below)" if mixed else json.dumps(record.get("overrides") or {})),
        *([("settings by stage", _describe_groups(groups))] if mixed else []),
        ("data source", f"{p01.get('source_kind', '?')}" + (f" at {p01['source_path']}" if p01.get("source_path") else
                                                            " (the built-in phantom)" if p01.get("source_kind") == "phantom" else "")),
    ]
    if p01.get("source_kind") in DATA_CITATIONS:
        rows.append(("data citation (required)", DATA_CITATIONS[p01["source_kind"]]))
    for label, store in (("real lesion patches", run_dir / "patches" / "lesion.zarr"),
                         ("normal-tissue patches", run_dir / "patches" / "normal.zarr"),
                         *((f"synthetic patches ({name})", s) for name, s in generator_stores(run_dir).items())):
        n = manifest_rows(store)
        rows.append((label, "stage did not run" if n is None else f"{n:,}"))
    rows += [
        ("code", f"git commit {code.get('git_commit', 'unknown')}"
                 + ("" if dirty is None else "; uncommitted changes in " + ", ".join(code.get("dirty_files", []))
                    if dirty else "; clean tree (no uncommitted changes)")),
        ("python", str(record.get("python", "?"))),
        ("last command started / finished (UTC)",
         f"{timings.get('started', '?')} / {timings.get('finished', 'not finished')}"),
    ]
    for entry in record.get("notebooks", []):
        seconds = (timings.get("notebooks") or {}).get(entry.get("notebook"), {}).get("seconds")
        status = entry.get("status", "?")
        err = entry.get("error")
        if err:
            status += f" in cell {err.get('cell')}: {err.get('exception')}: {err.get('message')}"
        if entry.get("stale"):
            status += " but STALE: " + "; ".join(entry.get("stale_because") or [])
        rows.append((f"stage {entry.get('notebook')}", status + (f", {seconds:.0f} s" if seconds is not None else "")))
    return rows


def parameter_table(record: dict) -> pd.DataFrame:
    """Every parameter value every notebook used (one row each)."""
    rows = [{"notebook": e.get("notebook"), "parameter": k, "value": json.dumps(v)}
            for e in record.get("notebooks", []) for k, v in (e.get("parameters") or {}).items()]
    return pd.DataFrame(rows, columns=["notebook", "parameter", "value"])


def _ci(d: dict | None, lo: str = "ci_low", hi: str = "ci_high") -> str:
    if not d or d.get(lo) is None or d.get(hi) is None:
        return "undefined"
    return f"[{d[lo]:.3f}, {d[hi]:.3f}]"


def _fmt(v: Any) -> str:
    return "undefined" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _fmt_g(v: Any) -> str:
    """A parameter value as set ("250", not "250.000")."""
    return f"{v:g}" if isinstance(v, (int, float)) else _fmt(v)


def _p(v: Any) -> str:
    """A p-value as people read it: "<0.001" rather than "0.000"."""
    if not isinstance(v, (int, float)) or v != v:
        return "undefined"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _degenerate_note(stats: dict) -> str:
    """Plain words for a reader whose ratings make the DeLong test meaningless."""
    flag = stats.get("degenerate") or (stats.get("auc_delong") or {}).get("degenerate")
    if flag:
        return (f"{flag}: " if isinstance(flag, str) else "") + \
            "perfect or reversed separation, the DeLong SE is 0 and its CI and test say nothing"
    return ""


def reader_table(run_dir: Path) -> pd.DataFrame:
    """Per reader: kind, cases, accuracy with its exact CI, AUC with DeLong and bootstrap CIs."""
    metrics = read_json_or_empty(run_dir / "roc" / "metrics.json")
    rows = []
    for reader, s in (metrics.get("readers") or {}).items():
        acc = s.get("accuracy") or {}
        boot = s.get("auc_bootstrap") or {}
        rows.append({
            "reader": reader, "kind": s.get("reader_kind"), "cases": s.get("n_cases"),
            "accuracy": _fmt(acc.get("estimate")), "accuracy 95% CI": _ci(acc),
            "p (accuracy = 0.5)": _p(acc.get("p_value_vs_0.5")),
            "AUC": _fmt(s.get("auc")), "AUC 95% CI (DeLong)": _ci(s.get("auc_delong")),
            "AUC 95% CI (bootstrap)": _ci(boot, "low", "high"),
            "p (AUC = 0.5)": _p((s.get("auc_delong") or {}).get("p_value_vs_0.5")),
            "note": _degenerate_note(s),
        })
    return pd.DataFrame(rows)


def _ci_text(ci: list | None) -> str:
    if not ci or None in ci:
        return "undefined"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _mrmc_rows(label: str, result: Any) -> list[dict]:
    if not isinstance(result, dict) or "skipped" in result:
        reason = result.get("skipped", "") if isinstance(result, dict) else ""
        return [{"analysis": label, "view": "", "AUC": "", "95% CI": "", "p": reason}]
    rows = []
    for view in ("RRRC", "FRRC", "RRFC"):
        block = result.get(view) or {}
        for modality, st in (block.get("single_modality") or {}).items():
            rows.append({"analysis": f"{label}: {modality}" if modality != label else label, "view": view,
                         "AUC": _fmt(st.get("auc")), "SE": _fmt(st.get("se")), "df": _fmt(st.get("df")),
                         "95% CI": _ci_text(st.get("ci")), "p": _p(st.get("p_vs_0.5"))})
        for d in block.get("differences") or []:
            rows.append({"analysis": f"{label}: {d.get('comparison', '')}", "view": f"{view} difference",
                         "AUC": _fmt(d.get("difference")), "SE": _fmt(d.get("se")), "df": _fmt(d.get("df")),
                         "95% CI": _ci_text(d.get("ci")), "p": _p(d.get("p"))})
    return rows


def mrmc_table(run_dir: Path) -> pd.DataFrame:
    """Obuchowski-Rockette reader-averaged AUC per analysis and view (RRRC, FRRC, RRFC); with
    several generators also the analysis with the generator as modality and its differences."""
    metrics = read_json_or_empty(run_dir / "roc" / "metrics.json")
    rows = [r for label, result in (metrics.get("mrmc") or {}).items() for r in _mrmc_rows(label, result)]
    rows += [r for label, result in (metrics.get("mrmc_generators") or {}).items()
             for r in _mrmc_rows(f"generators as modalities, {label}", result)]
    return pd.DataFrame(rows)


def generator_reader_table(run_dir: Path) -> pd.DataFrame:
    """Per generator and reader: accuracy and AUC of real vs that generator's cases (empty with one
    generator, where the reader table says it all)."""
    metrics = read_json_or_empty(run_dir / "roc" / "metrics.json")
    rows = []
    for generator, block in (metrics.get("by_generator") or {}).items():
        for reader, st in ((block or {}).get("readers") or {}).items():
            acc = st.get("accuracy") or {}
            rows.append({"generator": generator, "reader": reader, "kind": st.get("reader_kind"),
                         "trained on": st.get("trained_on") or "", "cases": st.get("n_cases"),
                         "accuracy": _fmt(acc.get("estimate")), "accuracy 95% CI": _ci(acc),
                         "AUC": _fmt(st.get("auc")), "AUC 95% CI (DeLong)": _ci(st.get("auc_delong"))})
    return pd.DataFrame(rows)


def realism_table(run_dir: Path) -> pd.DataFrame:
    """The realism metrics with confidence intervals (stage 03's ``metrics_table.csv``), led by
    the CNN two-sample test's rows (:func:`mammo_lib.study.report_c2st.c2st_realism_rows`)."""
    path = run_dir / "feature_space" / "metrics_table.csv"
    table = pd.read_csv(path, keep_default_na=False) if path.exists() else pd.DataFrame()
    lead = report_c2st.c2st_realism_rows(run_dir)
    if lead.empty or ("metric" in table and table["metric"].astype(str).str.contains("C2ST").any()):
        return table
    return pd.concat([lead, table], ignore_index=True)


def paper_beside_run(run_dir: Path) -> pd.DataFrame:
    """What the paper reports beside what this run measured (different data, readers, generator)."""
    fs = read_json_or_empty(run_dir / "feature_space" / "metrics.json")
    roc = read_json_or_empty(run_dir / "roc" / "metrics.json")
    tsne = fs.get("tsne") or {}
    outliers = fs.get("outliers_tsne") or {}
    counts = (fs.get("sample") or {}).get("counts") or {}
    rows = [report_c2st.paper_row(run_dir), {
        "finding": "t-SNE of real, synthetic and normal patches (Fig. 2)",
        "paper": "500 patches per group, perplexity 250: the synthetic distribution largely matches the real one; "
                 "very few synthetic outliers (near normal tissue)",
        "this run": (f"{', '.join(f'{n} {g}' for g, n in counts.items())} points, perplexity "
                     f"{_fmt_g(tsne.get('perplexity_used'))}, KL {_fmt(tsne.get('kl_divergence'))}; outliers "
                     + ", ".join(f"{g} {n}" for g, n in outliers.items())) if tsne else "stage 03 did not run",
    }]
    paper_rows = [r for r in roc.get("paper_comparison") or [] if str(r.get("source", "")).startswith("paper")]
    run_rows = [r for r in roc.get("paper_comparison") or [] if not str(r.get("source", "")).startswith("paper")]
    rows.append({
        "finding": "reader study: accuracy and AUC (positive class real)",
        "paper": "; ".join(f"{r['reader']}: accuracy {r['accuracy']:.2f}, AUC {r['AUC']:.2f}" for r in paper_rows)
                 or "2 radiologists: accuracy 0.48 and 0.61, AUC 0.56 and 0.45",
        "this run": "; ".join(f"{r['reader']} ({r['kind']}): accuracy {_fmt(r.get('accuracy'))}, AUC {_fmt(r.get('AUC'))}"
                              for r in run_rows) or "stage 05 did not run",
    })
    rows.append({"finding": "synthetic beside real lesions (Fig. 3)",
                 "paper": "16 synthetic and 16 real mass and microcalcification patches look alike",
                 "this run": "see Fig. 3 below" if (run_dir / "dcgan" / "figures").exists() else "stage 02 did not run"})
    return pd.DataFrame(rows)


def key_figures(figures: dict[str, list[Path]]) -> list[tuple[str, Path]]:
    """(caption, PNG) of the key figures that exist, in the report's order (:data:`KEY_FIGURES`)."""
    out = []
    for stage, pattern, caption in KEY_FIGURES:
        head = pattern.split("*")[0]
        for png in figures.get(stage, []):
            if fnmatch.fnmatchcase(png.stem, pattern):
                out.append((caption.replace("{name}", png.stem[len(head):]), png))
    return out


def tsne_section(run_dir: Path, figures: dict[str, list[Path]]) -> dict:
    """What the t-SNE section shows: the readability sentences of stage 03 and its pictures.

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.
    figures : dict
        :func:`mammo_lib.study.report.stage_figures` of the run.

    Returns
    -------
    dict
        ``sentences`` ([(space, sentence, readable)]), ``measured`` (bool), ``pixels_readable`` (bool or
        None) and ``figures`` ([(caption, PNG)]): the paper's Fig. 2 replica, with the lesion-CNN
        t-SNE beside it when the raw-pixel picture cannot judge the synthetic lesions.
    """
    readability = report_c2st.tsne_readability(run_dir)
    wanted = ["fig2_tsne"] + (["fig2_tsne_cnn"] if readability["pixels_readable"] is False else [])
    pngs = {p.stem: p for p in figures.get("feature_space", [])}
    shown = [(caption, pngs[stem]) for stem, caption in TSNE_FIGURES if stem in wanted and stem in pngs]
    return {**readability, "figures": shown}


def skipped_table(run_dir: Path) -> pd.DataFrame:
    """Files stage 01 could not use, and why (``patches/skipped_files.csv``)."""
    path = run_dir / "patches" / "skipped_files.csv"
    return pd.read_csv(path, keep_default_na=False) if path.exists() else pd.DataFrame()


def _reader_kinds(run_dir: Path) -> dict[str, str]:
    return dict(read_json_or_empty(run_dir / "roc" / "metrics.json").get("reader_kind") or {})


def limitations(run_dir: Path, record: dict) -> list[str]:
    """Plain statements of what this run cannot say."""
    out = []
    p01 = _notebook_params(record, "01_")
    if p01.get("source_kind") == "phantom":
        out.append("The data are the built-in phantom, generated by the study itself: nothing measured here says "
                   "anything about real mammography lesions or about the paper's data.")
    if record.get("profile") == "smoke":
        out.append("The smoke profile uses a handful of tiny patches: its numbers only show that the pipeline runs.")
    kinds = _reader_kinds(run_dir)
    if kinds and all(k == "machine" for k in kinds.values()):
        out.append("No human has rated yet: every rating comes from a machine observer (a classifier trained on "
                   "held-out real and synthetic patches with the truth known, which no radiologist is given). Its "
                   "AUC says whether a machine can learn to see a difference, not whether a radiologist sees one: "
                   "this is not the paper's radiologist study.")
    elif not kinds:
        out.append("No ratings were analysed (stage 05 did not run).")
    if (record.get("code") or {}).get("dirty"):
        out.append("The code had uncommitted changes when this run was made: the git commit alone does not "
                   "reproduce it.")
    failed = [e["notebook"] for e in record.get("notebooks", []) if e.get("status") == "failed"]
    if failed:
        out.append(f"The run failed in {', '.join(failed)}: later stages are missing or from an earlier run.")
    interactive = [e["notebook"] for e in record.get("notebooks", []) if "interactively" in str(e.get("status"))]
    if interactive:
        out.append(f"{', '.join(interactive)} was rerun interactively in JupyterLab, with the parameters the "
                   "notebook held (recorded in run.json), not by the runner.")
    return out


def run_state(run_dir: Path, record: dict) -> dict:
    """The report's first box: whether every stage is up to date, and with which settings each ran.

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder (its files are digested now, so ratings added since the last stage ran show).
    record : dict
        Its ``run.json``.

    Returns
    -------
    dict
        ``{"ok": bool, "headline": str, "problems": [str], "settings": str}``: ``ok`` when every
        recorded stage finished and none is stale; ``problems`` one sentence per stage that is not
        up to date (stale ones with the inputs that changed and the command that reruns them).
    """

    states = stage_states(run_dir, record, record.get("study_notebooks"))
    problems = []
    for st in states:
        if st.up_to_date:
            continue
        why = f": {'; '.join(st.reasons)}" if st.reasons else ""
        label = {"stale": "is STALE (computed from inputs that have changed since)",
                 "modified": "was MODIFIED after it ran (a file it wrote has changed)",
                 "running": "is marked running (a run holds the folder, or one was killed)",
                 "not run": "has not run"}.get(st.state, st.state)
        problems.append(f"Stage {Path(st.notebook).stem} {label}{why}.")
    if problems:

        make = f" (make study NAME={run_dir.name} ARGS=--stale)" if run_dir.parent.resolve() == RUNS_DIR.resolve() else ""
        problems.append(f"Rerun exactly what is out of date with: {runner_command(run_dir, '--stale')}{make}.")
    groups = record.get("settings") or []
    settings = describe_groups(groups) if groups else ""
    n = len(states)
    headline = (f"All {n} stages are up to date" if not problems else
                f"{sum(s.up_to_date for s in states)} of {n} stages are up to date")
    headline += "; they ran with different settings (below)." if len(groups) > 1 else "."
    return {"ok": not problems, "headline": headline, "problems": problems, "settings": settings,
            "mixed": len(groups) > 1}


def verification(run_dir: Path) -> dict | None:
    """The result of ``make verify`` (``verify.json``), or None when no rerun was checked."""
    data = read_json_or_empty(run_dir / "verify.json")
    return data or None
