"""Where synthetic patches come from: a folder of files, a TorchScript model, a medigan model.

Each reader returns the patches (uint8, shape (n, size, size)) and their manifest rows with
provenance: the source file and its SHA-256, or the model's digest, the latent seed and index.
Latents are N(0, 1), drawn from a torch.Generator seeded from (study seed, "latents", generator
name), so the same seed gives the same patches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_lib import rng
from mammo_lib.fileio import file_sha256
from mammo_lib.generator_contract import (
    IMAGE_SUFFIXES,
    GeneratorError,
    GeneratorSpec,
    fit_size,
    to_study_uint8,
)


def _read_image_file(path: Path) -> tuple[list[np.ndarray], tuple[float, float] | None]:
    """The 2-D arrays in one file (a .npy stack gives several), and the range float values are
    expected in (None: [0, 1]; a DICOM's is that of its Bits Stored)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise GeneratorError(f"{path}: not a readable NumPy array ({exc})") from None
        if arr.ndim == 2:
            return [arr], None
        if arr.ndim == 3:
            return list(arr), None
        raise GeneratorError(f"{path}: a .npy file must hold one patch (h, w) or a stack (n, h, w), got {arr.shape}")
    if suffix in (".dcm", ".dicom"):
        from mammo_lib.dicom_io import DicomReadError, read_dicom_pixels

        try:
            pixels, meta = read_dicom_pixels(path)
        except DicomReadError as exc:
            raise GeneratorError(str(exc)) from None
        bits = int(meta.get("bits_stored") or 16)
        return [pixels], (0.0, float(2**bits - 1))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
                raise GeneratorError(f"{path}: colour or palette image (mode {img.mode}); patches must be grey-scale")
            return [np.array(img)], None
    except (UnidentifiedImageError, OSError) as exc:
        raise GeneratorError(f"{path}: not a readable image ({exc})") from None


def _folder_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise GeneratorError(f"{root}: the folder of synthetic patches does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GeneratorError(f"{root}: no patch files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def _metadata_table(spec: GeneratorSpec, root: Path) -> dict[str, dict]:
    if not spec.get("metadata"):
        return {}
    path = Path(spec.get("metadata"))
    path = path if path.is_absolute() else root / path
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise GeneratorError(f"{path}: the metadata CSV cannot be read ({exc})") from None
    if "file" not in table.columns:
        raise GeneratorError(f"{path}: the metadata CSV needs a 'file' column naming each patch file")
    return {row["file"]: {k: v for k, v in row.items() if k != "file"} for _, row in table.iterrows()}


def folder_patches(spec: GeneratorSpec, patch_size: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Read a folder source: every patch checked, rescaled and recorded.

    Parameters
    ----------
    spec : GeneratorSpec
        Kind ``"folder"``: ``path``; optional ``metadata``, ``resize``, ``rescale``.
    patch_size : int
        The study's patch size in pixels.

    Returns
    -------
    (uint8 array of shape (n, patch_size, patch_size), pandas.DataFrame)
        The patches and their manifest rows (provenance columns included).

    Raises
    ------
    GeneratorError
        Missing or empty folder, unreadable, colour, non-finite or wrongly sized patches (all
        listed, up to 20, in one message).
    """
    root = Path(spec.get("path"))
    files = _folder_files(root)
    meta = _metadata_table(spec, root)
    patches, rows, problems = [], [], []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            images, value_range = _read_image_file(path)
            sha = file_sha256(path)
            for k, image in enumerate(images):
                where = f"{path}" + (f"[{k}]" if len(images) > 1 else "")
                patch, method = to_study_uint8(image, where, spec.get("rescale", "auto"), value_range)
                patch, resized = fit_size(patch, patch_size, bool(spec.get("resize")), where)
                patches.append(patch)
                rows.append({"source_file": rel + (f"[{k}]" if len(images) > 1 else ""), "source_sha256": sha,
                             "rescale": method, "resized_from": resized, **meta.get(rel, {})})
        except GeneratorError as exc:
            problems.append(str(exc))
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise GeneratorError(f"generator {spec.name!r} (folder {root}): {len(problems)} file(s) break the patch "
                             "contract:\n  " + "\n  ".join(problems[:20]) + more)
    return np.stack(patches), pd.DataFrame(rows)



def latent_generator_seed(seed: int, name: str) -> int:
    """The seed of a generator's latent stream: :func:`mammo_lib.rng.stream_seed` of
    (study seed, "latents", a code of the generator's name)."""
    return rng.stream_seed(seed, "latents", rng.purpose_code(name))


def model_patches(spec: GeneratorSpec, patch_size: int, seed: int,
                  sample: Callable[[Any], np.ndarray], model_digest: str,
                  value_range: tuple[float, float]) -> tuple[np.ndarray, pd.DataFrame]:
    """Draw ``spec["n"]`` patches from a model through ``sample(latents) -> (b, [1,] h, w)``.

    Latents are N(0, 1) from a torch.Generator seeded by :func:`latent_generator_seed`, one batch
    at a time; each patch records the latent seed and its index.

    Raises
    ------
    GeneratorError
        When the model fails or returns the wrong shape or range.
    """
    import torch

    n, dim = int(spec.get("n")), int(spec.get("latent_dim", 0))
    batch = int(spec.get("batch_size", 64))
    latent_seed = latent_generator_seed(seed, spec.name)
    gen = torch.Generator().manual_seed(latent_seed)
    flat = spec.get("latent_shape", "nchw") == "flat"
    patches, rows = [], []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        z = torch.randn((b, dim) if flat else (b, dim, 1, 1), generator=gen)
        try:
            out = np.asarray(sample(z), dtype=np.float64)
        except Exception as exc:  # a user's model may raise anything
            raise GeneratorError(f"generator {spec.name!r}: calling the model failed: {type(exc).__name__}: {exc}") from None
        if out.ndim == 4 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 3 or out.shape[0] != b:
            raise GeneratorError(f"generator {spec.name!r} returned shape {tuple(out.shape)} for {b} latents; "
                                 "expected (b, 1, h, w) or (b, h, w) grey patches")
        for k, image in enumerate(out):
            where = f"generator {spec.name!r} patch {start + k}"
            patch, method = to_study_uint8(image, where, spec.get("rescale", "auto"), value_range)
            patch, resized = fit_size(patch, patch_size, bool(spec.get("resize")), where)
            patches.append(patch)
            rows.append({"model_digest": model_digest, "latent_seed": latent_seed, "latent_index": start + k,
                         "rescale": method, "resized_from": resized})
    return np.stack(patches), pd.DataFrame(rows)


def torchscript_patches(spec: GeneratorSpec, patch_size: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Patches from a TorchScript generator file (see the module docstring for its options).

    Raises
    ------
    GeneratorError
        Missing file, a file TorchScript cannot load, an unknown ``output_range``, or output
        breaking the contract (:func:`model_patches`).
    """
    import torch

    path = Path(spec.get("path"))
    if not path.is_file():
        raise GeneratorError(f"generator {spec.name!r}: TorchScript file {path} does not exist")
    ranges = {"tanh": (-1.0, 1.0), "unit": (0.0, 1.0)}
    if spec.get("output_range", "tanh") not in ranges:
        raise GeneratorError(f"generator {spec.name!r}: output_range must be one of {sorted(ranges)}")
    device = torch.device(spec.get("device", "cpu"))
    try:
        model = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as exc:
        raise GeneratorError(f"generator {spec.name!r}: {path} is not a TorchScript model ({exc})") from None

    def sample(z):
        with torch.no_grad():
            return model(z.to(device)).float().cpu().numpy()

    return model_patches(spec, patch_size, seed, sample, "sha256:" + file_sha256(path),
                         ranges[spec.get("output_range", "tanh")])


def medigan_patches(spec: GeneratorSpec, patch_size: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Patches from a medigan model (optional package; weights downloaded on first use).

    Raises
    ------
    GeneratorError
        When medigan is not installed (with the command to install it), or the model cannot be
        loaded (e.g. no network to download its weights), or its output breaks the contract.
    """
    try:
        from medigan import Generators  # optional dependency
    except ImportError:
        raise GeneratorError(
            f"generator {spec.name!r}: kind 'medigan' needs the optional medigan package "
            "(`pip install medigan`, or `pip install -e '.[medigan]'`); it then downloads the weights of "
            f"{spec.get('model_id')} on first use, which needs network access") from None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            Generators().generate(model_id=spec.get("model_id"), num_samples=int(spec.get("n")), output_path=tmp,
                                  install_dependencies=False, save_images=True, seed=seed)
        except Exception as exc:  # network, missing weights, model code: say which model and why
            raise GeneratorError(f"generator {spec.name!r}: medigan could not run model {spec.get('model_id')!r} "
                                 f"(its weights are downloaded on first use): {type(exc).__name__}: {exc}") from None
        folder = GeneratorSpec(spec.name, "folder", {"path": tmp, "resize": spec.get("resize", False),
                                                     "rescale": spec.get("rescale", "auto")})
        patches, rows = folder_patches(folder, patch_size)
    rows["model_digest"] = f"medigan:{spec.get('model_id')}"
    return patches, rows
