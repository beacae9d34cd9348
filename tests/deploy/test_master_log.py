"""What the master's log says, as an operator reads it: which process wrote each line, and why
each worker ended, in words that match what happened."""

from __future__ import annotations

import re
import signal
import socket
import sys

import pytest
from master_support import READ_TIMEOUT, read_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def test_a_script_with_workers_logs_the_pid_of_each_line(start, app_dir):
    (app_dir / "script.py").write_text(
        "import greensrv\n"
        "from app import handler\n"
        "greensrv.Server(handler, port=0, workers=2).serve_forever()\n")
    master = start(argv=[sys.executable, "script.py"])
    master.wait_ready()
    workers = master.wait_workers(2)
    assert master.stop() == 0
    lines = [line for line in master.lines if line != "<EOF>"]
    pids = {int(m.group(1)) for line in lines if (m := re.search(r"\[(\d+)\]", line))}
    assert all(re.search(r"\[\d+\]", line) for line in lines), lines
    assert master.pid in pids and workers <= pids


def test_a_worker_killed_at_the_stop_deadline_is_said_so(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "1", "--graceful-timeout", "0.2",
                   "--worker-timeout", "120")
    address = master.wait_ready()
    (worker,) = master.wait_workers(1)
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"who\r\n")
        read_line(sock)
        sock.sendall(b"block\r\n")  # the hub never runs again: the graceful stop cannot end
        master.signal(signal.SIGTERM)
        master.wait_log(rf"worker {worker} was killed by SIGKILL: still running at the stop "
                        r"deadline", timeout=30)
    assert master.wait_exit() == 0
    assert "after its graceful stop" not in master.log()
