"""Stage 02 options for data-efficient GAN training on few lesions: DiffAugment, EMA of G, R1, and a
spectral loss for G.

Each is off unless chosen in :class:`mammo_lib.generate.config.TrainConfig`; the paper's DCGAN uses
none of them. All randomness comes from the explicit ``torch.Generator`` passed in (the
``"augment"`` stream of :mod:`mammo_lib.generate.streams`), so training stays bit-identical on resume.

- :func:`diff_augment`: differentiable augmentation of *both* real and generated images
  whenever D sees them (in D's and in G's update), so D cannot memorise the few real patches
  and G is not pushed to reproduce the augmentations (Zhao, Liu, Lin, Zhu & Han, "Differentiable
  Augmentation for Data-Efficient GAN Training", NeurIPS 2020). Policies as in that paper, for
  single-channel images in [-1, 1]: ``color`` (brightness shift U(-0.5, 0.5), contrast factor
  U(0.5, 1.5) around each image's mean; the paper's saturation has no meaning for one channel),
  ``translation`` (shift by up to 1/8 of the side, filled with 0 = mid grey), ``cutout`` (one
  square of half the side set to 0). Written here in plain torch: kornia's random augmentations
  draw from torch's global generator and accept no ``generator=`` (kornia issue #4427), which
  would break the keyed random streams and the bit-identical resume.
- :class:`GeneratorEMA`: an exponential moving average of G's weights, used for samples and
  synthesis (Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs", ICLR 2018;
  Yazıcı et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019).
  G has batch norm, so after averaging the weights the running statistics of the average's
  batch norms are recomputed from its own activations on a fixed set of latent inputs
  (:meth:`GeneratorEMA.recalibrate_batch_norm`), as stochastic weight averaging does after
  averaging (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
  Generalization", UAI 2018, section 3.2; ``torch.optim.swa_utils.update_bn``): G's own
  running statistics do not fit the averaged weights, and synthesis with them loses contrast
  and fine texture.
- :func:`r1_penalty`: gamma/2 * E ||grad_x D(x)||^2 on real images (Mescheder, Geiger &
  Nowozin, "Which Training Methods for GANs do actually Converge?", ICML 2018).
- :func:`spectral_loss`: a term of G's loss that pulls the azimuthally averaged power spectrum
  of G's batch towards that of the real batch, after the spectral regularisation of Durall,
  Keuper & Keuper ("Watch your Up-Convolution: CNN Based Generative Deep Neural Networks are
  Failing to Reproduce Spectral Distributions", CVPR 2020), who show that up-convolutions leave
  generated images with too little or too much power at high frequencies.
- :class:`SpectralDiscriminator`: a second, small discriminator that sees only each image's
  radial log power profile, trained like D; its verdict on G's batch is a further term of G's
  loss, so G matches the distribution of single images' spectra, not just their batch mean
  (after the spectral discriminator of Jung & Keuper, "Spectral Distribution Aware Image
  Generation", AAAI 2021).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from mammo_lib import spectrum

AUGMENT_POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``""``/None -> ``()``.

    Raises
    ------
    ValueError
        When a name is not one of :data:`AUGMENT_POLICIES`.
    """
    names = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    unknown = [p for p in names if p not in AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; choose from {list(AUGMENT_POLICIES)} "
                         "(comma-separated, e.g. 'color,translation,cutout')")
    return names


def _uniform(n: int, rng: torch.Generator, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, 1, 1, 1, generator=rng)


def _color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    x = x + _uniform(n, rng, -0.5, 0.5).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, rng, 0.5, 1.5).to(x.device) + mean


