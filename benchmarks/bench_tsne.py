"""Benchmark of the paper's t-SNE: scikit-learn (Barnes-Hut) vs openTSNE (FFT) vs our exact
backends (exact-numba, the default, and exact-torch), side by side in one run on the same data,
plus dense vs sparse P for the fused kernel and the scalable path on 30,000 patches.

    .venv/bin/python benchmarks/bench_tsne.py            # paper configuration (tens of minutes)
    .venv/bin/python benchmarks/bench_tsne.py --quick    # a short version (a few minutes)

Paper configuration: 1,500 phantom-like 128x128 patches (500 per group, 16,384 raw pixels),
perplexity 250, 4,000 iterations, PCA init, seed 0. Every backend is forced to run all 4,000
iterations (scikit-learn's early stops disabled) so the times compare equal work;
--allow-early-stop keeps the stops.

Hygiene: every configuration ``backend@threads`` runs ``--repeats`` times (default 3), the
configurations alternating within each round, each under ``threadpool_limits(threads)`` (BLAS
too) with the backend's own thread setting equal to ``threads``. Printed per configuration: the
median and the range of the seconds, the machine's 1-minute load average before each run
(``os.getloadavg``; on a machine shared with other jobs the numbers are noisy -- read the load
beside them), whether the repeats were bitwise identical, each backend's own final KL and the
exact KL of its embedding under one common P (``feature_space.tsne.affinity.joint_probabilities``, exact Q);
then the ratios of the medians against scikit-learn at the same thread count. numba's one-off
compilation is timed separately, before the timed runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mammo_lib import testing
from mammo_lib.feature_space.arrays import flatten_pixels  # noqa: E402
from mammo_lib.feature_space.sampling import GROUP_ORDER  # noqa: E402
from mammo_lib.feature_space.tsne import affinity as tsne_affinity
from mammo_lib.feature_space.tsne import kernels as tsne_kernels  # noqa: E402
from mammo_lib.feature_space.tsne import run as tsne

DEFAULT_CONFIGS = "sklearn@1,sklearn@2,exact-numba@1,exact-numba@2,opentsne@2,exact-torch@1"


def load() -> float:
    return os.getloadavg()[0]


def phantom_like(n_total: int, size: int, seed: int, chunk: int = 999) -> np.ndarray:
    """``n_total`` uint8 patches, a third each lesion / synthetic / normal, made in chunks
    (each chunk's seed drawn from ``SeedSequence([seed, chunk_index])``)."""
    parts = []
    per = max(1, chunk // 3)
    k = 0
    while sum(len(p) for p in parts) < n_total:
        chunk_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        g = testing.demo_groups(per, size=size, seed=chunk_seed)
        parts.extend(g[name] for name in GROUP_ORDER)
        k += 1
    return np.concatenate(parts)[:n_total]


def run_config(x: np.ndarray, backend: str, threads: int, perplexity: float, n_iter: int, stop: dict,
               device: str | None):
    with threadpool_limits(threads):
        return tsne.run_tsne(x, perplexity=perplexity, n_iter=n_iter, backend=backend, seed=0, n_threads=threads,
                             device=device if backend == "exact-torch" else None, **stop)


def warm_up() -> float:
    """Compile (or load from numba's cache) the fused kernels; returns the seconds it took."""
    t0 = time.perf_counter()
    x = np.random.default_rng(0).random((40, 8)).astype(np.float32)
    tsne.run_tsne(x, perplexity=5, n_iter=250, backend="exact-numba")
    return time.perf_counter() - t0


def summarise(records: dict, p_common: np.ndarray) -> dict:
    rows = {}
    for cfg, runs in records.items():
        secs = np.array([r["seconds"] for r in runs])
        rows[cfg] = dict(
            median=float(np.median(secs)), lo=float(secs.min()), hi=float(secs.max()),
            loads=[r["load"] for r in runs], kl_own=runs[0]["kl_own"], kl_exact=runs[0]["kl_exact"],
            identical=len({r["digest"] for r in runs}) == 1, n_iter=runs[0]["n_iter"],
        )
    return rows


def print_table(rows: dict) -> None:
    print("per configuration (backend@threads): median s [min-max] over the repeats; load before each run")
    for cfg, r in rows.items():
        loads = ", ".join(f"{v:.1f}" for v in r["loads"])
        print(f"  {cfg:15s} {r['median']:7.2f} s [{r['lo']:.2f}-{r['hi']:.2f}]  load {loads}  "
              f"iterations {r['n_iter']}  KL (own) {r['kl_own']:.4f}  KL (exact, common P) {r['kl_exact']:.4f}  "
              f"repeats bitwise identical: {'yes' if r['identical'] else 'NO'}", flush=True)
    print("ratios of medians against scikit-learn at the same thread count (time: higher = faster);"
          " KL (exact, common P) relative to scikit-learn's:")
    for cfg, r in rows.items():
        backend, threads = cfg.split("@")
        ref = rows.get(f"sklearn@{threads}")
        if backend == "sklearn" or ref is None:
            continue
        print(f"  {cfg:15s} {ref['median'] / r['median']:6.2f}x faster than sklearn@{threads}   "
              f"KL {100 * (r['kl_exact'] / ref['kl_exact'] - 1):+.2f}%")


def dense_vs_sparse(p: np.ndarray, y: np.ndarray) -> None:
    nnz = float(np.mean(p > 0))
    dense = tsne_kernels.time_force_pass(p, y, "dense", repeats=50)
    sparse = tsne_kernels.time_force_pass(p, y, "sparse", repeats=50)
    print(f"fused force pass, 1 thread, P {100 * nnz:.0f}% non-zero: dense P {1e3 * dense:.3f} ms, "
          f"sparse (CSR) P {1e3 * sparse:.3f} ms per iteration (median of 50; load {load():.1f})")


def scalable(scale_n: int, perplexity: float, threads: int) -> None:
    t0 = time.perf_counter()
    patches = phantom_like(scale_n, 128, seed=1)
    t_make = time.perf_counter() - t0
    load0 = load()
    with threadpool_limits(threads):
        res = tsne.embed_large(patches, perplexity=perplexity, seed=0, n_threads=threads)
    print(f"scalable path: {scale_n} patches of 128x128 (made in {t_make:.0f} s), PCA to {res.params['pca_dims']} "
          f"(fitted on {res.params['pca_fit_rows']}, {res.params['pca_seconds']:.0f} s) + openTSNE FFT, "
          f"perplexity {res.perplexity:g}, {res.n_iter} iterations, {threads} threads: {res.seconds:.1f} s "
          f"({res.seconds / 60:.1f} min), KL {res.kl_divergence:.4f}, load before {load0:.1f}, after {load():.1f}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small version: 450 points, perplexity 50, 1,000 iterations, 5,000 for scale")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"backend@threads list (default {DEFAULT_CONFIGS})")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--scale-n", type=int, default=None)
    ap.add_argument("--scale-perplexities", default="250,50")
    ap.add_argument("--allow-early-stop", action="store_true")
    ap.add_argument("--device", default=None, help="torch device for exact-torch (cpu, cuda); default: cuda if available")
    args = ap.parse_args(argv)

    n_per_group, perplexity, n_iter, scale_n = (150, 50.0, 1000, 5000) if args.quick else (500, 250.0, 4000, 30000)
    scale_n = args.scale_n or scale_n
    stop = {"stop_early": True} if args.allow_early_stop else {"stop_early": False}
    configs = [(c.split("@")[0], int(c.split("@")[1])) for c in args.configs.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
          " (1, 5, 15 min; other jobs may share this machine)")
    print(f"numba kernels compiled or loaded from cache in {warm_up():.1f} s (not in the timings below)")
    g = testing.demo_groups(n_per_group, size=128, seed=0)
    x = flatten_pixels(np.concatenate([g[k] for k in GROUP_ORDER]))
    print(f"paper configuration: {x.shape[0]} x {x.shape[1]} (phantom-like patches), perplexity {perplexity:g}, "
          f"{n_iter} iterations{'' if args.allow_early_stop else ' (all forced)'}, {args.repeats} repeats alternating")
    p_common = tsne_affinity.joint_probabilities(x, perplexity)
    records: dict[str, list] = {f"{b}@{t}": [] for b, t in configs}
    for _ in range(args.repeats):
        for backend, threads in configs:
            load0 = load()
            res = run_config(x, backend, threads, perplexity, n_iter, stop, args.device)
            records[f"{backend}@{threads}"].append(dict(
                seconds=res.seconds, load=load0, kl_own=res.kl_divergence, n_iter=res.n_iter,
                kl_exact=tsne.kl_divergence_exact(p_common, res.embedding),
                digest=hashlib.sha256(np.ascontiguousarray(res.embedding).tobytes()).hexdigest()))
            print(f"    ran {backend}@{threads}: {res.seconds:.2f} s (load before {load0:.1f})", flush=True)
    rows = summarise(records, p_common)
    print_table(rows)
    numba_runs = [r["digest"] for c, runs in records.items() if c.startswith("exact-numba@") for r in runs]
    if numba_runs:
        print(f"exact-numba: {len(numba_runs)} runs over thread counts "
              f"{sorted({c for c in records if c.startswith('exact-numba@')})}: "
              f"{'all bitwise identical' if len(set(numba_runs)) == 1 else 'NOT all identical'}")
    dense_vs_sparse(p_common, np.random.default_rng(0).normal(size=(len(x), 2)) * 10)
    if not args.skip_scale:
        for perp in (float(v) for v in args.scale_perplexities.split(",")):
            scalable(scale_n, perp, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
