"""The fleet of docs/fleet.md on loopback: three greensrv nodes, a real HAProxy, a real Redis.

Each node is a ``greensrv ... --workers 2`` master on its own address (127.0.0.2-4), with
``--proxy-protocol v2``, ``--agent-bind``, ``--admin-bind`` and ``--drain-delay``; the three
share the same port numbers, as machines would. HAProxy runs docs/fleet.md's configuration with
the addresses and intervals replaced. Load clients are threads that do request/response on
long-lived connections through HAProxy and check every reply by sequence number, doing what
docs/fleet.md tells long-lived clients to do on a graceful EOF.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import haproxy_servers, need_program, poll, stop_process
from master_support import DEADLINE, READ_TIMEOUT, MasterProcess, greensrv_argv, process_env

DOC = (Path(__file__).resolve().parents[2] / "docs" / "fleet.md").read_text()
HAPROXY_CONFIG = re.search(r"```haproxy\n(.*?)```", DOC, flags=re.S).group(1)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: ``GREENSRV_FLEET_LONG=1``: the issue's full load (100 clients, longer phases); CI runs the
#: short form so the whole ``fleet`` env stays within its budget on two shared cores.
LONG = os.environ.get("GREENSRV_FLEET_LONG") == "1"
CLIENTS = 100 if LONG else 24
#: HAProxy's check and agent intervals here (docs/fleet.md uses 1 s) and its fall/rise counts.
INTER = 0.2
FALL = 2
RISE = 2
#: The nodes' --drain-delay: several agent intervals, so HAProxy surely sees the drain first.
DRAIN_DELAY = 1.0
#: The nodes' --graceful-timeout: how long connections may finish before they see EOF.
GRACEFUL = 0.5

#: The application every node serves: each reply names the code's version, the node and the
#: worker, then echoes the request's sequence number; FLEET_SLOW slows each reply.
APP = '''\
import os

import gevent

VERSION = "{version}"
NODE = os.environ["FLEET_NODE"]
SLOW = float(os.environ.get("FLEET_SLOW", "0"))


def handler(conn):
    for line in conn:
        if SLOW:
            gevent.sleep(SLOW)
        conn.put(f"{{VERSION}} {{NODE}} {{os.getpid()}} {{line}}")
'''


def shared_free_ports(hosts: list[str], count: int) -> list[int]:
    """``count`` port numbers free on every one of ``hosts`` a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        if port not in ports:
            ports.append(port)
    return ports


def http_get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=READ_TIMEOUT) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Node:
    """One machine of the fleet: a greensrv master with two workers on its own address."""

    def __init__(self, tmp_path: Path, index: int, ports: list[int]) -> None:
        self.name = f"node{index + 1}"
        self.ip = f"127.0.0.{index + 2}"
        self.port, self.agent_port, self.admin_port = ports
        self.dir = tmp_path / self.name
        self.dir.mkdir()
        self.master: MasterProcess | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.ip, self.port

    @property
    def admin(self) -> tuple[str, int]:
        return self.ip, self.admin_port

    def start(self, version: str = "v1", target: str = "fleetapp:handler", *extra: str,
              **env: str) -> MasterProcess:
        """Write the application's ``version`` and start the master; returns once it is ready."""
        (self.dir / "fleetapp.py").write_text(APP.format(version=version))
        argv = greensrv_argv(
            target, "--workers", "2", "--bind", f"{self.ip}:{self.port}",
            "--proxy-protocol", "v2", "--agent-bind", f"{self.ip}:{self.agent_port}",
            "--admin-bind", f"{self.ip}:{self.admin_port}", "--drain-delay", str(DRAIN_DELAY),
            "--graceful-timeout", str(GRACEFUL), *extra)
        self.master = MasterProcess(argv, self.dir, process_env(self.dir, FLEET_NODE=self.name,
                                                                **env))
        self.master.wait_log(r"master \d+ ready")
        return self.master

    def stop(self) -> int:
        assert self.master is not None
        return self.master.stop()

    def kill(self) -> int:
        """SIGKILL to the master and its workers at once: the machine is gone."""
        assert self.master is not None
        workers = self.master.workers()
        for pid in (self.master.pid, *workers):
            os.kill(pid, signal.SIGKILL)
        return len(workers)

    def metric(self, name: str) -> float:
        status, page = http_get(self.admin, "/metrics")
        assert status == 200, page
        match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", page.decode(), flags=re.M)
        assert match, f"{name} not on {self.name}'s /metrics"
        return float(match.group(1))

    def cleanup(self) -> None:
        if self.master is not None:
            self.master.cleanup()


