"""Helpers shared by the connection-level tests (plain functions; fixtures live in conftest)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import gevent
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
