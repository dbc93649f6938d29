"""What notebook 01 shows about an extraction: text generated from the parameters, tables and
figures (each helper returns a matplotlib figure; :func:`save_stage_figure` writes it into
``<run>/patches/figures/``).

Every helper copes with an empty result (no lesion patch, no normal patch, no readable image):
it then says so plainly instead of failing, so that stage 01 always finishes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mammo_lib import rng, run_folder
from mammo_lib.extract.rules import ExtractionParams, image_rng, image_transform, subsample_stride
from mammo_lib.extract.schema import relative_notes
from mammo_lib.patch_store import PatchStore
from mammo_lib.plotting import patch_grid, save_figure
from mammo_lib.run_folder import run_relative
from mammo_lib.sources.dicom_checks import DicomNotes
from mammo_lib.sources.images import breast_mask, load_image_pixels
from mammo_lib.sources.records import Collection, ImageRecord

STAGE_FOLDER = "patches"


# ------------------------------------------------------------------------------ text


def rules_markdown(patch_size: int, normalisation: str, large_lesion: str,
                   n_normal_per_image: int) -> str:
    """The extraction rules as Markdown, every number taken from the parameters.

    Parameters
    ----------
    patch_size : int
        Patch side in pixels.
    normalisation : str
        ``"equalize_image"``, ``"equalize_patch"`` or ``"none"``.
    large_lesion : str
        ``"resize"`` or ``"crop"``.
    n_normal_per_image : int
        Normal patches drawn per image.

    Returns
    -------
    str
        Markdown bullet list (the remaining knobs at their :class:`ExtractionParams` defaults).
    """
    p = ExtractionParams(patch_size=patch_size, normalisation=normalisation,
                         large_lesion=large_lesion, n_normal_per_image=n_normal_per_image)
    threshold = p.patch_size / p.lesion_context
    large = (f"cropped as a bigger square and **resized** to {p.patch_size} px (scale recorded)"
             if p.large_lesion == "resize" else
             f"**cropped** at full resolution to {p.patch_size} px (the lesion is truncated)")
    norm = {
        "equalize_image": "histogram equalisation of each image, computed inside the breast: "
                          "it removes vendor and exposure differences but keeps the contrast "
                          "between a lesion and its surroundings",
        "equalize_patch": "histogram equalisation of each patch on its own (every patch fills "
                          "the grey range)",
        "none": "a linear map of each image's own range to 0..1",
    }[p.normalisation]
    return "\n".join([
        f"- **lesion patches**: {p.patch_size}x{p.patch_size} px, centred on the annotated "
        "lesion; near the image border the window is *shifted* inside the image (the shift is "
        "recorded), never padded;",
        f"- a lesion **larger than the patch** (extent x {p.lesion_context:g} > {p.patch_size} "
        f"px, i.e. extent > {threshold:.0f} px) is {large} (`large_lesion = \"{p.large_lesion}\"`);",
        f"- **normal patches**: up to {p.n_normal_per_image} per image, drawn uniformly among "
        f"windows that are at least {100 * p.min_breast_fraction:.0f} % breast and stay "
        f"{p.exclusion_margin} px clear of every annotated lesion"
        + (" and of each other;" if not p.normal_overlap else ";"),
        f"- a lesion whose window is under {100 * p.min_lesion_breast_fraction:.0f} % breast is "
        "reported as an annotation error, not extracted;",
        f"- **histogram normalisation** (`normalisation = \"{p.normalisation}\"`): {norm}.",
    ])


def collection_text(collection: Collection, run_dir: str | os.PathLike) -> str:
    """One line: images, annotated lesions, where (relative to the run folder), files skipped.

    Parameters
    ----------
    collection : Collection
        As :func:`mammo_lib.sources.collection.open_collection` returns it.
    run_dir : str or path-like
        The run folder (the collection folder is shown relative to it).

    Returns
    -------
    str
    """
    run_dir = Path(run_dir).resolve()
    root = Path(collection.root).resolve()
    where = run_relative(root, run_dir)
    lines = [f"{len(collection.records)} images with {collection.n_lesions()} annotated lesions "
             f"in {where}; {len(collection.skipped)} files skipped while reading"]
    lines += [f"read with a warning: {note}"
              for note in relative_notes(collection.notes, run_dir, root)]
    return "\n".join(lines)


def result_text(result) -> str:
    """What the extraction gave, in two plain lines (no timings: those are in ``timings.json``).

    Parameters
    ----------
    result : mammo_lib.extract.pipeline.ExtractionResult
        As :func:`mammo_lib.extract.pipeline.extract_patches` returns it.

    Returns
    -------
    str
    """
    vf = result.parameters.get("vendor_filter") or []
    lines = [f"{result.excluded_by_vendor} images left out by the vendor filter "
             f"{vf if vf else '(none)'}",
             f"{result.n_images_used}/{result.n_images} images used; {result.n_lesion} lesion "
             f"and {result.n_normal} normal patches (wall-clock times: patches/timings.json)"]
    lines += [f"read with a warning: {note}" for note in getattr(result, "notes", [])]
    return "\n".join(lines)


def skipped_table(skipped_path: str | os.PathLike, max_rows: int = 30):
    """The first ``max_rows`` rows of ``skipped_files.csv`` as HTML that shows each problem in
    full (no cut-off text), and the total number of rows.

    Parameters
    ----------
    skipped_path : str or path-like
        ``<run>/patches/skipped_files.csv``.
    max_rows : int
        Rows shown.

    Returns
    -------
    (IPython.display.HTML, int)
        The table and the number of rows in the file.

    Raises
    ------
    FileNotFoundError
        When the file does not exist (the extraction has not run).
    """
    from IPython.display import HTML

    table = pd.read_csv(skipped_path, keep_default_na=False, dtype=str)
    styler = (table.head(max_rows).style.set_uuid("skipped-files").hide(axis="index")  # fixed id: reruns compare byte for byte
              .set_properties(**{"text-align": "left", "white-space": "pre-wrap"}))
    return HTML(styler.to_html()), len(table)


# ------------------------------------------------------------------------------ figures


def _message_figure(text: str, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    ax.set_title(title)
    return fig


def class_counts_figure(counts_by_class: dict[str, int]) -> plt.Figure:
    """Bar chart of patches per class (lesion classes red, ``normal`` blue), counts on the bars.

    Parameters
    ----------
    counts_by_class : dict of str to int
        ``ExtractionResult.counts_by_class`` (lesion classes plus ``"normal"``).

    Returns
    -------
    matplotlib.figure.Figure
        The chart, or a figure saying "0 lesion patches and 0 normal patches".
    """
    counts = pd.Series(counts_by_class, name="patches", dtype=int).rename_axis("class")
    if counts.sum() == 0:
        return _message_figure("0 lesion patches and 0 normal patches", "Extracted patches per class")
    fig, ax = plt.subplots(figsize=(6, 3))
    counts.plot.bar(ax=ax, color=["tab:red" if c != "normal" else "tab:blue" for c in counts.index])
    ax.set_ylabel("patches")
    ax.set_xlabel("")
    ax.set_ylim(0, counts.max() * 1.15)
    ax.tick_params(axis="x", rotation=20)
    ax.set_title("Extracted patches per class")
    for i, v in enumerate(counts.values):
        ax.text(i, v, str(v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    return fig


def example_patches_figure(store: PatchStore, group: str, seed: int, n: int = 32) -> plt.Figure:
    """Up to ``n`` patches of a store drawn at random (generator keyed by ``(seed, group)``).

    Parameters
    ----------
    store : PatchStore
        An opened store (may be empty: the figure then says "0 ... patches").
    group : str
        ``"lesion"`` (labels: class and scale; below 1 a large lesion resized to fit) or
        ``"normal"`` (labels: breast fraction of the window).
    seed : int
        Study seed.
    n : int
        Number of patches shown, 8 per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    title = {"lesion": "Lesion patches", "normal": "Normal-tissue patches"}[group]
    if len(store) == 0:
        return _message_figure(f"0 {group} patches", title)
    picker = rng.numpy_stream(seed, f"{group} examples")
    idx = np.sort(picker.choice(len(store), size=min(n, len(store)), replace=False))
    rows = store.manifest.iloc[idx]
    labels = ([f"{r.lesion_class[:5]} x{r.scale:.2f}" for r in rows.itertuples()] if group == "lesion"
              else [f"breast {r.breast_fraction:.2f}" for r in rows.itertuples()])
    return patch_grid(store.load(idx), ncols=8, title=title, labels=labels)


