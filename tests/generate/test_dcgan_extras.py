"""Stage 02 options for few training patches: DiffAugment, EMA of G, R1, resize-convolution
G, noise inputs to G, spectral norm in D; each recorded in checkpoint and synthetic store, each resumable bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mammo_lib.generate.config import TrainConfig, deviations_from_paper
from mammo_lib.generate.model import (
    Architecture,
    Discriminator,
    Generator,
    NoiseInjection,
    draw_noise_maps,
    load_checkpoint,
    load_generator,
    noise_map_sizes,
)
from mammo_lib.generate.regularisers import (
    GeneratorEMA,
    SpectralDiscriminator,
    diff_augment,
    parse_policy,
    r1_penalty,
    radial_log_power,
    spectral_loss,
)
from mammo_lib.generate.synthesis import (
    generate_synthetic_patches,
    generator_digest,
    regenerate_patches,
)
from mammo_lib.generate.training import train_dcgan
from mammo_lib.patch_store import open_patch_store
from mammo_lib.testing import write_toy_lesion_store

TINY = dict(batch_size=8, latent_dim=16, ngf=8, ndf=8, num_threads=1, progress=False, sample_every=1000)
ALL_OPTIONS = dict(upsampling="resize_conv", spectral_norm=True, diffaugment="color,translation,cutout",
                   ema_decay=0.9, r1_gamma=1.0, lr_d=4e-4, lr_g=1e-4, channels_last=True, noise_injection=True,
                   spectral_loss_weight=0.5, spectral_d_weight=0.5)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return write_toy_lesion_store(tmp_path_factory.mktemp("store") / "lesion.zarr", n=64, size=32, seed=0)


def _rng(seed=0):
    return torch.Generator().manual_seed(seed)


def test_policy_parsing():
    assert parse_policy("") == () and parse_policy(None) == ()
    assert parse_policy(" cutout, color ") == ("cutout", "color")
    with pytest.raises(ValueError, match="unknown DiffAugment policy \\['colour'\\]"):
        parse_policy("colour")
    with pytest.raises(ValueError, match="DiffAugment"):
        TrainConfig(diffaugment="flip")


def test_diff_augment_ops_are_differentiable_and_keyed():
    x = torch.linspace(-1, 1, 4 * 32 * 32).reshape(4, 1, 32, 32).requires_grad_(True)
    assert diff_augment(x, (), _rng()) is x
    out = diff_augment(x, ("color", "translation", "cutout"), _rng(1))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    again = diff_augment(x.detach(), ("color", "translation", "cutout"), _rng(1))
    assert torch.equal(out.detach(), again)
    assert not torch.equal(again, diff_augment(x.detach(), ("color", "translation", "cutout"), _rng(2)))


def test_translation_shifts_and_cutout_blanks_half_the_side():
    img = torch.zeros(1, 1, 32, 32)
    img[0, 0, 16, 16] = 1.0
    moved = [diff_augment(img, ("translation",), _rng(s)) for s in range(20)]
    positions = {tuple(torch.nonzero(m[0, 0])[0].tolist()) for m in moved if m.sum() == 1}
    assert len(positions) > 5 and all(abs(r - 16) <= 4 and abs(c - 16) <= 4 for r, c in positions)
    ones = torch.ones(40, 1, 32, 32)
    cut = diff_augment(ones, ("cutout",), _rng(0))
    zeros_per_image = (cut == 0).flatten(1).sum(1)
    assert (zeros_per_image > 0).all() and zeros_per_image.max() == 16 * 16  # squares of half the side
    assert ((cut == 0) | (cut == 1)).all()
    colour = diff_augment(ones, ("color",), _rng(0))
    assert not torch.allclose(colour.mean((1, 2, 3)), ones.mean((1, 2, 3)))


def test_ema_follows_generator_and_r1_is_a_gradient_norm():
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4)
    generator = Generator(arch, rng=_rng(0))
    ema = GeneratorEMA(generator, decay=0.75)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(1.0)
    ema.update(generator)
    for old, avg in zip(before, ema.model.parameters(), strict=True):
        torch.testing.assert_close(avg, old + 0.25)
    with pytest.raises(ValueError, match="ema_decay"):
        GeneratorEMA(generator, decay=1.0)
    discriminator = Discriminator(arch, rng=_rng(1))
    penalty = r1_penalty(discriminator, torch.rand(4, 1, 32, 32) * 2 - 1)
    assert penalty.item() > 0
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in discriminator.parameters())


def test_ema_batch_norm_statistics_are_recomputed_for_the_averaged_weights():
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4, noise_injection=True)
    generator = Generator(arch, rng=_rng(0))
    ema = GeneratorEMA(generator, decay=0.5)
    with torch.no_grad():
        for p in generator.parameters():
            p.mul_(3.0)
    ema.update(generator)  # the average's weights moved; its running statistics are G's (initial) ones
    first_bn = next(m for m in ema.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(first_bn.running_mean, torch.zeros_like(first_bn.running_mean))
    seen = []
    hook = first_bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    rng = _rng(5)
    ema.recalibrate_batch_norm(lambda: (torch.randn(16, 8, generator=rng), draw_noise_maps(arch, 16, rng)),
                               n_batches=3)
    hook.remove()
    acts = torch.cat(seen)  # (48, C, 4, 4): the average's own activations over the three batches
    assert len(seen) == 3 and not ema.model.training
    torch.testing.assert_close(first_bn.running_mean, acts.mean(dim=(0, 2, 3)))
    assert first_bn.running_mean.abs().max() > 1e-3


def test_resize_conv_generator_and_spectral_norm_discriminator():
    arch = Architecture(image_size=64, latent_dim=8, ngf=4, ndf=4, upsampling="resize_conv", spectral_norm=True)
    generator = Generator(arch, rng=_rng(0))
    transposed = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.stride for m in transposed] == [(1, 1)]  # only the 1x1 -> 4x4 projection
    assert sum(isinstance(m, torch.nn.Upsample) for m in generator.modules()) == 4
    assert generator(torch.randn(2, 8)).shape == (2, 1, 64, 64)
    torch.manual_seed(1)
    d1 = Discriminator(arch, rng=_rng(3))
    torch.manual_seed(2)  # the global generator does not matter
    d2 = Discriminator(arch, rng=_rng(3))
    for (name, a), b in zip(d1.state_dict().items(), d2.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d1.modules())
    weight = d1.main[0].weight  # the normalised weight: largest singular value about 1
    assert abs(torch.linalg.matrix_norm(weight.flatten(1), ord=2).item() - 1.0) < 0.05
    with pytest.raises(ValueError, match="upsampling"):
        Architecture(upsampling="bilinear")


def test_all_options_train_resume_bit_identically_and_are_recorded(toy_store, tmp_path):
    cfg = TrainConfig(max_iterations=6, checkpoint_every=3, seed=0, **TINY, **ALL_OPTIONS)
    straight = train_dcgan(toy_store, tmp_path / "straight", cfg)
    half = TrainConfig(**{**cfg.__dict__, "max_iterations": 3})
    train_dcgan(toy_store, tmp_path / "resumed", half)
    resumed = train_dcgan(toy_store, tmp_path / "resumed", cfg)
    assert (resumed.start_iteration, resumed.iterations_done) == (3, 6)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in ("generator", "generator_ema", "discriminator"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    assert a["architecture"]["upsampling"] == "resize_conv" and a["architecture"]["spectral_norm"] is True
    assert {k: a["config"][k] for k in ALL_OPTIONS} == ALL_OPTIONS
    assert generator_digest(a["generator_ema"]) != generator_digest(a["generator"])

    generator, meta = load_generator(straight.checkpoint)
    assert meta["weights"] == "generator_ema"
    store = open_patch_store(generate_synthetic_patches(straight.checkpoint, 4, 0, tmp_path / "syn.zarr",
                                                        device="cpu"))
    manifest = store.manifest
    assert set(manifest["generator_weights"]) == {"generator_ema"}
    assert set(manifest["generator_sha256"]) == {generator_digest(a["generator_ema"])}
    assert set(manifest["dcgan_upsampling"]) == {"resize_conv"} and set(manifest["dcgan_ema_decay"]) == {0.9}
    assert set(manifest["dcgan_diffaugment"]) == {"color,translation,cutout"}
    assert store.attrs["training_options"]["r1_gamma"] == 1.0
    with torch.no_grad():
        ema_out = generator(torch.zeros(1, 16), draw_noise_maps(generator.arch, 1, _rng(0)))
    assert ema_out.shape == (1, 1, 32, 32) and np.isfinite(ema_out.numpy()).all()
    assert set(manifest["dcgan_noise_injection"]) == {True} and a["architecture"]["noise_injection"] is True
    assert set(manifest["dcgan_spectral_d_weight"]) == {0.5} and set(manifest["dcgan_spectral_loss_weight"]) == {0.5}
    for name, tensor in a["spectral_discriminator"].items():  # the spectral D resumes bit for bit too
        assert torch.equal(tensor, b["spectral_discriminator"][name]), name
    # the noise scales were learnt (they start at 0), and each patch depends only on its own latent seed
    scales = [m.weight for m in generator.modules() if isinstance(m, NoiseInjection)]
    assert len(scales) == len(noise_map_sizes(generator.arch)) == 3 and any(w.abs().sum() > 0 for w in scales)
    seeds = manifest["latent_seed"].tolist()
    alone = np.concatenate([regenerate_patches(straight.checkpoint, [s]) for s in seeds])
    assert np.array_equal(alone, store.load())


def test_noise_inputs_are_explicit_and_change_the_texture_not_the_shapes():
    arch = Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4, upsampling="resize_conv", noise_injection=True)
    assert noise_map_sizes(arch) == [8, 16, 32] and noise_map_sizes(Architecture(image_size=32)) == []
    assert draw_noise_maps(Architecture(image_size=32), 2, _rng(0)) is None
    generator = Generator(arch, rng=_rng(0)).eval()
    plain = Generator(Architecture(image_size=32, latent_dim=8, ngf=4, ndf=4, upsampling="resize_conv"), rng=_rng(0))
    assert len(generator.state_dict()) == len(plain.state_dict()) + 3  # one learnt scale per map
    z = torch.randn(2, 8, generator=_rng(1))
    with pytest.raises(ValueError, match="noise inputs"):
        generator(z)
    with pytest.raises(ValueError, match="3 noise maps"):
        generator(z, draw_noise_maps(arch, 2, _rng(2))[:2])
    with pytest.raises(ValueError, match="noise maps of shapes"):  # maps of another batch size do not broadcast
        generator(z, draw_noise_maps(arch, 1, _rng(2)))
    with pytest.raises(ValueError, match="noise maps of shapes"):  # nor maps in the wrong order
        generator(z, draw_noise_maps(arch, 2, _rng(2))[::-1])
    with torch.no_grad():
        for m in generator.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)
        a = generator(z, draw_noise_maps(arch, 2, _rng(2)))
        b = generator(z, draw_noise_maps(arch, 2, _rng(2)))
        c = generator(z, draw_noise_maps(arch, 2, _rng(3)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_spectral_loss_sees_missing_fine_texture_and_pulls_g_towards_it():
    white = torch.randn(8, 1, 64, 64, generator=_rng(0))
    profile = radial_log_power(white)
    assert profile.shape == (8, 32)
    assert torch.allclose(profile[:, 4:].mean(0), torch.zeros(28), atol=0.25)  # white noise: flat, power 1
    blurred = nn.functional.avg_pool2d(white, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert (radial_log_power(blurred)[:, 24:] < profile[:, 24:] - 1.0).all()  # less power at high frequencies
    assert spectral_loss(white, white).item() == 0.0
    fake = blurred.clone().requires_grad_(True)
    loss = spectral_loss(fake, white)
    loss.backward()
    assert loss.item() > 0.5 and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    stepped = (fake - 0.5 * fake.grad / fake.grad.abs().max()).detach()
    assert spectral_loss(stepped, white) < loss  # one gradient step moves the spectrum towards the real one
    with pytest.raises(ValueError, match="square"):
        radial_log_power(torch.zeros(1, 1, 32, 16))
    with pytest.raises(ValueError, match="square"):
        radial_log_power(torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match="single-channel"):
        radial_log_power(torch.zeros(1, 2, 32, 32))
    for name in ("spectral_loss_weight", "spectral_d_weight", "r1_gamma"):
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
                TrainConfig(**{name: bad})


def test_spectral_discriminator_sees_only_the_power_spectrum():
    d_spec = SpectralDiscriminator(32, rng=_rng(0))
    images = torch.randn(3, 1, 32, 32, generator=_rng(1))
    logits = d_spec(images)
    assert logits.shape == (3,)
    shifted = torch.roll(images, shifts=(5, -3), dims=(2, 3))  # same power spectrum, other image
    torch.testing.assert_close(d_spec(shifted), logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(d_spec(images * 3.0), logits)  # more power: another verdict
    again = SpectralDiscriminator(32, rng=_rng(0))
    assert all(torch.equal(a, b) for a, b in zip(d_spec.parameters(), again.parameters(), strict=True))


def test_resuming_with_a_changed_spectral_option_says_so(toy_store, tmp_path):
    cfg = TrainConfig(max_iterations=2, checkpoint_every=2, seed=0, **TINY)
    train_dcgan(toy_store, tmp_path / "run", cfg)
    more = TrainConfig(**{**cfg.__dict__, "max_iterations": 4, "spectral_d_weight": 1.0})
    with pytest.warns(UserWarning, match=r"changed settings \['spectral_d_weight'\] \(the spectral discriminator "
                                         r"starts afresh"):
        train_dcgan(toy_store, tmp_path / "run", more)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    del state["config"]["spectral_loss_weight"]  # a checkpoint written before the option existed
    torch.save(state, tmp_path / "run" / "checkpoints" / "last.pt")
    again = TrainConfig(**{**more.__dict__, "max_iterations": 6, "spectral_loss_weight": 2.0})
    with pytest.warns(UserWarning, match=r"changed settings \['spectral_loss_weight'\]"):
        train_dcgan(toy_store, tmp_path / "run", again)


def test_deviation_list_names_every_option_with_its_source():
    text = " | ".join(deviations_from_paper(TrainConfig(**ALL_OPTIONS)))
    assert not any("channels" in d for d in deviations_from_paper(TrainConfig(channels_last=True)))
    assert "Jung & Keuper 2021" in " | ".join(deviations_from_paper(TrainConfig(spectral_d_weight=1.0)))
    assert "Durall et al. 2020" in " | ".join(deviations_from_paper(TrainConfig(spectral_loss_weight=1.0)))
    assert "Karras et al. 2019" in " | ".join(deviations_from_paper(TrainConfig(noise_injection=True)))
    for source in ("Odena et al. 2016", "Miyato et al. 2018", "Zhao et al. 2020", "Karras et al. 2018",
                   "Mescheder et al. 2018", "Heusel et al. 2017"):
        assert source in text
