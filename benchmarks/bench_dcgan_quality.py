"""Benchmark: how realistic are the DCGAN's lesions for the same CPU time, per training option?

Trains the baseline (stage 02's settings before issue 15: the ``default`` profile's widths,
batch, label smoothing and instance noise, transposed convolutions) and candidate combinations of
the options of issue 15 (DiffAugment, EMA of G, resize-convolution G, spectral norm in D, TTUR,
R1) for the same CPU time on one thread, on the lesion patches of a run folder where stage 01 has
run (the phantom of the default study, or MIAS: run stage 01 with ``-p source_kind=mias``). Each
candidate first trains a few iterations to measure its CPU seconds per iteration
(``time.process_time``, which other processes on the machine do not inflate), then trains
``budget / cost`` iterations from scratch, so schedules such as the annealing of instance noise
run to their end and the iteration count does not depend on the machine's load.

For every candidate it synthesises ``--n-synthetic`` patches and prints, all computed by the
study's own stage 03/04 code:

- ``1nn_px`` / ``1nn_cnn``: leave-one-out 1-NN two-sample accuracy (0.5: indistinguishable) on
  raw pixels and on the lesion CNN's features (``realism_metrics.one_nn_accuracy``;
  ``lesion_cnn.train_lesion_cnn`` on real lesion vs normal patches, trained once);
- ``fd/yard``: the pixel-space Fréchet distance of half the real set vs half the synthetic set,
  over the real split-half yardstick (``realism_metrics.frechet_distance_pca``; 1 means "as
  different as two halves of the real set");
- ``P R D C``: precision, recall, density, coverage in pixel space (``realism_metrics.prdc``);
- ``auc_px`` / ``auc_spec``: the two machine observers of stage 04 (``patch_features`` "pixels" and
  "spectrum" with stage 04's logistic regression), trained on half the real and synthetic patches
  and scored on the other half; AUC (``auc_stats.auc_mann_whitney``) of P(real), 0.5 is chance.

Every line carries the machine's load (``os.getloadavg``) at that moment: on a shared machine CPU
figures are noisy, the quality figures are not (training is bit-reproducible for a given
iteration count).

    .venv/bin/python benchmarks/bench_dcgan_quality.py --run-dir runs/default          # 240 s each
    .venv/bin/python benchmarks/bench_dcgan_quality.py --run-dir runs/default --quick  # 60 s each
    .venv/bin/python benchmarks/bench_dcgan_quality.py --run-dir runs/mias --candidates baseline,chosen
    .venv/bin/python benchmarks/bench_dcgan_quality.py --run-dir runs/default --evaluate-run
        # no training: the same metrics for the synthetic store stage 02 of that run wrote

Measured 2026-11-29 on the default phantom (322 lesion patches, 128 px; 2 shared cores, load as
printed; candidates in the default format, before ``channels_last`` existed)::

    baseline           it 1086 | 1nn_px 0.716 1nn_cnn 0.548 fd/yard 2.43 | R 0.28 | auc_px 0.991 auc_spec 1.000
    diffaug            it 1090 | 1nn_px 0.843 1nn_cnn 0.530 fd/yard 3.26 | R 0.11 | auc_px 0.996 auc_spec 1.000
    ema                it 1151 | 1nn_px 0.584 1nn_cnn 0.613 fd/yard 4.36 | R 0.26 | auc_px 0.895 auc_spec 1.000
    resize             it  676 | 1nn_px 0.568 1nn_cnn 0.508 fd/yard 4.11 | R 0.66 | auc_px 0.834 auc_spec 1.000
    sn                 it 1135 | 1nn_px 0.756 1nn_cnn 0.582 fd/yard 5.33 | R 0.05 | auc_px 0.996 auc_spec 1.000
    ttur               it 1211 | 1nn_px 0.801 1nn_cnn 0.565 fd/yard 1.80 | R 0.30 | auc_px 0.999 auc_spec 1.000
    r1                 it  754 | 1nn_px 0.677 1nn_cnn 0.568 fd/yard 2.82 | R 0.18 | auc_px 0.996 auc_spec 1.000
    diffaug+ema        it 1077 | 1nn_px 0.767 1nn_cnn 0.536 fd/yard 2.53 | R 0.26 | auc_px 0.999 auc_spec 1.000
    diffaug+ema+resize it  709 | 1nn_px 0.671 1nn_cnn 0.567 fd/yard 3.38 | R 0.17 | auc_px 0.858 auc_spec 1.000

``--evaluate-run`` of default-profile runs then: resize + EMA + channels_last, 1,000 iterations:
1nn_px 0.578, 1nn_cnn 0.503, fd/yard 3.68, auc_px 0.608, auc_spec 0.998; the default before
issue 15 (1,200 transposed iterations): 1nn_px 0.793, fd/yard 8.02, auc_px 0.995, auc_spec 1.000.

Second round, 2026-11-30: ``chosen`` was resize + EMA + channels_last (with the default's label
smoothing 0.1 and instance noise 0.3); named parts are added to it ("+"). Why the spectrum
observer still won: per band of the radial spectrum, the synthetic patches had 2-3x less power
than the real ones above the blob scale and about 5x less in the highest band (the fine
parenchymal texture and quantum noise of the phantom); D, looking through the annealed instance
noise, did not penalise it. Lines from ``--seed`` 0, 1, 2 (the seed keys training and the
metrics' splits; the yardstick differs per seed: 35.3, 45.2, 69.1); ``it`` iterations in 240 CPU
s; loads 1.5-2.7 on 2 cores::

    seed candidate                 it    1nn_px 1nn_cnn fd/yard  R    auc_px auc_spec
    0    chosen+noise              1022  0.564  0.530   2.32     0.39 0.563  0.999  (*)
    0    chosen+spec (no noise)     987  0.576  0.557   1.61     0.76 0.737  1.000  (*)
    0    chosen+noise+spec          923  0.564  0.517   1.70     0.66 0.605  0.940  (*)
    0    chosen+noise+spec3         922  0.565  0.498   2.90     0.50 0.717  0.936  (*)
    0    chosen+noise+spec10        951  0.576  0.517   4.03     0.79 0.574  0.891  (*)
    0    chosen+noise+spec+in0.1    939  0.568  0.516   2.39     0.74 0.738  0.986  (*)
    1    chosen+noise+spec         1060  0.548  0.500   0.97     0.67 0.537  0.914
    2    chosen+noise+spec         1008  0.564  0.523   0.85     0.73 0.582  0.981
    1    chosen+noise+spec3        1108  0.531  0.512   0.81     0.76 0.542  0.918
    2    chosen+noise+spec3        1003  0.579  0.484   0.65     0.75 0.557  0.923
    0    chosen+noise+spec3+ema95   950  0.571  0.547   1.90     0.71 0.659  0.889
    2    chosen+noise+spec3+ema95  1045  0.604  0.551   1.14     0.70 0.763  0.985
    1    chosen+noise+spec10        901  0.548  0.509   1.22     0.68 0.608  0.918
    2    chosen+noise+spec10        963  0.602  0.509   0.61     0.77 0.588  0.957
    0    chosen+noise+spec3        1650  0.553  0.500   2.69     0.57 0.561  0.975  (400 CPU s)
    2    chosen+noise+spec3        1494  0.575  0.495   0.79     0.68 0.582  0.978  (360 CPU s)
    0    chosen+noise+spec3         698  0.579  0.528   2.17     0.73 0.547  0.904  (170 CPU s)
    2    chosen+noise+spec3         673  0.540  0.556   0.55     0.80 0.544  0.923  (160 CPU s)
    0    chosen+noise+spec3+sd      997  0.562  0.531   1.98     0.78 0.606  0.835
    1    chosen+noise+spec3+sd     1023  0.554  0.522   0.84     0.77 0.580  0.878
    2    chosen+noise+spec3+sd     1033  0.550  0.520   0.63     0.79 0.585  0.924
    0    chosen+noise+spec3+sd3     955  0.506  0.503   2.73     0.74 0.597  0.889
    1    chosen+noise+spec3+sd3     950  0.568  0.511   1.19     0.74 0.573  0.873
    2    chosen+noise+spec3+sd3     954  0.551  0.492   0.76     0.81 0.618  0.881
    0    chosen+noise+spec3+sd3+ema995  958  0.542  0.514  2.42  0.74 0.546  0.812
    1    chosen+noise+spec3+sd3+ema995  951  0.536  0.488  0.97  0.76 0.541  0.888
    2    chosen+noise+spec3+sd3+ema995  932  0.567  0.537  0.41  0.77 0.522  0.846
    0    chosen+noise+spec3+sd3+ema999  977  0.632  0.568  4.41  0.56 0.645  0.989

(*) before the EMA's batch-norm statistics were recomputed for its weights; that fix alone,
applied to the saved seed-0 models, moved noise+spec from auc_spec 0.940 / fd/yard 1.70 to
0.929 / 1.32, noise+spec3 from 0.936 / 2.90 to 0.885 / 1.59 and noise+spec10 from 0.891 / 4.03
to 0.866 / 1.75. What each contributed: noise inputs alone nothing (G left them near 0); the
spectral loss alone nothing for the spectrum observer (no way for G to make pixel-scale texture
without the noise inputs) but a better fd; both together the first drop of auc_spec; the EMA
fix a drop in fd and auc_spec; the spectral discriminator (weight 3) brought auc_spec <= 0.90 for
all three seeds, and a longer EMA (0.995 instead of 0.99) lowered auc_spec and fd/yard further
for seeds 0 and 2. Did not help: a shorter EMA (0.95), a much longer one (0.999), less instance
noise (0.1), longer training (1,500-1,650 iterations: auc_spec 0.975-0.978; D wins as the
instance noise anneals away), TTUR with the spectral loss. The new default
(``chosen+noise+spec3+sd3+ema995``): auc_spec 0.812-0.888 (target <= 0.90, met for every seed),
1nn_px 0.536-0.567 (<= 0.65, met), fd/yard 0.41-2.42 (<= 1.3: met for seeds 1 and 2, not for
seed 0, whose yardstick is the smallest; most of its distance is the mean grey level of the
synthetic set, about 9 levels off the real set's 150).

On MIAS (``-p source_kind=mias``: 117 lesion patches; seed 0, 240 CPU s, yardstick 176.0)::

    baseline             it 1276 | 1nn_px 0.709 1nn_cnn 0.628 fd/yard 0.73 | R 0.35 | auc_px 0.945 auc_spec 1.000
    default, EMA 0.99    it  958 | 1nn_px 0.517 1nn_cnn 0.521 fd/yard 0.68 | R 0.73 | auc_px 0.445 auc_spec 0.875
    default (EMA 0.995)  it  981 | 1nn_px 0.487 1nn_cnn 0.513 fd/yard 0.89 | R 0.72 | auc_px 0.366 auc_spec 0.865

every target met on the real mammograms. (auc_px below 0.5: the pixel observer, trained on half,
calls the other half's synthetic patches real more often than the real ones; with 58 real test
patches its AUC is noisy.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mammo_lib.dcgan_config import TrainConfig
from mammo_lib.dcgan_rng import numpy_stream
from mammo_lib.dcgan_synthesis import generate_synthetic_patches
from mammo_lib.dcgan_training import train_dcgan
from mammo_lib.patch_store import open_patch_store
from mammo_lib.run_folder import lesion_store_path, normal_store_path
from mammo_lib.runner import profile_parameters

REPO = Path(__file__).resolve().parents[1]
AUGMENT = "color,translation,cutout"
# each candidate: overrides of the baseline settings
CANDIDATES = {
    "baseline": {},
    "diffaug": {"diffaugment": AUGMENT},
    "ema": {"ema_decay": 0.99},
    "resize": {"upsampling": "resize_conv"},
    "sn": {"spectral_norm": True},
    "ttur": {"lr_d": 4e-4, "lr_g": 1e-4},
    "r1": {"r1_gamma": 1.0},
    "diffaug+ema": {"diffaugment": AUGMENT, "ema_decay": 0.99},
    "diffaug+ema+resize": {"diffaugment": AUGMENT, "ema_decay": 0.99, "upsampling": "resize_conv"},
    "noise": {"noise_injection": True},
    "chosen": {},  # filled from the default profile in notebooks/params/02_train_dcgan.json
    # parts only used in combinations such as "chosen+noise+in0.1" (later parts override earlier ones)
    "in0": {"instance_noise": 0.0},
    "in0.1": {"instance_noise": 0.1},
    "transposed": {"upsampling": "transposed"},
    "noema": {"ema_decay": 0.0},
    "ema999": {"ema_decay": 0.999},
    "ema995": {"ema_decay": 0.995},
    "ema95": {"ema_decay": 0.95},
    "cl": {"channels_last": True},
    "spec": {"spectral_loss_weight": 1.0},
    "spec0.1": {"spectral_loss_weight": 0.1},
    "spec3": {"spectral_loss_weight": 3.0},
    "sd": {"spectral_d_weight": 1.0},
    "sd3": {"spectral_d_weight": 3.0},
    "spec10": {"spectral_loss_weight": 10.0},
}
CANDIDATES_RUN_BY_DEFAULT = ["baseline", "diffaug", "ema", "resize", "sn", "ttur", "r1", "diffaug+ema",
                             "diffaug+ema+resize", "noise", "noise+spec3", "noise+spec3+sd3", "chosen"]
BASELINE = dict(batch_size=16, latent_dim=200, ngf=16, ndf=16, lr_g=2e-4, lr_d=2e-4, beta1=0.5,
                label_smoothing=0.1, instance_noise=0.3)


def load() -> str:
    return "load {:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())


def default_profile_config() -> dict:
    """The default profile's TrainConfig fields (what notebook 02 would train)."""
    table = profile_parameters(REPO / "notebooks" / "02_train_dcgan.ipynb", "default")
    names = set(TrainConfig.__dataclass_fields__) - {"max_iterations", "epochs", "time_budget_s", "num_threads",
                                                     "checkpoint_every", "sample_every", "device", "lesion_classes"}
    return {k: v for k, v in table.items() if k in names}


