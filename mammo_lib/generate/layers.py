"""Stage 02: layers and initialisation shared by the DCGAN (:mod:`mammo_lib.generate.model`) and the
light FastGAN (:mod:`mammo_lib.generate.fastgan`): DCGAN's weight initialisation, StyleGAN's noise
inputs and spectral normalisation with explicitly drawn power-iteration vectors.
"""

from __future__ import annotations

import torch
from torch import nn


def init_dcgan_weights(module: nn.Module, rng: torch.Generator | None = None) -> None:
    """DCGAN initialisation of one layer: conv weights N(0, 0.02); batch-norm scale N(1, 0.02), shift 0.

    Parameters
    ----------
    module : torch.nn.Module
        A layer; convolutions and batch norms are initialised, anything else is left alone.
    rng : torch.Generator, optional
        The random stream to draw from (None: torch's global generator, as ``nn.init`` does).

    References
    ----------
    Radford, Metz & Chintala, ICLR 2016, section 4; ``pytorch/examples/dcgan/main.py`` (weights_init).
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02, generator=rng)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02, generator=rng)
        nn.init.zeros_(module.bias)


def init_all(model: nn.Module, rng: torch.Generator | None) -> None:
    """:func:`init_dcgan_weights` on every layer of ``model``, in the order of ``model.modules()``.

    Parameters
    ----------
    model : torch.nn.Module
    rng : torch.Generator or None
        The stream the weights are drawn from (None: torch's global generator).
    """
    for module in model.modules():
        init_dcgan_weights(module, rng)



class NoiseInjection(nn.Module):
    """``x + weight * noise``: a per-pixel noise map, scaled per channel by a learnt weight (initially 0).

    Parameters
    ----------
    channels : int
        Channels of the feature map the noise is added to (one learnt scale each).

    References
    ----------
    Karras, Laine & Aila, "A Style-Based Generator Architecture for Generative Adversarial
    Networks", CVPR 2019, section 3.2 and figure 1 ("B": learnt per-channel scaling of
    single-channel noise).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, s, s) plus the scaled ``noise`` (B, 1, s, s), broadcast over the channels."""
        return x + self.weight * noise



@torch.no_grad()
def add_spectral_norm(model: nn.Module, rng: torch.Generator | None) -> None:
    """Spectral normalisation on every 2-d convolution of ``model`` (in the order of ``model.modules()``).

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place (``torch.nn.utils.parametrizations.spectral_norm``).
    rng : torch.Generator or None
        Draws each power iteration's starting vectors (None: torch's global generator), which
        are then refined by 15 power iterations.

    References
    ----------
    Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative Adversarial
    Networks", ICLR 2018.
    """
    from torch.nn.utils.parametrizations import spectral_norm

    for module in list(model.modules()):
        if not isinstance(module, nn.Conv2d):
            continue
        spectral_norm(module)
        sn = module.parametrizations.weight[0]
        weight = sn._reshape_weight_to_matrix(module.parametrizations.weight.original)
        for vector, length in ((sn._u, weight.shape[0]), (sn._v, weight.shape[1])):
            vector.copy_(nn.functional.normalize(torch.randn(length, generator=rng), dim=0, eps=sn.eps))
        sn._power_method(weight, 15)
