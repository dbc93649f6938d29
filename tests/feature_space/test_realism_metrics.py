"""Known-answer tests of the realism metrics on constructed data."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_lib.feature_space import metrics as rm
from mammo_lib.feature_space import results as fsr
from mammo_lib.feature_space import sampling as fs


def gaussian(n, d, mean=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).normal(mean, scale, size=(n, d))


def test_one_nn_identical_sets_is_below_half_and_disjoint_is_one():
    real = gaussian(200, 5, seed=1)
    # identical copies: each point's nearest other point is its copy in the other set -> 0
    same = rm.one_nn_accuracy(real, real.copy(), n_bootstrap=200)
    assert same["value"] == pytest.approx(0.0)
    # two independent samples of one distribution -> about 0.5
    indep = rm.one_nn_accuracy(real, gaussian(200, 5, seed=2), n_bootstrap=300)
    assert 0.4 < indep["value"] < 0.6
    assert indep["ci_low"] <= indep["value"] <= indep["ci_high"]
    assert indep["ci_low"] < 0.5 < indep["ci_high"]
    far = rm.one_nn_accuracy(real, gaussian(200, 5, mean=50.0, seed=3), n_bootstrap=100)
    assert far["value"] == 1.0 and far["ci_low"] == 1.0
    # unequal sets are balanced by subsampling, so chance stays at 0.5
    uneven = rm.one_nn_accuracy(real[:50], gaussian(400, 5, seed=4), n_bootstrap=100)
    assert uneven["n_real"] == uneven["n_synthetic"] == 50 and uneven["n_given"] == [50, 400]
    assert 0.3 < uneven["value"] < 0.7


def test_prdc_identical_and_disjoint():
    real = gaussian(150, 4, seed=4)
    same = rm.prdc(real, real.copy(), k=5, n_bootstrap=100)
    for key in ("precision", "recall", "coverage"):
        assert same[key]["value"] == pytest.approx(1.0)
    assert same["density"]["value"] == pytest.approx(1.0, abs=0.25)
    indep = rm.prdc(real, gaussian(150, 4, seed=5), k=5, n_bootstrap=100)
    assert indep["precision"]["value"] > 0.7 and indep["recall"]["value"] > 0.7
    assert 0.6 < indep["density"]["value"] < 1.4
    far = rm.prdc(real, gaussian(150, 4, mean=100.0, seed=6), k=5, n_bootstrap=100)
    for key in ("precision", "recall", "density", "coverage"):
        assert far[key]["value"] == 0.0


def test_frechet_closed_form():
    d = 6
    mu = np.arange(d, dtype=float) / 3
    # N(0, I) vs N(mu, I): ||mu||^2
    assert rm.frechet_distance(np.zeros(d), np.eye(d), mu, np.eye(d)) == pytest.approx(mu @ mu)
    # N(0, I) vs N(0, 4I): Tr(I + 4I - 2*2I) = d
    assert rm.frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), 4 * np.eye(d)) == pytest.approx(d)
    # diagonal covariances a, b: sum (sqrt a - sqrt b)^2
    a, b = np.array([1.0, 2.0, 9.0]), np.array([4.0, 2.0, 1.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert rm.frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected)


def test_frechet_pca_shifted_gaussians_recovers_mu_squared():
    d, n = 5, 4000
    mu = np.array([1.0, -0.5, 0.5, 0.0, 0.25])
    real = gaussian(n, d, seed=7)
    synth = gaussian(n, d, seed=8) + mu
    out = rm.frechet_distance_pca(real, synth, n_components=None, n_bootstrap=50)
    assert out["pca_dims"] == d
    assert out["value"] == pytest.approx(mu @ mu, abs=0.15)
    assert out["ci_low"] < mu @ mu < out["ci_high"] + 0.05
    same = rm.frechet_distance_pca(real, gaussian(n, d, seed=9), n_components=None, n_bootstrap=0)
    assert same["value"] < 0.02


def test_normal_neighbour_share():
    lesion = gaussian(100, 3, seed=10)
    normal = gaussian(100, 3, mean=20.0, seed=11)
    synth_in_lesions = gaussian(50, 3, seed=12)
    out = rm.normal_neighbour_share(synth_in_lesions, lesion, normal, k=10, n_bootstrap=100)
    assert out["value"] == 0.0 and out["real_lesion_reference"]["value"] == 0.0
    synth_in_normal = np.vstack([gaussian(40, 3, seed=13), gaussian(10, 3, mean=20.0, seed=14)])
    out = rm.normal_neighbour_share(synth_in_normal, lesion, normal, k=10, n_bootstrap=100)
    assert out["value"] == pytest.approx(0.2)


def test_memorisation_copies_vs_fresh_samples():
    real = gaussian(200, 8, seed=15)
    copies = real[:50] + 1e-6
    out = rm.memorisation_check(copies, real, n_bootstrap=100)
    assert out["median_ratio_synthetic_to_real"]["value"] < 0.01
    assert out["share_synthetic_below_real_q05"]["value"] == 1.0
    assert out["closest_pairs"][0]["real_index"] == out["closest_pairs"][0]["synthetic_index"]
    fresh = rm.memorisation_check(gaussian(200, 8, seed=16), real, n_bootstrap=100)
    assert 0.8 < fresh["median_ratio_synthetic_to_real"]["value"] < 1.3
    assert fresh["share_synthetic_below_real_q05"]["value"] < 0.15
    assert fresh["exact_duplicates"] == 0


def test_authenticity_flags_copies_and_fresh_samples_match_the_real_yardstick():
    real = gaussian(200, 8, seed=15)
    copies = rm.authenticity(real[:50] + 1e-6, real, n_bootstrap=100)
    assert copies["value"] == 0.0 and copies["synthetic_vs_training_half"] < 0.6
    fresh = rm.authenticity(gaussian(200, 8, seed=16), real, n_bootstrap=200, seed=1)
    yard = fresh["real_vs_real"]
    assert fresh["n_training_half"] == fresh["n_held_out_half"] == 100
    # fresh samples of the real distribution: about as authentic as a held-out real half (well below 1)
    assert 0.3 < yard["value"] < 0.9 and yard["ci_low"] <= yard["value"] <= yard["ci_high"]
    assert fresh["ci_low"] <= yard["value"] + 0.1 and yard["ci_low"] <= fresh["value"] + 0.1
    assert abs(fresh["synthetic_vs_training_half"] - yard["value"]) < 0.2
    # the yardstick depends only on the real set and the seed; the memorisation record carries the same result
    assert rm.authenticity(real[:5], real, 50, seed=1)["real_vs_real"] == rm.authenticity(
        gaussian(30, 8, seed=3), real, 50, seed=1)["real_vs_real"]
    assert rm.memorisation_check(gaussian(200, 8, seed=16), real, 200, seed=1)["authenticity"] == fresh
    # too few real patches for two halves: no yardstick, no error
    tiny = rm.authenticity(gaussian(5, 8, seed=4), real[:2], 20)
    assert np.isnan(tiny["real_vs_real"]["value"]) and np.isnan(tiny["synthetic_vs_training_half"])


def test_uniform_noise_generator_is_a_lopsided_half_not_a_verdict():
    """The case that made the study add the C2ST: a folder generator of 40 uniform-noise patches gets pixel-space 1-NN
    0.5, because every real patch is classified correctly and every noise patch wrongly."""
    import matplotlib

    matplotlib.use("Agg")
    from mammo_lib import testing
    from mammo_lib.feature_space import figures as fsp
    from mammo_lib.feature_space.arrays import flatten_pixels

    real = testing.demo_groups(40, size=128, seed=0)
    noise = np.random.default_rng(1).integers(0, 256, size=(40, 128, 128), dtype=np.uint8)
    lesion, normal, synthetic = (flatten_pixels(x).astype(np.float64) for x in (real["lesion"], real["normal"], noise))
    acc = rm.one_nn_accuracy(lesion, synthetic, n_bootstrap=50)
    assert acc["value"] == 0.5 and (acc["accuracy_real"], acc["accuracy_synthetic"]) == (1.0, 0.0)
    assert acc["lopsided"] is True and rm.LOPSIDED_GAP == 0.3
    assert rm.lopsided_note(acc) == "lopsided: real 1.00 / synthetic 0.00, not a verdict"
    fair = rm.one_nn_accuracy(lesion[:20], lesion[20:], n_bootstrap=0)
    assert fair["lopsided"] is False and rm.lopsided_note(fair) == ""

    by_gen = {"noise": {"pixels": rm.realism_metrics(lesion, synthetic, normal, n_bootstrap=20, fd_dims=4)}}
    row = fsr.metrics_table(by_gen).iloc[0]
    assert row["metric"].startswith("1-NN") and row["value"] == 0.5
    assert row["note"] == "lopsided: real 1.00 / synthetic 0.00, not a verdict"
    assert "real side 1.000, synthetic side 0.000" in row["reference"]
    sample = fs.sample_groups({"lesion": real["lesion"], "synthetic": {"noise": noise}, "normal": real["normal"]},
                              n_per_group=40)
    text = fsr.generators_markdown(sample, by_gen)
    assert "0.500 [0.50, 0.50] (**lopsided: real 1.00 / synthetic 0.00, not a verdict**)" in text
    frame = fsp.forest_frame(by_gen)
    one_nn = frame[frame["metric"].str.startswith("1-NN")].iloc[0]
    assert one_nn["note"] and (one_nn["side_real"], one_nn["side_synthetic"]) == (1.0, 0.0)
    fig = fsp.plot_metric_forest(frame)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("1-NN lopsided") for t in legend)
    panel = fig.axes[0]  # the 1-NN panel: the two sides drawn as R and S, and the words "not a verdict"
    assert {t.get_text() for t in panel.texts} >= {"R", "S", "lopsided: not a verdict"}


def test_all_metrics_deterministic_and_bad_input():
    a, b, c = gaussian(60, 10, seed=1), gaussian(60, 10, seed=2), gaussian(60, 10, mean=3, seed=3)
    m1 = rm.realism_metrics(a, b, c, n_bootstrap=50, seed=3, fd_dims=5)
    m2 = rm.realism_metrics(a, b, c, n_bootstrap=50, seed=3, fd_dims=5)
    assert m1 == m2
    rows = fsr.summary_rows("test", m1)
    assert len(rows) == 10 and all(r["value"] is not None for r in rows)
    assert [r["note"] for r in rows] == [""] * 10  # two samples of one kind: nothing lopsided
    bad = b.copy()
    bad[0, 0] = np.nan
    with pytest.raises(rm.MetricsError, match="NaN"):
        rm.one_nn_accuracy(a, bad)
    with pytest.raises(rm.MetricsError, match="features"):
        rm.one_nn_accuracy(a, b[:, :5])


def test_table_and_forest_hold_every_generator_against_the_same_real_set():
    import matplotlib

    matplotlib.use("Agg")
    from mammo_lib.feature_space import figures as fsp

    real, normal = gaussian(60, 6, seed=1), gaussian(60, 6, mean=4, seed=2)
    by_gen = {"dcgan": {"pixels": rm.realism_metrics(real, gaussian(60, 6, seed=3), normal, n_bootstrap=30, fd_dims=4)},
              "far": {"pixels": rm.realism_metrics(real, gaussian(60, 6, mean=9, seed=4), normal, n_bootstrap=30,
                                                   fd_dims=4)}}
    table = fsr.metrics_table(by_gen)
    assert list(table.columns) == ["feature_space", "generator", "metric", "value", "ci_low", "ci_high", "reference",
                                   "note"]
    assert list(table["generator"]) == ["dcgan"] * 10 + ["far"] * 10
    one_nn = table[table["metric"].str.startswith("1-NN")].set_index("generator")["value"]
    assert 0.3 < one_nn["dcgan"] < 0.7 and one_nn["far"] == 1.0
    frame = fsp.forest_frame(by_gen)
    assert len(frame) == 20 and frame["generator"].tolist() == table["generator"].tolist()
    fd = frame[frame["metric"].str.startswith("Fréchet")].set_index("generator")
    # one real split-half yardstick for both (the same real set, halves of the same size)
    assert fd.loc["dcgan", "yardstick"] == fd.loc["far", "yardstick"] == by_gen["far"]["pixels"][
        "frechet_distance"]["real_split_half"]
    assert fd.loc["far", "half_value"] > 10 * fd.loc["dcgan", "half_value"]
    assert frame.loc[frame["metric"].str.startswith("1-NN"), "ideal"].tolist() == [0.5, 0.5]
    auth = frame[frame["metric"].str.startswith("authenticity")].set_index("generator")
    # one real-vs-real yardstick for both, with its interval
    assert auth.loc["dcgan", "yardstick"] == auth.loc["far", "yardstick"] == by_gen["far"]["pixels"][
        "memorisation"]["authenticity"]["real_vs_real"]["value"]
    assert auth.loc["far", "yardstick_low"] <= auth.loc["far", "yardstick"] <= auth.loc["far", "yardstick_high"]
    fig = fsp.plot_metric_forest(frame)
    assert len(fig.axes) == 10 and [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["dcgan", "far"]
