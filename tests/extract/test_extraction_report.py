"""What notebook 01 shows: prose generated from the parameters, and figures and tables that
still come out (saying so plainly) when a run has no lesion or no normal patch."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mammo_lib.extract import report  # noqa: E402
from mammo_lib.patch_store import MANIFEST_COLUMNS, open_patch_store, write_patch_store  # noqa: E402
from mammo_lib.sources.records import ImageRecord  # noqa: E402


def test_rules_text_quotes_the_parameters():
    text = report.rules_markdown(64, "equalize_patch", "crop", 3)
    assert "64x64 px" in text and "128" not in text
    assert "up to 3 per image" in text and "extent > 53 px" in text
    assert "**cropped**" in text and "equalize_patch" in text
    assert "**resized** to 128 px" in report.rules_markdown(128, "equalize_image", "resize", 6)


def _empty_store(tmp_path, name):
    write_patch_store(tmp_path / name, np.zeros((0, 32, 32), np.uint8),
                      pd.DataFrame(columns=list(MANIFEST_COLUMNS)))
    return open_patch_store(tmp_path / name, require_nonempty=False)


def test_figures_of_an_empty_run_say_so_and_are_saved(tmp_path):
    lesion = _empty_store(tmp_path, "lesion.zarr")
    normal = _empty_store(tmp_path, "normal.zarr")
    figs = {"class_counts": report.class_counts_figure({"normal": 0}),
            "lesion_examples": report.example_patches_figure(lesion, "lesion", seed=0),
            **report.lesion_rule_figures(lesion),
            "intensity_histograms": report.intensity_histograms_figure([], lesion, normal, "none")}
    texts = [t.get_text() for f in figs.values() for ax in f.axes for t in ax.texts]
    assert "0 lesion patches" in texts and "none in this run" in texts
    report.save_stage_figure(figs, tmp_path / "run")
    for name in figs:
        assert report.figure_path(tmp_path / "run", name).stat().st_size > 1000


def test_intensity_samples_leave_out_unreadable_images(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom")
    good = tmp_path / "good.png"
    from PIL import Image

    yy, xx = np.mgrid[:200, :160]
    Image.fromarray(np.where((yy - 100) ** 2 + xx**2 < 120**2, 180, 5).astype(np.uint8)).save(good)
    records = [ImageRecord("bad", bad, "mias"), ImageRecord("good", good, "mias")]
    samples = report.intensity_samples(records, seed=0)
    assert [s["image_id"] for s in samples] == ["good"]
    assert 0.0 <= samples[0]["normalised"].min() and samples[0]["normalised"].max() <= 1.0


def test_skipped_table_shows_whole_problems(tmp_path):
    long_problem = "x" * 300
    path = tmp_path / "skipped_files.csv"
    pd.DataFrame({"path": ["a.dcm"], "problem": [long_problem], "stage": ["s"]}).to_csv(path, index=False)
    html, n = report.skipped_table(path)
    assert n == 1 and long_problem in html.data
