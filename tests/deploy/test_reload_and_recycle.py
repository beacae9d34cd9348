"""``--reload`` (an edit reloads the application as HUP does) and worker recycling
(``--max-worker-connections``): both replace workers with a reload's guarantees, so no client is
refused or reset while they do."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import pytest
from master_support import APP, DEADLINE, FLAKY, READ_TIMEOUT, LoadClients, read_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


@pytest.fixture
def watchfiles():
    """--reload's library: a test dependency (the test extra), optional for users."""
    return pytest.importorskip("watchfiles", reason="the watchfiles package (greensrv[reload])")


def test_an_edit_changes_the_replies_within_3_s_with_no_client_refused(start, app_dir,
                                                                      watchfiles):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2", "--reload")
    address = master.wait_ready()
    master.wait_log(r"--reload: watching")
    load = LoadClients(address, clients=3)
    try:
        load.wait_for_more(300)
        edited = time.monotonic()
        (app_dir / "app.py").write_text(APP.replace('"v1"', '"v2"'))
        deadline = edited + 3.0
        while not any(r[2] == "v2" for r in load.replies[-50:]):
            assert time.monotonic() < deadline, f"still {load.replies[-1]} 3 s after the edit"
            time.sleep(0.01)  # poll interval, not synchronisation
        load.wait_for_more(300)
    finally:
        load.finish()
    assert load.errors == [], load.errors[:5]
    assert master.stop() == 0


def test_an_edit_that_does_not_import_keeps_the_old_code_and_logs_one_line(start, app_dir,
                                                                          watchfiles):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "1", "--reload")
    address = master.wait_ready()
    master.wait_log(r"--reload: watching")
    (worker,) = master.wait_workers(1)
    mark = master.mark()
    (app_dir / "app.py").write_text("def handler(conn:\n")
    master.wait_log(r"reload abandoned, generation 1 keeps serving: .*SyntaxError", after=mark)
    assert master.workers() == {worker}
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"still\r\n")
        assert read_line(sock).startswith("v1 ")
    errors = [line for line in master.lines[mark:] if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "Traceback" not in master.log()
    assert master.stop() == 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_recycling_replaces_workers_without_refusing_or_resetting_anyone(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2",
                   "--max-worker-connections", "50", "--max-worker-connections-jitter", "5")
    address = master.wait_ready()
    master.wait_workers(2)
    fds_before = fd_count(master.pid)
    pids: set[int] = set()
    errors: list[str] = []
    for n in range(1000):
        try:
            with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
                sock.sendall(f"r{n}\r\n".encode())
                version, pid, echoed = read_line(sock).split()
                assert echoed == f"r{n}"
                pids.add(int(pid))
        except (OSError, EOFError) as exc:
            errors.append(f"{n}: {type(exc).__name__}: {exc}")
    assert errors == [], errors[:5]
    assert len(pids) >= 10, sorted(pids)
    master.wait_workers(2)
    deadline = time.monotonic() + DEADLINE
    while fd_count(master.pid) != fds_before:  # the last replaced worker's pipes are closed
        assert time.monotonic() < deadline, (fds_before, fd_count(master.pid))
        time.sleep(0.02)  # poll interval, not synchronisation
    assert "reached its connection limit" in master.log()
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0


def test_a_hup_during_a_reload_starts_another_reload_once_it_is_done(start, app_dir):
    (app_dir / "flaky.py").write_text(FLAKY)
    master = start("flaky:server", "-w", "1")
    address = master.wait_ready()
    (app_dir / "hold").write_text("")
    mark = master.mark()
    master.signal(signal.SIGHUP)
    master.wait_log(r"forking 1 worker\(s\) of generation 2", after=mark)
    master.signal(signal.SIGHUP)
    master.wait_log(r"SIGHUP during a reload: another reload follows this one", after=mark)
    (app_dir / "hold").unlink()
    master.wait_log(r"reload done: generation 2 accepting", after=mark)
    master.wait_log(r"reload done: generation 3 accepting", after=mark)
    (worker,) = master.wait_workers(1)
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"after\r\n")
        assert read_line(sock) == f"flaky {worker} after"
    assert "generation 4" not in master.log()
    assert master.stop() == 0


def test_a_new_worker_that_fails_to_boot_abandons_the_reload(start, app_dir):
    (app_dir / "flaky.py").write_text(FLAKY)
    master = start("flaky:server", "-w", "1")
    address = master.wait_ready()
    (old,) = master.wait_workers(1)
    (app_dir / "db-down").write_text("")
    mark = master.mark()
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload abandoned, generation 1 keeps serving: worker \d+ failed to boot: "
                    r"ConnectionError: database unreachable", after=mark)
    assert master.wait_workers(1) == {old}
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"still\r\n")
        assert read_line(sock) == f"flaky {old} still"
    (app_dir / "db-down").unlink()
    mark = master.mark()
    master.signal(signal.SIGHUP)  # the next reload is not held back by the abandoned one
    master.wait_log(r"reload done: generation 2 accepting", after=mark)
    assert master.stop() == 0
