"""Stage 03's learned feature space: a small CNN trained here to tell real lesions from normal
tissue; its penultimate layer (32 values per patch) gives features that need no downloaded
weights.

Randomness: the initial weights and the batch order come from ``torch.Generator`` streams keyed
by (seed, purpose) (:func:`mammo_lib.feature_space.streams.torch_stream`); the global torch seed is
never touched. torch's thread count is restored after training. Reads and writes no files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from mammo_lib.feature_space.arrays import check_patch_array, flatten_pixels
from mammo_lib.feature_space.streams import torch_stream

FEATURE_DIM = 32


@dataclass
class LesionCNN:
    """A trained lesion-vs-normal CNN (``model``: a torch ``ModuleDict`` with ``features`` and
    ``head``); ``seconds`` is wall-clock training time (a timing)."""

    model: object
    input_size: int
    train_accuracy: float
    epochs: int
    seconds: float
    n_train: int
    feature_dim: int = FEATURE_DIM


def _build_cnn(feature_dim: int, generator):
    """The CNN, every weight drawn from ``generator`` with PyTorch's default distributions
    (Kaiming-uniform with a = sqrt(5), biases uniform in +-1/sqrt(fan_in))."""
    import torch.nn as nn

    meta = {"device": "meta"}  # built without weights, so torch's global generator is not drawn from
    features = nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2, padding=2, **meta), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, **meta), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, **meta), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4, feature_dim, **meta), nn.ReLU(),
    )
    model = nn.ModuleDict({"features": features, "head": nn.Linear(feature_dim, 2, **meta)})
    model = model.to_empty(device="cpu")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            fan_in = module.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


def _to_tensor(patches: np.ndarray, input_size: int):
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(flatten_pixels(patches).reshape(len(patches), 1, patches.shape[1], patches.shape[2]))
    if t.shape[-1] != input_size:
        t = F.interpolate(t, size=(input_size, input_size), mode="area")
    return t


def _epoch(model, opt, xb, yb, order, batch: int = 64) -> None:
    import torch

    for start in range(0, len(xb), batch):
        idx = order[start:start + batch]
        logits = model["head"](model["features"](xb[idx]))
        loss = torch.nn.functional.cross_entropy(logits, yb[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def train_lesion_cnn(
    lesion: np.ndarray,
    normal: np.ndarray,
    seed: int = 0,
    max_epochs: int = 15,
    max_seconds: float = 60.0,
    input_size: int = 64,
    n_threads: int = 2,
    progress: bool = False,
) -> LesionCNN:
    """Train the lesion-vs-normal CNN on real patches only (never on synthetic ones), on the CPU.

    Parameters
    ----------
    lesion, normal : uint8 array, shape (n, s, s)
        Real lesion and normal-tissue patches (labels 1 and 0).
    seed : int
        Keys the weight-initialisation and batch-order streams.
    max_epochs : int
        Epochs at most.
    max_seconds : float
        Wall-clock limit in seconds, checked after each epoch (a safety net: when it cuts in,
        the result depends on the machine's speed).
    input_size : int
        Patches are area-resampled to ``input_size`` x ``input_size`` pixels.
    n_threads : int
        torch CPU threads while training (restored afterwards).
    progress : bool
        Print a plain-text progress line per quarter of ``max_epochs``.

    Returns
    -------
    LesionCNN

    Raises
    ------
    FeatureSpaceError
        When a patch array is not (n, s, s) or not finite.
    """
    import torch

    lesion = check_patch_array(lesion, "lesion patches")
    normal = check_patch_array(normal, "normal patches")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    t0 = time.perf_counter()
    try:
        xb = torch.cat([_to_tensor(lesion, input_size), _to_tensor(normal, input_size)])
        yb = torch.cat([torch.ones(len(lesion), dtype=torch.long), torch.zeros(len(normal), dtype=torch.long)])
        model = _build_cnn(FEATURE_DIM, torch_stream(seed, "cnn_init"))
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        order_gen = torch_stream(seed, "cnn_batch_order")
        epochs = 0
        for _ in range(max_epochs):
            _epoch(model, opt, xb, yb, torch.randperm(len(xb), generator=order_gen))
            epochs += 1
            if progress and (epochs % max(1, max_epochs // 4) == 0 or epochs == max_epochs):
                print(f"lesion CNN: epoch {epochs} of at most {max_epochs}", flush=True)
            if time.perf_counter() - t0 > max_seconds:
                break
        with torch.no_grad():
            acc = float((model["head"](model["features"](xb)).argmax(1) == yb).float().mean())
    finally:
        torch.set_num_threads(old_threads)
    return LesionCNN(model=model, input_size=input_size, train_accuracy=acc, epochs=epochs,
                     seconds=time.perf_counter() - t0, n_train=len(xb))


def cnn_features(cnn: LesionCNN, patches: np.ndarray) -> np.ndarray:
    """Penultimate-layer activations of the lesion CNN.

    Parameters
    ----------
    cnn : LesionCNN
    patches : uint8 array, shape (n, s, s)

    Returns
    -------
    float64 array, shape (n, 32)
        Non-negative (ReLU) activations, unitless.

    Raises
    ------
    FeatureSpaceError
        When ``patches`` is not (n, s, s) or not finite.
    """
    import torch

    patches = check_patch_array(patches, "patches")
    with torch.no_grad():
        out = [cnn.model["features"](_to_tensor(patches[i:i + 256], cnn.input_size))
               for i in range(0, len(patches), 256)]
    return torch.cat(out).numpy().astype(np.float64)
