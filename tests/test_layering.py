"""The layers of DESIGN.md hold in the code: imports point down only, and no import circle.

Imports are read with ``ast`` from every module under ``src``, at module level and inside
functions alike (a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` are
hints only and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Each layer may import the layers listed for it (and itself); anything else is a violation.
# Modules not listed belong to the layer of their closest listed parent.
LAYERS: dict[str, set[str]] = {
    "modelops_contracts": set(),
    "modelops._fs": set(),
    "modelops._output": {"modelops_contracts"},
    "modelops.model": {"modelops_contracts"},
    "modelops._bundle_archive": {"modelops_contracts", "modelops._fs", "modelops._bundle_walk"},
    "modelops._bundle_walk": {"modelops_contracts"},
    "modelops.bundle": {
        "modelops_contracts",
        "modelops._fs",
        "modelops._bundle_archive",
        "modelops._bundle_walk",
    },
    "modelops.envs": {"modelops_contracts"},
    "modelops.runtime": {"modelops_contracts", "modelops.model", "modelops.bundle"},
    "modelops.store": {"modelops_contracts", "modelops._fs"},
    "modelops.sampling": {"modelops_contracts", "modelops.model", "modelops.runtime"},
    "modelops.services": {
        "modelops_contracts",
        "modelops.bundle",
        "modelops.envs",
        "modelops.runtime",
    },
    "modelops.engine": {
        "modelops",
        "modelops_contracts",
        "modelops.bundle",
        "modelops.runtime",
        "modelops.services",
        "modelops.store",
    },
    "modelops.analysis": {
        "modelops_contracts",
        "modelops._output",
        "modelops.model",
        "modelops.store",
    },
    "modelops.api": {
        "modelops_contracts",
        "modelops.bundle",
        "modelops.engine",
        "modelops.envs",
        "modelops.runtime",
        "modelops.services",
        "modelops.store",
    },
    "modelops.calibration": {
        "modelops",
        "modelops_contracts",
        "modelops._output",
        "modelops.analysis",
        "modelops.api",
        "modelops.bundle",
        "modelops.engine",
        "modelops.envs",
        "modelops.model",
        "modelops.sampling",
        "modelops.services",
        "modelops.store",
    },
    "modelops.sensitivity": {
        "modelops_contracts",
        "modelops._output",
        "modelops.analysis",
        "modelops.model",
        "modelops.sampling",
        "modelops.store",
    },
    "modelops.client": {
        "modelops_contracts",
        "modelops.api",
        "modelops.engine",
        "modelops.services",
        "modelops.store",
    },
    "modelops.cli": {
        "modelops",
        "modelops_contracts",
        "modelops._output",
        "modelops.analysis",
        "modelops.api",
        "modelops.bundle",
        "modelops.calibration",
        "modelops.engine",
        "modelops.envs",
        "modelops.model",
        "modelops.sampling",
        "modelops.sensitivity",
        "modelops.services",
        "modelops.store",
    },
    "modelops.__main__": {"modelops.cli"},
    "modelops.testing": {
        "modelops",
        "modelops_contracts",
        "modelops.bundle",
        "modelops.envs",
        "modelops.runtime",
        "modelops.services",
    },
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> set[str]:
    """Every module of ours that ``module`` imports, hints excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    ours = {name for name, _ in _modules()}
    return {name for name in found if name in ours and name != module}


def _layer(module: str) -> str:
    best = ""
    for layer in LAYERS:
        if (module == layer or module.startswith(layer + ".")) and len(layer) > len(best):
            best = layer
    return best


def _graph() -> dict[str, set[str]]:
    return {module: _imports(module, path) for module, path in _modules()}


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m, _ in _modules() if m != "modelops" and not _layer(m)]
    assert unplaced == []


def test_imports_point_down_only() -> None:
    violations = []
    for module, imported in sorted(_graph().items()):
        if module == "modelops":
            continue  # the package root only re-exports, lazily
        own = _layer(module)
        allowed = LAYERS[own] | {own}
        for name in sorted(imported):
            target = _layer(name) or name  # "modelops" itself has no layer of its own
            if target not in allowed:
                violations.append(f"{module} imports {name}")
    assert violations == []


def test_no_import_circle() -> None:
    graph = _graph()
    graph.pop("modelops", None)  # lazy re-exports: importing the root loads nothing
    for imported in graph.values():
        imported.discard("modelops")
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert cycles == []
