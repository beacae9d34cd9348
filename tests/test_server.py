"""The server object and its options (docs/api.md), over real loopback sockets.

Every wait is bounded and event-driven: a test waits on a gevent ``Event``/``AsyncResult``, on a
reply, or on a *barrier* (a round trip through a separate probe server, which guarantees the hub
has polled every ready descriptor, including the listening socket of the server under test, at
least once). Signal handling is tested on ``serve_forever`` in a subprocess.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent import getcurrent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from support import WAIT, self_signed_certificate, small_send_buffer, wait_for

import greensrv
from greensrv.filters import Block, Line
from greensrv.tls import wrap_server_socket


def echo(conn):
    for line in conn:
        conn.put(line)


def wait_for_connection(server, barrier, n: int = 1) -> None:
    """After a barrier every client that connected has been accepted and registered."""
    barrier()
    assert len(server.connections) >= n


def connect_refused(address) -> bool:
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    try:
        sock.connect(address)
    except ConnectionRefusedError:
        return True
    finally:
        sock.close()
    return False


# -- §1 and §6: exactly one of handler and client_input; misuse names the option ------------


def test_handler_and_client_input_together_is_a_type_error():
    with pytest.raises(TypeError, match="handler.*client_input") as info:
        greensrv.Server(echo, client_input=lambda conn, rec: None)
    assert "both" in str(info.value)


def test_neither_handler_nor_client_input_is_a_type_error():
    with pytest.raises(TypeError, match="handler.*client_input") as info:
        greensrv.Server()
    assert "neither" in str(info.value)


@pytest.mark.parametrize("option", ["input_filter", "output_filter"])
def test_one_of_input_filter_and_output_filter_alone_is_a_type_error(option):
    with pytest.raises(TypeError, match="input_filter and output_filter"):
        greensrv.Server(echo, **{option: Line()})


def test_filter_with_input_and_output_filter_is_a_type_error():
    with pytest.raises(TypeError, match="filter"):
        greensrv.Server(echo, filter=Line(), input_filter=Line(), output_filter=Line())


def test_filter_that_is_neither_a_filter_nor_callable_is_a_type_error():
    with pytest.raises(TypeError, match="filter"):
        greensrv.Server(echo, filter=42)


@pytest.mark.parametrize("option", [
    "client_pre_connect", "client_connected", "client_disconnected", "client_error",
    "client_flushed", "client_high", "client_low", "started", "error",
])
def test_non_callable_callback_is_a_type_error_naming_it(option):
    with pytest.raises(TypeError, match=option):
        greensrv.Server(echo, **{option: "not callable"})


def test_non_callable_client_input_and_handler_are_type_errors():
    with pytest.raises(TypeError, match="client_input"):
        greensrv.Server(client_input=42)
    with pytest.raises(TypeError, match="handler"):
        greensrv.Server(42)


@pytest.mark.parametrize("spec", ["localhost", "nonsense:xx", "::1:80", "fd:abc", "unix:", 42,
                                  "127.0.0.1:99999"])
def test_unknown_listen_form_is_a_value_error_naming_listen(spec):
    with pytest.raises(ValueError, match="listen"):
        greensrv.Server(echo, listen=[spec])


def test_listen_with_host_or_port_is_a_type_error():
    with pytest.raises(TypeError, match="listen"):
        greensrv.Server(echo, listen="127.0.0.1:0", port=0)
    with pytest.raises(TypeError, match="listen"):
        greensrv.Server(echo, listen="127.0.0.1:0", host="127.0.0.1")


@pytest.mark.parametrize("options, name", [
    (dict(concurrency=-2), "concurrency"),
    (dict(concurrency="3"), "concurrency"),
    (dict(port=-1), "port"),
    (dict(port=70000), "port"),
    (dict(high_mark=100, low_mark=100), "low_mark"),
    (dict(high_mark=0), "high_mark"),
    (dict(output_limit=10, high_mark=100, low_mark=10), "output_limit"),
    (dict(shutdown_timeout=-1), "shutdown_timeout"),
    (dict(idle_timeout=0), "idle_timeout"),
    (dict(handshake_timeout=-1), "handshake_timeout"),
    (dict(ssl_context="cert.pem"), "ssl_context"),
])
def test_bad_option_values_fail_at_construction_naming_the_option(options, name):
    with pytest.raises((TypeError, ValueError), match=name):
        greensrv.Server(echo, **options)


def test_error_hierarchy():
    assert issubclass(greensrv.FilterError, greensrv.GreensrvError)
    assert issubclass(greensrv.FilterError, ValueError)
    assert issubclass(greensrv.SlowClientError, greensrv.GreensrvError)
    assert issubclass(greensrv.TLSError, greensrv.GreensrvError)


# -- §1: both styles -------------------------------------------------------------------------


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


# -- §2: host, port, listen and §3: address / addresses --------------------------------------


def test_default_host_and_port_bind_loopback_on_an_os_chosen_port(make_server, connect):
    server = make_server(echo)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    assert server.addresses == [server.address]
    client = connect(server.address)
    client.send(b"x\n")
    assert client.readline() == b"x\r\n"


def test_explicit_port_is_used(make_server):
    first = make_server(echo)
    port = first.address[1]
    other = greensrv.Server(echo, host="127.0.0.1", port=port)
    with pytest.raises(OSError) as info:
        other.start()  # the exact port was asked for, so it collides with the first server
    assert info.value.errno == errno.EADDRINUSE
    assert not other.started


def test_listen_binds_ipv4_ipv6_unix_fd_and_an_existing_socket_at_once(
        make_server, connect, tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    path = str(tmp_path / "s.sock")
    inherited = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    inherited.bind(("127.0.0.1", 0))
    fd = inherited.detach()  # the server now owns this descriptor
    existing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    existing.bind(("127.0.0.1", 0))
    try:
        server = make_server(echo, listen=["127.0.0.1:0", "[::1]:0", f"unix:{path}",
                                           f"fd:{fd}", existing])
    except OSError as exc:  # pragma: no cover - a host without ::1
        os.close(fd)
        existing.close()
        pytest.skip(f"cannot bind: {exc}")
    addresses = server.addresses
    assert len(addresses) == 5
    assert server.address == addresses[0]
    assert addresses[0][0] == "127.0.0.1" and addresses[0][1] > 0
    assert addresses[1][0] == "::1" and len(addresses[1]) == 2 and addresses[1][1] > 0
    assert addresses[2] == path
    assert all(isinstance(a, tuple) and len(a) == 2 for a in addresses[3:])
    for i, address in enumerate(addresses):
        client = connect(address)
        client.send(b"via %d\n" % i)
        assert client.readline() == b"via %d\r\n" % i
        client.close()
    server.stop(timeout=1)
    assert not os.path.exists(path)  # the unix socket file is removed by stop()


# -- §2: concurrency and §3: set_concurrency ------------------------------------------------


def test_concurrency_limit_never_lets_more_than_n_handlers_run_nor_drops_a_waiting_client(
        make_server, connect, barrier):
    limit, n_clients = 2, 5
    active = 0
    peak = 0
    entered: Queue = Queue()

    def handler(conn):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        entered.put(conn)
        try:
            for line in conn:
                conn.put(line)
        finally:
            active -= 1

    server = make_server(handler, concurrency=limit)
    clients = [connect(server.address) for _ in range(n_clients)]
    for i, client in enumerate(clients):
        client.send(b"client %d\n" % i)
    for _ in range(limit):
        entered.get(timeout=WAIT)
    barrier()
    assert entered.qsize() == 0, "a handler started past the concurrency limit"
    assert len(server.connections) == limit
    # Each waiting client was left in the backlog, not accepted and dropped: all are served,
    # in turn, as earlier ones leave.
    for i, client in enumerate(clients):
        assert client.readline() == b"client %d\r\n" % i
        client.close()
    assert peak == limit


def test_concurrency_zero_accepts_none_until_set_concurrency_raises_it(
        make_server, connect, barrier):
    connected = Event()
    server = make_server(echo, concurrency=0, client_connected=lambda conn: connected.set())
    client = connect(server.address)  # completes in the kernel backlog
    client.send(b"waiting\n")
    barrier()
    assert not connected.is_set()
    assert server.connections == []
    server.set_concurrency(1)
    assert client.readline() == b"waiting\r\n"
    assert connected.is_set()


def test_set_concurrency_zero_pauses_a_listener_already_waiting_to_accept_and_resumes(
        make_server, connect, barrier):
    server = make_server(echo)
    first = connect(server.address)
    first.send(b"one\n")
    assert first.readline() == b"one\r\n"
    server.set_concurrency(0)  # the listener is idle in accept here
    second = connect(server.address)
    second.send(b"two\n")
    barrier()
    assert len(server.connections) == 1, "accepted a client while concurrency is 0"
    first.send(b"still served\n")
    assert first.readline() == b"still served\r\n"  # live connections are not affected
    server.set_concurrency(-1)
    assert second.readline() == b"two\r\n"


def test_a_connection_counts_toward_concurrency_until_its_final_drain_ends(
        make_server, connect, barrier):
    served = []

    def handler(conn):
        served.append(conn)
        conn.put(conn.get())
        conn.shutdown()  # FIN, then the server drains until the peer closes (bounded)

    server = make_server(handler, concurrency=1)
    first = connect(server.address)
    first.send(b"one\n")
    assert first.read_all() == b"one\r\n"  # got the FIN; the server now drains
    second = connect(server.address)
    second.send(b"two\n")
    barrier()
    assert len(served) == 1, "accepted while the first connection was still draining"
    first.close()  # the drain sees EOF; the slot frees
    assert second.read_all() == b"two\r\n"
    assert len(served) == 2


def test_set_concurrency_rejects_bad_values(make_server):
    server = make_server(echo)
    with pytest.raises(ValueError, match="concurrency"):
        server.set_concurrency(-5)
    with pytest.raises(TypeError, match="concurrency"):
        server.set_concurrency(1.5)


# -- §2: filter, input_filter, output_filter -------------------------------------------------


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


# -- §2: client_pre_connect -----------------------------------------------------------------


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
    server = make_server(echo, client_pre_connect=lambda sock, address: sock)
    client = connect(server.address)
    client.send(b"ok\n")
    assert client.readline() == b"ok\r\n"


def test_client_pre_connect_exception_drops_only_that_client(make_server, connect, caplog):
    def pre_connect(sock, address):
        raise RuntimeError("nope")

    server = make_server(echo, client_pre_connect=pre_connect)
    with caplog.at_level(logging.ERROR, logger="greensrv"):
        assert connect(server.address).read_all() == b""
    assert "nope" in caplog.text
    assert server.started


# -- §2: client_connected, client_args -------------------------------------------------------


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


# -- §2: client_disconnected: exactly once, however the connection ended ---------------------


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


# -- §2: client_error, client_shutdown_on_error ----------------------------------------------


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


# -- §2: client_flushed, high_mark/low_mark, client_high/client_low --------------------------


def test_client_flushed_runs_each_time_output_is_fully_written(make_server, connect):
    flushed: Queue = Queue()

    def handler(conn):
        conn.put("one")
        flushed.get(timeout=WAIT)
        conn.put("two", "three")
        flushed.get(timeout=WAIT)
        conn.put("done")
        conn.get()

    count = []

    def on_flushed(conn):
        count.append(conn.buffered)
        flushed.put(None)

    server = make_server(handler, client_flushed=on_flushed)
    client = connect(server.address)
    assert client.readline() == b"one\r\n"
    assert client.readline() == b"two\r\n"
    assert client.readline() == b"three\r\n"
    assert client.readline() == b"done\r\n"
    client.send(b"end\n")
    assert client.read_all() == b""
    assert len(count) >= 3 and set(count) == {0}


def test_output_callbacks_run_in_a_greenlet_that_is_neither_the_hub_nor_anothers(
        make_server, connect):
    hub = gevent.get_hub()
    handler_glets = {}
    calls = []
    both_flushed = Event()

    def handler(conn):
        handler_glets[conn.id] = getcurrent()
        for line in conn:
            conn.put(line)

    def on_flushed(conn):
        calls.append((conn.id, getcurrent()))
        if len({cid for cid, _ in calls}) == 2:
            both_flushed.set()

    server = make_server(handler, client_flushed=on_flushed)
    clients = [connect(server.address) for _ in range(2)]
    for client in clients:
        client.send(b"hi\n")
        assert client.readline() == b"hi\r\n"
    for conn in server.connections:  # a broadcast from the main greenlet
        conn.put("broadcast")
    for client in clients:
        assert client.readline() == b"broadcast\r\n"
    wait_for(both_flushed, "client_flushed on both connections")
    main = getcurrent()
    for cid, glet in calls:
        assert glet is not hub
        assert glet is not main
        others = [g for other, g in handler_glets.items() if other != cid]
        assert all(glet is not g for g in others), "ran in another client's greenlet"


def test_client_high_and_client_low_are_edge_triggered_and_reading_pauses_between(
        make_server, connect, barrier, slow_client):
    events: list = []
    high = Event()
    low = Event()
    got: list = []
    chunk = "x" * 40_000

    def handler(conn):
        for line in conn:
            got.append(line)
            conn.put(chunk, chunk)  # 80 kB: past high_mark on the second line

    def on_high(conn):
        events.append(("high", conn.buffered))
        high.set()

    def on_low(conn):
        events.append(("low", conn.buffered))
        low.set()

    server = make_server(handler, high_mark=100_000, low_mark=20_000, client_high=on_high,
                         client_low=on_low, client_pre_connect=small_send_buffer)
    sock = slow_client(server.address)
    try:
        sock.sendall(b"1\n")
        sock.sendall(b"2\n")
        wait_for(high, "client_high")
        barrier()
        conn = server.connections[0]
        assert conn.buffered > 100_000
        sock.sendall(b"3\n")  # must not be read while output is above high_mark
        barrier()
        assert got == ["1", "2"], "read input while output was above high_mark"
        assert [e[0] for e in events] == ["high"]
        expected = (chunk + "\r\n").encode() * 6
        received = bytearray()
        while len(received) < len(expected):
            data = sock.recv(65536)
            assert data, "EOF before all output"
            received += data
        assert bytes(received) == expected
        wait_for(low, "client_low")
        assert got == ["1", "2", "3"]
        kinds = [e[0] for e in events]
        # Edge-triggered: one high for the one upward crossing of high_mark (not one per put
        # above it); a low for each downward crossing of low_mark (line 3's reply, put after
        # the first low, may cross it once more).
        assert kinds[:2] == ["high", "low"]
        assert kinds.count("high") == 1
        assert kinds.count("low") in (1, 2)
        assert all(buffered > 100_000 for kind, buffered in events if kind == "high")
        assert all(buffered < 20_000 for kind, buffered in events if kind == "low")
    finally:
        sock.close()


def test_client_high_fires_once_per_crossing_not_per_put_above_the_mark(
        make_server, connect, slow_client):
    events: list = []
    low = Event()
    queued = Event()

    def handler(conn):
        for _ in range(10):
            conn.put("y" * 30_000)  # 300 kB queued, past high_mark after the 4th put
        queued.set()
        conn.get()

    def on_low(conn):
        events.append("low")
        low.set()

    server = make_server(handler, high_mark=100_000, low_mark=20_000,
                         client_high=lambda conn: events.append("high"), client_low=on_low,
                         client_pre_connect=small_send_buffer)
    sock = slow_client(server.address)
    try:
        wait_for(queued, "the handler to queue its output")
        assert events == ["high"]
        received = 0
        while received < 10 * 30_002:
            data = sock.recv(65536)
            assert data
            received += len(data)
        wait_for(low, "client_low")
        assert events == ["high", "low"]
        sock.sendall(b"end\n")
    finally:
        sock.close()


# -- §2: output_limit: a broadcast never blocks on a slow client ------------------------------


def test_broadcast_to_a_client_that_does_not_read_never_blocks_and_ends_in_slow_client_error(
        make_server, connect, slow_client):
    errors = AsyncResult()
    gone = Event()
    shrink = []

    def pre_connect(sock, address):
        return small_send_buffer(sock, address) if shrink else sock

    server = make_server(echo, high_mark=10_000, low_mark=1_000, output_limit=200_000,
                         client_pre_connect=pre_connect,
                         client_error=lambda conn, exc: errors.set((conn, exc)),
                         client_disconnected=lambda conn: gone.set())
    reader = connect(server.address)
    reader.send(b"hi\n")
    assert reader.readline() == b"hi\r\n"
    shrink.append(True)
    sock = slow_client(server.address)
    line = "b" * 998
    rounds = 400  # 400 kB to each client, twice output_limit

    def broadcast():
        for _ in range(rounds):
            start = time.monotonic()
            for conn in server.connections:
                conn.put(line)  # would block forever if put waited for the slow client
            assert time.monotonic() - start < 0.5
            gevent.sleep(0)  # one broadcast per loop iteration, like a chat server

    def read_broadcasts():
        return [reader.readline() for _ in range(rounds)]

    try:
        sock.sendall(b"hello\n")
        assert sock.recv(100) == b"hello\r\n"
        slow = [c for c in server.connections if c.remote_port == sock.getsockname()[1]][0]
        broadcaster = gevent.spawn(broadcast)
        reading = gevent.spawn(read_broadcasts)
        broadcaster.join(timeout=WAIT)
        assert broadcaster.dead, "the broadcaster blocked"
        broadcaster.get()
        conn, exc = wait_for(errors, "client_error")
        assert conn is slow
        assert isinstance(exc, greensrv.SlowClientError)
        assert "output_limit" in str(exc)
        wait_for(gone, "client_disconnected of the slow client")
        assert slow.closed
        assert len(server.connections) == 1
        # The reader got every broadcast line; the slow client was not waited for.
        assert reading.get(timeout=WAIT) == [line.encode() + b"\r\n"] * rounds
    finally:
        sock.close()


# -- §2: started, error -----------------------------------------------------------------------


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


def test_error_callback_gets_listener_errors(make_server):
    failure = AsyncResult()
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    make_server(echo, listen=sock, error=lambda server, exc: failure.set((server, exc)))
    sock.shutdown(socket.SHUT_RDWR)  # accept() now fails with EINVAL: a fatal listener error
    server, exc = wait_for(failure, "error callback")
    assert isinstance(exc, OSError) and exc.errno == errno.EINVAL


def test_emfile_on_accept_does_not_stop_the_server(tmp_path):
    """Run in a subprocess: lower RLIMIT_NOFILE so accept fails with EMFILE, then recover."""
    script = tmp_path / "emfile.py"
    script.write_text(textwrap.dedent("""
        import os, resource
        import gevent, gevent.socket
        import greensrv

        def echo(conn):
            for line in conn:
                conn.put(line)

        def round_trip(sock, word):
            sock.sendall(word + b"\\n")
            assert sock.recv(100) == word + b"\\r\\n"

        server = greensrv.Server(echo)
        server.start()
        first = gevent.socket.create_connection(server.address, timeout=5)
        round_trip(first, b"first")
        nfds = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (nfds + 3, nfds + 3))
        # Client sockets use descriptors too: these leave the server none to accept with.
        waiting = []
        for _ in range(3):
            try:
                waiting.append(gevent.socket.create_connection(server.address, timeout=5))
            except OSError:
                break
        round_trip(first, b"barrier")  # the hub has tried (and failed) to accept by now
        assert server.statistics().accept_capacity_errors > 0, server.statistics()
        round_trip(first, b"alive")  # live clients are still served
        for sock in waiting:
            sock.close()
        late = gevent.socket.create_connection(server.address, timeout=5)
        late.settimeout(5)
        round_trip(late, b"late")  # accepting resumed once descriptors were free
        errors = server.statistics().accept_capacity_errors
        assert errors < 20, f"{errors} accept errors: backoff should prevent a busy loop"
        print("OK", server.started)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK True"


