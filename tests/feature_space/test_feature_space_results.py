"""Stage 03's shared helpers and outputs: neighbours, random streams, global state, write_results."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from mammo_lib import testing
from mammo_lib.feature_space import lesion_cnn, neighbours
from mammo_lib.feature_space import results as fsr
from mammo_lib.feature_space import sampling as fs
from mammo_lib.feature_space import streams as feature_space_rng
from mammo_lib.feature_space.tsne import run as tsne


@pytest.fixture(scope="module")
def small_groups():
    return testing.demo_groups(30, size=32, seed=5)


def test_one_distance_helper_matches_scipy_in_both_precisions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 7)), rng.normal(size=(25, 7))
    ref = cdist(a, b, "sqeuclidean")
    assert np.allclose(neighbours.sq_distances(a, b), ref, rtol=1e-10, atol=1e-10)
    exact = neighbours.sq_distances(a, centre=False, float32_above=None)
    assert np.allclose(exact, cdist(a, a, "sqeuclidean"), atol=1e-12)
    assert np.all(np.diag(exact) == 0) and np.array_equal(exact, exact.T)
    wide = rng.random((20, 2000))  # above FLOAT32_CROSS_ABOVE: float32 cross products
    assert np.allclose(neighbours.sq_distances(wide, wide[:5]), cdist(wide, wide[:5], "sqeuclidean"), rtol=1e-5, atol=1e-3)
    d = neighbours.self_distances(a)
    assert np.all(np.isinf(np.diag(d))) and np.allclose(d[0, 1], np.linalg.norm(a[0] - a[1]))


def test_balanced_share_counts_each_neighbour_by_its_group_size():
    # 2 of 4 neighbours normal, but normal tissue is 3x as common: balanced share 0.25
    share = neighbours.balanced_share(np.array([2]), 4, n_normal=30, n_lesion=10)
    assert share[0] == pytest.approx((2 / 30) / (2 / 30 + 2 / 10))
    d = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.5]])
    out = neighbours.normal_share_of_neighbours(d, np.array([True, True, False, False]), k=2)
    assert list(out) == [1.0, 0.0]


def test_random_streams_are_keyed_by_purpose():
    a = feature_space_rng.rng(0, "sample").random(3)
    assert np.array_equal(a, feature_space_rng.rng(0, "sample").random(3))
    assert not np.array_equal(a, feature_space_rng.rng(0, "thumbnails").random(3))
    assert not np.array_equal(a, feature_space_rng.rng(1, "sample").random(3))
    with pytest.raises(ValueError, match="unknown random stream purpose 'sampel'"):
        feature_space_rng.rng(0, "sampel")
    with pytest.raises(ValueError, match=">= 0"):
        feature_space_rng.stream_seed(-1, "sample")


def test_cnn_and_tsne_leave_global_torch_state_alone(small_groups):
    import torch

    x = fs.feature_matrices(fs.sample_groups(small_groups, n_per_group=30), "pixels")
    old_threads = torch.get_num_threads()
    state = torch.random.get_rng_state().clone()
    cnn = lesion_cnn.train_lesion_cnn(small_groups["lesion"], small_groups["normal"], seed=2, max_epochs=1,
                                      input_size=32, n_threads=1)
    tsne.run_tsne(x, perplexity=5, n_iter=250, n_threads=1)
    assert torch.equal(torch.random.get_rng_state(), state), "the global torch generator was used"
    assert torch.get_num_threads() == old_threads
    # a different global seed changes nothing in the CNN: its streams are its own
    torch.manual_seed(12345)
    again = lesion_cnn.train_lesion_cnn(small_groups["lesion"], small_groups["normal"], seed=2, max_epochs=1,
                                        input_size=32, n_threads=1)
    assert np.array_equal(lesion_cnn.cnn_features(cnn, small_groups["synthetic"]),
                          lesion_cnn.cnn_features(again, small_groups["synthetic"]))


def _stage(small_groups, tmp_path, name):
    sample = fs.sample_groups(small_groups, n_per_group=30, seed=0)
    res = tsne.run_tsne(fs.feature_matrices(sample, "pixels"), perplexity=5, n_iter=300, stop_early=False)
    out = fs.mark_outliers(res.embedding, sample.groups, k=5)
    table = fs.embedding_table(sample, res.embedding, out, fs.neighbour_normal_share(res.embedding, sample.groups, 5))
    cnn = lesion_cnn.train_lesion_cnn(sample.of("lesion"), sample.of("normal"), max_epochs=1, input_size=32,
                                      n_threads=1)
    metrics, table = fsr.analyse_spaces(sample, table, ["pixels", "cnn", "random-cnn"], cnn, n_bootstrap=20,
                                        k_neighbours=5, fd_dims=4)
    run_dir = tmp_path / name
    written = fsr.write_results(run_dir, sample, res, table, metrics, cnn, n_per_group=30, n_iter=300,
                                perplexity=5.0, seed=0, stop_early=False)
    return run_dir, written


def test_write_results_reruns_byte_identical_except_timings(small_groups, tmp_path):
    run_a, written = _stage(small_groups, tmp_path, "a")
    run_b, _ = _stage(small_groups, tmp_path, "b")
    assert written == ["feature_space/embedding.csv", "feature_space/metrics.json",
                       "feature_space/metrics_table.csv", "feature_space/timings.json"]
    for rel in written[:-1]:
        assert (run_a / rel).read_bytes() == (run_b / rel).read_bytes(), rel
    timings = json.loads((run_a / "feature_space/timings.json").read_text())
    assert set(timings) == {"tsne_seconds", "cnn_seconds", "c2st_cpu_seconds"} and timings["tsne_seconds"] > 0
    record = json.loads((run_a / "feature_space/metrics.json").read_text())
    # every documented key is there, and nothing undocumented
    assert set(record) == set(typing.get_type_hints(fsr.Stage03Metrics))
    assert set(record["tsne"]) == set(typing.get_type_hints(fsr.TSNERecord))
    assert set(record["sample"]) == set(typing.get_type_hints(fsr.SampleRecord))
    for space in ("pixels", "cnn", "random-cnn"):
        m = record["metrics"][space]
        assert set(m) == set(typing.get_type_hints(fsr.SpaceMetrics))
        assert set(m["memorisation"]) == set(typing.get_type_hints(fsr.Memorisation))
        assert set(m["memorisation"]["authenticity"]) == set(typing.get_type_hints(fsr.Authenticity))
        assert set(m["one_nn_accuracy"]) == set(typing.get_type_hints(fsr.OneNNAccuracy))
        assert isinstance(m["one_nn_accuracy"]["lopsided"], bool)
    assert record["metrics"]["random-cnn"]["n_features"] == 240
    assert record["tsne"]["stop_early"] is False and record["tsne"]["n_iter_run"] == 300
    assert "seconds" not in json.dumps(record)
    table = (run_a / "feature_space/embedding.csv").read_text().splitlines()
    assert table[0].startswith("group,patch_id,x1,x2,outlier_tsne") and len(table) == 91
    # a hyphen in a space's name becomes an underscore in its columns
    assert table[0].endswith("outlier_random_cnn,normal_neighbour_share_random_cnn")
    rows = (run_a / "feature_space/metrics_table.csv").read_text().splitlines()
    assert rows[0] == "feature_space,generator,metric,value,ci_low,ci_high,reference,note"
    assert sum(r.startswith("random-cnn,") for r in rows) == 10
