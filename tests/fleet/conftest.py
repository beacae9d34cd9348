"""The fleet suite runs only when asked for: ``tox -e fleet`` (``pytest -m fleet tests/fleet``).

A plain ``pytest`` collects these tests but skips them: each starts three masters, HAProxy and
Redis, too much for every Python version's run. ``GREENSRV_FLEET_LONG=1`` runs the long form.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import run_only_when_selected

# The masters are driven with tests/deploy's helpers (tests/ itself is on the path already).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

from fleet_support import HAProxy, Node, shared_free_ports


def pytest_collection_modifyitems(config, items):
    run_only_when_selected(config, items, "fleet",
                           "fleet suite: run it with `tox -e fleet` "
                           "(pytest -m fleet tests/fleet)")


@pytest.fixture
def nodes(tmp_path):
    """Three unstarted nodes on 127.0.0.2-4, sharing their port numbers; killed after."""
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    ports = shared_free_ports(hosts, 3)
    made = [Node(tmp_path, i, ports) for i in range(3)]
    yield made
    for node in made:
        node.cleanup()


@pytest.fixture
def haproxy(tmp_path, nodes):
    """``haproxy()``: HAProxy started over ``nodes`` (start those first); stopped after."""
    started: list[HAProxy] = []

    def start() -> HAProxy:
        started.append(HAProxy(tmp_path, nodes))
        return started[-1]
    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def redis(tmp_path):
    """A redis-server the test may restart; stopped after."""
    from fleet_support import Redis

    server = Redis(tmp_path)
    yield server
    server.stop()
