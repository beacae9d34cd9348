"""Driving a real ``greensrv`` master process from a test: start, read its log, signal, stop.

The master runs as ``python -m greensrv`` (or a script) in a temporary directory holding the
application module; a thread collects its log line by line so a test can wait for a line with a
deadline instead of sleeping. Worker PIDs come from the kernel (``/proc/PID/task/PID/children``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import greensrv

#: The directory holding the greensrv package under test, so the processes run the same code.
PACKAGE_ROOT = Path(greensrv.__file__).resolve().parent.parent
#: Bound for anything that takes well under a second on an idle machine (a master's start).
DEADLINE = 20.0
#: A client's read timeout: far above any loopback round trip, even on a loaded machine.
READ_TIMEOUT = 10.0

#: The application most tests serve: it names its version and its worker in each reply, and
#: "block" freezes the worker's hub (time.sleep is not monkey-patched), as a buggy handler would.
APP = '''\
import os
import time

VERSION = "v1"


def handler(conn):
    for line in conn:
        if line == "block":
            time.sleep(3600)
        conn.put(f"{VERSION} {os.getpid()} {line}")
'''

#: An application whose `started` fails while the file "db-down" exists in its directory, as
#: one that connects to its database at start does while the database is unreachable; while
#: "hold" exists it is slow to start instead (a reload stays in progress until it is removed).
FLAKY = '''\
import os
import time
import greensrv


def connect(server):
    deadline = time.monotonic() + 30
    while os.path.exists("hold") and time.monotonic() < deadline:
        time.sleep(0.01)
    if os.path.exists("db-down"):
        raise ConnectionError("database unreachable")


def handler(conn):
    for line in conn:
        conn.put(f"flaky {os.getpid()} {line}")


server = greensrv.Server(handler, port=0, started=connect)
'''


def process_env(app_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                        "LISTEN_PID", "LISTEN_FDNAMES")}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), str(app_dir)])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a reload must read the changed source, not a .pyc
    env.update(extra)
    return env


class MasterProcess:
    """One master (or any greensrv process) started with ``argv``; its stderr is collected."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env or process_env(cwd),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     pass_fds=pass_fds)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def mark(self) -> int:
        """A position in the log: ``wait_log(..., after=mark)`` looks only past it."""
        with self._changed:
            return len(self.lines)

    def wait_log(self, pattern: str, timeout: float = DEADLINE, after: int = 0) -> re.Match:
        """The first log line past ``after`` that matches ``pattern``; fails at the deadline."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = after
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self.lines and self.lines[-1] == "<EOF>":
                    pytest.fail(f"exited without logging {pattern!r}:\n{self.log_unlocked()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no log line {pattern!r} within {timeout} s:\n"
                                f"{self.log_unlocked()}")
                self._changed.wait(left)

    def log_unlocked(self) -> str:
        return "\n".join(self.lines)

    def address(self) -> tuple[str, int]:
        """The first TCP address the master serves, from its start-up log line."""
        match = self.wait_log(r"serving (\d+\.\d+\.\d+\.\d+):(\d+)")
        return match.group(1), int(match.group(2))

    def wait_ready(self) -> tuple[str, int]:
        address = self.address()
        self.wait_log(r"master \d+ ready")
        return address

    def workers(self) -> set[int]:
        """The master's live child processes, as the kernel lists them."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in text.split()}

    def wait_workers(self, count: int, exclude: set[int] = frozenset(),  # type: ignore[assignment]
                     timeout: float = DEADLINE) -> set[int]:
        """Poll until exactly ``count`` children, none of them in ``exclude``, are alive."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers()
            if len(pids) == count and not pids & exclude:
                return pids
            if time.monotonic() > deadline:
                pytest.fail(f"wanted {count} workers not in {sorted(exclude)}, have "
                            f"{sorted(pids)}:\n{self.log()}")
            time.sleep(0.02)  # poll interval, not synchronisation

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv} did not exit within {timeout} s:\n{self.log()}")

    def stop(self) -> int:
        """TERM, then the exit status; the master must exit 0 by itself."""
        self.signal(signal.SIGTERM)
        return self.wait_exit()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            workers = self.workers()
            self.proc.kill()
            self.proc.wait()
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reader.join(timeout=5)


def greensrv_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "greensrv", *args]


def ask(address, line: str, timeout: float = READ_TIMEOUT) -> str:
    """Connect, send one line, return the one-line reply (without its terminator)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(line.encode() + b"\r\n")
        return read_line(sock)


def read_line(sock: socket.socket, buffer: bytearray | None = None) -> str:
    buffer = bytearray() if buffer is None else buffer
    while b"\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(f"EOF before a whole line; got {bytes(buffer)!r}")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line.decode()


def pids_serving(address, want: int, tries: int = 1000) -> set[int]:
    """Worker PIDs seen in replies to fresh connections, until ``want`` distinct ones."""
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(int(ask(address, "who").split()[1]))
        if len(seen) >= want:
            break
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LoadClients:
    """Threads that connect, send three lines, read three replies and close, in a loop.

    Every outcome is recorded: the replies (with when each request was made and how long it
    took) and every error by kind. Nothing is retried, so a refused or reset connection shows.
    """

    def __init__(self, address, clients: int = 6) -> None:
        self.address = address
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.replies: list[tuple[float, float, str, int, str]] = []  # start, latency, ver, pid
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            lines = [f"c{index}-{n + k}" for k in range(3)]
            n += 3
            began = time.monotonic()
            try:
                with socket.create_connection(self.address, timeout=READ_TIMEOUT) as sock:
                    sock.sendall("".join(f"{line}\r\n" for line in lines).encode())
                    buffer = bytearray()
                    got = [read_line(sock, buffer) for _ in lines]
            except (OSError, EOFError) as exc:
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latency = time.monotonic() - began
            with self.lock:
                for line, reply in zip(lines, got, strict=True):
                    version, pid, echoed = reply.split()
                    if echoed != line:
                        self.errors.append(f"sent {line!r}, got {reply!r}")
                    self.replies.append((began, latency, version, int(pid), echoed))

    def count(self) -> int:
        with self.lock:
            return len(self.replies)

    def wait_for_more(self, more: int, timeout: float = DEADLINE) -> None:
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, f"load stalled: {self.errors[:5]}"
            time.sleep(0.01)  # poll interval, not synchronisation

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=READ_TIMEOUT + 5)
