"""Stage 04's CNN machine reader ``machine-cnn``: trained on held-out patches only, with
balanced classes, it rates every case on the six-option scale, reruns byte for byte, refuses a
key whose held-out patches are cases, says how many held-out patches it has and needs, and stage
05 analyses its per-generator copies as one reader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mammo_lib import testing
from mammo_lib.feature_space.c2st.two_sample import ObserverConfig, n_parameters
from mammo_lib.patch_store import MANIFEST_COLUMNS, open_patch_store, write_patch_store
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import files as sf
from mammo_lib.reader_study import machine_cnn as mc
from mammo_lib.reader_study import machine_observers as mo
from mammo_lib.roc import analysis as roc
from mammo_lib.roc import by_generator as rg
from mammo_lib.run_folder import lesion_store_path, synthetic_store_path

FAST = mc.reader_config(epochs=2)


def _patches(rng, n: int, size: int, noise: float) -> np.ndarray:
    """Smooth blobs with pixel noise of standard deviation ``noise``: a texture a CNN can see."""
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.1, 0.25)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out[i] = np.clip(0.3 + 0.4 * blob + rng.normal(0, noise, (size, size)), 0, 1)
    return out


def _manifest(n: int, group: str) -> pd.DataFrame:
    synthetic = group == "synthetic"
    rows = [{"patch_id": f"{group}-{i:04d}", "group": group, "source_kind": "dcgan" if synthetic else "phantom",
             "image_id": "" if synthetic else f"img{i:04d}", "lesion_id": "" if synthetic else f"l{i:04d}",
             "lesion_class": "mass", "center_row": -1, "center_col": -1, "normalisation": "none", "checksum": ""}
            for i in range(n)]
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def texture_stores(run_dir, n_real: int = 30, n_synthetic: int = 36, size: int = 32, seed: int = 0):
    """Real lesions with fine texture, "synthetic" ones too smooth (noise 0.10 against 0.02)."""
    rng = np.random.default_rng(seed)
    write_patch_store(lesion_store_path(run_dir), _patches(rng, n_real, size, 0.10), _manifest(n_real, "lesion"))
    write_patch_store(synthetic_store_path(run_dir), _patches(rng, n_synthetic, size, 0.02),
                      _manifest(n_synthetic, "synthetic"))
    return run_dir


@pytest.fixture
def run_dir(tmp_path):
    return texture_stores(tmp_path / "run")


def _case_set(run_dir, name: str = "a"):
    return rs.build_case_set(run_dir, 8, 8, n_practice=2, seed=5, display_scale=1, min_held_out=5,
                             case_set_dir=run_dir / name / "case_set")


def test_cnn_reader_rates_every_case_from_balanced_held_out_patches(run_dir, capsys):
    cs = _case_set(run_dir)
    held = pd.read_csv(cs.key_path.parent / "held_out.csv", keep_default_na=False)
    n_real, n_syn = (held["generator"] == "").sum(), (held["generator"] == "dcgan").sum()
    assert n_real < n_syn  # the synthetic held-out set is the larger: it is subsampled
    r = mo.run_machine_observer(cs, run_dir, "machine-cnn", seed=3, cnn_config=FAST, progress=True)
    assert r.reader == "machine-cnn" and r.written == 16 and r.n_train_real == r.n_train_synthetic == n_real
    assert r.train_accuracy >= 0.9 and r.note == ""
    out = capsys.readouterr().out
    assert f"training on {n_real} real and {n_real} synthetic held-out patches (2 epochs" in out
    assert "trained 2 of 2 epochs" in out and "rated 16 case(s)" in out and "CPU s;" not in out
    table = sf.ratings_table(cs).merge(sf.load_key(cs), on="case_id")
    assert len(table) == 16 and (table["reader_kind"] == "machine").all()
    assert table["option"].between(1, 6).all() and table["shown_at"].isna().all()
    # the smooth "synthetic" texture is seen: every case right, real ones on the "real" side
    assert ((table["value"] > 0.5) == (table["truth"] == "real")).all()
    timings = json.loads((cs.case_set_dir.parent / "timings.json").read_text())
    assert timings["machine-cnn_cpu_seconds"] > 0 and timings["machine-cnn_seconds"] > 0


def test_same_seed_same_bytes_and_a_rerun_trains_nothing(run_dir):
    a, b = _case_set(run_dir, "a"), _case_set(run_dir, "b")
    for cs in (a, b):
        mo.run_machine_observer(cs, run_dir, "machine-cnn", seed=3, cnn_config=FAST)
    assert a.ratings_path("machine-cnn").read_bytes() == b.ratings_path("machine-cnn").read_bytes()
    again = mo.run_machine_observer(a, run_dir, "machine-cnn", seed=3, cnn_config=FAST)
    assert again.written == 0 and np.isnan(again.train_accuracy) and "nothing added" in again.note
    assert len(a.ratings_path("machine-cnn").read_text().splitlines()) == 16


def test_balanced_rows_are_keyed_sorted_and_keep_the_smaller_set_whole():
    real, syn = mc.balanced_rows(10, 4, "dcgan", seed=0)
    assert len(real) == len(syn) == 4 and list(syn) == [0, 1, 2, 3]
    assert list(real) == sorted(set(real)) and real.max() < 10
    np.testing.assert_array_equal(real, mc.balanced_rows(10, 4, "dcgan", seed=0)[0])
    others = [mc.balanced_rows(10, 4, g, seed=s)[0] for g, s in (("mine", 0), ("dcgan", 1))]
    assert all(not np.array_equal(real, o) for o in others)
    real, syn = mc.balanced_rows(3, 9, "dcgan", seed=0)
    assert list(real) == [0, 1, 2] and len(syn) == 3


def test_too_few_held_out_patches_says_how_many_it_has_and_needs(run_dir):
    cs = rs.build_case_set(run_dir, 26, 26, n_practice=2, seed=5, display_scale=1,
                           case_set_dir=run_dir / "big" / "case_set")  # 30 real: 26 cases, 1 practice, 3 held out
    with pytest.raises(sf.ReaderStudyError, match=r"only 3 real and \d+ synthetic \(dcgan\) held-out .*need 5 of each"):
        mo.run_machine_observer(cs, run_dir, "machine-cnn", cnn_config=FAST)


def test_patches_too_small_for_the_network_are_skipped_with_the_size_needed(tmp_path):
    testing.write_example_stores(tmp_path, 30, 30, size=16, seed=2)
    cs = rs.build_case_set(tmp_path, 6, 6, n_practice=2, seed=5, display_scale=1, min_held_out=5)
    table = mo.run_machine_observers(cs, tmp_path, ["machine-cnn", "machine-pixels"], cnn_config=FAST)
    assert list(table["reader"]) == ["machine-cnn", "machine-pixels"]
    assert "skipped: machine-cnn (dcgan): the patches are 16x16" in table["note"][0]
    assert "needs at least 32x32" in table["note"][0] and table["ratings written"][1] == 12


def test_a_held_out_patch_that_is_a_case_is_refused(run_dir):
    cs = _case_set(run_dir)
    key = sf.load_key(cs)
    manifest = open_patch_store(lesion_store_path(run_dir)).manifest
    case_patch = key.loc[key["truth"] == "real", "patch_id"].iloc[0]
    row = int(np.flatnonzero(manifest["patch_id"].to_numpy() == case_patch)[0])
    held_path = cs.key_path.parent / "held_out.csv"
    held = pd.read_csv(held_path, keep_default_na=False)
    pd.concat([held, pd.DataFrame([{"store": "lesion.zarr", "row": row, "generator": ""}])]).to_csv(held_path,
                                                                                                    index=False)
    with pytest.raises(sf.ReaderStudyError, match=r"never train on a patch a reader sees"):
        mo.run_machine_observer(cs, run_dir, "machine-cnn", cnn_config=FAST)
    assert not cs.ratings_path("machine-cnn").exists()


def test_the_cpu_limit_stops_training_with_a_warning(run_dir):
    cs = _case_set(run_dir)
    config = mc.reader_config(epochs=3, max_cpu_seconds=1e-9)
    with pytest.warns(UserWarning, match="CPU limit"):
        r = mo.run_machine_observer(cs, run_dir, "machine-cnn", cnn_config=config)
    assert "stopped training after 1 of 3 epochs" in r.note and r.written == 16


def test_reader_config_is_the_two_sample_tests_and_the_paragraph_is_generated_from_it():
    assert mc.reader_config() == ObserverConfig() and mc.min_patch_size(ObserverConfig()) == 32
    config = mc.reader_config(epochs=7, max_cpu_seconds=30.0)
    assert (config.epochs, config.max_cpu_seconds, config.widths) == (7, 30.0, ObserverConfig().widths)
    for bad in ({"epochs": 0}, {"max_cpu_seconds": -1.0}, {"colour": True}):
        with pytest.raises(sf.ReaderStudyError, match="machine-cnn"):
            mc.reader_config(**bad)
    text = mc.describe_reader(config, ["machine-cnn", "machine-pixels"])
    assert "(7 passes over them" in text and f"about {n_parameters(config):,} weights" in text
    assert "Not run here" not in text and "stronger" not in text
    assert "Not run here" in mc.describe_reader(config, ["machine-pixels"])


def test_two_generators_one_cnn_reader_per_generator_in_stage_05(run_dir):
    from mammo_lib.generate.contract import GeneratorSpec
    from mammo_lib.generate.imported import import_generator

    folder = run_dir.parent / "mine"
    folder.mkdir()
    np.save(folder / "patches.npy", np.rint(_patches(np.random.default_rng(9), 30, 32, 0.2) * 255).astype(np.uint8))
    import_generator(GeneratorSpec("mine", "folder", {"path": str(folder)}), run_dir / "synthetic", 32)
    cs = _case_set(run_dir)
    table = mo.run_machine_observers(cs, run_dir, ["machine-cnn"], seed=2, cnn_config=FAST)
    assert list(table["reader"]) == ["machine-cnn-dcgan", "machine-cnn-mine"]
    assert (table["ratings written"] == 16).all() and table["note"].eq("").all()
    assert mo.machine_observer_ids(["dcgan", "mine"])["machine-cnn-mine"] == ("machine-cnn", "mine")
    assert rg.reader_roles({"machine-cnn-dcgan": "machine", "R01": "human"}, ["dcgan", "mine"]) == {
        "machine-cnn-dcgan": ("machine-cnn", "dcgan"), "R01": ("R01", None)}
    analysis = roc.analyse_study(cs.case_set_dir, cs.ratings_dir, n_bootstrap=50, seed=1)
    assert set(analysis.per_reader) == {"machine-cnn-dcgan", "machine-cnn-mine"}
    mine = analysis.across_generators.per_reader["mine"]["machine-cnn-mine"]
    assert mine["mrmc_reader"] == "machine-cnn" and mine["trained_on"] == "mine" and mine["auc"] > 0.9
    assert "machine-cnn" in roc.who_rated(analysis) and "classifiers trained on held-out" in roc.who_rated(analysis)
