"""SIGUSR1 reopens log files (what logrotate sends); it never stops a master, a worker or a
single-process server."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from master_support import ask, pids_serving

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def test_usr1_to_the_whole_group_stops_nothing(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    workers = master.wait_workers(2)
    for pid in (master.pid, *workers):
        os.kill(pid, signal.SIGUSR1)
    master.wait_log(r"SIGUSR1: reopening log files")
    assert master.proc.poll() is None
    assert pids_serving(address, 2) == workers
    assert master.workers() == workers
    assert master.stop() == 0


def test_usr1_to_a_single_process_server_stops_nothing(start, app_dir):
    (app_dir / "single.py").write_text(
        "import greensrv\n"
        "from app import handler\n"
        "greensrv.serve_forever(handler, port=0)\n")
    server = start(argv=[sys.executable, "single.py"])
    port = int(server.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    server.signal(signal.SIGUSR1)
    server.wait_log(r"SIGUSR1: reopening log files")
    assert ask(("127.0.0.1", port), "alive").endswith(" alive")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
