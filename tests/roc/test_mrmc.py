"""Obuchowski-Rockette MRMC analysis (mammo_lib.roc.mrmc) against the published Iowa OR-DBM MRMC 2.51
output for the Van Dyke et al. (1993) data, plus invariants of the general layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mammo_lib import auc_stats
from mammo_lib.fileio import json_safe
from mammo_lib.roc import mrmc

# Printed precision of the OR-DBM MRMC 2.51 output: AUCs, mean squares, (co)variances and
# correlations to 8 decimals -> compare within 1e-8 (half a unit is 5e-9, plus float noise);
# F and df to 2 decimals (5e-3); p to 4 decimals (5e-5); differences, SEs and CIs to 5
# decimals (5e-6); X2 to 5 decimals (5e-6).
TOL_8 = 1e-8
TOL_5 = 6e-6


def vandyke(roc_reference_dir):
    data = pd.read_csv(roc_reference_dir / "vandyke_dataset02_ratings.csv").sort_values(
        ["treatment", "reader", "case"])
    t, r, c = data["treatment"].nunique(), data["reader"].nunique(), data["case"].nunique()
    ratings = data["rating"].to_numpy().reshape(t, r, c)
    first = data[(data["treatment"] == 0) & (data["reader"] == 0)]
    truth = first["truth"].to_numpy().astype(bool)
    expected = json.loads((roc_reference_dir / "vandyke_expected.json").read_text())["expected"]
    return ratings, truth, expected


@pytest.fixture
def vandyke_or(roc_reference_dir):
    ratings, truth, expected = vandyke(roc_reference_dir)
    result = mrmc.or_analysis(ratings, truth, covariance="jackknife", modalities=["1", "2"],
                              readers=[str(k) for k in range(1, 6)])
    return result, expected, ratings, truth


def test_vandyke_design(vandyke_or):
    _, _, ratings, truth = vandyke_or
    assert ratings.shape == (2, 5, 114) and truth.sum() == 45 and (~truth).sum() == 69


def test_vandyke_auc_and_anova(vandyke_or):
    res, exp, _, _ = vandyke_or
    for i, key in enumerate(("trt0", "trt1")):
        np.testing.assert_allclose(list(res["auc"][str(i + 1)].values()), exp["auc"][key], atol=TOL_8)
    np.testing.assert_allclose(list(res["modality_mean_auc"].values()), exp["trt_mean_auc"], atol=TOL_8)
    anova = exp["OR"]["anova_auc"]
    assert res["anova"]["MS_T"] == pytest.approx(anova["MS_T"], abs=TOL_8)
    assert res["anova"]["MS_R"] == pytest.approx(anova["MS_R"], abs=TOL_8)
    assert res["anova"]["MS_TR"] == pytest.approx(anova["MS_TR"], abs=TOL_8)
    assert res["anova"]["MS_R_per_modality"]["1"] == pytest.approx(anova["MS_R_trt0"], abs=TOL_8)
    assert res["anova"]["MS_R_per_modality"]["2"] == pytest.approx(anova["MS_R_trt1"], abs=TOL_8)


def test_vandyke_variance_components_jackknife(vandyke_or):
    res, exp, _, _ = vandyke_or
    vc = exp["OR"]["var_components"]
    cov = res["covariances"]
    for name in ("Var_Error", "Cov1", "Cov2", "Cov3"):
        ours = cov["Var_error" if name == "Var_Error" else name]
        assert ours == pytest.approx(vc[name], abs=TOL_8), name
    for k in (1, 2, 3):
        assert cov[f"Cov{k}"] / cov["Var_error"] == pytest.approx(vc[f"corr_Cov{k}"], abs=TOL_8)
    assert res["variance_components"]["Var_R"] == pytest.approx(vc["Var_R"], abs=TOL_8)
    assert res["variance_components"]["Var_TR"] == pytest.approx(vc["Var_TR"], abs=TOL_8)


def test_vandyke_random_readers_random_cases(vandyke_or):
    res, exp, _, _ = vandyke_or
    e, ours = exp["OR"]["RRRC"], res["RRRC"]
    assert ours["F"] == pytest.approx(e["F"], abs=5e-3)
    assert ours["ddf_H"] == pytest.approx(e["ddf_H"], abs=5e-3)
    assert ours["p"] == pytest.approx(e["p"], abs=5e-5)
    assert ours["error_MS"] == pytest.approx(e["error_MS"], abs=TOL_8)
    (diff,) = ours["differences"]
    assert diff["difference"] == pytest.approx(exp["trt_diff_0_minus_1"], abs=TOL_8)
    assert diff["se"] == pytest.approx(e["diff_se"], abs=TOL_5)
    assert diff["t"] == pytest.approx(e["diff_t"], abs=5e-3)
    np.testing.assert_allclose(diff["ci"], e["diff_ci95"], atol=TOL_5)
    for name, key in (("1", "trt0"), ("2", "trt1")):
        single, e_single = ours["single_modality"][name], e["single_trt"][key]
        assert single["se"] == pytest.approx(e_single["se"], abs=TOL_8)
        assert single["df"] == pytest.approx(e_single["df"], abs=5e-3)
        np.testing.assert_allclose(single["ci"], e_single["ci95"], atol=TOL_8)
        assert single["cov2"] == pytest.approx(e_single["Cov2"], abs=TOL_8)


def test_vandyke_fixed_readers_and_fixed_cases(vandyke_or):
    res, exp, _, _ = vandyke_or
    e, ours = exp["OR"]["FRRC"], res["FRRC"]
    assert ours["X2"] == pytest.approx(e["X2"], abs=TOL_5)
    assert ours["p"] == pytest.approx(e["p"], abs=5e-5)
    (diff,) = ours["differences"]
    assert diff["se"] == pytest.approx(e["diff_se"], abs=TOL_5)
    np.testing.assert_allclose(diff["ci"], e["diff_ci95"], atol=TOL_5)
    for name, key in (("1", "trt0"), ("2", "trt1")):
        assert ours["single_modality"][name]["se"] == pytest.approx(e["single_trt"][key]["se"], abs=TOL_8)
        np.testing.assert_allclose(ours["single_modality"][name]["ci"], e["single_trt"][key]["ci95"], atol=TOL_8)
    per_reader = ours["per_reader_differences"]
    pr = e["per_reader_diff"]
    np.testing.assert_allclose([d["difference"] for d in per_reader], pr["diff"], atol=TOL_5)
    np.testing.assert_allclose([d["se"] for d in per_reader], pr["se"], atol=TOL_5)
    np.testing.assert_allclose([d["p"] for d in per_reader], pr["p"], atol=5e-5)
    np.testing.assert_allclose([d["Var_error"] for d in per_reader], pr["Var_Error"], atol=TOL_8)
    np.testing.assert_allclose([d["Cov1"] for d in per_reader], pr["Cov1"], atol=TOL_8)
    e3, ours3 = exp["OR"]["RRFC"], res["RRFC"]
    assert ours3["F"] == pytest.approx(e3["F"], abs=5e-3) and ours3["df"] == e3["df"]
    assert ours3["p"] == pytest.approx(e3["p"], abs=5e-4)
    assert ours3["differences"][0]["se"] == pytest.approx(e3["diff_se"], abs=TOL_5)
    np.testing.assert_allclose(ours3["differences"][0]["ci"], e3["diff_ci95"], atol=TOL_5)
    for name, key in (("1", "trt0"), ("2", "trt1")):
        np.testing.assert_allclose(ours3["single_modality"][name]["ci"], e3["single_trt"][key]["ci95"], atol=TOL_8)


def test_vandyke_output_used_jackknife_not_delong_covariance(vandyke_or):
    """The Iowa output says 'Covariance Estimation Method: Jackknifing'; the DeLong covariances
    are close but do not reproduce its printed figures (F 4.48 instead of 4.46)."""
    _, exp, ratings, truth = vandyke_or
    res = mrmc.or_analysis(ratings, truth, covariance="delong")
    assert res["RRRC"]["F"] == pytest.approx(4.48, abs=5e-3)
    assert abs(res["RRRC"]["F"] - exp["OR"]["RRRC"]["F"]) > 0.01
    assert abs(res["covariances"]["Var_error"] - exp["OR"]["var_components"]["Var_Error"]) > 1e-6
    assert res["covariances"]["Var_error"] == pytest.approx(exp["OR"]["var_components"]["Var_Error"], rel=0.03)


def test_jackknife_covariance_by_definition_on_small_data():
    rng = np.random.default_rng(0)
    truth = np.r_[np.ones(6, bool), np.zeros(7, bool)]
    scores = rng.integers(1, 6, size=(4, 13)).astype(float)
    _, cov = auc_stats.jackknife_covariance(scores, truth)
    loo = np.array([[auc_stats.auc_mann_whitney(s[np.arange(13) != k], truth[np.arange(13) != k]) for k in range(13)]
                    for s in scores])
    centred = loo - loo.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(cov, 12 / 13 * centred @ centred.T, atol=1e-14)


def test_general_layout_three_modalities_and_reader_order_invariance():
    rng = np.random.default_rng(4)
    truth = np.r_[np.ones(30, bool), np.zeros(30, bool)]
    case_effect = rng.normal(size=60)
    ratings = np.stack([np.stack([case_effect + rng.normal(size=60) + shift * truth + rd * truth
                                  for rd in (0.0, 0.2, 0.4, 0.6)]) for shift in (0.5, 1.0, 1.5)])
    res = mrmc.or_analysis(ratings, truth, modalities=["a", "b", "c"])
    assert res["RRRC"]["df_num"] == 2 and len(res["RRRC"]["differences"]) == 3
    assert [d["comparison"] for d in res["RRRC"]["differences"]] == ["a - b", "a - c", "b - c"]
    assert 0 <= res["RRRC"]["p"] <= 1 and res["RRRC"]["ddf_H"] > 0
    for d in res["RRRC"]["differences"]:
        assert d["ci"][0] < d["difference"] < d["ci"][1]
    shuffled = mrmc.or_analysis(ratings[:, [2, 0, 3, 1]], truth, modalities=["a", "b", "c"])
    assert shuffled["RRRC"]["F"] == pytest.approx(res["RRRC"]["F"], rel=1e-12)
    assert shuffled["RRRC"]["ddf_H"] == pytest.approx(res["RRRC"]["ddf_H"], rel=1e-12)


def test_single_modality_test_against_chance():
    rng = np.random.default_rng(8)
    truth = np.r_[np.ones(40, bool), np.zeros(40, bool)]
    good = np.stack([rng.normal(size=80) + 1.5 * truth for _ in range(5)])[None]
    chance = np.stack([rng.normal(size=80) for _ in range(5)])[None]
    res_good = mrmc.or_analysis(good, truth, modalities=["gan"])["RRRC"]["single_modality"]["gan"]
    res_chance = mrmc.or_analysis(chance, truth, modalities=["gan"])["RRRC"]["single_modality"]["gan"]
    assert res_good["p_vs_0.5"] < 0.01 and res_good["ci"][0] > 0.5
    assert res_chance["p_vs_0.5"] > 0.01 and res_chance["ci"][0] < 0.5 < res_chance["ci"][1]
    assert "F" not in mrmc.or_analysis(good, truth)["RRRC"]  # no between-modality test with one modality


def test_bad_layouts_are_refused():
    truth = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    with pytest.raises(ValueError, match="at least 2 readers"):
        mrmc.or_analysis(np.zeros((2, 1, 10)), truth)
    with pytest.raises(ValueError, match="modalities, readers, cases"):
        mrmc.or_analysis(np.zeros((2, 10)), truth)
    with pytest.raises(ValueError, match="not one of"):
        mrmc.or_analysis(np.zeros((1, 2, 10)), truth, covariance="bootstrap")


def test_degenerate_readers_give_nan_or_inf_not_an_exception():
    """Identical readers (zero error terms) and perfect separation must not crash the analysis."""
    rng = np.random.default_rng(0)
    truth = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    s = rng.normal(size=20) + truth
    same = mrmc.or_analysis(np.stack([np.stack([s, s]), np.stack([s, s])]), truth)
    assert np.isnan(same["RRRC"]["F"]) and same["RRRC"]["differences"][0]["difference"] == 0.0
    perfect = np.r_[np.ones(10), np.zeros(10)]
    single = mrmc.or_analysis(np.stack([perfect, perfect])[None], truth)["RRRC"]["single_modality"]["modality 1"]
    assert single["auc"] == 1.0 and single["se"] == 0.0 and single["p_vs_0.5"] == 0.0
    json.dumps(json_safe(same), allow_nan=False)


# --------------------------------------------------------------------------- generators as modalities
def vandyke_long(roc_reference_dir, names=("dcgan", "mine")) -> pd.DataFrame:
    """The Van Dyke data as stage 05's long table across generators: modality = generator."""
    ratings, truth, _ = vandyke(roc_reference_dir)
    t, r, c = ratings.shape
    return pd.DataFrame({
        "reader": np.tile(np.repeat([str(j + 1) for j in range(r)], c), t),
        "case": np.tile([str(k + 1) for k in range(c)], t * r),
        "modality": np.repeat(list(names), r * c), "truth": np.tile(truth.astype(int), t * r),
        "rating": ratings.ravel()})


