"""Benchmark of stage 01 patch extraction on phantom DICOM files (not a timed test).

Prints two ratios against references measured in the same run:

(a) patches/s of the full extraction (decode + breast mask + normalisation + cutting + zarr
    writes + compaction, in one process) over patches/s of *decoding the same DICOM files
    alone* (``images.load_image_pixels``). Target >= 0.8: extraction should cost little more
    than reading the images.
(b) extraction throughput with 2 Dask workers over 1 worker (LocalCluster, one thread per
    worker process). Target >= 1.7x. Cluster start-up (a fixed cost of a few seconds, paid once
    per run, whatever the number of images) is reported separately and left out of the ratio.

The images are written at a full-field size (default 3328x2560 pixels, about a Hologic
Selenia Dimensions image at 85 micron) because extraction work after decoding is nearly
independent of image size (the mask and the normal-window search run on a <= 256 px copy)
while decoding is not; ``--rows/--cols`` change it (e.g. the phantom's default 1024x768).

    .venv/bin/python benchmarks/bench_extraction.py            # 64 images, 3328x2560
    .venv/bin/python benchmarks/bench_extraction.py --quick    # 6 images, 2048x1536
    .venv/bin/python benchmarks/bench_extraction.py --rle-fraction 1   # all files compressed
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mammo_lib.extract import pipeline as patches
from mammo_lib.sources import collection as datasets
from mammo_lib.sources import (
    images,
    phantom,  # noqa: E402
)


def _decode_all(records) -> float:
    t0 = time.perf_counter()
    for record in records:
        images.load_image_pixels(record)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few, smaller images (about a minute)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--cols", type=int, default=None)
    parser.add_argument("--rle-fraction", type=float, default=0.25,
                        help="share of RLE-compressed files (phantom default 0.25; 1.0 = all)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    parser.add_argument("--workdir", default=None, help="folder for the phantom (default: a temp dir)")
    args = parser.parse_args(argv)
    n_images = args.images or (6 if args.quick else 64)
    rows = args.rows or (2048 if args.quick else 3328)
    cols = args.cols or (1536 if args.quick else 2560)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_extraction_"))
    try:
        print(f"generating {n_images} phantom DICOM images of {rows}x{cols} "
              f"({100 * args.rle_fraction:.0f}% RLE-compressed) in {work} ...", flush=True)
        t0 = time.perf_counter()
        root = phantom.generate_phantom(work / "phantom", n_images=n_images, seed=0, rows=rows,
                                        cols=cols, rle_fraction=args.rle_fraction, progress=False)
        print(f"  done in {time.perf_counter() - t0:.1f} s; CPUs visible: {os.cpu_count()}")
        collection = datasets.open_collection("phantom", root)
        records = collection.records

        # (a) full extraction vs decode-only, both in this process
        _decode_all(records)  # warm the file cache and the imports
        patches.extract_patches(collection, work / "warm", n_workers=0, progress=False)
        decode_s = min(_decode_all(records) for _ in range(args.repeats))
        extract_s = []
        for k in range(args.repeats):
            t0 = time.perf_counter()
            result = patches.extract_patches(collection, work / f"a{k}", n_workers=0, progress=False)
            extract_s.append(time.perf_counter() - t0)
        extract_s = min(extract_s)
        n_patches = result.n_patches
        decode_rate = n_patches / decode_s
        extract_rate = n_patches / extract_s
        print(f"\n(a) {len(records)} images, {n_patches} patches "
              f"({result.n_lesion} lesion, {result.n_normal} normal)")
        print(f"    decode only      : {decode_s:7.2f} s  -> {decode_rate:8.1f} patches/s equivalent")
        print(f"    full extraction  : {extract_s:7.2f} s  -> {extract_rate:8.1f} patches/s")
        print(f"    worker split     : decode {result.timings['worker_decode_s']:.2f} s, "
              f"cut+normalise {result.timings['worker_extract_s']:.2f} s, "
              f"zarr writes {result.timings['worker_write_s']:.2f} s, "
              f"compaction {result.timings['compaction_s']:.2f} s")
        ratio_a = extract_rate / decode_rate
        print(f"    RATIO extraction / decode-only throughput = {ratio_a:.2f}  (target >= 0.8)")
        t = result.timings
        per_image = t["worker_decode_s"] + t["worker_extract_s"] + t["worker_write_s"]
        print(f"    per-image work only (decode + cut + writes, without the fixed per-run cost of "
              f"creating and compacting the stores): ratio {t['worker_decode_s'] / per_image:.2f}")

        # (b) Dask scaling, 1 vs 2 worker processes
        walls = {}
        for n_workers in (1, 2):
            best = None
            for k in range(args.repeats):
                res = patches.extract_patches(collection, work / f"b{n_workers}_{k}",
                                              n_workers=n_workers, progress=False)
                wall = res.timings["extract_wall_s"] + res.timings["compaction_s"]
                if best is None or wall < best[0]:
                    best = (wall, res.timings["cluster_start_s"])
            walls[n_workers] = best
            print(f"\n(b) {n_workers} worker(s): extraction {best[0]:6.2f} s "
                  f"-> {n_patches / best[0]:7.1f} patches/s (cluster start {best[1]:.1f} s, not counted)")
        ratio_b = walls[1][0] / walls[2][0]
        print(f"    RATIO 2 workers / 1 worker throughput = {ratio_b:.2f}x  (target >= 1.7x)")
        print("\nnote: timings on a shared machine vary; the ratios compare runs of this same process.")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