# -- §2: shutdown_timeout and §3: stop ---------------------------------------------------------


def test_stop_closes_listeners_at_once_and_lets_live_connections_finish(make_server, connect):
    saw_eof = []

    def handler(conn):
        for line in conn:
            conn.put(line)
            if line == "bye":
                return
        saw_eof.append(conn)

    server = make_server(handler)
    client = connect(server.address)
    client.send(b"hi\n")
    assert client.readline() == b"hi\r\n"
    address = server.address
    stopper = gevent.spawn(server.stop, 10)
    gevent.idle()  # let stop() run its first, non-blocking phase
    assert connect_refused(address), "new clients must be refused, not queued"
    assert not stopper.dead, "stop() returned while a connection was live"
    client.send(b"bye\n")  # the live connection finishes by itself, well within 10 s
    assert client.readline() == b"bye\r\n"
    assert client.read_all() == b""
    stopper.join(timeout=WAIT)
    assert stopper.dead and stopper.successful()
    assert saw_eof == []
    assert server.closed and not server.started


def test_stop_after_timeout_ends_input_and_flushes_replies(make_server, connect, barrier):
    ended = AsyncResult()

    def handler(conn):
        lines = list(conn)  # ends at EOF: stop() ended input
        ended.set(time.monotonic())
        conn.put(f"got {len(lines)} then EOF")

    server = make_server(handler)
    client = connect(server.address)
    client.send(b"a\nb\n")
    wait_for_connection(server, barrier)
    start = time.monotonic()
    server.stop(timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 2.0
    assert ended.get(timeout=0) - start >= 0.3
    assert client.read_all() == b"got 2 then EOF\r\n"


def test_stop_uses_shutdown_timeout_by_default(make_server, connect, barrier):
    ended = Event()

    def handler(conn):
        for _ in conn:
            pass
        ended.set()

    server = make_server(handler, shutdown_timeout=0.3, client_connected=lambda c: None)
    client = connect(server.address)
    client.send(b"x\n")
    wait_for_connection(server, barrier)
    start = time.monotonic()
    server.stop()
    assert 0.3 <= time.monotonic() - start < 2.0
    assert ended.is_set()
    assert client.read_all() == b""


def test_stop_kills_a_handler_blocked_outside_get_within_a_bounded_time(make_server, connect):
    cleaned_up = Event()
    disconnected = Event()
    inside = Event()

    def handler(conn):
        try:
            inside.set()
            Event().wait()  # never set: blocks outside get()
        finally:
            cleaned_up.set()

    server = make_server(handler, client_disconnected=lambda conn: disconnected.set())
    client = connect(server.address)
    wait_for(inside, "handler")
    start = time.monotonic()
    server.stop(timeout=0.1)
    assert time.monotonic() - start < 0.1 + server.stop_grace + 1.5
    assert cleaned_up.is_set() and disconnected.is_set()
    assert client.read_all() == b""


def test_stop_is_idempotent(make_server, connect, barrier):
    server = make_server(echo)
    client = connect(server.address)
    wait_for_connection(server, barrier)
    server.stop(timeout=0.1)
    assert server.closed
    assert client.read_all() == b""
    server.stop(timeout=0.1)
    server.stop()
    assert server.closed and not server.started


def test_start_after_stop_is_a_runtime_error(make_server):
    server = make_server(echo)
    server.stop(timeout=0.1)
    with pytest.raises(RuntimeError, match="stopped"):
        server.start()  # rather than silently doing nothing


def test_stop_called_concurrently_waits_for_the_first(make_server, connect, barrier):
    server = make_server(lambda conn: list(conn))
    client = connect(server.address)
    wait_for_connection(server, barrier)
    first = gevent.spawn(server.stop, 0.2)
    second = gevent.spawn(server.stop, 0.2)
    second.join(timeout=WAIT)
    assert second.dead and server.closed  # the second caller returned only once stopped
    first.join(timeout=WAIT)
    assert client.read_all() == b""


def test_stop_from_inside_a_handler_returns_at_once(make_server, connect):
    returned = AsyncResult()

    def handler(conn):
        conn.get()
        conn.server.stop(timeout=5)
        returned.set(conn.server.closed)
        conn.put("stop returned")

    server = make_server(handler)
    client = connect(server.address)
    client.send(b"stop\n")
    assert wait_for(returned, "stop() to return in the handler") is False
    assert client.read_all() == b"stop returned\r\n"
    server.stop()  # waits for the stop the handler started
    assert server.closed
    assert connect_refused(client.sock.getpeername())


def test_stop_under_load_loses_no_line_the_server_had_read(make_server, connect):
    """Every line a handler got before stop() gets its reply, even replies still queued."""
    n_clients, n_lines = 10, 20_000
    pad = "x" * 200
    read_by_server: dict[int, list[str]] = {}
    some_read = Event()
    total = 0

    def handler(conn):
        nonlocal total
        mine = read_by_server.setdefault(conn.remote_port, [])
        for line in conn:
            mine.append(line)
            conn.put(line + pad)
            total += 1
            if total >= 5000:
                some_read.set()
            if len(mine) % 10 == 0:
                gevent.sleep(0)  # give the other clients a turn, so all are mid-stream

    server = make_server(handler, client_pre_connect=small_send_buffer)
    # What is under test is that no line is lost, not how fast this machine flushes: the replies
    # (about 17 MB through 4 KB kernel buffers) took 0.7 s of the default 1 s grace on a quiet
    # machine, so a loaded one ran out of grace, and a close at the deadline drops what is queued.
    server.stop_grace = WAIT
    clients = [connect(server.address) for _ in range(n_clients)]
    sent = [b"".join(b"c%d-%d\n" % (i, n) for n in range(n_lines)) for i in range(n_clients)]
    senders = [gevent.spawn(c.send, data) for c, data in zip(clients, sent, strict=True)]
    wait_for(some_read, "the server to read some lines")
    # Nobody has read a reply yet: some are still queued in the server when stop() begins.
    assert sum(conn.buffered for conn in server.connections) > 0
    # The clients stop sending as the server stops: what is under test is that every line the
    # server read is answered, not how long the bounded drain after FIN keeps up with a client
    # that goes on sending (on a loaded machine the 1 s grace may not drain it, and the close
    # then resets the peer, as documented).
    gevent.killall(senders)
    readers = [gevent.spawn(c.read_all) for c in clients]
    server.stop(timeout=0)
    gevent.joinall(readers, timeout=WAIT, raise_error=True)
    for client, reader in zip(clients, readers, strict=True):
        received = reader.value.decode().split("\r\n")
        assert received[-1] == ""
        lines = read_by_server.get(client.sock.getsockname()[1], [])
        assert received[:-1] == [line + pad for line in lines], \
            "a line the server read got no reply"
    assert 0 < sum(len(v) for v in read_by_server.values()) < n_clients * n_lines


# -- §3: started, closed, connections membership ----------------------------------------------


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


# -- §2: idle_timeout ---------------------------------------------------------------------------


def test_idle_timeout_shuts_down_a_client_that_sends_nothing(make_server, connect):
    ended = Event()

    def handler(conn):
        for line in conn:
            conn.put(line)
        conn.put("idle, bye")
        ended.set()

    server = make_server(handler, idle_timeout=0.3)
    client = connect(server.address)
    client.send(b"a\n")
    assert client.readline() == b"a\r\n"
    start = time.monotonic()
    assert client.read_all() == b"idle, bye\r\n"
    assert 0.25 <= time.monotonic() - start < 3.0
    assert ended.is_set()


def test_idle_timeout_is_reset_by_input(make_server, connect):
    server = make_server(echo, idle_timeout=0.4)
    client = connect(server.address)
    start = time.monotonic()
    # Keep talking for longer than idle_timeout, never pausing as long as it.
    while time.monotonic() - start < 0.8:
        client.send(b"k\n")
        assert client.readline() == b"k\r\n"
        gevent.sleep(0.05)  # pacing, not synchronisation
    client.send(b"last\n")
    assert client.readline() == b"last\r\n"


def test_idle_timeout_does_not_count_time_paused_by_backpressure(make_server, slow_client):
    chunk = "p" * 100_000

    def handler(conn):
        conn.get()
        conn.put(chunk, chunk, chunk)  # 300 kB: reading pauses until the client drains it
        conn.put(conn.get())

    server = make_server(handler, idle_timeout=0.3, high_mark=100_000, low_mark=10_000,
                         client_pre_connect=small_send_buffer)
    sock = slow_client(server.address)
    try:
        sock.sendall(b"go\n")
        # Let twice idle_timeout pass without reading (time passing is the point here).
        gevent.sleep(0.6)
        received = bytearray()
        while len(received) < 3 * 100_002:
            data = sock.recv(65536)
            assert data, "shut down as idle while reading was paused by backpressure"
            received += data
        sock.sendall(b"more\n")
        assert sock.recv(100) == b"more\r\n"
    finally:
        sock.close()


# -- §2: ssl_context, handshake timeout, TLS via client_pre_connect ---------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


def _server_context(certificate):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


STDLIB_TLS_CLIENT = textwrap.dedent("""
    import socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[1])
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello tls\\nsecond\\n")
            data = b""
            while data.count(b"\\n") < 2:
                chunk = tls.recv(1000)
                if not chunk:
                    break
                data += chunk
            print(repr(data), tls.version())
""")


def run_stdlib_tls_client(cert, address):
    proc = gevent.subprocess.Popen([sys.executable, "-c", STDLIB_TLS_CLIENT, cert, address[0],
                                    str(address[1])], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize("style", ["ssl_context", "client_pre_connect"])
def test_tls_echo_with_the_stdlib_ssl_client(make_server, certificate, style):
    context = _server_context(certificate)
    if style == "ssl_context":
        server = make_server(echo, ssl_context=context)
    else:
        server = make_server(
            echo, client_pre_connect=lambda sock, address: wrap_server_socket(sock, context))
    out = run_stdlib_tls_client(certificate[0], server.address)
    assert out.startswith(repr(b"hello tls\r\nsecond\r\n")), out
    assert "TLSv1." in out


def test_tls_echo_in_process_with_cooperative_ssl(make_server, connect, certificate):
    server = make_server(echo, ssl_context=_server_context(certificate))
    client = connect(server.address)
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certificate[0])
    client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
    for word in (b"one", b"two"):
        client.send(word + b"\n")
        assert client.readline() == word + b"\r\n"
    client.sock.shutdown(socket.SHUT_WR)


def test_tls_handshake_timeout_drops_a_silent_client_with_tls_error(
        make_server, connect, certificate):
    errors = AsyncResult()
    connected = []
    server = make_server(echo, ssl_context=_server_context(certificate), handshake_timeout=0.3,
                         client_error=lambda conn, exc: errors.set(exc),
                         client_connected=connected.append)
    client = connect(server.address)  # says nothing
    start = time.monotonic()
    exc = wait_for(errors, "client_error")
    assert isinstance(exc, greensrv.TLSError)
    assert time.monotonic() - start >= 0.25
    assert client.read_all() == b""
    assert connected == []


def test_plaintext_client_on_a_tls_server_gets_tls_error(make_server, connect, certificate):
    errors = AsyncResult()
    server = make_server(echo, ssl_context=_server_context(certificate),
                         client_error=lambda conn, exc: errors.set(exc))
    client = connect(server.address)
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(wait_for(errors, "client_error"), greensrv.TLSError)


# -- §3: serve_forever, signals, module-level serve_forever -----------------------------------


SERVE_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import greensrv

    calls = []

    def previous_term(signum, frame):
        calls.append(signum)

    signal.signal(signal.SIGTERM, previous_term)
    previous_int = signal.getsignal(signal.SIGINT)

    def handler(conn):
        for line in conn:
            if line == "big":
                conn.put("ack", "z" * 1_000_000)
            else:
                conn.put(line)

    def started(server):
        print("ADDRESS", server.address[1], flush=True)

    if sys.argv[1] == "module":
        greensrv.serve_forever(handler, shutdown_timeout=0.2, started=started)
        server = None
    else:
        server = greensrv.Server(handler, shutdown_timeout=0.2, started=started)
        server.serve_forever()
    # The previous handlers are back, in Python and in the OS: SIGTERM reaches previous_term
    # (not the server, not SIG_DFL, which would kill us), SIGINT raises KeyboardInterrupt.
    os.kill(os.getpid(), signal.SIGTERM)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    print("RETURNED", signal.getsignal(signal.SIGTERM) is previous_term,
          signal.getsignal(signal.SIGINT) is previous_int, calls == [signal.SIGTERM],
          interrupted, server is None or server.closed, flush=True)
""")



@pytest.mark.parametrize("style, signum", [("method", signal.SIGTERM),
                                           ("method", signal.SIGINT),
                                           ("module", signal.SIGTERM)])
def test_serve_forever_stops_gracefully_on_signal_and_restores_handlers(
        tmp_path, connect, style, signum):
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT)
    proc = gevent.subprocess.Popen([sys.executable, str(script), style],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(20):
            first = proc.stdout.readline()
        assert first.startswith("ADDRESS "), first + proc.stderr.read()
        client = connect(("127.0.0.1", int(first.split()[1])))
        client.send(b"hi\n")
        assert client.readline() == b"hi\r\n"
        client.send(b"big\n")
        assert client.readline() == b"ack\r\n"  # the 1 MB reply is queued, unread
        proc.send_signal(signum)
        assert client.read_all() == b"z" * 1_000_000 + b"\r\n"  # flushed, then closed
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "RETURNED True True True True True", err


FORCE_SCRIPT = textwrap.dedent("""
    import logging
    import gevent
    import greensrv

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def stubborn(conn):
        conn.put("hello")
        gevent.sleep(60)  # blocked outside get(): only a forced stop ends it

    def started(server):
        print("ADDRESS", server.address[1], flush=True)

    greensrv.serve_forever(stubborn, shutdown_timeout=60, started=started)
    print("RETURNED", flush=True)
""")


def test_a_second_sigint_forces_the_shutdown(tmp_path, connect):
    """The first SIGINT starts a graceful stop (60 s here); a second one closes everything now,
    and the log counts the connections it closed (it once said "0 forced closed")."""
    script = tmp_path / "force.py"
    script.write_text(FORCE_SCRIPT)
    proc = gevent.subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(20):
            first = proc.stdout.readline()
        assert first.startswith("ADDRESS "), first + proc.stderr.read()
        address = ("127.0.0.1", int(first.split()[1]))
        client, other = connect(address), connect(address)
        assert client.readline() == b"hello\r\n"
        assert other.readline() == b"hello\r\n"
        proc.send_signal(signal.SIGINT)
        # The graceful stop has begun once the log says so (the listener is closed by then).
        with gevent.Timeout(10, AssertionError("the first SIGINT did not start a stop")):
            while "stopping:" not in (line := proc.stderr.readline()):
                assert line, "the server ended before the second SIGINT"
        assert "stopping: 2 connection(s)" in line, line
        assert proc.poll() is None, "one SIGINT must not force the stop"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert client.read_all() == b""  # closed by the forced stop, well before 60 s
        assert other.read_all() == b""
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "RETURNED", err
    assert elapsed < 5
    assert "2 connection(s) ended by the shutdown, 2 forced closed" in err, err


def test_a_forced_stop_closes_the_socket_of_a_client_whose_greenlet_never_ran(make_server):
    """A client accepted in the same hub turn as a forced stop: its greenlet is killed before
    it runs, so its life never closes its socket nor releases its IP; the stop does both."""
    server = make_server(echo, max_connections_per_ip=2)
    with socket.create_server(("127.0.0.1", 0)) as other:
        client = socket.create_connection(other.getsockname())
        raw, address = other.accept()
    accepted = gevent.socket.socket(fileno=raw.detach())
    try:
        server._life.accept(accepted, address)  # what a listener does, in the hub
        assert len(server._clients) == 1 and server._admission.per_ip() == {"127.0.0.1": 1}
        server._force_close()  # no switch in between: the greenlet never started
        assert accepted.fileno() == -1, "the never-started client's socket was left open"
        assert not server._clients and server._admission.per_ip() == {}
        assert server._life.all_ended.is_set()
    finally:
        client.close()
