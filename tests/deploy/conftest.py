"""Fixtures for the deployment tests: an application directory and masters started in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from master_support import APP, MasterProcess, greensrv_argv, process_env


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``app.py`` (``APP``), where the master runs."""
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def start(app_dir: Path):
    """``start(*args)``: ``python -m greensrv ARGS`` (or ``argv=``) in the app's directory,
    with ``env`` additions and ``pass_fds`` inherited; killed, with its workers, after the
    test."""
    started: list[MasterProcess] = []

    def run(*args: str, argv: list[str] | None = None, pass_fds: tuple[int, ...] = (),
            **env: str) -> MasterProcess:
        master = MasterProcess(argv or greensrv_argv(*args), app_dir, process_env(app_dir, **env),
                               pass_fds)
        started.append(master)
        return master

    yield run
    for master in started:
        master.cleanup()
