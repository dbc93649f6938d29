"""The CNN two-sample test (stage 03): calibration, power, reproducibility, grouped folds, the
controls, the frequency sweep, records and figures. Small patches and few epochs: seconds."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from mammo_lib.feature_space.arrays import FeatureSpaceError  # noqa: E402
from mammo_lib.feature_space.c2st import figures as c2st_figures
from mammo_lib.feature_space.c2st import records as c2st_records
from mammo_lib.feature_space.c2st import stats as c2st_stats
from mammo_lib.feature_space.c2st import study as c2st_study  # noqa: E402
from mammo_lib.feature_space.c2st import two_sample as c2st
from mammo_lib.feature_space.sampling import sample_groups  # noqa: E402
from mammo_lib.feature_space.tsne.readability import readability  # noqa: E402
from mammo_lib.testing import demo_groups  # noqa: E402

FAST = c2st.ObserverConfig(widths=(8, 16), epochs=8, learning_rate=3e-3, n_folds=3)


@pytest.fixture(scope="module")
def groups():
    return demo_groups(60, size=32, seed=3)


def test_noise_texture_is_told_apart_and_the_same_bytes_on_rerun(groups):
    r1 = c2st.c2st(groups["lesion"], groups["synthetic"], "gen", config=FAST, seed=1, n_permutations=200)
    r2 = c2st.c2st(groups["lesion"], groups["synthetic"], "gen", config=FAST, seed=1, n_permutations=200)
    assert r1.auc > 0.9 and r1.auc_ci_low > 0.5
    assert r1.p_value == pytest.approx(1 / 201)
    assert r1.accuracy["p_value_vs_0.5"] < 0.01
    assert np.array_equal(r1.score, r2.score) and r1.record() == r2.record()
    assert len(r1.fold_aucs) == 3 and r1.n_per_set == 60 and r1.epochs == [8, 8, 8]
    assert r1.auc == pytest.approx(np.mean(r1.fold_aucs))
    json.dumps(r1.record())  # JSON-ready
    r3 = c2st.c2st(groups["lesion"], groups["synthetic"], "gen", config=FAST, seed=2, n_permutations=200)
    assert not np.array_equal(r1.score, r3.score)  # the seed keys the networks and folds


def test_two_samples_of_one_distribution_give_about_half(groups):
    les = groups["lesion"]
    r = c2st.c2st(les[:30], les[30:], "null", config=FAST, seed=0, n_permutations=500)
    assert 0.3 < r.auc < 0.7
    assert r.auc_ci_low < 0.5 < r.auc_ci_high
    assert r.p_value > 0.05


def test_permutation_p_value_is_exact_for_a_perfect_separation_and_large_for_noise():
    rng = np.random.default_rng(0)
    is_second = np.r_[np.zeros(20, bool), np.ones(20, bool)]
    fold = np.tile(np.arange(4), 10)
    perfect = is_second.astype(float) + 0.01 * rng.random(40)
    assert c2st_stats.permutation_p_value(perfect, is_second, fold, 99, 0, 1) == pytest.approx(0.01)
    assert c2st_stats.cross_fitted_auc(perfect, is_second, fold) == 1.0
    noise = rng.random(40)
    assert c2st_stats.permutation_p_value(noise, is_second, fold, 999, 0, 1) > 0.05


def test_folds_keep_a_womans_patches_together_and_balance_the_sets():
    groups_a = np.repeat([f"w{i}" for i in range(10)], 3)  # 10 women, 3 patches each
    index, is_second, fold, n = c2st_stats.balanced_folds(30, 45, 3, seed=0, key=5, groups_first=groups_a)
    assert n == 30 and is_second.sum() == 30 and (~is_second).sum() == 30
    women = groups_a[index[~is_second]]
    for w in np.unique(women):
        assert len(np.unique(fold[~is_second][women == w])) == 1
    for f in range(3):
        assert ((fold == f) & ~is_second).sum() >= 2 and ((fold == f) & is_second).sum() >= 2


def test_too_few_patches_name_what_each_fold_needs(groups):
    with pytest.raises(FeatureSpaceError, match=r"4-fold cross-fitting needs at least 8 of each"):
        c2st.c2st(groups["lesion"][:5], groups["synthetic"], "tiny", config=c2st.ObserverConfig(n_folds=4))
    with pytest.raises(FeatureSpaceError, match="too few images"):
        c2st_stats.balanced_folds(12, 12, 3, 0, 1, groups_first=np.array(["a"] * 6 + ["b"] * 6))
    with pytest.raises(FeatureSpaceError, match="epochs"):
        c2st.ObserverConfig(epochs=0)
    with pytest.raises(FeatureSpaceError, match="one size"):
        c2st.c2st(groups["lesion"], demo_groups(20, size=16)["lesion"], "sizes", config=FAST)


def test_trained_observer_rates_unseen_patches(groups):
    model, epochs = c2st.train_observer(groups["lesion"][:40], groups["synthetic"][:40], "reader", FAST, seed=0)
    p = c2st.observer_scores(model, np.concatenate([groups["lesion"][40:], groups["synthetic"][40:]]))
    assert epochs == 8 and p.shape == (40,) and np.all((p > 0) & (p < 1))
    assert p[20:].mean() > p[:20].mean() + 0.3  # synthetic scored as synthetic
    model2, _ = c2st.train_observer(groups["lesion"][:40], groups["synthetic"][:40], "reader", FAST, seed=0)
    assert np.array_equal(p, c2st.observer_scores(model2, np.concatenate([groups["lesion"][40:],
                                                                          groups["synthetic"][40:]])))


def test_trained_network_carries_the_population_statistics_of_its_training_patches():
    import torch

    rng = np.random.default_rng(1)
    first = (rng.random((6, 32, 32)) * 255).astype(np.uint8)
    second = (rng.random((6, 32, 32)) * 128).astype(np.uint8)
    model, _ = c2st.train_observer(first, second, "bn", c2st.ObserverConfig(widths=(4, 8), epochs=1), seed=0)
    assert not model.training and model[1].momentum is None
    x = torch.as_tensor(np.concatenate([first, second]).astype(np.float32) / 255 - 0.5).unsqueeze(1)
    with torch.no_grad():
        conv = model[0](x)
    np.testing.assert_allclose(model[1].running_mean.numpy(), conv.mean(dim=(0, 2, 3)).numpy(), atol=1e-5)


def test_too_few_women_split_by_patch_with_a_warning(groups):
    women = np.array(["a"] * 30 + ["b"] * 30)
    r = c2st.c2st(groups["lesion"], groups["synthetic"], "few", config=FAST, n_permutations=50, groups_first=women)
    assert any("too few women" in w for w in r.warnings)
    assert len(set(r.fold)) == 3


def test_butterworth_filters_keep_what_they_say():
    patches = demo_groups(4, size=64, seed=1)["synthetic"]
    low = c2st_study.filter_patches(patches, 0.05, high_pass=False)
    high = c2st_study.filter_patches(patches, 0.2, high_pass=True)

    def high_power(x):
        f = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True)), axes=(1, 2))) ** 2
        yy, xx = np.indices(x.shape[1:])
        return f[:, np.hypot(yy - 32, xx - 32) > 20].sum() / f.sum()

    original = patches.astype(np.float32) / 255
    assert high_power(low) < 0.1 * high_power(original)
    assert high_power(high) > 2 * high_power(original)
    with pytest.raises(FeatureSpaceError, match="must be in"):
        c2st_study.filter_patches(patches, 0.6, high_pass=False)


@pytest.fixture(scope="module")
def study():
    g = demo_groups(40, size=32, seed=5)
    flat = np.full((30, 32, 32), 128, np.uint8) + (np.arange(30) % 5).astype(np.uint8)[:, None, None]
    sample = sample_groups({"lesion": g["lesion"], "synthetic": {"noisy": g["synthetic"], "flat": flat},
                            "normal": g["normal"]}, n_per_group=40, seed=0)
    return sample, c2st_study.run_c2st_study(sample, FAST, seed=0, n_permutations=200, sweep_lowpass=[0.1],
                                             sweep_highpass=[0.2], sweep_max_per_set=30, null_repeats_n=2,
                                             sweep_folds=2)


def test_study_runs_every_generator_both_controls_and_the_sweep(study):
    sample, st = study
    assert list(st.by_generator) == ["noisy", "flat"]
    assert st.by_generator["flat"].auc > 0.95  # flat grey patches are no lesions
    assert st.null.n_per_set == 20 and st.positive.n_per_set == 20
    assert len(st.null_repeats) == 2 and st.null.auc == pytest.approx(np.mean([r.auc for r in st.null_repeats]))
    assert not np.array_equal(st.null_splits[0][0], st.null_splits[1][0])  # two different random splits
    assert st.null.auc_se == pytest.approx(np.mean([r.auc_se for r in st.null_repeats]))
    assert len(st.null.fold_aucs) == 6
    assert st.null.p_value == pytest.approx(min(1.0, 2 * np.mean([r.p_value for r in st.null_repeats])))
    assert {r.config.n_folds for r in st.sweep_results} == {2}
    assert st.positive.auc > 0.75 and st.sensitive()
    assert list(st.sweep["filter"]) == ["none", "low-pass", "high-pass"]
    assert st.sweep["n_per_set"].tolist() == [30, 30, 30]
    assert st.sweep_generator == "noisy" and len(st.sweep_results) == 3
    assert st.cpu_seconds() > 0


def test_records_words_and_scores(study):
    sample, st = study
    rec = c2st_records.c2st_record(st, sample)
    json.dumps(rec)
    assert set(rec) >= {"observer", "by_generator", "controls", "calibrated", "sensitive", "controls_text",
                        "frequency_sweep"}
    flat = rec["by_generator"]["flat"]
    assert "a machine can tell them apart" in flat["verdict"]
    assert f"in {round(100 * st.by_generator['flat'].auc)} of 100" in flat["verdict"]
    gallery_ids = flat["gallery_patch_ids"]["synthetic_most_synthetic"]
    assert len(gallery_ids) == 8 and set(gallery_ids) <= set(sample.patch_ids.astype(str))
    scores = c2st_records.score_table(st, sample)
    assert set(scores["test"]) == {"noisy", "flat", "null-control", "null-control-1", "positive-control"}
    null_ids = scores.loc[scores["test"] == "null-control", "patch_id"]
    assert rec["controls"]["null"]["repeats"] == 2 and len(rec["controls"]["null"]["repeat_aucs"]) == 2
    assert null_ids.is_unique and set(null_ids) <= set(sample.patch_ids[sample.groups == "lesion"])
    table = c2st_records.summary_table(st)
    assert table["test"].tolist() == ["noisy", "flat", "null control", "positive control"]
    assert "Controls" in c2st_records.verdicts_markdown(st)


def test_the_verdict_says_when_the_test_cannot_be_trusted(study):
    _, st = study
    r = st.by_generator["flat"]
    text = c2st_records.verdict_sentence(r, calibrated=False, sensitive=False)
    assert "not calibrated" in text and "no evidence of realism" not in text  # it did tell them apart
    weak = c2st.C2STResult(**{**r.__dict__, "auc": 0.52, "auc_ci_low": 0.44, "auc_ci_high": 0.6, "auc_se": 0.04})
    assert "could not show" in c2st_records.verdict_sentence(weak) and not weak.degenerate()
    assert "no evidence of realism" in c2st_records.verdict_sentence(weak, sensitive=False)
    perfect = c2st.C2STResult(**{**r.__dict__, "auc": 1.0, "auc_ci_low": 1.0, "auc_ci_high": 1.0, "auc_se": 0.0})
    assert perfect.degenerate() and perfect.record()["auc"]["degenerate"]
    text = c2st_records.verdict_sentence(perfect)
    assert "zero width" in text and "a machine can tell them apart" in text


def test_figures_draw_every_part(study):
    sample, st = study
    fig = c2st_figures.plot_c2st_verdict(st)
    assert len(fig.axes[0].get_yticklabels()) == 4
    r = st.by_generator["noisy"]
    fig = c2st_figures.plot_gallery(r, sample.of("lesion"), sample.of("synthetic", "noisy"), k=5)
    assert len(fig.axes) == 15 and "most real" in fig.axes[5].get_title(loc="left")
    fig = c2st_figures.plot_saliency(r)
    assert len(fig.axes) == 3  # mean image, saliency, colour bar
    with pytest.raises(ValueError, match="saliency"):
        c2st_figures.plot_saliency(st.null)
    fig = c2st_figures.plot_frequency_sweep(st.sweep, "noisy")
    assert "shapes or in the fine texture" in fig.axes[0].get_title()
    matplotlib.pyplot.close("all")


def test_tsne_readability_rule():
    rng = np.random.default_rng(0)
    groups = np.array(["lesion"] * 30 + ["synthetic"] * 30 + ["normal"] * 30)
    apart = np.r_[rng.normal(0, 1, (60, 2)), rng.normal(10, 1, (30, 2))]
    mixed = rng.normal(0, 1, (90, 2))
    none = np.zeros(90, bool)
    assert readability(apart, groups, none, "pixels", n_bootstrap=20)["readable"]
    r = readability(mixed, groups, groups != "normal", "pixels", n_bootstrap=20)
    assert not r["readable"] and "cannot judge" in r["sentence"]


def test_folds_that_disagree_never_give_a_zero_width_interval():
    is_second = np.r_[np.zeros(8, bool), np.ones(8, bool)]
    fold = np.tile([0, 1], 8)
    score = np.where(fold == 0, is_second, ~is_second).astype(float)  # fold 0 perfect, fold 1 inverted
    stats = c2st_stats.summarise(score, is_second, fold, 50, 0, 0)
    assert stats["fold_aucs"] == [1.0, 0.0] and stats["auc"] == 0.5
    assert stats["auc_se"] == pytest.approx(0.5) and stats["auc_ci_low"] == 0.0 and stats["auc_ci_high"] == 1.0


def test_controls_too_small_to_run_are_noted_and_the_generator_test_still_runs():
    g = demo_groups(40, size=32, seed=5)
    sample = sample_groups({"lesion": g["lesion"][:7], "synthetic": g["synthetic"], "normal": g["normal"]},
                           n_per_group=40, seed=0)
    st = c2st_study.run_c2st_study(sample, c2st.ObserverConfig(widths=(8, 16), epochs=2, n_folds=2),
                                   n_permutations=20)
    assert st.null is None and st.calibrated() is None and st.positive is None
    assert any("null control not run" in n and "null-control" in n for n in st.notes)
    assert st.by_generator["synthetic"].n_per_set == 7
    rec = c2st_records.c2st_record(st, sample)
    json.dumps(rec)
    assert rec["controls"] == {"null": None, "positive": None} and rec["calibrated"] is None
    assert "calibration is unknown" in rec["by_generator"]["synthetic"]["verdict"]
    assert "Null control not run" in rec["controls_text"]
    assert len(c2st_figures.plot_c2st_verdict(st).axes[0].get_yticklabels()) == 1
    matplotlib.pyplot.close("all")


def test_settings_are_checked_before_any_network_trains(groups):
    sample = sample_groups({"lesion": groups["lesion"], "synthetic": groups["synthetic"], "normal": groups["normal"]},
                           n_per_group=60, seed=0)
    with pytest.raises(FeatureSpaceError, match=r"c2st_sweep_lowpass = \[0.7\]"):
        c2st_study.run_c2st_study(sample, FAST, sweep_lowpass=[0.7])
    with pytest.raises(FeatureSpaceError, match="c2st_sweep_max_per_set = 1"):
        c2st_study.run_c2st_study(sample, FAST, sweep_highpass=[0.1], sweep_max_per_set=1)
    with pytest.raises(FeatureSpaceError, match="c2st_null_repeats = 0"):
        c2st_study.run_c2st_study(sample, FAST, null_repeats_n=0)
    with pytest.raises(FeatureSpaceError, match=r"too small for the observer's 6 blocks.*c2st_widths"):
        c2st.c2st(groups["lesion"], groups["synthetic"], "deep", config=c2st.ObserverConfig(widths=(4,) * 6))
    with pytest.raises(FeatureSpaceError, match="c2st_epochs"):
        c2st.ObserverConfig(epochs=0)
