"""Benchmark of the stage-05 AUC variance code: the O(N log N) midrank DeLong (Sun & Xu 2014)
and the O(N log N) exact jackknife of mammo_lib.roc.analysis against the textbook references measured in
the same run: DeLong from the full m x n pair matrix (O(m n), vectorised numpy) and the jackknife
by recomputing the AUC with each case left out (O(N^2 log N)).

    .venv/bin/python benchmarks/bench_roc.py            # N up to 8000
    .venv/bin/python benchmarks/bench_roc.py --quick    # N up to 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mammo_lib import auc_stats


def delong_pair_matrix(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    x, y = scores[truth], scores[~truth]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(v10.mean()), float(v10.var(ddof=1) / len(x) + v01.var(ddof=1) / len(y))


def jackknife_by_refitting(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    keep = np.ones(len(scores), bool)
    out = np.empty(len(scores))
    for k in range(len(scores)):
        keep[k] = False
        out[k] = auc_stats.auc_mann_whitney(scores[keep], truth[keep])
        keep[k] = True
    return out


def best_of(fn, *args, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    sizes = (150, 1000) if args.quick else (150, 1000, 4000, 8000)
    rng = np.random.default_rng(0)
    print(f"{'N':>6} {'DeLong fast [ms]':>17} {'pair matrix [ms]':>17} {'ratio':>7} "
          f"{'jackknife fast [ms]':>20} {'refit loop [ms]':>16} {'ratio':>7}")
    for n in sizes:
        truth = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
        scores = rng.choice([0.95, 0.77, 0.59, 0.41, 0.23, 0.05], n) + 0.0
        auc_fast, cov = auc_stats.delong_covariance(scores, truth)
        auc_ref, var_ref = delong_pair_matrix(scores, truth)
        assert abs(auc_fast[0] - auc_ref) < 1e-12 and abs(cov[0, 0] - var_ref) < 1e-12
        t_fast = best_of(auc_stats.delong_covariance, scores, truth)
        t_ref = best_of(delong_pair_matrix, scores, truth)
        jk_n = min(n, 1000)  # the refit loop is quadratic: time it on at most 1000 cases
        jk_scores, jk_truth = scores[:jk_n], truth[:jk_n]
        np.testing.assert_allclose(auc_stats.jackknife_aucs(jk_scores, jk_truth)[0],
                                   jackknife_by_refitting(jk_scores, jk_truth), atol=1e-12)
        t_jk = best_of(auc_stats.jackknife_aucs, jk_scores, jk_truth)
        t_loop = best_of(jackknife_by_refitting, jk_scores, jk_truth, repeats=1)
        print(f"{n:>6} {t_fast * 1e3:>17.3f} {t_ref * 1e3:>17.3f} {t_ref / t_fast:>6.1f}x "
              f"{t_jk * 1e3:>20.3f} {t_loop * 1e3:>16.1f} {t_loop / t_jk:>6.0f}x"
              + ("" if jk_n == n else f"   (jackknife on {jk_n} cases)"))


if __name__ == "__main__":
    main()
