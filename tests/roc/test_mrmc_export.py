"""Exports for iMRMC / RJafroc / MRMCaov: the Van Dyke et al. (1993) data
written through the exporters and read back give the same Obuchowski-Rockette result, and stage
05's exports hold what the analysis used."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_mrmc import vandyke

from mammo_lib import testing
from mammo_lib.fileio import json_safe
from mammo_lib.roc import analysis as roc
from mammo_lib.roc import mrmc, mrmc_export


def _same_or(a: dict, b: dict) -> None:
    """The whole OR-MRMC output, number for number (the data read back are bit-identical)."""
    assert json.dumps(json_safe(a), sort_keys=True) == json.dumps(json_safe(b), sort_keys=True)
    assert a["RRRC"]["F"] == b["RRRC"]["F"] and a["RRRC"]["ddf_H"] == b["RRRC"]["ddf_H"]


def test_vandyke_round_trip_through_imrmc_and_long_csv(tmp_path, roc_reference_dir):
    ratings, truth, _ = vandyke(roc_reference_dir)
    modalities, readers = ["1", "2"], [str(k) for k in range(1, 6)]
    cases = [str(k) for k in range(1, ratings.shape[2] + 1)]
    data = mrmc_export.MRMCData(ratings, truth, modalities, readers, cases)
    reference = mrmc.or_analysis(ratings, truth, modalities=modalities, readers=readers)
    path = mrmc_export.write_imrmc(tmp_path / "vandyke.imrmc", data, "Van Dyke Data File")
    lines = path.read_text().splitlines()
    assert lines[1:6] == ["N0:69", "N1:45", "NR:5", "NM:2", "BEGIN DATA:"]  # as RJafroc's RocData.imrmc
    assert lines[6] == "-1,1,truth,0" and len(lines) == 6 + 114 + 2 * 5 * 114
    for back in (mrmc_export.read_imrmc(path), mrmc_export.read_long_csv(
            mrmc_export.write_long_csv(tmp_path / "vandyke.csv", data))):
        np.testing.assert_array_equal(back.ratings, ratings)
        np.testing.assert_array_equal(back.truth, truth)
        assert (back.modalities, back.readers, back.cases) == (modalities, readers, cases)
        _same_or(mrmc.or_analysis(back.ratings, back.truth, modalities=back.modalities, readers=back.readers),
                 reference)
    long = pd.read_csv(tmp_path / "vandyke.csv")
    assert list(long.columns) == ["reader", "case", "modality", "truth", "rating"] and len(long) == 1140


def test_broken_files_are_refused_with_the_file_named(tmp_path):
    bad = tmp_path / "x.imrmc"
    bad.write_text("N0:1\nN1:1\nNR:1\nNM:1\n1,1,a,0.5\n")
    with pytest.raises(mrmc_export.ExportError, match="x.imrmc: no 'BEGIN DATA:'"):
        mrmc_export.read_imrmc(bad)
    bad.write_text("d\nN0:1\nN1:1\nNR:1\nNM:1\nBEGIN DATA:\n-1,1,truth,0\n-1,2,truth,1\n1,1,a,0.5\n")
    with pytest.raises(mrmc_export.ExportError, match="1 .* rating.* missing"):
        mrmc_export.read_imrmc(bad)
    data = mrmc_export.MRMCData(np.array([[[0.5, np.nan]]]), np.array([True, False]), ["a"], ["r"], ["1", "2"])
    with pytest.raises(mrmc_export.ExportError, match="not finite"):
        mrmc_export.write_imrmc(tmp_path / "y.imrmc", data)


def test_stage_05_exports_match_the_analysis(tmp_path):
    root = tmp_path / "reader_study"
    case_set_dir = testing.write_simulated_study(root, n_real=8, n_synthetic=8, seed=1, readers={
        "machine-a": ("machine", 1.0), "R01": ("human", 0.4), "R02": ("human", 0.2)})
    path = root / "ratings" / "R02.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:12]))
    analysis = roc.analyse_study(case_set_dir, root / "ratings", n_bootstrap=50, run_dir=tmp_path)
    paths, notes = mrmc_export.export_study(analysis, tmp_path)
    assert sorted(p.name for p in paths.values()) == ["case_ids.csv", "ratings.imrmc", "ratings_long.csv",
                                                      "reader_ids.csv"]
    assert any("4 case(s) not rated by every reader" in n for n in notes)
    back = mrmc_export.read_imrmc(paths["imrmc"])
    assert back.ratings.shape == (1, 3, 12)
    names = pd.read_csv(paths["reader_ids"], dtype=str)
    assert list(names["reader"]) == ["R01", "R02", "machine-a"]
    ours = analysis.mrmc["all readers"]
    theirs = mrmc.or_analysis(back.ratings, back.truth, modalities=["m"], readers=list(names["reader"]))
    assert theirs["auc"]["m"] == pytest.approx(ours["auc"]["all readers"])


def test_partially_paired_layout_round_trip_and_a_missing_rating(tmp_path):
    """Generators as modalities: real cases under every modality, each synthetic case under one;
    only read cells are written, and a reader missing a case of a modality is refused."""
    rng = np.random.default_rng(0)
    truth = np.r_[np.ones(6, bool), np.zeros(8, bool)]
    present = np.zeros((2, 14), bool)
    present[:, :6] = True
    present[0, 6:10] = present[1, 10:] = True
    ratings = np.where(present[:, None, :], rng.random((2, 3, 14)), np.nan)
    data = mrmc_export.MRMCData(ratings, truth, ["dcgan", "mine"], ["R1", "R2", "R3"],
                                [f"c{k}" for k in range(14)], present)
    imrmc = mrmc_export.write_imrmc(tmp_path / "g.imrmc", data)
    assert len(imrmc.read_text().splitlines()) == 6 + 14 + 3 * (10 + 10)
    long = mrmc_export.write_long_csv(tmp_path / "g.csv", data)
    for back in (mrmc_export.read_imrmc(imrmc), mrmc_export.read_long_csv(long)):
        np.testing.assert_array_equal(back.present, present)
        np.testing.assert_array_equal(np.isnan(back.ratings), np.isnan(ratings))
        np.testing.assert_allclose(back.ratings[~np.isnan(ratings)], ratings[~np.isnan(ratings)], rtol=1e-11)
    rows = pd.read_csv(long)
    rows[~((rows["reader"] == "R2") & (rows["case"] == "c7"))].to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(mrmc_export.ExportError, match=r"gap.csv: 1 \(modality, reader, case\) rating\(s\) are missing"):
        mrmc_export.read_long_csv(tmp_path / "gap.csv")
