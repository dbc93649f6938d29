"""Notebook 05 under papermill (smoke profile) on a case set and ratings written by the test in
the reader-study format: three machine observers (the CNN observer ``machine-cnn`` among them) and
one human reader who revised an answer and whose file ends in a line cut off mid-write."""

from __future__ import annotations

import json

import nbformat
from conftest import execute_notebook

from mammo_lib import testing
from mammo_lib.rating_scale import OPTION_LABEL, OPTION_VALUE


def test_notebook_05_smoke(tmp_path):
    run_dir = tmp_path / "run"
    testing.write_simulated_study(run_dir / "reader_study", n_real=20, n_synthetic=20, seed=3, readers={
        "machine-cnn": ("machine", 2.5), "machine-pixels": ("machine", 1.2), "machine-spectrum": ("machine", 0.6),
        "R01": ("human", 0.2)})
    human = run_dir / "reader_study" / "ratings" / "R01.jsonl"
    first = json.loads(human.read_text().splitlines()[0])
    option = 6 if first["option"] != 6 else 1
    revised = dict(first, option=option, value=OPTION_VALUE[option], label=OPTION_LABEL[option], event="revise")
    with human.open("a") as fh:
        fh.write(json.dumps(revised) + "\n" + '{"reader": "R01", "case_')

    # default case_set_dir and ratings are derived from run_dir
    out = execute_notebook("05_roc_analysis", run_dir, profile="smoke")

    metrics = json.loads((run_dir / "roc" / "metrics.json").read_text())
    assert metrics["positive_class"] == "real" and metrics["n_bootstrap"] == 200
    assert set(metrics["readers"]) == {"machine-cnn", "machine-pixels", "machine-spectrum", "R01"}
    # the CNN observer has its AUC and ROC curve beside the others (its simulated shift is the largest)
    cnn = metrics["readers"]["machine-cnn"]
    assert cnn["reader_kind"] == "machine" and cnn["auc"] > metrics["readers"]["machine-spectrum"]["auc"]
    assert len(cnn["roc"]["fpr"]) >= 2
    assert metrics["revised_answers"]["R01"] == 1
    assert any("incomplete last line skipped" in n for n in metrics["notes"])
    assert metrics["readers"]["machine-pixels"]["reader_kind"] == "machine"
    assert len(metrics["agreement"]["pairs"]) == 6
    assert "all readers" in metrics["mrmc"] and "machine readers" in metrics["mrmc"]
    assert [row["AUC"] for row in metrics["paper_comparison"][:2]] == [0.56, 0.45]
    for name in ("roc_curves", "ratings_by_truth", "confusion_matrices", "auc_forest"):
        assert (run_dir / "roc" / "figures" / f"{name}.png").stat().st_size > 5000
    nb = nbformat.read(out, as_version=4)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 4  # figures shown inline as well as saved
    exports = sorted(p.name for p in (run_dir / "roc" / "exports").iterdir())
    assert exports == ["case_ids.csv", "ratings.imrmc", "ratings_long.csv", "reader_ids.csv"]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    md = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "`machine-cnn` is a small convolutional network" in md and "stronger test than" not in md


def test_notebook_05_on_interim_ratings_one_real_and_one_synthetic_case(tmp_path):
    """Interim analysis never crashes: R01 has answered one real and one synthetic case so far."""
    import pandas as pd

    run_dir = tmp_path / "run"
    root = run_dir / "reader_study"
    testing.write_simulated_study(root, n_real=12, n_synthetic=12, seed=5, readers={
        "machine-pixels": ("machine", 1.2), "machine-spectrum": ("machine", 0.6), "R01": ("human", 0.2)})
    truth = dict(pd.read_csv(root / "key" / "key.csv")[["case_id", "truth"]].itertuples(index=False))
    lines = (root / "ratings" / "R01.jsonl").read_text().splitlines()
    keep = [next(line for line in lines if truth[json.loads(line)["case_id"]] == t) for t in ("real", "synthetic")]
    (root / "ratings" / "R01.jsonl").write_text("\n".join(keep) + "\n")

    out = execute_notebook("05_roc_analysis", run_dir, profile="smoke")

    metrics = json.loads((run_dir / "roc" / "metrics.json").read_text())
    assert metrics["readers"]["R01"]["n_cases"] == 2 and metrics["readers"]["R01"]["auc_delong"]["se"] is None
    assert any("reader 'R01'" in n and "undefined" in n for n in metrics["notes"])
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "1 human reader(s) (R01)" in text and str(tmp_path) not in text
