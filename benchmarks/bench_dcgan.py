"""Benchmark: images/s of our DCGAN training loop vs a bare loop with the same networks and batch.

Our loop (``mammo_lib.generate.training.train_dcgan``) adds a per-iteration CSV log row (flushed),
fixed-noise sample grids, atomic checkpoints, stop checks and a progress report to the plain
DCGAN iteration. The bare loop is the pytorch/examples dcgan iteration alone: same Generator,
Discriminator, Adam settings, batch size and in-memory data, nothing else. Both are timed in the
same process, alternating, on a toy lesion store; the ratio ours/bare of the best of several
repeats is printed (target >= 0.95).

    .venv/bin/python benchmarks/bench_dcgan.py            # 128 px, widths 16, batch 16
    .venv/bin/python benchmarks/bench_dcgan.py --quick    # 64 px, fewer iterations
    .venv/bin/python benchmarks/bench_dcgan.py --default-profile  # the default profile's networks and options
    .venv/bin/python benchmarks/bench_dcgan.py --default-profile --profile-intervals --iterations 200

With noise inputs, a spectral loss or an EMA of G, the bare loop does the same work per iteration
(noise maps drawn, the spectral terms in G's loss and the spectral discriminator's update, the EMA's
weight update); what our loop adds on
top is the same as above, plus recomputing the EMA's batch-norm statistics before each sample
grid and checkpoint.

Measured 2026-11-30 with ``--default-profile`` (1 thread, load about 1 on 2 cores): with the
intervals scaled to 100-iteration runs (samples every 25, 4 recalibrations per 100 iterations)
0.910 best of 3 (median 0.915); with ``--profile-intervals --iterations 200`` (samples and
checkpoints every 100, as ``make study`` trains) 1.001 (median 1.005), bare 60.8 images/s.

No GPU is lent to this project's development machine, so only CPU figures were measured; with
CUDA present both loops run on it (``--device auto``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mammo_lib.generate.files import load_training_patches
from mammo_lib.generate.model import (
    Architecture,
    Discriminator,
    Generator,
    draw_noise_maps,
    resolve_device,
)
from mammo_lib.generate.regularisers import GeneratorEMA, SpectralDiscriminator, spectral_loss
from mammo_lib.generate.training import TrainConfig, train_dcgan
from mammo_lib.study.runner import profile_parameters
from mammo_lib.testing import write_toy_lesion_store


def bare_loop(data_u8: torch.Tensor, arch: Architecture, batch: int, iterations: int, device,
              channels_last: bool = False, spectral_weight: float = 0.0, ema_decay: float = 0.0,
              spectral_d_weight: float = 0.0) -> float:
    """images/s of the plain DCGAN iteration (timed after one warm-up iteration)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    generator = Generator(arch).to(device, memory_format=fmt)
    discriminator = Discriminator(arch).to(device, memory_format=fmt)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = torch.nn.BCEWithLogitsLoss()
    ema = GeneratorEMA(generator, ema_decay) if ema_decay > 0 else None
    d_spec = SpectralDiscriminator(arch.image_size).to(device) if spectral_d_weight > 0 else None
    opt_s = torch.optim.Adam(d_spec.parameters(), lr=2e-4, betas=(0.5, 0.999)) if d_spec is not None else None
    noise_rng = torch.Generator().manual_seed(0)
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
    data = data_u8.to(device)
    per_epoch = len(data) // batch
    perm = torch.randperm(len(data))
    start = None
    for it in range(iterations + 1):
        if it == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        b = it % per_epoch
        if b == 0:
            perm = torch.randperm(len(data))
        real = data[perm[b * batch:(b + 1) * batch].to(device)].float().div(127.5).sub(1).unsqueeze(1)
        real = real.contiguous(memory_format=fmt)
        opt_d.zero_grad(set_to_none=True)
        criterion(discriminator(real), ones).backward()
        fake = generator(torch.randn(batch, arch.latent_dim, device=device),
                         draw_noise_maps(arch, batch, noise_rng, device))
        criterion(discriminator(fake.detach()), zeros).backward()
        opt_d.step()
        if d_spec is not None:
            opt_s.zero_grad(set_to_none=True)
            (criterion(d_spec(real), ones) + criterion(d_spec(fake.detach()), zeros)).backward()
            opt_s.step()
        opt_g.zero_grad(set_to_none=True)
        loss_g = criterion(discriminator(fake), ones)
        if spectral_weight > 0:
            loss_g = loss_g + spectral_weight * spectral_loss(fake, real)
        if d_spec is not None:
            loss_g = loss_g + spectral_d_weight * criterion(d_spec(fake), ones)
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            ema.update(generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iterations * batch / (time.perf_counter() - start)


def our_loop(store: Path, out: Path, arch: Architecture, batch: int, iterations: int, device,
             checkpoint_every: int, sample_every: int, channels_last: bool = False, spectral_weight: float = 0.0,
             ema_decay: float = 0.0, spectral_d_weight: float = 0.0) -> float:
    """images/s of train_dcgan (log, samples, checkpoints, progress), timed over the iterations after the first."""
    cfg = TrainConfig(max_iterations=1, batch_size=batch, latent_dim=arch.latent_dim, ngf=arch.ngf, ndf=arch.ndf,
                      checkpoint_every=checkpoint_every, sample_every=sample_every, device=str(device), seed=0,
                      upsampling=arch.upsampling, channels_last=channels_last, noise_injection=arch.noise_injection,
                      spectral_loss_weight=spectral_weight, ema_decay=ema_decay, spectral_d_weight=spectral_d_weight)
    train_dcgan(store, out, cfg, resume=False)  # warm-up iteration (also writes a checkpoint)
    cfg.max_iterations = iterations + 1
    result = train_dcgan(store, out, cfg, resume=True)
    return result.images_per_s


def apply_default_profile(args: argparse.Namespace) -> None:
    """Set the networks and options of the default profile on ``args``."""
    table = profile_parameters(Path(__file__).resolve().parents[1] / "notebooks" / "02_train_dcgan.ipynb", "default")
    for name in ("ngf", "ndf", "latent_dim", "upsampling", "channels_last", "noise_injection",
                 "spectral_loss_weight", "spectral_d_weight", "ema_decay", "checkpoint_every", "sample_every"):
        setattr(args, name, table[name])
    args.batch = table["batch_size"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 px and fewer iterations (about a minute)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--ndf", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=200, help="as in the default profile")
    parser.add_argument("--sample-every", type=int, default=100, help="as in the default profile")
    parser.add_argument("--threads", type=int, default=1,
                        help="1 by default: 2 threads on a busy 2-core machine make timings swing 5x")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--upsampling", default="transposed", choices=["transposed", "resize_conv"])
    parser.add_argument("--channels-last", action="store_true", help="both loops in channels-last memory format")
    parser.add_argument("--noise-injection", action="store_true", help="G with per-pixel noise inputs")
    parser.add_argument("--spectral-loss-weight", type=float, default=0.0)
    parser.add_argument("--ema-decay", type=float, default=0.0)
    parser.add_argument("--spectral-d-weight", type=float, default=0.0)
    parser.add_argument("--profile-intervals", action="store_true",
                        help="keep --checkpoint-every/--sample-every as given instead of scaling them to the run "
                             "(samples and checkpoints, with the EMA's batch-norm recalibration, as often as in "
                             "the profile)")
    parser.add_argument("--default-profile", action="store_true",
                        help="networks and options of the default profile (notebooks/params/02_train_dcgan.json)")
    args = parser.parse_args()
    if args.default_profile:
        apply_default_profile(args)
    if args.quick:
        args.size, args.iterations = 64, 60
    # each measured run must contain checkpoints and samples, so scale the intervals to the run
    # (unless --profile-intervals: then a run shorter than the intervals writes them only at its end)
    checkpoint_every, sample_every = args.checkpoint_every, args.sample_every
    if not args.profile_intervals:
        checkpoint_every = min(checkpoint_every, max(1, args.iterations // 2))
        sample_every = min(sample_every, max(1, args.iterations // 4))
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    arch = Architecture(image_size=args.size, latent_dim=args.latent_dim, ngf=args.ngf, ndf=args.ndf,
                        upsampling=args.upsampling, noise_injection=args.noise_injection)
    extras = dict(channels_last=args.channels_last, spectral_weight=args.spectral_loss_weight, ema_decay=args.ema_decay,
                  spectral_d_weight=args.spectral_d_weight)
    with tempfile.TemporaryDirectory() as tmp:
        store = write_toy_lesion_store(Path(tmp) / "lesion.zarr", n=max(128, 4 * args.batch), size=args.size)
        data = load_training_patches(store)
        print(f"device {device}, {args.threads} threads, {args.size} px, ngf {args.ngf}, ndf {args.ndf}, "
              f"batch {args.batch}, {args.iterations} iterations per run; ours checkpoints every "
              f"{checkpoint_every} and samples every {sample_every} iterations, logs every iteration")
        bare, ours = [], []
        for rep in range(args.repeats):
            bare.append(bare_loop(data, arch, args.batch, args.iterations, device, **extras))
            ours.append(our_loop(store, Path(tmp) / "dcgan", arch, args.batch, args.iterations, device,
                                 checkpoint_every, sample_every, **extras))
            print(f"  repeat {rep + 1}: bare {bare[-1]:.1f} images/s, ours {ours[-1]:.1f} images/s")
    # best of the repeats: other processes on the machine only ever slow a run down
    print(f"bare loop: best {max(bare):.1f}, median {statistics.median(bare):.1f} images/s")
    print(f"our loop:  best {max(ours):.1f}, median {statistics.median(ours):.1f} images/s")
    print(f"ratio ours/bare (best of {args.repeats}): {max(ours) / max(bare):.3f} (target >= 0.95); "
          f"median ratio {statistics.median(ours) / statistics.median(bare):.3f}")


if __name__ == "__main__":
    main()
