"""Helpers shared by the tests (plain functions and classes; the fixtures live in conftest.py).

Free ports, certificates, a process's memory, a line client over a gevent socket, and the
waits every test bounds; one place for each, so that no test file writes its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import gevent
import gevent.socket
import gevent.ssl
import pytest
from gevent.event import AsyncResult
from gevent.queue import Queue

#: Bound for a wait that normally takes milliseconds.
WAIT = 5.0

#: Set by ``.ci/run``: a test whose outside program is missing fails instead of skipping, so CI
#: never passes by silently skipping a real peer.
REQUIRE_PEERS = os.environ.get("GREENSRV_REQUIRE_PEERS") == "1"


def need_program(program: str, package: str) -> str:
    """The path of ``program``; skip with a one-line reason naming ``package`` when missing.

    Under ``GREENSRV_REQUIRE_PEERS=1`` a missing program fails the test instead.
    """
    path = shutil.which(program)
    if path is None:
        missing(f"needs {program} (install the Debian package {package})")
    return path  # type: ignore[return-value]


def missing(reason: str) -> None:
    """Skip with ``reason``, or fail with it under ``GREENSRV_REQUIRE_PEERS=1``."""
    if REQUIRE_PEERS:
        pytest.fail(f"{reason}; GREENSRV_REQUIRE_PEERS=1 forbids skipping", pytrace=False)
    pytest.skip(reason)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for localhost and 127.0.0.1, made by the openssl CLI.

    Skips (or fails under ``GREENSRV_REQUIRE_PEERS=1``) when ``openssl`` is not installed.
    """
    openssl = need_program("openssl", "openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    """A process's resident set size now (``/proc/PID/statm``, in pages)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the highest RSS since the process started or since :func:`reset_peak_rss`."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def reset_peak_rss(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux: write 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def echo(conn) -> None:
    """The handler most tests serve: every line back."""
    for line in conn:
        conn.put(line)


def wait_for_connection(server, barrier, n: int = 1) -> None:
    """After a barrier every client that connected has been accepted and registered."""
    barrier()
    assert len(server.connections) >= n


def connect_refused(address) -> bool:
    """True when a connect to ``address`` is refused (nobody listens there any more)."""
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    try:
        sock.connect(address)
    except ConnectionRefusedError:
        return True
    finally:
        sock.close()
    return False


def _openssl(*args: str) -> None:
    openssl = need_program("openssl", "openssl")
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


def signed_certificates(d: Path) -> dict[str, str]:
    """A CA and, signed by it, a server certificate for 127.0.0.1 and a client certificate, in
    ``d``: paths by name (``ca``, ``server``, ``server_key``, ``client``, ``client_key``)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=greensrv test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    for name, subject, ext in (("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1"),
                               ("client", "/CN=client-one", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    return {k: str(d / f"{k}.pem") for k in ("ca", "server", "client")} | {
        "server_key": str(d / "server.key"), "client_key": str(d / "client.key")}


def client_context(pki: dict[str, str], with_cert: bool) -> ssl.SSLContext:
    """A gevent client TLS context trusting ``pki``'s CA, with its client certificate or not."""
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki["ca"])
    if with_cert:
        context.load_cert_chain(pki["client"], pki["client_key"])
    return context


def read_line(sock) -> bytes:
    """One line off a socket, a byte at a time (so nothing after it is consumed)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def wait_for(event, what: str, timeout: float = WAIT):
    """Wait on an Event/AsyncResult/Queue; fail with ``what`` if it does not happen in time."""
    try:
        if isinstance(event, (AsyncResult, Queue)):
            return event.get(timeout=timeout)
    except (gevent.Timeout, gevent.queue.Empty):
        pytest.fail(f"timed out waiting for {what}")
    assert event.wait(timeout), f"timed out waiting for {what}"
    return None


def run_handler(make_server, body, **options):
    """A server whose handler runs ``body(conn)``; its result or exception goes to ``outcome``.

    Client errors are ignored unless ``client_error`` is given.
    """
    outcome = AsyncResult()

    def handler(conn):
        try:
            outcome.set(body(conn))
        except BaseException as exc:
            outcome.set_exception(exc)
            raise

    options.setdefault("client_error", lambda conn, exc: None)
    server = make_server(handler, **options)
    return server, outcome


def small_send_buffer(sock, address):
    """client_pre_connect: a tiny kernel send buffer, so output queues in the connection."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


def recv_exactly(sock, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


#: Seconds a client read may wait before the test fails: far above any loopback round trip.
CLIENT_TIMEOUT = 5.0


class Client:
    """A gevent TCP client with line helpers and bounded reads."""

    def __init__(self, address, timeout: float = CLIENT_TIMEOUT):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        if isinstance(address, tuple) and ":" in address[0]:
            family = socket.AF_INET6
        self.sock = gevent.socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_some(self) -> bytes:
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        return self.sock.recv(65536)

    def readline(self) -> bytes:
        """One line with its terminator; b'' at EOF."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                line, self.buf = self.buf, b""
                return line
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"EOF after {len(self.buf)} of {n} bytes")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_all(self) -> bytes:
        """Everything until the server closes."""
        chunks = [self.buf]
        self.buf = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """TERM by PID (Popen signals its own child only), KILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def haproxy_servers(stats_socket: Path | str, prefix: str) -> dict[str, dict[str, str]]:
    """HAProxy's ``show stat`` rows of the servers named ``prefix...``: name → column → value
    (``status``, ``weight``, ``scur``, ``stot``...), from its admin socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(stats_socket))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {row["svname"]: row for row in rows if row["svname"].startswith(prefix)}


def run_only_when_selected(config, items, marker: str, how: str) -> None:
    """``pytest_collection_modifyitems`` of a suite that runs only under ``-m MARKER``: a plain
    ``pytest`` collects its tests but skips them, saying ``how`` to run them."""
    if marker in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason=how)
    for item in items:
        if item.get_closest_marker(marker) is not None:
            item.add_marker(skip)


def poll(what: str, check, timeout: float = 20.0, interval: float = 0.05):
    """Call ``check()`` (from a thread, not a greenlet: it sleeps) until it returns something
    true, and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)  # poll interval, not synchronisation