def cpu_seconds_per_iteration(store: Path, cfg: TrainConfig, out: Path, iterations: int) -> float:
    """CPU seconds of one iteration of ``cfg``: the difference of two resumed runs of ``iterations`` and
    ``2 * iterations`` (after a warm-up iteration), so the samples and checkpoint written at the end of
    each run (with the EMA's batch-norm recalibration) do not count as training time."""
    probe = TrainConfig(**{**cfg.__dict__, "max_iterations": 1, "checkpoint_every": 10**6, "sample_every": 10**6})
    train_dcgan(store, out, probe, resume=False)
    seconds = []
    for more in (iterations, 2 * iterations):
        probe.max_iterations += more
        start = time.process_time()
        train_dcgan(store, out, probe, resume=True)
        seconds.append(time.process_time() - start)
    return (seconds[1] - seconds[0]) / iterations


def machine_observer_auc(real: np.ndarray, synthetic: np.ndarray, kind: str, seed: int) -> float:
    """Stage 04's machine observer (features and classifier) trained on half, AUC on the other half."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mammo_lib.auc_stats import auc_mann_whitney
    from mammo_lib.machine_observer import patch_features

    rng = numpy_stream(seed, "figure")
    pr, ps = rng.permutation(len(real)), rng.permutation(len(synthetic))
    hr, hs = len(real) // 2, len(synthetic) // 2
    fr, fs = patch_features(real, kind), patch_features(synthetic, kind)
    x_train = np.concatenate([fr[pr[:hr]], fs[ps[:hs]]])
    y_train = np.r_[np.ones(hr), np.zeros(hs)]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000,
                                                               random_state=seed))
    model.fit(x_train, y_train)
    x_test = np.concatenate([fr[pr[hr:]], fs[ps[hs:]]])
    y_test = np.r_[np.ones(len(real) - hr), np.zeros(len(synthetic) - hs)]
    return float(auc_mann_whitney(model.predict_proba(x_test)[:, 1], y_test))


def quality(real: np.ndarray, synthetic: np.ndarray, cnn, seed: int) -> dict:
    from mammo_lib import realism_metrics as rm
    from mammo_lib.lesion_cnn import cnn_features
    from mammo_lib.patch_arrays import flatten_pixels

    px_r, px_s = flatten_pixels(real).astype(np.float64), flatten_pixels(synthetic).astype(np.float64)
    fd = rm.frechet_distance_pca(px_r, px_s, 32, n_bootstrap=20, seed=seed)
    prdc = rm.prdc(px_r, px_s, k=5, n_bootstrap=20, seed=seed)
    return {
        "1nn_px": rm.one_nn_accuracy(px_r, px_s, n_bootstrap=20, seed=seed)["value"],
        "1nn_cnn": rm.one_nn_accuracy(cnn_features(cnn, real), cnn_features(cnn, synthetic), n_bootstrap=20,
                                      seed=seed)["value"],
        "fd": fd["real_half_vs_synthetic_half"], "yard": fd["real_split_half"],
        "P": prdc["precision"]["value"], "R": prdc["recall"]["value"],
        "D": prdc["density"]["value"], "C": prdc["coverage"]["value"],
        "auc_px": machine_observer_auc(real, synthetic, "pixels", seed),
        "auc_spec": machine_observer_auc(real, synthetic, "spectrum", seed),
    }


def candidate_overrides(name: str) -> dict:
    """A candidate's overrides: a name of :data:`CANDIDATES`, or names joined by "+" (merged left to right)."""
    if name in CANDIDATES:
        return CANDIDATES[name]
    parts = name.split("+")
    unknown = [p for p in parts if p not in CANDIDATES]
    if unknown:
        sys.exit(f"unknown candidates {unknown} in {name!r}; choose from {list(CANDIDATES)} or join them with '+'")
    merged: dict = {}
    for part in parts:
        merged.update(CANDIDATES[part])
    return merged