def lesion_rule_figures(lesion_store: PatchStore, n: int = 8) -> dict[str, plt.Figure]:
    """The two rules at work: ``lesion_border`` (shifted windows, labels ``shift row,col``) and
    ``lesion_large`` (resized large lesions, labels ``xscale``), the first ``n`` of each.

    Parameters
    ----------
    lesion_store : PatchStore
        The lesion store (may be empty).
    n : int
        Patches per figure.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        ``{"lesion_border": ..., "lesion_large": ...}``; a figure says "none in this run" when
        no patch fits.
    """
    m = lesion_store.manifest
    out = {}
    if len(m):
        shifted = np.flatnonzero(((m["shift_row"] != 0) | (m["shift_col"] != 0)).to_numpy())[:n]
        resized = np.flatnonzero((m["scale"] < 1).to_numpy())[:n]
    else:
        shifted = resized = np.array([], dtype=int)
    for name, idx, title, fmt in (
            ("lesion_border", shifted, "Border: shifted windows (shift row, col)",
             lambda r: f"{r.shift_row},{r.shift_col}"),
            ("lesion_large", resized, "Large lesions: resized (scale)", lambda r: f"x{r.scale:.2f}")):
        if len(idx) == 0:
            out[name] = _message_figure("none in this run", title)
            continue
        rows = m.iloc[idx]
        out[name] = patch_grid(lesion_store.load(idx), ncols=8, title=title,
                               labels=[fmt(r) for r in rows.itertuples()])
    return out


