"""The graceful stop in phases (``shutdown.py``, ``Server.stop``): listeners close at once,
live connections finish, the rest see EOF and flush, what remains is forced; nothing read is
lost."""

from __future__ import annotations

import socket
import time

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent.event import AsyncResult, Event
from helpers import WAIT, connect_refused, echo, small_send_buffer, wait_for, wait_for_connection

# -- shutdown_timeout and stop ---------------------------------------------------------


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
        server._shutdown.force()  # no switch in between: the greenlet never started
        assert accepted.fileno() == -1, "the never-started client's socket was left open"
        assert not server._clients and server._admission.per_ip() == {}
        assert server._life.all_ended.is_set()
    finally:
        client.close()