def run_candidate(name: str, overrides: dict, store: Path, real: np.ndarray, cnn, args, tmp: Path) -> dict:
    base = {**BASELINE, "seed": args.seed, "num_threads": 1, "progress": False, "device": "cpu"}
    cfg = TrainConfig(**{**base, **overrides, "max_iterations": 10, "checkpoint_every": 10**6,
                         "sample_every": 10**6})
    per_it = cpu_seconds_per_iteration(store, cfg, tmp / f"{name}-probe", args.probe_iterations)
    iterations = max(1, int(args.budget / per_it))
    cfg.max_iterations, cfg.time_budget_s = iterations, 4 * args.budget  # the wall-clock limit is a safety net
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    result = train_dcgan(store, tmp / name, cfg, resume=False)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    synthetic_path = generate_synthetic_patches(result.checkpoint, n=args.n_synthetic, seed=args.seed,
                                                out_store=tmp / f"{name}-synthetic.zarr", device="cpu")
    metrics = quality(real, open_patch_store(synthetic_path).load(), cnn, args.seed)
    return {"name": name, "iterations": result.iterations_done, "stopped": result.stopped, "cpu_s": cpu,
            "wall_s": wall, "s_per_it": per_it, **metrics}


def evaluate_run(run_dir: Path, real: np.ndarray, cnn, seed: int) -> None:
    """Print the metrics of the synthetic store stage 02 wrote into ``run_dir`` (its CPU time from timings.json)."""
    from mammo_lib.run_folder import synthetic_store_path

    synthetic = open_patch_store(synthetic_store_path(run_dir))
    summary = json.loads((run_dir / "dcgan" / "training_summary.json").read_text())
    timings = json.loads((run_dir / "dcgan" / "timings.json").read_text())
    row = {"name": f"run:{run_dir.name}", "iterations": summary["iterations_done"], "stopped": summary["stopped"],
           "cpu_s": float("nan"), "wall_s": timings["total_seconds"], **quality(real, synthetic.load(), cnn, seed)}
    print(format_row(row), flush=True)


