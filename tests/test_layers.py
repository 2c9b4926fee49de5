"""The layers of the house (README: Layout) and no import cycles, checked over the source.

Every ``import`` statement counts, at module level, inside a function or under
``TYPE_CHECKING``: a lazy import is still a dependency. An import names one module (``from
a.b import c`` is an edge to ``a.b.c`` if that is a module, else to ``a.b``); a package's
``__init__`` is not counted as imported by its submodules' imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.warehouse import REPO

#: top-level package -> the packages it may import (besides itself)
LAYERS: dict[str, frozenset[str]] = {
    "featurestore": frozenset(),
    "loader": frozenset({"featurestore"}),
    "sidecar": frozenset({"featurestore"}),
    "stream": frozenset({"featurestore"}),
    "demo": frozenset({"featurestore", "loader", "sidecar", "stream"}),
    "cli": frozenset({"featurestore", "loader", "sidecar", "stream", "demo"}),
}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement of ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]  # fmt: skip
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


GRAPH: dict[str, dict[str, int]] = {
    module: dict(_imports(module, path)) for module, path in MODULES.items()
}


def test_the_packages_exist() -> None:
    assert {module.split(".")[0] for module in MODULES} == set(LAYERS)
    assert len(MODULES) > 40


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_a_layer_imports_only_the_layers_below_it(package: str) -> None:
    wrong = [
        f"{MODULES[module].relative_to(REPO)}:{line} imports {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == package
        for target, line in targets.items()
        if target.split(".")[0] not in LAYERS[package] | {package}
    ]
    assert not wrong, f"{package} may import only {sorted(LAYERS[package])}:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_a_wrong_import_and_a_cycle() -> None:
    """The checker itself: a cycle and an upward import planted in a copy of the graph."""
    graph = {module: dict(targets) for module, targets in GRAPH.items()}
    graph["featurestore.registry"]["featurestore.historical"] = 1
    graph["featurestore.historical"]["featurestore.registry"] = 1
    assert ["featurestore.historical", "featurestore.registry"] in _cycles(graph)
    assert "loader.run" in MODULES and "sidecar.app" in MODULES
    assert "sidecar" not in LAYERS["loader"] and "loader" not in LAYERS["sidecar"]
    assert "cli.main" in GRAPH and {"loader.cli", "sidecar.cli"} <= set(GRAPH["cli.main"])
