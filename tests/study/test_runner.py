"""The study runner executes numbered notebooks in order with papermill, with profiles, and
names the notebook and cell when one fails."""

import json

import nbformat
import pytest
from conftest import parameters_notebook

from mammo_lib.study.runner import StudyError, absolute_path_values, parse_overrides, run_study


@pytest.fixture
def notebook_dir(tmp_path):
    d = tmp_path / "notebooks"
    (d / "params").mkdir(parents=True)
    parameters_notebook(d / "01_first.ipynb", 'run_dir = "x"\nseed = 0\ncount = 1',
              "from pathlib import Path\nPath(run_dir, 'first.txt').write_text(str(count * 10 + seed))")
    parameters_notebook(d / "02_second.ipynb", 'run_dir = "x"\nfactor = 2',
              "from pathlib import Path\nv = int(Path(run_dir, 'first.txt').read_text())\n"
              "Path(run_dir, 'second.txt').write_text(str(v * factor))")
    (d / "params" / "01_first.json").write_text(json.dumps({"smoke": {"count": 3}, "default": {"count": 4}, "paper": {}}))
    (d / "not_numbered.ipynb").write_text("{}")  # ignored: not NN_name
    return d


def test_runs_numbered_notebooks_in_order_with_profile(tmp_path, notebook_dir):
    lines = []
    run = run_study("smoke", name="r1", runs_root=tmp_path / "runs", notebook_dir=notebook_dir,
                    overrides={"factor": 5}, seed=1, log=lines.append)
    assert (run / "first.txt").read_text() == "31"  # count=3 from the smoke profile, seed=1
    assert (run / "second.txt").read_text() == "155"  # factor override reached notebook 02 only
    assert (run / "01_first.ipynb").exists() and (run / "02_second.ipynb").exists()
    record = json.loads((run / "run.json").read_text())
    assert [n["status"] for n in record["notebooks"]] == ["ok", "ok"]
    assert any(line.startswith("[1/2] 01_first") for line in lines)
    assert any(line.startswith("[2/2] 02_second") for line in lines)


def test_failure_names_notebook_and_cell(tmp_path, notebook_dir):
    parameters_notebook(notebook_dir / "03_broken.ipynb", 'run_dir = "x"', "raise ValueError('bad patch store')")
    with pytest.raises(StudyError, match=r"03_broken\.ipynb failed in cell \d+.*ValueError: bad patch store"):
        run_study("default", name="r2", runs_root=tmp_path / "runs", notebook_dir=notebook_dir, log=lambda s: None)
    record = json.loads((tmp_path / "runs" / "r2" / "run.json").read_text())
    assert record["notebooks"][-1]["status"] == "failed"


def test_unknown_profile_and_bad_override(tmp_path, notebook_dir):
    with pytest.raises(StudyError, match="unknown profile"):
        run_study("huge", runs_root=tmp_path, notebook_dir=notebook_dir)
    with pytest.raises(StudyError, match="key=value"):
        parse_overrides(["novalue"])
    assert parse_overrides(["a=3", "b=[1,2]", "c=mias"]) == {"a": 3, "b": [1, 2], "c": "mias"}


