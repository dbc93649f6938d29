"""Stage 02 synthesis: synthetic lesion patches from a trained G, traceable and regenerable.

Patch ``i`` of a study with seed ``s`` comes from the latent vector of the ``"synthesis"``
stream keyed by ``(s, i)`` (:mod:`mammo_lib.generate.streams`), run through G in eval mode, so each
patch can be regenerated alone from (checkpoint, latent_seed). Patch ids carry a digest of G's
weights (not of the checkpoint file), so the same training gives the same ids. Reads a
checkpoint (:mod:`mammo_lib.generate.model`); writes the synthetic patch store
(``<run>/synthetic/synthetic.zarr`` + manifest).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mammo_lib.fileio import file_sha256
from mammo_lib.generate.model import (
    Architecture,
    load_checkpoint,
    load_generator,
    model_to_uint8,
    noise_map_sizes,
    resolve_device,
    synthesis_weights_key,
)
from mammo_lib.generate.streams import stream_seed
from mammo_lib.patch_store import MANIFEST_COLUMNS, write_patch_store
from mammo_lib.rng import torch_seeded
from mammo_lib.run_folder import run_relative

# training options recorded with every synthetic store, with their values in the paper's DCGAN
SYNTHESIS_OPTION_DEFAULTS = {
    "upsampling": "transposed", "spectral_norm": False, "noise_injection": False, "spectral_loss_weight": 0.0,
    "spectral_d_weight": 0.0, "diffaugment": "", "ema_decay": 0.0, "r1_gamma": 0.0,
    "lr_g": 2e-4, "lr_d": 2e-4, "label_smoothing": 0.0, "instance_noise": 0.0,
    "network": "dcgan", "g_padding": "zeros", "g_head_width": 0,
}

# recorded in every synthetic store's attributes: the text is kept as first written (when the module was
# mammo_lib.dcgan_rng) so that outputs stay byte-identical; the rule now lives in mammo_lib.generate.streams
LATENT_SEED_RULE = (
    "latent_seed = mammo_lib.dcgan_rng.stream_seed(seed, 'synthesis', index) (numpy SeedSequence); "
    "z = torch.randn(latent_dim, generator=torch.Generator().manual_seed(latent_seed)); with noise inputs, "
    "G's noise maps are drawn next from the same generator, one torch.randn(1, s, s) per map side s = 8, 16, ..."
)
# appended to LATENT_SEED_RULE for a G with a head layer (g_head_width > 0), whose last map is a second full-size one
HEAD_MAP_RULE = " (with a head layer, g_head_width > 0: then one more full-size map)"


def latent_seed_for(seed: int, index: int) -> int:
    """The seed of synthetic patch ``index``'s latent vector (stored in the manifest).

    A pure function of ``(seed, index)`` through :func:`mammo_lib.generate.streams.stream_seed`
    (purpose ``"synthesis"``); see :data:`LATENT_SEED_RULE`.
    """
    return stream_seed(seed, "synthesis", index)


def generator_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of G's weights: every tensor's name, dtype, shape and bytes, in name order.

    Unlike the checkpoint file's digest it depends on nothing but the weights, so the same
    training gives the same digest (synthetic patch ids use it).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        ``Generator.state_dict()`` or a checkpoint's ``"generator"`` entry.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def latent_inputs(latent_seed: int, arch: Architecture) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """G's inputs for one synthetic patch, a pure function of ``latent_seed`` (:data:`LATENT_SEED_RULE`).

    Parameters
    ----------
    latent_seed : int
        The manifest's ``latent_seed``.
    arch : Architecture
        G's architecture (its latent length and noise maps).

    Returns
    -------
    z : float32 tensor, shape (latent_dim,)
        N(0, 1), the first draw of the seeded generator (the same z as before G had noise inputs).
    noise : list of float32 tensors, shapes (1, s, s)
        The noise maps (:func:`mammo_lib.generate.model.noise_map_sizes`), drawn after z from the same
        generator; empty when G has no noise inputs.
    """
    gen = torch_seeded(latent_seed)
    z = torch.randn(arch.latent_dim, generator=gen)
    return z, [torch.randn(1, s, s, generator=gen) for s in noise_map_sizes(arch)]


@torch.no_grad()
def regenerate_patches(checkpoint: str | os.PathLike, latent_seeds: Iterable[int], device: str = "cpu",
                       batch_size: int = 64) -> np.ndarray:
    """Re-create synthetic patches from a checkpoint and their manifest ``latent_seed`` values.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        The checkpoint named in the synthetic store's attributes.
    latent_seeds : iterable of int
        The manifest's ``latent_seed`` values of the patches wanted.
    device : str
        Where G runs; CPU reproduces a CPU synthesis bit for bit.
    batch_size : int
        Latent vectors per forward pass (does not change the result).

    Returns
    -------
    uint8 array, shape (len(latent_seeds), image_size, image_size)
        Grey levels 0-255.

    Raises
    ------
    CheckpointError
        As :func:`load_generator`.
    """
    generator, _ = load_generator(checkpoint, device=device)
    seeds = [int(s) for s in latent_seeds]
    out = []
    dev = next(generator.parameters()).device
    for start in range(0, len(seeds), batch_size):
        inputs = [latent_inputs(s, generator.arch) for s in seeds[start:start + batch_size]]
        z = torch.stack([zi for zi, _ in inputs]).to(dev)
        maps = [torch.stack(m).to(dev) for m in zip(*(ni for _, ni in inputs), strict=True)] or None
        out.append(model_to_uint8(generator(z, maps)))
    size = generator.arch.image_size
    return np.concatenate(out) if out else np.zeros((0, size, size), np.uint8)


def generate_synthetic_patches(
    checkpoint: str | os.PathLike,
    n: int,
    seed: int,
    out_store: str | os.PathLike,
    device: str = "auto",
    batch_size: int = 64,
) -> Path:
    """Write ``n`` synthetic lesion patches from G of ``checkpoint`` into a patch store.

    Patch ``i`` comes from the latent vector (and, for a G with noise inputs, the noise maps)
    seeded with ``latent_seed_for(seed, i)`` (:func:`latent_inputs`); the manifest records the
    checkpoint's SHA-256, the digest of G's weights, the latent seed and the index, so any patch
    can be traced to its model and regenerated with :func:`regenerate_patches`. Patch ids are
    ``dcgan-<first 8 hex digits of generator_digest>-s<seed>-<index>``: the same weights and
    seed give the same ids.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A training checkpoint (``dcgan/checkpoints/last.pt``).
    n : int
        Number of patches, >= 1.
    seed : int
        Study seed (>= 0); fixes the latent vectors.
    out_store : str or os.PathLike
        The patch store to write (``synthetic/synthetic.zarr``), replaced when it exists.
    device : str
        Where G runs (``"auto"``: CUDA when present). On a GPU a warning says that a CPU
        regeneration may differ by one grey level in rare pixels.
    batch_size : int
        Latent vectors per forward pass (does not change the result).

    Returns
    -------
    pathlib.Path
        The store written: uint8 patches, shape (n, image_size, image_size), and its manifest
        (the study's manifest columns plus ``checkpoint_sha256``, ``generator_sha256``,
        ``latent_seed``, ``index``, ``trained_on_lesion_classes`` and the training options).
        Paths in its attributes are relative to the run folder (the store's grandparent).

    Raises
    ------
    ValueError
        When ``n`` < 1 or ``seed`` < 0.
    CheckpointError
        As :func:`load_generator`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 synthetic patches, got {n}")
    checkpoint = Path(checkpoint)
    sha = file_sha256(checkpoint) if checkpoint.exists() else ""
    seeds = [latent_seed_for(seed, i) for i in range(n)]
    dev = resolve_device(device)
    patches = regenerate_patches(checkpoint, seeds, device=str(dev), batch_size=batch_size)
    state = load_checkpoint(checkpoint)
    weights_key = synthesis_weights_key(state)
    weights_sha = generator_digest(state[weights_key])
    config = state.get("config") or {}
    # which real lesion classes G was trained on (None: all), so the synthetic store is traceable
    trained_on = config.get("lesion_classes")
    # the training options that shaped G, one manifest column each
    options = {name: config.get(name, default) for name, default in SYNTHESIS_OPTION_DEFAULTS.items()}
    manifest = pd.DataFrame({
        "patch_id": [f"dcgan-{weights_sha[:8]}-s{seed}-{i:06d}" for i in range(n)],
        "group": "synthetic",
        "source_kind": "dcgan",
        "image_id": "",
        "lesion_id": "",
        "lesion_class": "synthetic",
        "center_row": -1,
        "center_col": -1,
        "normalisation": "none",
        "checksum": "",
        "checkpoint_sha256": sha,
        "generator_sha256": weights_sha,
        "latent_seed": seeds,
        "index": list(range(n)),
        "trained_on_lesion_classes": ";".join(trained_on) if trained_on else "all",
        "generator_weights": weights_key,
        **{f"dcgan_{name}": value for name, value in options.items()},
    })
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    attrs = {
        "stage": "02_train_dcgan",
        "checkpoint": run_relative(Path(checkpoint).resolve(), Path(out_store).parent.parent, outside="absolute"),
        "checkpoint_sha256": sha,
        "generator_sha256": weights_sha,
        "checkpoint_iteration": state.get("iteration"),
        "trained_on_lesion_classes": list(trained_on) if trained_on else None,
        "seed": int(seed),
        "latent_seed_rule": LATENT_SEED_RULE + (HEAD_MAP_RULE if options.get("g_head_width") else ""),
        "generator_mode": "eval",
        "generator_weights": weights_key,
        "training_options": options,
    }
    if dev.type != "cpu":
        warnings.warn("synthesis on a GPU: regenerating on CPU may differ by one grey level in rare pixels", stacklevel=2)
    return write_patch_store(out_store, patches, manifest, attrs=attrs)
