"""One client's life (``client_life.py``): filters per connection, ``client_pre_connect``,
``client_connected``, ``client_disconnected`` exactly once, ``client_error`` and
``client_shutdown_on_error``, over real loopback sockets."""

from __future__ import annotations

import gc
import logging
import socket

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent import getcurrent
from gevent.event import AsyncResult, Event
from helpers import echo, wait_for

import greensrv
from greensrv.filters import Block, Line

# -- filter, input_filter, output_filter -------------------------------------------------


def test_filter_instance_is_cloned_for_each_connection(make_server, connect):
    template = Line(literal="|")
    seen = []

    def handler(conn):
        seen.append(conn.input_filter)
        conn.put(conn.get())

    server = make_server(handler, filter=template)
    for word in (b"a", b"b"):
        client = connect(server.address)
        client.send(word + b"|")
        assert client.read_all() == word + b"|"
    assert len(seen) == 2
    assert seen[0] is not template and seen[1] is not template and seen[0] is not seen[1]
    assert template.pending() == b""


def test_filter_factory_is_called_once_per_connection(make_server, connect):
    made = []

    def factory():
        made.append(Block(3))
        return made[-1]

    server = make_server(lambda conn: conn.put(conn.get()), filter=factory)
    for _ in range(2):
        client = connect(server.address)
        client.send(b"xyz")
        assert client.read_all() == b"xyz"
    assert len(made) == 2


def test_input_filter_and_output_filter_frame_each_direction(make_server, connect):
    server = make_server(lambda conn: conn.put(*conn.get().decode()),
                         input_filter=Block(4), output_filter=Line(output_literal=";"))
    client = connect(server.address)
    client.send(b"abcd")
    assert client.read_all() == b"a;b;c;d;"


# -- client_pre_connect -----------------------------------------------------------------


def test_client_pre_connect_returning_none_drops_the_client_before_any_connection(
        make_server, connect):
    calls = []
    connected = Event()

    def pre_connect(sock, address):
        calls.append((address, len(server.connections)))
        return None

    server = make_server(echo, client_pre_connect=pre_connect,
                         client_connected=lambda conn: connected.set())
    client = connect(server.address)
    assert client.read_all() == b""
    assert len(calls) == 1
    address, live = calls[0]
    assert address == client.sock.getsockname()
    assert live == 0
    assert not connected.is_set()


def test_client_pre_connect_returning_the_socket_serves_it(make_server, connect):
    given = []

    def pre_connect(sock, address):
        given.append(sock)
        return sock

    server = make_server(echo, client_pre_connect=pre_connect)
    client = connect(server.address)
    client.send(b"ok\n")
    assert client.readline() == b"ok\r\n"
    assert type(given[0]) is gevent.socket.socket  # a cooperative socket, as it always was


def test_client_pre_connect_exception_drops_only_that_client(make_server, connect, caplog):
    def pre_connect(sock, address):
        raise RuntimeError("nope")

    server = make_server(echo, client_pre_connect=pre_connect)
    with caplog.at_level(logging.ERROR, logger="greensrv"):
        assert connect(server.address).read_all() == b""
    assert "nope" in caplog.text
    assert server.started


# -- conn.socket: the gevent socket, made on first use ---------------------------------


