"""Notebook 04 runs headless under papermill on small stores this test writes: it builds the
case set, runs both machine observers, saves its figures, and a rerun changes nothing."""

from __future__ import annotations

import json

import nbformat
from conftest import execute_notebook

from mammo_lib import study_files as sf
from mammo_lib import testing


def test_notebook_04_smoke(tmp_path):
    testing.write_example_stores(tmp_path, 20, 20, size=16, seed=4)
    out = execute_notebook("04_reader_study", tmp_path, profile="smoke")
    cs = sf.open_case_set(tmp_path / "reader_study" / "case_set")
    assert cs.study["n_real"] == cs.study["n_synthetic"] == 4
    assert len(cs.study["practice_ids"]) == 2
    ratings = sorted(p.name for p in (tmp_path / "reader_study" / "ratings").glob("*.jsonl"))
    assert ratings == ["machine-pixels.jsonl", "machine-spectrum.jsonl"]
    for name in ratings:
        lines = (tmp_path / "reader_study" / "ratings" / name).read_text().splitlines()
        assert len(lines) == 8 and json.loads(lines[0])["reader_kind"] == "machine"
    figs = sorted(p.name for p in (tmp_path / "reader_study" / "figures").glob("*.png"))
    assert figs == ["case_set_balance.png", "example_cases.png", "ratings_per_option.png"]
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "machine observer" not in text or "skipped" not in text
    # a rerun keeps the case set and adds no ratings
    execute_notebook("04_reader_study", tmp_path, profile="smoke")
    assert sf.open_case_set(cs.case_set_dir).case_set_id == cs.case_set_id
    lines = (tmp_path / "reader_study" / "ratings" / "machine-pixels.jsonl").read_text().splitlines()
    assert len(lines) == 8
