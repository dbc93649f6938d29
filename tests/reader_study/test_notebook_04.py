"""Notebook 04 runs headless under papermill on small stores this test writes: it builds the
case set, runs the three machine observers (the CNN among them), saves its figures, says what the
CNN observer is, and a rerun changes nothing (the CNN is not trained again)."""

from __future__ import annotations

import json

import nbformat
from conftest import execute_notebook

from mammo_lib import testing
from mammo_lib.reader_study import files as sf


def test_notebook_04_smoke(tmp_path):
    testing.write_example_stores(tmp_path, 20, 20, size=32, seed=4)  # 32: the smallest patch machine-cnn takes
    out = execute_notebook("04_reader_study", tmp_path, profile="smoke")
    cs = sf.open_case_set(tmp_path / "reader_study" / "case_set")
    assert cs.study["n_real"] == cs.study["n_synthetic"] == 4
    assert len(cs.study["practice_ids"]) == 2
    ratings = sorted(p.name for p in (tmp_path / "reader_study" / "ratings").glob("*.jsonl"))
    assert ratings == ["machine-cnn.jsonl", "machine-pixels.jsonl", "machine-spectrum.jsonl"]
    for name in ratings:
        lines = (tmp_path / "reader_study" / "ratings" / name).read_text().splitlines()
        assert len(lines) == 8 and json.loads(lines[0])["reader_kind"] == "machine"
    figs = sorted(p.name for p in (tmp_path / "reader_study" / "figures").glob("*.png"))
    assert figs == ["case_set_balance.png", "example_cases.png", "ratings_per_option.png"]
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "skipped" not in text
    # the CNN observer's paragraph is generated from the smoke profile's cnn_epochs (2)
    assert "small convolutional neural network" in text and "(2 passes over them" in text
    assert "machine-cnn (dcgan): trained 2 of 2 epochs" in text
    timings = json.loads((tmp_path / "reader_study" / "timings.json").read_text())
    assert timings["machine-cnn_cpu_seconds"] > 0
    # a rerun keeps the case set and adds no ratings
    execute_notebook("04_reader_study", tmp_path, profile="smoke")
    assert sf.open_case_set(cs.case_set_dir).case_set_id == cs.case_set_id
    for name in ratings:
        assert len((tmp_path / "reader_study" / "ratings" / name).read_text().splitlines()) == 8
    text = json.dumps([c.get("outputs", []) for c in nbformat.read(tmp_path / "04_reader_study.ipynb", 4).cells])
    assert "training on" not in text and "already rates every case" in text
