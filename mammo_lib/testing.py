"""Small synthetic fixtures for tests, benchmarks and teaching: never study data.

Each function builds a tiny, deterministic data set in the exact file formats the study's stages
read (patch stores, reader-study case sets and ratings), so a stage can be exercised without
running the stages before it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import patch_store
from mammo_lib.patch_store import MANIFEST_COLUMNS, write_patch_store
from mammo_lib.rating_scale import OPTION_LABEL, OPTION_VALUE
from mammo_lib.rng import fixture_stream
from mammo_lib.run_folder import lesion_store_path, synthetic_store_path


def demo_groups(n_per_group: int = 100, size: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Phantom-like uint8 patches for tests and the benchmark (no run folder needed).

    Normal tissue: smooth random texture. Lesions: the same kind of texture plus a bright
    round blob of random radius near the centre. Synthetic: lesions drawn the same way with a
    slightly different radius distribution and extra high-frequency noise (a GAN-like look).
    """
    from scipy.ndimage import gaussian_filter

    rng = fixture_stream(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def texture(n: int) -> np.ndarray:
        noise = rng.standard_normal((n, size, size)).astype(np.float32)
        tex = gaussian_filter(noise, sigma=(0, size / 24, size / 24))
        tex /= tex.std() + 1e-6
        return 0.45 + 0.08 * tex

    def blobs(n: int, r_mean: float) -> np.ndarray:
        out = np.empty((n, size, size), dtype=np.float32)
        for i in range(n):
            cy, cx = size / 2 + rng.normal(0, size / 16, 2)
            r = max(3.0, rng.normal(r_mean, size / 20))
            out[i] = 0.35 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        return out

    normal = texture(n_per_group)
    lesion = texture(n_per_group) + blobs(n_per_group, size / 8)
    synthetic = texture(n_per_group) + blobs(n_per_group, size / 7.5)
    synthetic += 0.03 * rng.standard_normal(synthetic.shape).astype(np.float32)
    return {g: patch_store.to_uint8(np.clip(a, 0, 1)) for g, a in
            (("lesion", lesion), ("synthetic", synthetic), ("normal", normal))}


def toy_lesion_patches(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Lesion-like uint8 patches for tests and benchmarks when no extracted store exists.

    Textured background (smoothed noise) with, alternately, one bright Gaussian mass of random
    size and elongation, or a cluster of small bright calcification-like specks. Returns the
    patches and their classes ("mass" / "calcification").
    """
    from scipy.ndimage import gaussian_filter

    rng = fixture_stream(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    patches = np.empty((n, size, size), np.uint8)
    classes = []
    for i in range(n):
        background = gaussian_filter(rng.normal(0, 1, (size, size)), size / 16)
        background = 0.3 + 0.08 * background / (background.std() + 1e-6)
        img = background.astype(np.float32)
        cy, cx = size / 2 + rng.normal(0, size / 16, 2)
        if i % 2 == 0:
            sy, sx = rng.uniform(size / 14, size / 6, 2)
            angle = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = dy * np.cos(angle) + dx * np.sin(angle)
            v = -dy * np.sin(angle) + dx * np.cos(angle)
            img += rng.uniform(0.35, 0.55) * np.exp(-(u**2 / (2 * sy**2) + v**2 / (2 * sx**2)))
            classes.append("mass")
        else:
            for _ in range(rng.integers(5, 14)):
                py, px = cy + rng.normal(0, size / 12), cx + rng.normal(0, size / 12)
                s = rng.uniform(0.8, 1.6) * size / 64
                img += rng.uniform(0.3, 0.6) * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * s**2))
            classes.append("calcification")
        patches[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return patches, classes


def write_toy_lesion_store(path: str | os.PathLike, n: int, size: int = 64, seed: int = 0) -> Path:
    """A small lesion patch store of :func:`toy_lesion_patches` (tests, benchmarks, demos)."""
    patches, classes = toy_lesion_patches(n, size, seed)
    manifest = pd.DataFrame({
        "patch_id": [f"toy-{i:05d}" for i in range(n)], "group": "lesion", "source_kind": "phantom",
        "image_id": [f"toy-img-{i:05d}" for i in range(n)], "lesion_id": [f"toy-les-{i:05d}" for i in range(n)],
        "lesion_class": classes, "center_row": size // 2, "center_col": size // 2,
        "normalisation": "none", "checksum": "",
    })
    return write_patch_store(path, patches, manifest)


def write_example_stores(
    run_dir: str | os.PathLike, n_real: int = 40, n_synthetic: int = 40, size: int = 32,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Small real and synthetic stores for tests, demos and the benchmark (not study data).

    "Real" patches are smooth blobs on textured background; "synthetic" ones add a faint
    checkerboard (an upsampling artefact), so a machine observer has something to find.
    """
    rng = fixture_stream(seed)
    yy, xx = np.mgrid[:size, :size] / size

    def make(n: int, artefact: float) -> np.ndarray:
        out = np.empty((n, size, size), dtype=np.float32)
        for i in range(n):
            cy, cx, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.1, 0.25)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            texture = rng.normal(0, 0.08, (size, size))
            checker = artefact * ((np.indices((size, size)).sum(0) % 2) - 0.5)
            out[i] = np.clip(0.25 + 0.5 * blob + texture + checker, 0, 1)
        return out

    def manifest(n: int, group: str) -> pd.DataFrame:
        rows = [{"patch_id": f"{group}-{i:05d}", "group": group,
                 "source_kind": "dcgan" if group == "synthetic" else "phantom",
                 "image_id": "" if group == "synthetic" else f"img{i:04d}",
                 "lesion_id": "" if group == "synthetic" else f"l{i:04d}",
                 "lesion_class": "mass", "center_row": -1, "center_col": -1,
                 "normalisation": "none", "checksum": ""} for i in range(n)]
        return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))

    real = write_patch_store(lesion_store_path(run_dir), make(n_real, 0.0), manifest(n_real, "lesion"))
    synthetic = write_patch_store(synthetic_store_path(run_dir), make(n_synthetic, 0.12),
                                  manifest(n_synthetic, "synthetic"))
    return real, synthetic


