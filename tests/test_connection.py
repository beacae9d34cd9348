"""``greensrv.Connection`` (docs/api.md) as a handler sees it, over real loopback sockets.

Handlers report what they saw through gevent ``Event``/``AsyncResult``/``Queue`` objects; the
test (in the main greenlet) drives a gevent client and waits on those, always with a bound.
"""

from __future__ import annotations

import socket

import gevent
import gevent.socket
import pytest
from gevent import getcurrent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from helpers import WAIT, recv_exactly, run_handler, small_send_buffer, wait_for

import greensrv
from greensrv.filters import Block, Line, Stream


def echo(conn):
    for line in conn:
        conn.put(line)


# -- get(), EOF, timeouts, iteration -----------------------------------------------------------


def test_get_returns_records_in_order_then_eof_error_after_the_client_half_closes(
        make_server, connect):
    def body(conn):
        records = [conn.get(), conn.get(), conn.get()]
        with pytest.raises(EOFError):
            conn.get()
        with pytest.raises(EOFError):  # and again: EOF is sticky
            conn.get()
        conn.put(f"got {len(records)}")
        return records

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"one\r\ntwo\nthree")  # the last line has no terminator
    client.half_close()
    assert client.read_all() == b"got 3\r\n"
    assert wait_for(outcome, "the handler") == ["one", "two", "three"]


def test_get_timeout_raises_timeout_error_and_loses_nothing(make_server, connect):
    timed_out = Event()

    def body(conn):
        with pytest.raises(TimeoutError):
            conn.get(timeout=0.05)  # nothing at all yet
        conn.put("ready")
        with pytest.raises(TimeoutError):
            conn.get(timeout=0.2)  # half a line arrived
        timed_out.set()
        return conn.get(timeout=WAIT), conn.get(timeout=WAIT)

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert client.readline() == b"ready\r\n"
    client.send(b"hel")
    wait_for(timed_out, "get(timeout) to time out")
    client.send(b"lo\nworld\n")
    assert wait_for(outcome, "the handler") == ("hello", "world")


def test_get_with_a_record_already_buffered_returns_it_even_with_zero_timeout(
        make_server, connect):
    def body(conn):
        first = conn.get()
        return first, conn.get(timeout=0)

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"a\nb\n")
    assert wait_for(outcome, "the handler") == ("a", "b")


def test_iteration_yields_records_until_eof(make_server, connect):
    server, outcome = run_handler(make_server, lambda conn: list(conn))
    client = connect(server.address)
    client.send(b"1\n2\n3\n")
    client.half_close()
    assert wait_for(outcome, "the handler") == ["1", "2", "3"]


def test_a_peer_reset_is_eof_for_get(make_server, connect):
    seen = Event()

    def body(conn):
        first = conn.get()
        seen.set()
        with pytest.raises(EOFError):
            conn.get()
        return first

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"x\n")
    wait_for(seen, "the first record")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    client.close()  # RST
    assert wait_for(outcome, "the handler") == "x"


def test_2000_pipelined_lines_then_half_close_all_come_back(make_server, connect):
    server = make_server(echo)
    client = connect(server.address)
    lines = [b"line %d" % i for i in range(2000)]
    sender = gevent.spawn(client.send, b"".join(line + b"\n" for line in lines))
    sender.join(timeout=WAIT)
    client.half_close()
    assert client.read_all() == b"".join(line + b"\r\n" for line in lines)
    sender.get()


def test_shutdown_from_another_greenlet_interrupts_a_waiting_get_without_losing_records(
        make_server, connect):
    handlers: Queue = Queue()

    def body(conn):
        handlers.put(conn)
        got = [conn.get()]
        handlers.put("waiting")
        try:
            while True:
                got.append(conn.get())
        except EOFError:
            return got

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    conn = wait_for(handlers, "the handler")
    client.send(b"a\n")
    assert wait_for(handlers, "the first record") == "waiting"
    conn.shutdown()  # from the main greenlet, while the handler waits in get()
    assert wait_for(outcome, "get() to see EOF") == ["a"]
    assert client.read_all() == b""


