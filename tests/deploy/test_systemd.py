"""systemd integration for real: socket activation through ``systemd-socket-activate`` and every
notification read from our own datagram socket given as ``NOTIFY_SOCKET``.

The notification socket asks for the sender's credentials (``SO_PASSCRED``), so the tests check
that every datagram comes from the master, never from a worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, need_program
from master_support import DEADLINE, READ_TIMEOUT, ask, greensrv_argv, process_env, read_line

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="systemd's protocols are Linux-only")

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class NotifyReceiver:
    """A unix datagram socket in the abstract namespace collecting ``(sender pid, lines, when
    received)``."""

    def __init__(self) -> None:
        self.name = f"@greensrv-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[int, list[str], float]] = []  # sender, lines, received
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096,
                                                          socket.CMSG_SPACE(_CREDENTIALS.size))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = next((_CREDENTIALS.unpack(cdata)[0] for level, kind, cdata in ancillary
                        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), -1)
            with self._changed:
                self.messages.append((pid, data.decode().split("\n"), time.monotonic()))
                self._changed.notify_all()

    def wait(self, line: str, after: int = 0, timeout: float = DEADLINE) -> int:
        """The index of the first datagram past ``after`` holding ``line``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(self.messages)):
                    if line in self.messages[index][1]:
                        return index
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {line!r} notification within {timeout} s: {self.messages}")
                self._changed.wait(left)

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notifications():
    receiver = NotifyReceiver()
    yield receiver
    receiver.close()


def field(lines: list[str], key: str) -> str | None:
    return next((line[len(key) + 1:] for line in lines if line.startswith(key + "=")), None)


def test_master_notifies_ready_reloading_watchdog_and_stopping(start, notifications):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2",
                   NOTIFY_SOCKET=notifications.name, WATCHDOG_USEC="200000")
    master.wait_ready()
    ready = notifications.wait("READY=1")
    status = field(notifications.messages[ready][1], "STATUS")
    assert status is not None and "2 worker(s)" in status
    notifications.wait("WATCHDOG=1", after=ready)
    notifications.wait("WATCHDOG=1", after=notifications.wait("WATCHDOG=1", after=ready) + 1)

    before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    master.signal(signal.SIGHUP)
    reloading = notifications.wait("RELOADING=1", after=ready)
    usec = int(field(notifications.messages[reloading][1], "MONOTONIC_USEC") or 0)
    assert before_usec <= usec <= before_usec + int(DEADLINE * 1e6)
    notifications.wait("READY=1", after=reloading)

    master.signal(signal.SIGTERM)
    notifications.wait("STOPPING=1", after=reloading)
    assert master.wait_exit() == 0
    senders = {pid for pid, *_ in notifications.messages}
    assert senders == {master.pid}, "every notification comes from the master"


def test_single_process_server_notifies_ready_watchdog_and_stopping(start, app_dir,
                                                                    notifications):
    (app_dir / "single.py").write_text(
        "import logging\n"
        "import greensrv\n"
        "from app import handler\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "greensrv.serve_forever(handler, port=0)\n")
    server = start(argv=[sys.executable, "single.py"], NOTIFY_SOCKET=notifications.name,
                   WATCHDOG_USEC="200000")
    server.wait_log("listening on")
    ready = notifications.wait("READY=1")
    status = field(notifications.messages[ready][1], "STATUS") or ""
    assert re.search(r"serving on 127\.0\.0\.1:\d+$", status), status  # as the master says it
    notifications.wait("WATCHDOG=1", after=ready)
    server.signal(signal.SIGTERM)
    notifications.wait("STOPPING=1", after=ready)
    assert server.wait_exit() == 0
    assert {pid for pid, *_ in notifications.messages} == {server.pid}


def test_master_status_says_draining_before_it_stops(start, notifications):
    master = start("app:handler", "-b", "127.0.0.1:0", "--drain-delay", "0.5",
                   NOTIFY_SOCKET=notifications.name)
    master.wait_ready()
    ready = notifications.wait("READY=1")
    master.signal(signal.SIGTERM)
    stopping = notifications.wait("STOPPING=1", after=ready)
    statuses = [field(lines, "STATUS") or "" for _, lines, _ in
                notifications.messages[ready + 1:stopping]]
    assert any("draining for 0.5 s" in status for status in statuses), statuses
    assert master.wait_exit() == 0


def test_single_process_usr1_reopens_and_drain_status(start, app_dir, notifications):
    (app_dir / "single.py").write_text(
        "import logging\n"
        "import greensrv\n"
        "from app import handler\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "greensrv.serve_forever(handler, port=0, drain_delay=0.5)\n")
    server = start(argv=[sys.executable, "single.py"], NOTIFY_SOCKET=notifications.name)
    server.wait_log("listening on")
    ready = notifications.wait("READY=1")
    server.signal(signal.SIGUSR1)  # logrotate's signal: reopen log files, keep serving
    server.wait_log("SIGUSR1: reopening log files")
    assert server.proc.poll() is None
    server.signal(signal.SIGTERM)
    draining = notifications.wait("STATUS=greensrv: draining for 0.5 s, then stopping",
                                  after=ready)
    notifications.wait("STOPPING=1", after=draining)
    assert server.wait_exit() == 0


def test_watchdog_pings_pause_while_a_worker_hub_is_blocked(start, notifications):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "1", "--worker-timeout", "3",
                   NOTIFY_SOCKET=notifications.name, WATCHDOG_USEC="100000")
    address = master.wait_ready()
    notifications.wait("WATCHDOG=1")
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"block\r\n")
        blocked_at = time.monotonic()
        blocked = master.wait_log(r"worker (\d+) blocked for")
        master.wait_log(rf"worker {blocked.group(1)} was killed")
    ask(address, "replaced")  # the replacement serves, and the pings go on
    resumed = notifications.wait("WATCHDOG=1", after=len(notifications.messages))
    with notifications._changed:
        pings = [when for _, lines, when in notifications.messages[:resumed + 1]
                 if "WATCHDOG=1" in lines]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False) if b > blocked_at]
    # Every 50 ms while healthy. Heartbeats come every 0.75 s (worker_timeout / 4); the pings
    # stop two missed beats (1.5 s) into the block and resume once the worker is killed at 3 s.
    assert max(gaps) > 0.75, gaps
    assert master.stop() == 0