def test_misspelt_override_is_an_error_and_seed_and_paths_are_recorded(tmp_path, notebook_dir, monkeypatch):
    with pytest.raises(StudyError, match="-p/--params-file sead: no notebook of the study declares"):
        run_study("smoke", name="r3", runs_root=tmp_path / "runs", notebook_dir=notebook_dir,
                  overrides={"sead": 3}, log=lambda s: None)
    run = run_study("smoke", name="r3", runs_root=tmp_path / "runs", notebook_dir=notebook_dir,
                    overrides={"seed": 4}, only=["01"], log=lambda s: None)
    assert (run / "first.txt").read_text() == "34"
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == 4 and record["packages"]["numpy"]
    # rerunning one stage keeps the record of the others
    run_study("smoke", name="r3", runs_root=tmp_path / "runs", notebook_dir=notebook_dir,
              start_from="02", log=lambda s: None)
    record = json.loads((run / "run.json").read_text())
    assert [n["notebook"] for n in record["notebooks"]] == ["01_first.ipynb", "02_second.ipynb"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert absolute_path_values({"p": "data", "q": "missing", "r": 3}) == {
        "p": str(tmp_path / "data"), "q": "missing", "r": 3}


def test_overrides_are_converted_by_the_declared_type_before_anything_is_written(tmp_path, notebook_dir):
    parameters_notebook(notebook_dir / "03_typed.ipynb", 'run_dir = "x"\nstop_early = False\nclasses = None\nsource = ""',
              "from pathlib import Path\nPath(run_dir, 'typed.txt').write_text(repr((stop_early, classes, source)))")
    (notebook_dir / "params" / "03_typed.json").write_text(json.dumps(
        {"smoke": {"classes": None}, "default": {}, "paper": {"classes": ["mass"]}}))
    runs = tmp_path / "runs"
    run = run_study("smoke", name="typed", runs_root=runs, notebook_dir=notebook_dir, only=["03"], report=False,
                    overrides={"stop_early": "false", "classes": "None", "source": "2016"}, log=lambda s: None)
    assert (run / "typed.txt").read_text() == "(False, None, '2016')"
    entry = json.loads((run / "run.json").read_text())["notebooks"][0]
    assert entry["parameters"]["stop_early"] is False and entry["parameters"]["source"] == "2016"
    with pytest.raises(StudyError, match=r"-p stop_early=maybe: stop_early is bool"):
        run_study("smoke", name="bad", runs_root=runs, notebook_dir=notebook_dir, only=["03"],
                  overrides={"stop_early": "maybe"}, log=lambda s: None)
    with pytest.raises(StudyError, match=r"-p classes=mass: classes is list or None"):
        run_study("smoke", name="bad", runs_root=runs, notebook_dir=notebook_dir, only=["03"],
                  overrides={"classes": "mass"}, log=lambda s: None)
    assert not (runs / "bad").exists()  # a check that fails first leaves no run folder


def test_same_seed_gives_the_same_run_json_and_timings_are_apart(tmp_path, notebook_dir):
    runs = tmp_path / "runs"
    a = run_study("smoke", name="a", runs_root=runs, notebook_dir=notebook_dir, report=False, log=lambda s: None)
    b = run_study("smoke", name="b", runs_root=runs, notebook_dir=notebook_dir, report=False, log=lambda s: None)
    assert (a / "run.json").read_bytes() == (b / "run.json").read_bytes()
    timings = json.loads((a / "timings.json").read_text())
    assert set(timings["notebooks"]) == {"01_first.ipynb", "02_second.ipynb"} and timings["finished"]
    record = json.loads((a / "run.json").read_text())
    assert record["notebooks"][0]["parameters"] == {"run_dir": ".", "seed": 0, "count": 3}
    assert "git_commit" in record["code"] and "dirty" in record["code"]


def test_a_failure_records_notebook_cell_and_exception(tmp_path, notebook_dir):
    parameters_notebook(notebook_dir / "03_broken.ipynb", 'run_dir = "x"', "x = 1\nraise KeyError('shift_row')")
    with pytest.raises(StudyError):
        run_study("smoke", name="f", runs_root=tmp_path / "runs", notebook_dir=notebook_dir, log=lambda s: None)
    entry = json.loads((tmp_path / "runs" / "f" / "run.json").read_text())["notebooks"][-1]
    assert entry["notebook"] == "03_broken.ipynb" and entry["status"] == "failed"
    assert entry["error"]["exception"] == "KeyError" and "shift_row" in entry["error"]["message"]
    assert entry["error"]["cell"] == 2  # papermill's injected parameters cell comes first


def test_an_interactive_rerun_updates_the_record(tmp_path, notebook_dir, monkeypatch):
    from mammo_lib.study import provenance

    run = run_study("smoke", name="i", runs_root=tmp_path / "runs", notebook_dir=notebook_dir, report=False,
                    log=lambda s: None)
    monkeypatch.chdir(notebook_dir)  # JupyterLab runs a notebook in its own folder
    monkeypatch.setenv(provenance.RUNNER_ENV, "1")
    assert "runner" in provenance.record_interactive_rerun(run, "02_second", {"factor": 9, "other": 1})
    monkeypatch.delenv(provenance.RUNNER_ENV)
    assert "updated" in provenance.record_interactive_rerun(run, "02_second", {"factor": 9, "other": 1})
    entry = json.loads((run / "run.json").read_text())["notebooks"][1]
    assert entry["status"] == "ok (rerun interactively)" and entry["parameters"] == {"factor": 9}
    assert entry["settings"] == {"profile": "smoke", "seed": 0, "overrides": {}}  # kept from the runner's entry
    assert "not recorded" in provenance.record_interactive_rerun(tmp_path, "02_second", {})
    assert str(tmp_path) not in provenance.record_interactive_rerun(tmp_path, "02_second", {})


def test_cli_reads_the_notebooks_folder_and_reports_bad_values(tmp_path, notebook_dir, capsys):
    from mammo_lib.study.runner import main

    assert main(["--profile", "smoke", "--name", "c", "--runs-root", str(tmp_path / "runs"),
                 "--notebooks", str(notebook_dir), "-p", "count=lots", "--no-report"]) == 1
    assert "count=lots: count is int" in capsys.readouterr().err
    assert main(["--profile", "smoke", "--name", "c", "--runs-root", str(tmp_path / "runs"),
                 "--notebooks", str(notebook_dir), "-p", "count=7", "--no-report"]) == 0
    assert (tmp_path / "runs" / "c" / "first.txt").read_text() == "70"


def test_mammo_study_readers_is_the_coordinator_command(capsys):
    from mammo_lib.study.runner import main

    with pytest.raises(SystemExit):
        main(["readers", "--help"])
    assert "add" in capsys.readouterr().out


def test_params_file_gives_typed_values_and_nested_paths_are_made_absolute(tmp_path, notebook_dir, monkeypatch):
    from mammo_lib.study.runner import main

    parameters_notebook(notebook_dir / "03_items.ipynb", 'run_dir = "x"\nitems = [{"name": "a"}]',
              "from pathlib import Path\nPath(run_dir, 'items.txt').write_text(repr(items))")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "patches").mkdir()
    (tmp_path / "p.json").write_text(json.dumps({"items": [{"name": "a"}, {"name": "b", "path": "patches"}]}))
    assert main(["--profile", "smoke", "--name", "pf", "--runs-root", "runs", "--notebooks", str(notebook_dir),
                 "--only", "03", "--params-file", "p.json", "--no-report"]) == 0
    assert (tmp_path / "runs" / "pf" / "items.txt").read_text() == repr(
        [{"name": "a"}, {"name": "b", "path": str(tmp_path / "patches")}])
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["--profile", "smoke", "--name", "pf2", "--runs-root", "runs", "--notebooks", str(notebook_dir),
                 "--params-file", "bad.json"]) == 1
    assert not (tmp_path / "runs" / "pf2").exists()


