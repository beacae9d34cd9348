"""Shared fixtures: servers on loopback port 0, gevent clients, and leak checks.

Tests run in the main greenlet; clients use gevent sockets so the server keeps running while a
test waits on a reply. Every wait is bounded: pytest-timeout ends a test that hangs.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket

import gevent
import gevent.hub
import gevent.socket
import gevent.threadpool
import greenlet
import pytest
from helpers import CLIENT_TIMEOUT, Client, echo, self_signed_certificate, signed_certificates

from greensrv.error_log import client_log
from greensrv.testing import serving


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _live_greenlets() -> list[greenlet.greenlet]:
    # gevent's own: the hub, and the resolver's thread-pool workers (started on first use).
    infrastructure = (gevent.hub.Hub, gevent.threadpool._WorkerGreenlet)
    return [g for g in gc.get_objects()
            if isinstance(g, greenlet.greenlet) and not isinstance(g, infrastructure)
            and g and not g.dead and g.parent is not None]


@pytest.fixture(autouse=True)
def fresh_error_log():
    """Each test starts with the process's error log limiter counting afresh (its counts are
    per process: one test's refusals must not silence the next test's first ones)."""
    client_log.flush()
    yield
    client_log.flush()


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves a file descriptor or a running greenlet behind."""
    _ = gevent.get_hub().loop  # the hub's own descriptors are not the test's
    gc.collect()
    fds_before = _open_fds()
    glets_before = {id(g) for g in _live_greenlets()}
    yield
    deadline = gevent.get_hub().loop.now() + 2.0
    while True:
        gc.collect()
        leaked_glets = [g for g in _live_greenlets() if id(g) not in glets_before]
        leaked_fds = _open_fds() - fds_before
        if not leaked_glets and not leaked_fds:
            return
        if gevent.get_hub().loop.now() > deadline:
            break
        gevent.sleep(0.01)  # let closing greenlets finish; bounded by the deadline above
    details = {fd: _fd_target(fd) for fd in leaked_fds}
    pytest.fail(f"leaked greenlets {leaked_glets!r} and descriptors {details!r}")


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture
def make_server(no_leaks):
    """``make_server(handler=None, **options)``: a started server (``greensrv.testing.serving``,
    on 127.0.0.1 and a free port unless told otherwise), stopped after the test."""
    with contextlib.ExitStack() as servers:

        def make(handler=None, **options):
            return servers.enter_context(serving(handler, stop_timeout=1, reraise=False,
                                                 **options))

        yield make


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed (paths)."""
    return signed_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate and its key for localhost and 127.0.0.1, as two paths (needs
    the openssl CLI)."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


@pytest.fixture
def connect():
    """``connect(address)``: a Client, closed after the test."""
    clients: list[Client] = []

    def make(address, timeout: float = CLIENT_TIMEOUT) -> Client:
        client = Client(address, timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def barrier(connect):
    """``barrier()``: two round trips through a separate echo server.

    A reply on another connection means the hub has run full loop iterations since the caller
    acted, so any accept or read the server under test would do on already-ready sockets has
    happened by then.
    """
    with serving(echo, stop_timeout=1, reraise=False) as probe:
        client = connect(probe.address)

        def run():
            for _ in range(2):
                client.send(b"ping\n")
                assert client.readline() == b"ping\r\n"

        yield run
        client.close()


@pytest.fixture
def slow_client():
    """``slow_client(address)``: a gevent socket with a tiny receive buffer, closed after."""
    socks = []

    def make(address):
        sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5.0)
        sock.connect(address)
        socks.append(sock)
        return sock

    yield make
    for sock in socks:
        sock.close()