class HAProxy:
    """haproxy in the foreground with docs/fleet.md's configuration over the fleet's nodes."""

    def __init__(self, tmp_path: Path, nodes: list[Node]) -> None:
        self.path = tmp_path
        self.frontend = ("127.0.0.1", shared_free_ports(["127.0.0.1"], 1)[0])
        config = (HAPROXY_CONFIG.replace("bind :7000", "bind {}:{}".format(*self.frontend))
                  .replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock"))
                  .replace("inter 1s", f"inter {int(INTER * 1000)}ms")
                  .replace("fall 2 rise 2", f"fall {FALL} rise {RISE}")
                  .replace("check port 9100", f"check port {nodes[0].admin_port}")
                  .replace("agent-port 9101", f"agent-port {nodes[0].agent_port}"))
        for i, node in enumerate(nodes):
            config = config.replace(f"10.0.0.{i + 1}:7000", "{}:{}".format(*node.address))
        self.config = config
        (tmp_path / "haproxy.cfg").write_text(config)
        self.process = subprocess.Popen(
            [need_program("haproxy", "haproxy"), "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll("HAProxy's stats socket", lambda: (tmp_path / "admin.sock").exists())

    def servers(self) -> dict[str, dict[str, str]]:
        """``node1``... → the stats row (status, weight, stot, ...) from the stats socket."""
        if self.process.poll() is not None:
            pytest.fail(f"haproxy exited:\n{self.config}")
        return haproxy_servers(self.path / "admin.sock", "node")

    def wait_up(self, names: list[str], timeout: float = DEADLINE) -> None:
        """Until each named server is UP with a non-zero weight (checked and agent said up)."""
        def up() -> bool:
            rows = self.servers()
            return all(rows[n]["status"] == "UP" and int(rows[n]["weight"]) > 0 for n in names)
        poll(f"HAProxy to see {names} up", up, timeout)

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Outcome:
    """What the load saw: every reply, every connection, every trouble, by kind."""

    replies: list[tuple[float, float, str, str]] = field(default_factory=list)  # t, lat, ver, node
    connections: list[tuple[float, str, str]] = field(default_factory=list)  # t, node, version
    connects: int = 0
    graceful_eofs: int = 0
    resends: int = 0
    refused: int = 0
    resets: int = 0
    lost: int = 0  # requests abandoned after more than one resend
    wrong: list[str] = field(default_factory=list)


class Load:
    """``clients`` threads, each on one long-lived connection through ``frontend``, sending
    numbered requests one at a time and checking each reply's number.

    On a graceful EOF (before sending, or instead of a reply) a client reconnects and resends
    the one request that had no reply, as docs/fleet.md says; a request needing a second resend,
    a refused connection and a reset are counted, never retried silently. ``churn=True``: a new
    connection for every request (connections counted for the metrics test).
    """

    def __init__(self, frontend, clients: int = CLIENTS, pace: float = 0.01,
                 churn: bool = False) -> None:
        self.frontend = frontend
        self.pace = pace
        self.churn = churn
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.outcome = Outcome()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]
        for thread in self.threads:
            thread.start()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.frontend, timeout=READ_TIMEOUT)
        except ConnectionRefusedError:
            with self.lock:
                self.outcome.refused += 1
            return None
        except ConnectionResetError:
            with self.lock:
                self.outcome.resets += 1
            return None
        with self.lock:
            self.outcome.connects += 1
        return sock

    def _run(self, index: int) -> None:
        sock: socket.socket | None = None
        fresh = 0.0
        buffer = bytearray()
        seq = 0
        while not self.stopping.is_set():
            seq += 1
            request = f"c{index}-{seq}"
            for attempt in range(3):
                if attempt == 2:
                    with self.lock:
                        self.outcome.lost += 1
                    break
                if sock is not None and _eof_pending(sock):
                    with self.lock:
                        self.outcome.graceful_eofs += 1
                    sock.close()
                    sock = None
                if sock is None:
                    fresh = time.monotonic()
                    sock = self._connect()
                    buffer.clear()
                    if sock is None:
                        continue
                began = time.monotonic()
                try:
                    sock.sendall(f"{request}\r\n".encode())
                    reply = _read_line(sock, buffer)
                except (ConnectionResetError, BrokenPipeError):
                    with self.lock:
                        self.outcome.resets += 1
                    sock.close()
                    sock = None
                    continue
                except EOFError:
                    with self.lock:
                        self.outcome.graceful_eofs += 1
                        self.outcome.resends += 1
                    sock.close()
                    sock = None
                    continue
                except TimeoutError:
                    with self.lock:
                        self.outcome.wrong.append(f"no reply to {request!r} in {READ_TIMEOUT} s")
                    sock.close()
                    sock = None
                    break
                self._record(request, reply, began, fresh)
                fresh = 0.0
                if self.churn:
                    sock.close()
                    sock = None
                break
            self.stopping.wait(self.pace)  # the clients' pace, not synchronisation
        if sock is not None:
            sock.close()

    def _record(self, request: str, reply: str, began: float, fresh: float) -> None:
        now = time.monotonic()
        parts = reply.split()
        with self.lock:
            if len(parts) != 4 or parts[3] != request:
                self.outcome.wrong.append(f"sent {request!r}, got {reply!r}")
                return
            version, node = parts[0], parts[1]
            self.outcome.replies.append((began, now - began, version, node))
            if fresh:
                self.outcome.connections.append((fresh, node, version))

    def replies_since(self, mark: float) -> list[tuple[float, float, str, str]]:
        with self.lock:
            return [r for r in self.outcome.replies if r[0] >= mark]

    def stop(self) -> Outcome:
        self.stopping.set()
        for thread in self.threads:
            thread.join(DEADLINE)
            assert not thread.is_alive(), "a load client hangs"
        return self.outcome


