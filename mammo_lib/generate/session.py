"""Stage 02: one training session of the DCGAN (models, optimisers, data, one iteration, files).

:func:`mammo_lib.generate.training.train_dcgan` creates a :class:`Session` per call (per process
under torchrun); what an iteration does and why is described in :mod:`mammo_lib.generate.training`.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mammo_lib.clock import now_iso
from mammo_lib.generate.config import (
    REPLAY_SETTINGS,
    TrainConfig,
)
from mammo_lib.generate.fastgan import hinge_d_loss, hinge_g_loss
from mammo_lib.generate.figures import save_sample_grid
from mammo_lib.generate.files import (
    LossLog,
    TimedCall,
    TrainingSummary,
    append_timing,
    clear_outputs,
    dcgan_paths,
    load_resume_state,
    load_training_patches,
    training_data_fingerprint,
    write_summary,
)
from mammo_lib.generate.model import (
    CHECKPOINT_FORMAT,
    Architecture,
    Discriminator,
    Generator,
    draw_noise_maps,
    model_to_uint8,
    save_checkpoint_atomic,
    uint8_to_model,
)
from mammo_lib.generate.regularisers import (
    GeneratorEMA,
    SpectralDiscriminator,
    diff_augment,
    parse_policy,
    r1_penalty,
    spectral_loss,
)
from mammo_lib.generate.streams import epoch_order, torch_stream
from mammo_lib.progress import TrainingProgress
from mammo_lib.run_folder import run_relative

# latent inputs (2 batches of 64) over which the EMA of G's batch-norm statistics are recomputed before it is
# sampled or saved: about 2 % of the training time at the default profile's sample and checkpoint intervals
EMA_CALIBRATION_BATCH, EMA_CALIBRATION_BATCHES = 64, 2

class StopCode(IntEnum):
    """What one iteration's check says (the numbers order severity, for the all-reduce of several
    processes)."""

    GO_ON = 0
    TIME_BUDGET = 1
    D_COLLAPSED = 2
    NOT_FINITE = 3


class IterationStats(NamedTuple):
    """One iteration's losses and discriminator outputs, as the loss log records them."""

    loss_d: float
    loss_g: float
    d_x: float
    d_g_z1: float
    d_g_z2: float


# recorded in every checkpoint: the text is kept as first written (when the module was
# mammo_lib.dcgan_rng) so that outputs stay byte-identical; the rule now lives in mammo_lib.generate.streams
RANDOM_STREAMS_RULE = ("every stream from numpy.random.SeedSequence([seed, sha256(purpose), *indices]) "
                       "(mammo_lib.dcgan_rng): init; fixed_noise; data_order(epoch); latent(rank, iteration); "
                       "g_noise(rank, iteration); fixed_g_noise; ema_batch_norm; instance_noise(rank, iteration); "
                       "augment(rank, iteration)")
# the stream the FastGAN adds, appended to the rule text in its checkpoints
FASTGAN_STREAMS_RULE = "; fastgan_part(rank, iteration)"


