"""Every example in examples/ runs as a real process and behaves as its docstring says.

Each test starts an example with ``sys.executable`` on a free loopback port, waits until it
accepts TCP connections (polling ``connect`` against a deadline), drives it over real sockets,
checks the exact bytes, then signals it and checks that it exits with status 0.
"""

from __future__ import annotations

import codecs
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import free_port, need_program
from redis_server import redis_server  # noqa: F401 - fixture

import greensrv

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: The directory holding the greensrv package the tests import, so the example processes run
#: the same code (an installed copy under tox, the working tree otherwise).
PACKAGE_ROOT = Path(greensrv.__file__).resolve().parent.parent

#: Upper bound for anything that should take a fraction of a second on an idle machine.
DEADLINE = 20.0
#: How long a client waits for one expected reply before the test fails.
READ_TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


# -- helpers ----------------------------------------------------------------------------------



class Client:
    """A blocking test client over a plain or TLS socket, reading with a timeout."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(READ_TIMEOUT)
        self.sock = sock
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def read_line(self) -> bytes:
        """The next line including its ``\\r\\n``; fails on EOF before one arrives."""
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"EOF before a complete line; got {bytes(self.buf)!r}")
        end = self.buf.index(b"\r\n") + 2
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"EOF after {len(self.buf)} of {n} bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_until_eof(self) -> bytes:
        """Everything up to the server's close; a reset counts as a close."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def close(self) -> None:
        self.sock.close()


class Example:
    """One example server running as a subprocess; its output goes to a log file."""

    def __init__(self, name: str, args: tuple[str, ...], log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.clients: list[Client] = []
        self.log_path = log_path
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(self.port), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _connect_when_listening(self, source: str | None = None) -> socket.socket:
        """Poll ``connect`` until the example listens; fail if it exits or the deadline passes."""
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return socket.create_connection(
                    ("127.0.0.1", self.port), timeout=READ_TIMEOUT,
                    source_address=(source, 0) if source else None,
                )
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.name} did not listen within {DEADLINE} s:\n{self.log()}")
                time.sleep(0.02)  # poll interval, not synchronisation

    def wait_ready(self) -> None:
        """Return once the example accepts TCP connections (the probe is closed at once)."""
        self._connect_when_listening().close()

    def wait_refusing(self) -> None:
        """Poll until new connections are refused (the listener is closed)."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except ConnectionRefusedError:
                return
            time.sleep(0.02)  # poll interval, not synchronisation
        pytest.fail(f"{self.name} still accepts connections after being stopped:\n{self.log()}")

    def connect(self, source: str | None = None) -> Client:
        """A client, connected as soon as the example listens (so it can be the readiness check)."""
        client = Client(self._connect_when_listening(source))
        self.clients.append(client)
        return client

    def connect_tls(self, cafile: Path) -> Client:
        ctx = ssl.create_default_context(cafile=str(cafile))
        raw = self._connect_when_listening()
        client = Client(ctx.wrap_socket(raw, server_hostname="localhost"))
        self.clients.append(client)
        return client

    def assert_stops_cleanly(self, sig: int | None = signal.SIGTERM) -> None:
        """Send ``sig`` (None: it was sent already); the example must exit 0 without a traceback."""
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=DEADLINE + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit after signal {sig}:\n{self.log()}")
        assert rc == 0, f"{self.name} exited with {rc} after signal {sig}:\n{self.log()}"
        assert "Traceback" not in self.log(), f"{self.name} logged an error:\n{self.log()}"
        # No example configures logging: serve_forever()'s own stderr log says where it listened.
        assert f"listening on 127.0.0.1:{self.port}" in self.log(), self.log()

    def cleanup(self) -> None:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[Callable[..., Example]]:
    """Start ``examples/NAME.py`` with extra arguments; killed and reaped after the test."""
    started: list[Example] = []

    def start(name: str, *args: str, ready: bool = True) -> Example:
        example = Example(name, args, tmp_path / f"{name}-{len(started)}.log")
        started.append(example)
        if ready:
            example.wait_ready()
        return example

    yield start
    for example in started:
        example.cleanup()


# -- every example ----------------------------------------------------------------------------

ALL_EXAMPLES = ["rot13", "echo", "echo_socket", "echo_lowercase", "block_ip", "chat", "chargen",
                "delayed_start", "tls_echo", "redis_lite", "tcp_proxy", "redis_client",
                "chat_client", "chat_cluster"]


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_example_has_help(name: str) -> None:
    """``python examples/NAME.py --help`` works and documents ``--port``."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
                          capture_output=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert b"--port" in done.stdout


