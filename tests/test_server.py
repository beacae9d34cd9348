"""The server object: both styles of serving, its lifecycle and what it shows (``server.py``).

Every wait is bounded and event-driven: on a gevent ``Event``/``AsyncResult``, on a reply, or
on a *barrier* (a round trip through a separate probe server, which guarantees the hub has
polled every ready descriptor at least once).
"""

from __future__ import annotations

from gevent.event import Event
from helpers import echo, wait_for

import greensrv

# -- both styles -------------------------------------------------------------------------


def test_handler_style_serves_the_client_and_shuts_down_when_handler_returns(
        make_server, connect):
    def handler(conn):
        conn.put("hello")
        conn.put(conn.get().upper())

    server = make_server(handler)
    client = connect(server.address)
    assert client.readline() == b"hello\r\n"
    client.send(b"abc\n")
    assert client.read_all() == b"ABC\r\n"  # then EOF: shut down when the handler returned


def test_callback_style_calls_client_input_per_record(make_server, connect):
    server = make_server(client_connected=lambda conn: conn.put("Smile from the server!"),
                         client_input=lambda conn, line: conn.put(line[::-1]))
    client = connect(server.address)
    assert client.readline() == b"Smile from the server!\r\n"
    client.send(b"abc\nxyz\n")
    assert client.readline() == b"cba\r\n"
    assert client.readline() == b"zyx\r\n"

# -- started, error -----------------------------------------------------------------------


def test_started_runs_once_when_listening(connect):
    calls = []
    server = greensrv.Server(echo, started=lambda s: calls.append((s, s.started, s.address)))
    assert calls == []
    server.start()
    try:
        assert calls == [(server, True, server.address)]
        server.start()  # already started: not again
        assert len(calls) == 1
        client = connect(server.address)
        client.send(b"x\n")
        assert client.readline() == b"x\r\n"
        client.close()
    finally:
        server.stop(timeout=1)

# -- started, closed, connections membership ----------------------------------------------


def test_started_and_closed_follow_the_lifecycle():
    server = greensrv.Server(echo)
    assert not server.started and not server.closed
    assert server.address is None and server.addresses == []
    server.start()
    assert server.started and not server.closed
    server.stop(timeout=1)
    assert not server.started and server.closed


def test_connections_holds_a_connection_from_before_connected_until_after_disconnected(
        make_server, connect):
    seen = {}
    gone = Event()

    def pre_connect(sock, address):
        seen["pre_connect"] = len(server.connections)
        return sock

    def connected(conn):
        seen["connected"] = conn in server.connections

    def handler(conn):
        seen["handler"] = conn in server.connections
        conn.get()

    def disconnected(conn):
        seen["disconnected"] = conn in server.connections
        seen["conn"] = conn
        gone.set()

    server = make_server(handler, client_pre_connect=pre_connect, client_connected=connected,
                         client_disconnected=disconnected)
    client = connect(server.address)
    client.send(b"x\n")
    wait_for(gone, "client_disconnected")
    assert seen["pre_connect"] == 0
    assert seen["connected"] and seen["handler"] and seen["disconnected"]
    assert seen["conn"] not in server.connections
    assert server.connections == []
    assert isinstance(server.connections, list)


def test_name_appears_in_repr(make_server):
    server = make_server(echo, name="my-service")
    assert "my-service" in repr(server)
