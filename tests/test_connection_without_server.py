"""A ``Connection`` made directly on a connected socket, with no Server: what a client builds on.

The connection reads its bounds from ``Limits`` and reports through ``ConnectionHooks``; these
tests make one on one end of a loopback TCP pair and drive the other end with a plain socket.
"""

from __future__ import annotations

import socket

import gevent
import gevent.socket
import pytest
from gevent.event import Event
from helpers import WAIT, wait_for

from greensrv.connection import (
    Connection,
    ConnectionHooks,
    attach,
    finish,
    overload_progress,
    stop_input,
)
from greensrv.errors import RecordTimeoutError
from greensrv.filters import Line
from greensrv.limits import Limits


class RecordingHooks(ConnectionHooks):
    def __init__(self, output_callbacks=None):
        self.counts: list[str] = []
        self.errors: list[BaseException] = []
        self.closed_conns: list[Connection] = []
        self.reported = Event()
        if output_callbacks is not None:
            self.output_callbacks = output_callbacks

    def count(self, key):
        self.counts.append(key)

    def report_error(self, conn, exc):
        self.errors.append(exc)
        self.reported.set()

    def closed(self, conn):
        self.closed_conns.append(conn)


@pytest.fixture
def pair():
    """(our end, the peer's end): a connected loopback TCP pair of gevent sockets."""
    listener = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    peer = gevent.socket.create_connection(listener.getsockname(), timeout=WAIT)
    ours, address = listener.accept()
    listener.close()
    peer.settimeout(WAIT)
    yield ours, peer, address
    ours.close()
    peer.close()


def make(pair, hooks=None, **limits):
    ours, _, address = pair
    f = Line()
    conn = Connection(ours, address, 1, f, f, Limits(**limits), hooks or ConnectionHooks())
    attach(conn)
    return conn


def test_records_in_and_out_with_no_server(pair):
    conn = make(pair)
    _, peer, _ = pair
    assert conn.server is None
    peer.sendall(b"hello\nworld\n")
    assert [conn.get(timeout=WAIT), conn.get(timeout=WAIT)] == ["hello", "world"]
    conn.put("back")
    conn.flush(timeout=WAIT)
    assert peer.recv(100) == b"back\r\n"
    assert (conn.bytes_in, conn.bytes_out) == (12, 6)


def test_it_is_a_context_manager_that_closes_and_reports_closed_once(pair):
    hooks = RecordingHooks()
    with make(pair, hooks) as conn:
        assert not conn.closed
    assert conn.closed
    conn.close()
    assert hooks.closed_conns == [conn]
    _, peer, _ = pair
    assert peer.recv(10) == b""


def test_timeouts_come_from_its_limits_and_are_counted_through_the_hooks(pair):
    hooks = RecordingHooks()
    conn = make(pair, hooks, record_timeout=0.2)
    _, peer, _ = pair
    peer.sendall(b"an unfinished rec")
    with pytest.raises(EOFError):
        conn.get(timeout=WAIT)
    assert hooks.counts == ["closed_record_timeout"]
    assert isinstance(conn.error, RecordTimeoutError)
    assert "record_timeout=0.2" in str(conn.error)


def test_output_callbacks_run_in_the_connections_own_greenlet(pair):
    flushed = Event()
    hooks = RecordingHooks({"flushed": lambda conn: flushed.set()})
    conn = make(pair, hooks)
    conn.put("x")
    wait_for(flushed, "client_flushed through the hooks")
    conn.close()


def test_an_output_callback_error_goes_to_report_error(pair):
    def broken(conn):
        raise RuntimeError("callback bug")

    hooks = RecordingHooks({"flushed": broken})
    conn = make(pair, hooks)
    conn.put("x")
    wait_for(hooks.reported, "the callback's error reported through the hooks")
    assert str(hooks.errors[0]) == "callback bug"
    conn.close()


def test_finish_flushes_sends_fin_and_closes(pair):
    hooks = RecordingHooks()
    conn = make(pair, hooks)
    _, peer, _ = pair
    conn.put("bye")
    finish(conn, None)
    assert conn.closed and hooks.closed_conns == [conn]
    data = b""
    while chunk := peer.recv(100):
        data += chunk
    assert data == b"bye\r\n"


def test_stop_input_ends_a_waiting_get_with_eof(pair):
    conn = make(pair)
    reader = gevent.spawn(conn.get)
    gevent.idle()
    stop_input(conn)
    with pytest.raises(EOFError):
        reader.get(timeout=WAIT)
    conn.close()


