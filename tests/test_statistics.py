"""Statistics (``statistics.py``): named counters, the frozen snapshot, what each counts."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import greensrv
from greensrv.statistics import Counters, Statistics

PACKAGE = Path(greensrv.__file__).parent


def test_a_misspelt_counter_is_an_error_not_a_silent_zero():
    counters = Counters()
    counters.count("closed_idle")
    assert counters.closed_idle == 1 and counters.accepted == 0
    with pytest.raises(AttributeError):
        counters.count("closed_idel")
    with pytest.raises(AttributeError):
        counters.closed_idel = 1  # type: ignore[attr-defined]


def test_every_counter_the_package_names_exists():
    """Each ``count("...")`` in the package names a field of Counters (found without running
    the path that would raise)."""
    named = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            func = getattr(node, "func", None)
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            if (isinstance(node, ast.Call) and name == "count" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                named.add(node.args[0].value)
    assert len(named) >= 10
    assert named <= set(Counters.__slots__), named - set(Counters.__slots__)


def test_the_snapshot_copies_every_counter_and_adds_the_refusals():
    counters = Counters()
    for name in Counters.__slots__:
        counters.count(name)
    counters.count("refused_per_ip")
    stats = counters.snapshot(accepting=True, live_connections=3, pool_free=None, bytes_in=5,
                              bytes_out=6)
    assert stats.refused == 3 and stats.refused_per_ip == 2 and stats.accepted == 1
    fields = {f.name for f in dataclasses.fields(Statistics)}
    assert set(Counters.__slots__) - {"refused_pre_connect"} <= fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.accepted = 2  # type: ignore[misc]