def test_records_already_parsed_are_returned_before_eof_after_shutdown(make_server, connect):
    def body(conn):
        first = conn.get()
        conn.shutdown()
        return first, list(conn)

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"a\nb\nc\n")
    assert wait_for(outcome, "the handler") == ("a", ["b", "c"])


# -- put(), flush(), buffered --------------------------------------------------------------------


def test_put_takes_several_records_and_returns_at_once(make_server, connect):
    def body(conn):
        conn.put("a", "b", "c")
        queued = conn.buffered
        conn.put()
        conn.get()
        return queued

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert [client.readline() for _ in range(3)] == [b"a\r\n", b"b\r\n", b"c\r\n"]
    client.send(b"end\n")
    assert wait_for(outcome, "the handler") == len(b"a\r\nb\r\nc\r\n")


def test_put_from_another_greenlet_while_the_handler_waits_in_get(make_server, connect):
    conns: Queue = Queue()

    def body(conn):
        conns.put(conn)
        return conn.get()

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    conn = wait_for(conns, "the handler")
    me = getcurrent()
    conn.put("from", "main")  # not the handler's greenlet
    assert getcurrent() is me
    assert client.readline() == b"from\r\n"
    assert client.readline() == b"main\r\n"
    client.send(b"done\n")
    assert wait_for(outcome, "the handler") == "done"


def test_put_after_shutdown_or_close_is_discarded_without_raising(make_server, connect):
    def body(conn):
        conn.put("before")
        conn.shutdown()
        assert conn.closing
        conn.put("after shutdown")  # by the handler itself
        return conn

    gone = AsyncResult()
    server, outcome = run_handler(make_server, body, client_disconnected=gone.set)
    client = connect(server.address)
    assert client.read_all() == b"before\r\n"  # queued before shutdown: still flushed
    client.close()
    conn = wait_for(gone, "client_disconnected")
    assert wait_for(outcome, "the handler") is conn
    conn.put("after close")  # from another greenlet, on a closed connection
    assert conn.closed


def test_put_racing_a_disconnect_from_a_broadcaster_never_raises(make_server, connect):
    conns: Queue = Queue()
    server, outcome = run_handler(make_server, lambda conn: (conns.put(conn), conn.close()))
    connect(server.address)
    conn = wait_for(conns, "the handler")
    wait_for(outcome, "the handler")
    for _ in range(3):
        conn.put("late broadcast")
    assert conn.closed and conn.buffered == 0


def test_flush_blocks_until_everything_is_written(make_server, connect):
    payload = "p" * 2_000_000

    def body(conn):
        conn.put(payload)
        conn.flush(timeout=WAIT)
        return conn.buffered

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    reader = gevent.spawn(client.read_exactly, len(payload) + 2)
    assert wait_for(outcome, "flush()") == 0
    assert reader.get(timeout=WAIT) == payload.encode() + b"\r\n"


def test_flush_timeout_raises_timeout_error_when_the_client_does_not_read(
        make_server, slow_client):
    def body(conn):
        conn.put("q" * 1_000_000)
        with pytest.raises(TimeoutError):
            conn.flush(timeout=0.2)
        left = conn.buffered
        conn.close()
        return left

    server, outcome = run_handler(make_server, body, client_pre_connect=small_send_buffer,
                                  high_mark=2_000_000, low_mark=1000, output_limit=4_000_000)
    slow_client(server.address)
    assert wait_for(outcome, "the handler") > 0


# -- backpressure ---------------------------------------------------------------------------------


def test_get_waits_while_output_is_above_high_mark_and_resumes_below_low_mark(
        make_server, slow_client):
    paused = AsyncResult()
    chunk = "c" * 50_000

    def body(conn):
        assert conn.get() == "go"
        conn.put(chunk, chunk, chunk)  # 150 kB queued: above high_mark
        over = conn.buffered
        try:
            conn.get(timeout=0.3)  # "more" is waiting in the kernel, but reading is paused
        except TimeoutError:
            paused.set(over)
        else:
            paused.set(None)
        return conn.get(timeout=WAIT)

    server, outcome = run_handler(make_server, body, client_pre_connect=small_send_buffer,
                                  high_mark=100_000, low_mark=10_000)
    sock = slow_client(server.address)
    sock.sendall(b"go\nmore\n")
    over = wait_for(paused, "get(timeout) while paused")
    assert over is not None, "get() read input while output was above high_mark"
    assert over > 100_000
    assert recv_exactly(sock, 3 * 50_002) == (chunk + "\r\n").encode() * 3
    assert wait_for(outcome, "get() after the drain") == "more"  # nothing lost