def gevent_sockets_of(conn) -> list:
    """The open gevent sockets connected to ``conn``'s peer (found among all objects)."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, gevent.socket.socket) and obj.fileno() != -1:
            try:
                if obj.getpeername() == conn.remote_address:
                    found.append(obj)
            except OSError:
                pass  # a listening socket
    return found


def test_conn_socket_is_one_gevent_socket_made_on_first_use_and_the_connection_goes_on(
        make_server, connect):
    seen = AsyncResult()

    def handler(conn):
        conn.put(conn.get())
        before = gevent_sockets_of(conn)
        sock = conn.socket
        conn.flush()
        sock.sendall(b"raw\n")  # written directly, cooperatively
        conn.put(conn.get())  # the connection reads and writes on after the change
        conn.flush()
        seen.set((before, sock, conn.socket, sock.getpeername(), conn.remote_address,
                  sock.getsockname(), conn.local_address))

    ended = Event()
    server = make_server(handler, client_disconnected=lambda conn: ended.set())
    client = connect(server.address)
    client.send(b"one\n")
    assert client.readline() == b"one\r\n"
    client.send(b"two\n")
    assert client.readline() == b"raw\n"
    assert client.readline() == b"two\r\n"
    before, sock, again, peer, remote, local, local_address = wait_for(seen, "the handler")
    assert before == []  # nothing made a gevent socket for this plain connection
    assert again is sock and type(sock) is gevent.socket.socket
    assert peer == remote and local == local_address
    assert client.read_all() == b""
    client.close()  # the server's graceful end drains input to this EOF, then closes
    wait_for(ended, "client_disconnected")
    assert sock.fileno() == -1  # closed with the connection


def test_conn_socket_first_asked_after_the_close_is_a_closed_gevent_socket(make_server,
                                                                           connect):
    seen = AsyncResult()

    def disconnected(conn):
        seen.set((conn.closed, conn.socket, conn.socket))

    server = make_server(echo, client_disconnected=disconnected)
    client = connect(server.address)
    client.send(b"x\n")
    assert client.readline() == b"x\r\n"
    client.close()
    closed, sock, again = wait_for(seen, "client_disconnected")
    assert closed and sock is again and type(sock) is gevent.socket.socket
    assert sock.fileno() == -1


# -- client_connected, client_args -------------------------------------------------------


def test_client_connected_runs_once_before_the_first_input_with_client_args(
        make_server, connect):
    calls = []

    def connected(conn, *args):
        calls.append(("connected", args, conn in server.connections, getcurrent()))
        conn.put("banner")

    def client_input(conn, line):
        calls.append(("input", line, None, getcurrent()))
        conn.put(line)

    server = make_server(client_input=client_input, client_connected=connected,
                         client_args=("a", 2))
    client = connect(server.address)
    client.send(b"x\ny\n")
    assert client.readline() == b"banner\r\n"
    assert client.readline() == b"x\r\n"
    assert client.readline() == b"y\r\n"
    assert [c[:3] for c in calls] == [("connected", ("a", 2), True),
                                      ("input", "x", None), ("input", "y", None)]
    hub = gevent.get_hub()
    assert calls[0][3] is calls[1][3] is calls[2][3]  # the client's own greenlet
    assert calls[0][3] is not hub and calls[0][3] is not getcurrent()


# -- client_disconnected: exactly once, however the connection ended ---------------------


def _end_by(how, conn):
    if how == "handler exception":
        conn.get()
        raise RuntimeError("boom")
    if how == "server close":
        conn.get()
        conn.close()
        return
    if how == "shutdown":
        conn.get()
        conn.shutdown()
        return
    for line in conn:
        conn.put(line)


@pytest.mark.parametrize("how", ["EOF", "reset", "handler exception", "filter error",
                                 "idle_timeout", "stop", "server close", "shutdown"])
def test_client_disconnected_runs_exactly_once_however_the_connection_ended(
        make_server, connect, how):
    disconnected: list = []
    connected: list = []
    errors: list = []
    gone = Event()
    ready = Event()

    def on_connected(conn):
        connected.append(conn)
        ready.set()

    def on_disconnected(conn):
        disconnected.append((conn, conn in server.connections))
        gone.set()

    options = {}
    if how == "idle_timeout":
        options["idle_timeout"] = 0.2
    if how == "filter error":
        options["filter"] = Line(max_length=8)
    server = make_server(lambda conn: _end_by(how, conn), client_connected=on_connected,
                         client_disconnected=on_disconnected,
                         client_error=lambda conn, exc: errors.append(exc), **options)
    client = connect(server.address)
    wait_for(ready, "client_connected")
    if how == "EOF":
        client.close()
    elif how == "reset":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        client.close()
    elif how == "filter error":
        client.send(b"x" * 100 + b"\n")
    elif how == "stop":
        server.stop(timeout=0.1)
    elif how in ("handler exception", "server close", "shutdown"):
        client.send(b"go\n")
    wait_for(gone, "client_disconnected")
    server.stop(timeout=1)  # nothing left that could call it again
    assert len(connected) == 1
    assert len(disconnected) == 1
    conn, member = disconnected[0]
    assert conn is connected[0]
    assert member, "not in server.connections during client_disconnected"
    assert conn not in server.connections
    assert conn.closed
    if how == "reset":
        assert errors == [], "a peer's reset at read was reported as an error"
    elif how == "handler exception":
        assert len(errors) == 1 and str(errors[0]) == "boom"
    elif how == "filter error":
        assert len(errors) == 1 and isinstance(errors[0], greensrv.FilterError)
    else:
        assert errors == []


def test_client_disconnected_not_called_for_a_client_refused_before_connecting(
        make_server, connect):
    disconnected = []
    server = make_server(echo, client_pre_connect=lambda sock, addr: None,
                         client_disconnected=disconnected.append)
    assert connect(server.address).read_all() == b""
    server.stop(timeout=1)
    assert disconnected == []


# -- client_error, client_shutdown_on_error ----------------------------------------------


def test_handler_exception_goes_to_client_error_and_ends_only_that_client(make_server, connect):
    errors = AsyncResult()

    def handler(conn):
        for line in conn:
            if line == "die":
                raise KeyError("handler failed")
            conn.put(line)

    server = make_server(handler, client_error=lambda conn, exc: errors.set((conn, exc)))
    survivor = connect(server.address)
    victim = connect(server.address)
    victim.send(b"die\n")
    conn, exc = wait_for(errors, "client_error")
    assert isinstance(exc, KeyError) and "handler failed" in str(exc)
    assert conn.closed or conn.closing
    assert victim.read_all() == b""
    survivor.send(b"alive\n")
    assert survivor.readline() == b"alive\r\n"


def test_filter_error_goes_to_client_error_with_a_clear_message(make_server, connect):
    errors = AsyncResult()
    server = make_server(echo, filter=Line(max_length=10),
                         client_error=lambda conn, exc: errors.set(exc))
    client = connect(server.address)
    client.send(b"ok\n" + b"y" * 50 + b"\n")
    assert client.readline() == b"ok\r\n"
    exc = wait_for(errors, "client_error")
    assert isinstance(exc, greensrv.FilterError)
    assert "10" in str(exc) and "max_length" in str(exc)
    assert client.read_all() == b""


def test_default_client_error_logs_with_traceback_under_the_greensrv_logger(
        make_server, connect, caplog):
    def handler(conn):
        conn.get()
        raise RuntimeError("logged failure")

    server = make_server(handler, name="logname")
    with caplog.at_level(logging.ERROR, logger="greensrv"):
        client = connect(server.address)
        client.send(b"x\n")
        assert client.read_all() == b""
    records = [r for r in caplog.records if "logged failure" in r.getMessage()
               or (r.exc_info and "logged failure" in str(r.exc_info[1]))]
    assert records, caplog.text
    assert records[0].name == "greensrv"
    assert records[0].exc_info is not None
    assert "logname" in records[0].getMessage()


def test_client_input_exception_shuts_the_connection_down_by_default(make_server, connect):
    errors = []

    def client_input(conn, line):
        if line == "bad":
            raise ValueError("bad record")
        conn.put(line)

    server = make_server(client_input=client_input, client_error=lambda c, e: errors.append(e))
    client = connect(server.address)
    client.send(b"a\nbad\nb\n")
    assert client.read_all() == b"a\r\n"
    assert [str(e) for e in errors] == ["bad record"]


def test_client_shutdown_on_error_false_keeps_the_connection(make_server, connect):
    errors = []

    def client_input(conn, line):
        if line == "bad":
            raise ValueError("bad record")
        conn.put(line)

    server = make_server(client_input=client_input, client_shutdown_on_error=False,
                         client_error=lambda c, e: errors.append(e))
    client = connect(server.address)
    client.send(b"a\nbad\nb\n")
    assert client.readline() == b"a\r\n"
    assert client.readline() == b"b\r\n"
    assert [str(e) for e in errors] == ["bad record"]
    client.send(b"c\n")
    assert client.readline() == b"c\r\n"


def test_client_error_that_raises_does_not_break_the_server(make_server, connect, caplog):
    def bad_client_error(conn, exc):
        raise RuntimeError("client_error itself failed")

    def handler(conn):
        conn.get()
        raise ValueError("x")

    server = make_server(handler, client_error=bad_client_error)
    with caplog.at_level(logging.ERROR, logger="greensrv"):
        client = connect(server.address)
        client.send(b"go\n")
        assert client.read_all() == b""
    assert "client_error callback failed" in caplog.text
    other = connect(server.address)
    other.send(b"y\n")
    assert other.read_all() == b""  # same handler, still served
