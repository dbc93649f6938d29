"""Stage 04 library tests: sampling and case sets, ratings files, the reading session, the
machine observers, and the rating widget driven in-process (its buttons clicked from Python)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mammo_lib import rating_scale, testing
from mammo_lib.clock import now_iso
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import files as sf
from mammo_lib.reader_study import machine_observers as mo
from mammo_lib.reader_study import session as reading_session
from mammo_lib.reader_study.rating_app import RatingApp


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def run_dir(tmp_path):
    testing.write_example_stores(tmp_path, 30, 30, size=16, seed=2)
    return tmp_path


@pytest.fixture
def case_set(run_dir):
    return rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=5, display_scale=2, min_held_out=5)


# --------------------------------------------------------------------------- sampling
def test_draw_sample_balanced_reproducible_and_disjoint():
    a = rs.draw_sample(50, 40, 10, 10, n_practice=4, seed=1)
    b = rs.draw_sample(50, 40, 10, 10, n_practice=4, seed=1)
    c = rs.draw_sample(50, 40, 10, 10, n_practice=4, seed=2)
    assert len(a.real_cases) == len(a.synthetic_cases) == 10
    assert len(a.real_practice) == len(a.synthetic_practice) == 2
    np.testing.assert_array_equal(a.real_cases, b.real_cases)
    assert not np.array_equal(a.real_cases, c.real_cases)
    real_parts = [a.real_cases, a.real_practice, a.real_held_out]
    assert sorted(np.concatenate(real_parts)) == list(range(50))
    assert not set(a.synthetic_cases) & set(a.synthetic_held_out)


def test_draw_sample_too_few_is_an_error_or_shrinks_with_a_warning():
    with pytest.raises(sf.ReaderStudyError, match="do not fit"):
        rs.draw_sample(100, 20, 75, 75)
    s = rs.draw_sample(100, 20, 75, 75, shrink_to_fit=True, min_held_out=5)
    assert len(s.real_cases) == len(s.synthetic_cases) == 15
    assert s.warnings and "15 + 15" in s.warnings[0]
    with pytest.raises(sf.ReaderStudyError, match="positive"):
        rs.draw_sample(10, 10, 0, 5)


def test_case_set_layout_blinding_and_key(case_set, run_dir):
    cs = case_set
    assert list(cs.cases.columns) == ["case_id", "image"]
    assert len(cs.case_ids) == 12 and len(set(cs.case_ids)) == 12
    assert list(cs.cases["case_id"]) == sorted(cs.case_ids), "cases.csv order says nothing"
    assert all(cid.startswith("c") and len(cid) == 11 for cid in cs.case_ids)
    assert cs.study["n_real"] == cs.study["n_synthetic"] == 6
    assert cs.study["case_set_id"].startswith("cs-") and cs.study["practice_ids"] == ["p01", "p02"]
    # nothing in the case-set folder names the truth or the source of a scored case
    for path in cs.case_set_dir.glob("*.*"):
        text = path.read_text()
        assert "lesion-" not in text and "synthetic-" not in text and "truth" not in text
    png = rs.read_png(cs.image_path(cs.case_ids[0]))
    assert png.shape == (32, 32)  # 16 px patch at display scale 2
    key = sf.load_key(cs)
    assert cs.key_path.parent.name == "key" and cs.key_path.parent != cs.case_set_dir
    assert (key["truth"] == "real").sum() == (key["truth"] == "synthetic").sum() == 6
    # a case PNG is exactly its source patch, upscaled
    from mammo_lib.patch_store import open_patch_store
    from mammo_lib.run_folder import lesion_store_path, synthetic_store_path
    row = key.iloc[0]
    store = open_patch_store(lesion_store_path(run_dir) if row["truth"] == "real"
                             else synthetic_store_path(run_dir))
    idx = int(np.flatnonzero(store.manifest["patch_id"] == row["patch_id"])[0])
    np.testing.assert_array_equal(rs.read_png(cs.image_path(row["case_id"]))[::2, ::2], store.load([idx])[0])


def test_case_set_is_reproducible_and_protected(case_set, run_dir):
    again = rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    assert again.case_set_id == case_set.case_set_id and again.case_ids == case_set.case_ids
    other = rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=6, display_scale=2,
                              case_set_dir=run_dir / "other" / "case_set", min_held_out=5)
    assert other.case_set_id != case_set.case_set_id
    assert (run_dir / "other" / "key" / "key.csv").is_file()
    # once someone has rated, a different case set may not replace it
    session = reading_session.ReadingSession(case_set, "R01", double_answer_guard_s=0)
    session.skip_practice()
    session.answer(session.current_id, 2)
    with pytest.raises(sf.ReaderStudyError, match="human readers rated.*--name"):
        rs.build_case_set(run_dir, 5, 5, seed=5, display_scale=2)
    assert sf.open_case_set(case_set.case_set_dir).case_set_id == case_set.case_set_id
    # a lost key with ratings present: rebuilding would orphan them, so it is refused
    case_set.key_path.unlink()
    with pytest.raises(sf.ReaderStudyError, match="no key"):
        rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    assert case_set.ratings_path("R01").read_text().count("\n") == 1


def test_machine_only_ratings_do_not_block_a_new_case_set(run_dir):
    cs_dir = run_dir / "machine_only" / "case_set"
    first = rs.build_case_set(run_dir, 4, 4, seed=1, display_scale=2, case_set_dir=cs_dir, min_held_out=5)
    ratings = first.ratings_path("machine-pixels")
    ratings.parent.mkdir(parents=True, exist_ok=True)
    ratings.write_text(json.dumps({"reader": "machine-pixels", "reader_kind": "machine",
                                   "case_id": first.case_ids[0]}) + "\n")
    with pytest.warns(UserWarning, match="machine-observer ratings of the previous case set"):
        second = rs.build_case_set(run_dir, 4, 4, seed=2, display_scale=2, case_set_dir=cs_dir, min_held_out=5)
    assert second.case_set_id != first.case_set_id and not ratings.exists()


def test_reader_orders(case_set):
    a1, a2, b = (case_set.reader_order(r) for r in ("R01", "R01", "R02"))
    assert a1 == a2 and a1 != b and sorted(a1) == sorted(b) == sorted(case_set.case_ids)


@pytest.mark.parametrize("bad", ["", "a b", "x" * 33, "../etc", "r/1", "é"])
def test_bad_reader_ids(bad):
    with pytest.raises(sf.ReaderStudyError, match="not valid"):
        sf.validate_reader_id(bad)


# --------------------------------------------------------------------------- ratings files
def _session(cs, reader="R01", clock=None, guard=0.0):
    s = reading_session.ReadingSession(cs, reader, double_answer_guard_s=guard, clock=clock or FakeClock())
    s.skip_practice()
    return s


def test_answers_are_appended_and_a_new_session_resumes(case_set):
    s = _session(case_set)
    first = [s.answer(s.current_id, opt) for opt in (1, 6, 3)]
    assert all(r["event"] == "answer" for r in first)
    lines = case_set.ratings_path("R01").read_text().splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[0])
    assert tuple(rec) == rating_scale.RATING_FIELDS
    assert rec["value"] == 0.95 and rec["label"] == "extremely confident real"
    assert rec["reader_kind"] == "human" and rec["case_set_id"] == case_set.case_set_id
    # "restarted kernel": a new session starts at the first unanswered case, no practice again
    s2 = reading_session.ReadingSession(case_set, "R01", double_answer_guard_s=0)
    assert not s2.in_practice
    assert s2.index == 3 and s2.progress_text() == "Case 4 of 12"
    assert s2.current_id == s.order[3]


def test_double_answer_and_stale_case_are_ignored(case_set):
    clock = FakeClock()
    s = _session(case_set, clock=clock, guard=0.3)
    clock.t += 2
    shown = s.current_id
    assert s.answer(shown, 2) is not None
    assert s.answer(shown, 2) is None, "second click for a case no longer shown"
    clock.t += 0.1
    assert s.answer(s.current_id, 2) is None, "second click within the guard"
    clock.t += 1
    assert s.answer(s.current_id, 4) is not None
    assert len(case_set.ratings_path("R01").read_text().splitlines()) == 2
    assert s.ignored == 2


def test_go_back_revises_and_keeps_both_lines(case_set):
    s = _session(case_set)
    assert not s.go_back()
    a = s.answer(s.current_id, 1)
    s.answer(s.current_id, 2)
    assert s.go_back() and s.current_id == s.order[1]
    assert s.previous_answer()["option"] == 2
    assert s.go_back() and s.current_id == a["case_id"]
    r = s.answer(s.current_id, 5)
    assert r["event"] == "revise" and s.index == 2
    recs = sf.read_ratings(s.path, case_set).records
    assert [x["event"] for x in recs] == ["answer", "answer", "revise"]
    assert sf.read_ratings(s.path).last_per_case()[a["case_id"]]["option"] == 5


def test_truncated_last_line_is_reported_and_complete_lines_kept(case_set):
    s = _session(case_set)
    for opt in (1, 2):
        s.answer(s.current_id, opt)
    path = case_set.ratings_path("R01")
    intact = path.read_bytes()
    with open(path, "ab") as fh:  # a power cut in the middle of the third line
        fh.write(b'{"reader": "R01", "reader_kind": "hum')
    log = sf.read_ratings(path, case_set)
    assert len(log.records) == 2 and "truncated last line 3" in log.problems[0]
    s2 = reading_session.ReadingSession(case_set, "R01", double_answer_guard_s=0)
    assert s2.problems and s2.index == 2
    s2.answer(s2.current_id, 6)
    raw = path.read_bytes()
    assert raw.startswith(intact + b'{"reader": "R01", "reader_kind": "hum\n'), "never overwritten"
    log = sf.read_ratings(path, case_set)
    assert [r["option"] for r in log.records] == [1, 2, 6]
    assert "damaged line 3" in log.problems[0]


def test_foreign_ratings_are_errors_and_left_untouched(case_set, run_dir):
    path = case_set.ratings_path("R09")
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = sf.make_record("R09", "human", "cs-other", case_set.case_ids[0], 2, now_iso("milliseconds"))
    path.write_text(json.dumps(rec) + "\n")
    before = path.read_bytes()
    with pytest.raises(sf.ReaderStudyError, match="another study"):
        reading_session.ReadingSession(case_set, "R09")
    rec = sf.make_record("R09", "human", case_set.case_set_id, "c-not-there", 2, now_iso("milliseconds"))
    path.write_text(json.dumps(rec) + "\n")
    before = path.read_bytes()
    with pytest.raises(sf.ReaderStudyError, match="not in case set"):
        reading_session.ReadingSession(case_set, "R09")
    assert path.read_bytes() == before


def test_missing_image_and_missing_key(case_set):
    victim = case_set.image_path(case_set.case_ids[3])
    victim.unlink()
    with pytest.raises(sf.ReaderStudyError, match="lacks 1 image"):
        sf.open_case_set(case_set.case_set_dir)
    with pytest.raises(sf.ReaderStudyError, match="is missing"):
        case_set.image_bytes(case_set.case_ids[3])
    case_set.key_path.unlink()
    with pytest.raises(sf.ReaderStudyError, match="has no key"):
        sf.load_key(case_set)
    with pytest.raises(sf.ReaderStudyError, match="not a case set"):
        sf.open_case_set(case_set.case_set_dir / "nowhere")


# --------------------------------------------------------------------------- machine observer
def test_machine_observers_rate_every_case_once(case_set, run_dir):
    key = sf.load_key(case_set)
    for reader in mo.DEFAULT_MACHINE_OBSERVERS:
        result = mo.run_machine_observer(case_set, run_dir, reader)
        assert result.written == 12 and result.n_train_real == result.n_train_synthetic == 23
        again = mo.run_machine_observer(case_set, run_dir, reader)
        assert again.written == 0 and "nothing added" in again.note
    table = sf.ratings_table(case_set)
    assert set(table["reader"]) == set(mo.DEFAULT_MACHINE_OBSERVERS)
    assert (table["reader_kind"] == "machine").all() and len(table) == 24
    assert table["option"].between(1, 6).all()
    # the example "synthetic" patches carry an artefact: the spectrum observer finds it
    merged = table[table["reader"] == "machine-spectrum"].merge(key, on="case_id")
    accuracy = ((merged["value"] > 0.5) == (merged["truth"] == "real")).mean()
    assert accuracy >= 0.75


def test_machine_observer_needs_held_out_patches(run_dir):
    cs = rs.build_case_set(run_dir, 28, 28, seed=1, case_set_dir=run_dir / "big" / "case_set")
    with pytest.raises(sf.ReaderStudyError, match="held-out"):
        mo.run_machine_observer(cs, run_dir, "machine-pixels")


def test_value_mapping_of_machine_probabilities():
    assert [rating_scale.value_to_option(p) for p in (0.99, 0.7, 0.5, 0.45, 0.2, 0.0)] == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- widget in-process
def test_rating_widget_flow(case_set):
    app = RatingApp(case_set.case_set_dir, double_answer_guard_s=0)
    app.start_button.click()
    assert "Cannot start" in app.start_message.value and app.session is None
    app.reader_text.value = "bad id"
    app.start_button.click()
    assert app.session is None
    app.reader_text.value = "R05"
    app.start_button.click()
    assert app.widget.children[-1] is app.rating_screen
    assert app.progress.value.startswith("Practice case 1 of 2")
    app.option_buttons[0].click()
    assert "Practice feedback" in app.feedback.value
    # practice: the feedback stays on the practice patch until "Next", then the last
    # practice case is followed by a "practice is over" screen
    app.next_button.click()
    app.handle_key({"type": "keydown", "key": "6"})
    app.handle_key({"type": "keydown", "key": "Enter"})
    assert app.widget.children[-1] is app.practice_over_screen
    app.begin_button.click()
    assert app.progress.value == "Case 1 of 12"
    assert not case_set.ratings_path("R05").exists(), "practice answers are not scored"
    # window/level changes the pixels shown, zoom the size
    before = app.image.value
    app.window.value = (50, 150)
    assert app.image.value != before
    app.zoom.value = 1.5
    assert app.image.layout.width == "768px"
    app.reset_view.click()
    assert app.image.value == before
    app.option_buttons[1].click()
    app.handle_key({"type": "keydown", "key": "4", "repeat": True})  # auto-repeat: ignored
    app.handle_key({"type": "keydown", "key": "x"})
    assert app.progress.value == "Case 2 of 12"
    app.back_button.click()
    assert "revising" in app.progress.value
    app.option_buttons[2].click()
    for i in range(11):
        app.option_buttons[i % 6].click()
    assert app.widget.children[-1] is app.end_screen
    assert "all 12 cases are rated" in app.end_message.value
    app.end_back_button.click()
    assert app.progress.value.startswith("Case 12 of 12")
    app.option_buttons[5].click()
    recs = sf.read_ratings(case_set.ratings_path("R05"), case_set).records
    assert len(recs) == 14 and sum(r["event"] == "revise" for r in recs) == 2
    assert sorted({r["case_id"] for r in recs}) == sorted(case_set.case_ids)
    # the same reader in a new app (restarted kernel) lands on the end screen
    app2 = RatingApp(case_set.case_set_dir)
    app2.reader_text.value = "R05"
    app2.start_button.click()
    assert app2.widget.children[-1] is app2.end_screen


def test_app_reports_a_broken_case_set(case_set):
    from mammo_lib.reader_study.rating_app import app_from_environment

    case_set.image_path(case_set.case_ids[0]).unlink()
    with pytest.raises(sf.ReaderStudyError):
        RatingApp(case_set.case_set_dir)
    with warnings.catch_warnings():
        import os
        os.environ["MAMMO_CASE_SET_DIR"] = str(case_set.case_set_dir)
        try:
            w = app_from_environment()
        finally:
            del os.environ["MAMMO_CASE_SET_DIR"]
    assert "cannot be opened" in w.value


def test_ratings_table_is_readable_by_pandas(case_set):
    s = _session(case_set)
    s.answer(s.current_id, 3)
    table = sf.ratings_table(case_set)
    assert isinstance(table, pd.DataFrame) and table.loc[0, "value"] == 0.59


def test_case_set_draws_real_patches_only_from_the_chosen_classes(run_dir):
    from mammo_lib.patch_store import open_patch_store, write_manifest
    from mammo_lib.run_folder import lesion_store_path
    from mammo_lib.sources.lesion_classes import LesionClassError

    real = open_patch_store(lesion_store_path(run_dir))
    manifest = real.manifest.copy()
    manifest["lesion_class"] = ["mass" if i % 3 == 0 else "calcification" for i in range(len(manifest))]
    write_manifest(real.path, manifest)  # 10 mass, 20 calcification
    masses = set(manifest.loc[manifest["lesion_class"] == "mass", "patch_id"])

    every = rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=5, display_scale=2, min_held_out=2)
    assert "lesion_classes" not in every.study["request"]
    cs = rs.build_case_set(run_dir, 6, 6, n_practice=2, seed=5, display_scale=2, min_held_out=2,
                           lesion_classes=["mass"])
    assert cs.case_set_id != every.case_set_id
    assert cs.study["request"]["lesion_classes"] == ["mass"] and cs.study["lesion_classes"] == ["mass"]
    key = sf.load_key(cs)
    key_dir = cs.key_path.parent
    assert set(key.loc[key["truth"] == "real", "patch_id"]) <= masses
    practice = pd.read_csv(key_dir / "practice_sources.csv")
    assert set(practice.loc[practice["truth"] == "real", "patch_id"]) <= masses
    held = pd.read_csv(key_dir / "held_out.csv")
    held_real = held.loc[held["store"] == real.path.name, "row"]
    assert len(held_real) == 10 - 6 - 1 and set(manifest["lesion_class"].iloc[held_real]) == {"mass"}
    r = mo.run_machine_observer(cs, run_dir, "machine-pixels", min_train_per_class=2)
    assert r.n_train_real == 3 and r.written == 12

    with pytest.raises(LesionClassError, match=r"'spiculated'.*calcification: 20, mass: 10"):
        rs.build_case_set(run_dir, 6, 6, lesion_classes=["spiculated"])
    with pytest.raises(sf.ReaderStudyError, match=r"do not fit.*lesion_classes=\['mass'\].*lesion.zarr.*mass: 10"):
        rs.build_case_set(run_dir, 12, 12, lesion_classes=["mass"])
