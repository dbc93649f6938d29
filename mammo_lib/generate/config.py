"""Stage 02 settings: :class:`TrainConfig`, how they differ from the paper's DCGAN, and their
command-line options.

The defaults of :class:`TrainConfig` are the DCGAN of the paper (latent 200, batch 64, widths 64)
trained as in ``pytorch/examples/dcgan`` (Adam, lr 2e-4, beta1 0.5), with no extras; every
other value is a deviation that :func:`deviations_from_paper` names and
:func:`training_plan_markdown` describes in notebook 02, generated from the values themselves.

References
----------
Radford, Metz & Chintala, ICLR 2016; ``pytorch/examples/dcgan/main.py``.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import dataclass, fields

from mammo_lib.generate.model import check_generator_options
from mammo_lib.generate.regularisers import parse_policy
from mammo_lib.sources.lesion_classes import normalise_lesion_classes

# settings whose change makes a resumed run differ from one uninterrupted run
REPLAY_SETTINGS = ("batch_size", "seed", "lr_g", "lr_d", "beta1", "beta2", "label_smoothing", "instance_noise",
                   "instance_noise_iterations",
                   "diffaugment", "ema_decay", "r1_gamma", "channels_last", "spectral_loss_weight",
                   "spectral_d_weight", "amp")


@dataclass
class TrainConfig:
    """Training settings; defaults are the paper's (latent 200, batch 64) and DCGAN's (Adam 2e-4, 0.5).

    Attributes
    ----------
    epochs : int
        Passes over the training patches (ignored when ``max_iterations`` is set).
    max_iterations : int or None
        Iterations (one D and one G update each) to train in total.
    batch_size : int
        Real and fake images per iteration, per process under DDP.
    latent_dim, ngf, ndf : int
        Length of z; base widths of G and D (see :class:`mammo_lib.generate.model.Architecture`).
    lr_g, lr_d, beta1, beta2 : float
        Adam settings of G and D.
    label_smoothing : float
        One-sided: D's target for real images is ``1 - label_smoothing``, in [0, 0.5).
    instance_noise : float
        Standard deviation (in model units, [-1, 1] images) of Gaussian noise added to D's
        inputs, annealed linearly to 0 over the run (or over ``instance_noise_iterations``).
    instance_noise_iterations : int or None
        Iterations over which the instance noise anneals to 0 (None: the whole run). With a
        fixed number, training does not depend on the run's length: a run stopped at any
        iteration is the longer run's checkpoint at that iteration, and a run can be extended.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    checkpoint_every, sample_every : int
        Iterations between checkpoints and between fixed-noise sample sets.
    n_fixed_samples : int
        Latent vectors of the sample sets.
    seed : int
        Study seed (>= 0), the root of every random stream.
    time_budget_s : float or None
        Wall-clock seconds after which training stops cleanly at a checkpoint.
    num_threads : int or None
        torch CPU threads during training (restored afterwards; None: leave torch's choice).
    collapse_patience : int
        Iterations with D(G(z)) below ``collapse_threshold`` (a probability) that stop training.
    progress : bool
        Report progress (a bar on a terminal, plain lines elsewhere).
    lesion_classes : list of str or None
        Train only on these lesion classes (None: all).
    upsampling : {"transposed", "resize_conv", "bilinear_conv"}
        G's x2 upsampling: DCGAN's transposed convolutions, or nearest-neighbour (bilinear)
        upsampling + 3x3 convolution against checkerboard artefacts (Odena et al., Distill 2016).
    g_head_width : int
        Channels of one more G layer at full size (a 3x3 convolution makes the image from them;
        0: none, the DCGAN's last upsampling convolution makes the image; needs resize-convolutions).
    g_padding : {"zeros", "reflect"}
        Padding of G's 3x3 convolutions; reflection avoids the dark frame and border streaks of
        zero padding (needs resize-convolutions).
    spectral_norm : bool
        Spectral normalisation of D's convolutions, without batch norm in D (Miyato et al.,
        ICLR 2018).
    noise_injection : bool
        Per-pixel Gaussian noise inputs to G after each upsampling convolution, scaled by learnt
        per-channel weights (Karras, Laine & Aila, CVPR 2019, "noise inputs" of StyleGAN): fine
        stochastic texture without spending latent capacity on it.
    spectral_loss_weight : float
        Weight of a spectral term in G's loss: the squared difference of the batch-mean radial
        log power spectra of G's batch and the real batch (0 off; after Durall, Keuper & Keuper,
        CVPR 2020, against the spectral deficits of up-convolutions).
    spectral_d_weight : float
        Weight, in G's loss, of a second discriminator that judges each image's radial log power
        profile alone (0 off; after Jung & Keuper, AAAI 2021); it learns at ``lr_d``.
    diffaugment : str
        Comma-separated DiffAugment policies applied to every image D sees, real and fake:
        ``color``, ``translation``, ``cutout`` ("" off; Zhao et al., NeurIPS 2020).
    ema_decay : float
        Decay of an exponential moving average of G's weights, used for samples and synthesis
        (0 off; e.g. 0.999; Karras et al., ICLR 2018); its batch-norm running statistics are
        recomputed for the averaged weights before it is sampled or saved (Izmailov et al., UAI 2018).
    r1_gamma : float
        Weight gamma of the R1 penalty gamma/2 E||grad_x D(x)||^2 on real images (0 off;
        Mescheder et al., ICML 2018); single process only.
    amp : bool
        Automatic mixed precision on CUDA: G's and D's forward passes under bfloat16 autocast
        (no loss scaling needed, unlike float16); losses, the spectral terms and synthesis stay in
        float32. Ignored on a CPU, where training stays bit-reproducible.
    network : {"dcgan", "fastgan"}
        The networks: the DCGAN of Radford et al. (ICLR 2016), or a light FastGAN (Liu et al.,
        ICLR 2021; :mod:`mammo_lib.generate.fastgan`): G with skip-layer excitation and gated
        linear units, a residual D that also reconstructs real patches from its features (an L1
        term in D's loss), and the hinge loss instead of the non-saturating one, so
        ``label_smoothing`` is not used; FastGAN's G always resize-convolves (bilinearly with
        ``upsampling="bilinear_conv"``, else by nearest neighbour) and has no ``g_head_width`` layer.
    channels_last : bool
        Train G and D in torch's channels-last memory format: the same model, computed by other
        (on one CPU thread about 1.2x faster for transposed and 1.7x for resize-convolution G at
        128 px, widths 16) but equally deterministic kernels; results differ in the last bits
        from the default format, so a resumed run must keep the setting. Synthesis always
        runs in the default format.

    Two time-scale learning rates (Heusel et al., NeurIPS 2017) are ``lr_d`` != ``lr_g``.
    """

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
    instance_noise_iterations: int | None = None  # anneal over this many iterations (None: the whole run)
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
    # options for few training patches, all off in the paper's DCGAN
    upsampling: str = "transposed"  # or "resize_conv" (Odena et al. 2016)
    spectral_norm: bool = False  # spectral normalisation in D, no batch norm there (Miyato et al. 2018)
    noise_injection: bool = False  # per-pixel noise inputs to G (Karras et al. 2019)
    spectral_loss_weight: float = 0.0  # > 0: spectral term in G's loss (Durall et al. 2020)
    spectral_d_weight: float = 0.0  # > 0: a spectral discriminator's term in G's loss (Jung & Keuper 2021)
    diffaugment: str = ""  # e.g. "color,translation,cutout" (Zhao et al. 2020)
    ema_decay: float = 0.0  # > 0: synthesise from an EMA of G's weights (Karras et al. 2018)
    r1_gamma: float = 0.0  # > 0: R1 penalty gamma/2 E|grad D(x)|^2 on real images (Mescheder et al. 2018)
    channels_last: bool = False  # train in torch's channels-last memory format (faster convolutions on CPU)
    network: str = "dcgan"  # or "fastgan" (Liu et al. 2021)
    g_padding: str = "zeros"  # or "reflect": padding of G's 3x3 convolutions
    g_head_width: int = 0  # > 0: one more G layer at full size, of this many channels
    amp: bool = False  # bfloat16 autocast of G and D on CUDA (ignored on a CPU)

    def __post_init__(self) -> None:
        self.lesion_classes = normalise_lesion_classes(self.lesion_classes)
        self.diffaugment = ",".join(parse_policy(self.diffaugment))
        check_generator_options(self.upsampling, self.network, self.g_padding, self.g_head_width)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        for name in ("spectral_loss_weight", "spectral_d_weight", "r1_gamma", "instance_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (0: off), got {value}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        for name in ("epochs", "batch_size", "checkpoint_every", "sample_every", "n_fixed_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.instance_noise_iterations is not None and self.instance_noise_iterations < 1:
            raise ValueError(f"instance_noise_iterations must be >= 1 or None, got {self.instance_noise_iterations}")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1 or None, got {self.max_iterations}")
        if int(self.seed) < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def _none_or(kind):
    def convert(text: str):
        return None if text.lower() in ("none", "null") else kind(text)
    convert.__name__ = kind.__name__
    return convert


def _add_config_option(parser: argparse.ArgumentParser, name: str, hint, default) -> None:
    """One ``--option`` for a TrainConfig field, typed by its annotation."""
    flag = "--" + name.replace("_", "-")
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if hint is bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default)
    elif typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        parser.add_argument(flag, dest=name, nargs="+", type=item, default=default, metavar=name.upper(),
                            help=f"one or more values (default: {default})")
    elif hint in (int, float, str):
        parser.add_argument(flag, dest=name, type=_none_or(hint) if optional else hint, default=default,
                            help=f"{hint.__name__}{' or none' if optional else ''} (default: {default})")
    else:
        raise TypeError(f"TrainConfig.{name}: no command-line option for type {hint!r}")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add one ``--option`` per :class:`TrainConfig` field, typed by ``typing.get_type_hints``.

    ``int``/``float``/``str`` fields take a value (``none`` for an optional one), ``bool`` fields
    are ``--flag``/``--no-flag``, ``list[str]`` fields take one or more values.

    Raises
    ------
    TypeError
        When a field has a type with no command-line form (a new field needs one here).
    """
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        _add_config_option(parser, f.name, hints[f.name], f.default)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed options (see :func:`add_config_options`)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


