"""The observer network of the CNN two-sample test (:mod:`mammo_lib.feature_space.c2st.two_sample`): its recipe
(:class:`ObserverConfig`), construction, training and scoring on the CPU.

A small convolutional network (3x3 convolution, batch norm, ReLU and 2x2 max-pool blocks, global
average pooling, one logit), trained with Adam on binary cross-entropy with random flips. Every
initial weight, batch order and flip comes from a torch stream keyed by (seed, purpose, test
label, fold) (:mod:`mammo_lib.feature_space.streams`); torch's global generator is never drawn from
and the thread count is restored afterwards. Runs in torch's channels-last memory format (1.5x
fewer CPU seconds per epoch than the default format, measured on 128x128 patches, one thread).
The same seed, label and thread count give the same bytes. Reads and writes no files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from mammo_lib.feature_space.arrays import FeatureSpaceError, check_patch_array
from mammo_lib.feature_space.sampling import name_key
from mammo_lib.feature_space.streams import torch_stream


@dataclass(frozen=True)
class ObserverConfig:
    """The C2ST observer's architecture and training recipe.

    Attributes
    ----------
    widths : tuple of int
        Output channels of each block (3x3 convolution, batch norm, ReLU, 2x2 max-pool); the
        network ends with global average pooling and one logit.
    first_stride : int
        Stride of the first convolution (2 halves its cost; a 3x3 kernel at stride 2 still sees
        every pixel, so the finest texture is not thrown away as down-sampling would).
    epochs : int
        Passes over the training folds.
    learning_rate : float
        Adam's step size.
    batch_size : int
        Patches per step.
    flips : bool
        Random horizontal and vertical flips of training patches.
    n_folds : int
        Folds of the cross-fitting (each patch scored by the network that did not see its fold).
    max_cpu_seconds : float
        CPU seconds (all threads) for one whole test, a safety net checked after each epoch;
        each fold gets ``1 / n_folds`` of it.
    n_threads : int
        torch CPU threads while training (restored afterwards).
    """

    widths: tuple[int, ...] = (16, 32, 64, 64)
    first_stride: int = 2
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    flips: bool = True
    n_folds: int = 4
    max_cpu_seconds: float = 600.0
    n_threads: int = 1

    def __post_init__(self) -> None:
        checks = [
            (len(self.widths) >= 1 and all(int(w) >= 1 for w in self.widths), "widths", "one or more positive ints"),
            (int(self.first_stride) in (1, 2), "first_stride", "1 or 2"),
            (int(self.epochs) >= 1, "epochs", ">= 1"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", "> 0"),
            (int(self.batch_size) >= 2, "batch_size", ">= 2"),
            (int(self.n_folds) >= 2, "n_folds", ">= 2"),
            (self.max_cpu_seconds > 0, "max_cpu_seconds", "> 0"),
            (int(self.n_threads) >= 1, "n_threads", ">= 1"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise FeatureSpaceError(f"C2ST observer: {name} = {getattr(self, name)!r} is out of range "
                                        f"(allowed: {allowed}; notebook 03's c2st_{name.replace('n_folds', 'folds')}"
                                        f", or notebook 04's cnn_{name} for the machine-cnn reader)")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def min_patch_size(self) -> int:
        """Smallest patch side the network takes: each block halves it, the first stride too
        (``first_stride * 2 ** len(widths)``; 32 pixels for the default network)."""
        return int(self.first_stride) * 2 ** len(self.widths)

    def describe(self) -> str:
        """One paragraph a radiologist can read: what the observer is and how it was trained."""
        return (f"The machine observer is a small convolutional neural network ({len(self.widths)} layers of 3x3 "
                f"filters, {self.widths[0]} to {max(self.widths)} filters per layer, about "
                f"{n_parameters(self):,} weights) that looks at every pixel of the patch and answers one "
                f"question: real lesion or synthetic? It starts from random weights (nothing downloaded, "
                f"nothing learned elsewhere) and learns only from this study's patches. The patches are split "
                f"into {self.n_folds} parts, all of one woman's patches in the same part; it trains on "
                f"{self.n_folds - 1} parts ({self.epochs} passes, patches randomly mirrored) and is scored on "
                f"the part it never saw, in turn, so every score is a fresh judgement. Its held-out AUC is the "
                f"share of (real, synthetic) pairs it ranks correctly: 0.5 means it cannot tell them apart, "
                f"1.0 that it always can.")


def n_parameters(config: ObserverConfig) -> int:
    """Trainable weights of the observer network.

    Parameters
    ----------
    config : ObserverConfig

    Returns
    -------
    int
    """
    total, c_in = 0, 1
    for w in config.widths:
        total += c_in * w * 9 + w + 2 * w  # convolution, its bias, batch-norm scale and shift
        c_in = w
    return total + c_in + 1


def build_observer(config: ObserverConfig, generator):
    """The observer CNN, every weight drawn from ``generator`` (PyTorch's default distributions:
    Kaiming-uniform with a = sqrt(5), biases uniform in +-1/sqrt(fan_in)).

    Parameters
    ----------
    config : ObserverConfig
    generator : torch.Generator
        The only source of the initial weights (torch's global generator is not used).

    Returns
    -------
    torch.nn.Sequential
        Input float (B, 1, H, W), output one logit per patch, shape (B, 1). In torch's
        channels-last memory format (1.5x fewer CPU seconds per epoch, measured), as its
        inputs from :func:`_as_tensor`.
    """
    import torch
    import torch.nn as nn

    meta = {"device": "meta"}
    layers: list = []
    c_in = 1
    for k, w in enumerate(config.widths):
        stride = config.first_stride if k == 0 else 1
        layers += [nn.Conv2d(c_in, w, 3, stride=stride, padding=1, **meta), nn.BatchNorm2d(w, **meta),
                   nn.ReLU(), nn.MaxPool2d(2)]
        c_in = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1, **meta)]
    model = nn.Sequential(*layers).to_empty(device="cpu").to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(module.weight[0].numel())
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return model


def _as_tensor(patches: np.ndarray):
    import torch

    x = np.asarray(patches)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    t = torch.as_tensor(x.astype(np.float32) / scale)
    return (t - 0.5).unsqueeze(1).contiguous(memory_format=torch.channels_last)


def _train(x, y, config: ObserverConfig, seed: int, key: int, fold: int, cpu_limit: float):
    """Train one network on (x, y); returns (model, epochs run)."""
    import torch

    model = build_observer(config, torch_stream(seed, "c2st_init", key, fold))
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    gen = torch_stream(seed, "c2st_batches", key, fold)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    start = time.process_time()
    epochs = 0
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), config.batch_size):
            idx = order[s:s + config.batch_size]
            if len(idx) < 2:  # batch norm needs two patches
                continue
            xb = x[idx]
            if config.flips:
                flip = torch.rand(2, len(idx), generator=gen) < 0.5
                xb = torch.where(flip[0].view(-1, 1, 1, 1), xb.flip(-1), xb)
                xb = torch.where(flip[1].view(-1, 1, 1, 1), xb.flip(-2), xb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(xb).squeeze(1), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs += 1
        if time.process_time() - start > cpu_limit:
            break
    _precise_batch_norm(model, x, y.numpy())
    model.eval()
    return model, epochs


def _precise_batch_norm(model, x, y, max_batch: int = 256) -> None:
    """Batch-norm statistics of the final weights over all training patches (in place).

    Each layer's running mean and variance (an exponential average over the last steps, while
    the weights were still changing) are replaced by their average over equal batches of the
    training patches, the two sets interleaved so each batch holds both as training batches did:
    the population statistics Ioffe & Szegedy prescribe for inference ("Batch normalization",
    ICML 2015, sec. 3.1). Without it the eval-mode scores are shifted and P = 0.5 is no threshold
    (measured on the default study: a reader's held-out AUC 0.97 on its scores fell to 0.86 once
    rounded to the six options). Deterministic: no random draw.
    """
    import torch

    y = np.asarray(y, dtype=float)
    rank = np.zeros(len(y))
    for value in (0.0, 1.0):
        members = np.flatnonzero(y == value)
        rank[members] = (np.arange(len(members)) + 0.5) / max(1, len(members))
    order = torch.as_tensor(np.argsort(rank, kind="stable"))
    n_batches = max(1, math.ceil(len(order) / max_batch))
    size = math.ceil(len(order) / n_batches)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches
    model.train()
    with torch.no_grad():
        for s in range(0, len(order), size):
            idx = order[s:s + size]
            if len(idx) >= 2:
                model(x[idx].contiguous(memory_format=torch.channels_last))


def train_observer(first: np.ndarray, second: np.ndarray, label: str, config: ObserverConfig | None = None,
                   seed: int = 0):
    """Train one observer network on all of ``first`` (label 0) and ``second`` (label 1).

    For a reader that rates patches it never saw (stage 04's ``machine-cnn``): the same network
    and recipe as one fold of :func:`c2st`, trained on every patch given (no subsampling: pass
    balanced sets), with the whole ``config.max_cpu_seconds`` as its CPU limit.

    Parameters
    ----------
    first, second : uint8 array, shape (n, s, s)
        The two training sets (e.g. held-out real and synthetic patches).
    label : str
        Keys the network's random streams (with the seed).
    config : ObserverConfig, optional
    seed : int

    Returns
    -------
    model : torch.nn.Module
        In eval mode; pass it to :func:`observer_scores`.
    epochs : int
        Epochs trained (fewer than ``config.epochs`` when the CPU limit cut in).

    Raises
    ------
    FeatureSpaceError
        When a patch array is not (n, s, s) or not finite, the sizes differ, or a set has fewer
        than 2 patches.
    """
    import torch


    config = config or ObserverConfig()
    first = check_patch_array(first, f"observer {label}: first set")
    second = check_patch_array(second, f"observer {label}: second set")
    if first.shape[1:] != second.shape[1:] or min(len(first), len(second)) < 2:
        raise FeatureSpaceError(f"observer {label}: needs two sets of at least 2 patches of one size, got "
                                f"{first.shape} and {second.shape}")
    x = torch.cat([_as_tensor(first), _as_tensor(second)])
    y = torch.cat([torch.zeros(len(first)), torch.ones(len(second))])
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.n_threads)
    try:
        return _train(x, y, config, seed, name_key(label), config.n_folds, config.max_cpu_seconds)
    finally:
        torch.set_num_threads(old_threads)


def observer_scores(model, patches: np.ndarray, n_threads: int = 1) -> np.ndarray:
    """P(second set) of each patch, from a network of :func:`train_observer`.

    Parameters
    ----------
    model : torch.nn.Module
    patches : uint8 array, shape (n, s, s)
    n_threads : int

    Returns
    -------
    float64 array, shape (n,)
        Probabilities in (0, 1).

    Raises
    ------
    FeatureSpaceError
        When ``patches`` is not (n, s, s) or not finite.
    """
    import torch

    patches = check_patch_array(patches, "observer patches")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        return _score(model, _as_tensor(patches))
    finally:
        torch.set_num_threads(old_threads)


def _score(model, x, batch: int = 256) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = [model(x[s:s + batch].contiguous(memory_format=torch.channels_last)).squeeze(1)
               for s in range(0, len(x), batch)]
    return torch.sigmoid(torch.cat(out)).numpy().astype(np.float64)


def _saliency(model, x) -> np.ndarray:
    """Sum over the patches x (B, 1, H, W) of |d logit / d pixel|, shape (H, W) (the caller
    divides by the number of patches)."""
    import torch

    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    for s in range(0, len(x), 64):
        xb = x[s:s + 64].clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        model(xb).sum().backward()
        total += xb.grad.abs().sum(dim=(0, 1)).double()
    return total.numpy()
