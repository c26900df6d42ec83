"""The one-way rule: common imports neither side; dispatcher and worker never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"common": {"dispatcher", "worker"}, "dispatcher": {"worker"}, "worker": {"dispatcher"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_one_way_rule(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in files
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_the_dispatcher_names_the_worker_function_without_importing_it() -> None:
    from common import keys

    module, _, function = keys.CHUNK_FUNCTION.rpartition(".")
    assert (ROOT / (module.replace(".", "/") + ".py")).read_text().count(f"def {function}(") == 1
