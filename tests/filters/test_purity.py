"""Filters and the PROXY parser are sans-IO: they import no socket, ssl, select or gevent."""

from __future__ import annotations

import ast
from pathlib import Path

import greensrv.filters

FORBIDDEN = {"socket", "ssl", "select", "selectors", "asyncio", "gevent", "greenlet"}
FILTERS_DIR = Path(greensrv.filters.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.add("__import__")
    return names


def test_filters_import_no_io_modules():
    files = sorted(FILTERS_DIR.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        roots = {name.split(".")[0] for name in imported_modules(path)}
        bad = roots & (FORBIDDEN | {"__import__", "importlib"})
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_testing_helpers_are_pure_too():
    path = Path(greensrv.filters.__file__).parent.parent / "testing.py"
    roots = {name.split(".")[0] for name in imported_modules(path)}
    assert not roots & FORBIDDEN

# The rest of the pure layer (output queue, connection state, limits, ...) is checked by
# tests/test_layers.py, which derives the list from its layer table.