def intensity_samples(records: Sequence[ImageRecord], normalisation: str = "equalize_image",
                      max_values: int = 20000, seed: int = 0) -> list[dict]:
    """Breast-pixel grey levels of some images before and after the image-level normalisation.

    ``equalize_patch`` is shown with the linear map, since it has no image-level transform. An
    image that cannot be read is left out (it is already in ``skipped_files.csv``).

    Parameters
    ----------
    records : sequence of ImageRecord
        The images to sample.
    normalisation : str
        As for the extraction.
    max_values : int
        At most this many breast pixels per image (drawn with :func:`mammo_lib.extract.rules.image_rng`).
    seed : int
        Study seed.

    Returns
    -------
    list of dict
        Per image: ``image_id``, ``vendor``, ``raw`` (float32 array, shape (k,), source units)
        and ``normalised`` (float32 array, shape (k,), 0..1).
    """
    params = ExtractionParams(normalisation="none" if normalisation == "equalize_patch"
                              else normalisation)
    out = []
    for record in records:
        try:
            with DicomNotes():  # already reported by the extraction
                pixels = load_image_pixels(record)
        except (OSError, ValueError):
            continue
        stride = subsample_stride(pixels.shape)
        mask_lr = np.asarray(breast_mask(pixels[::stride, ::stride]), dtype=bool)
        if not mask_lr.any():
            continue
        transform = image_transform(pixels, mask_lr, stride, params)
        values = pixels[::stride, ::stride][mask_lr]
        if values.size > max_values:
            values = image_rng(seed, record.image_id).choice(values, max_values, replace=False)
        out.append({"image_id": record.image_id,
                    "vendor": record.model_name or record.manufacturer or record.source_kind,
                    "raw": values, "normalised": transform(values)})
    return out


def example_records(collection: Collection, stores: Sequence[PatchStore], n: int = 4
                    ) -> list[ImageRecord]:
    """One image per vendor (up to ``n``) among the images that gave patches.

    Parameters
    ----------
    collection : Collection
        The collection extracted from.
    stores : sequence of PatchStore
        The stores whose manifests say which images gave patches.
    n : int
        At most this many images.

    Returns
    -------
    list of ImageRecord
        Sorted by image id; empty when no image gave a patch.
    """
    used = set()
    for store in stores:
        if len(store):
            used.update(store.manifest["image_id"].astype(str))
    by_vendor: dict[str, ImageRecord] = {}
    for r in sorted(collection.records, key=lambda r: r.image_id):
        if r.image_id in used:
            by_vendor.setdefault(r.model_name or r.manufacturer or r.source_kind, r)
    return list(by_vendor.values())[:n]


def intensity_histograms_figure(samples: list[dict], lesion_store: PatchStore,
                                normal_store: PatchStore, normalisation: str) -> plt.Figure:
    """Three panels: source grey levels (breast), after the image-level normalisation, and the
    stored patches (lesion vs normal, about 200 patches each).

    Parameters
    ----------
    samples : list of dict
        :func:`intensity_samples` (may be empty: the panels then say so).
    lesion_store, normal_store : PatchStore
        The stores (may be empty).
    normalisation : str
        The normalisation used (for the title).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for s in samples:
        axes[0].hist(s["raw"], bins=100, histtype="step", density=True, label=f"{s['vendor']}")
        axes[1].hist(s["normalised"], bins=100, histtype="step", density=True, range=(0, 1))
    if not samples:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no image was used", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_title("before: source grey levels (breast)")
    if samples:
        axes[0].legend(fontsize=7)
    axes[1].set_title(f"after: {normalisation} (image level)")
    for store, label in ((lesion_store, "lesion"), (normal_store, "normal")):
        if len(store):
            take = np.arange(0, len(store), max(1, len(store) // 200))
            axes[2].hist(store.load(take).ravel() / 255.0, bins=64, histtype="step",
                         density=True, range=(0, 1), label=f"{label} ({len(store)} patches)")
        else:
            axes[2].plot([], [], label=f"{label} (0 patches)")
    axes[2].set_title("stored patches")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("grey level")
    fig.tight_layout()
    return fig


def figure_path(run_dir: str | os.PathLike, name: str) -> Path:
    """``<run_dir>/patches/figures/<name>.png``."""
    return run_folder.figures_dir(run_dir, STAGE_FOLDER) / f"{name}.png"


def save_stage_figure(fig: plt.Figure | dict[str, plt.Figure], run_dir: str | os.PathLike,
                      name: str | None = None) -> None:
    """Save a figure as ``<run_dir>/patches/figures/<name>.png`` (or each of a ``{name: figure}``
    dict). Returns nothing, so that a notebook cell ending with it shows no machine path."""
    figures = fig if isinstance(fig, dict) else {str(name): fig}
    for key, figure in figures.items():
        save_figure(figure, figure_path(run_dir, key))
