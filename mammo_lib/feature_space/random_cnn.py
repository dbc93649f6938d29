"""Stage 03's third feature space, "random-cnn": a small convolutional network whose weights are
random and never trained.

Naeem et al. (ICML 2020) recommend the embedding of a randomly initialised CNN for precision /
recall / density / coverage and the Fréchet distance when the images are far from ImageNet,
where a pretrained embedding would see what it learned to see rather than what is there. Trained
on no question, it cannot have learned to ignore a generator's artefacts (the lesion CNN of
``lesion_cnn`` learned to tell lesions from normal tissue, nothing else).

The network sees each patch at full resolution: a stride-1 3x3 convolution on the 128x128
pixels, then stride-2 3x3 convolutions (default widths 8, 16, 32, 64 channels, ReLU after each,
no bias, no normalisation layer), so fine texture reaches the first layer unchanged. A patch's
features are the spatial mean and standard deviation of every channel of every layer
(2 x (8 + 16 + 32 + 64) = 240 values): first-order and second-order statistics of random filter
responses, from fine texture (first layer) to blob-sized structure (last layer).

Randomness: every weight is drawn from the ``"random_cnn_init"`` torch stream keyed by the
study seed (:func:`mammo_lib.feature_space.streams.torch_stream`), He-normal (standard deviation
sqrt(2 / fan_in)), so the same seed gives the same network and the same features, byte for byte,
on a CPU with the same thread count; torch's global generator is never drawn from, and torch's
thread count is restored afterwards. Reads and writes no files.

References
----------
M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi and J. Yoo, "Reliable Fidelity and Diversity Metrics for
Generative Models", ICML 2020 (random embeddings for data far from ImageNet).
K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers", ICCV 2015 (the
initialisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mammo_lib.feature_space.arrays import FeatureSpaceError, check_patch_array, flatten_pixels
from mammo_lib.feature_space.streams import torch_stream

#: output channels of each convolution
WIDTHS = (8, 16, 32, 64)
#: stride of each convolution: the first sees every pixel, each later one halves the map
STRIDES = (1, 2, 2, 2)
KERNEL = 3
#: pixels in [0, 1] are mapped to (x - INPUT_CENTRE) / INPUT_SCALE before the first convolution
INPUT_CENTRE = 0.5
INPUT_SCALE = 0.25
#: patches per forward pass: fixed, so a patch's features never depend on the batch it is in, and
#: small, so a full-resolution activation map stays in the CPU cache (4x faster than 128 at a time)
BATCH = 8

__all__ = ["RandomCNN", "build_random_cnn", "random_cnn_features", "feature_dim", "WIDTHS", "STRIDES"]


@dataclass(frozen=True)
class RandomCNN:
    """A random, untrained CNN.

    Attributes
    ----------
    weights : tuple of torch.Tensor
        float32 convolution kernels, shape (out, in, 3, 3), one per layer.
    strides : tuple of int
        Stride of each layer.
    seed : int
        The study seed the weights were drawn with.
    """

    weights: tuple
    strides: tuple[int, ...]
    seed: int

    @property
    def feature_dim(self) -> int:
        """Features per patch: a mean and a standard deviation per channel of every layer."""
        return 2 * sum(int(w.shape[0]) for w in self.weights)


def feature_dim(widths: tuple[int, ...] = WIDTHS) -> int:
    """Features per patch of a network with these ``widths`` (240 for the default)."""
    return 2 * sum(widths)


def _check_architecture(widths: tuple[int, ...], strides: tuple[int, ...]) -> None:
    if len(widths) == 0 or len(widths) != len(strides):
        raise FeatureSpaceError(f"random CNN: widths {tuple(widths)} and strides {tuple(strides)} must be "
                                "non-empty and of one length (one per layer)")
    if any(int(w) < 1 for w in widths) or any(int(s) not in (1, 2) for s in strides):
        raise FeatureSpaceError(f"random CNN: every width must be >= 1 and every stride 1 or 2, got widths "
                                f"{tuple(widths)}, strides {tuple(strides)}")
    if int(strides[0]) != 1:
        raise FeatureSpaceError("random CNN: the first layer must have stride 1, so that fine texture reaches it "
                                "at full resolution")


def build_random_cnn(seed: int = 0, widths: tuple[int, ...] = WIDTHS,
                     strides: tuple[int, ...] = STRIDES) -> RandomCNN:
    """Draw the random network's weights.

    Parameters
    ----------
    seed : int
        The study seed, >= 0; keys the ``"random_cnn_init"`` stream.
    widths : tuple of int
        Output channels per layer (input: one grey channel).
    strides : tuple of int
        Stride per layer, each 1 or 2; the first must be 1.

    Returns
    -------
    RandomCNN
        Kernels drawn He-normal: N(0, 2 / fan_in), fan_in = input channels x 3 x 3, so the
        activations keep their scale from layer to layer.

    Raises
    ------
    FeatureSpaceError
        When ``widths`` and ``strides`` are empty or of different lengths, a width is < 1, a
        stride is not 1 or 2, or the first stride is not 1.
    ValueError
        When ``seed`` is negative.
    """
    import torch

    _check_architecture(widths, strides)
    gen = torch_stream(seed, "random_cnn_init")
    weights, c_in = [], 1
    for c_out in widths:
        std = math.sqrt(2.0 / (c_in * KERNEL * KERNEL))
        weights.append(torch.randn((int(c_out), c_in, KERNEL, KERNEL), generator=gen, dtype=torch.float32) * std)
        c_in = int(c_out)
    return RandomCNN(weights=tuple(weights), strides=tuple(int(s) for s in strides), seed=seed)


def _forward(net: RandomCNN, x):
    """(n, 2 * sum(widths)) float32 tensor: per layer, channel means then channel standard deviations."""
    import torch
    import torch.nn.functional as F

    pooled = []
    h = x
    for w, stride in zip(net.weights, net.strides, strict=True):
        h = F.conv2d(h, w, stride=stride, padding=KERNEL // 2).relu_()
        mean = h.mean(dim=(2, 3), keepdim=True)
        std = (h - mean).square_().mean(dim=(2, 3)).sqrt_()  # two passes (torch.std_mean is 3x slower here)
        pooled += [mean.flatten(1), std]
    return torch.cat(pooled, dim=1)


def random_cnn_features(patches: np.ndarray, seed: int = 0, *, net: RandomCNN | None = None,
                        n_threads: int = 1) -> np.ndarray:
    """Embed patches with the random CNN.

    Parameters
    ----------
    patches : uint8 array, shape (n, s, s), or float array in [0, 1]
        Square patches at full resolution (uint8 is scaled by 1/255); ``s`` must be at least
        2 ** (number of stride-2 layers) (8 for the default network), so the last layer's map
        has one pixel or more.
    seed : int
        The study seed: draws the network (:func:`build_random_cnn`) when ``net`` is None.
    net : RandomCNN, optional
        A network already drawn (then ``seed`` is not used).
    n_threads : int
        torch CPU threads while embedding (restored afterwards); with the same count the
        features are the same bytes on every rerun.

    Returns
    -------
    float64 array, shape (n, 2 * sum(widths))
        Per layer (in order), the spatial mean of each channel's ReLU activation, then its
        spatial standard deviation (240 columns for the default network); unitless,
        non-negative.

    Raises
    ------
    FeatureSpaceError
        When ``patches`` is not (n, s, s), not numeric or not finite, when ``s`` is too small
        for the network, or when ``n_threads`` < 1 (or as :func:`build_random_cnn`).
    ValueError
        When ``seed`` is negative.

    References
    ----------
    M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi and J. Yoo, "Reliable Fidelity and Diversity Metrics
    for Generative Models", ICML 2020.
    """
    import torch

    patches = check_patch_array(patches, "patches")
    if n_threads < 1:
        raise FeatureSpaceError(f"random CNN: n_threads must be >= 1, got {n_threads}")
    net = build_random_cnn(seed) if net is None else net
    size = patches.shape[1]
    smallest = 2 ** sum(s == 2 for s in net.strides)
    if size < smallest:
        raise FeatureSpaceError(f"random CNN: patches of {size}x{size} pixels are too small for "
                                f"{len(net.strides)} layers with strides {net.strides}; need at least "
                                f"{smallest}x{smallest}")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        out = []
        with torch.inference_mode():
            for start in range(0, len(patches), BATCH):
                chunk = flatten_pixels(patches[start:start + BATCH]).reshape(-1, 1, size, size)
                x = (torch.from_numpy(chunk) - INPUT_CENTRE) / INPUT_SCALE
                out.append(_forward(net, x))
        feats = torch.cat(out).numpy() if out else np.zeros((0, net.feature_dim), np.float32)
    finally:
        torch.set_num_threads(old_threads)
    return feats.astype(np.float64)
