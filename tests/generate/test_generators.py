"""Synthetic patches from any generator: folders of PNG/TIFF/NumPy/DICOM files and TorchScript
models become synthetic stores under one contract; bad input is named and nothing half-written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mammo_lib.fileio import file_sha256
from mammo_lib.generate.contract import (
    GeneratorError,
    GeneratorSpec,
    parse_generators,
    to_study_uint8,
)
from mammo_lib.generate.imported import import_generator
from mammo_lib.patch_store import open_patch_store
from mammo_lib.sources.dicom_io import write_mammogram_dicom

SIZE = 16


def _ramp(dtype=np.uint8, top=255):
    return (np.linspace(0, top, SIZE * SIZE).reshape(SIZE, SIZE)).astype(dtype)


def test_parse_generators_default_and_every_problem_named():
    assert parse_generators(None) == [GeneratorSpec("dcgan", "dcgan")]
    specs = parse_generators([{"name": "dcgan", "kind": "dcgan"}, {"name": "mine", "kind": "folder", "path": "/x"}])
    assert [s.kind for s in specs] == ["dcgan", "folder"] and specs[1].get("path") == "/x"
    with pytest.raises(GeneratorError) as err:
        parse_generators([{"name": "a b", "kind": "folder", "path": "x"}, {"name": "g", "kind": "gan"},
                          {"name": "t", "kind": "torchscript", "path": "g.pt", "n": 0},
                          {"name": "t", "kind": "folder", "path": "y", "colour": 1}, "dcgan",
                          {"name": "gan", "kind": "dcgan"}])
    text = str(err.value)
    for needle in ("name must be", "kind 'gan' is not one of", "needs ['latent_dim']", "n must be a positive",
                   "'t' is used twice", "unknown key(s) ['colour']", "must be a dict",
                   "the built-in DCGAN is named \"dcgan\""):
        assert needle in text, needle


def test_folder_of_every_file_kind_keeps_provenance(tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    Image.fromarray(_ramp()).save(src / "a.png")
    Image.fromarray(_ramp(np.uint16, 65535)).save(src / "b16.png")
    Image.fromarray(_ramp(np.uint16, 65535)).save(src / "c.tif")
    np.save(src / "stack.npy", np.stack([_ramp(np.float32, 1.0), np.full((SIZE, SIZE), 0.5, np.float32)]))
    write_mammogram_dicom(src / "d.dcm", _ramp(np.uint16, 4095), bits_stored=12, pixel_spacing_mm=None)
    (src / "notes.txt").write_text("ignored: not a patch file")
    pd.DataFrame({"file": ["a.png", "c.tif"], "lesion_class": ["mass", "calcification"]}).to_csv(src / "meta.csv", index=False)
    spec = parse_generators([{"name": "mine", "kind": "folder", "path": str(src), "metadata": "meta.csv"}])[0]
    store = open_patch_store(import_generator(spec, tmp_path / "synthetic", SIZE))
    m = store.manifest
    assert len(store) == 6 and store.patch_size == SIZE
    assert list(m["source_file"]) == ["a.png", "b16.png", "c.tif", "d.dcm", "stack.npy[0]", "stack.npy[1]"]
    assert list(m["rescale"]) == ["uint8", "dtype-range uint16", "dtype-range uint16", "range [0, 4095]", "unit", "unit"]
    assert m.loc[0, "source_sha256"] == file_sha256(src / "a.png")
    assert list(m["lesion_class"][:3]) == ["mass", "", "calcification"]
    assert set(m["generator"]) == {"mine"} and set(m["group"]) == {"synthetic"}
    patches = store.load()
    assert patches[0].max() == 255 and patches[1].max() == 255 and patches[5].min() == patches[5].max() == 128
    assert store.verify_checksums() == []


def test_folder_problems_are_named_and_nothing_is_written(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(src / "rgb.png")
    np.save(src / "nan.npy", np.full((SIZE, SIZE), np.nan))
    np.save(src / "big.npy", np.zeros((SIZE * 2, SIZE * 2), np.uint8))
    (src / "fake.png").write_bytes(b"not a png")
    np.save(src / "cube.npy", np.zeros((2, 2, 2, 2)))
    out = tmp_path / "synthetic"
    spec = GeneratorSpec("bad", "folder", {"path": str(src)})
    with pytest.raises(GeneratorError) as err:
        import_generator(spec, out, SIZE)
    text = str(err.value)
    assert "5 file(s) break the patch contract" in text
    for needle in ("rgb.png: colour or palette image", "nan.npy: 256 NaN or infinite", "big.npy: patch is 32x32",
                   "fake.png: not a readable image", "cube.npy: a .npy file must hold"):
        assert needle in text, needle
    assert not out.exists() or list(out.iterdir()) == []  # nothing half-written
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GeneratorError, match="no patch files"):
        import_generator(GeneratorSpec("e", "folder", {"path": str(empty)}), out, SIZE)
    with pytest.raises(GeneratorError, match="does not exist"):
        import_generator(GeneratorSpec("m", "folder", {"path": str(tmp_path / "missing")}), out, SIZE)


def test_resize_is_explicit_and_recorded_and_a_failed_import_keeps_the_old_store(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "p.npy", np.random.default_rng(0).integers(0, 255, (3, SIZE * 2, SIZE * 2)).astype(np.uint8))
    out = tmp_path / "synthetic"
    store = open_patch_store(import_generator(GeneratorSpec("r", "folder", {"path": str(src), "resize": True}), out, SIZE))
    assert store.patch_size == SIZE and set(store.manifest["resized_from"]) == {"32x32"}
    before = (out / "r.zarr" / "manifest.csv").read_bytes()
    np.save(src / "q.npy", np.full((SIZE, SIZE), np.inf))
    with pytest.raises(GeneratorError, match="q.npy"):
        import_generator(GeneratorSpec("r", "folder", {"path": str(src), "resize": True}), out, SIZE)
    assert (out / "r.zarr" / "manifest.csv").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["r.zarr"]


class _TinyGenerator(torch.nn.Module):
    def __init__(self, latent_dim: int, size: int, channels: int = 1):
        super().__init__()
        self.fc = torch.nn.Linear(latent_dim, channels * size * size)
        self.shape = (channels, size, size)

    def forward(self, z):
        return torch.tanh(self.fc(z.flatten(1))).view(-1, *self.shape)


def _script(tmp_path, name, **kw):
    torch.manual_seed(0)
    path = tmp_path / name
    torch.jit.script(_TinyGenerator(**kw)).save(str(path))
    return path


def test_torchscript_generator_is_reproducible_and_recorded(tmp_path):
    path = _script(tmp_path, "g.pt", latent_dim=8, size=SIZE)
    spec = parse_generators([{"name": "g", "kind": "torchscript", "path": str(path), "latent_dim": 8, "n": 10,
                              "batch_size": 4}])[0]
    a = open_patch_store(import_generator(spec, tmp_path / "a", SIZE, seed=3))
    b = open_patch_store(import_generator(spec, tmp_path / "b", SIZE, seed=3))
    c = open_patch_store(import_generator(spec, tmp_path / "c", SIZE, seed=4))
    assert len(a) == 10 and np.array_equal(a.load(), b.load()) and not np.array_equal(a.load(), c.load())
    assert list(a.manifest["latent_index"]) == list(range(10)) and set(a.manifest["rescale"]) == {"tanh"}
    assert set(a.manifest["model_digest"]) == {"sha256:" + file_sha256(path)}


def test_torchscript_problems_name_the_generator(tmp_path):
    wrong = _script(tmp_path, "rgb.pt", latent_dim=4, size=SIZE, channels=3)
    spec = GeneratorSpec("rgb", "torchscript", {"path": str(wrong), "latent_dim": 4, "n": 2})
    with pytest.raises(GeneratorError, match=r"generator 'rgb' returned shape \(2, 3, 16, 16\)"):
        import_generator(spec, tmp_path / "s", SIZE)
    ok = _script(tmp_path, "g.pt", latent_dim=4, size=SIZE)
    with pytest.raises(GeneratorError, match="calling the model failed"):
        import_generator(GeneratorSpec("g", "torchscript", {"path": str(ok), "latent_dim": 5, "n": 2,
                                                             "latent_shape": "flat"}), tmp_path / "s", SIZE)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(GeneratorError, match="is not a TorchScript model"):
        import_generator(GeneratorSpec("j", "torchscript", {"path": str(tmp_path / "junk.pt"), "latent_dim": 4, "n": 2}),
                         tmp_path / "s", SIZE)
    with pytest.raises(GeneratorError, match="outside the expected"):
        to_study_uint8(np.full((4, 4), 3.0), "x")
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_medigan_without_the_package_says_what_to_install(tmp_path):
    pytest.importorskip("numpy")
    try:
        import medigan  # noqa: F401
        pytest.skip("medigan is installed here: the missing-package message cannot be checked")
    except ImportError:
        pass
    spec = GeneratorSpec("optimam", "medigan", {"model_id": "00002_DCGAN_MMG_MASS_ROI", "n": 4})
    with pytest.raises(GeneratorError, match=r"pip install medigan.*00002_DCGAN_MMG_MASS_ROI.*network"):
        import_generator(spec, tmp_path, SIZE)


def test_import_generators_checks_every_item_before_writing(tmp_path):
    from mammo_lib.generate.imported import import_generators

    src = tmp_path / "mine"
    src.mkdir()
    np.save(src / "p.npy", np.zeros((2, SIZE, SIZE), np.uint8))
    out = tmp_path / "synthetic"
    with pytest.raises(GeneratorError, match="generators\\[2\\]"):
        import_generators([{"name": "dcgan", "kind": "dcgan"}, {"name": "mine", "kind": "folder", "path": str(src)},
                           {"name": "x", "kind": "folder"}], out, SIZE)
    assert not out.exists()
    stores = import_generators([{"name": "dcgan", "kind": "dcgan"}, {"name": "mine", "kind": "folder",
                                                                    "path": str(src)}], out, SIZE)
    assert list(stores) == ["mine"] and len(open_patch_store(stores["mine"])) == 2
    assert import_generators(None, out, SIZE) == {}
