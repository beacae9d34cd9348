"""Workers started after the service first became ready: crash replacements, TTIN and
hung-worker replacements. They must never stop the service when they fail to boot (retried with
the crash backoff), and they must run the current generation's code, never an unreloaded edit.

Real masters, real signals: each test edits the application on disk the way a deploy does.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from master_support import APP, DEADLINE, FLAKY, READ_TIMEOUT, ask, read_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def versions_by_worker(master, address, want: set[int]) -> dict[int, str]:
    """Ask fresh connections until every worker in ``want`` has answered; {pid: version}."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + DEADLINE
    while not want <= seen.keys():
        assert time.monotonic() < deadline, f"only {sorted(seen)} of {sorted(want)} answered"
        version, pid, _ = ask(address, "who").split()
        seen[int(pid)] = version
    return seen


def test_a_crash_replacement_that_fails_to_boot_is_retried_not_fatal(start, app_dir):
    (app_dir / "flaky.py").write_text(FLAKY)
    master = start("flaky:server", "-w", "2")
    address = master.wait_ready()
    victim, survivor = sorted(master.wait_workers(2))
    (app_dir / "db-down").write_text("")
    mark = master.mark()
    os.kill(victim, signal.SIGKILL)
    master.wait_log(r"worker \d+ failed to boot: ConnectionError: database unreachable",
                    after=mark)
    master.wait_log(r"in a row died young: next one in", after=mark)
    assert master.proc.poll() is None, master.log()
    assert alive_and_serving(address, survivor)
    (app_dir / "db-down").unlink()  # the database is back: the next retry boots
    now = master.wait_workers(2, exclude={victim})
    master.wait_log(r"worker \d+ accepting", after=mark)
    assert survivor in now
    assert master.proc.poll() is None
    assert master.stop() == 0


def alive_and_serving(address, pid: int) -> bool:
    for _ in range(200):
        reply = ask(address, "still")
        if int(reply.split()[1]) == pid:
            return True
    return False


def test_the_very_first_start_still_exits_when_a_worker_cannot_boot(start, app_dir):
    (app_dir / "flaky.py").write_text(FLAKY)
    (app_dir / "db-down").write_text("")
    master = start("flaky:server", "-w", "2")
    assert master.wait_exit() != 0
    log = master.log()
    assert "database unreachable" in log.splitlines()[-2]  # the last line is <EOF>
    assert "after its graceful stop" not in log, log  # a boot failure is said as one


def test_every_new_worker_runs_the_current_generation_not_the_disk(start, app_dir):
    """After a HUP to v2, v3 is written to disk and never reloaded: a crash replacement, a TTIN
    worker and a hung worker's replacement all serve v2; then a broken file on disk changes
    nothing either."""
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2", "--worker-timeout", "1")
    address = master.wait_ready()
    app = app_dir / "app.py"
    app.write_text(APP.replace('"v1"', '"v2"'))
    old = master.wait_workers(2)
    mark = master.mark()
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload done", after=mark)
    workers = master.wait_workers(2, exclude=old)
    app.write_text(APP.replace('"v1"', '"v3-unreloaded"'))

    victim = min(workers)  # a crash
    os.kill(victim, signal.SIGKILL)
    workers = master.wait_workers(2, exclude={victim})
    assert set(versions_by_worker(master, address, workers).values()) == {"v2"}

    master.signal(signal.SIGTTIN)  # one more
    workers = master.wait_workers(3)
    assert set(versions_by_worker(master, address, workers).values()) == {"v2"}

    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:  # a hung worker
        sock.sendall(b"who\r\n")
        hung = int(read_line(sock).split()[1])
        sock.sendall(b"block\r\n")
        master.wait_log(rf"worker {hung} was killed by SIGKILL after being blocked")
    workers = master.wait_workers(3, exclude={hung})
    assert set(versions_by_worker(master, address, workers).values()) == {"v2"}

    app.write_text("this is not python\n")  # a deploy half done: crashes change nothing
    mark = master.mark()
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    workers = master.wait_workers(3, exclude={victim})
    assert set(versions_by_worker(master, address, workers).values()) == {"v2"}
    assert "failed to boot" not in "\n".join(master.lines[mark:])
    assert master.proc.poll() is None
    assert master.stop() == 0


def test_generation_numbers_in_the_log_say_which_code_runs(start, app_dir):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "1")
    master.wait_ready()
    (app_dir / "app.py").write_text(APP.replace('"v1"', '"v2"'))
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload done: generation 2")
    (victim,) = master.wait_workers(1)
    mark = master.mark()
    os.kill(victim, signal.SIGKILL)
    master.wait_log(r"forked worker \d+ \(generation 2\)", after=mark)
    assert master.stop() == 0


def test_a_reload_imports_once_in_the_master_not_in_every_worker(start, app_dir):
    """The application's import-time code runs once per generation (in the master), however
    many workers the generation forks."""
    counting = APP + (
        "\nwith open('imports.log', 'a') as _f:\n"
        "    _f.write(f'{os.getpid()}\\n')\n")
    (app_dir / "app.py").write_text(counting)
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "3")
    master.wait_ready()
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload done")
    imports = Path(app_dir / "imports.log").read_text().split()
    assert imports == [str(master.pid)] * 2, imports
    assert master.stop() == 0