def test_a_client_that_sends_without_reading_cannot_grow_server_memory(
        make_server, slow_client, barrier):
    """Replies pile up to high_mark, then the server stops reading; unread input stays put."""
    counts = []
    paused = Event()

    def handler(conn):
        for line in conn:
            conn.put(line * 1000)
            counts.append(conn.buffered)
            if conn.buffered > conn.server.high_mark:
                paused.set()

    server = make_server(handler, client_pre_connect=small_send_buffer,
                         high_mark=100_000, low_mark=10_000)
    sock = slow_client(server.address)
    sender = gevent.spawn(sock.sendall, b"0123456789\n" * 200_000)  # 2.2 MB of input
    wait_for(paused, "output above high_mark")
    read_then = len(counts)
    barrier()
    barrier()
    conn = server.connections[0]
    assert len(counts) == read_then, "kept reading while output was backed up"
    assert conn.buffered < 100_000 + 11_000
    # What the server took from the kernel is the lines it handled plus at most one read.
    assert server.statistics().bytes_in <= 11 * len(counts) + 65536
    sender.kill()


# -- shutdown(), close() --------------------------------------------------------------------------


def test_shutdown_flushes_sends_fin_and_drains_unread_input_so_the_peer_gets_no_reset(
        make_server, connect):
    reply = "r" * 1_000_000

    def body(conn):
        conn.get()
        conn.put(reply)
        conn.shutdown()  # the client keeps sending input nobody reads
        return "done"

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    sender = gevent.spawn(client.send, b"go\n" + b"unread input\n" * 20_000)
    wait_for(outcome, "the handler")
    # Everything arrives, then a clean EOF (a reset would raise ConnectionResetError here).
    assert client.read_all() == reply.encode() + b"\r\n"
    sender.join(timeout=WAIT)


def test_shutdown_makes_get_see_eof_and_marks_the_connection_closing(make_server, connect):
    def body(conn):
        assert not conn.closing
        conn.shutdown()
        conn.shutdown()  # idempotent
        state = (conn.closing, conn.closed)
        with pytest.raises(EOFError):
            conn.get()
        return state

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert wait_for(outcome, "the handler") == (True, False)
    assert client.read_all() == b""


def test_close_is_immediate_and_discards_queued_output(make_server, slow_client):
    def body(conn):
        conn.put("d" * 1_000_000)
        conn.close()
        state = (conn.closed, conn.closing, conn.buffered)
        with pytest.raises(EOFError):
            conn.get()
        conn.put("after close")
        conn.close()  # idempotent
        return state

    server, outcome = run_handler(make_server, body, client_pre_connect=small_send_buffer,
                                  high_mark=2_000_000, low_mark=1000, output_limit=4_000_000)
    sock = slow_client(server.address)
    assert wait_for(outcome, "the handler") == (True, True, 0)
    received = 0
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += len(data)
    except ConnectionResetError:
        pass
    assert received < 1_000_000, "close() flushed the queued output"


# -- set_filter, set_input_filter, set_output_filter ----------------------------------------------


def test_set_filter_switches_both_ways_using_the_filter_itself_and_carries_bytes_over(
        make_server, connect):
    block = Block(4)

    def body(conn):
        header = conn.get()
        conn.set_filter(block)
        assert conn.input_filter is block and conn.output_filter is block
        records = [conn.get(), conn.get()]
        conn.put(b"WXYZ")
        return header, records

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"HEADER\nABCDEFGH")  # one send: the Line filter had these bytes unparsed
    assert client.read_exactly(4) == b"WXYZ"
    assert wait_for(outcome, "the handler") == ("HEADER", [b"ABCD", b"EFGH"])


def test_set_input_filter_switches_input_only(make_server, connect):
    stream = Stream()

    def body(conn):
        conn.get()
        conn.set_input_filter(stream)
        assert conn.input_filter is stream
        data = conn.get()
        conn.put("still lines")
        return data

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"switch\nraw bytes\n\x00")
    assert wait_for(outcome, "the handler") == b"raw bytes\n\x00"
    assert client.readline() == b"still lines\r\n"


