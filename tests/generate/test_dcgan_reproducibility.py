"""Stage 02 randomness, records and reruns: keyed random streams, no global state, byte-identical
outputs apart from timings.json, synthetic ids from G's weights, the typed command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mammo_lib.generate.config import TrainConfig, deviations_from_paper, training_plan_markdown
from mammo_lib.generate.figures import tile_patches
from mammo_lib.generate.files import LOG_COLUMNS, dcgan_paths
from mammo_lib.generate.model import load_checkpoint
from mammo_lib.generate.streams import epoch_order, stream_seed, torch_stream
from mammo_lib.generate.synthesis import generate_synthetic_patches, generator_digest
from mammo_lib.generate.training import _parse_args, train_dcgan
from mammo_lib.patch_store import open_patch_store
from mammo_lib.testing import write_toy_lesion_store

TINY = dict(batch_size=8, latent_dim=16, ngf=8, ndf=8, num_threads=1, progress=False, sample_every=3,
            checkpoint_every=3, instance_noise=0.1)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return write_toy_lesion_store(tmp_path_factory.mktemp("store") / "lesion.zarr", n=64, size=32, seed=0)


def test_streams_are_keyed_and_do_not_collide():
    # the old rule seed*1_000_003 + rank*7_919 + it made rank 1 / it 0 equal rank 0 / it 7,919
    assert stream_seed(0, "latent", 1, 0) != stream_seed(0, "latent", 0, 7_919)
    assert stream_seed(1, "latent", 0, 0) != stream_seed(0, "latent", 0, 1_000_003)
    seeds = {stream_seed(s, p, r, i) for s in range(2) for p in ("latent", "augment") for r in range(3)
             for i in range(50)}
    assert len(seeds) == 2 * 2 * 3 * 50
    assert stream_seed(5, "init") == stream_seed(5, "init") < 2**63
    a = torch.randn(4, generator=torch_stream(3, "latent", 0, 9))
    assert torch.equal(a, torch.randn(4, generator=torch_stream(3, "latent", 0, 9)))
    with pytest.raises(ValueError, match="unknown random stream purpose 'lattent'"):
        stream_seed(0, "lattent")
    with pytest.raises(ValueError, match=">= 0"):
        stream_seed(-1, "init")


def test_epoch_order_shards_are_disjoint_and_epochs_differ():
    shards = [epoch_order(50, seed=0, epoch=3, world_size=3, rank=r) for r in range(3)]
    assert all(len(s) == 16 for s in shards)
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == 48 and set(flat) <= set(range(50))
    assert epoch_order(50, 0, 3) != epoch_order(50, 0, 4)
    assert epoch_order(50, 0, 3) == epoch_order(50, 0, 3)
    with pytest.raises(ValueError, match="rank"):
        epoch_order(50, 0, 0, world_size=2, rank=2)


def test_training_ignores_global_rng_and_restores_threads(toy_store, tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(123)
    np.random.seed(1)
    first = train_dcgan(toy_store, tmp_path / "a", TrainConfig(max_iterations=4, seed=2, **TINY))  # 1 thread
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    torch.manual_seed(456)
    np.random.seed(2)
    second = train_dcgan(toy_store, tmp_path / "b", TrainConfig(max_iterations=4, seed=2, **TINY))
    a, b = load_checkpoint(first.checkpoint), load_checkpoint(second.checkpoint)
    for name, tensor in a["generator"].items():
        assert torch.equal(tensor, b["generator"][name]), name
    assert "rng" not in a and a["random_streams"]["seed"] == 2
    third = train_dcgan(toy_store, tmp_path / "c", TrainConfig(max_iterations=4, seed=3, **TINY))
    assert generator_digest(load_checkpoint(third.checkpoint)["generator"]) != generator_digest(a["generator"])


def _stage_files(run_dir):
    return sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file())


def test_rerun_is_byte_identical_except_timings(toy_store, tmp_path):
    runs = []
    for name in ("one", "two"):
        run_dir = tmp_path / name
        result = train_dcgan(toy_store, run_dir / "dcgan", TrainConfig(max_iterations=7, seed=0, **TINY))
        generate_synthetic_patches(result.checkpoint, n=6, seed=0, out_store=run_dir / "synthetic" / "synthetic.zarr",
                                   device="cpu")
        runs.append(run_dir)
    files = _stage_files(runs[0])
    assert files == _stage_files(runs[1])
    differing = [str(f) for f in files if (runs[0] / f).read_bytes() != (runs[1] / f).read_bytes()]
    assert differing == ["dcgan/timings.json"]
    summary = json.loads((runs[0] / "dcgan" / "training_summary.json").read_text())
    assert summary["checkpoint"] == "dcgan/checkpoints/last.pt" and summary["store"] == str(toy_store)
    assert "seconds" not in summary and "images_per_s" not in summary
    timings = json.loads((runs[0] / "dcgan" / "timings.json").read_text())
    assert [(c["start_iteration"], c["end_iteration"]) for c in timings["calls"]] == [(0, 7)]
    assert timings["calls"][0]["seconds"] > 0 and timings["total_seconds"] == timings["calls"][0]["seconds"]
    header = (runs[0] / "dcgan" / "loss_log.csv").read_text().splitlines()[0]
    assert header == ",".join(LOG_COLUMNS) and "elapsed" not in header
    store = open_patch_store(runs[0] / "synthetic" / "synthetic.zarr")
    weights = generator_digest(load_checkpoint(runs[0] / "dcgan" / "checkpoints" / "last.pt")["generator"])
    assert set(store.manifest["generator_sha256"]) == {weights}
    assert store.manifest["patch_id"].str.startswith(f"dcgan-{weights[:8]}-s0-").all()
    assert store.attrs["checkpoint"] == "dcgan/checkpoints/last.pt"


def test_resume_appends_timings_and_fresh_start_resets_them(toy_store, tmp_path):
    out = tmp_path / "dcgan"
    train_dcgan(toy_store, out, TrainConfig(max_iterations=3, seed=0, **TINY))
    train_dcgan(toy_store, out, TrainConfig(max_iterations=6, seed=0, **TINY))
    calls = json.loads(dcgan_paths(out)["timings"].read_text())["calls"]
    assert [(c["start_iteration"], c["end_iteration"], c["stopped"]) for c in calls] == [(0, 3, "finished"),
                                                                                      (3, 6, "finished")]
    train_dcgan(toy_store, out, TrainConfig(max_iterations=2, seed=0, **TINY), resume=False)
    calls = json.loads(dcgan_paths(out)["timings"].read_text())["calls"]
    assert [(c["start_iteration"], c["end_iteration"]) for c in calls] == [(0, 2)]


def test_plain_progress_lines_have_no_times(toy_store, tmp_path, capsys):
    train_dcgan(toy_store, tmp_path, TrainConfig(max_iterations=20, seed=0, **dict(TINY, progress=True)))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("DCGAN iteration 1/20: loss_D ") and lines[-1].startswith("DCGAN iteration 20/20")
    assert len(lines) == 11 and not any("it/s" in line or "s/it" in line for line in lines)


def test_cli_is_built_from_type_hints():
    args, cfg = _parse_args(["--run-dir", "r", "--no-progress", "--time-budget-s", "none", "--max-iterations",
                             "7", "--lr-d", "4e-4", "--lesion-classes", "mass"])
    assert (cfg.progress, cfg.time_budget_s, cfg.max_iterations, cfg.lr_d, cfg.lesion_classes) == (
        False, None, 7, 4e-4, ["mass"])
    assert _parse_args(["--run-dir", "r", "--progress"])[1].progress is True
    assert _parse_args(["--run-dir", "r", "--num-threads", "2"])[1].num_threads == 2
    with pytest.raises(SystemExit):
        _parse_args(["--run-dir", "r", "--max-iterations", "seven"])
    assert _parse_args(["--run-dir", "r", "--noise-injection", "--spectral-d-weight", "3"])[1].spectral_d_weight == 3.0


def test_cli_reports_a_value_out_of_range_as_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        _parse_args(["--run-dir", "r", "--spectral-d-weight", "-1"])
    assert stop.value.code == 2
    assert "error: spectral_d_weight must be a finite number >= 0 (0: off), got -1.0" in capsys.readouterr().err


def test_deviations_and_plan_are_generated_from_the_settings():
    assert deviations_from_paper(TrainConfig()) == []
    assert "no deviation" in training_plan_markdown(TrainConfig(), 640, 128)
    cfg = TrainConfig(max_iterations=1200, batch_size=16, ngf=16, ndf=16, label_smoothing=0.1,
                      instance_noise=0.3, time_budget_s=900)
    devs = deviations_from_paper(cfg)
    assert any("batches of 16 (paper: 64)" in d for d in devs) and any("0.9" in d for d in devs)
    text = training_plan_markdown(cfg, 320, 128)
    assert "1,200 iterations" in text and "60.0 passes" in text and "900 s" in text
    assert "instance noise" in text


def test_tile_patches_uses_one_grid_layout():
    patches = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    grid = tile_patches(patches, ncols=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[1:5, 6:10], patches[1])
    np.testing.assert_array_equal(grid[6:10, 6:10], patches[4])
    assert (grid[6:10, 11:15] == 255).all() and (grid[0] == 255).all()  # the empty sixth place, borders
    with pytest.raises(ValueError, match="non-empty"):
        tile_patches(np.zeros((0, 4, 4), np.uint8))


def test_paper_profile_builds_the_papers_dcgan():
    from mammo_lib.generate.model import Architecture, Generator
    from mammo_lib.study.runner import NOTEBOOK_DIR, profile_parameters

    paper = profile_parameters(NOTEBOOK_DIR / "02_train_dcgan.ipynb", "paper")
    cfg = TrainConfig(**{k: v for k, v in paper.items() if k in TrainConfig.__dataclass_fields__})
    assert deviations_from_paper(cfg) == []
    assert (cfg.latent_dim, cfg.batch_size, cfg.ngf, cfg.ndf, cfg.upsampling) == (200, 64, 64, 64, "transposed")
    generator = Generator(Architecture(image_size=128, latent_dim=cfg.latent_dim, ngf=cfg.ngf, upsampling=cfg.upsampling))
    convs = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 6 and all(m.kernel_size == (4, 4) for m in convs)
    default = profile_parameters(NOTEBOOK_DIR / "02_train_dcgan.ipynb", "default")
    assert "resize-convolution" in " ".join(deviations_from_paper(
        TrainConfig(**{k: v for k, v in default.items() if k in TrainConfig.__dataclass_fields__})))
