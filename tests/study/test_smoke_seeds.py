"""The smoke profile works for every seed 0-19, not only for the seed the other tests run.

For each seed the smoke phantom is generated and cut exactly as stage 01 does it (the smoke
profile's parameters, the real phantom and the real extraction; about 2 s a seed), and the
lesion store it leaves is checked against what the later stages need of it:

* stage 04 draws its balanced case set with the real sampling function
  (:func:`mammo_lib.reader_study.sampling.draw_generator_sample`) from that many real lesions and
  stage 02's smoke ``n_synthetic`` DCGAN patches (what the generator writes; no training here);
* stage 03's two C2ST controls can cut their folds: the null control splits the real lesions
  it samples in two halves, the positive control takes as many lesions as one half, and each
  set needs two patches per fold (:func:`mammo_lib.feature_space.c2st.stats.balanced_folds`). Without the
  controls the smoke study's report fails.

Seed 3 with the 6-image phantom of earlier versions left 5 real lesions: stage 04 could not
keep 1 practice case and 5 held-out patches and still score one pair, and it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mammo_lib.extract import pipeline as patches
from mammo_lib.feature_space.c2st.stats import balanced_folds
from mammo_lib.feature_space.c2st.study import null_halves
from mammo_lib.patch_store import open_patch_store
from mammo_lib.reader_study.sampling import draw_generator_sample
from mammo_lib.run_folder import lesion_store_path
from mammo_lib.sources import collection as datasets
from mammo_lib.sources.lesion_classes import select_lesion_rows

PARAMS = Path(__file__).resolve().parents[2] / "notebooks" / "params"
SEEDS = range(20)


def smoke(stage: str) -> dict:
    """The smoke profile's parameters of one stage, as the runner reads them."""
    return json.loads((PARAMS / f"{stage}.json").read_text())["smoke"]


def smoke_lesion_store(run_dir: Path, seed: int):
    """Stage 01 on the smoke phantom of ``seed``: the cells of notebook 01 that write the stores."""
    p = smoke("01_extract_patches")
    root = datasets.source_folder(p["source_kind"], p["source_path"], run_dir,
                                  phantom_images=p["phantom_images"], seed=seed)
    collection = datasets.open_collection(p["source_kind"], root, keep_for_processing=p["keep_for_processing"])
    patches.extract_patches(collection, run_dir / "patches", patch_size=p["patch_size"],
                            n_normal_per_image=p["n_normal_per_image"], normalisation=p["normalisation"],
                            large_lesion=p["large_lesion"], vendor_filter=p["vendor_filter"], seed=seed,
                            n_workers=0, progress=False)
    return open_patch_store(lesion_store_path(run_dir), require_nonempty=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_the_smoke_phantom_feeds_stages_03_and_04(tmp_path, seed):
    lesions = smoke_lesion_store(tmp_path, seed)
    s02, s03, s04 = smoke("02_train_dcgan"), smoke("03_feature_space"), smoke("04_reader_study")

    # stage 04: the real rows its lesion_classes filter keeps, the DCGAN's n_synthetic patches
    n_real = len(select_lesion_rows(lesions.manifest, s04["lesion_classes"], lesions.path, min_patches=0))
    generators = [g["name"] for g in s02["generators"]]
    assert generators == ["dcgan"], "the smoke profile's synthetic side is the DCGAN's n_synthetic patches"
    sample = draw_generator_sample(n_real, {"dcgan": s02["n_synthetic"]}, s04["n_real"], s04["n_synthetic"],
                                   s04["n_practice"], seed, shrink_to_fit=s04["shrink_to_fit"],
                                   min_held_out=s04["min_held_out"])  # raises when nothing fits
    assert len(sample.real_cases) == sample.n_synthetic >= 1
    assert len(sample.real_held_out) >= s04["min_held_out"]

    # stage 03: the C2ST controls on the real lesions it samples (at most n_per_group)
    n_sampled = min(len(lesions), s03["n_per_group"])
    folds = s03["c2st_folds"]
    for repeat in range(s03["c2st_null_repeats"]):
        half_a, half_b = null_halves(n_sampled, seed, repeat)
        balanced_folds(len(half_a), len(half_b), folds, seed, key=0)  # raises when a fold lacks patches
    balanced_folds(n_sampled // 2, n_sampled // 2, folds, seed, key=0)  # the positive control's size
