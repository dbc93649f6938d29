"""Synthetic lesions from any generator: each source becomes one synthetic patch store.

Stage 02 reads a list ``generators``; each item names one source of synthetic patches and
becomes ``synthetic/<name>.zarr`` (with ``manifest.csv``), which every later stage reads the same
way, whatever made the patches. Kinds:

``{"name": "dcgan", "kind": "dcgan"}``
    the built-in DCGAN, trained by stage 02 (:mod:`mammo_lib.dcgan_training`).
``{"name": "mine", "kind": "folder", "path": "/data/my_patches"}``
    a folder of PNG or TIFF files (8- or 16-bit grey), NumPy ``.npy`` files (one patch or a stack
    ``(n, h, w)``) or DICOM files; optionally ``"metadata": "meta.csv"``, a CSV with a ``file``
    column whose other columns (e.g. ``lesion_class``) are copied into the manifest.
``{"name": "g", "kind": "torchscript", "path": "generator.pt", "latent_dim": 100, "n": 500}``
    a TorchScript generator called on N(0, 1) latents of shape ``(b, latent_dim, 1, 1)``
    (``"latent_shape": "flat"`` for ``(b, latent_dim)``), on ``"device"`` (default CPU); its
    output ``(b, 1, h, w)`` or ``(b, h, w)`` in ``"output_range"`` ``"tanh"`` ([-1, 1], the
    default) or ``"unit"`` ([0, 1]).
``{"name": "optimam", "kind": "medigan", "model_id": "00002_DCGAN_MMG_MASS_ROI", "n": 500}``
    a model of the medigan library (Osuala et al. 2023), where the optional ``medigan`` package
    is installed and its weights can be downloaded on first use.

The contract every imported patch meets (the same as the DCGAN's own): size equal to the study's
``patch_size`` (or, with ``"resize": true``, resized with anti-aliasing and the original size
recorded), one grey channel, finite values, rescaled to uint8 with the method recorded per patch
(``rescale``: ``"uint8"`` as stored, ``"dtype-range"`` for other integer types, ``"unit"`` for
floats in [0, 1], ``"tanh"`` for [-1, 1], or ``"minmax"`` per patch when the item asks for it).
Each patch keeps its provenance: source file and its SHA-256, or the model's digest, latent seed
and index. Bad input (wrong size, colour, NaN, an empty folder, a generator returning the wrong
shape) raises :class:`GeneratorError` naming the file or generator and the problem, before
anything is written; a store is written to a temporary folder and renamed into place, so a
killed import never leaves half a store.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_lib.fileio import file_sha256
from mammo_lib.patch_store import MANIFEST_COLUMNS, write_patch_store

GENERATOR_KINDS = ("dcgan", "folder", "torchscript", "medigan")
RESCALE_METHODS = ("auto", "minmax")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".dcm", ".dicom")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
#: extra manifest columns of an imported synthetic store
PROVENANCE_COLUMNS = ("generator", "generator_kind", "source_file", "source_sha256", "model_digest",
                      "latent_seed", "latent_index", "rescale", "resized_from")
MAX_PATCHES = 1_000_000


class GeneratorError(ValueError):
    """A generator item or its output breaks the patch contract; the message names the source."""


@dataclass(frozen=True)
class GeneratorSpec:
    """One source of synthetic patches (one item of stage 02's ``generators`` list).

    Attributes
    ----------
    name : str
        Store name: ``synthetic/<name>.zarr``; letters, digits, ``-`` and ``_``.
    kind : {"dcgan", "folder", "torchscript", "medigan"}
    options : dict
        The item's other keys (``path``, ``n``, ``latent_dim``, ``model_id``, ``resize``,
        ``rescale``, ``metadata``, ``device``, ``latent_shape``, ``output_range``, ``batch_size``).
    """

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


_REQUIRED = {"dcgan": (), "folder": ("path",), "torchscript": ("path", "latent_dim", "n"),
             "medigan": ("model_id", "n")}
_ALLOWED = {"dcgan": set(), "folder": {"path", "metadata", "resize", "rescale"},
            "torchscript": {"path", "latent_dim", "n", "device", "latent_shape", "output_range", "resize",
                            "batch_size"},
            "medigan": {"model_id", "n", "resize", "rescale"}}


def parse_generators(items: list[dict] | None) -> list[GeneratorSpec]:
    """Validate stage 02's ``generators`` parameter.

    Parameters
    ----------
    items : list of dict or None
        ``[{"name": ..., "kind": ..., ...}, ...]``; None or empty means the paper's one DCGAN.

    Returns
    -------
    list of GeneratorSpec
        In the given order (the first is the "GAN" of the paper's figures).

    Raises
    ------
    GeneratorError
        For an item that is not a dict, a missing or bad name, a repeated name, an unknown kind,
        a missing required key, an unknown key, or a non-positive ``n`` / ``latent_dim``; all
        problems are listed in one message.
    """
    if not items:
        return [GeneratorSpec("dcgan", "dcgan")]
    problems, specs, seen = [], [], set()
    for k, item in enumerate(items):
        where = f"generators[{k}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be a dict like {{\"name\": \"mine\", \"kind\": \"folder\", ...}}, got {item!r}")
            continue
        name, kind = str(item.get("name", "")), item.get("kind")
        where = f"generators[{k}] ({name or 'unnamed'})"
        if not NAME_PATTERN.match(name):
            problems.append(f"{where}: name must be 1-40 letters, digits, '-' or '_' (it names synthetic/<name>.zarr)")
        elif name in seen:
            problems.append(f"{where}: the name {name!r} is used twice")
        seen.add(name)
        if kind not in GENERATOR_KINDS:
            problems.append(f"{where}: kind {kind!r} is not one of {GENERATOR_KINDS}")
            continue
        options = {key: v for key, v in item.items() if key not in ("name", "kind")}
        missing = [key for key in _REQUIRED[kind] if key not in options]
        unknown = sorted(set(options) - _ALLOWED[kind])
        if missing:
            problems.append(f"{where}: kind {kind!r} needs {missing}")
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown} for kind {kind!r} (known: {sorted(_ALLOWED[kind])})")
        for key in ("n", "latent_dim", "batch_size"):
            if key in options and (not isinstance(options[key], int) or isinstance(options[key], bool)
                                   or not 0 < options[key] <= MAX_PATCHES):
                problems.append(f"{where}: {key} must be a positive integer, got {options[key]!r}")
        if options.get("rescale", "auto") not in RESCALE_METHODS:
            problems.append(f"{where}: rescale must be one of {RESCALE_METHODS}")
        specs.append(GeneratorSpec(name, kind, options))
    if problems:
        raise GeneratorError("bad generators parameter:\n  " + "\n  ".join(problems))
    return specs


# ----------------------------------------------------------------------------- the patch contract


def to_study_uint8(image: np.ndarray, where: str, rescale: str = "auto",
                   value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, str]:
    """One 2-D grey patch rescaled to uint8, and the name of the method used.

    Parameters
    ----------
    image : array, shape (h, w)
        Any real dtype.
    where : str
        What the patch is (file, generator and index), for error messages.
    rescale : {"auto", "minmax"}
        ``"auto"``: uint8 as stored, other integer types by their dtype's range, floats from
        ``value_range`` (default [0, 1]); ``"minmax"``: each patch's own minimum and maximum.
    value_range : (float, float), optional
        The range floats are expected in (``(-1, 1)`` for a tanh generator).

    Returns
    -------
    (uint8 array of shape (h, w), str)

    Raises
    ------
    GeneratorError
        When the patch is not 2-D, not real-valued, not finite, or (``"auto"``) a float outside
        its expected range by more than 1e-3.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise GeneratorError(f"{where}: a patch must be one 2-D grey image, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)) \
            or arr.dtype == np.bool_:
        raise GeneratorError(f"{where}: pixel type {arr.dtype} is not a number")
    if not np.all(np.isfinite(arr)):
        raise GeneratorError(f"{where}: {int(np.size(arr) - np.isfinite(arr).sum())} NaN or infinite pixel(s)")
    if rescale == "minmax":
        low, high = float(arr.min()), float(arr.max())
        scaled = (arr.astype(np.float64) - low) / (high - low) if high > low else np.zeros(arr.shape)
        return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8), "minmax"
    if arr.dtype == np.uint8:
        return arr, "uint8"
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        scaled = (arr.astype(np.float64) - info.min) / (info.max - info.min)
        return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8), f"dtype-range {arr.dtype}"
    low, high = value_range or (0.0, 1.0)
    if arr.min() < low - 1e-3 or arr.max() > high + 1e-3:
        raise GeneratorError(f"{where}: float values span [{arr.min():.4g}, {arr.max():.4g}], outside the expected "
                             f"[{low:g}, {high:g}]; give \"rescale\": \"minmax\" to scale each patch by its own range")
    scaled = (arr.astype(np.float64) - low) / (high - low)
    name = {(-1.0, 1.0): "tanh", (0.0, 1.0): "unit"}.get((low, high), f"range [{low:g}, {high:g}]")
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8), name