def test_vandyke_read_as_two_generators_reproduces_or_dbm_mrmc_2_51(roc_reference_dir):
    """Stage 05's MRMC across generators (the path it runs on a two-generator case set), fed the Van
    Dyke data with its two modalities as two generators, gives the pinned OR-DBM MRMC 2.51 figures."""
    from mammo_lib.roc.by_generator import generator_or_analysis

    _, _, exp = vandyke(roc_reference_dir)
    res, data = generator_or_analysis(vandyke_long(roc_reference_dir), covariance="jackknife")
    assert data.present is None and data.modalities == ["dcgan", "mine"] and "design" not in res
    e = exp["OR"]["RRRC"]
    assert res["RRRC"]["F"] == pytest.approx(e["F"], abs=5e-3)
    assert res["RRRC"]["ddf_H"] == pytest.approx(e["ddf_H"], abs=5e-3)
    assert res["RRRC"]["p"] == pytest.approx(e["p"], abs=5e-5)
    (diff,) = res["RRRC"]["differences"]
    assert diff["comparison"] == "dcgan - mine"
    assert diff["difference"] == pytest.approx(exp["trt_diff_0_minus_1"], abs=TOL_8)
    assert diff["se"] == pytest.approx(e["diff_se"], abs=TOL_5)
    np.testing.assert_allclose(diff["ci"], e["diff_ci95"], atol=TOL_5)
    for name, key in (("dcgan", "trt0"), ("mine", "trt1")):
        np.testing.assert_allclose(res["RRRC"]["single_modality"][name]["ci"], e["single_trt"][key]["ci95"], atol=TOL_8)
    vc = exp["OR"]["var_components"]
    for name in ("Cov1", "Cov2", "Cov3"):
        assert res["covariances"][name] == pytest.approx(vc[name], abs=TOL_8)
    assert res["FRRC"]["X2"] == pytest.approx(exp["OR"]["FRRC"]["X2"], abs=TOL_5)
    assert res["FRRC"]["p"] == pytest.approx(exp["OR"]["FRRC"]["p"], abs=5e-5)


