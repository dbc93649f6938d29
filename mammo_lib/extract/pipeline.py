"""Stage 01 orchestration: patch extraction of a whole collection on Dask, into zarr stores.

The per-image work (window placement, normalisation, cutting) is :mod:`mammo_lib.extract.rules`;
this module reads the images, runs that core on workers and writes the outputs of stage 01
into ``<run>/patches/``:

- ``lesion.zarr``, ``normal.zarr`` (each with ``manifest.csv``), through
  :mod:`mammo_lib.patch_store`;
- ``skipped_files.csv``: every file or finding that could not be used (columns
  :data:`SKIPPED_COLUMNS`: path, problem, stage, kind; paths relative to the collection folder
  when inside it, else to the run folder);
- ``extraction.json``: parameters and counts (schema
  :class:`~mammo_lib.extract.schema.ExtractionSummary`; paths relative to the run folder),
  byte-identical on a rerun with the same inputs and seed;
- ``timings.json``: wall-clock times of the run (schema
  :class:`~mammo_lib.extract.schema.ExtractionTimings`), the only file that differs between
  two such runs.

Scale: images are processed in batches (one Dask task per batch) on a ``LocalCluster`` of
``n_workers`` processes (or a real cluster at ``scheduler_address``; ``n_workers=0`` runs in
this process). Slots are planned from the annotations up front: batch *b* owns a chunk-aligned
region of a *staging* zarr array big enough for every lesion of its images and
``n_normal_per_image`` normal patches per image, so workers write in parallel without ever
touching the same chunk. A worker packs the patches it did make at the start of its region;
after all tasks, a compaction pass copies the filled slots, in image order, into the final
stores and deletes the staging arrays. Unfilled slots (skipped images, breasts too small for
more normal windows) thus never reach the final store, and the order of patches depends only on
the inputs, never on which worker finished first.

With ``scheduler_address`` the workers of that cluster write the stores themselves, so
``out_dir`` must be on a file system they share with this process (as on any HPC cluster).

Command line: ``python -m mammo_lib.extract.pipeline write-reference <run_dir> --to <folder>`` stores a
run's manifests as the reference later reruns are compared with (see :func:`main`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mammo_lib import patch_store
from mammo_lib.extract.reference_manifest import reference_parameters, write_reference_manifest
from mammo_lib.extract.rules import PATCH_ROW_COLUMNS, STAGE, ExtractionParams
from mammo_lib.extract.schema import (
    ExtractionCounts,
    ExtractionParameters,
    ExtractionSummary,
    ExtractionTimings,
    SourceInfo,
    relative_notes,
    report_path,
)
from mammo_lib.extract.tasks import BatchSpec, run_batch, warm_worker
from mammo_lib.fileio import atomic_write_text
from mammo_lib.progress import progress_bar
from mammo_lib.run_folder import run_relative
from mammo_lib.sources.records import ImageRecord, SkippedFile, vendor_matches
from mammo_lib.timings import TIMINGS_NAME, write_timings

if TYPE_CHECKING:
    from mammo_lib.sources.records import Collection

SKIPPED_COLUMNS = ("path", "problem", "stage", "kind")
#: Progress bars without elapsed time or rate: a short run prints the same text every time
#: (a bar refreshes at most every 30 s, so long runs still show progress).


class ExtractionError(RuntimeError):
    """Extraction cannot produce anything usable; the message says why and what to do."""


# ------------------------------------------------------------------------- the whole run


@dataclass
class ExtractionResult:
    """Summary of one extraction run (also written to ``extraction.json``)."""

    out_dir: Path
    lesion_store: Path
    normal_store: Path
    skipped_path: Path
    summary_path: Path
    n_images: int
    n_images_used: int
    n_lesion: int
    n_normal: int
    counts_by_class: dict
    skipped: list[SkippedFile]
    excluded_by_vendor: int
    timings: dict
    parameters: dict
    #: files read with a warning during extraction (not already noted while listing), paths
    #: relative as in skipped_files.csv
    notes: list[str] = field(default_factory=list)

    @property
    def n_patches(self) -> int:
        return self.n_lesion + self.n_normal

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(s) for s in self.skipped], columns=SKIPPED_COLUMNS)


def _plan_batches(records: list[ImageRecord], images_per_task: int, n_normal: int,
                  chunk: int) -> tuple[list[tuple[list[ImageRecord], int, int]], int, int]:
    """Split records into batches and give each chunk-aligned lesion and normal regions."""
    batches = []
    lesion_pos = normal_pos = 0
    for k in range(0, len(records), images_per_task):
        recs = records[k:k + images_per_task]
        n_les = sum(len(r.lesions) for r in recs)
        n_nor = n_normal * len(recs)
        batches.append((recs, lesion_pos, normal_pos))
        lesion_pos += int(math.ceil(n_les / chunk)) * chunk
        normal_pos += int(math.ceil(n_nor / chunk)) * chunk
    return batches, lesion_pos, normal_pos


def _write_skipped(path: Path, skipped: list[SkippedFile], run_dir: Path,
                   source_root: Path | None) -> None:
    """``skipped_files.csv``: paths relative to the collection folder (``extraction.json``'s
    ``source.root``) when inside it, else to the run folder; a problem that begins with its own
    file's path starts after it (the path column holds it)."""
    rows = []
    for s in skipped:
        rel = report_path(s.path, run_dir, source_root)
        problem = s.problem
        for prefix in (f"{s.path}: ", f"{s.path.split(':', 1)[0]}: "):
            if problem.startswith(prefix):
                problem = problem[len(prefix):]
                break
        rows.append({"path": rel, "problem": problem.replace(s.path, rel), "stage": s.stage,
                     "kind": s.kind})
    table = pd.DataFrame(rows, columns=SKIPPED_COLUMNS)
    atomic_write_text(path, table.to_csv(index=False))


