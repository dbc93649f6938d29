"""Stage 02: DCGAN training that can be left running, killed, resumed and scaled out.

What it does per iteration follows ``pytorch/examples/dcgan/main.py`` (Radford et al. 2016):
update D on a real batch and a fake batch, then update G to make D call its fakes real
(non-saturating loss), both with Adam (lr 2e-4, beta1 0.5). Around that loop:

- **loss log**: one CSV row per iteration (``loss_D, loss_G, D_x, D_G_z1, D_G_z2``), appended and
  flushed at once, so a killed run loses nothing it finished;
- **samples**: G on a fixed set of latent vectors every ``sample_every`` iterations
  (``samples/iter_NNNNNN.png`` and ``.npy``), to watch training;
- **checkpoints**: ``checkpoints/last.pt`` every ``checkpoint_every`` iterations, written to a temp
  file and renamed into place; the one before is kept as ``checkpoints/previous.pt``. They hold
  both models, both optimisers, the RNG states and the iteration. Data order is a function of
  (seed, epoch) (``DistributedSampler`` with ``set_epoch``) and each iteration's latent noise a
  function of (seed, rank, iteration), so a run killed at any moment and resumed continues exactly
  as the uninterrupted run would have (bit-identical weights on CPU). On resume, loss-log rows
  after the checkpoint's iteration are dropped so the log matches the weights;
- **instance noise** (optional, ``instance_noise``; Sønderby et al. 2017, Arjovsky & Bottou 2017):
  Gaussian noise on D's real and fake inputs, annealed to 0, keeps D from winning early on
  high-frequency details; it is not in the DCGAN reference and is off by default;
- **stops**: NaN/inf losses, or a discriminator that rejects every fake with certainty for
  ``collapse_patience`` iterations (G then gets no useful gradient), stop training with
  :class:`TrainingDivergedError` naming the last good checkpoint; ``time_budget_s`` stops cleanly
  at a checkpoint, and ``resume=True`` continues later;
- **several GPUs** with DistributedDataParallel: start the same code with torchrun, e.g.::

      torchrun --nproc_per_node 4 -m mammo_lib.dcgan_training --run-dir runs/paper --epochs 200

  (the run folder needs ``patches/lesion.zarr`` from notebook 01; the defaults are the paper's
  widths 64 and batch 64 per process). Resuming needs the checkpoint's settings: a run folder of
  ``make study`` was trained with ``--ngf 16 --ndf 16 --batch-size 16``; ``--no-resume`` starts over.

  (NCCL on GPUs, gloo on CPU). Each process trains on its ``DistributedSampler`` shard with its own
  noise; only rank 0 writes the log, samples and checkpoints. ``batch_size`` is per process.
  Batch-norm statistics are per process (no SyncBatchNorm), as in plain DDP.

One process on one machine: ``python -m mammo_lib.dcgan_training --run-dir runs/default``, or call
:func:`train_dcgan` (notebook 02 does).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from mammo_lib.dcgan import (
    CHECKPOINT_FORMAT,
    Architecture,
    CheckpointError,
    Discriminator,
    Generator,
    check_architecture,
    load_checkpoint,
    model_to_uint8,
    resolve_device,
    save_checkpoint_atomic,
    uint8_to_model,
)
from mammo_lib.fileio import atomic_write, atomic_write_text
from mammo_lib.lesion_classes import normalise_lesion_classes, select_lesion_rows
from mammo_lib.patch_store import PatchStoreError, open_patch_store

LOG_COLUMNS = ("iteration", "epoch", "batch", "loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2", "elapsed_s")
LOSS_LOG_NAME = "loss_log.csv"


class TrainingDivergedError(RuntimeError):
    """Training stopped because the losses became NaN/inf or the discriminator collapsed."""


@dataclass
class TrainConfig:
    """Training settings; defaults are the paper's (latent 200, batch 64) and DCGAN's (Adam 2e-4, 0.5)."""

    epochs: int = 25
    max_iterations: int | None = None  # overrides epochs when set
    batch_size: int = 64  # per process under DDP
    latent_dim: int = 200
    ngf: int = 64
    ndf: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    label_smoothing: float = 0.0  # one-sided: D's target for real images is 1 - label_smoothing
    instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs, annealed linearly to 0
    device: str = "auto"
    checkpoint_every: int = 500
    sample_every: int = 250
    n_fixed_samples: int = 16
    seed: int = 0
    time_budget_s: float | None = None  # stop cleanly at a checkpoint after this many seconds
    num_threads: int | None = None  # torch CPU threads (None: leave torch's choice)
    collapse_patience: int = 300
    collapse_threshold: float = 1e-3
    progress: bool = True
    lesion_classes: list[str] | None = None  # train only on these lesion classes (None: all)

    def __post_init__(self) -> None:
        self.lesion_classes = normalise_lesion_classes(self.lesion_classes)
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        for name in ("epochs", "batch_size", "checkpoint_every", "sample_every", "n_fixed_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1 or None, got {self.max_iterations}")


@dataclass
class TrainResult:
    """What a call of :func:`train_dcgan` did."""

    iterations_done: int
    total_iterations: int
    start_iteration: int
    stopped: str  # "finished", "time_budget" or "already_done"
    checkpoint: Path
    loss_log: Path
    samples_dir: Path
    seconds: float
    images_per_s: float
    n_patches: int
    world_size: int


# ------------------------------------------------------------------ small helpers


def dcgan_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    out = Path(out_dir)
    return {
        "checkpoints": out / "checkpoints",
        "last": out / "checkpoints" / "last.pt",
        "previous": out / "checkpoints" / "previous.pt",
        "loss_log": out / LOSS_LOG_NAME,
        "samples": out / "samples",
        "summary": out / "training_summary.json",
    }


def noise_seed(seed: int, rank: int, iteration: int) -> int:
    """Seed of the latent noise of one iteration on one process (so resume needs no RNG replay)."""
    return (int(seed) * 1_000_003 + int(rank) * 7_919 + int(iteration)) % (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int, world_size: int = 1, rank: int = 0) -> list[int]:
    """This process's patch order in one epoch: a pure function of (seed, epoch), via DistributedSampler."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(iter(sampler))