# -- rot13 (the POE synopsis) -----------------------------------------------------------------


def test_rot13_greets_then_answers_each_line_in_rot13(run_example: Callable[..., Example]) -> None:
    server = run_example("rot13")
    client = server.connect()
    assert client.read_line() == b"Smile from the server!\r\n"
    client.send(b"Hello, World\r\n")
    assert client.read_line() == b"Uryyb, Jbeyq\r\n"
    client.send(b"abc XYZ\n")  # a bare LF ends a line too
    assert client.read_line() == b"nop KLM\r\n"
    client.close()
    server.assert_stops_cleanly()


def test_rot13_sigterm_refuses_new_clients_and_flushes_every_reply(
    run_example: Callable[..., Example],
) -> None:
    """SIGTERM closes the listener; a live client still gets every reply, then EOF; exit 0."""
    server = run_example("rot13")
    client = server.connect()
    assert client.read_line() == b"Smile from the server!\r\n"
    lines = [f"line {i} of the pipeline" for i in range(2000)]
    client.send("".join(f"{line}\r\n" for line in lines).encode())
    server.proc.send_signal(signal.SIGTERM)
    server.wait_refusing()
    client.sock.shutdown(socket.SHUT_WR)  # this client is done: its handler sees EOF
    expected = "".join(f"{codecs.encode(line, 'rot13')}\r\n" for line in lines).encode()
    assert client.read_until_eof() == expected
    server.assert_stops_cleanly(sig=None)


def test_rot13_sigterm_ends_an_idle_client_after_its_replies(
    run_example: Callable[..., Example],
) -> None:
    """A client that stays connected gets all its replies, then EOF once the grace ends."""
    server = run_example("rot13")
    client = server.connect()
    assert client.read_line() == b"Smile from the server!\r\n"
    client.send(b"first\r\nsecond\r\n")
    assert client.read_line() == b"svefg\r\n"  # the server has read the lines
    server.proc.send_signal(signal.SIGTERM)
    # serve_forever's stop() gives live clients shutdown_timeout (10 s by default) to finish,
    # then ends their input; the handler returns and the connection closes gracefully.
    client.sock.settimeout(DEADLINE)  # longer than that grace
    assert client.read_until_eof() == b"frpbaq\r\n"
    server.assert_stops_cleanly(sig=None)


# -- echo -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_echo_returns_each_line(run_example: Callable[..., Example], sig: int) -> None:
    server = run_example("echo")
    client = server.connect()
    client.send(b"hello world\r\n")
    assert client.read_line() == b"hello world\r\n"
    client.send(b"one\r\ntwo\nthree\r\n")
    assert client.read_exactly(len(b"one\r\ntwo\r\nthree\r\n")) == b"one\r\ntwo\r\nthree\r\n"
    client.close()
    server.assert_stops_cleanly(sig)


# -- echo_socket (mod_perl's EchoSocket) ------------------------------------------------------


def test_echo_socket_echoes_raw_bytes_until_a_newline_only_chunk(
    run_example: Callable[..., Example],
) -> None:
    server = run_example("echo_socket")
    client = server.connect()
    for chunk in (b"Hello\r\n", b"fOo BaR\n", b"\x00\xff not a line at all"):
        client.send(chunk)
        assert client.read_exactly(len(chunk)) == chunk
    client.send(b"\r\n")
    assert client.read_until_eof() == b""
    client.close()
    server.assert_stops_cleanly()


# -- echo_lowercase (mod_perl's EchoBB) -------------------------------------------------------


def test_echo_lowercase_output_filter_lowercases_replies(
    run_example: Callable[..., Example],
) -> None:
    server = run_example("echo_lowercase")
    client = server.connect()
    client.send(b"Hello\r\n")
    assert client.read_line() == b"hello\r\n"
    client.send(b"fOo BaR\r\n")
    assert client.read_line() == b"foo bar\r\n"
    client.send(b"\r\n")  # the empty line is echoed, then the server closes
    assert client.read_until_eof() == b"\r\n"
    client.close()
    server.assert_stops_cleanly()


