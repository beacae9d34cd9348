"""The admin endpoint and the agent port of a single-process server, over real sockets:
/livez, /readyz, /metrics, bad requests, HAProxy's agent line, and drain_delay."""

from __future__ import annotations

import gevent
import gevent.socket
import pytest
from helpers import WAIT
from prometheus_client import Counter

import greensrv
from greensrv.admin import MAX_REQUEST_BYTES
from greensrv.errors import StartupError

#: An application metric in the default registry: a single server shows it on /metrics.
HELLOS = Counter("test_admin_hellos", "Hellos the test application heard")


def echo(conn):
    for line in conn:
        if line == "hello":
            HELLOS.inc()
        conn.put(line)


def exchange(address, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes."""
    with gevent.socket.create_connection(address, timeout=WAIT) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def get(address, path: str, method: str = "GET") -> tuple[int, bytes]:
    reply = exchange(address, f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def agent(address) -> bytes:
    return exchange(address, b"")


@pytest.fixture
def ops_server(make_server):
    def make(handler=echo, **options):
        server = make_server(handler, admin="127.0.0.1:0", agent="127.0.0.1:0", **options)
        addresses = server._operations.endpoint.addresses
        return server, addresses["admin"], addresses["agent"]
    return make


def test_livez_readyz_and_not_found(ops_server):
    _, admin, _ = ops_server()
    assert get(admin, "/livez") == (200, b"ok\n")
    assert get(admin, "/readyz") == (200, b"ready\n")
    assert get(admin, "/nothing")[0] == 404
    assert get(admin, "/readyz", method="POST")[0] == 405
    status, body = get(admin, "/readyz", method="HEAD")
    assert status == 200 and body == b""


def test_garbage_and_oversized_requests_get_a_4xx_and_are_closed(ops_server):
    _, admin, _ = ops_server()
    assert exchange(admin, b"\x16\x03\x01 garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_REQUEST_BYTES + 10) + b"\r\n\r\n"
    assert exchange(admin, huge).split(b" ")[1] in (b"400", b"431")


def test_metrics_have_the_fixed_names_and_the_applications_own(ops_server, connect):
    server, admin, _ = ops_server()
    client = connect(server.address)
    client.send(b"hello\n")
    assert client.readline() == b"hello\r\n"
    client.close()
    with gevent.Timeout(WAIT):
        while b'greensrv_connections_closed_total{reason="closed"} 1.0' not in \
                get(admin, "/metrics")[1]:
            gevent.sleep(0.01)  # polling the page until the client's end is counted
    page = get(admin, "/metrics")[1].decode()
    for name in ("greensrv_connections ", "greensrv_connections_accepted_total 1.0",
                 "greensrv_bytes_received_total 6.0", "greensrv_bytes_sent_total 7.0",
                 "greensrv_workers 1.0", "greensrv_worker_restarts_total 0.0",
                 "greensrv_reloads_total 0.0", "greensrv_proxy_rejected_total 0.0",
                 "greensrv_tls_handshake_failures_total 0.0",
                 "greensrv_connection_duration_seconds_count 1.0", "test_admin_hellos_total"):
        assert name in page, name


def test_agent_weight_is_the_free_share_of_capacity(ops_server, connect):
    server, _, agent_address = ops_server(concurrency=4)
    assert agent(agent_address) == b"up ready 100% maxconn:4\n"
    clients = [connect(server.address) for _ in range(3)]
    for client in clients:
        client.send(b"hi\n")
        assert client.readline() == b"hi\r\n"
    assert agent(agent_address) == b"up ready 25% maxconn:4\n"
    unlimited, _, unlimited_agent = ops_server()
    assert agent(unlimited_agent) == b"up ready 100%\n"


def test_drain_delay_turns_not_ready_and_keeps_serving_then_stops(connect):
    server = greensrv.Server(echo, admin="127.0.0.1:0", agent="127.0.0.1:0", drain_delay=0.6)
    server.start()
    addresses = server._operations.endpoint.addresses
    live = connect(server.address)
    stopping = gevent.spawn(server.stop)
    with gevent.Timeout(WAIT):
        while get(addresses["admin"], "/readyz")[0] != 503:
            gevent.sleep(0.01)  # polling until the stop has begun draining
    status, body = get(addresses["admin"], "/readyz")
    assert status == 503 and body.startswith(b"not ready: draining")
    assert agent(addresses["agent"]) == b"drain\n"
    live.send(b"still served\n")
    assert live.readline() == b"still served\r\n"
    newcomer = connect(server.address)  # serving exactly as before: still accepted
    newcomer.send(b"new\n")
    assert newcomer.readline() == b"new\r\n"
    stopping.get(timeout=WAIT + 10)
    assert server.closed


@pytest.mark.parametrize(("options", "match", "error"), [
    (dict(admin="nonsense"), "admin='nonsense'", ValueError),
    (dict(agent="127.0.0.1:http"), "agent=", ValueError),
    (dict(admin=8080), "admin must be", TypeError),
    (dict(drain_delay=-1), "drain_delay", ValueError),
])
def test_bad_operations_options_fail_naming_the_option(options, match, error):
    with pytest.raises(error, match=match):
        greensrv.Server(echo, **options)


def test_an_admin_address_in_use_fails_at_start_naming_it(ops_server):
    _, admin, _ = ops_server()
    taken = f"127.0.0.1:{admin[1]}"
    server = greensrv.Server(echo, admin=taken)
    with pytest.raises(StartupError, match=f"admin='{taken}'.*in use"):
        server.start()
    server.stop()