def _compact(staging: str, results: list[dict], key: str, starts: dict[int, int],
             final_path: Path, params: ExtractionParams, attrs: dict) -> pd.DataFrame:
    """Copy the filled staging slots, in batch (= image) order, into the final store.

    Works one final chunk at a time: the staging slots of that chunk form one contiguous span
    (batch regions are in order and packed from their start), read with a single zarr call.
    """
    rows = [row for res in results for row in res[key]]
    total = len(rows)
    arr = patch_store.create_patch_store(final_path, total, params.patch_size, attrs=attrs)
    if total:
        src = patch_store.open_staging_array(staging)
        slots = np.concatenate([starts[res["index"]] + np.arange(len(res[key]))
                                for res in results if res[key]])
        block = arr.chunks[0]
        for pos in range(0, total, block):
            idx = slots[pos:pos + block]
            span = np.asarray(src[int(idx[0]):int(idx[-1]) + 1])
            arr[pos:pos + len(idx)] = span[idx - idx[0]]
    manifest = pd.DataFrame(rows)
    if manifest.empty:  # every column, so that readers of an empty run find what they expect
        manifest = pd.DataFrame(columns=list(PATCH_ROW_COLUMNS))
    patch_store.write_manifest(final_path, manifest)
    return manifest




def _collect_records(collection: Collection | Sequence[ImageRecord],
                     vendor_filter: Sequence[str] | None
                     ) -> tuple[list[ImageRecord], list[SkippedFile], SourceInfo | dict, int, Path | None]:
    """Records kept by the vendor filter (sorted), skipped files, source, vendor exclusions."""
    if isinstance(collection, (list, tuple)):
        records = list(collection)
        skipped: list[SkippedFile] = []
        kind, root = (records[0].source_kind if records else ""), None
        excluded = 0
    else:
        records = list(collection.records)
        skipped = list(getattr(collection, "skipped", []))
        kind, root = collection.kind, Path(collection.root)
        excluded = int(getattr(collection, "excluded_by_vendor", 0))
    kept = []
    for r in records:
        if vendor_matches(vendor_filter, r.manufacturer, r.model_name):
            kept.append(r)
        else:
            excluded += 1
            skipped.append(SkippedFile(
                str(r.path), f"left out by vendor_filter: Manufacturer {r.manufacturer or '(none)'!r}, "
                f"model {r.model_name or '(none)'!r}", STAGE, "vendor filter"))
    records = sorted(kept, key=lambda r: (r.image_id, str(r.path)))
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ExtractionError(f"image ids are not unique (e.g. {dup}): patch ids would collide")
    return records, skipped, {"kind": kind}, excluded, root


