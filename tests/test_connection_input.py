"""The input side of a connection (reading on demand, ``input_clock.py``): ``idle_timeout``
counts time spent waiting for input, not time paused by backpressure; an input filter switched
in the middle of a parsed batch gets the rest."""

from __future__ import annotations

# -- idle_timeout ---------------------------------------------------------------------------
import time

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent.event import AsyncResult, Event
from helpers import WAIT, echo, run_handler, small_send_buffer, wait_for

from greensrv.filters import Block, Line, Stream

CRLF = b"\r\n"


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


# -- switching the input filter in the middle of a parsed batch ------------------------------

LINES = [f"l{i}" for i in range(10)]
TAIL = b"tail\x00\xff\xfe\x01"  # not UTF-8, unterminated: only the new filter returns it
BATCH = b"".join(line.encode() + CRLF for line in LINES) + TAIL
REST = BATCH[len(b"l0\r\nl1\r\nl2\r\n"):]


@pytest.mark.parametrize(
    ("switch", "make_filter", "expected_records"),
    [
        ("set_input_filter", Stream, None),  # Stream: only the concatenation is fixed
        ("set_filter", lambda: Block(4), [REST[i:i + 4] for i in range(0, len(REST), 4)]),
        ("set_input_filter", lambda: Line(encoding=None),
         [line.encode() for line in LINES[3:]] + [TAIL]),
    ],
    ids=["set_input_filter-Stream", "set_filter-Block", "set_input_filter-Line-bytes"],
)
def test_switching_the_input_filter_mid_batch_while_iterating_hands_over_the_rest(
        make_server, connect, barrier, switch, make_filter, expected_records):
    sent = Event()

    def body(conn):
        assert sent.wait(WAIT), "the client never sent"
        lines, after, handed_over, still_ready = [], [], None, None
        for record in conn:
            if handed_over is None:
                lines.append(record)
                if len(lines) == 3:
                    still_ready = len(conn.input_filter.take_ready())
                    handed_over = conn.input_filter.pending()
                    getattr(conn, switch)(make_filter())
            else:
                after.append(record)
        return lines, still_ready, handed_over, after

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(BATCH)  # one send, read by the server in one recv: one parsed batch
    client.half_close()
    barrier()  # the bytes are in the server's socket before the handler reads
    sent.set()
    lines, still_ready, handed_over, after = wait_for(outcome, "the handler")
    assert lines == LINES[:3]
    assert still_ready == 7, "precondition: the lines should have been parsed as one batch"
    assert handed_over == REST
    assert all(isinstance(r, bytes) for r in after), f"stale records of the old filter: {after}"
    if expected_records is None:
        assert b"".join(after) == REST
    else:
        assert after == expected_records


def test_switching_to_a_fresh_line_filter_mid_batch_yields_each_line_once(
        make_server, connect, barrier):
    sent = Event()

    def body(conn):
        assert sent.wait(WAIT), "the client never sent"
        got = []
        for record in conn:
            got.append(record)
            if record == "l2":
                conn.set_input_filter(Line(literal="\n"))
        return got

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"".join(line.encode() + b"\n" for line in LINES))
    client.half_close()
    barrier()
    sent.set()
    assert wait_for(outcome, "the handler") == LINES


def test_callback_style_switches_the_input_filter_mid_batch(make_server, connect, barrier):
    done = AsyncResult()
    release = Event()

    def connected(conn):
        conn.data["lines"] = []
        conn.data["raw"] = b""
        assert release.wait(WAIT)  # read only once the whole batch is in the socket

    def client_input(conn, record):
        if isinstance(record, str):
            conn.data["lines"].append(record)
            if record == "l2":
                conn.set_input_filter(Stream())
        else:
            conn.data["raw"] += record
            if len(conn.data["raw"]) >= len(REST):
                done.set((conn.data["lines"], conn.data["raw"]))

    server = make_server(client_input=client_input, client_connected=connected,
                         client_error=lambda conn, exc: done.set_exception(exc))
    client = connect(server.address)
    client.send(BATCH)
    barrier()
    release.set()
    lines, raw = wait_for(done, "client_input to see the rest")
    assert lines == LINES[:3]
    assert raw == REST