def format_row(r: dict) -> str:
    return (f"{r['name']:<20} it {r['iterations']:>5} cpu {r['cpu_s']:6.1f}s wall {r['wall_s']:6.1f}s | "
            f"1nn_px {r['1nn_px']:.3f} 1nn_cnn {r['1nn_cnn']:.3f} fd/yard {r['fd']:.1f}/{r['yard']:.1f}"
            f"={r['fd'] / r['yard']:.2f} | P {r['P']:.2f} R {r['R']:.2f} D {r['D']:.2f} C {r['C']:.2f} | "
            f"auc_px {r['auc_px']:.3f} auc_spec {r['auc_spec']:.3f} | {r['stopped']} | {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=str(REPO / "runs" / "default"),
                        help="run folder with patches/lesion.zarr and normal.zarr from stage 01")
    parser.add_argument("--budget", type=float, default=240.0, help="CPU seconds of training per candidate")
    parser.add_argument("--quick", action="store_true", help="60 CPU seconds per candidate")
    parser.add_argument("--candidates", default=",".join(CANDIDATES_RUN_BY_DEFAULT),
                        help="comma-separated names, each a candidate or candidates joined by '+' (e.g. chosen+noise)")
    parser.add_argument("--n-synthetic", type=int, default=500)
    parser.add_argument("--probe-iterations", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=None,
                        help="folder to keep each candidate's training folder and synthetic store in "
                             "(default: a temporary folder, removed at the end)")
    parser.add_argument("--evaluate-run", action="store_true",
                        help="train nothing: score the run folder's own synthetic/synthetic.zarr (stage 02 output)")
    args = parser.parse_args()
    if args.quick:
        args.budget = 60.0
    run_dir = Path(args.run_dir)
    store = lesion_store_path(run_dir)
    if not store.exists():
        sys.exit(f"{store} does not exist: run stage 01 first, e.g. .venv/bin/python -m mammo_lib.runner "
                 f"--profile default --name {run_dir.name} --only 01")
    CANDIDATES["chosen"] = {k: v for k, v in default_profile_config().items() if k not in ("seed",)}
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    overrides = {name: candidate_overrides(name) for name in names}
    torch.set_num_threads(1)
    from mammo_lib.lesion_cnn import train_lesion_cnn

    real = open_patch_store(store).load()
    normal = open_patch_store(normal_store_path(run_dir)).load()
    cnn = train_lesion_cnn(real, normal, seed=args.seed, n_threads=1)
    print(f"{len(real)} real lesion patches of {real.shape[1]} px from {store}; {args.n_synthetic} synthetic per "
          f"candidate; {args.budget:g} CPU s of training each on 1 thread; {load()}", flush=True)
    if args.evaluate_run:
        evaluate_run(run_dir, real, cnn, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            print(format_row(run_candidate(name, overrides[name], store, real, cnn, args, out)), flush=True)
    print("targets (default profile): auc_spec <= 0.90, 1nn_px <= 0.65, fd/yard <= 1.3")


if __name__ == "__main__":
    main()