def test_a_rerun_into_an_old_folder_forgets_the_old_report_results_and_timings(tmp_path, notebook_dir):
    runs = tmp_path / "runs"
    run = run_study("smoke", name="old", runs_root=runs, notebook_dir=notebook_dir, log=lambda s: None)
    assert (run / "report" / "index.html").exists()
    (run / "verify.json").write_text("{}")
    parameters_notebook(notebook_dir / "03_broken.ipynb", 'run_dir = "x"', "raise ValueError('broken')")
    with pytest.raises(StudyError):
        run_study("smoke", name="old", runs_root=runs, notebook_dir=notebook_dir, log=lambda s: None)
    assert not (run / "verify.json").exists()
    timings = json.loads((run / "timings.json").read_text())
    assert timings["finished"] is None and set(timings["notebooks"]) == {
        "01_first.ipynb", "02_second.ipynb", "03_broken.ipynb"}
    page = (run / "report" / "index.html").read_text()  # the failed run's own report says so
    assert "The run failed in 03_broken.ipynb" in page


def test_run_names_are_folder_names_and_the_seed_is_given_once(tmp_path, notebook_dir):
    from mammo_lib.study.runner import main

    for bad in ("../escape", "a/b", ".."):
        with pytest.raises(StudyError, match="run name"):
            run_study("smoke", name=bad, runs_root=tmp_path / "runs", notebook_dir=notebook_dir)
    assert not (tmp_path / "escape").exists()
    assert main(["--profile", "smoke", "--runs-root", str(tmp_path / "runs"), "--notebooks", str(notebook_dir),
                 "--seed", "3", "-p", "seed=4", "--no-report"]) == 1
    run = run_study("smoke", name="s", runs_root=tmp_path / "runs", notebook_dir=notebook_dir, report=False,
                    overrides={"seed": "5"}, log=lambda s: None)
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == 5 and record["overrides"] == {}  # the seed is a setting of its own


