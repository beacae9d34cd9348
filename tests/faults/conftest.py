"""The fault suite runs only when asked for: ``tox -e faults`` (``pytest -m faults tests/faults``).

A plain ``pytest`` collects these tests but skips them, so the normal suite stays fast on every
Python version. At the end of a run the figures each scenario measured are printed as one table.
"""

from __future__ import annotations

import pytest
from faultkit import FIGURES, ServerProcess, build_loadgen
from helpers import need_program, run_only_when_selected


def pytest_collection_modifyitems(config, items):
    run_only_when_selected(config, items, "faults",
                           "fault-injection suite: run it with `tox -e faults` "
                           "(pytest -m faults tests/faults)")


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault suite: measured figures")
    widths = [max(len(row[i]) for row in FIGURES) for i in range(3)]
    write(f"{'scenario':<{widths[0]}}  {'figure':<{widths[1]}}  {'measured':>{widths[2]}}  bound")
    for scenario, name, value, bound in FIGURES:
        write(f"{scenario:<{widths[0]}}  {name:<{widths[1]}}  {value:>{widths[2]}}  {bound}")


@pytest.fixture
def server_process(tmp_path):
    """``server_process(spec)``: fault_server.py in a subprocess, killed after the test."""
    started: list[ServerProcess] = []

    def start(spec: dict | None = None, argv: list[str] | None = None,
              name: str = "server") -> ServerProcess:
        proc = ServerProcess(tmp_path / f"{name}-{len(started)}.log", spec, argv)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


@pytest.fixture(scope="session")
def loadgen(tmp_path_factory):
    """benchmarks/loadgen.c compiled for this session (needs a C compiler)."""
    cc = need_program("cc", "gcc")
    return build_loadgen(tmp_path_factory.mktemp("loadgen"), cc)