def _rng_states() -> dict:
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": [int(x) for x in np_state[1]], "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"].cpu())
    npst = states["numpy"]
    np.random.set_state(("MT19937", np.array(npst["key"], dtype=np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_sample_grid(images_u8: np.ndarray, path: Path, ncols: int = 8, pad: int = 2) -> Path:
    """Tile uint8 patches into one PNG (fast, no matplotlib) for watching training."""
    from PIL import Image

    n, h, w = images_u8.shape
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 255, np.uint8)
    for i, img in enumerate(images_u8):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return atomic_write(path, lambda fh: Image.fromarray(grid).save(fh, format="PNG"))


class LossLog:
    """Append-only per-iteration CSV; on resume, rows after the checkpoint's iteration are dropped."""

    def __init__(self, path: Path, keep_through_iteration: int | None) -> None:
        self.path = Path(path)
        header = ",".join(LOG_COLUMNS) + "\n"
        kept: list[str] = []
        if keep_through_iteration and self.path.exists():
            with open(self.path, newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) != len(LOG_COLUMNS) or row[0] == LOG_COLUMNS[0]:
                        continue  # header or a line cut by a kill
                    try:
                        if int(row[0]) <= keep_through_iteration:
                            kept.append(",".join(row) + "\n")
                    except ValueError:
                        continue
        atomic_write_text(self.path, header + "".join(kept))
        self._fh = open(self.path, "a", newline="")

    def append(self, values: tuple) -> None:
        self._fh.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in values) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _load_resume_state(paths: dict[str, Path], arch: Architecture) -> tuple[dict | None, Path | None]:
    """Newest loadable checkpoint (last, else previous with a warning); architecture must match."""
    errors = []
    for key in ("last", "previous"):
        path = paths[key]
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=3)
            continue
        check_architecture(state, arch, path)  # a wrong model is an error, not a fallback
        if errors:
            warnings.warn(f"resuming from {path} (iteration {state['iteration']}) because the newer checkpoint is unusable",
                          stacklevel=3)
        return state, path
    if errors:
        raise CheckpointError(
            "no usable checkpoint to resume from: " + " | ".join(errors)
            + " -- start fresh with resume=False (the old log and samples are replaced)"
        )
    return None, None


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


def training_data_fingerprint(store_path: str | os.PathLike,
                              lesion_classes: list[str] | None = None) -> str:
    """SHA-256 over the per-patch checksums of the patches a checkpoint is trained on.

    Only the patches of ``lesion_classes`` (None: all) count, so a changed class filter, like a
    changed store, makes a checkpoint's fingerprint differ and training start afresh.
    """
    import hashlib

    store = open_patch_store(store_path)
    rows = select_lesion_rows(store.manifest, lesion_classes, store_path)
    checksums = store.manifest["checksum"].astype(str).to_numpy()[rows]
    text = f"{store.patch_size}\n" + "\n".join(checksums)
    return hashlib.sha256(text.encode()).hexdigest()