def write_simulated_study(
    reader_study_dir: str | Path, n_real: int = 20, n_synthetic: int = 20,
    readers: dict[str, tuple[str, float]] | None = None, seed: int = 0,
    case_set_id: str = "cs-simulated", generators: dict[str, float] | None = None,
) -> Path:
    """Write ``case_set/`` (study.json, cases.csv), ``key/key.csv`` and ``ratings/<reader>.jsonl``
    in the reader-study format, with readers ``{name: (reader_kind, separation)}`` whose latent
    score is N(separation, 1) for real and N(0, 1) for synthetic cases, cut into the six options
    (a binormal observer). Returns the case set folder. Not used by the study itself.

    ``generators`` ({name: shift}, several) splits the synthetic cases across generators in turn
    (key.csv gains ``generator`` and ``<name>.zarr`` stores, study.json ``generators`` and
    ``n_synthetic_by_generator``); a synthetic case of generator g has latent N(-shift_g, 1), so
    a larger shift makes g easier to tell from real. None: one generator, the layout of a key
    written before generators were named."""
    root = Path(reader_study_dir)
    readers = readers or {"machine-a": ("machine", 1.0), "machine-b": ("machine", 0.3)}
    rng = fixture_stream(seed)
    n = n_real + n_synthetic
    case_ids = [f"c{k:04d}" for k in rng.permutation(n)]
    truth = np.array(["real"] * n_real + ["synthetic"] * n_synthetic)
    names = list(generators or {})
    generator = np.array([""] * n_real + [names[k % len(names)] if names else "" for k in range(n_synthetic)])
    shift = np.array([0.0] * n_real + [(generators or {}).get(g, 0.0) for g in generator[n_real:]])
    (root / "case_set").mkdir(parents=True, exist_ok=True)
    (root / "key").mkdir(parents=True, exist_ok=True)
    (root / "ratings").mkdir(parents=True, exist_ok=True)
    study = {"case_set_id": case_set_id, "n_real": n_real, "n_synthetic": n_synthetic}
    if names:
        study.update(generators=names, n_synthetic_by_generator={g: int((generator == g).sum()) for g in names})
    (root / "case_set" / "study.json").write_text(json.dumps(study))
    pd.DataFrame({"case_id": case_ids, "image": [f"images/{c}.png" for c in case_ids]}).sort_values(
        "case_id").to_csv(root / "case_set" / "cases.csv", index=False)
    key = pd.DataFrame({"case_id": case_ids, "truth": truth,
                        "store": np.where(truth == "real", "lesion.zarr", "synthetic.zarr"),  # store folder names, as build_case_set writes
                        "patch_id": [f"p{k}" for k in range(n)]})
    if names:
        key["store"] = np.where(truth == "real", "lesion.zarr", np.char.add(generator, ".zarr"))
        key["generator"] = generator
    key.sort_values("case_id").to_csv(root / "key" / "key.csv", index=False)
    cuts = np.array([-0.9, -0.3, 0.3, 0.9, 1.5])  # latent -> options 6 (lowest) ... 1 (highest)
    for name, (kind, separation) in readers.items():
        latent = rng.normal(size=n) + separation * (truth == "real") - shift
        options = 6 - np.searchsorted(cuts, latent)
        lines = []
        for cid, opt in zip(case_ids, options, strict=True):
            lines.append(json.dumps({
                "reader": name, "reader_kind": kind, "case_set_id": case_set_id, "case_id": cid,
                "option": int(opt), "label": OPTION_LABEL[int(opt)], "value": OPTION_VALUE[int(opt)],
                "shown_at": "2026-11-24T10:00:00+00:00", "answered_at": "2026-11-24T10:00:02+00:00",
                "event": "answer", "app_version": "simulated"}))
        (root / "ratings" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return root / "case_set"