def _translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (n, 1), generator=rng).to(x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1), generator=rng).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + ty + sy).clamp(0, h + 2 * sy - 1)  # (n, h)
    cols = (torch.arange(w, device=x.device)[None, :] + tx + sx).clamp(0, w + 2 * sx - 1)  # (n, w)
    padded = nn.functional.pad(x, (sx, sx, sy, sy))
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=rng).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=rng).to(x.device)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    top, left = cy - ch // 2, cx - cw // 2  # the square may reach past the edge, as in Zhao et al.
    inside = (yy >= top) & (yy < top + ch) & (xx >= left) & (xx < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(images: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
    """Differentiable augmentation of a batch, one random draw per image (Zhao et al. 2020).

    Parameters
    ----------
    images : float tensor, shape (B, 1, H, W)
        Images in G's scale [-1, 1] (real or generated; gradients flow through).
    policy : tuple of str
        Policies from :func:`parse_policy`, applied in the order color, translation, cutout.
    rng : torch.Generator
        CPU generator of the augmentation parameters.

    Returns
    -------
    float tensor, shape (B, 1, H, W)
        ``images`` itself when ``policy`` is empty.

    References
    ----------
    S. Zhao, Z. Liu, J. Lin, J.-Y. Zhu, S. Han, "Differentiable Augmentation for Data-Efficient
    GAN Training", NeurIPS 2020.
    """
    for name in AUGMENT_POLICIES:
        if name in policy:
            images = _OPS[name](images, rng)
    return images


class GeneratorEMA:
    """An exponential moving average of G: after each G step, ``ema = decay * ema + (1 - decay) * G``
    for the weights; batch-norm running statistics are copied from G.

    References
    ----------
    T. Karras, T. Aila, S. Laine, J. Lehtinen, "Progressive Growing of GANs for Improved
    Quality, Stability, and Variation", ICLR 2018.
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(generator).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """Move the average one step towards ``generator``'s current weights."""
        for avg, cur in zip(self.model.parameters(), generator.parameters(), strict=True):
            avg.lerp_(cur.detach(), 1.0 - self.decay)
        for avg, cur in zip(self.model.buffers(), generator.buffers(), strict=True):
            avg.copy_(cur)

    @torch.no_grad()
    def recalibrate_batch_norm(self, draw_inputs: Callable[[], tuple], n_batches: int = 8) -> None:
        """Recompute the running mean and variance of the average's batch norms from its own activations.

        Uses ``torch.optim.swa_utils.update_bn`` (running statistics reset, then the cumulative
        average over ``n_batches`` forward passes in training mode); the model is left in eval mode.

        Parameters
        ----------
        draw_inputs : callable
            Returns one batch of G's inputs, ``(z, noise)``: z float (B, latent_dim), noise the
            maps of :func:`mammo_lib.generate.model.draw_noise_maps` or None. Called ``n_batches`` times;
            draw from an explicit generator to keep the result reproducible.
        n_batches : int
            Batches to average over (training uses 2 batches of 64 latent vectors at every sample
            grid and checkpoint, about 2 % of the training time).

        References
        ----------
        P. Izmailov, D. Podoprikhin, T. Garipov, D. Vetrov, A. G. Wilson, "Averaging Weights
        Leads to Wider Optima and Better Generalization", UAI 2018, section 3.2.
        """
        batches = [(draw_inputs(),) for _ in range(n_batches)]  # update_bn passes each batch's first item
        update_bn(batches, _CallWithInputs(self.model))
        self.model.eval()


class _CallWithInputs(nn.Module):
    """``model(*inputs)`` for a tuple of inputs: lets ``update_bn`` drive G, which takes (z, noise)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: tuple) -> torch.Tensor:
        return self.model(*inputs)


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over a real batch (multiply by gamma / 2 for the R1 term).

    Parameters
    ----------
    discriminator : torch.nn.Module
        D, returning one logit per image.
    real : float tensor, shape (B, 1, H, W)
        The real images D saw (augmented if augmentation is on).

    Returns
    -------
    scalar tensor
        Differentiable with respect to D's weights.

    References
    ----------
    L. Mescheder, A. Geiger, S. Nowozin, "Which Training Methods for GANs do actually
    Converge?", ICML 2018.
    """
    real = real.detach().requires_grad_(True)
    out = discriminator(real)
    (grad,) = torch.autograd.grad(out.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


@functools.lru_cache(maxsize=8)
def _ring_index(h: int, device: torch.device) -> torch.Tensor:
    """:func:`mammo_lib.spectrum.ring_index` of an h x h ``fft2``, flattened (int64, on ``device``)."""
    return torch.as_tensor(spectrum.ring_index(h).ravel(), device=device)


def radial_log_power(images: torch.Tensor) -> torch.Tensor:
    """Azimuthally averaged log power spectrum of each image (the 1-D profile of Durall et al. 2020).

    Parameters
    ----------
    images : float tensor, shape (B, 1, H, W)
        Square images; each image's mean is removed first.

    Returns
    -------
    float tensor, shape (B, H // 2)
        ``log(1e-8 + mean |FFT|^2)`` over the rings of integer radius 0 .. H/2 - 1 (cycles per
        image; :func:`mammo_lib.spectrum.ring_index`), with the FFT normalised by sqrt(H W)
        ("ortho"), so that a weak band (fine texture, quantum noise) counts as much as a strong
        one; differentiable.

    Raises
    ------
    ValueError
        When the images are not a (B, 1, H, H) batch.

    References
    ----------
    R. Durall, M. Keuper, J. Keuper, CVPR 2020 (the azimuthal integration of the power spectrum
    into a 1-D profile).
    """
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"radial_log_power needs square single-channel images (B, 1, H, H), got {tuple(images.shape)}")
    b, _, h, _ = images.shape
    x = images[:, 0] - images.mean(dim=(1, 2, 3))[:, None, None]
    power = torch.fft.fft2(x, norm="ortho").abs().pow(2)  # (B, H, W)
    radius = _ring_index(h, images.device)
    keep = radius < h // 2
    sums = torch.zeros(b, h // 2, device=images.device, dtype=power.dtype)
    sums.index_add_(1, radius[keep], power.flatten(1)[:, keep])
    counts = torch.bincount(radius[keep], minlength=h // 2).to(power.dtype)
    return torch.log(sums / counts + 1e-8)


def spectral_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the batch-mean radial log power spectra of ``fake`` and ``real``.

    Added to G's loss with weight ``spectral_loss_weight``; gradients flow to ``fake`` only.

    Parameters
    ----------
    fake : float tensor, shape (B, 1, H, W)
        G's batch, in [-1, 1].
    real : float tensor, shape (B', 1, H, W)
        A real batch, in [-1, 1].

    Returns
    -------
    scalar tensor

    References
    ----------
    R. Durall, M. Keuper, J. Keuper, "Watch your Up-Convolution: CNN Based Generative Deep Neural
    Networks are Failing to Reproduce Spectral Distributions", CVPR 2020 (their regulariser
    compares normalised 1-D spectra with a binary cross-entropy; here the log spectra, averaged
    over each batch, are compared with a squared error, which needs no normalisation).
    """
    target = radial_log_power(real.detach()).mean(0)
    return (radial_log_power(fake).mean(0) - target).pow(2).mean()


class SpectralDiscriminator(nn.Module):
    """D_spec: image (B, 1, H, W) -> logit (B,) from its radial log power profile alone.

    A two-layer perceptron (LeakyReLU 0.2) on :func:`radial_log_power` without its DC ring,
    scaled by 0.1; weights from N(0, 0.02) drawn from ``rng`` (DCGAN's initialisation).

    Parameters
    ----------
    image_size : int
        H = W of the images, in pixels.
    width : int
        Hidden units.
    rng : torch.Generator, optional
        Stream of the initial weights (None: torch's global generator).

    References
    ----------
    S. Jung, M. Keuper, "Spectral Distribution Aware Image Generation", AAAI 2021 (a
    discriminator on the reduced 1-D spectrum beside the image discriminator).
    """

    def __init__(self, image_size: int, width: int = 64, rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Linear(image_size // 2 - 1, width), nn.LeakyReLU(0.2),
                                  nn.Linear(width, 1))
        for layer in (self.main[0], self.main[2]):
            nn.init.normal_(layer.weight, 0.0, 0.02, generator=rng)
            nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B,) that each image of ``images`` (B, 1, H, H), in [-1, 1], is real."""
        return self.main(0.1 * radial_log_power(images)[:, 1:]).flatten()
