"""SIGUSR1 reopens log files (what logrotate sends); it never stops a master, a worker or a
single-process server."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from master_support import DEADLINE, ask, pids_serving

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


def test_log_file_is_reopened_after_a_rename_and_the_service_keeps_serving(start, app_dir):
    """logrotate's way: rename the file, send USR1; the next lines go to a new file of the old
    name, from the master and from the workers."""
    (app_dir / "chatty.py").write_text(
        "import logging, os\n"
        "def handler(conn):\n"
        "    for line in conn:\n"
        "        logging.getLogger('chatty').warning('worker %d got %s', os.getpid(), line)\n"
        "        conn.put(f'ok {os.getpid()} {line}')\n")
    log_file = app_dir / "greensrv.log"
    master = start("chatty:handler", "-b", "127.0.0.1:0", "-w", "2", "--log-file",
                   str(log_file))
    port = wait_in_file(log_file, r"serving 127\.0\.0\.1:(\d+)")
    wait_in_file(log_file, r"master \d+ ready")
    address = ("127.0.0.1", int(port))
    assert ask(address, "before").startswith("ok ")
    wait_in_file(log_file, r"got before")
    rotated = app_dir / "greensrv.log.1"
    log_file.rename(rotated)
    master.signal(signal.SIGUSR1)
    wait_in_file(log_file, r"SIGUSR1: reopening log files")
    workers, answered, n = master.workers(), set(), 0
    while answered != workers and n < 1000:  # until both workers have answered
        answered.add(int(ask(address, f"after{n}").split()[1]))
        n += 1
    text = wait_in_file(log_file, rf"got after{n - 1}\b", whole=True)
    writers = {int(pid) for pid in re.findall(r"worker (\d+) got after", text)}
    assert writers == workers  # every worker reopened it, not only the master
    assert "got after" not in rotated.read_text()
    assert master.stop() == 0
    assert "stopped" in log_file.read_text()


def wait_in_file(path: Path, pattern: str, whole: bool = False) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        text = path.read_text() if path.exists() else ""
        match = re.search(pattern, text)
        if match:
            return text if whole or not match.groups() else match.group(1)
        assert time.monotonic() < deadline, f"no {pattern!r} in {path}:\n{text}"
        time.sleep(0.02)  # poll interval, not synchronisation
