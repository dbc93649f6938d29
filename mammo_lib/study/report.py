"""The study report: one self-contained HTML page of a run, with its provenance.

``build_report(run_dir)`` writes ``<run>/report/index.html`` and, beside it, every executed
notebook rendered to HTML (code folded under a "code" toggle). The page opens from ``file://``
with no network: figures are embedded as PNG data, and neither page loads a script from
elsewhere. It shows

- first, "Can a machine tell them apart?": stage 03's CNN two-sample test per generator (AUC with
  its CI and permutation p, accuracy, the verdict in words) with its null and positive controls,
  a plain statement when a control fails, and the human readers' AUCs beside the machine's;
- what was run: data source and patch counts, profile, seed, every parameter of every notebook,
  the git commit and whether the tree had uncommitted changes, package versions, time per stage;
- the paper's findings beside this run's (two-sample test, t-SNE picture, reader accuracy and AUC);
- the t-SNE pictures with what they can show (the lesion-CNN t-SNE beside the paper's Fig. 2 when
  raw pixels do not separate real lesions from normal tissue);
- the realism metrics with confidence intervals, led by the two-sample test (and a sentence when
  a weak measure disagrees with it), per-reader accuracy and AUC with confidence intervals, the
  Obuchowski-Rockette MRMC result;
- the key figures (metric forest, the two-sample test's galleries, saliency maps and frequency
  sweep, Fig. 3, ROC curves, AUC forest plot) and the other figures of each stage;
- skipped files and warnings, the byte-identity check of ``make verify`` when it was made, and
  plain statements of what the run cannot say (phantom data; machine observers only).

Every number on the page is read from the files the stages wrote; nothing is computed here.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_lib import run_lock
from mammo_lib.fileio import atomic_write_text, read_json_or_empty
from mammo_lib.study import provenance, report_c2st
from mammo_lib.study import report_sections as sections
from mammo_lib.study.provenance import RECORD_NAME, TIMINGS_NAME

TEMPLATES = Path(__file__).with_name("report_templates")
REPORT_DIRNAME = "report"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def render_notebook_html(notebook: str | os.PathLike) -> str:
    """One executed notebook as a self-contained HTML page (code folded, no network scripts).

    Parameters
    ----------
    notebook : str or os.PathLike
        An executed ``.ipynb`` (outputs included).

    Returns
    -------
    str
        The HTML text.

    Raises
    ------
    OSError, nbformat.reader.NotJSONError
        When the notebook cannot be read.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    nb.metadata.pop("widgets", None)  # widget state needs the widget manager from a CDN
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "data" in out:  # keep the text/plain form of widget outputs (e.g. a progress bar)
                out["data"].pop(WIDGET_VIEW, None)
    exporter = HTMLExporter(template_name="notebook", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": Path(notebook).stem}})
    return body


def png_data_uri(path: str | os.PathLike) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI (so the page needs no other file)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def table_html(df: pd.DataFrame | None, max_rows: int = 60) -> str:
    """A DataFrame as an HTML table (escaped), at most ``max_rows`` rows with a note of the rest."""
    if df is None or df.empty:
        return "<p class='muted'>none</p>"
    note = ""
    if len(df) > max_rows:
        note = f"<p class='muted'>first {max_rows} of {len(df)} rows</p>"
        df = df.head(max_rows)
    return df.to_html(index=False, escape=True, na_rep="", classes="tbl", border=0,
                      float_format=lambda v: f"{v:.3g}") + note


def _optional_table(df: pd.DataFrame) -> str | None:
    return None if df.empty else table_html(df, max_rows=200)


def notebook_warnings(run_dir: Path) -> list[dict[str, str]]:
    """Warning lines the executed notebooks printed (stdout or stderr), each once, with the notebook."""
    found: dict[str, str] = {}
    for nb_path in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        try:
            nb = json.loads(nb_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for cell in nb.get("cells", []):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    text = "".join(out.get("text", ""))
                    for line in text.splitlines():
                        if re.search(r"\bwarning\b", line, re.IGNORECASE) and line.strip() not in found:
                            found[line.strip()] = nb_path.stem
    return [{"notebook": nb, "warning": w} for w, nb in found.items()]


def stage_figures(run_dir: Path) -> dict[str, list[Path]]:
    """``{stage folder: [figure PNGs]}`` for every ``<stage>/figures/*.png`` of the run."""
    out = {}
    for fig_dir in sorted(run_dir.glob("*/figures")):
        pngs = sorted(fig_dir.glob("*.png"))
        if pngs:
            out[fig_dir.parent.name] = pngs
    return out


def _figure(caption: str, png: Path) -> dict[str, str]:
    return {"caption": caption, "src": png_data_uri(png)}


def machine_context(run_dir: Path, figures: dict[str, list[Path]]) -> dict[str, Any]:
    """The report's first section, "Can a machine tell them apart?" (:func:`mammo_lib.study.report_c2st.machine_verdict`
    with its tables as HTML and the verdict figure, ``c2st_verdict.png``, embedded; None when absent)."""
    verdict = report_c2st.machine_verdict(run_dir)
    png = next((p for p in figures.get("feature_space", []) if p.stem == "c2st_verdict"), None)
    caption = ("Held-out AUC of the CNN observer with 95% DeLong intervals: each generator against real lesions, "
               "the null control (real against real; it must sit near 0.5, in the grey band) and the positive "
               "control (real lesions against normal tissue; it must be high). Right of the band = a machine "
               "tells them apart.")
    return {**verdict, "tests": table_html(verdict["tests"]), "beside": table_html(verdict["beside"]),
            "figure": None if png is None else _figure(caption, png)}


def build_report(run_dir: str | os.PathLike) -> Path:
    """Write ``<run>/report/index.html`` and the rendered notebooks beside it.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder written by the study runner (``run.json`` and executed notebooks); stages
        that did not run are reported as missing, not as errors.

    Returns
    -------
    pathlib.Path
        The ``index.html`` written.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` is not a folder or holds neither ``run.json`` nor an executed notebook.
    """
    import jinja2

    run_dir = Path(run_dir).resolve()
    notebooks = sorted(run_dir.glob("[0-9][0-9]_*.ipynb"))
    if not run_dir.is_dir() or not ((run_dir / RECORD_NAME).exists() or notebooks):
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {RECORD_NAME}, no executed notebook): "
                                "run the study first (make study NAME=...)")
    out_dir = run_dir / REPORT_DIRNAME
    rendered = []
    for nb in notebooks:
        target = out_dir / f"{nb.stem}.html"
        atomic_write_text(target, render_notebook_html(nb))
        rendered.append({"stem": nb.stem, "href": target.name})
    record = read_json_or_empty(run_dir / RECORD_NAME)
    if record and run_lock.live_holder(run_dir) is None:  # stale flags as of now (e.g. ratings added since)
        record = provenance.refresh_record(run_dir)
    figures = stage_figures(run_dir)
    tsne = sections.tsne_section(run_dir, figures)
    context: dict[str, Any] = {
        "title": f"mammo-synth-study report: {run_dir.name}",
        "run_name": run_dir.name,
        "record": record,
        "notebooks": rendered,
        "overview": sections.overview(run_dir, record, read_json_or_empty(run_dir / TIMINGS_NAME)),
        "parameters": table_html(sections.parameter_table(record), max_rows=400),
        "packages": table_html(pd.DataFrame(sorted((record.get("packages") or {}).items()),
                                            columns=["package", "version"])),
        "machine": machine_context(run_dir, figures),
        "paper": table_html(sections.paper_beside_run(run_dir)),
        "tsne": {**tsne, "figures": [_figure(cap, p) for cap, p in tsne["figures"]]},
        "realism": table_html(sections.realism_table(run_dir)),
        "disagreements": report_c2st.disagreements(run_dir),
        "readers": table_html(sections.reader_table(run_dir)),
        "readers_by_generator": _optional_table(sections.generator_reader_table(run_dir)),
        "mrmc": table_html(sections.mrmc_table(run_dir)),
        "key_figures": [_figure(cap, p) for cap, p in sections.key_figures(figures)],
        "other_figures": {stage: [{"name": p.stem, "src": png_data_uri(p)} for p in pngs]
                          for stage, pngs in figures.items()},
        "skipped": table_html(sections.skipped_table(run_dir)),
        "warnings": table_html(pd.DataFrame(notebook_warnings(run_dir), columns=["notebook", "warning"])),
        "cannot_say": sections.limitations(run_dir, record),
        "state": sections.run_state(run_dir, record),
        "verify": sections.verification(run_dir),
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    page = env.get_template("index.html.j2").render(**context, escape=html.escape)
    return atomic_write_text(out_dir / "index.html", page)


def main(argv: list[str] | None = None) -> int:
    """``python -m mammo_lib.study.report RUN_DIR``: (re)write the report of an existing run."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Write <run>/report/index.html for a run folder.")
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    try:
        index = build_report(args.run_dir)
    except FileNotFoundError as exc:
        print(f"report failed: {exc}", file=sys.stderr)
        return 1
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