@pytest.mark.parametrize("method", ["jackknife", "delong"])
def test_partially_paired_estimator_reduces_to_the_fully_crossed_one(roc_reference_dir, method):
    """With every case in every modality the partially paired covariance is OR-DBM's (jackknife) or
    DeLong's, to rounding, so the known answer above also pins the estimator stage 05 uses."""
    ratings, truth, exp = vandyke(roc_reference_dir)
    auc_full, cov_full = mrmc.auc_covariance(ratings, truth, method)
    auc_part, cov_part = mrmc.partial_auc_covariance(ratings, truth, np.ones((2, 114), bool), method)
    np.testing.assert_allclose(auc_part, auc_full, atol=1e-15)
    np.testing.assert_allclose(cov_part, cov_full, atol=1e-15)
    if method == "jackknife":
        comp = mrmc.or_components(auc_part, cov_part)
        assert comp.cov2 == pytest.approx(exp["OR"]["var_components"]["Cov2"], abs=TOL_8)


def _generator_design(seed=3, n_real=30, n_per_generator=(20, 25), shifts=(0.3, 1.2), r=4):
    """Real cases read once (their rating counts in every modality), each generator's cases in
    its own modality: ratings (t, r, c) with NaN outside each modality, and ``present``."""
    rng = np.random.default_rng(seed)
    t = len(n_per_generator)
    c = n_real + sum(n_per_generator)
    truth = np.r_[np.ones(n_real, bool), np.zeros(c - n_real, bool)]
    present = np.zeros((t, c), bool)
    present[:, :n_real] = True
    latent = rng.normal(size=(r, c)) + 1.0 * truth
    start = n_real
    for i, (n_g, shift) in enumerate(zip(n_per_generator, shifts, strict=True)):
        present[i, start:start + n_g] = True
        latent[:, start:start + n_g] -= shift
        start += n_g
    ratings = np.where(present[:, None, :], latent[None], np.nan)
    return ratings, truth, present