# -- block_ip (mod_perl's BlockIP2) -----------------------------------------------------------


def test_block_ip_drops_blocked_clients_before_any_reply(
    run_example: Callable[..., Example],
) -> None:
    """127.0.0.1 is blocked; a client from 127.0.0.2 (still loopback) is served."""
    server = run_example("block_ip", "--block", "127.0.0.1", "--block", "10.0.0.4")
    blocked = server.connect()
    assert blocked.read_until_eof() == b"", "a blocked client must get no byte"
    blocked.close()
    try:
        allowed = server.connect(source="127.0.0.2")
    except OSError as exc:
        pytest.skip(f"127.0.0.2 is not usable as a loopback source here: {exc}")
    assert allowed.read_line() == b"Hello 127.0.0.2\r\n"
    allowed.send(b"ping\r\n")
    assert allowed.read_line() == b"ping\r\n"
    allowed.close()
    server.assert_stops_cleanly()
    assert "IP 127.0.0.1 is blocked" in server.log()


# -- chat -------------------------------------------------------------------------------------


def test_chat_broadcasts_each_line_to_the_others(run_example: Callable[..., Example]) -> None:
    # No readiness probe: a probe would be a chat client too, and its departure would race the
    # first real client's arrival. The first connect() polls until the server listens instead.
    server = run_example("chat", ready=False)

    def join(others: int) -> tuple[Client, str]:
        client = server.connect()
        nick = "{}:{}".format(*client.sock.getsockname()[:2])
        assert client.read_line() == f"Welcome, {nick}. {others} other(s) here.\r\n".encode()
        return client, nick

    a, nick_a = join(0)
    b, nick_b = join(1)
    assert a.read_line() == f"* {nick_b} joined\r\n".encode()
    c, nick_c = join(2)
    for other in (a, b):
        assert other.read_line() == f"* {nick_c} joined\r\n".encode()

    a.send(b"hello, all\r\n")
    for other in (b, c):
        assert other.read_line() == f"<{nick_a}> hello, all\r\n".encode()
    c.send(b"hi\r\n")
    # a's next line is c's message: a was not sent its own line back.
    assert a.read_line() == f"<{nick_c}> hi\r\n".encode()
    assert b.read_line() == f"<{nick_c}> hi\r\n".encode()

    b.send(b"/quit\r\n")
    assert b.read_until_eof() == b"B'bye!\r\n"
    b.close()
    for other in (a, c):
        assert other.read_line() == f"* {nick_b} left\r\n".encode()

    c.close()  # a plain disconnect is announced too
    assert a.read_line() == f"* {nick_c} left\r\n".encode()
    a.close()
    server.assert_stops_cleanly()


def test_chat_cluster_shares_the_room_between_two_processes(
    run_example: Callable[..., Example], redis_server: tuple[str, int],  # noqa: F811
) -> None:
    """Two separate chat_cluster processes on one Redis: every line reaches the other process's
    clients too, never its sender; /quit and departures are announced everywhere."""
    url = "redis://{}:{}/0".format(*redis_server)
    one = run_example("chat_cluster", "--redis-url", url, ready=False)
    two = run_example("chat_cluster", "--redis-url", url, ready=False)

    def join(server: Example) -> tuple[Client, str]:
        client = server.connect()
        nick = "{}:{}".format(*client.sock.getsockname()[:2])
        assert client.read_line() == f"Welcome, {nick}.\r\n".encode()
        return client, nick

    a, nick_a = join(one)
    b, nick_b = join(two)
    assert a.read_line() == f"* {nick_b} joined\r\n".encode()
    c, nick_c = join(one)
    for other in (a, b):
        assert other.read_line() == f"* {nick_c} joined\r\n".encode()
    for i in range(20):  # in order per sender
        a.send(f"line {i}\r\n".encode())
    for other in (b, c):
        for i in range(20):
            assert other.read_line() == f"<{nick_a}> line {i}\r\n".encode()
    b.send(b"hi\r\n")
    assert a.read_line() == f"<{nick_b}> hi\r\n".encode()  # a never got its own lines
    assert c.read_line() == f"<{nick_b}> hi\r\n".encode()
    b.send(b"/quit\r\n")
    assert b.read_until_eof() == b"B'bye!\r\n"
    for other in (a, c):
        assert other.read_line() == f"* {nick_b} left\r\n".encode()
    for client in (a, c):
        client.close()
    one.assert_stops_cleanly()
    two.assert_stops_cleanly()