def test_iteration_and_get_end_alike_at_eof_with_the_records_the_filter_gave_last(pair):
    # The end of input travels as a marker through the connection, not as an exception: what
    # the application sees is unchanged: the records, the unterminated last one, then
    # StopIteration for `for`/next() and EOFError for get(), again and again.
    conn = make(pair)
    _, peer, _ = pair
    peer.sendall(b"one\ntwo\nlast")
    peer.shutdown(socket.SHUT_WR)
    assert list(conn) == ["one", "two", "last"]
    with pytest.raises(StopIteration):
        next(conn)
    with pytest.raises(EOFError, match="no more input from this client"):
        conn.get(timeout=WAIT)
    assert list(conn) == []


def test_a_subclass_get_is_what_iteration_uses(pair):
    class Counting(Connection):
        __slots__ = ("gets",)

        def get(self, timeout=None):
            self.gets += 1
            return Connection.get(self, timeout)

    ours, peer, address = pair
    f = Line()
    conn = Counting(ours, address, 1, f, f, Limits(), ConnectionHooks())
    conn.gets = 0
    attach(conn)
    peer.sendall(b"a\n")
    peer.shutdown(socket.SHUT_WR)
    assert list(conn) == ["a"]
    assert conn.gets == 2  # the record, then the EOFError that ended the loop


def test_the_input_clock_reads_time_monotonic_s_clock(pair):
    # Compiled on Linux the clock of each read and wait is clock_gettime from C: the times it
    # records must be time.monotonic() values, as the shedder and the deadlines compare them.
    import time

    conn = make(pair)
    _, peer, _ = pair
    before = time.monotonic()
    peer.sendall(b"an unfinished rec")
    reader = gevent.spawn(conn.get)
    deadline = time.monotonic() + WAIT
    while (progress := overload_progress(conn)).waiting_since is None:  # the reader parks
        assert time.monotonic() < deadline, "the reader never waited for the rest of its record"
        gevent.sleep(0.01)  # poll interval, with the deadline above
    after = time.monotonic()
    assert before <= progress.record_started <= progress.waiting_since <= after
    peer.sendall(b"ord\n")
    assert reader.get(timeout=WAIT) == "an unfinished record"


def test_a_broadcast_burst_leaves_on_every_connection_in_the_same_loop_turn():
    # put() on many connections in one turn: one flush per loop iteration sends each
    # connection's whole burst; a connection closed meanwhile sends nothing and breaks nothing.
    pairs = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for _ in range(4):
            peer = socket.create_connection(listener.getsockname(), timeout=WAIT)
            ours, address = listener.accept()
            pairs.append((gevent.socket.socket(fileno=ours.detach()), peer, address))
    try:
        conns = [make(p) for p in pairs]
        for conn in conns:
            conn.put("first")
            conn.put("second")
        conns[3].close()
        assert [conn.buffered for conn in conns] == [15, 15, 15, 0]  # nothing left yet
        gevent.sleep(0)  # one turn of the hub: its loop iteration flushes them
        for conn, (_, peer, _) in zip(conns[:3], pairs[:3], strict=True):
            assert conn.buffered == 0
            got = b""
            while len(got) < 15:
                got += peer.recv(100)
            assert got == b"first\r\nsecond\r\n"
        assert pairs[3][1].recv(100) == b""  # closed: no output, just the end
    finally:
        for ours, peer, _ in pairs:
            ours.close()
            peer.close()


def test_a_connection_in_another_thread_is_flushed_by_its_own_hub(pair):
    # Each hub flushes its own connections: one made in another thread (its own hub) between
    # two made here must not be handed this hub's flusher, nor the other way round.
    import threading

    results = []

    def other_thread():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            peer = socket.create_connection(listener.getsockname(), timeout=WAIT)
            ours, address = listener.accept()
        conn = make((gevent.socket.socket(fileno=ours.detach()), peer, address))
        conn.put("from the other hub")
        gevent.sleep(0)
        results.append(peer.recv(100))
        conn.close()
        peer.close()

    here = make(pair)
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(WAIT)
    assert results == [b"from the other hub\r\n"]
    here.put("from this hub")
    gevent.sleep(0)
    _, peer, _ = pair
    assert peer.recv(100) == b"from this hub\r\n"