def _clear_outputs(out_dir: Path) -> Path:
    """Remove an earlier run's stores, summary and staging (a run killed half-way never leaves
    stores or a summary that look finished: manifests and extraction.json are written last,
    atomically); returns the staging folder."""
    for old_output in (out_dir / "lesion.zarr", out_dir / "normal.zarr",
                       out_dir / "extraction.json", out_dir / TIMINGS_NAME):
        if old_output.is_dir():
            shutil.rmtree(old_output)
        elif old_output.exists():
            old_output.unlink()
    staging_dir = out_dir / "_staging"
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    return staging_dir


def _progress_bar(total: int, enabled: bool):
    """Live on a terminal; plain and time-free in a notebook (:func:`mammo_lib.progress.progress_bar`)."""
    return progress_bar(total=total, desc="extract patches", unit="img", enabled=enabled)


def _run_tasks(specs: list[BatchSpec], n_workers: int, scheduler_address: str | None,
               bar) -> tuple[list[dict], float, float]:
    """Run every batch (in this process, on a LocalCluster or on a running cluster); returns
    the results in batch order and the cluster start and stop times in seconds."""
    results: list[dict] = []
    if n_workers <= 0 and not scheduler_address:
        for spec in specs:
            results.append(run_batch(spec))
            bar.update(results[-1]["images"])
        return results, 0.0, 0.0
    tc = time.perf_counter()
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler_address:
        client = Client(scheduler_address)
    else:
        import logging

        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.CRITICAL)
        client = Client(cluster)
    try:
        client.run(warm_worker)  # imports once per worker, counted as start-up
        t_cluster = time.perf_counter() - tc
        futures = [client.submit(run_batch, spec, pure=False) for spec in specs]
        for fut in as_completed(futures):
            results.append(fut.result())
            bar.update(results[-1]["images"])
    finally:
        t_stop = time.perf_counter()
        client.close()
        if cluster is not None:
            cluster.close()
        t_shutdown = time.perf_counter() - t_stop
    results.sort(key=lambda r: r["index"])
    return results, t_cluster, t_shutdown


