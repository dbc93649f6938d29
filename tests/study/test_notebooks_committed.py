"""The committed notebooks are what the conventions promise: no outputs, a tagged parameters
cell whose values are the `default` profile (so JupyterLab users reopening a stage after
`make study` get the same settings), and profiles that only set declared parameters."""

import ast
import json

import nbformat
import pytest

from mammo_lib.study.runner import NOTEBOOK_DIR, PROFILES, discover_notebooks, profile_parameters

NOTEBOOKS = discover_notebooks()


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged 'parameters'"
    return cells[0]


def _assigned_values(source: str) -> dict:
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_five_stages_in_order():
    assert [nb.stem[:2] for nb in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
    values = _assigned_values(_parameters_cell(nb).source)
    assert "run_dir" in values and values["run_dir"].startswith("../runs/")
    assert "seed" in values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_the_default_profile(path):
    values = _assigned_values(_parameters_cell(nbformat.read(path, as_version=4)).source)
    table = json.loads((NOTEBOOK_DIR / "params" / f"{path.stem}.json").read_text())
    assert set(table) == set(PROFILES)
    for profile in PROFILES:
        undeclared = set(table[profile]) - set(values)
        assert not undeclared, f"{path.stem} profile {profile} sets undeclared {undeclared}"
    default = profile_parameters(path, "default")
    differing = {k: (values[k], v) for k, v in default.items() if values[k] != v}
    assert not differing, f"{path.stem}: parameters cell vs default profile {differing}"
