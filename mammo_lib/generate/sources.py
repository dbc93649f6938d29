"""Where synthetic patches come from: a folder of files, a TorchScript model, a medigan model.

Each reader returns the patches (uint8, shape (n, size, size)) and their manifest rows with
provenance: the source file and its SHA-256, or the model's digest, the latent seed and index.
Latents are N(0, 1), drawn from a torch.Generator seeded from (study seed, "latents", generator
name), so the same seed gives the same patches.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_lib import rng
from mammo_lib.fileio import file_sha256
from mammo_lib.generate.contract import (
    IMAGE_SUFFIXES,
    LATENT_SHAPES,
    OUTPUT_RANGES,
    GeneratorError,
    GeneratorSpec,
    fit_size,
    item_label,
    parse_generator_items,
    problem_message,
    to_study_uint8,
)
from mammo_lib.sources.dicom_io import DicomReadError, read_dicom_pixels


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


def _patch_files(root: Path) -> list[Path]:
    """The patch files of a folder source: every file below ``root`` with a suffix in
    :data:`~mammo_lib.generate.contract.IMAGE_SUFFIXES` (any case), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise GeneratorError(f"{root}: the folder of synthetic patches does not exist")
    files = _patch_files(root)
    if not files:
        raise GeneratorError(f"{root}: no patch files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def _metadata_path(value: str, root: Path) -> Path:
    """A folder source's ``metadata`` file: as given when absolute, else inside the folder."""
    path = Path(value)
    return path if path.is_absolute() else root / path


def _read_metadata(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # ParserError, EmptyDataError and UnicodeDecodeError are ValueErrors
        raise GeneratorError(f"{path}: the metadata CSV cannot be read ({_one_line(exc)})") from None
    if "file" not in table.columns:
        raise GeneratorError(f"{path}: the metadata CSV needs a 'file' column naming each patch file")
    return table


def _metadata_table(spec: GeneratorSpec, root: Path) -> dict[str, dict]:
    if not spec.get("metadata"):
        return {}
    table = _read_metadata(_metadata_path(spec.get("metadata"), root))
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


def model_patches(spec: GeneratorSpec, patch_size: int | None, seed: int,
                  sample: Callable[[Any], np.ndarray], model_digest: str,
                  value_range: tuple[float, float]) -> tuple[np.ndarray, pd.DataFrame]:
    """Draw ``spec["n"]`` patches from a model through ``sample(latents) -> (b, [1,] h, w)``.

    Latents are N(0, 1) from a torch.Generator seeded by :func:`latent_generator_seed`, one batch
    at a time; each patch records the latent seed and its index. ``patch_size`` None skips the
    size check (a trial call of :func:`check_generators`).

    Raises
    ------
    GeneratorError
        When the model fails or returns the wrong shape or range.
    """
    import torch

    n, dim = int(spec.get("n")), int(spec.get("latent_dim", 0))
    batch = int(spec.get("batch_size", 64))
    latent_seed = latent_generator_seed(seed, spec.name)
    gen = rng.torch_seeded(latent_seed)
    flat = spec.get("latent_shape", "nchw") == "flat"
    patches, rows = [], []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        z = torch.randn((b, dim) if flat else (b, dim, 1, 1), generator=gen)
        try:
            out = np.asarray(sample(z), dtype=np.float64)
        except Exception as exc:  # a user's model may raise anything
            raise GeneratorError(f"generator {spec.name!r}: calling the model failed: {_one_line(exc)}") from None
        if out.ndim == 4 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 3 or out.shape[0] != b:
            raise GeneratorError(f"generator {spec.name!r} returned shape {tuple(out.shape)} for {b} latents; "
                                 "expected (b, 1, h, w) or (b, h, w) grey patches")
        for k, image in enumerate(out):
            where = f"generator {spec.name!r} patch {start + k}"
            patch, method = to_study_uint8(image, where, spec.get("rescale", "auto"), value_range)
            patch, resized = fit_size(patch, patch_size, bool(spec.get("resize")), where) if patch_size else (patch, "")
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
    if spec.get("output_range", "tanh") not in OUTPUT_RANGES:
        raise GeneratorError(f"generator {spec.name!r}: output_range must be one of {sorted(OUTPUT_RANGES)}")
    device = torch.device(spec.get("device", "cpu"))
    try:
        model = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as exc:
        raise GeneratorError(f"generator {spec.name!r}: {path} is not a TorchScript model ({_one_line(exc)})") from None

    def sample(z):
        with torch.no_grad():
            return model(z.to(device)).float().cpu().numpy()

    return model_patches(spec, patch_size, seed, sample, "sha256:" + file_sha256(path),
                         OUTPUT_RANGES[spec.get("output_range", "tanh")])


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


# ----------------------------------------------------------------------------- checks before any work

_MEDIGAN_INSTALL = "`pip install medigan`, or `pip install -e '.[medigan]'`"
_TORCHSCRIPT_EXPORT = "export the generator with torch.jit.script(model).save(path) or torch.jit.trace(model, z).save(path)"


def _one_line(exc: BaseException) -> str:
    """An exception as one line: the error of a TorchScript traceback, else the first line, without
    torch's advice about corrupted checkpoints, at most 300 characters."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if "Traceback of TorchScript" in text else lines[0]
    line = line.split(" This is an internal miniz error")[0]
    if not re.match(r"^[A-Za-z_.]*(Error|Exception):", line):
        line = f"{type(exc).__name__}: {line}"
    return line if len(line) <= 300 else line[:297] + "..."


def _shown(value: str) -> str:
    return repr(value) if Path(value).is_absolute() else f"{value!r} (relative to {os.getcwd()})"


def _existing(value: Any, key: str, want: str, what: str, problems: list[str]) -> Path | None:
    """``value`` as a readable folder (``want="folder"``) or file, or None with the problem appended.
    A value that is not a non-empty string was reported by :func:`parse_generator_items`."""
    if not (isinstance(value, str) and value.strip()):
        return None
    path = Path(value)
    if not path.exists():
        problems.append(f"{key} {_shown(value)}: no such {want} ({what})")
    elif want == "folder" and not path.is_dir():
        problems.append(f"{key} {_shown(value)}: is a file, not a folder ({what})")
    elif want == "file" and not path.is_file():
        problems.append(f"{key} {_shown(value)}: is a folder, not a file ({what})" if path.is_dir()
                        else f"{key} {_shown(value)}: not a regular file ({what})")
    elif not os.access(path, os.R_OK | (os.X_OK if want == "folder" else 0)):
        problems.append(f"{key} {_shown(value)}: cannot be read (permission denied)")
    else:
        return path
    return None


def _first_image(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The first 2-D patch of a patch file (a ``.npy`` stack is memory-mapped, not read whole)."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise GeneratorError(f"{path}: not a readable NumPy array ({_one_line(exc)})") from None
        if arr.ndim == 3 and len(arr):
            return np.asarray(arr[0]), None
        if arr.ndim != 2:
            raise GeneratorError(f"{path}: a .npy file must hold one patch (h, w) or a stack (n, h, w), got {arr.shape}")
        return np.asarray(arr), None
    images, value_range = _read_image_file(path)
    return images[0], value_range


def _check_folder(spec: GeneratorSpec, patch_size: int | None) -> list[str]:
    """A folder source: the folder, its patch files, its first patch file and its metadata CSV."""
    problems: list[str] = []
    root = _existing(spec.get("path"), "path", "folder", "the folder of synthetic patches", problems)
    if root is not None:
        try:
            files = _patch_files(root)
        except OSError as exc:
            files = None
            problems.append(f"path {_shown(spec.get('path'))}: cannot be listed ({_one_line(exc)})")
        if files == []:
            problems.append(f"path {_shown(spec.get('path'))}: no patch files ({', '.join(IMAGE_SUFFIXES)}) "
                            "in this folder or below it")
        elif files:
            try:
                image, value_range = _first_image(files[0])
                patch, _ = to_study_uint8(image, str(files[0]), spec.get("rescale", "auto"), value_range)
                if patch_size and not spec.get("resize"):
                    fit_size(patch, patch_size, False, str(files[0]))
            except GeneratorError as exc:
                problems.append(f"path: the first of its {len(files)} patch file(s) breaks the patch contract: {exc}")
    metadata = spec.get("metadata")
    if isinstance(metadata, str) and metadata.strip() and (root is not None or Path(metadata).is_absolute()):
        path = _metadata_path(metadata, root or Path("."))
        if _existing(str(path), "metadata", "file", "the metadata CSV; a relative one is read inside the folder",
                     problems) is not None:
            try:
                _read_metadata(path)
            except GeneratorError as exc:
                problems.append(f"metadata: {exc}")
    return problems


def _device_problem(value: Any) -> str | None:
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError) as exc:
        return f"device {value!r} is not a torch device ({_one_line(exc)})"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"device {value!r}: no CUDA GPU is visible on this machine"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return f"device {value!r}: MPS is not available on this machine"
    return None


def _check_torchscript(spec: GeneratorSpec, patch_size: int | None) -> list[str]:
    """A TorchScript source: the file loads on the CPU, the device exists, and (CPU device, valid
    ``latent_dim``) one latent vector gives one patch that meets the contract."""
    import torch

    problems: list[str] = []
    device = spec.get("device", "cpu")
    device_problem = _device_problem(device) if isinstance(device, str) and device.strip() else "reported"
    if device_problem and device_problem != "reported":
        problems.append(device_problem)
    path = _existing(spec.get("path"), "path", "file", "the TorchScript generator", problems)
    if path is None:
        return problems
    try:
        model = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises RuntimeError, ValueError or worse for a file it cannot read
        problems.append(f"path {_shown(spec.get('path'))}: not a TorchScript model; torch.jit.load said "
                        f"\"{_one_line(exc)}\" ({_TORCHSCRIPT_EXPORT})")
        return problems
    dim = spec.get("latent_dim")
    trial = (isinstance(dim, int) and not isinstance(dim, bool) and dim > 0
             and device_problem is None and torch.device(device).type == "cpu"
             and spec.get("output_range", "tanh") in OUTPUT_RANGES and spec.get("latent_shape", "nchw") in LATENT_SHAPES)
    if trial:
        def sample(z):
            with torch.no_grad():
                return model(z).float().numpy()

        one = GeneratorSpec(spec.name, spec.kind, {**spec.options, "n": 1, "batch_size": 1})
        try:
            model_patches(one, patch_size, 0, sample, "trial", OUTPUT_RANGES[spec.get("output_range", "tanh")])
        except GeneratorError as exc:
            problems.append(f"a trial call on one latent vector (latent_dim {dim}) breaks the contract: {exc}")
    return problems


def _check_medigan(spec: GeneratorSpec, patch_size: int | None) -> list[str]:
    """A medigan source: the optional package is installed (its weights need the network: not checked)."""
    import importlib.util

    try:
        installed = importlib.util.find_spec("medigan") is not None
    except (ImportError, ValueError):
        installed = False
    if installed:
        return []
    return [f"kind 'medigan' needs the optional medigan package, which is not installed here ({_MEDIGAN_INSTALL}); "
            f"it then downloads the weights of {spec.get('model_id')!r} on first use, which needs network access"]


_CHECKS = {"folder": _check_folder, "torchscript": _check_torchscript, "medigan": _check_medigan}


def _item_index(problem: str) -> int:
    found = re.match(r"generators\[(\d+)\]", problem)
    return int(found.group(1)) if found else -1


def check_generators(items: list[dict] | None, *, patch_size: int | None = None) -> list[GeneratorSpec]:
    """Check stage 02's ``generators`` parameter as far as it can be without training or importing.

    Meant to run before stage 01, so that a bad item stops the study in seconds rather than after
    the DCGAN has trained. Beyond the shape checks of
    :func:`mammo_lib.generate.contract.parse_generators`, it opens what each item names:

    ``folder``
        ``path`` is an existing, readable folder holding at least one patch file (a suffix of
        :data:`~mammo_lib.generate.contract.IMAGE_SUFFIXES`, searched below it as the import
        does); the first patch file (in sorted order; the first patch of a ``.npy`` stack) is
        read and meets the patch contract: grey, finite, in range for its ``rescale``, and (with
        ``patch_size`` and no ``resize``) the study's size. The other files are checked by the
        import. ``metadata`` (relative: inside the folder, as the import reads it) is a readable
        CSV with a ``file`` column.
    ``torchscript``
        ``path`` is a readable file that ``torch.jit.load(path, map_location="cpu")`` loads;
        ``device`` is a torch device present on this machine; with a CPU device (the default),
        the model is called on one N(0, 1) latent vector of the item's ``latent_shape`` and its
        output must be one grey patch in its ``output_range`` and (with ``patch_size`` and no
        ``resize``) of the study's size.
    ``medigan``
        the optional ``medigan`` package is installed.

    Parameters
    ----------
    items : list of dict or None
        The ``generators`` parameter; None or empty means the paper's one DCGAN. Relative paths
        are relative to the current directory (``metadata``: to the folder), as the import reads
        them.
    patch_size : int, optional
        The study's patch size in pixels; None skips the size checks.

    Returns
    -------
    list of GeneratorSpec
        As :func:`~mammo_lib.generate.contract.parse_generators`, in the given order.

    Raises
    ------
    GeneratorError
        When any item has a problem: every problem of every item, in item order, in one
        message; each line names the item (``generators[1] (mine)``), the key and the problem:
        a shape problem (:func:`~mammo_lib.generate.contract.parse_generator_items`), a missing
        or unreadable path, a file where a folder is expected or the reverse, a folder without
        patch files, a first patch file breaking the contract, an unreadable metadata CSV or one
        without a ``file`` column, a file TorchScript cannot load (torch's error in one line), a
        device absent here, a trial output breaking the contract, or a missing medigan package.
    """
    indexed, problems = parse_generator_items(items)
    for index, spec in indexed:
        check = _CHECKS.get(spec.kind)
        if check is not None:
            problems += [f"{item_label(index, spec.name)}: {problem}" for problem in check(spec, patch_size)]
    if problems:
        raise GeneratorError(problem_message(sorted(problems, key=_item_index)))
    return [spec for _, spec in indexed]
