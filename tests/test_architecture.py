"""The shape of the library: no import cycle between mammo_lib modules, every function under
cyclomatic complexity 15 (ruff's C901), and no notebook that defines functions or writes files."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mammo_lib"
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


def import_graph() -> dict[str, set[str]]:
    """``{top-level module of mammo_lib: {top-level modules it imports}}``, lazy imports included;
    a subpackage (e.g. ``readers``) counts as one module."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if rel == ["__init__"]:
            continue
        dotted = ["mammo_lib", *rel]
        package = dotted[:-1] if rel[-1] != "__init__" else dotted[:-1]
        deps = graph.setdefault(rel[0], set())
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _imported_modules(node, package):
                parts = name.split(".")
                if parts[0] == "mammo_lib" and len(parts) > 1 and parts[1] != rel[0] \
                        and ((PACKAGE / f"{parts[1]}.py").exists() or (PACKAGE / parts[1] / "__init__.py").exists()):
                    deps.add(parts[1])
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
    assert len(graph) > 15 and "fileio" in graph["runner"] | graph["provenance"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


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
