"""Stage 01: lesion and normal-tissue patches from every usable mammogram (Dask).

Reads: a collection (:mod:`mammo_lib.sources`; the phantom is generated into ``phantom/``).
Writes: ``patches/lesion.zarr``,
``patches/normal.zarr`` (+ manifests), ``patches/skipped_files.csv``, ``patches/extraction.json``,
``patches/figures/``.
Exports: ``pipeline.extract_patches``; ``rules`` (the per-image rules), ``tasks`` (one Dask task),
``schema`` (extraction.json), ``reference_manifest`` (the rerun check against data_manifest/),
``report`` (notebook 01's text and figures).
"""
