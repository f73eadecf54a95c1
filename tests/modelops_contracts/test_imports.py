"""The contracts package is a layered set of modules: its import graph has no cycle.

Imports are read from the source with :mod:`ast`, at module level and inside functions alike
(a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` do not count, since
they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = "modelops_contracts"
SRC = Path(__file__).parents[2] / "src" / PACKAGE


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.AST, modules: set[str]) -> set[str]:
    """Package modules imported anywhere below ``node``, skipping TYPE_CHECKING blocks."""
    found: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                found |= _imported(stmt, modules) | _imported_here(stmt, modules)
            continue
        found |= _imported_here(child, modules) | _imported(child, modules)
    return found


def _imported_here(node: ast.AST, modules: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # ``from pkg import mod`` imports a module; ``from pkg.mod import name`` imports pkg.mod
        names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    else:
        return set()
    return {name for name in names if name in modules}


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package modules it imports (the package ``__init__`` excluded)."""
    paths = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(paths) - {PACKAGE}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _imported(tree, modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None if the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_contracts_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    assert graph.get(f"{PACKAGE}.job"), "the graph reads no imports"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_checker_sees_lazy_imports_and_ignores_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from modelops_contracts.b import g\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from modelops_contracts import a\n"
    )
    graph = import_graph(pkg)
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.b"} and graph[f"{PACKAGE}.b"] == set()
    assert find_cycle(graph) is None
    (pkg / "b.py").write_text("import modelops_contracts.a\n")
    assert find_cycle(import_graph(pkg)) == [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]


def test_legacy_is_a_leaf_module() -> None:
    allowed = {f"{PACKAGE}.{m}" for m in ("errors", "params", "task", "_deprecation")}
    legacy = import_graph()[f"{PACKAGE}.legacy"]
    assert legacy and legacy <= allowed, sorted(legacy - allowed)


def test_the_job_format_does_not_know_the_object_model() -> None:
    assert f"{PACKAGE}.job" not in import_graph()[f"{PACKAGE}._job_format"]


def test_importing_contracts_loads_no_heavy_libraries() -> None:
    modules = sorted(import_graph())
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = {'numpy', 'pandas', 'polars', 'pyarrow', 'dask', 'distributed', 'yaml'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
