"""No import cycles inside our packages (type-only imports count too: they show a layering)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "dispatcher", "worker")


def module_imports(package: str) -> dict[str, set[str]]:
    """Each module of `package` and the modules of our packages it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).glob("*.py")):
        name = package if path.stem == "__init__" else f"{package}.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                if node.module in PACKAGES:  # `from common import keys`: the module, if it is one
                    for alias in node.names:
                        module = f"{node.module}.{alias.name}"
                        found.add(module if (ROOT / node.module / f"{alias.name}.py").exists() else node.module)
                else:
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES)
        graph[name] = found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets (empty when the graph has none)."""
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, path)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    return found


def test_the_walk_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["common", "dispatcher", "worker"])
def test_no_module_imports_itself_back(package: str) -> None:
    graph: dict[str, set[str]] = {}
    for name in PACKAGES:
        graph.update(module_imports(name))
    assert [cycle for cycle in cycles(graph) if cycle[0].startswith(package)] == []