def _eof_pending(sock: socket.socket) -> bool:
    """True when the peer has closed (readable, and reading gives nothing)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return False  # the send that follows meets the reset and counts it


def _read_line(sock: socket.socket, buffer: bytearray) -> str:
    while b"\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line.decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Redis:
    """A redis-server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, tmp_path: Path) -> None:
        self.binary = need_program("redis-server", "redis-server")
        self.dir = tmp_path
        self.port = shared_free_ports(["127.0.0.1"], 1)[0]
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll("redis-server to listen", self._listening)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"redis-server exited with {self.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=READ_TIMEOUT).close()
            return True
        except ConnectionRefusedError:
            return False

    def subscribers(self, channel: str) -> int:
        """``PUBSUB NUMSUB channel``: how many connections (workers) listen to the room."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=READ_TIMEOUT) as sock:
            sock.sendall(f"PUBSUB NUMSUB {channel}\r\n".encode())
            buffer = bytearray()
            lines = [_read_line(sock, buffer) for _ in range(4)]  # *2, $len, name, :count
        return int(lines[3].lstrip(":"))

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


class ChatClient:
    """A chat client through HAProxy; a thread files each line it receives with its time."""

    def __init__(self, frontend) -> None:
        self.sock = socket.create_connection(frontend, timeout=READ_TIMEOUT)
        self.sock.settimeout(None)
        self.nick = "{}:{}".format(*self.sock.getsockname())
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buffer = bytearray()
        while True:
            try:
                line = _read_line(self.sock, buffer)
            except (OSError, EOFError):
                return
            with self.changed:
                self.lines.append((time.monotonic(), line))
                self.changed.notify_all()

    def send(self, line: str) -> None:
        self.sock.sendall(f"{line}\r\n".encode())

    def wait_for(self, what: str, check, timeout: float = DEADLINE) -> None:
        """Until ``check(lines)`` is true; fails naming ``what`` and what came."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not check([line for _, line in self.lines]):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.nick} waited for {what}; got {self.lines[-5:]}")
                self.changed.wait(left)

    def messages_from(self, nick: str) -> list[tuple[float, str]]:
        prefix = f"<{nick}> "
        with self.changed:
            return [(t, line[len(prefix):]) for t, line in self.lines if line.startswith(prefix)]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv, as close() does not
        except OSError:
            pass
        self.reader.join(READ_TIMEOUT)
        self.sock.close()
