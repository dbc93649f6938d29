"""Stage 04 with several generators: the synthetic half of the case set split evenly
across generators, the key naming each case's generator, machine observers trained per generator,
and a rating page that says nothing about generators."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_notebook_generators_04_05 import two_generator_run

from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import files as sf
from mammo_lib.reader_study import machine_observers as mo
from mammo_lib.reader_study import sampling as case_sampling
from mammo_lib.reader_study.rating_app import RatingApp
from mammo_lib.run_folder import synthetic_store_path


@pytest.fixture
def run_dir(tmp_path):
    return two_generator_run(tmp_path / "run", n=30, size=16, seed=2)


def test_split_evenly_is_balanced_seeded_and_favours_no_position():
    names = ["a", "b", "c"]
    for n in range(0, 12):
        counts = case_sampling.split_evenly(n, names, seed=1, part="cases")
        assert list(counts) == names and sum(counts.values()) == n and max(counts.values()) - min(counts.values()) <= 1
    assert case_sampling.split_evenly(7, names, 1, "cases") == case_sampling.split_evenly(7, names, 1, "cases")
    lucky = {tuple(case_sampling.split_evenly(4, names, s, "cases").values()) for s in range(20)}
    assert len(lucky) == 3, "the odd case goes to each generator for some seed"


def test_one_generator_sample_is_the_earlier_draw():
    one = case_sampling.draw_generator_sample(50, {"dcgan": 40}, 10, 10, n_practice=4, seed=3, min_held_out=2)
    old = rs.draw_sample(50, 40, 10, 10, n_practice=4, seed=3, min_held_out=2)
    np.testing.assert_array_equal(one.real_cases, old.real_cases)
    np.testing.assert_array_equal(one.synthetic["dcgan"].cases, old.synthetic_cases)
    np.testing.assert_array_equal(one.synthetic["dcgan"].held_out, old.synthetic_held_out)


def test_generator_sample_counts_shrinking_and_errors():
    s = case_sampling.draw_generator_sample(60, {"a": 40, "b": 40}, 11, 11, n_practice=5, seed=0, min_held_out=3)
    assert sorted(len(g.cases) for g in s.synthetic.values()) == [5, 6] and len(s.real_cases) == 11
    assert sum(len(g.practice) for g in s.synthetic.values()) == 2 and len(s.real_practice) == 3
    for g, rows in s.synthetic.items():
        assert sorted(np.concatenate([rows.cases, rows.practice, rows.held_out])) == list(range(40)), g
    # generator a holds few patches: the whole sample shrinks so that a's share still fits
    small = case_sampling.draw_generator_sample(60, {"a": 8, "b": 40}, 20, 20, seed=0, shrink_to_fit=True,
                                                min_held_out=2)
    assert len(small.real_cases) == small.n_synthetic <= 13 and len(small.synthetic["a"].held_out) >= 2
    assert "8 of a" in small.warnings[0]
    with pytest.raises(sf.ReaderStudyError, match="do not fit"):
        case_sampling.draw_generator_sample(60, {"a": 8, "b": 40}, 20, 20, seed=0, min_held_out=2)
    with pytest.raises(sf.ReaderStudyError, match="cannot be split across 3 generators"):
        case_sampling.draw_generator_sample(60, {"a": 9, "b": 9, "c": 9}, 2, 2)


def test_two_generator_case_set_key_study_and_reproducibility(run_dir):
    cs = rs.build_case_set(run_dir, 8, 8, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    assert cs.study["generators"] == ["dcgan", "mine"] and cs.study["n_synthetic_by_generator"] == {"dcgan": 4, "mine": 4}
    assert cs.study["request"]["generators"] == ["dcgan", "mine"]
    key = sf.load_key(cs)
    syn = key[key["truth"] == "synthetic"]
    assert (syn["generator"] == "dcgan").sum() == (syn["generator"] == "mine").sum() == 4
    assert set(syn.loc[syn["generator"] == "mine", "store"]) == {"mine.zarr"}
    assert set(key.loc[key["truth"] == "real", "generator"]) == {""}
    held = pd.read_csv(cs.key_path.parent / "held_out.csv", keep_default_na=False)
    assert set(held["generator"]) == {"", "dcgan", "mine"}
    balance = rs.case_set_balance(cs)
    assert list(balance.index) == ["real", "synthetic: dcgan", "synthetic: mine"]
    assert list(balance["scored cases"]) == [8, 4, 4]
    assert "**dcgan** (4 cases), **mine** (4 cases)" in rs.case_set_text(cs)
    again = rs.build_case_set(run_dir, 8, 8, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    assert again.case_set_id == cs.case_set_id
    # the real cases are those of the one-generator case set with the same seed
    one = rs.build_case_set(run_dir, 8, 8, n_practice=2, seed=5, display_scale=2, min_held_out=5,
                            case_set_dir=run_dir / "one" / "case_set",
                            generator_stores={"dcgan": synthetic_store_path(run_dir)})
    assert "generators" not in one.study["request"] and one.study["generators"] == ["dcgan"]
    one_key = sf.load_key(one)
    assert set(one_key.loc[one_key["truth"] == "real", "patch_id"]) == set(key.loc[key["truth"] == "real", "patch_id"])
    assert set(one_key.loc[one_key["truth"] == "synthetic", "generator"]) == {"dcgan"}
    keyed = sf.load_case_set(cs.case_set_dir)
    assert keyed.generators == ["dcgan", "mine"] and set(keyed.cases["generator"]) == {"", "dcgan", "mine"}


def test_machine_observers_per_generator(run_dir):
    cs = rs.build_case_set(run_dir, 8, 8, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    table = mo.run_machine_observers(cs, run_dir, seed=5)
    assert list(table["reader"]) == ["machine-pixels-dcgan", "machine-spectrum-dcgan", "machine-pixels-mine",
                                     "machine-spectrum-mine"]
    held = pd.read_csv(cs.key_path.parent / "held_out.csv", keep_default_na=False)
    for _, row in table.iterrows():
        assert row["trained on synthetic"] == (held["generator"] == row["generator"]).sum()
        assert row["trained on real"] == (held["generator"] == "").sum() and row["ratings written"] == 16
        lines = (cs.ratings_dir / row["file"]).read_text().splitlines()
        assert {json.loads(line)["reader"] for line in lines} == {row["reader"]}
    assert mo.run_machine_observers(cs, run_dir, seed=5)["ratings written"].tolist() == [0, 0, 0, 0]
    with pytest.raises(sf.ReaderStudyError, match="has 2 generators"):
        mo.run_machine_observer(cs, run_dir, "machine-pixels")
    with pytest.raises(sf.ReaderStudyError, match="generator 'other' has no cases"):
        mo.run_machine_observer(cs, run_dir, "machine-pixels", generator="other")
    # the "mine" patches carry a coarse stripe the pixel observer trained on them finds
    key = sf.load_key(cs)
    ratings = sf.ratings_table(cs)
    mine = ratings[ratings["reader"] == "machine-pixels-mine"].merge(key, on="case_id")
    own = mine[mine["generator"].isin(["", "mine"])]
    assert ((own["value"] > 0.5) == (own["truth"] == "real")).mean() >= 0.75


def test_machine_reader_ids():
    assert mo.machine_reader_id("machine-pixels", "dcgan", ["dcgan"]) == "machine-pixels"
    assert mo.machine_reader_id("machine-pixels", "dcgan", ["dcgan", "b"]) == "machine-pixels-dcgan"
    long = "a-generator-with-a-very-long-name-indeed"
    rid = mo.machine_reader_id("machine-spectrum", long, ["dcgan", long])
    assert len(rid) == 32 and sf.validate_reader_id(rid) == rid and rid.startswith("machine-spectrum-a-gen")
    assert rid != mo.machine_reader_id("machine-spectrum", long + "2", ["dcgan", long + "2"])
    assert mo.machine_observer_ids(["dcgan", long])[rid] == ("machine-spectrum", long)


def _texts(widget) -> str:
    out = []
    for name in ("value", "description", "placeholder", "tooltip"):
        value = getattr(widget, name, None)
        if isinstance(value, str):
            out.append(value)
    for child in getattr(widget, "children", ()):
        out.append(_texts(child))
    return " ".join(out)


def test_rating_page_shows_nothing_about_generators(run_dir):
    """The page a reader sees (every screen, practice feedback included) names no generator and
    no store; which generator made a case is in the key only."""
    cs = rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    assert cs.study["generators"] == ["dcgan", "mine"]
    app = RatingApp(cs.case_set_dir, double_answer_guard_s=0)
    app.reader_text.value = "R07"
    app.start_button.click()
    seen = [_texts(app.widget)]
    for _ in range(2):
        app.option_buttons[0].click()
        seen.append(_texts(app.widget))
        app.next_button.click()
    app.begin_button.click()
    for k in range(12):
        seen.append(_texts(app.widget))
        app.option_buttons[k % 6].click()
    seen.append(_texts(app.widget))
    text = " ".join(seen).lower()
    for secret in ("dcgan", "mine", "generator", ".zarr", *sf.load_key(cs)["patch_id"].str.lower()):
        assert secret not in text, secret
    assert "practice feedback" in text and "case 12 of 12" in text
    assert (pd.read_csv(cs.case_set_dir / "cases.csv").columns == ["case_id", "image"]).all()