def test_injected_parameters_do_not_depend_on_how_the_seed_was_given(tmp_path, notebook_dir):
    runs = tmp_path / "runs"
    a = run_study("smoke", name="a", runs_root=runs, notebook_dir=notebook_dir, report=False, seed=2,
                  only=["01"], log=lambda s: None)
    b = run_study("smoke", name="b", runs_root=runs, notebook_dir=notebook_dir, report=False,
                  overrides={"seed": "2"}, only=["01"], log=lambda s: None)
    cells = [json.loads((r / "01_first.ipynb").read_text())["cells"] for r in (a, b)]
    injected = [next(c for c in cs if "injected-parameters" in c["metadata"].get("tags", [])) for cs in cells]
    assert injected[0]["source"] == injected[1]["source"]


def test_verify_reruns_with_the_recorded_parameters_and_finds_no_difference(tmp_path, notebook_dir):
    from mammo_lib.study.verify import verify_run

    run = run_study("smoke", name="v", runs_root=tmp_path / "runs", notebook_dir=notebook_dir, seed=3,
                    overrides={"factor": "7"}, log=lambda s: None)
    result = verify_run(run, log=lambda s: None, notebook_dir=notebook_dir)
    assert result["identical"] and result["n_compared"] >= 4 and result["rerun"] == "v-verify"
    assert json.loads((run / "verify.json").read_text())["identical"] is True
    assert "byte-identical" in (run / "report" / "index.html").read_text()
    (tmp_path / "runs" / "v-verify" / "second.txt").write_text("0")  # what a changed output would look like
    from mammo_lib.study.verify import compare_run_folders

    assert compare_run_folders(run, tmp_path / "runs" / "v-verify")["differing"] == ["second.txt"]


def test_rerun_check_ignores_how_the_kernel_chunked_stdout_but_not_what_was_printed(tmp_path):
    """The kernel may flush one cell's prints as one stream output or several, by timing."""
    from mammo_lib.study.verify import notebook_without_timings

    def write(name, outputs):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print('a'); print('b')", id="c1")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in outputs]
        cell.metadata["execution"] = {"iopub.execute_input": name}  # a timing: never compared
        nb.cells = [cell]
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(nb, path)
        return path

    merged, split = write("merged", ["a\nb\n"]), write("split", ["a\n", "b\n"])
    other = write("other", ["a\n", "c\n"])
    assert notebook_without_timings(merged) == notebook_without_timings(split)
    assert notebook_without_timings(merged) != notebook_without_timings(other)
