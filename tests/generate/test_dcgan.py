"""DCGAN models, checkpoints and synthesis (mammo_lib.generate.model): shapes, ranges, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mammo_lib.fileio import file_sha256
from mammo_lib.generate.model import (
    CHECKPOINT_FORMAT,
    Architecture,
    CheckpointError,
    Discriminator,
    Generator,
    load_generator,
    save_checkpoint_atomic,
)
from mammo_lib.generate.synthesis import generate_synthetic_patches, regenerate_patches
from mammo_lib.patch_store import MANIFEST_COLUMNS, open_patch_store
from mammo_lib.testing import toy_lesion_patches

torch.set_num_threads(1)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_value_ranges(size):
    arch = Architecture(image_size=size, latent_dim=16, ngf=4, ndf=4)
    torch.manual_seed(0)
    generator, discriminator = Generator(arch), Discriminator(arch)
    z = torch.randn(5, 16) * 10  # large inputs must still land inside tanh's range
    images = generator(z)
    assert images.shape == (5, 1, size, size)
    assert images.min() >= -1.0 and images.max() <= 1.0
    prob = discriminator.probability(images)
    assert prob.shape == (5,)
    assert torch.all((prob > 0) & (prob < 1))
    assert discriminator(images).shape == (5,)  # logits


def test_defaults_follow_paper_and_reference_widths():
    arch = Architecture()
    assert (arch.image_size, arch.latent_dim, arch.channels) == (128, 200, 1)
    # at 64 px the layer widths are those of pytorch/examples dcgan (8, 4, 2, 1 x ngf)
    g64 = Generator(Architecture(image_size=64, latent_dim=100, ngf=64, ndf=64))
    convs = [m for m in g64.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 1]
    # DCGAN guidelines: no pooling, batch norm, weights N(0, 0.02)
    discriminator = Discriminator(arch)
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in discriminator.modules())
    weights = torch.cat([m.weight.flatten() for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("size", [16, 48, 100])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="power of two"):
        Architecture(image_size=size)


def _checkpoint(path, arch):
    torch.manual_seed(1)
    generator = Generator(arch)
    return save_checkpoint_atomic({"format": CHECKPOINT_FORMAT, "architecture": arch.__dict__.copy(),
                                   "iteration": 7, "generator": generator.state_dict()}, path)


def test_atomic_checkpoint_keeps_previous(tmp_path):
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4)
    path = _checkpoint(tmp_path / "last.pt", arch)
    first = file_sha256(path)
    _checkpoint(tmp_path / "last.pt", arch)
    assert file_sha256(tmp_path / "previous.pt") == first
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_errors(tmp_path):
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4)
    path = _checkpoint(tmp_path / "last.pt", arch)
    with pytest.raises(CheckpointError, match="latent_dim: 8 \\(checkpoint\\) vs 200"):
        load_generator(path, expected=Architecture(image_size=32, latent_dim=200, ngf=4, ndf=4))
    with pytest.raises(CheckpointError, match="ngf"):
        load_generator(path, expected=Architecture(image_size=32, latent_dim=8, ngf=8, ndf=4))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_generator(corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a"):
        load_generator(foreign)


def test_synthesis_store_is_traceable(tmp_path):
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4)
    ckpt = _checkpoint(tmp_path / "last.pt", arch)
    out = generate_synthetic_patches(ckpt, n=10, seed=3, out_store=tmp_path / "synthetic.zarr",
                                     device="cpu", batch_size=4)
    store = open_patch_store(out)
    assert len(store) == 10 and store.patch_size == 32
    manifest = store.manifest
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert set(manifest["group"]) == {"synthetic"} and set(manifest["source_kind"]) == {"dcgan"}
    assert set(manifest["lesion_class"]) == {"synthetic"} and set(manifest["center_row"]) == {-1}
    assert set(manifest["checkpoint_sha256"]) == {file_sha256(ckpt)}
    assert list(manifest["index"]) == list(range(10))
    assert manifest["patch_id"].is_unique and store.verify_checksums() == []
    # any single patch can be regenerated from (checkpoint, latent_seed)
    again = regenerate_patches(ckpt, manifest["latent_seed"].iloc[[7, 2]])
    np.testing.assert_array_equal(again, store.load([7, 2]))
    # same seed, same patches; other seed, other patches
    out2 = generate_synthetic_patches(ckpt, n=10, seed=3, out_store=tmp_path / "s2.zarr", device="cpu")
    np.testing.assert_array_equal(open_patch_store(out2).load(), store.load())
    out3 = generate_synthetic_patches(ckpt, n=10, seed=4, out_store=tmp_path / "s3.zarr", device="cpu")
    assert not np.array_equal(open_patch_store(out3).load(), store.load())


def test_toy_patches_look_like_lesions():
    patches, classes = toy_lesion_patches(4, size=32, seed=0)
    assert patches.shape == (4, 32, 32) and patches.dtype == np.uint8
    assert classes == ["mass", "calcification", "mass", "calcification"]
    centre = patches[:, 12:20, 12:20].mean()
    assert centre > patches[:, :4, :4].mean()  # bright lesion in the middle