# ------------------------------------------------------------------ deviations from the paper

PAPER_CONFIG = TrainConfig()
# what a changed value means, for the fields that change the model or its training
_DEVIATION_TEXT = {
    "latent_dim": "latent vectors of length {v} (paper: {p})",
    "ngf": "generator base width {v} (paper: {p})",
    "ndf": "discriminator base width {v} (paper: {p})",
    "batch_size": "batches of {v} (paper: {p})",
    "lr_g": "generator learning rate {v:g} (DCGAN: {p:g})",
    "lr_d": "discriminator learning rate {v:g} (DCGAN: {p:g})",
    "beta1": "Adam beta1 {v:g} (DCGAN: {p:g})",
    "beta2": "Adam beta2 {v:g} (DCGAN: {p:g})",
    "label_smoothing": "one-sided label smoothing: D's target for real patches is {one_minus:g} "
                       "(Salimans et al. 2016)",
    "instance_noise": "instance noise on D's inputs, standard deviation {v:g} annealed linearly to 0 "
                      "(Sønderby et al. 2017)",
    "instance_noise_iterations": "the instance noise anneals to 0 over the first {v} iterations, whatever the run's "
                                 "length",
    "upsampling": "G upsamples by {resize} doubling + 3x3 convolution instead of transposed "
                  "convolutions (resize-convolution, Odena et al. 2016)",
    "g_padding": "G's 3x3 convolutions pad by {v} instead of zeros",
    "g_head_width": "one more layer of G at full size ({v} channels) before the image",
    "spectral_norm": "spectral normalisation in D, without batch norm there (Miyato et al. 2018)",
    "noise_injection": "G gets per-pixel Gaussian noise inputs with learnt per-channel scales after every "
                       "upsampling convolution (StyleGAN's noise inputs, Karras et al. 2019)",
    "spectral_loss_weight": "a spectral term in G's loss, weight {v:g}: the batch's radially averaged log power "
                            "spectrum is pulled towards the real batch's (after Durall et al. 2020)",
    "spectral_d_weight": "a second discriminator on each patch's radially averaged log power spectrum, its "
                         "term in G's loss weighted {v:g} (after Jung & Keuper 2021)",
    "diffaugment": "DiffAugment ({v}) of every image D sees, real and synthetic (Zhao et al. 2020)",
    "ema_decay": "samples and synthetic patches from an exponential moving average of G's weights, "
                 "decay {v:g} (Karras et al. 2018), its batch-norm statistics recomputed for the averaged "
                 "weights (as in Izmailov et al. 2018)",
    "r1_gamma": "R1 gradient penalty on real images, gamma {v:g} (Mescheder et al. 2018)",
    "network": "a light FastGAN instead of the DCGAN (Liu et al. 2021): G with skip-layer excitation and gated "
               "linear units, a residual D that also reconstructs the real patches from its features, the "
               "hinge loss",
}



