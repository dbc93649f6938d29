"""Stage 05 statistics (mammo_lib.roc.analysis): known answers from published examples, invariants, and
the validation of ratings files against a case set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from mammo_lib import auc_stats, testing
from mammo_lib.rating_scale import OPTION_LABEL, OPTION_VALUE
from mammo_lib.reader_study import files as study_files
from mammo_lib.roc import analysis as roc
from mammo_lib.roc import figures as roc_figures
from mammo_lib.roc import reader_stats

# ------------------------------------------------------------------------------ helpers

def hanley_mcneil_data(roc_reference_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_csv(roc_reference_dir / "hanley_mcneil_1982.csv")
    scores = np.concatenate([np.repeat(table["rating"], table["abnormal_cases"]),
                             np.repeat(table["rating"], table["normal_cases"])]).astype(float)
    truth = np.r_[np.ones(table["abnormal_cases"].sum(), bool), np.zeros(table["normal_cases"].sum(), bool)]
    return scores, truth


def psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def brute_force_delong(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) by the definition: structural components from all m*n pairs."""
    scores = np.atleast_2d(scores)
    k = scores.shape[0]
    pos, neg = np.flatnonzero(truth), np.flatnonzero(~truth)
    m, n = len(pos), len(neg)
    v10 = np.array([[np.mean([psi(s[i], s[j]) for j in neg]) for i in pos] for s in scores])
    v01 = np.array([[np.mean([psi(s[i], s[j]) for i in pos]) for j in neg] for s in scores])
    auc = v10.mean(axis=1)
    s10 = np.array([[np.sum((v10[a] - auc[a]) * (v10[b] - auc[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - auc[a]) * (v01[b] - auc[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return auc, s10 / m + s01 / n


def make_study(tmp_path: Path, **kw) -> Path:
    kw.setdefault("readers", {"machine-a": ("machine", 1.0), "machine-b": ("machine", 0.4)})
    return testing.write_simulated_study(tmp_path / "reader_study", **kw)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


# ------------------------------------------------------------------------------ known answers

def test_hanley_mcneil_1982_auc_and_both_standard_errors(roc_reference_dir):
    """Hanley & McNeil (1982) Table 1 CT data: published AUC 0.893 with SE 0.032 by their
    formula; the DeLong SE of the same area is about 0.031 (SOURCE.md). Tolerance: half a unit
    in the last published digit."""
    scores, truth = hanley_mcneil_data(roc_reference_dir)
    assert truth.sum() == 51 and (~truth).sum() == 58
    auc, cov = auc_stats.delong_covariance(scores, truth)
    assert auc[0] == pytest.approx(0.893, abs=5e-4)
    assert auc_stats.hanley_mcneil_se(auc[0], 51, 58) == pytest.approx(0.032, abs=5e-4)
    assert math.sqrt(cov[0, 0]) == pytest.approx(0.031, abs=5e-4)
    # the same area from two independent libraries
    assert auc[0] == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    u = stats.mannwhitneyu(scores[truth], scores[~truth]).statistic
    assert auc[0] == pytest.approx(u / (51 * 58), abs=1e-12)


def test_clopper_pearson_and_binomial_test_textbook_values():
    """Exact (Clopper-Pearson) intervals published by Newcombe (1998), Stat. Med. 17:857-872,
    Table I, method 5: 15/148 -> 0.0578-0.1617, 0/20 -> 0-0.1684, 1/29 -> 0.0009-0.1776; and two
    closed forms: for 0 of n the upper limit is 1 - 0.025^(1/n), and the exact two-sided p of 7
    of 10 against 0.5 is 2 * (120 + 45 + 10 + 1)/1024 = 0.34375."""
    for k, n, low, high in ((15, 148, 0.0578, 0.1617), (0, 20, 0.0, 0.1684), (1, 29, 0.0009, 0.1776)):
        res = auc_stats.accuracy_test(k, n)
        assert res["ci_low"] == pytest.approx(low, abs=5e-5)
        assert res["ci_high"] == pytest.approx(high, abs=5e-5)
    assert auc_stats.accuracy_test(0, 10)["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    assert auc_stats.accuracy_test(7, 10)["p_value_vs_0.5"] == pytest.approx(0.34375, abs=1e-12)


def test_kappa_cohen_1968_table_1_and_fleiss_cohen_identity():
    """Cohen (1968), Psychol. Bull. 70:213-220, Table 1: two judges, 200 cases, three categories,
    observed proportions (.44 .07 .09 / .05 .20 .05 / .01 .03 .06); the paper's unweighted kappa
    is .492. Quadratic-weighted kappa equals 2 s_xy / (s_x^2 + s_y^2 + (xbar - ybar)^2) with
    population moments (Fleiss & Cohen 1973, Educ. Psychol. Meas. 33:613-619)."""
    counts = np.array([[88, 14, 18], [10, 40, 10], [2, 6, 12]])
    a = np.concatenate([np.full(counts[i, j], i + 1) for i in range(3) for j in range(3)])
    b = np.concatenate([np.full(counts[i, j], j + 1) for i in range(3) for j in range(3)])
    assert cohen_kappa_score(a, b) == pytest.approx(0.492, abs=5e-4)
    table = auc_stats.pairwise_kappa(pd.DataFrame({"A": a, "B": b}))
    assert table.loc[0, "kappa_unweighted"] == pytest.approx(0.492, abs=5e-4)

    rng = np.random.default_rng(3)
    x = rng.integers(1, 7, 80)
    y = np.clip(x + rng.integers(-2, 3, 80), 1, 6)
    identity = 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    row = auc_stats.pairwise_kappa(pd.DataFrame({"r1": x, "r2": y})).iloc[0]
    assert row["kappa_quadratic"] == pytest.approx(identity, abs=1e-12)
    # linear weights from the definition: 1 - sum w*obs / sum w*expected, w = |i - j|
    obs = pd.crosstab(x, y).reindex(index=range(1, 7), columns=range(1, 7), fill_value=0).to_numpy() / 80
    exp = np.outer(obs.sum(1), obs.sum(0))
    w = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    assert row["kappa_linear"] == pytest.approx(1 - (w * obs).sum() / (w * exp).sum(), abs=1e-12)


# ------------------------------------------------------------------------------ invariants

def test_perfect_separation_gives_auc_one_and_zero_delong_variance():
    values = np.r_[np.full(10, 0.95), np.full(5, 0.77), np.full(12, 0.23), np.full(3, 0.05)]
    truth = np.r_[np.ones(15, bool), np.zeros(15, bool)]
    auc, cov = auc_stats.delong_covariance(values, truth)
    assert auc[0] == 1.0 and cov[0, 0] == 0.0
    s = reader_stats.reader_statistics(values, truth, n_bootstrap=200)
    assert s["auc"] == 1.0 and s["accuracy"]["estimate"] == 1.0
    assert s["auc_bootstrap"]["low"] == pytest.approx(1.0) and s["auc_bootstrap"]["high"] == pytest.approx(1.0)


def test_swapping_truth_gives_one_minus_auc():
    rng = np.random.default_rng(1)
    values = rng.choice(list(OPTION_VALUE.values()), 60)
    truth = rng.random(60) < 0.5
    auc, cov = auc_stats.delong_covariance(values, truth)
    auc_swapped, cov_swapped = auc_stats.delong_covariance(values, ~truth)
    assert auc_swapped[0] == pytest.approx(1 - auc[0], abs=1e-12)
    assert cov_swapped[0, 0] == pytest.approx(cov[0, 0], rel=1e-12)


def test_fast_delong_matches_brute_force_on_small_random_data_with_ties():
    rng = np.random.default_rng(7)
    for trial in range(5):
        n_cases = int(rng.integers(8, 25))
        truth = np.zeros(n_cases, bool)
        truth[rng.choice(n_cases, int(rng.integers(2, n_cases - 2)), replace=False)] = True
        scores = rng.integers(1, 7, size=(3, n_cases)).astype(float)  # three readers, many ties
        scores[1] += truth * rng.normal(1, 0.5, n_cases).round(1)
        auc, cov = auc_stats.delong_covariance(scores, truth)
        auc_bf, cov_bf = brute_force_delong(scores, truth)
        np.testing.assert_allclose(auc, auc_bf, atol=1e-12, err_msg=f"trial {trial}")
        np.testing.assert_allclose(cov, cov_bf, atol=1e-12, err_msg=f"trial {trial}")


def test_fast_jackknife_matches_leaving_each_case_out():
    rng = np.random.default_rng(11)
    truth = np.r_[np.ones(7, bool), np.zeros(9, bool)]
    scores = rng.integers(1, 6, size=(2, 16)).astype(float)
    jk = auc_stats.jackknife_aucs(scores, truth)
    for k in range(16):
        keep = np.arange(16) != k
        for r in range(2):
            assert jk[r, k] == pytest.approx(roc_auc_score(truth[keep], scores[r, keep]), abs=1e-12)


def test_bootstrap_interval_covers_the_delong_centre_and_agrees_in_width():
    rng = np.random.default_rng(5)
    truth = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    latent = rng.normal(size=120) + 0.8 * truth
    values = np.array([OPTION_VALUE[o] for o in 6 - np.searchsorted([-0.9, -0.3, 0.3, 0.9, 1.5], latent)])
    s = reader_stats.reader_statistics(values, truth, n_bootstrap=1000, seed=0)
    boot, dl = s["auc_bootstrap"], s["auc_delong"]
    assert boot["low"] < s["auc"] < boot["high"]
    assert boot["low"] < (dl["ci_low"] + dl["ci_high"]) / 2 < boot["high"]
    assert boot["se"] == pytest.approx(dl["se"], rel=0.2)
    assert "stratified" in boot["method"] and "BCa" in boot["method"]
    # same seed, same interval
    assert auc_stats.bootstrap_auc_ci(values, truth, 300, seed=4) == auc_stats.bootstrap_auc_ci(values, truth, 300, seed=4)


def test_reader_statistics_counts_roc_and_binormal():
    rng = np.random.default_rng(2)
    truth = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    latent = rng.normal(size=800) + 1.0 * truth  # binormal, a = 1, b = 1: AUC = Phi(1/sqrt 2) = 0.760
    options = 6 - np.searchsorted([-0.9, -0.3, 0.3, 0.9, 1.5], latent)
    values = np.array([OPTION_VALUE[o] for o in options])
    s = reader_stats.reader_statistics(values, truth, options=options, n_bootstrap=100)
    cm = s["confusion_matrix"]
    assert cm["tp"] + cm["fn"] == 400 and cm["tn"] + cm["fp"] == 400
    assert cm["counts"] == [[cm["tp"], cm["fn"]], [cm["fp"], cm["tn"]]]
    assert s["sensitivity"]["estimate"] == cm["tp"] / 400
    assert s["specificity"]["estimate"] == cm["tn"] / 400
    assert s["accuracy"]["estimate"] == (cm["tp"] + cm["tn"]) / 800
    # the empirical curve passes through the 0.5 operating point; trapezoid area = AUC
    fpr, tpr = np.array(s["roc"]["fpr"]), np.array(s["roc"]["tpr"])
    assert any(np.isclose(fpr, cm["fp"] / 400) & np.isclose(tpr, cm["tp"] / 400))
    assert np.trapezoid(tpr, fpr) == pytest.approx(s["auc"], abs=1e-12)
    assert len(fpr) == 7  # six options -> five cuts + the two ends
    fit = s["binormal"]
    assert fit["a"] == pytest.approx(1.0, abs=0.2) and fit["b"] == pytest.approx(1.0, abs=0.2)
    assert fit["auc"] == pytest.approx(stats.norm.cdf(1 / math.sqrt(2)), abs=0.03)
    assert fit["auc"] == pytest.approx(s["auc"], abs=0.03)


# ------------------------------------------------------------------------------ loading and validation

def test_load_valid_study_revisions_and_truncated_last_line(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=10, n_synthetic=10)
    ratings_dir = tmp_path / "reader_study" / "ratings"
    path = ratings_dir / "machine-a.jsonl"
    records = read_lines(path)
    first = records[0]
    new_option = 1 if first["option"] != 1 else 6
    revised = dict(first, option=new_option, value=OPTION_VALUE[new_option], label=OPTION_LABEL[new_option],
                   event="revise")
    # a revision, then a line cut off by a power cut
    write_lines(path, records + [revised], tail='{"reader": "machine-a", "reader_kind": "mach')
    case_set = study_files.load_case_set(case_set_dir)
    load = study_files.load_ratings(study_files.ratings_files(ratings_dir), case_set)
    assert load.revised == {"machine-a": 1, "machine-b": 0}
    row = load.ratings[(load.ratings.reader == "machine-a") & (load.ratings.case_id == first["case_id"])]
    assert len(row) == 1 and int(row["option"].iloc[0]) == new_option  # the last answer counts
    assert len(load.ratings) == 40
    assert any("incomplete last line skipped" in n and "machine-a.jsonl:22" in n for n in load.notes)
    assert any("answered more than once" in n for n in load.notes)
    assert set(load.ratings["truth"]) == {"real", "synthetic"}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: dict(r, case_id="c9999"), "unknown case id 'c9999'"),
    (lambda r: dict(r, case_set_id="cs-other"), "rating for case set 'cs-other'"),
    (lambda r: dict(r, option=7), "option 7 is not on the six-option scale"),
    (lambda r: dict(r, option=0.5), "option 0.5 is not on the six-option scale"),
    (lambda r: dict(r, value=0.5), "does not match option"),
    (lambda r: dict(r, label="very real"), "label 'very real' does not match option"),
    (lambda r: dict(r, reader_kind="robot"), "reader_kind 'robot'"),
    (lambda r: {k: v for k, v in r.items() if k != "value"}, "missing field(s) ['value']"),
])
def test_bad_rating_lines_are_reported_with_file_and_line(tmp_path, mutate, message):
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5)
    path = tmp_path / "reader_study" / "ratings" / "machine-b.jsonl"
    records = read_lines(path)
    records[3] = mutate(records[3])
    write_lines(path, records)
    with pytest.raises(study_files.RatingsError) as err:
        study_files.load_ratings(study_files.ratings_files(path.parent), study_files.load_case_set(case_set_dir))
    assert message in str(err.value)
    assert f"{path}:4" in str(err.value)


def test_fragment_followed_by_later_answers_is_skipped_and_reported(tmp_path):
    """After a power cut the reader-study app starts its next answer on a new line, so a torn
    write can sit between complete lines: skipped and reported; the case was asked again."""
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5)
    path = tmp_path / "reader_study" / "ratings" / "machine-a.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(3, lines[2][:20])
    path.write_text("\n".join(lines) + "\n")
    load = study_files.load_ratings([path], study_files.load_case_set(case_set_dir))
    assert any("machine-a.jsonl:4: damaged line skipped" in n for n in load.notes)
    assert len(load.ratings) == 10 and load.revised == {"machine-a": 0}


def test_two_files_claiming_one_reader_id(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5)
    ratings_dir = tmp_path / "reader_study" / "ratings"
    records = [dict(r, reader="machine-a") for r in read_lines(ratings_dir / "machine-b.jsonl")]
    write_lines(ratings_dir / "machine-b.jsonl", records)
    with pytest.raises(study_files.RatingsError, match="reader id 'machine-a' appears in two files"):
        study_files.load_ratings(study_files.ratings_files(ratings_dir), study_files.load_case_set(case_set_dir))


def test_missing_cases_are_reported_and_the_rest_analysed(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=8, n_synthetic=8)
    ratings_dir = tmp_path / "reader_study" / "ratings"
    path = ratings_dir / "machine-b.jsonl"
    write_lines(path, read_lines(path)[:12])  # a reader who stopped after 12 of 16 cases
    analysis = roc.analyse_study(case_set_dir, ratings_dir, n_bootstrap=100)
    assert any("has not rated 4 of 16 cases" in n for n in analysis.notes)
    assert analysis.per_reader["machine-b"]["n_cases"] == 12
    assert analysis.mrmc["all readers"]["n_cases"] == 12
    assert any("uses the 12 of 16 cases rated by every reader" in n for n in analysis.notes)


def test_case_set_and_key_must_match(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5)
    key_path = tmp_path / "reader_study" / "key" / "key.csv"
    key = pd.read_csv(key_path, dtype={"case_id": str})
    key.iloc[1:].to_csv(key_path, index=False)
    with pytest.raises(study_files.RatingsError, match="no truth for 1 case"):
        study_files.load_case_set(case_set_dir)
    with pytest.raises(study_files.RatingsError, match="study.json does not exist"):
        study_files.load_case_set(tmp_path / "nowhere")


def test_single_reader_skips_agreement_and_mrmc_with_a_note(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=10, n_synthetic=10,
                              readers={"R01": ("human", 0.5), "machine-a": ("machine", 1.0)})
    analysis = roc.analyse_study(case_set_dir, tmp_path / "reader_study" / "ratings", n_bootstrap=100,
                                 include_machine=False)
    assert list(analysis.per_reader) == ["R01"]
    assert analysis.kappa is None
    assert analysis.mrmc == {"skipped": "fewer than 2 readers"}
    assert any("need at least 2 readers" in n for n in analysis.notes)
    assert any("machine readers left out" in n for n in analysis.notes)
    metrics = analysis.to_metrics()
    assert metrics["agreement"] is None and metrics["readers"]["R01"]["positive_class"] == "real"
    json.dumps(metrics, allow_nan=False)


def test_machine_only_study_without_machines_is_a_clear_error(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5)
    with pytest.raises(study_files.RatingsError, match="only machine readers .* include_machine is False"):
        roc.analyse_study(case_set_dir, tmp_path / "reader_study" / "ratings", include_machine=False)
    with pytest.raises(study_files.RatingsError, match="nothing-here-yet does not exist"):
        roc.analyse_study(case_set_dir, tmp_path / "nothing-here-yet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(study_files.RatingsError, match="no \\*.jsonl ratings files"):
        roc.analyse_study(case_set_dir, tmp_path / "empty")


def test_full_analysis_metrics_tables_and_figures(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=15, n_synthetic=15, readers={
        "R01": ("human", 0.3), "R02": ("human", 0.0), "machine-a": ("machine", 1.5), "machine-b": ("machine", 0.8)})
    analysis = roc.analyse_study(case_set_dir, tmp_path / "reader_study" / "ratings", n_bootstrap=100, seed=1)
    assert set(analysis.mrmc) == {"all readers", "human readers", "machine readers"}
    assert len(analysis.kappa) == 6
    table = roc.paper_comparison_table(analysis)
    assert list(table["AUC"][:2]) == [0.56, 0.45] and list(table["accuracy"][:2]) == [0.48, 0.61]
    assert (table["source"][2:] == "this run (different readers, different data)").all()
    assert len(roc.reader_table(analysis)) == 4
    path = roc.write_metrics(analysis, tmp_path / "run")
    metrics = json.loads(path.read_text())
    assert metrics["positive_class"] == "real" and metrics["n_cases"] == 30
    assert metrics["mrmc"]["all readers"]["RRRC"]["single_modality"]["all readers"]["df"] > 0
    figures = roc_figures.save_all_figures(analysis, tmp_path / "run")
    assert {p.name for p in figures.values()} == {"roc_curves.png", "ratings_by_truth.png",
                                                   "confusion_matrices.png", "auc_forest.png"}
    assert all(p.stat().st_size > 5000 for p in figures.values())


def test_option_true_and_nan_values_are_refused_with_file_and_line(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5)
    path = tmp_path / "reader_study" / "ratings" / "machine-b.jsonl"
    records = read_lines(path)
    records[1] = dict(records[1], option=True, value=OPTION_VALUE[1], label=OPTION_LABEL[1])
    records[2] = dict(records[2], value=float("nan"))
    write_lines(path, records)
    with pytest.raises(study_files.RatingsError) as err:
        study_files.load_ratings(study_files.ratings_files(path.parent), study_files.load_case_set(case_set_dir))
    assert f"{path}:2: option True is not on the six-option scale" in str(err.value)
    assert f"{path}:3: value nan does not match option" in str(err.value)


def test_interim_reader_with_one_case_per_class_is_analysed_with_undefined_statistics(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=10, n_synthetic=10, readers={
        "machine-a": ("machine", 1.0), "machine-b": ("machine", 0.5), "R01": ("human", 0.3)})
    ratings_dir = tmp_path / "reader_study" / "ratings"
    key = pd.read_csv(tmp_path / "reader_study" / "key" / "key.csv")
    truth = dict(zip(key["case_id"], key["truth"], strict=True))
    records = read_lines(ratings_dir / "R01.jsonl")
    first = {t: next(r for r in records if truth[r["case_id"]] == t) for t in ("real", "synthetic")}
    write_lines(ratings_dir / "R01.jsonl", [first["real"], first["synthetic"]])
    analysis = roc.analyse_study(case_set_dir, ratings_dir, n_bootstrap=50, run_dir=tmp_path)
    r01 = analysis.per_reader["R01"]
    assert r01["n_cases"] == 2 and math.isnan(r01["auc_delong"]["se"])
    assert math.isnan(r01["auc_bootstrap"]["low"])
    assert any("reader 'R01': 1 real and 1 synthetic" in n and "undefined" in n for n in analysis.notes)
    assert analysis.per_reader["machine-a"]["auc_delong"]["se"] > 0
    assert any("has not rated 18 of 20" in n and "reader_study/ratings/R01.jsonl" in n
               and str(tmp_path) not in n for n in analysis.notes)
    metrics = json.loads(roc.write_metrics(analysis, tmp_path).read_text())
    assert metrics["readers"]["R01"]["auc_delong"]["se"] is None and metrics["human_readers"] == 1
    assert metrics["ratings_files"]["R01"] == "reader_study/ratings/R01.jsonl"
    assert str(tmp_path) not in json.dumps(metrics)
    assert len(roc_figures.save_all_figures(analysis, tmp_path)) == 4


def test_machine_only_study_says_so_plainly(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=6, n_synthetic=6)
    analysis = roc.analyse_study(case_set_dir, tmp_path / "reader_study" / "ratings", n_bootstrap=50)
    assert roc.who_rated(analysis).startswith("**No human reader has rated this case set yet.**")
    assert any("no human reader has rated" in n for n in analysis.notes)
    assert analysis.to_metrics()["human_readers"] == 0


def test_reading_time_and_last_activity_per_reader(tmp_path):
    case_set_dir = make_study(tmp_path, n_real=5, n_synthetic=5, readers={
        "R01": ("human", 0.5), "machine-a": ("machine", 1.0)})
    analysis = roc.analyse_study(case_set_dir, tmp_path / "reader_study" / "ratings", n_bootstrap=50)
    assert roc.reading_time_summary(analysis.load) == {"R01": {"n": 10, "median_s": 2.0, "total_s": 20.0}}
    overview = roc.ratings_overview(analysis, tmp_path).set_index("reader")
    assert overview.loc["R01", "last activity"] == "2026-11-24T10:00:02+00:00"
    assert overview.loc["R01", "median s per case"] == 2.0 and overview.loc["R01", "rated"] == 10
    assert analysis.to_metrics()["reading_time"]["R01"]["total_s"] == 20.0