def extract_patches(
    collection: Collection | Sequence[ImageRecord],
    out_dir: str | os.PathLike,
    *,
    patch_size: int = 128,
    n_normal_per_image: int = 10,
    normalisation: str = "equalize_image",
    large_lesion: str = "resize",
    vendor_filter: str | Sequence[str] | None = None,
    seed: int = 0,
    n_workers: int = 2,
    scheduler_address: str | None = None,
    images_per_task: int | None = None,
    staging_chunk: int = 32,
    progress: bool = True,
    run_dir: str | os.PathLike | None = None,
    **extra_params,
) -> ExtractionResult:
    """Extract lesion and normal patches from a collection into ``out_dir`` (= <run>/patches).

    Parameters
    ----------
    collection : Collection or sequence of ImageRecord
        As :func:`mammo_lib.sources.collection.open_collection` returns it, or bare records.
    out_dir : str or path-like
        The stage folder; ``lesion.zarr``, ``normal.zarr`` (uint8 patches, shape
        (n, patch_size, patch_size), + ``manifest.csv`` each), ``skipped_files.csv``,
        ``extraction.json`` (:class:`~mammo_lib.extract.schema.ExtractionSummary`) and ``timings.json``
        (:class:`~mammo_lib.extract.schema.ExtractionTimings`) are written there; earlier outputs are replaced.
    patch_size : int
        Side of the square patches in pixels (the paper: 128).
    n_normal_per_image : int
        Normal-tissue patches drawn per image (fewer when the breast has no more room).
    normalisation : str
        ``"equalize_image"``, ``"equalize_patch"`` or ``"none"`` (see :mod:`mammo_lib.extract.rules`).
    large_lesion : str
        ``"resize"`` or ``"crop"`` for lesions larger than the patch.
    vendor_filter : str, sequence of str or None
        Keep only images whose Manufacturer/ManufacturerModelName contains a name
        (:func:`mammo_lib.sources.records.vendor_matches`).
    seed : int
        Seed of the per-image generators (normal-window draws).
    n_workers : int
        Dask worker processes of a local cluster; 0 runs in this process.
    scheduler_address : str or None
        Address of a running Dask scheduler (its workers must see ``out_dir``).
    images_per_task : int or None
        Images per Dask task; None picks about six tasks per worker.
    staging_chunk : int
        Patches per chunk of the staging arrays.
    progress : bool
        Show a plain-text progress bar.
    run_dir : str, path-like or None
        The run folder that ``extraction.json``'s collection path is written relative to (and
        ``skipped_files.csv``'s paths outside the collection); default the parent of ``out_dir``.
    **extra_params
        Further fields of :class:`mammo_lib.extract.rules.ExtractionParams` (e.g.
        ``exclusion_margin``, ``min_breast_fraction``).

    Returns
    -------
    ExtractionResult
        Counts, paths, skipped files (absolute paths, as read), timings and parameters.

    Raises
    ------
    ExtractionError
        When image ids are not unique, no image is left to extract from, or no patch at all
        could be made (after writing ``skipped_files.csv``).
    ValueError
        When a parameter is out of range (from :class:`ExtractionParams`).
    """
    t_start = time.perf_counter()
    params = ExtractionParams(patch_size=int(patch_size), n_normal_per_image=int(n_normal_per_image),
                              normalisation=normalisation, large_lesion=large_lesion,
                              seed=int(seed), **extra_params)
    if isinstance(vendor_filter, str):  # one name given on its own
        vendor_filter = [vendor_filter]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir) if run_dir is not None else out_dir.resolve().parent
    skipped_path = out_dir / "skipped_files.csv"
    records, skipped, source, excluded_by_vendor, root = _collect_records(collection, vendor_filter)
    source["root"] = run_relative(root.resolve(), run_dir) if root is not None else ""
    if not records:
        _write_skipped(skipped_path, skipped, run_dir, root)
        why = (f"the vendor filter {list(vendor_filter or [])} excluded all {excluded_by_vendor} "
               "images" if excluded_by_vendor else "the collection has no images")
        raise ExtractionError(f"nothing to extract from {root or 'the given records'}: "
                              f"{why}; {len(skipped)} files were skipped (see {skipped_path})")

    n_workers = int(n_workers)
    if images_per_task is None:
        lanes = max(1, n_workers)
        images_per_task = max(1, min(64, int(math.ceil(len(records) / (lanes * 6)))))
    batches, lesion_cap, normal_cap = _plan_batches(records, int(images_per_task),
                                                    params.n_normal_per_image, staging_chunk)
    staging_dir = _clear_outputs(out_dir)
    staging_lesion = str(staging_dir / "lesion.zarr")
    staging_normal = str(staging_dir / "normal.zarr")
    for path, cap in ((staging_lesion, lesion_cap), (staging_normal, normal_cap)):
        patch_store.create_staging_array(path, cap, patch_size, staging_chunk)
    specs = [BatchSpec(i, recs, ls, ns, staging_lesion, staging_normal, params)
             for i, (recs, ls, ns) in enumerate(batches)]
    t_plan = time.perf_counter()

    bar = _progress_bar(len(records), progress)
    results, t_cluster, t_shutdown = _run_tasks(specs, n_workers, scheduler_address, bar)
    bar.close()
    t_extract = time.perf_counter() - t_shutdown

    for res in results:
        skipped.extend(SkippedFile(**s) for s in res["skipped"])
    known = set(getattr(collection, "notes", []))
    notes = relative_notes([m for res in results for m in res["notes"] if m not in known],
                           run_dir, root)
    _write_skipped(skipped_path, skipped, run_dir, root)
    n_lesion = sum(len(r["lesion_rows"]) for r in results)
    n_normal = sum(len(r["normal_rows"]) for r in results)
    if n_lesion + n_normal == 0:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise ExtractionError(
            f"no patch could be extracted from {len(records)} images "
            f"({len(skipped)} files skipped; see {skipped_path} for each file and its problem)")

    attrs = {"stage": STAGE, "normalisation": params.normalisation, "seed": params.seed,
             "source_kind": source["kind"]}
    lesion_manifest = _compact(staging_lesion, results, "lesion_rows",
                               {s.index: s.lesion_start for s in specs},
                               out_dir / "lesion.zarr", params, {**attrs, "group": "lesion"})
    _compact(staging_normal, results, "normal_rows", {s.index: s.normal_start for s in specs},
             out_dir / "normal.zarr", params, {**attrs, "group": "normal"})
    shutil.rmtree(staging_dir, ignore_errors=True)
    t_end = time.perf_counter()

    counts_by_class = ({str(k): int(v) for k, v in
                        lesion_manifest["lesion_class"].value_counts().sort_index().items()}
                       if n_lesion else {})
    counts_by_class["normal"] = n_normal
    n_used = sum(r["images_used"] for r in results)
    timings: ExtractionTimings = {
        "plan_s": round(t_plan - t_start, 3),
        "cluster_start_s": round(t_cluster, 3),
        "extract_wall_s": round(t_extract - t_plan - t_cluster, 3),
        "cluster_stop_s": round(t_shutdown, 3),
        "compaction_s": round(t_end - t_extract - t_shutdown, 3),
        "total_s": round(t_end - t_start, 3),
        "worker_decode_s": round(sum(r["decode_s"] for r in results), 3),
        "worker_extract_s": round(sum(r["extract_s"] for r in results), 3),
        "worker_write_s": round(sum(r["write_s"] for r in results), 3),
    }
    parameters: ExtractionParameters = {
        **dataclasses.asdict(params), "vendor_filter": list(vendor_filter or []),
        "n_workers": n_workers, "scheduler_address": scheduler_address or "",
        "images_per_task": int(images_per_task), "source": source}  # type: ignore[typeddict-item]
    counts: ExtractionCounts = {
        "images": len(records), "images_used": n_used,
        "images_skipped": len(records) - n_used, "excluded_by_vendor": excluded_by_vendor,
        "skipped_rows": len(skipped), "lesion_patches": n_lesion, "normal_patches": n_normal,
        "normal_slots_unfilled": (params.n_normal_per_image * n_used - n_normal
                                  if params.n_normal_per_image else 0),
        "by_class": counts_by_class,
    }
    summary: ExtractionSummary = {"stage": STAGE, "parameters": parameters, "counts": counts}
    write_timings(out_dir, dict(timings))
    atomic_write_text(out_dir / "extraction.json", json.dumps(summary, indent=2))
    return ExtractionResult(
        out_dir=out_dir, lesion_store=out_dir / "lesion.zarr", normal_store=out_dir / "normal.zarr",
        skipped_path=skipped_path, summary_path=out_dir / "extraction.json", n_images=len(records),
        n_images_used=n_used, n_lesion=n_lesion, n_normal=n_normal,
        counts_by_class=counts_by_class, skipped=skipped, excluded_by_vendor=excluded_by_vendor,
        timings=dict(timings), parameters=dict(parameters), notes=notes)


