"""Stage 05 across generators on simulated studies: per reader x generator statistics,
the MRMC with the generator as the modality (machine observers' per-generator copies as one
reader), metrics.json's per-generator sections, figures and exports; one generator keeps the
output of a one-modality study."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mammo_lib import testing
from mammo_lib.roc import analysis as roc
from mammo_lib.roc import by_generator as rg
from mammo_lib.roc import figures as roc_figures
from mammo_lib.roc import mrmc, mrmc_export

READERS = {"R01": ("human", 1.0), "R02": ("human", 0.8), "R03": ("human", 1.2),
           "machine-pixels-easy": ("machine", 1.0), "machine-pixels-hard": ("machine", 1.0),
           "machine-spectrum-easy": ("machine", 0.5), "machine-spectrum-hard": ("machine", 0.5)}


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "reader_study"
    case_set_dir = testing.write_simulated_study(root, n_real=60, n_synthetic=60, seed=7, readers=READERS,
                                                 generators={"hard": -0.6, "easy": 1.2})
    analysis = roc.analyse_study(case_set_dir, root / "ratings", n_bootstrap=100, seed=2, run_dir=tmp_path)
    return tmp_path, analysis


def test_per_generator_statistics_use_the_real_cases_and_that_generators_cases(study):
    run_dir, analysis = study
    across = analysis.across_generators
    assert analysis.generators == ["hard", "easy"] and across.n_synthetic == {"hard": 30, "easy": 30}
    assert set(across.per_reader["easy"]) == {"R01", "R02", "R03", "machine-pixels-easy", "machine-spectrum-easy"}
    s = across.per_reader["easy"]["R01"]
    assert (s["n_real"], s["n_synthetic"]) == (60, 30) and s["mrmc_reader"] == "R01" and s["trained_on"] is None
    assert across.per_reader["hard"]["machine-pixels-hard"]["mrmc_reader"] == "machine-pixels"
    # the same numbers as reader_statistics on the subset by hand
    df = analysis.load.ratings
    gen = analysis.case_set.cases.set_index("case_id")["generator"]
    sub = df[(df["reader"] == "R01") & df["case_id"].map(gen).isin(["", "easy"])]
    from mammo_lib.auc_stats import auc_mann_whitney
    assert s["auc"] == pytest.approx(auc_mann_whitney(sub["value"].to_numpy(), sub["truth"].to_numpy()))
    # the easy generator (larger shift) is told from real better by every human reader
    for r in ("R01", "R02", "R03"):
        assert across.per_reader["easy"][r]["auc"] > across.per_reader["hard"][r]["auc"]
    table = rg.generator_reader_table(across)
    assert len(table) == 10 and {"specificity (this generator)", "AUC 95% CI (DeLong)"} <= set(table.columns)


def test_mrmc_with_the_generator_as_modality(study):
    _, analysis = study
    res = analysis.across_generators.mrmc["all readers"]
    assert res["modalities"] == ["hard", "easy"]
    assert res["readers"] == ["R01", "R02", "R03", "machine-pixels", "machine-spectrum"]
    assert res["n_cases"] == 120 and res["n_cases_per_modality"] == {"hard": 90, "easy": 90}
    (diff,) = res["RRRC"]["differences"]
    assert diff["comparison"] == "hard - easy" and diff["difference"] < 0 and diff["p"] < 0.05
    assert res["RRRC"]["p"] == pytest.approx(diff["p"], rel=1e-9)  # two modalities: F = t^2
    assert set(analysis.across_generators.mrmc) == {"all readers", "human readers", "machine readers"}
    # the machine observer "machine-pixels" reads modality g with its copy trained against g
    ratings = analysis.load.ratings
    gen = analysis.case_set.cases.set_index("case_id")["generator"]
    copy = ratings[(ratings["reader"] == "machine-pixels-hard") & ratings["case_id"].map(gen).isin(["", "hard"])]
    from mammo_lib.auc_stats import auc_mann_whitney
    assert res["auc"]["hard"]["machine-pixels"] == pytest.approx(auc_mann_whitney(copy["value"].to_numpy(),
                                                                                  copy["truth"].to_numpy()))
    diffs = rg.generator_difference_table(analysis.across_generators)
    assert list(diffs["comparison"].unique()) == ["hard - easy"] and (diffs["AUC difference"] < 0).all()
    assert len(rg.generator_mrmc_table(analysis.across_generators)) == 6
    assert "compares 2 generators: **hard** (30 synthetic cases), **easy** (30 synthetic cases)" in \
        rg.generators_text(analysis.across_generators, analysis.generators)


def test_metrics_figures_and_exports(study):
    run_dir, analysis = study
    metrics = json.loads(roc.write_metrics(analysis, run_dir).read_text())
    assert metrics["generators"] == ["hard", "easy"] and metrics["n_synthetic_by_generator"] == {"hard": 30, "easy": 30}
    assert metrics["by_generator"]["easy"]["readers"]["R02"]["auc"] == analysis.across_generators.per_reader["easy"]["R02"]["auc"]
    assert metrics["mrmc_generators"]["all readers"]["RRRC"]["differences"][0]["comparison"] == "hard - easy"
    assert set(metrics["readers"]) == set(READERS)  # every ratings file keeps its overall statistics
    figures = roc_figures.save_all_figures(analysis, run_dir)
    assert {"auc_forest", "generator_differences", "ratings_by_truth"} <= set(figures)
    assert roc_figures.save_agreement_figure(analysis, run_dir).stat().st_size > 5000
    by_truth = roc_figures.ratings_by_truth_table(analysis)
    assert set(by_truth["truth"]) == {"real", "synthetic: hard", "synthetic: easy"}
    assert by_truth.groupby("reader")["cases"].sum().eq(120).all()
    paths, notes = mrmc_export.export_study(analysis, run_dir)
    assert not notes
    for back in (mrmc_export.read_long_csv(paths["long_csv"]), mrmc_export.read_imrmc(paths["imrmc"])):
        assert back.modalities == ["hard", "easy"] and back.present.sum() == 180
        again = mrmc.or_analysis(back.ratings, back.truth, modalities=back.modalities, readers=back.readers,
                                 present=back.present)
        np.testing.assert_allclose(again["RRRC"]["F"], analysis.across_generators.mrmc["all readers"]["RRRC"]["F"],
                                   rtol=1e-12)


def test_one_generator_keeps_the_one_modality_output(tmp_path):
    root = tmp_path / "reader_study"
    case_set_dir = testing.write_simulated_study(root, n_real=20, n_synthetic=20, seed=3)
    analysis = roc.analyse_study(case_set_dir, root / "ratings", n_bootstrap=50, run_dir=tmp_path)
    assert analysis.across_generators is None and analysis.generators == ["dcgan"]
    metrics = analysis.to_metrics(tmp_path)
    assert metrics["by_generator"] is None and metrics["mrmc_generators"] is None
    assert metrics["n_synthetic_by_generator"] == {"dcgan": 20}
    assert "design" not in metrics["mrmc"]["all readers"]
    assert "generator_differences" not in roc_figures.save_all_figures(analysis, tmp_path)
    assert "from **dcgan**" in rg.generators_text(None, analysis.generators)


def test_interim_ratings_leave_a_generator_out_with_a_note(tmp_path):
    root = tmp_path / "reader_study"
    case_set_dir = testing.write_simulated_study(root, n_real=10, n_synthetic=10, seed=1, generators={"a": 0.0, "b": 1.0},
                                                 readers={"R01": ("human", 1.0), "R02": ("human", 0.5)})
    import pandas as pd

    key = pd.read_csv(root / "key" / "key.csv", keep_default_na=False)
    b_cases = set(key.loc[key["generator"] == "b", "case_id"])
    path = root / "ratings" / "R02.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                            if json.loads(line)["case_id"] not in b_cases or json.loads(line)["case_id"] == min(b_cases)))
    analysis = roc.analyse_study(case_set_dir, root / "ratings", n_bootstrap=50, run_dir=tmp_path)
    across = analysis.across_generators
    assert "R02" in across.per_reader["b"] and across.per_reader["b"]["R02"]["n_synthetic"] == 1
    assert "skipped" in across.mrmc["all readers"]
    assert any("not rated by every reader" in n for n in analysis.notes)
    paths, notes = mrmc_export.export_study(analysis, tmp_path)
    assert paths == {} and any("exports skipped" in n for n in notes)
