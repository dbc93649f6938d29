"""A run folder you can trust: stages own their outputs, partial reruns inherit the recorded
settings, staleness is computed from digests, one run per folder, Ctrl-C ends in one line.

Real runner, real papermill and kernels, real processes; the notebooks are tiny stand-ins that
carry the study's stage names (so the stages' declared inputs and outputs apply) and read and
write the same paths as the real stages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import parameters_notebook

from mammo_lib import run_lock
from mammo_lib.study.runner import StudyError, run_study
from mammo_lib.study.verify import VerifyError, verify_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def study(tmp_path):
    """Three stages with the study's names: 01 writes a 'store' per seed, 02 reads it and writes
    synthetic/, 03 reads both."""
    d = tmp_path / "notebooks"
    (d / "params").mkdir(parents=True)
    parameters_notebook(d / "01_extract_patches.ipynb",
              'run_dir = "x"\nseed = 0  # [0, 4294967295] the seed\ncount = 2  # [1, 100] images\n'
              'pause_s = 0.0  # [0, inf) seconds to wait',
              "import time\nfrom pathlib import Path\ntime.sleep(pause_s)\n"
              "store = Path(run_dir, 'patches', 'lesion.zarr')\nstore.mkdir(parents=True, exist_ok=True)\n"
              "for i in range(count):\n    Path(store, f'seed{seed}-{i}.txt').write_text(str(seed * 10 + i))")
    parameters_notebook(d / "02_train_dcgan.ipynb",
              'run_dir = "x"\nseed = 0  # [0, 4294967295] the seed\nfactor = 2  # [1, 100] a factor\n'
              'generators = [{"name": "dcgan", "kind": "dcgan"}]\ntrain_s = 0.0  # [0, inf) seconds to wait',
              "import time\nfrom pathlib import Path\nend = time.monotonic() + train_s\n"
              "while time.monotonic() < end:  # busy, as training is\n    sum(i * i for i in range(10000))\n"
              "total = sum(int(p.read_text()) for p in Path(run_dir, 'patches', 'lesion.zarr').glob('*.txt'))\n"
              "Path(run_dir, 'synthetic').mkdir(exist_ok=True)\n"
              "Path(run_dir, 'synthetic', 'total.txt').write_text(str(total * factor + seed))\n"
              "last = Path(run_dir, 'dcgan', 'checkpoints', 'last.pt')\n"
              "Path(run_dir, 'synthetic', 'resumed.txt').write_text(str(last.exists()))\n"
              "last.parent.mkdir(parents=True, exist_ok=True)\nlast.write_text(str(seed))")
    parameters_notebook(d / "03_feature_space.ipynb",
              'run_dir = "x"\nseed = 0  # [0, 4294967295] the seed\nn_per_group = 5  # [1, inf) patches per group',
              "from pathlib import Path\nPath(run_dir, 'feature_space').mkdir(exist_ok=True)\n"
              "Path(run_dir, 'feature_space', 'metric.txt').write_text("
              "Path(run_dir, 'synthetic', 'total.txt').read_text() + f' n={n_per_group}')")
    for stem in ("01_extract_patches", "02_train_dcgan", "03_feature_space"):
        (d / "params" / f"{stem}.json").write_text(json.dumps({"smoke": {}, "default": {}, "paper": {}}))
    return {"notebooks": d, "runs": tmp_path / "runs"}


def _run(study, name="r", **kw):
    kw.setdefault("log", lambda s: None)
    kw.setdefault("report", False)
    return run_study(name=name, runs_root=study["runs"], notebook_dir=study["notebooks"], **kw)


def _record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _entry(run: Path, stem: str) -> dict:
    return next(e for e in _record(run)["notebooks"] if e["notebook"].startswith(stem))


def test_a_rerun_replaces_the_stage_outputs_instead_of_mixing_two_runs(study):
    run = _run(study, seed=1, only=["01"])
    run = _run(study, seed=2, only=["01"])
    assert sorted(p.name for p in (run / "patches" / "lesion.zarr").iterdir()) == ["seed2-0.txt", "seed2-1.txt"]
    assert _entry(run, "01")["settings"]["seed"] == 2


def test_dcgan_checkpoints_are_resumed_only_by_a_rerun_with_the_same_values(study):
    run = _run(study, seed=1)
    assert (run / "synthetic" / "resumed.txt").read_text() == "False"
    _run(study, only=["02"])  # same values (inherited): what stage 02 left is resumed
    assert (run / "synthetic" / "resumed.txt").read_text() == "True"
    _run(study, only=["02"], seed=4)  # another seed: a fresh start, nothing of the seed-1 DCGAN kept
    assert (run / "synthetic" / "resumed.txt").read_text() == "False"
    assert (run / "dcgan" / "checkpoints" / "last.pt").read_text() == "4"


def test_a_partial_rerun_inherits_the_recorded_settings_and_new_ones_merge(study):
    run = _run(study, profile="smoke", seed=1, overrides={"factor": "5"})
    lines = []
    _run(study, start_from="03", log=lines.append)  # no settings given: as recorded
    record = _record(run)
    assert record["profile"] == "smoke" and record["seed"] == 1 and record["overrides"] == {"factor": 5}
    assert _entry(run, "03")["settings"] == {"profile": "smoke", "seed": 1, "overrides": {}}  # 03 has no factor
    assert "seed=1" in lines[0]
    assert [g["stages"] for g in _record(run)["settings"]] == [
        ["01_extract_patches", "02_train_dcgan", "03_feature_space"]]  # one command could run them all
    # a parameter only stage 02 declares is accepted on a rerun of 03, with a warning, and ignored
    _run(study, only=["03"], overrides={"n_per_group": "7", "factor": "6"}, log=lines.append)
    assert any("-p factor: ignored" in line and "02_train_dcgan" in line for line in lines)
    assert (run / "feature_space" / "metric.txt").read_text().endswith("n=7")
    assert _entry(run, "03")["settings"]["overrides"] == {"n_per_group": 7}  # only what it declares
    assert _entry(run, "02")["settings"]["overrides"] == {"factor": 5}  # not rerun: unchanged
    groups = _record(run)["settings"]  # still one command's worth: 01 and 02 have no n_per_group
    assert len(groups) == 1 and groups[0]["overrides"] == {"factor": 5, "n_per_group": 7}
    _run(study, only=["02"], overrides={"factor": "2"})  # -p factor=2 -p n_per_group=7 makes 02 and 03
    assert [g["overrides"] for g in _record(run)["settings"]] == [{"factor": 2, "n_per_group": 7}]
    _run(study, only=["01"], overrides={"count": "3"})  # only 01 declares count: still one command
    assert [g["overrides"] for g in _record(run)["settings"]] == [{"count": 3, "factor": 2, "n_per_group": 7}]
    _run(study, only=["02"], seed=5)  # another seed: three commands
    assert [(g["stages"][0][:2], g["seed"]) for g in _record(run)["settings"]] == [("01", 1), ("02", 5), ("03", 1)]


def test_staleness_is_computed_from_digests_and_stale_reruns_exactly_those(study):
    run = _run(study, seed=1)
    assert _record(run)["stale_stages"] == []
    _run(study, only=["01"])  # same settings, same bytes: nothing downstream is stale
    assert _record(run)["stale_stages"] == []
    _run(study, only=["01"], overrides={"count": "3"})  # new data
    record = _record(run)
    assert record["stale_stages"] == ["02_train_dcgan", "03_feature_space"]
    assert _entry(run, "02")["stale_because"] == ["patches/lesion.zarr changed since this stage ran"]
    lines = []
    _run(study, stale=True, log=lines.append)
    assert any("01_extract_patches up to date" in line for line in lines)
    assert any(line.startswith("[2/3] 02_train_dcgan: stale") for line in lines)
    assert any(line.startswith("[3/3] 03_feature_space: stale") for line in lines)
    record = _record(run)
    assert record["stale_stages"] == [] and all(e["status"] == "ok" for e in record["notebooks"])
    assert (run / "synthetic" / "total.txt").read_text() == str((10 + 11 + 12) * 2 + 1)
    lines.clear()
    _run(study, stale=True, log=lines.append)  # nothing left to do
    assert sum("up to date" in line for line in lines) == 3


def test_a_file_changed_by_hand_marks_its_stage_modified_and_stale_reruns_it(study):
    run = _run(study, seed=1)
    assert _record(run)["up_to_date"] is True and _record(run)["not_up_to_date"] == {}
    (run / "patches" / "lesion.zarr" / "seed1-0.txt").write_text("99")
    record = _record(_run(study, only=["03"]))  # any later command refreshes the record
    assert record["up_to_date"] is False
    assert record["not_up_to_date"] == {"01_extract_patches": "modified", "02_train_dcgan": "stale",
                                        "03_feature_space": "stale"}  # 03 reads what 01 wrote, then changed
    assert _entry(run, "01")["modified_after"] == ["patches changed after this stage wrote it"]
    lines = []
    _run(study, stale=True, log=lines.append)
    assert any(line.startswith("[1/3] 01_extract_patches: modified") for line in lines)
    assert (run / "patches" / "lesion.zarr" / "seed1-0.txt").read_text() == "10"
    assert _record(run)["up_to_date"] is True


def test_a_stage_that_never_ran_keeps_the_folder_from_being_up_to_date(study):
    run = _run(study, seed=1, only=["01"])
    record = _record(run)
    assert record["up_to_date"] is False
    assert record["not_up_to_date"] == {"02_train_dcgan": "not run", "03_feature_space": "not run"}


def test_the_report_box_names_stale_stages(study):
    run = _run(study, seed=1, report=True)
    assert "All 3 stages are up to date" in (run / "report" / "index.html").read_text()
    _run(study, only=["02"], seed=4, report=True)
    page = (run / "report" / "index.html").read_text()
    assert "Stage 03_feature_space is STALE" in page and "synthetic changed since this stage ran" in page
    assert "--stale" in page and "they ran with different settings" in page


def test_verify_replays_each_stage_with_its_own_settings(study):
    run = _run(study, seed=1)
    _run(study, only=["02"], overrides={"factor": "3"})
    with pytest.raises(VerifyError, match="03_feature_space.ipynb: stale"):
        verify_run(run, log=lambda s: None, notebook_dir=study["notebooks"])
    _run(study, stale=True)
    result = verify_run(run, log=lambda s: None, notebook_dir=study["notebooks"])
    assert result["identical"], result
    verified = study["runs"] / "r-verify"
    assert (verified / "run.json").read_bytes() == (run / "run.json").read_bytes()


def test_values_out_of_range_and_bad_seeds_are_refused_before_anything_is_written(study):
    with pytest.raises(StudyError, match=r"count must be an integer in \[1, 100\]"):
        _run(study, name="bad", overrides={"count": "-5"})
    with pytest.raises(StudyError, match=r"--seed -1: the seed must be an integer in \[0, 4294967295\]"):
        _run(study, name="bad", seed=-1)
    with pytest.raises(StudyError, match=r"-p seed=-3: the seed must be"):
        _run(study, name="bad", overrides={"seed": "-3"})
    with pytest.raises(StudyError, match=r"generators\[0\].*kind"):
        _run(study, name="bad", overrides={"generators": '[{"name": "x", "kind": "gan"}]'})
    with pytest.raises(StudyError, match="no notebook of the study declares"):
        _run(study, name="bad", overrides={"cont": "3"})
    assert not (study["runs"] / "bad").exists()


def _runner(study, name, *args):
    """A real runner process in a session of its own (as a terminal would start it)."""
    cmd = [sys.executable, "-m", "mammo_lib.study.runner", "--name", name, "--runs-root", str(study["runs"]),
           "--notebooks", str(study["notebooks"]), "--no-report", *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(predicate, seconds=60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _stage_running(run: Path, stem: str) -> bool:
    try:
        return _entry(run, stem)["status"] == "running"
    except (OSError, ValueError, StopIteration):
        return False


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_holder(study):
    first = _runner(study, "busy", "-p", "pause_s=4")
    run = study["runs"] / "busy"
    try:
        assert _wait_for(lambda: _stage_running(run, "01"))
        with pytest.raises(run_lock.RunFolderBusy, match=f"PID {first.pid} on {socket.gethostname()}"):
            _run(study, name="busy", seed=7)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert sorted(p.name for p in (run / "patches" / "lesion.zarr").iterdir()) == ["seed0-0.txt", "seed0-1.txt"]
    assert _record(run)["seed"] == 0 and not (run / run_lock.LOCK_NAME).exists()


def test_a_dead_holders_lock_is_taken_over_with_a_warning(study):
    run = study["runs"] / "dead"
    run.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / run_lock.LOCK_NAME).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(),
                                                      "started": "2026-01-01T00:00:00+00:00", "command": "killed"}))
    with pytest.warns(UserWarning, match="no longer exists"):
        _run(study, name="dead", only=["01"])
    assert _entry(run, "01")["status"] == "ok" and not (run / run_lock.LOCK_NAME).exists()


def test_ctrl_c_ends_with_one_line_saying_what_is_kept_and_how_to_resume(study):
    proc = _runner(study, "cc", "-p", "train_s=60")
    run = study["runs"] / "cc"
    try:
        assert _wait_for(lambda: _stage_running(run, "02"))
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130
    assert len(lines) == 1, err
    assert lines[0].startswith("interrupted in stage 02_train_dcgan")
    assert "kept: the outputs of 01" in lines[0] and "--name cc" in lines[0] and "--from 02" in lines[0]
    assert _entry(run, "02")["status"] == "interrupted" and not (run / run_lock.LOCK_NAME).exists()
    # the command it names resumes: stage 02 onwards, with the recorded settings
    resumed = subprocess.run([sys.executable, "-m", "mammo_lib.study.runner", "--name", "cc", "--runs-root",
                              str(study["runs"]), "--notebooks", str(study["notebooks"]), "--no-report",
                              "--from", "02", "-p", "train_s=0"], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [e["status"] for e in _record(run)["notebooks"]] == ["ok", "ok", "ok"]
