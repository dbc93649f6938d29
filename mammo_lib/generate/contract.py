"""The contract of stage 02's ``generators`` parameter and of every synthetic patch.

:func:`parse_generators` validates the list of generator items (see :mod:`mammo_lib.generate.imported`
for the kinds); :func:`to_study_uint8` and :func:`fit_size` make one patch meet the study's
contract (one grey channel, finite, uint8 with the rescale method recorded, the study's size or
an explicit, recorded resize).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GENERATOR_KINDS = ("dcgan", "folder", "torchscript", "medigan")
RESCALE_METHODS = ("auto", "minmax")
#: a TorchScript generator's ``output_range``: the range its float output is expected in
OUTPUT_RANGES = {"tanh": (-1.0, 1.0), "unit": (0.0, 1.0)}
#: a TorchScript generator's ``latent_shape``: ``(b, latent_dim, 1, 1)`` or ``(b, latent_dim)``
LATENT_SHAPES = ("nchw", "flat")
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
    """Validate the shape of stage 02's ``generators`` parameter (no file is opened).

    :func:`mammo_lib.generate.sources.check_generators` does these checks and also opens every
    file and folder the items name.

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
        a missing required key, an unknown key, a non-positive ``n`` / ``latent_dim`` /
        ``batch_size``, or an option of the wrong type or value (see
        :func:`parse_generator_items`); all problems are listed in one message.
    """
    indexed, problems = parse_generator_items(items)
    if problems:
        raise GeneratorError(problem_message(problems))
    return [spec for _, spec in indexed]


def problem_message(problems: list[str]) -> str:
    """The one message of a :class:`GeneratorError` listing every problem of ``generators``."""
    return "bad generators parameter:\n  " + "\n  ".join(problems)


def item_label(index: int, name: str) -> str:
    """How messages name an item: ``generators[1] (mine)``."""
    return f"generators[{index}] ({name or 'unnamed'})"


def _option_problems(options: dict[str, Any]) -> list[str]:
    """Problems of the option values (types and enumerations) of one item, without the item's label."""
    problems = []
    for key in ("n", "latent_dim", "batch_size"):
        if key in options and (not isinstance(options[key], int) or isinstance(options[key], bool)
                               or not 0 < options[key] <= MAX_PATCHES):
            problems.append(f"{key} must be a positive integer, got {options[key]!r}")
    for key in ("path", "metadata", "device"):
        if key in options and not (isinstance(options[key], str) and options[key].strip()):
            problems.append(f"{key} must be a non-empty string, got {options[key]!r}")
    if "model_id" in options and not ((isinstance(options["model_id"], str) and options["model_id"].strip())
                                      or (isinstance(options["model_id"], int)
                                          and not isinstance(options["model_id"], bool))):
        problems.append(f"model_id must be a medigan model id such as \"00002_DCGAN_MMG_MASS_ROI\", "
                        f"got {options['model_id']!r}")
    if "resize" in options and not isinstance(options["resize"], bool):
        problems.append(f"resize must be true or false, got {options['resize']!r}")
    choices = (("rescale", RESCALE_METHODS), ("output_range", tuple(OUTPUT_RANGES)),
               ("latent_shape", LATENT_SHAPES))
    for key, allowed in choices:
        if key in options and options[key] not in allowed:
            problems.append(f"{key} must be one of {allowed}, got {options[key]!r}")
    return problems


def parse_generator_items(items: list[dict] | None) -> tuple[list[tuple[int, GeneratorSpec]], list[str]]:
    """Every shape problem of the ``generators`` parameter, without raising.

    Parameters
    ----------
    items : list of dict or None
        The ``generators`` parameter; None or empty means the paper's one DCGAN.

    Returns
    -------
    indexed : list of (int, GeneratorSpec)
        The items that could be read as a spec (a dict of a known kind), with their index in
        ``items``; an item with a problem of its keys or values is among them.
    problems : list of str
        One line per problem, each starting with the item's label (:func:`item_label`): an item
        that is not a dict, a missing or bad name, a repeated name, an unknown kind, a DCGAN not
        named ``"dcgan"``, a missing required key, an unknown key, a non-positive ``n`` /
        ``latent_dim`` / ``batch_size``, a ``path`` / ``metadata`` / ``device`` that is not a
        non-empty string, a bad ``model_id``, a ``resize`` that is not a boolean, or a
        ``rescale`` / ``output_range`` / ``latent_shape`` outside its choices.
    """
    if not items:
        return [(0, GeneratorSpec("dcgan", "dcgan"))], []
    if not isinstance(items, list | tuple):
        return [], [f"generators must be a list of dicts like [{{\"name\": \"dcgan\", \"kind\": \"dcgan\"}}], "
                    f"got {items!r}"]
    problems, indexed, seen = [], [], set()
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"generators[{k}] must be a dict like {{\"name\": \"mine\", \"kind\": \"folder\", ...}}, got {item!r}")
            continue
        name, kind = str(item.get("name", "")), item.get("kind")
        where = item_label(k, name)
        if not NAME_PATTERN.match(name):
            problems.append(f"{where}: name must be 1-40 letters, digits, '-' or '_' (it names synthetic/<name>.zarr)")
        elif name in seen:
            problems.append(f"{where}: the name {name!r} is used twice")
        seen.add(name)
        if kind not in GENERATOR_KINDS:
            problems.append(f"{where}: kind {kind!r} is not one of {GENERATOR_KINDS}")
            continue
        if kind == "dcgan" and name != "dcgan":
            problems.append(f"{where}: the built-in DCGAN is named \"dcgan\" (its store is synthetic/synthetic.zarr)")
        options = {key: v for key, v in item.items() if key not in ("name", "kind")}
        missing = [key for key in _REQUIRED[kind] if key not in options]
        unknown = sorted(set(options) - _ALLOWED[kind])
        if missing:
            problems.append(f"{where}: kind {kind!r} needs {missing}")
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown} for kind {kind!r} (known: {sorted(_ALLOWED[kind])})")
        problems += [f"{where}: {problem}" for problem in _option_problems(options)]
        indexed.append((k, GeneratorSpec(name, kind, options)))
    return indexed, problems


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
