"""Stage 02: a light FastGAN, the generator and discriminator of ``network="fastgan"``.

After Liu, Zhu, Song & Elgammal, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis", ICLR 2021 (arXiv:2101.04775), built for 100-1,000 training images,
written here for single-channel patches of any power-of-two size >= 32 and CPU budgets:

- **G**: a 4x4 start from the latent vector (transposed 4x4 convolution), then one block per
  doubling: nearest-neighbour (or, with ``upsampling="bilinear_conv"``, bilinear) x2, 3x3 convolution, batch norm, gated linear unit (GLU: the
  convolution gives twice the channels and one half gates the other); every other block
  ("comp", all but the last) has a second 3x3 convolution. Per-pixel noise inputs with a learnt per-channel scale
  (:class:`~mammo_lib.generate.layers.NoiseInjection`, as StyleGAN's) after each block's first
  convolution, so fine stochastic texture (quantum noise, parenchymal grain) does not have to
  come from the latent vector. A 3x3 convolution and tanh make the image.
- **skip-layer excitation** (SLE, the paper's section 3.1): the 4x4 features gate the channels of
  the features 16 times larger (4 -> 64, 8 -> 128, ...): adaptive average pooling to 4x4, a 4x4
  convolution to 1x1, SiLU, a 1x1 convolution, sigmoid, multiplied channel by channel.
- **D**: a stride-2 4x4 convolution, then residual down blocks (a stride-2 4x4 convolution and a
  3x3 convolution beside an average pooling and a 1x1 convolution, averaged) to 8x8, an SLE from
  the first features to the 8x8 ones, then a 1x1 convolution, batch norm, LeakyReLU and a 4x4
  convolution to a 5x5 map of logits whose mean is D's logit (B,). With ``spectral_norm`` every convolution of D is spectrally normalised (the
  paper's D is).
- **self-supervised D** (section 3.2): two small decoders reconstruct, from D's 8x8 features, the
  whole real patch at a quarter of its side, and from one quadrant of D's 16x16 features that
  quadrant of the real patch at a quarter of the patch side. Their L1 error on real patches is added to D's loss, so D must learn
  features that describe the patches and not only the few cues that separate them from G's.

Deviations from the paper, for one CPU thread: widths from ``ndf``/``ngf`` (16 by default, the
paper's 64), and G's layers above 64 px narrowed (:func:`g_widths`); one noise map per resolution; no small second discriminator on a downsampled
input; the reconstruction loss is L1 on pixels (the paper uses the LPIPS perceptual distance,
which needs ImageNet weights we cannot download); the quadrant is drawn from the keyed
``"fastgan_part"`` stream; the hinge loss of the paper's code without its random margins
(:func:`hinge_d_loss`, :func:`hinge_g_loss`). The losses are in :mod:`mammo_lib.generate.session`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mammo_lib.generate.layers import NoiseInjection, add_spectral_norm

# SLE: features at side s gate the features at side SLE_RATIO * s
SLE_RATIO = 16
# D's features before the logits and the decoders' input: SIDE x SIDE
D_FEATURE_SIDE = 8
# the decoders reconstruct at this fraction of the patch side (the paper: 128 px of 1,024, 1/8)
DECODED_FRACTION = 4


def g_widths(ngf: int, image_size: int) -> dict[int, int]:
    """G's channels per side: 8, 8, 4, 2, 1 times ``ngf`` at 4, 8, 16, 32, 64 px, then halved per
    doubling (at least 4): the full-size layers are the costly ones on a CPU.

    Parameters
    ----------
    ngf : int
        G's base width.
    image_size : int
        Patch side, a power of two >= 32.

    Returns
    -------
    dict
        Side in pixels (4, 8, ..., image_size) -> channels.
    """
    sides = [2 ** k for k in range(2, int(math.log2(image_size)) + 1)]
    multipliers = {4: 8.0, 8: 8.0, 16: 4.0, 32: 2.0}
    return {s: max(4, int(ngf * multipliers.get(s, 64 / s))) for s in sides}


def d_widths(ndf: int, image_size: int) -> dict[int, int]:
    """D's channels per side: ``ndf`` at the first features, doubled per halving, at most 8 ``ndf``.

    Parameters
    ----------
    ndf : int
        D's base width.
    image_size : int
        Patch side, a power of two >= 32.

    Returns
    -------
    dict
        Side in pixels (image_size / 2, ..., 8) -> channels.
    """
    sides = [2 ** k for k in range(int(math.log2(image_size)) - 1, 2, -1)]
    return {s: ndf * min(8, 2 ** i) for i, s in enumerate(sides)}


class SkipLayerExcitation(nn.Module):
    """SLE: ``big * sigmoid(conv1x1(silu(conv4x4(pool4(small)))))``, a channel gate from small features.

    Parameters
    ----------
    small_channels, big_channels : int
        Channels of the low-resolution features that gate and of the high-resolution ones gated.

    References
    ----------
    Liu et al., ICLR 2021, section 3.1 and figure 3.
    """

    def __init__(self, small_channels: int, big_channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Conv2d(small_channels, big_channels, 4, 1, 0, bias=False), nn.SiLU(),
            nn.Conv2d(big_channels, big_channels, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        """``big`` (B, C_big, S, S) gated per channel by ``small`` (B, C_small, s, s)."""
        return big * self.gate(small)


class _UpBlock(nn.Module):
    """x2 resize, 3x3 conv, noise, batch norm, GLU; with ``comp`` a second 3x3 conv, batch norm, GLU."""

    def __init__(self, w_in: int, w_out: int, comp: bool, noise: bool, upsampling: str = "nearest",
                 padding: str = "zeros") -> None:
        super().__init__()
        self.upsampling = upsampling
        self.conv1 = nn.Conv2d(w_in, 2 * w_out, 3, 1, 1, bias=False, padding_mode=padding)
        self.noise = NoiseInjection(2 * w_out) if noise else None
        self.norm1 = nn.BatchNorm2d(2 * w_out)
        self.second = (nn.Sequential(nn.Conv2d(w_out, 2 * w_out, 3, 1, 1, bias=False, padding_mode=padding),
                                     nn.BatchNorm2d(2 * w_out),
                                     nn.GLU(dim=1)) if comp else None)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.upsampling == "nearest":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.conv1(x)
        if self.noise is not None:
            x = self.noise(x, noise)
        x = F.glu(self.norm1(x), dim=1)
        return self.second(x) if self.second is not None else x


class FastGANGenerator(nn.Module):
    """FastGAN's G: latent (B, latent_dim, 1, 1) -> image (B, channels, size, size) in [-1, 1].

    Parameters
    ----------
    latent_dim, ngf, channels, image_size : int
        As in :class:`mammo_lib.generate.model.Architecture`.
    noise_injection : bool
        Per-pixel noise inputs at every side 8 .. image_size (one map each).
    upsampling : {"nearest", "bilinear"}
        How each block doubles its input before its convolution.
    padding : {"zeros", "reflect"}
        Padding of G's 3x3 convolutions.
    """

    def __init__(self, latent_dim: int, ngf: int, channels: int, image_size: int, noise_injection: bool,
                 upsampling: str = "nearest", padding: str = "zeros") -> None:
        super().__init__()
        widths = g_widths(ngf, image_size)
        sides = sorted(widths)
        self.init = nn.Sequential(nn.ConvTranspose2d(latent_dim, 2 * widths[4], 4, 1, 0, bias=False),
                                  nn.BatchNorm2d(2 * widths[4]), nn.GLU(dim=1))
        self.ups = nn.ModuleList(_UpBlock(widths[s // 2], widths[s], comp=i % 2 == 0 and s < image_size,
                                          noise=noise_injection, upsampling=upsampling, padding=padding)
                                 for i, s in enumerate(sides[1:]))
        self.sle_pairs = [(s, SLE_RATIO * s) for s in sides if SLE_RATIO * s in widths]
        self.sles = nn.ModuleList(SkipLayerExcitation(widths[a], widths[b]) for a, b in self.sle_pairs)
        self.to_image = nn.Conv2d(widths[image_size], channels, 3, 1, 1, bias=False, padding_mode=padding)
        self.noise_injection = noise_injection

    def forward(self, z: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """Images from latent vectors and noise maps.

        Parameters
        ----------
        z : float tensor, shape (B, latent_dim, 1, 1)
        noise : list of float tensors, shapes (B, 1, s, s) for s = 8, 16, ..., image_size, or None
            The per-pixel noise inputs (None without ``noise_injection``).

        Returns
        -------
        float tensor, shape (B, channels, image_size, image_size)
            Images in [-1, 1].
        """
        x = self.init(z)
        feats = {4: x}
        gates = {b: (a, sle) for (a, b), sle in zip(self.sle_pairs, self.sles, strict=True)}
        for i, block in enumerate(self.ups):
            x = block(x, noise[i] if self.noise_injection else None)
            side = x.shape[-1]
            if side in gates:
                small, sle = gates[side]
                x = sle(feats[small], x)
            feats[side] = x
        return torch.tanh(self.to_image(x))


class _DownBlock(nn.Module):
    """Residual x1/2: (4x4 s2 conv, BN, LReLU, 3x3 conv, BN, LReLU) and (avg pool, 1x1 conv, BN, LReLU), averaged."""

    def __init__(self, w_in: int, w_out: int, batch_norm: bool) -> None:
        super().__init__()

        def norm() -> list[nn.Module]:
            return [nn.BatchNorm2d(w_out)] if batch_norm else []

        self.main = nn.Sequential(nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), *norm(), nn.LeakyReLU(0.2),
                                  nn.Conv2d(w_out, w_out, 3, 1, 1, bias=False), *norm(), nn.LeakyReLU(0.2))
        self.direct = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(w_in, w_out, 1, 1, 0, bias=False), *norm(),
                                    nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


def _decoder(w_in: int, width: int, channels: int, n_up: int) -> nn.Sequential:
    """FastGAN's simple decoder: ``n_up`` x (x2 nearest, 3x3 conv, BN, GLU) at ``width`` channels, then
    a 3x3 conv and tanh."""
    layers: list[nn.Module] = []
    w = w_in
    for _ in range(n_up):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, 2 * width, 3, 1, 1, bias=False),
                   nn.BatchNorm2d(2 * width), nn.GLU(dim=1)]
        w = width
    return nn.Sequential(*layers, nn.Conv2d(w, channels, 3, 1, 1, bias=False), nn.Tanh())


class FastGANDiscriminator(nn.Module):
    """FastGAN's D: image (B, channels, size, size) -> logit (B,), and on real images its reconstructions.

    Parameters
    ----------
    ndf, channels, image_size : int
        As in :class:`mammo_lib.generate.model.Architecture`.
    spectral_norm : bool
        Spectral normalisation on every convolution of D (decoders included) and no batch norm
        in its down path.
    rng : torch.Generator, optional
        Draws the power-iteration vectors of the spectral norms.
    """

    def __init__(self, ndf: int, channels: int, image_size: int, spectral_norm: bool,
                 rng: torch.Generator | None = None) -> None:
        super().__init__()
        widths = d_widths(ndf, image_size)
        sides = sorted(widths, reverse=True)
        self.first = nn.Sequential(nn.Conv2d(channels, widths[sides[0]], 4, 2, 1, bias=False), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(_DownBlock(widths[a], widths[b], batch_norm=not spectral_norm)
                                   for a, b in zip(sides[:-1], sides[1:], strict=True))
        self.sle = (SkipLayerExcitation(widths[sides[0]], widths[D_FEATURE_SIDE])
                    if sides[0] >= 2 * D_FEATURE_SIDE else None)
        w8 = widths[D_FEATURE_SIDE]
        norm = [] if spectral_norm else [nn.BatchNorm2d(w8)]
        self.logits = nn.Sequential(nn.Conv2d(w8, w8, 1, 1, 0, bias=False), *norm, nn.LeakyReLU(0.2),
                                    nn.Conv2d(w8, 1, 4, 1, 0, bias=False))
        n_up = int(math.log2(image_size // DECODED_FRACTION // D_FEATURE_SIDE))
        self.decode_whole = _decoder(w8, 2 * ndf, channels, n_up)
        w16 = widths.get(2 * D_FEATURE_SIDE, w8)
        self.decode_part = _decoder(w16, 2 * ndf, channels, n_up)
        self.image_size = image_size
        self.spectral_norm = spectral_norm
        self._rng = rng

    def apply_spectral_norm(self) -> None:
        """With ``spectral_norm``, spectral normalisation on every convolution of D (decoders included),
        its power-iteration vectors drawn from the ``rng`` given at construction; called once the
        initial weights are drawn (:class:`mammo_lib.generate.model.Discriminator` does)."""
        if self.spectral_norm:
            add_spectral_norm(self, self._rng)
        self._rng = None  # drawn from; not kept

    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """D's features per side.

        Parameters
        ----------
        x : float tensor, shape (B, channels, size, size)

        Returns
        -------
        dict
            Side (size / 2, ..., 8) -> float tensor (B, C, side, side); the 8x8 ones gated by the
            skip-layer excitation from the first ones.
        """
        x = self.first(x)
        feats = {x.shape[-1]: x}
        for block in self.downs:
            x = block(x)
            feats[x.shape[-1]] = x
        if self.sle is not None:
            feats[D_FEATURE_SIDE] = self.sle(feats[max(feats)], feats[D_FEATURE_SIDE])
        return feats

    def forward(self, x: torch.Tensor, part: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """D's logits (B,); with ``part`` (a quadrant, 0-3) also the L1 reconstruction error of ``x``.

        Parameters
        ----------
        x : float tensor, shape (B, channels, size, size)
            Images in [-1, 1] (as D sees them: after instance noise and augmentation).
        part : int, optional
            The quadrant (0 top left, 1 top right, 2 bottom left, 3 bottom right) the part decoder
            reconstructs; None: no reconstruction (G's and fake batches).

        Returns
        -------
        logits : float tensor, shape (B,)
            The mean of D's 5x5 logit map per image.
        reconstruction_error : float tensor, shape ()
            Only with ``part``: the L1 error of the whole patch and of the quadrant (each decoded
            at a quarter of the patch side), summed.
        """
        feats = self.features(x)
        logits = self.logits(feats[D_FEATURE_SIDE]).mean(dim=(1, 2, 3))
        if part is None:
            return logits
        half, out = self.image_size // 2, self.image_size // DECODED_FRACTION
        whole = F.interpolate(x, size=out, mode="area")
        f16 = feats.get(2 * D_FEATURE_SIDE, feats[D_FEATURE_SIDE])
        row, col = divmod(int(part), 2)
        fh = f16.shape[-1] // 2
        quadrant = f16[:, :, row * fh:(row + 1) * fh, col * fh:(col + 1) * fh]
        target_part = F.interpolate(x[:, :, row * half:(row + 1) * half, col * half:(col + 1) * half],
                                    size=out, mode="area")
        error = (F.l1_loss(self.decode_whole(feats[D_FEATURE_SIDE]), whole)
                 + F.l1_loss(self.decode_part(quadrant), target_part))
        return logits, error


def hinge_d_loss(real_logits: torch.Tensor | None, fake_logits: torch.Tensor | None) -> torch.Tensor:
    """D's hinge loss, ``mean(relu(1 - D(x)))`` for real and ``mean(relu(1 + D(G(z))))`` for fake logits.

    Parameters
    ----------
    real_logits, fake_logits : float tensor, shape (B,), or None
        Either may be None (its term is left out).

    Returns
    -------
    float tensor, shape ()

    Raises
    ------
    ValueError
        When both are None.

    References
    ----------
    Lim & Ye, "Geometric GAN", arXiv:1705.02894 (2017); used by Liu et al., ICLR 2021.
    """
    if real_logits is None and fake_logits is None:
        raise ValueError("hinge_d_loss needs real or fake logits (both are None)")
    total = torch.zeros((), device=(real_logits if real_logits is not None else fake_logits).device)
    if real_logits is not None:
        total = total + F.relu(1.0 - real_logits).mean()
    if fake_logits is not None:
        total = total + F.relu(1.0 + fake_logits).mean()
    return total


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's loss of the hinge GAN, ``-mean(D(G(z)))``.

    Parameters
    ----------
    fake_logits : float tensor, shape (B,)
        D's logits for G's batch.

    Returns
    -------
    float tensor, shape ()
    """
    return -fake_logits.mean()