def test_set_output_filter_switches_output_only(make_server, connect):
    out = Line(output_literal="|")

    def body(conn):
        conn.put("old")
        conn.set_output_filter(out)
        assert conn.output_filter is out
        conn.put("new", "style")
        return conn.get()

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert client.read_exactly(len(b"old\r\nnew|style|")) == b"old\r\nnew|style|"
    client.send(b"input still\n")
    assert wait_for(outcome, "the handler") == "input still"


def test_switching_filters_mid_stream_with_more_bytes_on_the_way(make_server, connect):
    def body(conn):
        results = []
        for _ in range(3):
            results.append(conn.get())
            conn.set_filter(Block(3))
            results.append(conn.get())
            conn.set_filter(Line())
        return results

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"a\nxyzb\nuv")
    client.send(b"wc\nrst")
    assert wait_for(outcome, "the handler") == ["a", b"xyz", "b", b"uvw", "c", b"rst"]


# -- properties --------------------------------------------------------------------------------


def test_address_properties_id_server_socket_data(make_server, connect):
    seen: Queue = Queue()

    def handler(conn):
        conn.data["n"] = conn.data.get("n", 0) + 1
        seen.put(conn)
        conn.get()

    server = make_server(handler)
    clients = [connect(server.address) for _ in range(3)]
    conns = [wait_for(seen, "a handler") for _ in clients]
    by_port = {c.remote_port: c for c in conns}
    ids = {c.id for c in conns}
    assert len(ids) == 3
    for client in clients:
        host, port = client.sock.getsockname()
        conn = by_port[port]
        assert conn.remote_ip == "127.0.0.1" == host
        assert conn.remote_address == (host, port)
        assert tuple(conn.local_address) == server.address
        assert conn.server is server
        assert conn.socket.fileno() >= 0
        assert conn.data == {"n": 1}  # per-connection dicts, not shared
        assert conn.data is conn.data  # made once, on first use
        conn.data = {"replaced": True}  # the application may also set its own
        assert conn.data == {"replaced": True}
        assert conn.buffered == 0
        assert not conn.closed
        client.send(b"bye\n")
    assert len({id(c.data) for c in conns}) == 3


def test_closed_is_true_after_the_handler_ends(make_server, connect):
    gone = AsyncResult()
    server = make_server(echo, client_disconnected=gone.set)
    client = connect(server.address)
    client.half_close()
    assert client.read_all() == b""
    assert wait_for(gone, "client_disconnected").closed


def test_unix_socket_connection_properties(make_server, connect, tmp_path):
    path = str(tmp_path / "c.sock")
    seen = AsyncResult()

    def handler(conn):
        seen.set((conn.remote_ip, conn.remote_port, conn.local_address))
        echo(conn)

    server = make_server(handler, listen=f"unix:{path}")
    client = connect(path)
    client.send(b"u\n")
    assert client.readline() == b"u\r\n"
    remote_ip, remote_port, local = wait_for(seen, "the handler")
    assert remote_ip is None and remote_port is None
    assert local == path == server.address


def test_ipv6_connection_properties(make_server, connect):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    seen = AsyncResult()

    def handler(conn):
        seen.set((conn.remote_ip, conn.remote_port))
        echo(conn)

    try:
        server = make_server(handler, listen="[::1]:0")
    except OSError as exc:  # pragma: no cover - a host without ::1
        pytest.skip(f"cannot bind ::1: {exc}")
    client = connect(server.address)
    client.send(b"six\n")
    assert client.readline() == b"six\r\n"
    ip, port = wait_for(seen, "the handler")
    assert ip == "::1" and port == client.sock.getsockname()[1]


def test_repr_shows_the_id_and_state(make_server, connect):
    seen = AsyncResult()
    server = make_server(lambda conn: (seen.set(repr(conn)), conn.get()))
    client = connect(server.address)
    text = wait_for(seen, "the handler")
    assert "#1" in text and "open" in text
    client.send(b"x\n")
    assert client.read_all() == b""
    assert isinstance(greensrv.Connection, type)
