"""Stage 02: the DCGAN that learns lesion patches, its checkpoints, and synthesis from it.

Reference followed
------------------
The networks follow the DCGAN architecture guidelines of Radford, Metz & Chintala,
"Unsupervised Representation Learning with Deep Convolutional Generative Adversarial
Networks", ICLR 2016 (arXiv:1511.06434), as implemented in the PyTorch example
``pytorch/examples/dcgan/main.py``:

- strided (transposed) convolutions, 4x4 kernels, no pooling and no fully connected hidden layers;
- batch norm in G and D except G's output layer and D's input layer;
- ReLU in G with a tanh output (images in [-1, 1]); LeakyReLU(0.2) in D;
- weights from N(0, 0.02), batch-norm scales from N(1, 0.02);
- Adam, learning rate 2e-4, beta1 0.5 (see :mod:`mammo_lib.generate.training`).

The paper this project reproduces (section 3) feeds batches of 64 latent vectors of length 200
drawn from N(0, 1) to G and trains on single-channel 128x128 lesion patches; those are the
defaults here.

Deviations from the reference
-----------------------------
- Single channel; any power-of-two image size >= 32 (the example is fixed at 64x64, 3 channels).
  Each doubling of the size adds one stride-2 layer. Layer widths double per layer away from
  the image, capped at 8x ``ngf`` / ``ndf`` (for 128 px the example's scheme would give 16x at
  4x4; the cap keeps the 128 px model at the size of the 64 px reference plus one layer).
- D returns *logits* (no final sigmoid); training uses ``BCEWithLogitsLoss``, which is the same
  loss computed in a numerically stable way. :meth:`Discriminator.probability` gives D(x) in (0, 1).
- Training extras, off in the ``paper`` profile: one-sided label smoothing (Salimans et al. 2016)
  and annealed instance noise on D's inputs (Sønderby et al. 2017), used by the short CPU
  ``default`` profile so that D does not win before G has learnt anything
  (see :mod:`mammo_lib.generate.training`).
- Synthesis runs G in eval mode (batch-norm running statistics), so every synthetic patch depends
  only on its own latent vector and can be regenerated alone from (checkpoint, latent_seed).
- Options for small data sets, off in :class:`~mammo_lib.generate.config.TrainConfig` unless chosen
  and in the ``paper`` profile, on in the ``default`` profile (see
  :mod:`mammo_lib.generate.regularisers` for the training-side ones): ``upsampling="resize_conv"`` makes G
  upsample by nearest-neighbour doubling followed by a 3x3 convolution instead of a 4x4
  transposed convolution, against the checkerboard artefacts of transposed convolutions
  (Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016), and
  ``"bilinear_conv"`` by bilinear doubling (the ``default`` profile: the blocky 2x2 texture of
  nearest-neighbour doubling is what the CNN two-sample test saw first);
  ``g_head_width`` > 0 adds one more layer to G at full size (the ``default`` profile: 8
  channels); ``g_padding="reflect"`` pads G's 3x3 convolutions by reflection;
  ``network="fastgan"`` replaces both networks by a light FastGAN (:mod:`mammo_lib.generate.fastgan`);
  ``spectral_norm=True`` puts spectral normalisation on every convolution of D and drops D's
  batch norm, as in the SN-GAN discriminators (Miyato, Kataoka, Koyama & Yoshida, "Spectral
  Normalization for Generative Adversarial Networks", ICLR 2018);
  ``noise_injection=True`` adds per-pixel Gaussian noise maps with a learnt per-channel scale
  (initially 0) after every upsampling convolution of G, and before its tanh, as the "noise
  inputs" of StyleGAN (Karras, Laine & Aila, "A Style-Based Generator Architecture for
  Generative Adversarial Networks", CVPR 2019, section 3.2): G gets fine stochastic detail
  (quantum noise, fine parenchymal texture) from these inputs instead of having to build it
  from the latent vector through nearest-neighbour upsampling. The noise maps are explicit
  inputs of :meth:`Generator.forward` (:func:`draw_noise_maps`), drawn from keyed random
  streams, so every synthetic patch stays a pure function of its latent seed.
- Initial weights come from an explicit ``torch.Generator`` (the ``"init"`` stream of
  :mod:`mammo_lib.generate.streams`), not from torch's global random state.

Figures of stage 02 are in :mod:`mammo_lib.generate.figures`, training in
:mod:`mammo_lib.generate.training`.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mammo_lib.fileio import atomic_write_bytes
from mammo_lib.generate.fastgan import FastGANDiscriminator, FastGANGenerator
from mammo_lib.generate.layers import (
    NoiseInjection,
    add_spectral_norm,
    init_all,
)

CHECKPOINT_FORMAT = "mammo-dcgan-checkpoint/1"
MAX_WIDTH_MULTIPLIER = 8
UPSAMPLING = ("transposed", "resize_conv", "bilinear_conv")
# padding of G's 3x3 convolutions (torch's padding_mode): "zeros" darkens and streaks the border
G_PADDING = ("zeros", "reflect")
# "dcgan": Radford et al. 2016 (this module); "fastgan": Liu et al. 2021 (mammo_lib.generate.fastgan)
NETWORKS = ("dcgan", "fastgan")
NETWORK_NAMES = {"dcgan": "DCGAN", "fastgan": "FastGAN"}  # as figures and text write them


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit the requested model; names the file."""


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the shapes of G and D; stored in every checkpoint.

    ``upsampling`` is ``"transposed"`` (DCGAN's strided transposed convolutions) or
    ``"resize_conv"`` (nearest-neighbour upsampling + 3x3 convolution, Odena et al. 2016) or
    ``"bilinear_conv"`` (bilinear upsampling + 3x3 convolution, Odena et al.'s other resize);
    ``g_padding`` pads G's 3x3 convolutions with zeros (the default) or by reflection, against
    the dark frame and border streaks that zero padding leaves (not with transposed convolutions);
    ``g_head_width`` > 0 gives the DCGAN's G one more layer at full size: its last upsampling
    convolution makes ``g_head_width`` channels (noise, batch norm, ReLU), and a 3x3 convolution
    makes the image from them, so sharp edges and specks need not come from one convolution of
    upsampled half-size features (0: the DCGAN's last layer makes the image);
    ``spectral_norm`` puts spectral normalisation on D's convolutions and drops D's batch norm
    (Miyato et al. 2018); ``noise_injection`` gives G per-pixel noise inputs (Karras et al. 2019).
    ``network`` is ``"dcgan"`` or ``"fastgan"`` (:mod:`mammo_lib.generate.fastgan`: skip-layer
    excitation in G, a self-supervised D; its G always resize-convolves, bilinearly with
    ``"bilinear_conv"``, else by nearest neighbour). The defaults are the paper's DCGAN; a checkpoint written before
    ``network`` existed is a DCGAN.
    """

    image_size: int = 128
    latent_dim: int = 200
    ngf: int = 64
    ndf: int = 64
    channels: int = 1
    upsampling: str = "transposed"
    spectral_norm: bool = False
    noise_injection: bool = False
    network: str = "dcgan"
    g_padding: str = "zeros"
    g_head_width: int = 0

    def __post_init__(self) -> None:
        size = self.image_size
        if size < 32 or size & (size - 1):
            raise ValueError(f"image_size must be a power of two >= 32, got {size}")
        check_generator_options(self.upsampling, self.network, self.g_padding, self.g_head_width)
        for name in ("latent_dim", "ngf", "ndf", "channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def differences(self, other: Architecture) -> list[str]:
        """Human-readable list of fields that differ, e.g. ``['ngf: 8 (checkpoint) vs 16 (requested)']``."""
        return [
            f"{k}: {v} (checkpoint) vs {getattr(other, k)} (requested)"
            for k, v in asdict(self).items()
            if getattr(other, k) != v
        ]


def check_generator_options(upsampling: str, network: str, g_padding: str, g_head_width: int) -> None:
    """The one check of G's shape options (used by :class:`Architecture` and ``TrainConfig``).

    Parameters
    ----------
    upsampling : {"transposed", "resize_conv", "bilinear_conv"}
        G's x2 upsampling (FastGAN's G resizes bilinearly with "bilinear_conv", otherwise by
        nearest neighbour).
    network : {"dcgan", "fastgan"}
        The networks (:data:`NETWORKS`).
    g_padding : {"zeros", "reflect"}
        Padding of G's 3x3 convolutions.
    g_head_width : int
        Channels of the DCGAN's full-size head layer, >= 0 (0: none).

    Raises
    ------
    ValueError
        When a value is not one of its set, ``g_head_width`` is negative, reflection padding
        or a head layer is asked of the DCGAN's transposed convolutions, or a head layer of
        FastGAN's G.
    """
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
    if g_padding not in G_PADDING:
        raise ValueError(f"g_padding must be one of {G_PADDING}, got {g_padding!r}")
    transposed = network == "dcgan" and upsampling == "transposed"
    if g_padding != "zeros" and transposed:
        raise ValueError(f"g_padding={g_padding!r} needs resize-convolutions (upsampling 'resize_conv' or "
                         "'bilinear_conv'): transposed convolutions pad with zeros only")
    if g_head_width < 0 or (g_head_width and transposed):
        raise ValueError(f"g_head_width must be >= 0 (0: none) and needs resize-convolutions, got "
                         f"{g_head_width} with upsampling={upsampling!r}")
    if g_head_width and network == "fastgan":
        raise ValueError(f"g_head_width={g_head_width} is a layer of the DCGAN's G: FastGAN's G has its own "
                         "full-size layers; set g_head_width=0 with network='fastgan'")


def _widths(base: int, image_size: int) -> list[int]:
    """Feature widths from the 4x4 layer up to the image_size/2 layer."""
    n_layers = int(math.log2(image_size)) - 2  # stride-2 layers between 4x4 and the image
    return [base * min(2 ** k, MAX_WIDTH_MULTIPLIER) for k in reversed(range(n_layers))]


def _transposed_block(w_in: int, w_out: int) -> list[nn.Module]:
    """x2 upsampling as in DCGAN: a 4x4 transposed convolution of stride 2."""
    return [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False)]


def _upsample_block(w_in: int, w_out: int, mode: str = "nearest", padding: str = "zeros") -> list[nn.Module]:
    """x2 upsampling by resize-convolution: nearest-neighbour (or bilinear) doubling, then a 3x3 convolution."""
    resize = (nn.Upsample(scale_factor=2, mode="nearest") if mode == "nearest"
              else nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return [resize, nn.Conv2d(w_in, w_out, 3, 1, 1, bias=False, padding_mode=padding)]


def noise_map_sizes(arch: Architecture) -> list[int]:
    """Side lengths of G's noise maps, in the order G uses them.

    Parameters
    ----------
    arch : Architecture

    Returns
    -------
    list of int
        One per upsampling layer: 8, 16, ..., ``arch.image_size`` pixels, and one more of
        ``arch.image_size`` for the DCGAN's head layer (``g_head_width`` > 0); empty when
        ``arch.noise_injection`` is False.
    """
    if not arch.noise_injection:
        return []
    sizes = [2 ** k for k in range(3, int(math.log2(arch.image_size)) + 1)]
    if arch.g_head_width and arch.network == "dcgan":  # the head's own noise input, before the output
        sizes.append(arch.image_size)
    return sizes


def draw_noise_maps(arch: Architecture, batch: int, rng: torch.Generator,
                    device: str | torch.device = "cpu") -> list[torch.Tensor] | None:
    """G's per-pixel noise inputs for one batch, drawn from ``rng`` (None when G has none).

    Parameters
    ----------
    arch : Architecture
        G's architecture (its image size and whether it has noise inputs).
    batch : int
        Number of images.
    rng : torch.Generator
        A CPU generator; maps are drawn in order of :func:`noise_map_sizes`.
    device : str or torch.device
        Where the maps are placed.

    Returns
    -------
    list of float32 tensors, shapes (batch, 1, s, s) for s in :func:`noise_map_sizes`, or None
        N(0, 1) values; None when ``arch.noise_injection`` is False.
    """
    sizes = noise_map_sizes(arch)
    if not sizes:
        return None
    return [torch.randn(batch, 1, s, s, generator=rng).to(device) for s in sizes]


class Generator(nn.Module):
    """G: latent vector (B, latent_dim) -> image (B, channels, size, size) in [-1, 1].

    ``rng`` (optional ``torch.Generator``) draws the initial weights; None uses torch's global one.
    With ``network="fastgan"`` G is :class:`~mammo_lib.generate.fastgan.FastGANGenerator`
    (attribute ``fast``), otherwise the DCGAN's layers (attribute ``main``).
    """

    def __init__(self, arch: Architecture | None = None, rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.arch = arch or Architecture()
        if self.arch.network == "fastgan":
            a = self.arch
            self.fast = FastGANGenerator(a.latent_dim, a.ngf, a.channels, a.image_size, a.noise_injection,
                                         upsampling="bilinear" if a.upsampling == "bilinear_conv" else "nearest",
                                         padding=a.g_padding)
            init_all(self, rng)
            return
        widths = _widths(self.arch.ngf, self.arch.image_size)
        a = self.arch
        if a.upsampling == "transposed":
            up = _transposed_block
        else:
            def up(w_in: int, w_out: int) -> list[nn.Module]:
                return _upsample_block(w_in, w_out, "bilinear" if a.upsampling == "bilinear_conv" else "nearest",
                                       a.g_padding)
        noise = (lambda w: [NoiseInjection(w)]) if self.arch.noise_injection else (lambda w: [])
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(self.arch.latent_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [*up(w_in, w_out), *noise(w_out), nn.BatchNorm2d(w_out), nn.ReLU(True)]
        if a.g_head_width:  # one more 3x3 convolution at full size, from g_head_width channels
            k = a.g_head_width
            layers += [*up(widths[-1], k), *noise(k), nn.BatchNorm2d(k), nn.ReLU(True),
                       nn.Conv2d(k, a.channels, 3, 1, 1, bias=False, padding_mode=a.g_padding)]
        else:
            layers += [*up(widths[-1], self.arch.channels)]
        layers += [*noise(self.arch.channels), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        init_all(self, rng)

    def forward(self, z: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """G(z): latent vectors to images.

        Parameters
        ----------
        z : float tensor, shape (B, latent_dim) or (B, latent_dim, 1, 1)
            Latent vectors, N(0, 1).
        noise : list of float tensors, shapes (B, 1, s, s) for s in :func:`noise_map_sizes`, optional
            The per-pixel noise inputs (:func:`draw_noise_maps`) when the architecture has them;
            ignored otherwise.

        Returns
        -------
        float tensor, shape (B, channels, image_size, image_size)
            Images in [-1, 1] (tanh).

        Raises
        ------
        ValueError
            When G has noise inputs and ``noise`` is None, or a map's shape is not (B, 1, s, s)
            in the order of :func:`noise_map_sizes`.
        """
        if z.dim() == 2:
            z = z[:, :, None, None]
        if not self.arch.noise_injection:
            return self.fast(z, None) if self.arch.network == "fastgan" else self.main(z)
        expected = [(z.shape[0], 1, s, s) for s in noise_map_sizes(self.arch)]
        if noise is None or [tuple(m.shape) for m in noise] != expected:
            got = "none" if noise is None else [tuple(m.shape) for m in noise]
            raise ValueError(f"this generator has noise inputs (noise_injection=True): pass its {len(expected)} "
                             f"noise maps of shapes {expected} (got {got}), e.g. "
                             "mammo_lib.generate.model.draw_noise_maps(arch, batch, torch.Generator().manual_seed(s))")
        if self.arch.network == "fastgan":
            return self.fast(z, noise)
        maps = iter(noise)
        x = z
        for module in self.main:
            x = module(x, next(maps)) if isinstance(module, NoiseInjection) else module(x)
        return x


class Discriminator(nn.Module):
    """D: image (B, channels, size, size) -> logit (B,); :meth:`probability` gives D(x) in (0, 1).

    ``rng`` (optional ``torch.Generator``) draws the initial weights; None uses torch's global one.
    With ``network="fastgan"`` D is :class:`~mammo_lib.generate.fastgan.FastGANDiscriminator`, and
    ``forward(x, part)`` with a quadrant ``part`` also returns its reconstruction error.
    """

    def __init__(self, arch: Architecture | None = None, rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.arch = arch or Architecture()
        if self.arch.network == "fastgan":
            a = self.arch
            self.fast = FastGANDiscriminator(a.ndf, a.channels, a.image_size, a.spectral_norm, rng)
            init_all(self, rng)
            self.fast.apply_spectral_norm()
            return
        widths = list(reversed(_widths(self.arch.ndf, self.arch.image_size)))
        layers: list[nn.Module] = [
            nn.Conv2d(self.arch.channels, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        norm = (lambda w: []) if self.arch.spectral_norm else (lambda w: [nn.BatchNorm2d(w)])
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), *norm(w_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        init_all(self, rng)
        if self.arch.spectral_norm:
            add_spectral_norm(self.main, rng)

    def forward(self, x: torch.Tensor, part: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """D's logits for images.

        Parameters
        ----------
        x : float tensor, shape (B, channels, size, size)
            Images in [-1, 1].
        part : int, optional
            FastGAN only: the quadrant (0-3) its part decoder reconstructs
            (:meth:`mammo_lib.generate.fastgan.FastGANDiscriminator.forward`).

        Returns
        -------
        logits : float tensor, shape (B,)
        reconstruction_error : float tensor, shape ()
            Only with ``part`` (FastGAN): the L1 reconstruction error of ``x``.

        Raises
        ------
        ValueError
            When ``part`` is given to the DCGAN's D, which reconstructs nothing.
        """
        if self.arch.network == "fastgan":
            return self.fast(x, part)
        if part is not None:
            raise ValueError("part: only FastGAN's D reconstructs patches (network='fastgan')")
        return self.main(x).flatten()

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """D(x): the probability that x is a real lesion (the reference's sigmoid output)."""
        return torch.sigmoid(self.forward(x))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to use.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when present, else CPU), or anything ``torch.device`` accepts.

    Returns
    -------
    torch.device

    Raises
    ------
    RuntimeError
        When torch does not recognise the device string.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def uint8_to_model(patches: torch.Tensor) -> torch.Tensor:
    """uint8 grey levels (B, H, W) -> float (B, 1, H, W) in [-1, 1], the scale of G's tanh."""
    return patches.float().div_(127.5).sub_(1.0).unsqueeze(1)


def model_to_uint8(images: torch.Tensor) -> np.ndarray:
    """G's output (B, 1, H, W) in [-1, 1] -> uint8 (B, H, W)."""
    arr = images.detach().float().cpu().squeeze(1).numpy()
    return np.clip(np.rint((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint_atomic(state: dict, path: str | os.PathLike, keep_previous: bool = True) -> Path:
    """Write ``state`` with torch.save to a temp file, fsync, then rename into place.

    With ``keep_previous`` the existing file is first renamed to ``previous.pt`` beside it, so a
    kill at any moment leaves at least one complete checkpoint (last or previous).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)  # serialised first, so the window without last.pt is one rename
    if keep_previous and path.exists():
        os.replace(path, path.with_name("previous.pt"))
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load one of our checkpoints (tensors and plain values only, ``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: train the DCGAN first (notebook 02)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, pickle of foreign objects ...
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a DCGAN checkpoint ({type(exc).__name__}: {exc}); "
            "use checkpoints/previous.pt or retrain"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file (written by another program?)")
    return state


def checkpoint_architecture(state: dict, path: str | os.PathLike = "<checkpoint>") -> Architecture:
    try:
        return Architecture(**state["architecture"])
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} has no valid architecture record: {exc}") from exc


def check_architecture(state: dict, requested: Architecture, path: str | os.PathLike) -> None:
    """Raise a clear error when a checkpoint was written for other network shapes."""
    stored = checkpoint_architecture(state, path)
    diffs = stored.differences(requested)
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was written for a different model ({'; '.join(diffs)}): "
            "use the same settings as that run, or start a fresh run (resume=False or another run folder)"
        )


def synthesis_weights_key(state: dict) -> str:
    """``"generator_ema"`` when the checkpoint holds an EMA of G (synthesis uses it), else ``"generator"``."""
    return "generator_ema" if "generator_ema" in state else "generator"


def load_generator(checkpoint: str | os.PathLike, device: str | torch.device = "cpu",
                   expected: Architecture | None = None) -> tuple[Generator, dict]:
    """G from a checkpoint, in eval mode, plus the checkpoint's metadata (no optimiser state).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint written by training (``dcgan/checkpoints/last.pt``).
    device : str or torch.device
        Where G is placed (see :func:`resolve_device`).
    expected : Architecture, optional
        When given, a checkpoint of other network shapes is an error.

    Returns
    -------
    generator : Generator
        In eval mode (batch-norm running statistics), with the weights synthesis uses: the
        exponential moving average of G when training kept one (``ema_decay`` > 0), else G.
    meta : dict
        ``iteration``, ``epoch``, ``architecture`` and ``config`` of the checkpoint, and
        ``weights`` ("generator_ema" or "generator").

    Raises
    ------
    CheckpointError
        When the file is missing, corrupt, not one of ours, of another architecture than
        ``expected``, or its weights do not fit its architecture record.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    arch = checkpoint_architecture(state, checkpoint)
    if expected is not None:
        check_architecture(state, expected, checkpoint)
    generator = Generator(arch)
    weights = synthesis_weights_key(state)
    try:
        generator.load_state_dict(state[weights])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint}: generator weights do not fit {arch}: {exc}") from exc
    generator.to(resolve_device(device)).eval()
    meta = {k: state.get(k) for k in ("iteration", "epoch", "architecture", "config")}
    meta["weights"] = weights
    return generator, meta
