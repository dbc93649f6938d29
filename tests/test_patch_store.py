import numpy as np
import pandas as pd
import pytest

from mammo_lib.patch_store import (
    MANIFEST_COLUMNS,
    PatchStoreError,
    open_patch_store,
    patch_checksum,
    write_patch_store,
)


def _manifest(n):
    return pd.DataFrame({
        "patch_id": [f"p{i}" for i in range(n)], "group": "lesion", "source_kind": "phantom",
        "image_id": "img", "lesion_id": [f"l{i}" for i in range(n)], "lesion_class": "mass",
        "center_row": 10, "center_col": 20, "normalisation": "none", "checksum": "",
    })


def test_round_trip_and_checksums(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(5, 16, 16), dtype=np.uint8)
    path = write_patch_store(tmp_path / "s.zarr", data, _manifest(5), chunk=2)
    store = open_patch_store(path)
    assert len(store) == 5 and store.patch_size == 16
    np.testing.assert_array_equal(store.load(), data)
    np.testing.assert_array_equal(store.load([4, 0, 2]), data[[4, 0, 2]])
    assert list(store.manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert store.manifest["checksum"].tolist() == [patch_checksum(p) for p in data]
    assert store.verify_checksums() == []


def test_float_patches_are_quantised_and_nan_rejected(tmp_path):
    data = np.full((2, 8, 8), 0.5, dtype=np.float32)
    store = open_patch_store(write_patch_store(tmp_path / "f.zarr", data, _manifest(2)))
    assert store.load().max() == 128
    data[0, 0, 0] = np.nan
    with pytest.raises(PatchStoreError, match="NaN"):
        write_patch_store(tmp_path / "g.zarr", data, _manifest(2))


def test_missing_and_unfinished_store_errors_name_the_path(tmp_path):
    with pytest.raises(PatchStoreError, match="does not exist"):
        open_patch_store(tmp_path / "nope.zarr")
    path = write_patch_store(tmp_path / "s.zarr", np.zeros((1, 4, 4), np.uint8), _manifest(1))
    (path / "manifest.csv").unlink()
    with pytest.raises(PatchStoreError, match=r"s\.zarr has no manifest\.csv"):
        open_patch_store(path)