def device_name(device: torch.device) -> str:
    """The device's name for the training summary.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    str
        ``"cpu"`` (or the device type for other non-CUDA devices), or the CUDA device's name
        (``torch.cuda.get_device_name``, e.g. "NVIDIA H100 80GB HBM3").
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


class TrainingDivergedError(RuntimeError):
    """Training stopped because the losses became NaN/inf or the discriminator collapsed."""


@dataclass
class TrainResult:
    """What a call of :func:`train_dcgan` did (``seconds``, ``images_per_s``: wall-clock, this call)."""

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


# ------------------------------------------------------------------ one training session


def _iterations_per_epoch(n: int, cfg: TrainConfig, world: int, store_path) -> int:
    per_process = n // world
    if per_process // cfg.batch_size < 1:
        raise ValueError(
            f"batch_size={cfg.batch_size} is larger than the data: {store_path} holds {n} patches"
            + (f" of the classes {cfg.lesion_classes}" if cfg.lesion_classes else "")
            + (f", {per_process} per process for {world} processes" if world > 1 else "")
            + f"; set batch_size <= {max(per_process, 1)} or extract more lesion patches"
        )
    return per_process // cfg.batch_size


class Session:
    """The models, optimisers, data and files of one call of :func:`train_dcgan`."""

    def __init__(self, store_path, out_dir: Path, cfg: TrainConfig, rank: int, world: int,
                 device: torch.device, on_checkpoint: Callable[[int, Path], None] | None = None) -> None:
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.on_checkpoint = on_checkpoint
        # bfloat16 autocast of G's and D's forward passes on CUDA only; losses, the spectral terms and
        # synthesis stay in float32, and on a CPU training is unchanged (bit-reproducible)
        self.amp = bool(cfg.amp) and device.type == "cuda"
        if self.amp and not torch.cuda.is_bf16_supported():
            warnings.warn(f"amp=True: {device_name(device)} has no native bfloat16; training runs in float32",
                          stacklevel=3)
            self.amp = False
        self.is_main = rank == 0
        self.store_path, self.out_dir = Path(store_path), out_dir
        self.paths = dcgan_paths(out_dir)
        data = load_training_patches(store_path, cfg.lesion_classes)
        self.n = int(data.shape[0])
        self.arch = Architecture(image_size=int(data.shape[1]), latent_dim=cfg.latent_dim, ngf=cfg.ngf, ndf=cfg.ndf,
                                 upsampling=cfg.upsampling, spectral_norm=cfg.spectral_norm,
                                 noise_injection=cfg.noise_injection, network=cfg.network,
                                 g_padding=cfg.g_padding, g_head_width=cfg.g_head_width)
        if cfg.r1_gamma > 0 and world > 1:
            raise ValueError("r1_gamma > 0 needs one process: the R1 penalty's double backward is not "
                             "synchronised by DistributedDataParallel")
        self.iters_per_epoch = _iterations_per_epoch(self.n, cfg, world, store_path)
        self.total = int(cfg.max_iterations) if cfg.max_iterations else cfg.epochs * self.iters_per_epoch
        self.fingerprint = training_data_fingerprint(store_path, cfg.lesion_classes)
        self.data = data.to(device)
        init = torch_stream(cfg.seed, "init")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.generator = Generator(self.arch, rng=init).to(device, memory_format=self.memory_format)
        self.discriminator = Discriminator(self.arch, rng=init).to(device, memory_format=self.memory_format)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.spectral_d = (SpectralDiscriminator(self.arch.image_size, rng=init).to(device)
                           if cfg.spectral_d_weight > 0 else None)
        self.opt_sd = (torch.optim.Adam(self.spectral_d.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
                       if self.spectral_d is not None else None)
        self.fixed_noise = torch.randn(cfg.n_fixed_samples, self.arch.latent_dim,
                                       generator=torch_stream(cfg.seed, "fixed_noise"))
        self.policy = parse_policy(cfg.diffaugment)
        self.ema = GeneratorEMA(self.generator, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self._ema_calibrated_at: int | None = None
        self.criterion = nn.BCEWithLogitsLoss()
        b = cfg.batch_size
        self.targets = (torch.full((b,), 1.0 - cfg.label_smoothing, device=device),
                        torch.zeros(b, device=device), torch.ones(b, device=device))
        self.start_it = 0
        self.resumed = False
        self.collapse_run = 0
        self._order: tuple[int, list[int]] = (-1, [])

    # ---------------------------------------------------------------- start: fresh or resumed

    def start(self, resume: bool) -> None:
        """Load the newest usable checkpoint (with ``resume``) or clear an earlier run's files."""
        state, state_path = (None, None)
        if resume:
            state, state_path = load_resume_state(self.paths, self.arch)
            if state is not None and state.get("data_fingerprint", self.fingerprint) != self.fingerprint:
                warnings.warn(f"{state_path} was trained on other patches than {self.store_path} holds now "
                              f"for lesion_classes={self.cfg.lesion_classes or 'all'} (stage 01 was rerun or "
                              "changed, or the class filter changed): starting training afresh", stacklevel=3)
                state = None
        if state is not None:
            self._load_state(state, state_path)
        elif self.is_main:
            clear_outputs(self.paths)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train: nn.Module = nn.parallel.DistributedDataParallel(self.generator, device_ids=ids)
            # FastGAN's decoders get gradients from real batches only
            self.d_train: nn.Module = nn.parallel.DistributedDataParallel(
                self.discriminator, device_ids=ids, find_unused_parameters=self.arch.network == "fastgan")
            self.sd_train = (nn.parallel.DistributedDataParallel(self.spectral_d, device_ids=ids)
                             if self.spectral_d is not None else None)
        else:
            self.g_train, self.d_train, self.sd_train = self.generator, self.discriminator, self.spectral_d
        self.generator.train()
        self.discriminator.train()

    def _load_state(self, state: dict, state_path: Path) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.spectral_d is not None and "spectral_discriminator" in state:
            self.spectral_d.load_state_dict(state["spectral_discriminator"])
            self.opt_sd.load_state_dict(state["opt_spectral_d"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state.get("generator_ema", state["generator"]))
        self.fixed_noise = state["fixed_noise"].cpu()
        self.start_it = int(state["iteration"])
        self.resumed = True
        old = state.get("config", {})
        defaults = TrainConfig()  # a setting an older checkpoint does not record had its default value
        changed = [k for k in REPLAY_SETTINGS if old.get(k, getattr(defaults, k)) != getattr(self.cfg, k)]
        if state.get("world_size", 1) != self.world:
            changed.append("world_size")
        old_total = (int(old["max_iterations"]) if old.get("max_iterations")
                     else int(old.get("epochs", defaults.epochs)) * self.iters_per_epoch)
        noisy = self.cfg.instance_noise > 0 or float(old.get("instance_noise", defaults.instance_noise)) > 0
        over_run = self.cfg.instance_noise_iterations is None  # a fixed horizon does not depend on the length
        if old_total != self.total and noisy and over_run:  # the instance-noise schedule runs over the whole length
            changed.append(f"total iterations {old_total} -> {self.total} (the instance noise anneals over them)")
        if changed:
            fresh = (" (the spectral discriminator starts afresh: the checkpoint holds none)"
                     if self.spectral_d is not None and "spectral_discriminator" not in state else "")
            warnings.warn(f"resuming {state_path} with changed settings {changed}{fresh}: "
                          "training continues but is not a replay of one uninterrupted run", stacklevel=4)

    # ---------------------------------------------------------------- one iteration

    def _real_batch(self, it: int) -> tuple[torch.Tensor, int, int]:
        epoch, batch = divmod(it, self.iters_per_epoch)
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.n, self.cfg.seed, epoch, self.world, self.rank))
        b = self.cfg.batch_size
        idx = torch.as_tensor(self._order[1][batch * b:(batch + 1) * b], device=self.device)
        return uint8_to_model(self.data[idx]).contiguous(memory_format=self.memory_format), epoch, batch

    def _noisy(self, images: torch.Tensor, sigma: float, rng: torch.Generator | None) -> torch.Tensor:
        if sigma <= 0 or rng is None:
            return images
        return images + sigma * torch.randn(images.shape, generator=rng).to(self.device)

    def _aug(self, images: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        return diff_augment(images, self.policy, rng) if rng is not None else images

    def _r1_term(self, real_in: torch.Tensor) -> torch.Tensor | float:
        if self.cfg.r1_gamma <= 0:
            return 0.0
        return 0.5 * self.cfg.r1_gamma * r1_penalty(self.discriminator, real_in)

    def _spectral_d_step(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """One update of the spectral discriminator on the clean real and fake batches (when on)."""
        if self.sd_train is None:
            return
        real_target, fake_target, _ = self.targets
        self.opt_sd.zero_grad(set_to_none=True)
        (self.criterion(self.sd_train(real), real_target)
         + self.criterion(self.sd_train(fake.detach()), fake_target)).backward()
        self.opt_sd.step()

    def _spectral_terms(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor | float:
        """The spectral terms of G's loss (0 when both are off)."""
        cfg, total = self.cfg, 0.0
        if cfg.spectral_loss_weight > 0:
            total = total + cfg.spectral_loss_weight * spectral_loss(fake, real)
        if self.sd_train is not None:
            total = total + cfg.spectral_d_weight * self.criterion(self.sd_train(fake), self.targets[2])
        return total

    def _d_real_loss(self, real_in: torch.Tensor, it: int) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits on the real batch and its loss on them: the non-saturating loss (DCGAN), or the
        hinge loss plus the reconstruction error of a quadrant drawn from the ``"fastgan_part"``
        stream (FastGAN)."""
        if self.arch.network == "fastgan":
            part = int(torch.randint(4, (1,), generator=torch_stream(self.cfg.seed, "fastgan_part", self.rank, it)))
            with self._autocast():
                out_real, reconstruction = self.d_train(real_in, part)
            out_real = out_real.float()
            return out_real, hinge_d_loss(out_real, None) + reconstruction.float()
        out_real = self._d(real_in)
        return out_real, self.criterion(out_real, self.targets[0])

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA when ``amp`` is on; a no-op context otherwise."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _d(self, images: torch.Tensor) -> torch.Tensor:
        """D's logits (B,) in float32."""
        with self._autocast():
            return self.d_train(images).float()

    def _g(self, z: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """G's images in float32."""
        with self._autocast():
            return self.g_train(z, noise).float()

    def _d_fake_loss(self, out_fake: torch.Tensor) -> torch.Tensor:
        if self.arch.network == "fastgan":
            return hinge_d_loss(None, out_fake)
        return self.criterion(out_fake, self.targets[1])

    def _g_adversarial_loss(self, out_gen: torch.Tensor) -> torch.Tensor:
        if self.arch.network == "fastgan":
            return hinge_g_loss(out_gen)
        return self.criterion(out_gen, self.targets[2])

    def step(self, it: int) -> tuple[list[float], int, int]:
        """Iteration ``it`` (0-based): D on a real and a fake batch, then G; returns the log values."""
        cfg = self.cfg
        real, epoch, batch = self._real_batch(it)
        z = torch.randn(cfg.batch_size, self.arch.latent_dim,
                        generator=torch_stream(cfg.seed, "latent", self.rank, it)).to(self.device)
        sigma = cfg.instance_noise * max(0.0, 1.0 - it / (cfg.instance_noise_iterations or self.total))
        noise_rng = torch_stream(cfg.seed, "instance_noise", self.rank, it) if sigma > 0 else None
        aug_rng = torch_stream(cfg.seed, "augment", self.rank, it) if self.policy else None

        # (1) D: maximise log D(x) + log(1 - D(G(z))) (or the hinge loss); DiffAugment on every image D sees
        self.opt_d.zero_grad(set_to_none=True)
        real_in = self._aug(self._noisy(real, sigma, noise_rng), aug_rng)
        out_real, err_d_real = self._d_real_loss(real_in, it)
        (err_d_real + self._r1_term(real_in)).backward()
        g_noise = draw_noise_maps(self.arch, cfg.batch_size, torch_stream(cfg.seed, "g_noise", self.rank, it),
                                  self.device) if self.arch.noise_injection else None
        fake_clean = self._g(z, g_noise)
        fake = self._noisy(fake_clean, sigma, noise_rng)
        self._spectral_d_step(real, fake_clean)
        out_fake = self._d(self._aug(fake.detach(), aug_rng))
        err_d_fake = self._d_fake_loss(out_fake)
        err_d_fake.backward()
        self.opt_d.step()
        # (2) G: maximise log D(G(z)) (non-saturating), or D(G(z)) (hinge)
        self.opt_g.zero_grad(set_to_none=True)
        out_gen = self._d(self._aug(fake, aug_rng))
        err_g = self._g_adversarial_loss(out_gen)
        (err_g + self._spectral_terms(fake_clean, real)).backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.generator)

        stats = IterationStats(*torch.stack([
            (err_d_real + err_d_fake).detach(), err_g.detach(),
            torch.sigmoid(out_real.detach()).mean(), torch.sigmoid(out_fake.detach()).mean(),
            torch.sigmoid(out_gen.detach()).mean(),
        ]).tolist())
        return stats, epoch, batch

    def stop_code(self, stats: IterationStats, it: int, elapsed: float) -> StopCode:
        """Whether to go on, stop at the time budget, or stop a diverged run (the most severe code
        of all processes wins)."""
        cfg = self.cfg
        code = StopCode.GO_ON
        if not all(math.isfinite(v) for v in stats):
            code = StopCode.NOT_FINITE
        else:
            self.collapse_run = self.collapse_run + 1 if stats.d_g_z2 < cfg.collapse_threshold else 0
            if self.collapse_run >= cfg.collapse_patience:
                code = StopCode.D_COLLAPSED
            elif cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s and it < self.total:
                code = StopCode.TIME_BUDGET
        if self.world > 1:
            flag = torch.tensor([int(code)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            code = StopCode(int(flag.item()))
        return code

    def diverged(self, code: StopCode, it: int, stats: IterationStats) -> TrainingDivergedError:
        cfg = self.cfg
        loss_d, loss_g, d_x, d_g_z2 = stats.loss_d, stats.loss_g, stats.d_x, stats.d_g_z2
        last_good = self.paths["last"] if self.paths["last"].exists() else None
        what = ("loss_D / loss_G became NaN or infinite" if code == StopCode.NOT_FINITE else
                f"the discriminator collapsed: D(G(z)) < {cfg.collapse_threshold} for "
                f"{cfg.collapse_patience} iterations, so G gets no useful gradient")
        return TrainingDivergedError(
            f"DCGAN training stopped at iteration {it}: {what} (last values: loss_D={loss_d:.4g}, "
            f"loss_G={loss_g:.4g}, D(x)={d_x:.4g}, D(G(z))={d_g_z2:.4g}). "
            f"Last good checkpoint: {last_good or 'none yet'}. Try a lower lr_d, label_smoothing=0.1, "
            "or a smaller ndf; resume=True continues from the last good checkpoint."
        )

    # ---------------------------------------------------------------- files (rank 0)

    def checkpoint(self, iteration: int) -> None:
        cfg = self.cfg
        self._recalibrate_ema(iteration)
        save_checkpoint_atomic({
            "format": CHECKPOINT_FORMAT,
            "architecture": asdict(self.arch),
            "config": asdict(cfg),
            "iteration": iteration,
            "epoch": iteration // self.iters_per_epoch,
            "iters_per_epoch": self.iters_per_epoch,
            "world_size": self.world,
            "n_patches": self.n,
            "lesion_classes": cfg.lesion_classes,
            "data_fingerprint": self.fingerprint,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "fixed_noise": self.fixed_noise,
            **({"generator_ema": self.ema.model.state_dict()} if self.ema is not None else {}),
            **({"spectral_discriminator": self.spectral_d.state_dict(), "opt_spectral_d": self.opt_sd.state_dict()}
               if self.spectral_d is not None else {}),
            "random_streams": {"rule": RANDOM_STREAMS_RULE + (FASTGAN_STREAMS_RULE if cfg.network == "fastgan" else ""),
                               "seed": cfg.seed},
        }, self.paths["last"])
        if self.on_checkpoint is not None:
            self.on_checkpoint(iteration, self.paths["last"])

    def _recalibrate_ema(self, iteration: int) -> None:
        """Batch-norm statistics of the EMA of G for its own weights, before it is sampled or saved."""
        if self.ema is None or self._ema_calibrated_at == iteration:
            return
        rng = torch_stream(self.cfg.seed, "ema_batch_norm")

        def draw() -> tuple:
            z = torch.randn(EMA_CALIBRATION_BATCH, self.arch.latent_dim, generator=rng).to(self.device)
            return z, draw_noise_maps(self.arch, EMA_CALIBRATION_BATCH, rng, self.device)

        self.ema.recalibrate_batch_norm(draw, n_batches=EMA_CALIBRATION_BATCHES)
        self._ema_calibrated_at = iteration

    def sample(self, iteration: int) -> None:
        """Fixed-noise samples from the generator synthesis will use (the EMA one when on)."""
        self._recalibrate_ema(iteration)
        model = self.ema.model if self.ema is not None else self.generator
        model.eval()
        with torch.no_grad():
            maps = draw_noise_maps(self.arch, len(self.fixed_noise), torch_stream(self.cfg.seed, "fixed_g_noise"),
                                   self.device) if self.arch.noise_injection else None
            images = model_to_uint8(model(self.fixed_noise.to(self.device), maps))
        self.generator.train()
        self.paths["samples"].mkdir(parents=True, exist_ok=True)
        np.save(self.paths["samples"] / f"iter_{iteration:06d}.npy", images)
        save_sample_grid(images, self.paths["samples"] / f"iter_{iteration:06d}.png")

    def save_outputs(self, it: int, code: StopCode) -> None:
        """Samples and checkpoint when due (every n iterations, at the end, at a time-budget stop)."""
        if not self.is_main:
            return
        last = it == self.total or code == StopCode.TIME_BUDGET
        if it % self.cfg.sample_every == 0 or last:
            self.sample(it)
        if it % self.cfg.checkpoint_every == 0 or last:
            self.checkpoint(it)

    # ---------------------------------------------------------------- the loop

    def run(self) -> TrainResult:
        cfg = self.cfg
        log = (LossLog(self.paths["loss_log"], keep_through_iteration=self.start_it if self.resumed else None)
               if self.is_main else None)
        progress = TrainingProgress(self.total, self.start_it, cfg.progress and self.is_main)
        started_utc, t_start = now_iso(), time.perf_counter()
        it = self.start_it
        stopped = "finished" if it < self.total else "already_done"
        if self.is_main and it == 0 and self.total > 0:
            self.sample(0)
        try:
            while it < self.total:
                stats, epoch, batch = self.step(it)
                it += 1
                if log is not None:
                    log.append((it, epoch, batch, *stats))
                code = self.stop_code(stats, it, time.perf_counter() - t_start)
                if code in (StopCode.D_COLLAPSED, StopCode.NOT_FINITE):
                    raise self.diverged(code, it, stats)
                self.save_outputs(it, code)
                progress.update(it, stats)
                if code == StopCode.TIME_BUDGET:
                    stopped = "time_budget"
                    if self.is_main:
                        progress.write(f"time budget of {cfg.time_budget_s:g} s reached at iteration "
                                       f"{it}/{self.total}: checkpoint written; resume=True continues")
                    break
        finally:
            progress.close()
            if log is not None:
                log.close()
        seconds = time.perf_counter() - t_start
        done = it - self.start_it
        result = TrainResult(
            iterations_done=it, total_iterations=self.total, start_iteration=self.start_it, stopped=stopped,
            checkpoint=self.paths["last"], loss_log=self.paths["loss_log"], samples_dir=self.paths["samples"],
            seconds=seconds,
            images_per_s=done * cfg.batch_size * self.world / seconds if seconds > 0 and done else 0.0,
            n_patches=self.n, world_size=self.world,
        )
        if self.is_main:
            self.write_records(result, started_utc)
        return result

    def write_records(self, result: TrainResult, started_utc: str) -> None:
        """``training_summary.json`` (no times, paths relative to the run folder) and ``timings.json``."""
        run_dir = self.out_dir.parent
        summary = TrainingSummary(
            iterations_done=result.iterations_done, total_iterations=result.total_iterations,
            start_iteration=result.start_iteration, stopped=result.stopped,
            checkpoint=run_relative(Path(result.checkpoint).resolve(), run_dir, outside="absolute"),
            loss_log=run_relative(Path(result.loss_log).resolve(), run_dir, outside="absolute"),
            samples_dir=run_relative(Path(result.samples_dir).resolve(), run_dir, outside="absolute"),
            store=run_relative(Path(self.store_path).resolve(), run_dir, outside="absolute"),
            n_patches=self.n, world_size=self.world, iters_per_epoch=self.iters_per_epoch,
            device=self.device.type, device_name=device_name(self.device), amp=self.amp,
            config=asdict(self.cfg), architecture=asdict(self.arch),
        )
        write_summary(self.paths["summary"], summary)
        append_timing(self.paths["timings"], TimedCall(
            start_iteration=result.start_iteration, end_iteration=result.iterations_done,
            seconds=round(result.seconds, 3), images_per_s=round(result.images_per_s, 2),
            started_utc=started_utc, finished_utc=now_iso(), stopped=result.stopped,
        ))
