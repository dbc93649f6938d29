"""DCGAN training (mammo_lib.generate.training): learning, resume after SIGKILL, DDP, stops, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mammo_lib.generate.files import LOG_COLUMNS, read_loss_log
from mammo_lib.generate.model import (
    Architecture,
    CheckpointError,
    Discriminator,
    load_checkpoint,
    uint8_to_model,
)
from mammo_lib.generate.training import TrainConfig, TrainingDivergedError, train_dcgan
from mammo_lib.patch_store import PatchStoreError, write_patch_store
from mammo_lib.testing import write_toy_lesion_store

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TINY = dict(batch_size=8, latent_dim=16, ngf=8, ndf=8, num_threads=1, progress=False, sample_every=1000)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return write_toy_lesion_store(tmp_path_factory.mktemp("store") / "lesion.zarr", n=64, size=32, seed=0)


def _subprocess_env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _train_cmd(store, out, iterations, extra=()):
    return [sys.executable, "-m", "mammo_lib.generate.training", "--store", str(store), "--out-dir", str(out),
            "--max-iterations", str(iterations), "--batch-size", "8", "--latent-dim", "16", "--ngf", "8",
            "--ndf", "8", "--checkpoint-every", "25", "--sample-every", "1000", "--num-threads", "1",
            "--instance-noise", "0.1", "--no-progress", *extra]


def test_short_training_lowers_discriminator_loss(toy_store, tmp_path):
    from mammo_lib.patch_store import open_patch_store

    real = uint8_to_model(torch.from_numpy(open_patch_store(toy_store).load(range(16))))
    arch = Architecture(image_size=32, latent_dim=16, ngf=8, ndf=8)

    def d_loss(state_dict=None):
        torch.manual_seed(0)
        discriminator = Discriminator(arch)
        if state_dict is not None:
            discriminator.load_state_dict(state_dict)
        with torch.no_grad():
            return torch.nn.functional.binary_cross_entropy_with_logits(
                discriminator(real), torch.ones(len(real))).item()

    result = train_dcgan(toy_store, tmp_path / "dcgan", TrainConfig(max_iterations=25, seed=0, **TINY))
    assert result.stopped == "finished" and result.iterations_done == 25
    after = d_loss(load_checkpoint(result.checkpoint)["discriminator"])
    assert after < 0.5 * d_loss()
    log = read_loss_log(result.loss_log)
    assert list(log.columns) == list(LOG_COLUMNS) and list(log["iteration"]) == list(range(1, 26))
    assert log["loss_D"].iloc[-5:].mean() < log["loss_D"].iloc[:3].mean()
    assert (result.samples_dir / "iter_000000.png").exists() and (result.samples_dir / "iter_000025.npy").exists()


def test_resume_after_sigkill_is_bit_identical(toy_store, tmp_path):
    total = 120
    reference = train_dcgan(toy_store, tmp_path / "reference",
                            TrainConfig(max_iterations=total, checkpoint_every=25, seed=0, instance_noise=0.1, **TINY))
    out = tmp_path / "killed"
    log_path = out / "loss_log.csv"
    proc = subprocess.Popen(_train_cmd(toy_store, out, total, ["--no-resume"]), env=_subprocess_env(), cwd=REPO)
    deadline = time.time() + 120
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        if log_path.exists():
            rows = log_path.read_text().count("\n") - 1
            if rows >= 60:
                break
        time.sleep(0.005)
    assert proc.poll() is None, "the training subprocess finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(out / "checkpoints" / "last.pt")["iteration"]
    assert 50 <= killed_at < total

    resumed = subprocess.run(_train_cmd(toy_store, out, total), env=_subprocess_env(), cwd=REPO,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    mine, ref = load_checkpoint(out / "checkpoints" / "last.pt"), load_checkpoint(reference.checkpoint)
    assert mine["iteration"] == ref["iteration"] == total
    for key in ("generator", "discriminator"):
        for name, tensor in ref[key].items():
            assert torch.equal(mine[key][name], tensor), f"{key}.{name} differs after resume"
    for key in ("opt_g", "opt_d"):
        for pid, st in ref[key]["state"].items():
            assert torch.equal(mine[key]["state"][pid]["exp_avg"], st["exp_avg"])
    # the log was cut back to the checkpoint and continued: one row per iteration, same values
    log_mine, log_ref = read_loss_log(log_path), read_loss_log(reference.loss_log)
    assert list(log_mine["iteration"]) == list(range(1, total + 1))
    cols = ["loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2"]
    np.testing.assert_array_equal(log_mine[cols].to_numpy(), log_ref[cols].to_numpy())


def test_ddp_two_gloo_processes_write_one_checkpoint(toy_store, tmp_path):
    out = tmp_path / "ddp"
    torchrun = VENV_BIN / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "mammo_lib.generate.training",
           "--store", str(toy_store), "--out-dir", str(out), "--max-iterations", "6", "--batch-size", "8",
           "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--checkpoint-every", "3", "--sample-every", "3",
           "--num-threads", "1", "--no-progress", "--device", "cpu"]
    done = subprocess.run(cmd, env=_subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["iteration"] == 6
    assert state["iters_per_epoch"] == 64 // 2 // 8
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt", "previous.pt"]
    log = read_loss_log(out / "loss_log.csv")
    assert list(log["iteration"]) == list(range(1, 7))  # rank 0 only: no duplicate rows


def test_time_budget_stops_at_checkpoint_and_resume_finishes(toy_store, tmp_path):
    cfg = TrainConfig(max_iterations=12, checkpoint_every=100, seed=0, time_budget_s=0.0, **TINY)
    first = train_dcgan(toy_store, tmp_path, cfg)
    assert first.stopped == "time_budget" and first.iterations_done == 1
    assert load_checkpoint(first.checkpoint)["iteration"] == 1
    cfg.time_budget_s = None
    second = train_dcgan(toy_store, tmp_path, cfg)
    assert (second.start_iteration, second.iterations_done, second.stopped) == (1, 12, "finished")
    third = train_dcgan(toy_store, tmp_path, cfg)
    assert third.stopped == "already_done"


def test_resume_to_another_length_says_it_is_not_a_replay_when_the_noise_anneals(toy_store, tmp_path):
    """Instance noise anneals over the whole length: another length is another schedule. Without
    it a longer resume replays a longer run exactly (test_dcgan_extras), and nothing is said."""
    cfg = TrainConfig(max_iterations=6, checkpoint_every=100, seed=0, instance_noise=0.3, **TINY)
    train_dcgan(toy_store, tmp_path / "noisy", cfg)
    cfg.max_iterations = 9
    with pytest.warns(UserWarning, match=r"total iterations 6 -> 9 \(the instance noise anneals.*not a replay"):
        result = train_dcgan(toy_store, tmp_path / "noisy", cfg)
    assert (result.start_iteration, result.iterations_done) == (6, 9)
    quiet = TrainConfig(max_iterations=6, checkpoint_every=100, seed=0, **TINY)
    train_dcgan(toy_store, tmp_path / "quiet", quiet)
    quiet.max_iterations = 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_dcgan(toy_store, tmp_path / "quiet", quiet)


def test_corrupt_last_checkpoint_falls_back_to_previous(toy_store, tmp_path):
    cfg = TrainConfig(max_iterations=10, checkpoint_every=4, seed=0, **TINY)
    train_dcgan(toy_store, tmp_path, cfg)  # checkpoints at 4, 8, 10 -> previous = 8
    ckpts = tmp_path / "checkpoints"
    previous_bytes = (ckpts / "previous.pt").read_bytes()
    (ckpts / "last.pt").write_bytes(b"garbage, as after a disk error")
    cfg.max_iterations = 12
    with pytest.warns(UserWarning, match="previous"):
        result = train_dcgan(toy_store, tmp_path, cfg)
    assert result.start_iteration == 8 and result.iterations_done == 12
    assert list(read_loss_log(result.loss_log)["iteration"]) == list(range(1, 13))
    assert previous_bytes  # the good one was read, not destroyed
    # both unusable: a clear error, nothing overwritten silently
    (ckpts / "last.pt").write_bytes(b"x")
    (ckpts / "previous.pt").write_bytes(b"y")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="resume=False"):
        train_dcgan(toy_store, tmp_path, cfg)


def test_resume_with_other_architecture_is_an_error(toy_store, tmp_path):
    train_dcgan(toy_store, tmp_path, TrainConfig(max_iterations=2, seed=0, **TINY))
    other = dict(TINY, latent_dim=32)
    with pytest.raises(CheckpointError, match="latent_dim: 16 \\(checkpoint\\) vs 32"):
        train_dcgan(toy_store, tmp_path, TrainConfig(max_iterations=4, seed=0, **other))
    fresh = train_dcgan(toy_store, tmp_path, TrainConfig(max_iterations=2, seed=0, **other), resume=False)
    assert fresh.iterations_done == 2


def test_nan_and_collapse_stop_with_a_message(toy_store, tmp_path):
    with pytest.raises(TrainingDivergedError, match="NaN"):
        train_dcgan(toy_store, tmp_path / "nan", TrainConfig(max_iterations=20, lr_d=1e38, lr_g=1e38, **TINY))
    with pytest.raises(TrainingDivergedError, match="discriminator collapsed"):
        train_dcgan(toy_store, tmp_path / "collapse",
                    TrainConfig(max_iterations=20, collapse_threshold=1.0, collapse_patience=3, **TINY))


def test_bad_input(toy_store, tmp_path):
    with pytest.raises(PatchStoreError, match="does not exist"):
        train_dcgan(tmp_path / "missing.zarr", tmp_path / "out", TrainConfig(**TINY))
    empty = pd.DataFrame(columns=["patch_id", "group", "source_kind", "image_id", "lesion_id", "lesion_class",
                                  "center_row", "center_col", "normalisation", "checksum"])
    write_patch_store(tmp_path / "empty.zarr", np.zeros((0, 32, 32), np.uint8), empty)
    with pytest.raises(PatchStoreError, match="empty"):
        train_dcgan(tmp_path / "empty.zarr", tmp_path / "out", TrainConfig(**TINY))
    with pytest.raises(ValueError, match="batch_size=100 is larger than the data.*64 patches.*batch_size <= 64"):
        train_dcgan(toy_store, tmp_path / "out", TrainConfig(**dict(TINY, batch_size=100)))
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=0.7)


def test_resume_on_changed_patches_starts_afresh(toy_store, tmp_path):
    first = train_dcgan(toy_store, tmp_path / "out", TrainConfig(max_iterations=3, seed=0, **TINY))
    assert first.stopped == "finished"
    other_store = write_toy_lesion_store(tmp_path / "other.zarr", n=64, size=32, seed=1)
    with pytest.warns(UserWarning, match="trained on other patches"):
        again = train_dcgan(other_store, tmp_path / "out", TrainConfig(max_iterations=3, seed=0, **TINY))
    assert (again.start_iteration, again.iterations_done, again.stopped) == (0, 3, "finished")


def test_lesion_classes_filter_training_data_fingerprint_and_cli(toy_store, tmp_path):
    from mammo_lib.generate.files import load_training_patches, training_data_fingerprint
    from mammo_lib.generate.synthesis import generate_synthetic_patches
    from mammo_lib.generate.training import _parse_args
    from mammo_lib.patch_store import open_patch_store
    from mammo_lib.sources.lesion_classes import LesionClassError

    store = open_patch_store(toy_store)  # toy store: alternately mass and calcification
    mass_rows = np.flatnonzero(store.manifest["lesion_class"] == "mass")
    assert 0 < len(mass_rows) < len(store)
    only_mass = load_training_patches(toy_store, ["mass"]).numpy()
    np.testing.assert_array_equal(only_mass, store.load(mass_rows))
    assert training_data_fingerprint(toy_store, ["mass"]) != training_data_fingerprint(toy_store)
    with pytest.raises(LesionClassError, match=r"'masses'.*mass: 32, calcification: 32"):
        load_training_patches(toy_store, ["masses"])
    with pytest.raises(LesionClassError, match=r"leaves 0 patches in patch store .*lesion.zarr.*mass: 32"):
        load_training_patches(toy_store, ["asymmetry"])

    result = train_dcgan(toy_store, tmp_path / "out",
                         TrainConfig(max_iterations=2, lesion_classes=["mass"], **TINY))
    assert result.n_patches == len(mass_rows)
    state = load_checkpoint(result.checkpoint)
    assert state["config"]["lesion_classes"] == ["mass"] and state["lesion_classes"] == ["mass"]
    assert state["data_fingerprint"] == training_data_fingerprint(toy_store, ["mass"])
    synthetic = open_patch_store(generate_synthetic_patches(result.checkpoint, 4, 0, tmp_path / "syn.zarr"))
    assert synthetic.attrs["trained_on_lesion_classes"] == ["mass"]
    assert set(synthetic.manifest["trained_on_lesion_classes"]) == {"mass"}

    args, cfg = _parse_args(["--store", "s", "--out-dir", "o", "--lesion-classes", "mass", "calcification"])
    assert cfg.lesion_classes == ["calcification", "mass"]
    assert _parse_args(["--run-dir", "r"])[1].lesion_classes is None