@pytest.mark.parametrize("method", ["jackknife", "delong"])
def test_partially_paired_generators_match_their_own_one_generator_analyses(method):
    ratings, truth, present = _generator_design()
    res = mrmc.or_analysis(ratings, truth, covariance=method, modalities=["a", "b"], present=present)
    assert res["n_cases"] == 75 and res["n_cases_per_modality"] == {"a": 50, "b": 55}
    assert "partially paired" in res["design"]
    for i, name in enumerate(["a", "b"]):
        own = mrmc.or_analysis(ratings[i:i + 1][:, :, present[i]], truth[present[i]], covariance=method,
                               modalities=[name])
        for k in ("auc", "se", "df", "ci"):
            np.testing.assert_allclose(res["RRRC"]["single_modality"][name][k], own["RRRC"]["single_modality"][name][k],
                                       rtol=1e-12, atol=1e-15)
    # b's patches are easier to tell from real (larger shift): its AUC is higher, the difference negative
    (diff,) = res["RRRC"]["differences"]
    assert diff["comparison"] == "a - b" and diff["difference"] < 0 and diff["ci"][0] < diff["difference"] < diff["ci"][1]
    assert 0 <= res["RRRC"]["p"] <= 1 and res["RRRC"]["ddf_H"] > 0


def test_partially_paired_covariance_by_definition():
    """Cross-modality covariance comes from the shared (real) cases only: jackknife over the union
    of the two modalities' cases, a case outside a modality leaving its AUC unchanged; DeLong's
    negative-case term is 0 when the modalities share no negative case."""
    ratings, truth, present = _generator_design(n_real=8, n_per_generator=(6, 7), r=2)
    auc, cov = mrmc.partial_auc_covariance(ratings, truth, present, "jackknife")
    c = truth.size
    loo = np.empty((2, 2, c))
    for i in range(2):
        for j in range(2):
            for k in range(c):
                keep = present[i] & (np.arange(c) != k)
                loo[i, j, k] = auc_stats.auc_mann_whitney(ratings[i, j, keep], truth[keep])
    union = present[0] | present[1]
    u = union.sum()
    d0 = loo[0, 1, union] - loo[0, 1, union].mean()
    d1 = loo[1, 0, union] - loo[1, 0, union].mean()
    assert cov[1, 2] == pytest.approx((u - 1) / u * d0 @ d1, abs=1e-15)  # (modality 0, reader 1) x (1, 0)
    own = present[0]
    d = loo[0, 0, own] - loo[0, 0, own].mean()
    assert cov[0, 0] == pytest.approx((own.sum() - 1) / own.sum() * d @ d, abs=1e-15)
    _, cov_d = mrmc.partial_auc_covariance(ratings, truth, present, "delong")
    _, v10_0, _ = auc_stats.delong_components(ratings[0][:, present[0]], truth[present[0]])
    _, v10_1, _ = auc_stats.delong_components(ratings[1][:, present[1]], truth[present[1]])
    m = 8
    expected = np.cov(v10_0[1], v10_1[0], ddof=1)[0, 1] / m  # shared positives only
    assert cov_d[1, 2] == pytest.approx(expected, abs=1e-15)
    with pytest.raises(ValueError, match="modality 2 holds 8 positive and 1 negative"):
        bad = present.copy()
        bad[1, 15:] = False
        bad[1, 14] = True
        mrmc.partial_auc_covariance(ratings, truth, bad)