def read_summary(out_dir: str | os.PathLike) -> ExtractionSummary:
    """``extraction.json`` of a finished extraction.

    Parameters
    ----------
    out_dir : str or path-like
        The stage folder (``<run>/patches``).

    Returns
    -------
    ExtractionSummary
        Parameters and counts, as :class:`~mammo_lib.extract.schema.ExtractionSummary` describes them.

    Raises
    ------
    FileNotFoundError
        When the extraction has not finished there (no ``extraction.json``).
    """
    return patch_store.read_json(Path(out_dir) / "extraction.json")  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mammo_lib.extract.pipeline write-reference <run_dir> [--to FOLDER]``: store a run's
    manifests as the reference a later rerun is compared with.

    ``--to`` defaults to ``data_manifest/default_study`` relative to the *current directory*
    (run it from the checkout's root to refresh the committed reference; from anywhere else,
    pass the folder explicitly).
    """
    import argparse


    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("write-reference", help="copy a run's patch manifests as the reference")
    ref.add_argument("run_dir")
    ref.add_argument("--to", default=os.path.join("data_manifest", "default_study"),
                     help="folder to write the reference into, relative to the current "
                          "directory (default: data_manifest/default_study)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    patch_dir = run_dir / "patches"
    summary = read_summary(patch_dir)
    for path in write_reference_manifest(
            patch_dir, args.to, reference_parameters(summary["parameters"], run_dir)):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