def fit_size(patch: np.ndarray, patch_size: int, resize: bool, where: str) -> tuple[np.ndarray, str]:
    """A uint8 patch at ``patch_size`` squared: as given, or resized (anti-aliased) when allowed.

    Returns
    -------
    (uint8 array, str)
        The patch and its original size ``"HxW"`` when resized, else ``""``.

    Raises
    ------
    GeneratorError
        When the size differs and ``resize`` is False.
    """
    if patch.shape == (patch_size, patch_size):
        return patch, ""
    if not resize:
        raise GeneratorError(f"{where}: patch is {patch.shape[0]}x{patch.shape[1]} pixels, the study's patches are "
                             f"{patch_size}x{patch_size}; give \"resize\": true to resize (recorded per patch)")
    from skimage.transform import resize as sk_resize

    out = sk_resize(patch.astype(np.float64) / 255.0, (patch_size, patch_size), order=1, anti_aliasing=True,
                    preserve_range=True)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), f"{patch.shape[0]}x{patch.shape[1]}"


# ----------------------------------------------------------------------------- folder


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


# ----------------------------------------------------------------------------- models


def latent_generator_seed(seed: int, name: str) -> int:
    """The seed of a generator's latent stream, from (study seed, "latents", generator name)."""
    entropy = [int(seed), *b"latents", *name.encode("utf-8")]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


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


