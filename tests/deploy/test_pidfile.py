"""``--pid FILE``: scripts do ``kill -HUP $(cat FILE)``, so the file must always name the master
that runs, never be deleted by another one, and never be overwritten while its master lives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from master_support import DEADLINE, READ_TIMEOUT, greensrv_argv, process_env, read_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def run_to_exit(app_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(greensrv_argv(*args), cwd=app_dir, env=process_env(app_dir),
                          capture_output=True, text=True, timeout=DEADLINE)


def test_a_second_start_refuses_a_live_pid_and_leaves_the_file_alone(start, app_dir):
    pidfile = app_dir / "master.pid"
    master = start("app:handler", "-b", "127.0.0.1:0", "--pid", str(pidfile))
    host, port = master.wait_ready()
    assert pidfile.read_text().strip() == str(master.pid)
    for bind in (f"{host}:{port}", "127.0.0.1:0"):  # address in use, or free: same refusal
        second = run_to_exit(app_dir, "app:handler", "-b", bind, "--pid", str(pidfile))
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and str(master.pid) in lines[0] and str(pidfile) in lines[0]
        assert pidfile.read_text().strip() == str(master.pid)
    assert master.stop() == 0
    assert not pidfile.exists()


def test_a_failed_start_never_deletes_a_pid_file_it_did_not_write(start, app_dir):
    """The second master fails at bind after writing its own file; it removes its own file only,
    and a file that another process has rewritten meanwhile is left."""
    pidfile = app_dir / "other.pid"
    master = start("app:handler", "-b", "127.0.0.1:0")
    host, port = master.wait_ready()
    second = run_to_exit(app_dir, "app:handler", "-b", f"{host}:{port}", "--pid", str(pidfile))
    assert second.returncode != 0 and "address already in use" in second.stderr.lower()
    assert not pidfile.exists()  # its own file, removed
    assert master.stop() == 0


def test_a_stale_pid_is_replaced(start, app_dir):
    pidfile = app_dir / "master.pid"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")
    master = start("app:handler", "-b", "127.0.0.1:0", "--pid", str(pidfile))
    master.wait_ready()
    assert pidfile.read_text().strip() == str(master.pid)
    assert master.stop() == 0
    assert not pidfile.exists()


def test_a_draining_master_leaves_the_file_of_the_master_that_replaced_it(start, app_dir):
    pidfile = app_dir / "master.pid"
    old = start("app:handler", "-b", "127.0.0.1:0", "--pid", str(pidfile),
                "--graceful-timeout", "60")
    address = old.wait_ready()
    with socket.create_connection(address, timeout=READ_TIMEOUT) as held:  # keeps it draining
        held.sendall(b"hold\r\n")
        buffer = bytearray()
        read_line(held, buffer)
        old.signal(15)
        old.wait_log(r"stopping 1 worker")
        pidfile.unlink()  # the operator's deploy script: the old one is on its way out
        new = start("app:handler", "-b", "127.0.0.1:0", "--pid", str(pidfile))
        new.wait_ready()
        assert pidfile.read_text().strip() == str(new.pid)
    assert old.wait_exit() == 0  # its client left: the drain ends
    assert pidfile.read_text().strip() == str(new.pid)
    assert new.stop() == 0
    assert not pidfile.exists()


def test_the_pid_file_names_the_master_for_signals(start, app_dir):
    pidfile = app_dir / "master.pid"
    master = start("app:handler", "-b", "127.0.0.1:0", "--pid", str(pidfile))
    master.wait_ready()
    os.kill(int(pidfile.read_text()), 15)
    assert master.wait_exit() == 0
