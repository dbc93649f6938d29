"""Input validation and undefined cases of mammo_lib.auc_stats: NaN scores and
non-binary truth are refused with the count and the positions; one case in a class gives an AUC
with an undefined (NaN) variance instead of a finite one; the known answers are in test_roc.py and
test_mrmc.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mammo_lib import auc_stats
from mammo_lib.roc import mrmc, reader_stats


def test_nan_scores_are_refused_with_count_and_position():
    scores = np.array([0.9, np.nan, 0.2, 0.4, np.inf])
    truth = np.array([1, 1, 0, 0, 1])
    for fn in (auc_stats.auc_mann_whitney, auc_stats.delong_covariance, auc_stats.jackknife_aucs,
               auc_stats.bootstrap_auc_ci, reader_stats.reader_statistics):
        with pytest.raises(ValueError, match=r"2 value\(s\), at position\(s\) \[1, 4\]"):
            fn(scores, truth)
    with pytest.raises(ValueError, match="NaN or infinite"):
        mrmc.or_analysis(np.stack([[scores, scores]]), truth)


@pytest.mark.parametrize("truth, message", [
    (np.array([1.0, np.nan, 0.0, 0.0]), r"numeric truth must be 0 or 1.*1 value\(s\), at position\(s\) \[1\]"),
    (np.array([1, 2, 0, 0]), r"numeric truth must be 0 or 1.*at position\(s\) \[1\]"),
    (np.array(["real", "fake", "synthetic", "Real"]), r"truth must be one of.*2 value\(s\), at position\(s\) \[1, 3\]"),
])
def test_non_binary_truth_is_refused(truth, message):
    with pytest.raises(ValueError, match=message):
        auc_stats.delong_covariance(np.array([0.9, 0.8, 0.1, 0.3]), truth)


def test_one_case_in_a_class_gives_undefined_variance_not_a_finite_one():
    scores, truth = np.array([0.9, 0.1, 0.3, 0.2]), np.array([True, False, False, False])
    auc, cov = auc_stats.delong_covariance(scores, truth)
    assert auc[0] == 1.0 and np.isnan(cov).all()
    assert math.isnan(auc_stats.hanley_mcneil_se(1.0, 1, 3))
    boot = auc_stats.bootstrap_auc_ci(scores, truth, 50)
    assert math.isnan(boot["low"]) and "undefined" in boot["method"]
    s = reader_stats.reader_statistics(scores, truth, options=[1, 6, 5, 6], n_bootstrap=50)
    dl = s["auc_delong"]
    assert s["auc"] == 1.0 and math.isnan(dl["se"]) and math.isnan(dl["p_value_vs_0.5"])
    assert "needs 2 of each" in dl["undefined"] and "binormal" not in s


def test_perfect_and_reversed_separation_are_flagged_degenerate():
    truth = np.r_[np.ones(6, bool), np.zeros(6, bool)]
    perfect = np.r_[np.full(6, 0.95), np.full(6, 0.05)]
    for values, auc in ((perfect, 1.0), (perfect[::-1], 0.0)):
        s = reader_stats.reader_statistics(values, truth, n_bootstrap=50)
        assert s["auc"] == auc and s["auc_delong"]["degenerate"]
        assert "separation" in s["auc_delong"]["note"]
    fair = np.r_[0.95, 0.05, 0.77, 0.23, 0.59, 0.41, 0.41, 0.59, 0.23, 0.77, 0.05, 0.95]
    assert not reader_stats.reader_statistics(fair, truth, n_bootstrap=50)["auc_delong"]["degenerate"]
    single = mrmc.or_analysis(np.stack([perfect, perfect])[None], truth)["RRRC"]["single_modality"]["modality 1"]
    assert single["degenerate"] and "degenerate" in single["note"]