# -- chargen ----------------------------------------------------------------------------------


def chargen_cycle() -> bytes:
    """One full RFC 864 cycle: 95 lines of 72 printable characters, each shifted by one."""
    printable = bytes(range(32, 127))
    doubled = printable * 2
    return b"".join(doubled[i : i + 72] + b"\r\n" for i in range(95))


def assert_chargen_prefix(data: bytes) -> None:
    cycle = chargen_cycle()
    expected = cycle * (len(data) // len(cycle) + 1)
    assert data == expected[: len(data)], "the stream is not the RFC 864 pattern"


def test_chargen_streams_the_pattern_and_sigusr1_stops_it(
    run_example: Callable[..., Example],
) -> None:
    """A reader gets the exact pattern; a client that never reads does not stop SIGUSR1."""
    server = run_example("chargen")
    stalled = server.connect()  # never reads: the server holds at most one chunk for it
    reader = server.connect()
    received = reader.read_exactly(1 << 20)
    assert_chargen_prefix(received)

    server.proc.send_signal(signal.SIGUSR1)
    received += reader.read_until_eof()
    assert_chargen_prefix(received)
    assert len(received) % 74 == 0, "the chunk in flight was not flushed whole"
    server.assert_stops_cleanly(sig=None)
    stalled.close()


# -- delayed_start ----------------------------------------------------------------------------


def test_delayed_start_keeps_early_clients_in_the_backlog_until_initialised(
    run_example: Callable[..., Example],
) -> None:
    """During initialisation a client is neither refused nor served; afterwards it is served."""
    server = run_example("delayed_start", "--init-seconds", "3")
    early = server.connect()  # connect() succeeding: the kernel queued it, nobody refused it
    early.sock.settimeout(1.0)
    with pytest.raises(socket.timeout):
        early.sock.recv(1)  # not served while the server is initialising
    early.sock.settimeout(READ_TIMEOUT)
    assert early.read_line() == b"ready\r\n"
    early.send(b"hello\r\n")
    assert early.read_line() == b"5\r\n"
    late = server.connect()
    assert late.read_line() == b"ready\r\n"
    early.close()
    late.close()
    server.assert_stops_cleanly()


# -- tls_echo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [(), ("--pre-connect",)], ids=["ssl_context", "pre_connect"])
def test_tls_echo_over_a_verified_tls_connection(
    run_example: Callable[..., Example], certificate: tuple[str, str], mode: tuple[str, ...],
) -> None:
    cert, key = certificate
    # No plain-TCP readiness probe: it would be a failed handshake in the log.
    server = run_example("tls_echo", "--cert", str(cert), "--key", str(key), *mode, ready=False)
    client = server.connect_tls(cert)
    client.send(b"hello over TLS\r\n")
    assert client.read_line() == b"hello over TLS\r\n"
    other = server.connect_tls(cert)  # a second client is served alongside the first
    other.send(b"second\r\n")
    assert other.read_line() == b"second\r\n"
    client.send(b"quit\r\n")
    assert client.read_until_eof() == b"B'bye!\r\n"
    client.close()
    other.close()
    server.assert_stops_cleanly()


def test_tls_echo_with_openssl_s_client(
    run_example: Callable[..., Example], certificate: tuple[str, str],
) -> None:
    cert, key = certificate
    server = run_example("tls_echo", "--cert", str(cert), "--key", str(key), ready=False)
    server.connect_tls(cert).close()  # the readiness probe, in TLS
    done = subprocess.run(
        [need_program("openssl", "openssl"), "s_client", "-connect", f"127.0.0.1:{server.port}",
         "-servername", "localhost", "-CAfile", str(cert), "-verify_return_error", "-quiet"],
        input=b"hello from s_client\nquit\n", capture_output=True, timeout=DEADLINE,
    )
    assert done.stdout == b"hello from s_client\r\nB'bye!\r\n", done.stderr
    assert done.returncode == 0, done.stderr
    server.assert_stops_cleanly()