# -- socket activation ------------------------------------------------------------------------

ACTIVATED_APP = '''\
import os


def handler(conn):
    for line in conn:
        conn.put(f"{os.environ.get('LISTEN_FDS', '-')} {os.getpid()} {line}")
'''



@contextlib.contextmanager
def activate(app_dir: Path, ports: list[int], names: str,
             *command: str) -> Iterator[subprocess.Popen]:
    """``systemd-socket-activate`` listening on ``ports``; it execs ``command`` on the first
    connection, passing the sockets from fd 3 on with ``LISTEN_FDNAMES=names``. Killed if
    still running at the end of the block."""
    tool = need_program("systemd-socket-activate", "systemd")
    (app_dir / "activated.py").write_text(ACTIVATED_APP)
    env = process_env(app_dir)
    argv = [tool, *[f"--listen=127.0.0.1:{port}" for port in ports], f"--fdname={names}"]
    argv += [f"--setenv={key}={env[key]}" for key in ("PYTHONPATH", "PYTHONUNBUFFERED")]
    proc = subprocess.Popen([*argv, *command], cwd=app_dir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def connect_when_listening(port: int) -> socket.socket:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "systemd-socket-activate never listened"
            time.sleep(0.02)  # poll interval, not synchronisation


def finish(proc: subprocess.Popen, sig: int | None = signal.SIGTERM) -> tuple[int, str]:
    if sig is not None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"did not exit: {err}")
    return proc.returncode, err


def test_socket_activation_serves_the_named_sockets_it_was_passed(app_dir):
    web, admin = free_port(), free_port()
    command = greensrv_argv("activated:handler", "-b", "systemd", "-w", "2")
    with activate(app_dir, [web, admin], "web:admin", *command) as proc:
        with connect_when_listening(web) as sock:  # the first connection starts greensrv
            sock.sendall(b"hello\r\n")
            listen_fds, pid, line = read_line(sock).split()
        assert (listen_fds, line) == ("-", "hello")  # the variables were removed
        assert int(pid) != proc.pid  # a worker answered
        assert ask(("127.0.0.1", admin), "admin").endswith(" admin")
        code, err = finish(proc)
    assert code == 0, err
    assert f"127.0.0.1:{web}, 127.0.0.1:{admin}" in err


def test_socket_activation_by_name_and_in_a_single_process_server(app_dir):
    web, admin = free_port(), free_port()
    (app_dir / "single_activated.py").write_text(
        "import logging\n"
        "import greensrv\n"
        "from activated import handler\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "greensrv.serve_forever(handler, listen='systemd:admin')\n")
    command = (sys.executable, "single_activated.py")
    with activate(app_dir, [web, admin], "web:admin", *command) as proc:
        with connect_when_listening(admin) as sock:
            sock.sendall(b"one\r\n")
            _, pid, _ = read_line(sock).split()
        assert int(pid) == proc.pid  # exec'd in place, no master
        code, err = finish(proc)
    assert code == 0, err
    ours = "\n".join(line for line in err.splitlines() if "greensrv" in line)
    assert f"listening on 127.0.0.1:{admin}" in ours and str(web) not in ours, err


def test_an_unknown_systemd_name_is_a_clear_error_naming_it(app_dir):
    port = free_port()
    command = greensrv_argv("activated:handler", "-b", "systemd:api")
    with activate(app_dir, [port], "web", *command) as proc:
        connect_when_listening(port).close()
        code, err = finish(proc, sig=None)
    assert code != 0
    ours = [line for line in err.splitlines() if line.startswith("greensrv")]
    assert len(ours) == 1 and "'systemd:api'" in ours[0] and "web" in ours[0], err


def test_systemd_without_passed_sockets_is_a_clear_error(app_dir):
    env = process_env(app_dir, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))  # not the child's
    result = subprocess.run(greensrv_argv("app:handler", "-b", "systemd"), cwd=app_dir,
                            env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode != 0
    assert "systemd passed no sockets" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
