"""Benchmark of the paper's t-SNE: scikit-learn (Barnes-Hut) vs openTSNE (FFT) vs our default
(exact-torch), side by side in one run on the same data, plus the scalable path on 30,000 patches.

    .venv/bin/python benchmarks/bench_tsne.py            # paper configuration (several minutes)
    .venv/bin/python benchmarks/bench_tsne.py --quick    # a short version (about a minute)

Paper configuration: 1,500 phantom-like 128x128 patches (500 per group, 16,384 raw pixels),
perplexity 250, 4,000 iterations, PCA init, seed 0. By default every backend is forced to run
all 4,000 iterations (scikit-learn's early stops disabled: min_grad_norm 0, no "no progress"
stop) so that the times compare equal work; --allow-early-stop keeps scikit-learn's stops.
Printed: seconds, time ratio against scikit-learn (target <= 1.0), each backend's own final KL
and its relative difference to scikit-learn's (target within 1%), and the exact KL of every
embedding under one common P (our P, exact Q) as a yardstick independent of approximations.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mammo_lib import feature_space as fs  # noqa: E402
from mammo_lib import testing, tsne, tsne_affinity  # noqa: E402
from mammo_lib.patch_arrays import flatten_pixels  # noqa: E402


def phantom_like(n_total: int, size: int, seed: int, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``n_total`` uint8 patches, a third each lesion / synthetic / normal, made in chunks."""
    parts, groups = [], []
    per = max(1, chunk // 3)
    k = 0
    while sum(len(p) for p in parts) < n_total:
        g = testing.demo_groups(per, size=size, seed=seed + k)
        for name in fs.GROUP_ORDER:
            parts.append(g[name])
            groups.append(np.full(per, name))
        k += 1
    return np.concatenate(parts)[:n_total], np.concatenate(groups)[:n_total]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small version: 450 points, perplexity 50, 1,000 iterations, 5,000 for scale")
    ap.add_argument("--backends", default="sklearn,opentsne,exact-torch")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--scale-n", type=int, default=None)
    ap.add_argument("--allow-early-stop", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per backend (default: each backend's own: 2 for sklearn/openTSNE, 1 for exact-torch)")
    ap.add_argument("--device", default=None, help="torch device for exact-torch (cpu, cuda); default: cuda if available")
    args = ap.parse_args(argv)

    n_per_group, perplexity, n_iter, scale_n = (150, 50.0, 1000, 5000) if args.quick else (500, 250.0, 4000, 30000)
    scale_n = args.scale_n or scale_n
    stop = {} if args.allow_early_stop else {"min_grad_norm": 0.0, "n_iter_without_progress": 10**9}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"(other jobs share this machine: timings are noisy); threads: {args.threads or 'backend defaults'}")
    g = testing.demo_groups(n_per_group, size=128, seed=0)
    x = flatten_pixels(np.concatenate([g[k] for k in fs.GROUP_ORDER]))
    print(f"paper configuration: {x.shape[0]} x {x.shape[1]} (phantom-like patches), perplexity {perplexity:g}, "
          f"{n_iter} iterations{'' if args.allow_early_stop else ' (all forced)'}")
    p_common = tsne_affinity.joint_probabilities(x, perplexity)
    results = {}
    for backend in args.backends.split(","):
        res = tsne.run_tsne(x, perplexity=perplexity, n_iter=n_iter, backend=backend, seed=0, n_threads=args.threads,
                          device=args.device, **stop)
        exact = tsne.kl_divergence_exact(p_common, res.embedding)
        results[backend] = (res, exact)
        print(f"  {backend:12s} {res.seconds:8.1f} s  iterations {res.n_iter:5d}  KL (own) {res.kl_divergence:.4f}  "
              f"KL (exact, common P) {exact:.4f}", flush=True)
    if "sklearn" in results:
        ref, ref_exact = results["sklearn"]
        print("ratios against scikit-learn (time: lower is faster; KL: relative difference):")
        for backend, (res, exact) in results.items():
            if backend == "sklearn":
                continue
            print(f"  {backend:12s} time ratio {res.seconds / ref.seconds:.3f}   "
                  f"KL (own) {100 * (res.kl_divergence / ref.kl_divergence - 1):+.2f}%   "
                  f"KL (exact, common P) {100 * (exact / ref_exact - 1):+.2f}%")
    if not args.skip_scale:
        t0 = time.perf_counter()
        patches, _ = phantom_like(scale_n, 128, seed=1)
        t_make = time.perf_counter() - t0
        res = tsne.embed_large(patches, seed=0, n_threads=args.threads)
        print(f"scalable path: {scale_n} patches of 128x128 (made in {t_make:.0f} s), PCA to {res.params['pca_dims']} "
              f"(fitted on {res.params['pca_fit_rows']}, {res.params['pca_seconds']:.0f} s) + openTSNE FFT, "
              f"perplexity {res.perplexity:g}, {res.n_iter} iterations: {res.seconds:.1f} s "
              f"({res.seconds / 60:.1f} min; target < 10 min), KL {res.kl_divergence:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
