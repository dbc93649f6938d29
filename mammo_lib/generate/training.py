"""Stage 02: DCGAN training that can be left running, killed, resumed and scaled out.

What it does per iteration follows ``pytorch/examples/dcgan/main.py`` (Radford et al. 2016):
update D on a real batch and a fake batch, then update G to make D call its fakes real
(non-saturating loss; with ``network="fastgan"`` the hinge loss and D's reconstruction term of
:mod:`mammo_lib.generate.fastgan`), both with Adam (lr 2e-4, beta1 0.5). Around that loop:

- **loss log**: one CSV row per iteration (``loss_D, loss_G, D_x, D_G_z1, D_G_z2``), appended and
  flushed at once, so a killed run loses nothing it finished (formats: :mod:`mammo_lib.generate.files`);
- **samples**: G on a fixed set of latent vectors every ``sample_every`` iterations
  (``samples/iter_NNNNNN.png`` and ``.npy``), to watch training;
- **checkpoints**: ``checkpoints/last.pt`` every ``checkpoint_every`` iterations, written to a temp
  file and renamed into place; the one before is kept as ``checkpoints/previous.pt``. They hold
  both models, both optimisers and the iteration. Every random draw comes from a stream keyed by
  what it is for (:mod:`mammo_lib.generate.streams`): initial weights by (seed, "init"), data order by
  (seed, epoch), each iteration's latent noise by (seed, rank, iteration), so a run killed at any
  moment and resumed continues exactly as the uninterrupted run would have (bit-identical
  weights on CPU) with no RNG state to save. On resume, loss-log rows after the checkpoint's
  iteration are dropped so the log matches the weights;
- **times** only in ``timings.json``: the log, summary, samples and checkpoints hold none, so a
  rerun with the same seed on a CPU writes the same bytes;
- **instance noise** (optional, ``instance_noise``; Sønderby et al. 2017, Arjovsky & Bottou 2017):
  Gaussian noise on D's real and fake inputs, annealed to 0, keeps D from winning early on
  high-frequency details; it is not in the DCGAN reference: off in ``TrainConfig`` unless chosen (the
  ``default`` profile chooses 0.3, the ``paper`` profile leaves it off);
- **options for few patches** (each off unless chosen, all in :class:`TrainConfig` and recorded in
  the checkpoint and the synthetic manifest): the light FastGAN, noise inputs to G, resize-convolution
  G (nearest-neighbour or bilinear), reflection padding and a full-size head layer in G
  (:mod:`mammo_lib.generate.model`), spectral norm in D, DiffAugment, R1, the spectral term in G's loss,
  and the EMA of G whose batch-norm statistics are recomputed before it is sampled or saved
  (:mod:`mammo_lib.generate.regularisers`); ``lr_d`` != ``lr_g`` is the two time-scale update rule;
- **stops**: NaN/inf losses, or a discriminator that rejects every fake with certainty for
  ``collapse_patience`` iterations (G then gets no useful gradient), stop training with
  :class:`TrainingDivergedError` naming the last good checkpoint; ``time_budget_s`` stops cleanly
  at a checkpoint, and ``resume=True`` continues later;
- **several GPUs** with DistributedDataParallel: start the same code with torchrun, e.g.::

      torchrun --nproc_per_node 4 -m mammo_lib.generate.training --run-dir runs/paper --epochs 200

  (the run folder needs ``patches/lesion.zarr`` from notebook 01; the defaults are the paper's
  widths 64 and batch 64 per process). Resuming needs the checkpoint's settings: a run folder of
  ``make study`` was trained with ``--ngf 16 --ndf 16 --batch-size 16``; ``--no-resume`` starts over.
  Every :class:`TrainConfig` field is an option (``--max-iterations``, ``--lesion-classes mass``,
  booleans as ``--progress/--no-progress``; ``none`` for an optional value).

  (NCCL on GPUs, gloo on CPU). Each process trains on its shard of the epoch's order with its own
  noise stream; only rank 0 writes the log, samples and checkpoints. ``batch_size`` is per
  process. Batch-norm statistics are per process (no SyncBatchNorm), as in plain DDP.

One process on one machine: ``python -m mammo_lib.generate.training --run-dir runs/default``, or call
:func:`train_dcgan` (notebook 02 does).

References
----------
Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016; ``pytorch/examples/dcgan/main.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from mammo_lib.generate.config import (
    TrainConfig,
    add_config_options,
    config_from_args,
)
from mammo_lib.generate.model import (
    CheckpointError,
    resolve_device,
)
from mammo_lib.generate.session import Session, TrainingDivergedError, TrainResult
from mammo_lib.patch_store import PatchStoreError
from mammo_lib.run_folder import lesion_store_path, stage_dir

# ------------------------------------------------------------------ processes


def _distributed_setup(device_request: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, we_initialised) from torchrun's environment, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, resolve_device(device_request), False
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_request)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return rank, world, device, initialised_here


def train_dcgan(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    resume: bool = True,
    on_checkpoint: Callable[[int, Path], None] | None = None,
) -> TrainResult:
    """Train the DCGAN on the lesion patches of ``store_path``; write everything under ``out_dir``.

    With ``resume`` the newest usable checkpoint in ``out_dir/checkpoints`` is continued (a
    corrupt ``last.pt`` falls back to ``previous.pt`` with a warning; a checkpoint trained on
    other patches or classes is set aside with a warning and training starts afresh); otherwise
    training starts from scratch and replaces the old log, samples, checkpoints and timings.
    torch's CPU thread count is restored when the call returns.

    Parameters
    ----------
    store_path : str or os.PathLike
        The lesion patch store of stage 01 (``<run>/patches/lesion.zarr``): uint8 patches, shape
        (n, size, size), size a power of two >= 32.
    out_dir : str or os.PathLike
        The stage folder (``<run>/dcgan``); files as in :mod:`mammo_lib.generate.files`.
    config : TrainConfig, optional
        Settings (None: the defaults, i.e. the paper's DCGAN).
    resume : bool
        Continue from the newest checkpoint when there is one.
    on_checkpoint : callable, optional
        Called as ``on_checkpoint(iteration, path)`` on the main process after each checkpoint
        is written (``path``: ``checkpoints/last.pt``), e.g. to keep snapshots of a long run at
        chosen iterations (``benchmarks/bench_dcgan_quality.py --frontier``); the file is
        replaced at the next checkpoint, so copy it, do not keep the path.

    Returns
    -------
    TrainResult

    Raises
    ------
    PatchStoreError
        When the store is missing, empty or of a size the DCGAN cannot use.
    LesionClassError
        When ``config.lesion_classes`` names an unknown class or leaves no patch.
    ValueError
        When ``batch_size`` exceeds the patches per process.
    CheckpointError
        When checkpoints exist but none is usable, or one is of another architecture.
    TrainingDivergedError
        When losses become NaN/inf or D rejects every fake for ``collapse_patience`` iterations.

    References
    ----------
    Radford, Metz & Chintala, ICLR 2016; ``pytorch/examples/dcgan/main.py``.
    """
    cfg = config or TrainConfig()
    threads_before = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        rank, world, device, initialised_here = _distributed_setup(cfg.device)
        try:
            session = Session(store_path, Path(out_dir), cfg, rank, world, device, on_checkpoint)
            session.start(resume)
            return session.run()
        finally:
            if initialised_here and dist.is_initialized():
                dist.destroy_process_group()
    finally:
        torch.set_num_threads(threads_before)


# ------------------------------------------------------------------ command line


def _parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(description="Train the lesion DCGAN (single process, or under torchrun for DDP).")
    parser.add_argument("--run-dir", help="run folder: reads patches/lesion.zarr, writes dcgan/")
    parser.add_argument("--store", help="lesion patch store (default: <run-dir>/patches/lesion.zarr)")
    parser.add_argument("--out-dir", help="output folder (default: <run-dir>/dcgan)")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch")
    add_config_options(parser)
    args = parser.parse_args(argv)
    if not (args.run_dir or (args.store and args.out_dir)):
        parser.error("give --run-dir, or both --store and --out-dir")
    try:
        return args, config_from_args(args)
    except ValueError as exc:  # a value out of range: argparse's usage error, not a traceback
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """``python -m mammo_lib.generate.training``: train from the command line; 0 on success, 1 on a known error."""

    args, cfg = _parse_args(argv)
    store = args.store or lesion_store_path(args.run_dir)
    out = args.out_dir or stage_dir(args.run_dir, "dcgan")
    try:
        result = train_dcgan(store, out, cfg, resume=not args.no_resume)
    except (PatchStoreError, CheckpointError, TrainingDivergedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{result.stopped}: iteration {result.iterations_done}/{result.total_iterations}, "
              f"{result.images_per_s:.1f} images/s, checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
