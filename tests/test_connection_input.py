"""The input side of a connection (``connection_input.py``): ``idle_timeout`` counts time
spent waiting for input, not time paused by backpressure."""

from __future__ import annotations

import time

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
from gevent.event import Event
from helpers import echo, small_send_buffer

# -- idle_timeout ---------------------------------------------------------------------------


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
