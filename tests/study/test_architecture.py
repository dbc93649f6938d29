"""The shape of the library: no import cycle between mammo_lib modules, every function under
cyclomatic complexity 15 (ruff's C901), and no notebook that defines functions or writes files."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mammo_lib"
NOTEBOOKS = PACKAGE.parent / "notebooks"


def _imported_modules(node: ast.AST, package: list[str]) -> list[str]:
    """Dotted names a statement imports, relative imports resolved against ``package``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = package[: len(package) - node.level + 1] if node.level else []
        module = ".".join(base + (node.module.split(".") if node.module else []))
        return [module] + [f"{module}.{a.name}" for a in node.names]
    return []


def _module_name(path: Path) -> str:
    rel = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel) or "__init__"


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest ``mammo_lib`` module a dotted import names (``mammo_lib.a.b.func`` -> ``a.b``)."""
    parts = name.split(".")[1:]
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in modules:
            return ".".join(parts[:k])
    return None


def import_graph() -> dict[str, set[str]]:
    """``{module of mammo_lib (dotted, below the package): {modules it imports}}``, lazy imports
    included; a package's ``__init__`` is the package's name."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = _module_name(path)
        package = ["mammo_lib", *name.split(".")] if path.name == "__init__.py" else ["mammo_lib", *name.split(".")[:-1]]
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            for imported in _imported_modules(node, package):
                if imported.startswith("mammo_lib.") and (target := _resolve(imported, modules)) \
                        and target != name and not name.startswith(target + ".") and target != "__init__":
                    deps.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_mammo_lib():
    graph = import_graph()
    assert len(graph) > 60 and "fileio" in graph["study.provenance"]
    assert "feature_space.c2st.two_sample" in graph["feature_space.c2st.study"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


#: the stages in the order data flows; shared plumbing (top-level modules) lies below them all
STAGES = ["sources", "extract", "generate", "feature_space", "reader_study", "roc", "study"]


def test_no_stage_imports_a_later_stage_and_shared_plumbing_imports_no_stage():
    """What the import-linter contract in pyproject.toml says, checked here by our own walk too
    (it also sees imports inside functions, which import-linter counts as well)."""
    graph = import_graph()
    layer = {name: STAGES.index(name.split(".")[0]) if name.split(".")[0] in STAGES else -1 for name in graph}
    wrong = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer[b] > layer[a])
    assert not wrong, "imports against the stage order: " + ", ".join(wrong)
    assert {n.split(".")[0] for n in graph if layer[n] >= 0} == set(STAGES)


def test_the_layer_check_sees_a_wrong_import(tmp_path):
    graph = {"extract.pipeline": {"generate.model"}, "generate.model": set()}
    layer = {n: STAGES.index(n.split(".")[0]) for n in graph}
    assert [f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer[b] > layer[a]] == [
        "extract.pipeline -> generate.model"]


def test_import_linter_contract_holds():
    """``lint-imports`` (import-linter) with the layers contract of pyproject.toml."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken" in result.stdout


def test_no_function_above_complexity_15():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "C901", "--config", "lint.mccabe.max-complexity=15",
         "--output-format", "concise", "--no-cache", str(PACKAGE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_notebooks_define_no_function_and_write_no_file():
    writes = re.compile(r"\.to_csv\(|json\.dump\(|savefig\(|\.write_text\(|\.write_bytes\(|open\([^)]*['\"]w")
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            assert not re.search(r"^\s*(async\s+)?def |^\s*class ", src, re.M), f"{path.name} defines a function"
            assert not writes.search(src), f"{path.name} writes a file itself: {writes.search(src).group(0)}"


def _seeding_calls(path: Path) -> list[str]:
    """``default_rng(...)``, ``SeedSequence(...)`` and ``.manual_seed(...)`` calls in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("default_rng", "SeedSequence", "manual_seed", "RandomState", "seed"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    return found


def test_only_rng_seeds_random_generators():
    """Every random stream is drawn by a rule of mammo_lib/rng.py (keyed by seed and purpose, or a
    named older scheme); no other module seeds a generator itself."""
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "rng.py" or path.parent != PACKAGE
             for hit in _seeding_calls(path)]
    assert not found, "modules seeding their own generators: " + ", ".join(found)
    assert _seeding_calls(PACKAGE / "rng.py")  # the check sees calls where they are