# ----------------------------------------------------------------------------- the store


def _write_store_atomically(path: Path, patches: np.ndarray, manifest: pd.DataFrame, attrs: dict) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_patch_store(tmp, patches, manifest, attrs=attrs)
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def import_generator(spec: GeneratorSpec, out_dir: str | os.PathLike, patch_size: int, seed: int = 0) -> Path:
    """Write ``<out_dir>/<name>.zarr`` from a folder, TorchScript or medigan source.

    Parameters
    ----------
    spec : GeneratorSpec
        Any kind but ``"dcgan"`` (stage 02 trains that one).
    out_dir : str or os.PathLike
        The run's ``synthetic/`` folder.
    patch_size : int
        The study's patch size in pixels (the real lesion store's).
    seed : int
        Study seed; model latents come from (seed, "latents", name).

    Returns
    -------
    pathlib.Path
        The store written.

    Raises
    ------
    GeneratorError
        As the source's reader; nothing is written then.
    """
    readers = {"folder": lambda: folder_patches(spec, patch_size),
               "torchscript": lambda: torchscript_patches(spec, patch_size, seed),
               "medigan": lambda: medigan_patches(spec, patch_size, seed)}
    if spec.kind not in readers:
        raise GeneratorError(f"generator {spec.name!r}: kind {spec.kind!r} is not imported (the DCGAN is trained by stage 02)")
    patches, rows = readers[spec.kind]()
    n = len(patches)
    manifest = pd.DataFrame({
        "patch_id": [f"{spec.name}-{i:06d}" for i in range(n)], "group": "synthetic", "source_kind": spec.kind,
        "image_id": "", "lesion_id": "", "lesion_class": rows.get("lesion_class", pd.Series([""] * n)).to_numpy(),
        "center_row": -1, "center_col": -1, "normalisation": "none", "checksum": "",
        "generator": spec.name, "generator_kind": spec.kind,
    })
    for col in PROVENANCE_COLUMNS:
        if col not in manifest.columns:
            manifest[col] = rows[col].to_numpy() if col in rows.columns else ""
    extra = [c for c in rows.columns if c not in manifest.columns]
    for col in extra:
        manifest[col] = rows[col].to_numpy()
    attrs = {"generator": spec.name, "generator_kind": spec.kind, "options": {k: v for k, v in spec.options.items()},
             "patch_size": patch_size, "columns": list(MANIFEST_COLUMNS)}
    return _write_store_atomically(Path(out_dir) / f"{spec.name}.zarr", patches, manifest, attrs)