def deviations_from_paper(cfg: TrainConfig) -> list[str]:
    """Every setting of ``cfg`` that differs from the paper's DCGAN, as one sentence each.

    Parameters
    ----------
    cfg : TrainConfig

    Returns
    -------
    list of str
        Empty for the paper's settings (the defaults of :class:`TrainConfig`); the training
        length, device, threads, mixed precision (``amp``: how the same model is computed on a GPU),
        seed and the class filter are not counted.
    """
    out = []
    for name, text in _DEVIATION_TEXT.items():
        value, paper = getattr(cfg, name), getattr(PAPER_CONFIG, name)
        if name == "instance_noise_iterations" and not cfg.instance_noise:
            continue  # no instance noise: its horizon changes nothing
        if value != paper:
            one_minus = 1.0 - value if name == "label_smoothing" else None
            resize = "bilinear" if value == "bilinear_conv" else "nearest-neighbour"
            out.append(text.format(v=value, p=paper, one_minus=one_minus, resize=resize))
    if cfg.lr_d != cfg.lr_g:
        out.append(f"two time-scale update rule: D learns at {cfg.lr_d:g}, G at {cfg.lr_g:g} (Heusel et al. 2017)")
    return out


def training_plan_markdown(cfg: TrainConfig, n_patches: int, image_size: int) -> str:
    """What a run of these settings will do, as Markdown for notebook 02 (generated, not typed).

    Parameters
    ----------
    cfg : TrainConfig
    n_patches : int
        Training patches (after the lesion-class filter).
    image_size : int
        Patch side in pixels.

    Returns
    -------
    str
        A paragraph (widths, batch, iterations, passes over the data, time budget) and the list
        of :func:`deviations_from_paper`.
    """
    per_epoch = max(1, n_patches // cfg.batch_size)
    total = int(cfg.max_iterations) if cfg.max_iterations else cfg.epochs * per_epoch
    text = (f"**This run** trains G and D (base widths {cfg.ngf} and {cfg.ndf}, latent vectors of length "
            f"{cfg.latent_dim}) on {n_patches:,} patches of {image_size}×{image_size} px in batches of "
            f"{cfg.batch_size}, for {total:,} iterations (about {total / per_epoch:,.1f} passes over the "
            "patches; one process).")
    if cfg.time_budget_s is not None:
        text += (f" A time budget of {cfg.time_budget_s:,g} s is a safety net: if it is reached first, "
                 "training stops at a checkpoint and the training cell says so.")
    deviations = deviations_from_paper(cfg)
    if not deviations:
        return text + "\n\nThese are the paper's DCGAN settings, with no deviation."
    return (text + "\n\nDeviations from the paper's DCGAN (latent 200, batch 64, widths 64, Adam 2e-4 / 0.5, "
            "transposed convolutions, no extras):\n\n" + "\n".join(f"- {d}" for d in deviations))