def load_training_patches(store_path: str | os.PathLike,
                          lesion_classes: list[str] | None = None) -> torch.Tensor:
    """The lesion patches of a store (only ``lesion_classes``; None: all) as uint8 (N, size, size).

    Errors name the store: a patch size the DCGAN cannot use, an unknown class (the message lists
    the store's classes with their counts) or a filter that leaves no patch.
    """
    store = open_patch_store(store_path)
    size = store.patch_size
    if size < 32 or size & (size - 1):
        raise PatchStoreError(
            f"patch store {store_path} holds {size}x{size} patches; the DCGAN needs a power of two >= 32 "
            "(extract patches at 32, 64, 128 ... pixels)"
        )
    if lesion_classes is None:
        return torch.from_numpy(store.load())
    rows = select_lesion_rows(store.manifest, lesion_classes, store_path, purpose="to train the DCGAN on")
    return torch.from_numpy(store.load(rows))


# ------------------------------------------------------------------ training


def train_dcgan(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train the DCGAN on the lesion patches of ``store_path``; write everything under ``out_dir``.

    With ``resume`` the newest usable checkpoint in ``out_dir/checkpoints`` is continued (a
    corrupt ``last.pt`` falls back to ``previous.pt`` with a warning); otherwise training starts
    from scratch and replaces the old log, samples and checkpoints.
    """
    cfg = config or TrainConfig()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    rank, world, device, initialised_here = _distributed_setup(cfg.device)
    try:
        return _train(store_path, Path(out_dir), cfg, resume, rank, world, device)
    finally:
        if initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(store_path, out_dir: Path, cfg: TrainConfig, resume: bool, rank: int, world: int,
           device: torch.device) -> TrainResult:
    is_main = rank == 0
    paths = dcgan_paths(out_dir)
    data = load_training_patches(store_path, cfg.lesion_classes)
    n = int(data.shape[0])
    arch = Architecture(image_size=int(data.shape[1]), latent_dim=cfg.latent_dim, ngf=cfg.ngf, ndf=cfg.ndf)
    per_process = n // world
    iters_per_epoch = per_process // cfg.batch_size
    if iters_per_epoch < 1:
        raise ValueError(
            f"batch_size={cfg.batch_size} is larger than the data: {store_path} holds {n} patches"
            + (f" of the classes {cfg.lesion_classes}" if cfg.lesion_classes else "")
            + (f", {per_process} per process for {world} processes" if world > 1 else "")
            + f"; set batch_size <= {max(per_process, 1)} or extract more lesion patches"
        )
    total = int(cfg.max_iterations) if cfg.max_iterations else cfg.epochs * iters_per_epoch

    seed_everything(cfg.seed)
    generator = Generator(arch).to(device)
    discriminator = Discriminator(arch).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    fixed_noise = torch.randn(cfg.n_fixed_samples, arch.latent_dim,
                              generator=torch.Generator().manual_seed(cfg.seed + 12_345))

    start_it = 0
    state, state_path = (None, None)
    fingerprint = training_data_fingerprint(store_path, cfg.lesion_classes)
    if resume:
        state, state_path = _load_resume_state(paths, arch)
        if state is not None and state.get("data_fingerprint", fingerprint) != fingerprint:
            warnings.warn(f"{state_path} was trained on other patches than {store_path} holds now "
                          f"for lesion_classes={cfg.lesion_classes or 'all'} (stage 01 was rerun or changed, "
                          "or the class filter changed): starting training afresh", stacklevel=2)
            state, state_path = None, None
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        fixed_noise = state["fixed_noise"].cpu()
        _restore_rng_states(state["rng"])
        start_it = int(state["iteration"])
        old = state.get("config", {})
        changed = [k for k in ("batch_size", "seed", "lr_g", "lr_d", "beta1", "label_smoothing")
                   if k in old and old[k] != getattr(cfg, k)]
        if changed or state.get("world_size", 1) != world:
            warnings.warn(f"resuming {state_path} with changed settings {changed or ['world_size']}: "
                          "training continues but is not a replay of one uninterrupted run", stacklevel=2)
    elif is_main:
        for key in ("last", "previous"):
            paths[key].unlink(missing_ok=True)
        if paths["samples"].exists():
            for old_sample in paths["samples"].glob("iter_*"):
                old_sample.unlink()

    data = data.to(device)
    fixed_noise_dev = fixed_noise.to(device)
    if world > 1:
        ddp_ids = [device.index] if device.type == "cuda" else None
        g_train: nn.Module = nn.parallel.DistributedDataParallel(generator, device_ids=ddp_ids)
        d_train: nn.Module = nn.parallel.DistributedDataParallel(discriminator, device_ids=ddp_ids)
    else:
        g_train, d_train = generator, discriminator
    generator.train()
    discriminator.train()
    criterion = nn.BCEWithLogitsLoss()
    real_target = torch.full((cfg.batch_size,), 1.0 - cfg.label_smoothing, device=device)
    fake_target = torch.zeros(cfg.batch_size, device=device)
    gen_target = torch.ones(cfg.batch_size, device=device)

    log = LossLog(paths["loss_log"], keep_through_iteration=start_it if state is not None else None) if is_main else None
    if is_main:
        paths["samples"].mkdir(parents=True, exist_ok=True)
    elapsed_before = float(state.get("elapsed_s", 0.0)) if state is not None else 0.0

    def checkpoint(iteration: int) -> None:
        if not is_main:
            return
        save_checkpoint_atomic({
            "format": CHECKPOINT_FORMAT,
            "architecture": asdict(arch),
            "config": asdict(cfg),
            "iteration": iteration,
            "epoch": iteration // iters_per_epoch,
            "iters_per_epoch": iters_per_epoch,
            "world_size": world,
            "n_patches": n,
            "lesion_classes": cfg.lesion_classes,
            "data_fingerprint": fingerprint,
            "elapsed_s": elapsed_before + time.perf_counter() - t_start,
            "generator": generator.state_dict(),
            "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "fixed_noise": fixed_noise,
            "rng": _rng_states(),
            "data_order": {"rule": "DistributedSampler(shuffle, drop_last).set_epoch(epoch)", "seed": cfg.seed},
        }, paths["last"])

    def sample(iteration: int) -> None:
        if not is_main:
            return
        generator.eval()
        with torch.no_grad():
            images = model_to_uint8(generator(fixed_noise_dev))
        generator.train()
        np.save(paths["samples"] / f"iter_{iteration:06d}.npy", images)
        save_sample_grid(images, paths["samples"] / f"iter_{iteration:06d}.png")

    bar = tqdm(total=total, initial=start_it, desc="DCGAN", unit="it", dynamic_ncols=True,
               mininterval=5.0, disable=not (cfg.progress and is_main), file=sys.stderr)
    t_start = time.perf_counter()
    it = start_it
    order: list[int] = []
    order_epoch = -1
    collapse_run = 0
    stopped = "finished" if start_it < total else "already_done"
    if is_main and start_it == 0 and total > 0:
        sample(0)
    noise_gen = torch.Generator()
    try:
        while it < total:
            epoch, batch = divmod(it, iters_per_epoch)
            if epoch != order_epoch:
                order = epoch_order(n, cfg.seed, epoch, world, rank)
                order_epoch = epoch
            idx = torch.as_tensor(order[batch * cfg.batch_size:(batch + 1) * cfg.batch_size], device=device)
            real = uint8_to_model(data[idx])
            noise_gen.manual_seed(noise_seed(cfg.seed, rank, it))
            z = torch.randn(cfg.batch_size, arch.latent_dim, generator=noise_gen).to(device)
            sigma = cfg.instance_noise * max(0.0, 1.0 - it / total)
            if sigma > 0:
                real = real + sigma * torch.randn(real.shape, generator=noise_gen).to(device)

            # (1) D: maximise log D(x) + log(1 - D(G(z)))
            opt_d.zero_grad(set_to_none=True)
            out_real = d_train(real)
            err_d_real = criterion(out_real, real_target)
            err_d_real.backward()
            fake = g_train(z)
            if sigma > 0:
                fake = fake + sigma * torch.randn(fake.shape, generator=noise_gen).to(device)
            out_fake = d_train(fake.detach())
            err_d_fake = criterion(out_fake, fake_target)
            err_d_fake.backward()
            opt_d.step()
            # (2) G: maximise log D(G(z)) (non-saturating)
            opt_g.zero_grad(set_to_none=True)
            out_gen = d_train(fake)
            err_g = criterion(out_gen, gen_target)
            err_g.backward()
            opt_g.step()

            stats = torch.stack([
                (err_d_real + err_d_fake).detach(), err_g.detach(),
                torch.sigmoid(out_real.detach()).mean(), torch.sigmoid(out_fake.detach()).mean(),
                torch.sigmoid(out_gen.detach()).mean(),
            ]).tolist()
            it += 1
            loss_d, loss_g, d_x, d_g_z1, d_g_z2 = stats
            elapsed = time.perf_counter() - t_start
            if log is not None:
                log.append((it, epoch, batch, loss_d, loss_g, d_x, d_g_z1, d_g_z2, round(elapsed_before + elapsed, 4)))

            # stop decisions (agreed across processes under DDP)
            code = 0
            if not all(math.isfinite(v) for v in stats):
                code = 3
            else:
                collapse_run = collapse_run + 1 if d_g_z2 < cfg.collapse_threshold else 0
                if collapse_run >= cfg.collapse_patience:
                    code = 2
                elif cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s and it < total:
                    code = 1
            if world > 1:
                flag = torch.tensor([code], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                code = int(flag.item())
            if code >= 2:
                last_good = paths["last"] if paths["last"].exists() else None
                what = ("loss_D / loss_G became NaN or infinite" if code == 3 else
                        f"the discriminator collapsed: D(G(z)) < {cfg.collapse_threshold} for "
                        f"{cfg.collapse_patience} iterations, so G gets no useful gradient")
                raise TrainingDivergedError(
                    f"DCGAN training stopped at iteration {it}: {what} (last values: loss_D={loss_d:.4g}, "
                    f"loss_G={loss_g:.4g}, D(x)={d_x:.4g}, D(G(z))={d_g_z2:.4g}). "
                    f"Last good checkpoint: {last_good or 'none yet'}. Try a lower lr_d, label_smoothing=0.1, "
                    "or a smaller ndf; resume=True continues from the last good checkpoint."
                )
            if it % cfg.sample_every == 0 or it == total or code == 1:
                sample(it)
            if it % cfg.checkpoint_every == 0 or it == total or code == 1:
                checkpoint(it)
            if it % 10 == 0 or it == total:
                bar.set_postfix(loss_D=f"{loss_d:.3f}", loss_G=f"{loss_g:.3f}", D_x=f"{d_x:.2f}",
                                D_G_z=f"{d_g_z2:.2f}", refresh=False)
            bar.update(1)
            if code == 1:
                stopped = "time_budget"
                if is_main:
                    bar.write(f"time budget of {cfg.time_budget_s:.0f} s reached at iteration {it}/{total}: "
                              f"checkpoint written; resume=True continues")
                break
    finally:
        bar.close()
        if log is not None:
            log.close()
    seconds = time.perf_counter() - t_start
    done = it - start_it
    result = TrainResult(
        iterations_done=it, total_iterations=total, start_iteration=start_it, stopped=stopped,
        checkpoint=paths["last"], loss_log=paths["loss_log"], samples_dir=paths["samples"],
        seconds=seconds, images_per_s=done * cfg.batch_size * world / seconds if seconds > 0 and done else 0.0,
        n_patches=n, world_size=world,
    )
    if is_main:
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
        summary.update(config=asdict(cfg), architecture=asdict(arch), iters_per_epoch=iters_per_epoch,
                       device=str(device), store=str(store_path))
        atomic_write_text(paths["summary"], json.dumps(summary, indent=2))
    return result


def read_loss_log(path: str | os.PathLike):
    """The loss log as a DataFrame (rows cut by a kill are skipped)."""
    import pandas as pd

    return pd.read_csv(path, on_bad_lines="skip")


# ------------------------------------------------------------------ command line


def _parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(description="Train the lesion DCGAN (single process, or under torchrun for DDP).")
    parser.add_argument("--run-dir", help="run folder: reads patches/lesion.zarr, writes dcgan/")
    parser.add_argument("--store", help="lesion patch store (default: <run-dir>/patches/lesion.zarr)")
    parser.add_argument("--out-dir", help="output folder (default: <run-dir>/dcgan)")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false")
            continue
        if f.name == "lesion_classes":
            parser.add_argument(flag, dest=f.name, nargs="+", default=None, metavar="CLASS",
                                help="train only on these lesion classes, e.g. --lesion-classes mass "
                                     "(default: every class in the store)")
            continue
        kind = {"int": int, "float": float, "str": str}[str(f.type).split("|")[0].strip()]
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default)
    args = parser.parse_args(argv)
    if not (args.run_dir or (args.store and args.out_dir)):
        parser.error("give --run-dir, or both --store and --out-dir")
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    return args, cfg


def main(argv: list[str] | None = None) -> int:
    from mammo_lib.run_folder import lesion_store_path, stage_dir

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
