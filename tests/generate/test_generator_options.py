"""Stage 02 options of issue 21: the light FastGAN (network="fastgan": shapes, skip-layer excitation,
the self-supervised D, bit-identical resume, synthesis from its checkpoints, old checkpoints), bilinear
resize and reflection padding in G, mixed precision (ignored on a CPU), and a fixed instance-noise
horizon (a shorter run is a snapshot of a longer one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mammo_lib.generate.config import TrainConfig, deviations_from_paper
from mammo_lib.generate.fastgan import SkipLayerExcitation, hinge_d_loss, hinge_g_loss
from mammo_lib.generate.model import (
    Architecture,
    Discriminator,
    Generator,
    checkpoint_architecture,
    draw_noise_maps,
    load_checkpoint,
    load_generator,
    uint8_to_model,
)
from mammo_lib.generate.synthesis import (
    generate_synthetic_patches,
    latent_seed_for,
    regenerate_patches,
)
from mammo_lib.generate.training import train_dcgan
from mammo_lib.patch_store import open_patch_store
from mammo_lib.testing import write_toy_lesion_store

TINY = dict(batch_size=8, latent_dim=16, ngf=8, ndf=8, num_threads=1, progress=False, sample_every=1000,
            network="fastgan", noise_injection=True, diffaugment="color,translation", ema_decay=0.9)

torch.set_num_threads(1)


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return write_toy_lesion_store(tmp_path_factory.mktemp("store") / "lesion.zarr", n=48, size=64, seed=0)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_skip_layer_excitation(size):
    arch = Architecture(image_size=size, latent_dim=8, ngf=4, ndf=4, network="fastgan", noise_injection=True)
    generator, discriminator = Generator(arch, rng=_rng(0)), Discriminator(arch, rng=_rng(1))
    z = torch.randn(3, 8, generator=_rng(2))
    images = generator(z, draw_noise_maps(arch, 3, _rng(3)))
    assert images.shape == (3, 1, size, size) and images.abs().max() <= 1.0
    logits = discriminator(images)
    logits_again, error = discriminator(images, 2)
    assert logits.shape == (3,) and torch.equal(logits, logits_again) and error.item() > 0
    sles = [m for m in generator.modules() if isinstance(m, SkipLayerExcitation)]
    # 4 -> 64 and 8 -> 128: one gate from 64 px on, two at 128 px
    assert len(sles) == {32: 0, 64: 1, 128: 2}[size]
    with pytest.raises(ValueError, match="noise inputs"):
        generator(z)


def test_excitation_gates_channels_by_the_small_features():
    sle = SkipLayerExcitation(2, 3)
    big = torch.ones(1, 3, 16, 16)
    gated = sle(torch.randn(1, 2, 4, 4, generator=_rng(0)), big)
    per_channel = gated[0, :, 0, 0]
    assert torch.all((per_channel > 0) & (per_channel < 1))
    assert torch.allclose(gated, per_channel[None, :, None, None].expand_as(gated))


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, None).item() == pytest.approx(0.25)  # relu(1 - 2), relu(1 - 0.5)
    assert hinge_d_loss(None, fake).item() == pytest.approx(0.5)  # relu(1 - 2), relu(1 + 0)
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.75)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)


def test_training_teaches_d_to_reconstruct_and_resume_is_bit_identical(toy_store, tmp_path):
    real = uint8_to_model(torch.from_numpy(open_patch_store(toy_store).load(range(8))))
    whole = train_dcgan(toy_store, tmp_path / "a" / "dcgan", TrainConfig(max_iterations=30, checkpoint_every=15,
                                                                          seed=0, **TINY))
    assert whole.stopped == "finished" and whole.iterations_done == 30
    state = load_checkpoint(whole.checkpoint)
    assert state["architecture"]["network"] == "fastgan"
    assert state["random_streams"]["rule"].endswith("fastgan_part(rank, iteration)")

    arch = checkpoint_architecture(state)

    def reconstruction_error(weights=None) -> float:
        discriminator = Discriminator(arch, rng=_rng(5))
        if weights is not None:
            discriminator.load_state_dict(weights)
        discriminator.train()  # batch statistics: 30 iterations leave the running ones behind
        with torch.no_grad():
            return float(np.mean([discriminator(real, part)[1].item() for part in range(4)]))

    assert reconstruction_error(state["discriminator"]) < 0.8 * reconstruction_error()

    kept = []
    train_dcgan(toy_store, tmp_path / "b" / "dcgan", TrainConfig(max_iterations=15, checkpoint_every=15, seed=0,
                                                                  **TINY))
    resumed = train_dcgan(toy_store, tmp_path / "b" / "dcgan",
                          TrainConfig(max_iterations=30, checkpoint_every=15, seed=0, **TINY), resume=True,
                          on_checkpoint=lambda it, path: kept.append((it, path.name)))
    assert kept == [(30, "last.pt")]
    other = load_checkpoint(resumed.checkpoint)
    for key in ("generator", "discriminator", "generator_ema"):
        assert all(torch.equal(state[key][k], other[key][k]) for k in state[key]), key


def test_synthesis_from_a_fastgan_checkpoint_regenerates_each_patch(toy_store, tmp_path):
    result = train_dcgan(toy_store, tmp_path / "dcgan", TrainConfig(max_iterations=4, checkpoint_every=4, seed=1,
                                                                     **TINY))
    store = generate_synthetic_patches(result.checkpoint, n=6, seed=1, out_store=tmp_path / "s.zarr", device="cpu")
    patches = open_patch_store(store).load()
    again = regenerate_patches(result.checkpoint, [latent_seed_for(1, i) for i in (4, 1)])
    assert patches.shape == (6, 64, 64) and np.array_equal(again, patches[[4, 1]])
    generator, meta = load_generator(result.checkpoint)
    assert generator.arch.network == "fastgan" and meta["weights"] == "generator_ema"
    manifest = open_patch_store(store).manifest
    assert set(manifest["dcgan_network"]) == {"fastgan"} and set(manifest["dcgan_g_head_width"]) == {0}


def test_a_checkpoint_without_network_is_a_dcgan_and_bad_names_are_refused(toy_store, tmp_path):
    state = {"architecture": {"image_size": 32, "latent_dim": 8, "ngf": 4, "ndf": 4, "channels": 1,
                              "upsampling": "transposed", "spectral_norm": False, "noise_injection": False}}
    assert checkpoint_architecture(state).network == "dcgan"
    with pytest.raises(ValueError, match=r"network must be one of \('dcgan', 'fastgan'\), got 'stylegan'"):
        TrainConfig(network="stylegan")
    assert any("FastGAN" in line for line in deviations_from_paper(TrainConfig(network="fastgan")))


@pytest.mark.parametrize("network", ["dcgan", "fastgan"])
def test_bilinear_resize_and_reflect_padding(network):
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4, network=network, upsampling="bilinear_conv",
                        g_padding="reflect")
    generator = Generator(arch, rng=_rng(0))
    convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(m.padding_mode == "reflect" for m in convs)
    z = torch.randn(2, 8, generator=_rng(1))
    images = generator(z, draw_noise_maps(arch, 2, _rng(2)))
    nearest = Generator(Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4, network=network,
                                     upsampling="resize_conv", g_padding="reflect"), rng=_rng(0))
    # the same weights (same stream), only the resize differs
    assert not torch.equal(images, nearest(z, draw_noise_maps(arch, 2, _rng(2))))
    for make in (lambda: Architecture(image_size=32, upsampling="transposed", g_padding="reflect"),
                 lambda: TrainConfig(upsampling="transposed", g_padding="reflect")):
        with pytest.raises(ValueError, match="needs resize-convolutions"):
            make()


def test_amp_is_ignored_on_a_cpu_and_the_summary_names_the_device(toy_store, tmp_path):
    import json

    runs = {}
    for amp in (False, True):
        result = train_dcgan(toy_store, tmp_path / f"amp{amp}" / "dcgan",
                             TrainConfig(max_iterations=3, checkpoint_every=3, seed=2, device="cpu", amp=amp, **TINY))
        runs[amp] = load_checkpoint(result.checkpoint)
        summary = json.loads((tmp_path / f"amp{amp}" / "dcgan" / "training_summary.json").read_text())
        assert summary["device"] == "cpu" and summary["device_name"] == "cpu" and summary["amp"] is False
        assert summary["config"]["amp"] is amp
    assert all(torch.equal(runs[False]["generator"][k], runs[True]["generator"][k]) for k in runs[False]["generator"])


def test_a_fixed_instance_noise_horizon_makes_a_shorter_run_a_snapshot_of_a_longer_one(tmp_path):
    """With ``instance_noise_iterations`` nothing depends on the run's length: the checkpoint a
    longer run writes at iteration 10 (kept through ``on_checkpoint``) is the 10-iteration run's."""
    import shutil

    store = write_toy_lesion_store(tmp_path / "lesion.zarr", n=32, size=32, seed=3)
    tiny = dict(batch_size=8, latent_dim=8, ngf=4, ndf=4, num_threads=1, progress=False, sample_every=1000,
                instance_noise=0.3, seed=0, checkpoint_every=5)

    def keep(iteration, path):
        if iteration == 10:
            shutil.copyfile(path, tmp_path / "snapshot.pt")

    train_dcgan(store, tmp_path / "long" / "dcgan", TrainConfig(max_iterations=20, instance_noise_iterations=8,
                                                                 **tiny), on_checkpoint=keep)
    short = train_dcgan(store, tmp_path / "short" / "dcgan",
                        TrainConfig(max_iterations=10, instance_noise_iterations=8, **tiny))
    snapshot, alone = load_checkpoint(tmp_path / "snapshot.pt"), load_checkpoint(short.checkpoint)
    assert all(torch.equal(snapshot["generator"][k], alone["generator"][k]) for k in alone["generator"])
    # annealed over the whole run instead, the same 10 iterations differ
    other = train_dcgan(store, tmp_path / "whole" / "dcgan", TrainConfig(max_iterations=10, **tiny))
    differs = load_checkpoint(other.checkpoint)["generator"]
    assert not all(torch.equal(differs[k], alone["generator"][k]) for k in alone["generator"])
    with pytest.raises(ValueError, match="instance_noise_iterations must be >= 1"):
        TrainConfig(instance_noise_iterations=0)


def test_a_head_layer_at_full_size_has_its_own_noise_input():
    from mammo_lib.generate.model import noise_map_sizes

    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4, upsampling="bilinear_conv", noise_injection=True,
                        g_head_width=3)
    assert noise_map_sizes(arch) == [8, 16, 32, 32]
    generator = Generator(arch, rng=_rng(0))
    last_convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)][-2:]
    assert [(c.in_channels, c.out_channels) for c in last_convs] == [(4, 3), (3, 1)]
    maps = draw_noise_maps(arch, 2, _rng(1))
    z = torch.randn(2, 8, generator=_rng(2))
    generator.main[-2].weight.data.fill_(0.5)  # the output's own noise scale
    changed = [m.clone() for m in maps]
    changed[-1] += 1.0  # only the head's map
    assert generator(z, maps).shape == (2, 1, 32, 32)
    assert not torch.equal(generator(z, maps), generator(z, changed))
    with pytest.raises(ValueError, match="g_head_width must be >= 0"):
        TrainConfig(upsampling="transposed", g_head_width=8)
    with pytest.raises(ValueError, match="FastGAN's G has its own full-size layers"):
        TrainConfig(network="fastgan", upsampling="bilinear_conv", g_head_width=8)
