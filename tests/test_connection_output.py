"""The output side of a connection (``connection.py`` sending ``output_queue.py``'s bytes) over
real loopback sockets:
``put()``'s queue, the output callbacks, watermarks and ``output_limit``.

With an output filter whose ``ascii_terminator()`` is a str (the default ``Line``), ``put()`` of
one ASCII ``str`` record appends it to a list that the flush joins and encodes in one go; every
other record is encoded by ``put()`` itself, after the queued text. These tests pin what that must
not change: bytes and order on the wire, ``buffered`` exact to the byte, errors raised by
``put()``, watermarks and ``output_limit``, and filter switches in the middle of a burst.

Handlers report what they saw through gevent ``Event``/``AsyncResult``/``Queue`` objects; the
test (in the main greenlet) drives a gevent client and waits on those, always with a bound.
"""

from __future__ import annotations

import os
import socket
import time

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent import getcurrent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from helpers import WAIT, echo, recv_exactly, run_handler, small_send_buffer, wait_for

import greensrv
from greensrv import SlowClientError
from greensrv.filters import JsonLines, Line, Stream

CRLF = b"\r\n"
LINES = [f"l{i}" for i in range(10)]


def wire(*records) -> bytes:
    """What the default Line filter sends for ``records``: each one in UTF-8, then CRLF."""
    out = bytearray()
    for record in records:
        out += record.encode() if isinstance(record, str) else bytes(record)
        out += CRLF
    return bytes(out)


def recv_until_eof(sock) -> bytes:
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk


FILLER = b"P"


def fill_kernel(conn) -> int:
    """Write filler straight to the (non-blocking) socket until the kernel takes no more.

    The peer does not read, so from then on the connection's own sends take nothing and every
    byte ``put()`` queues stays in ``buffered``. Returns how many filler bytes the peer will get
    before any record.
    """
    fd = conn.socket.fileno()
    chunk = FILLER * 65536
    total = 0
    while True:
        try:
            total += os.write(fd, chunk)
        except BlockingIOError:
            return total
        assert total < 64 << 20, "the kernel never stopped taking bytes"


class Text(str):
    """A str subclass: not the exact type ``str``, so never queued as lazy text."""


# -- 1. order and bytes ---------------------------------------------------------------------------

#: One burst: each tuple is the arguments of one put() call.
MIXED_BURST = [
    ("a1",),
    ("héllo",),
    ("日本",),
    (b"raw\xff\x00",),
    ("a2",),
    ("x", "日本", b"z"),
    ("",),
    (bytearray(b"bytearray"),),
    ("a3",),
    (memoryview(b"memoryview"),),
    (Text("subclass"),),
    ("p", "q", "r"),
    ("ascii", "and", "more"),
    (),
    ("naïve", "ascii"),
    ("end",),
]


def test_a_mixed_burst_put_without_yielding_arrives_exact_and_in_order(make_server, connect):
    def body(conn):
        for args in MIXED_BURST:
            conn.put(*args)
        return conn.buffered

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    expected = wire(*(record for args in MIXED_BURST for record in args))
    assert client.read_all() == expected
    assert wait_for(outcome, "the handler") == len(expected)


def test_a_large_mixed_burst_crossing_the_inline_send_threshold_keeps_order_and_exact_count(
        make_server, connect):
    """~300 kB in one turn: put() sends inline past 64 KiB, between lazy and encoded records.

    At every step, bytes queued plus bytes sent equals the wire size of everything put.
    """
    kinds = [
        lambda i: (f"ascii line {i}",),
        lambda i: (f"héllo {i}",),
        lambda i: (b"bytes %d" % i,),
        lambda i: (f"a{i}", f"日本{i}", b"b%d" % i),
        lambda i: ("x" * (i % 50),),
    ]
    calls = [kinds[i % len(kinds)](i) for i in range(12_000)]
    expected = wire(*(record for args in calls for record in args))

    def body(conn):
        stats = conn.server.statistics
        total = 0
        mismatches = []
        for args in calls:
            conn.put(*args)
            total += len(wire(*args))
            sent = stats().bytes_out
            if conn.buffered + sent != total:
                mismatches.append((total, conn.buffered, sent))
        return mismatches, stats().bytes_out

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    reader = gevent.spawn(client.read_all)
    mismatches, sent_inline = wait_for(outcome, "the handler")
    assert mismatches == []
    assert sent_inline > 0, "precondition: put() should have sent inline past 64 KiB"
    assert reader.get(timeout=WAIT) == expected


# -- 2. buffered is exact before anything is flushed --------------------------------------------


def test_buffered_counts_exact_wire_bytes_of_lazy_and_encoded_records_before_any_flush(
        make_server, connect):
    steps = [
        (("abc",), 5),
        (("é",), 5 + 4),
        ((b"xy",), 9 + 4),
        (("日本",), 13 + 8),
        (("a", "bc"), 21 + 3 + 4),
        ((), 28),
        (("",), 28 + 2),
        (("naïve", "ok"), 30 + 8 + 4),
        (("z" * 100,), 42 + 102),
    ]

    def body(conn):
        seen = []
        for args, _ in steps:
            conn.put(*args)
            seen.append(conn.buffered)
        return seen, conn.server.statistics().bytes_out

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    expected = wire(*(record for args, _ in steps for record in args))
    assert client.read_all() == expected
    seen, sent = wait_for(outcome, "the handler")
    assert sent == 0, "nothing may be sent before the handler yields"
    assert seen == [size for _, size in steps]
    assert seen[-1] == len(expected)


@pytest.mark.parametrize(
    ("out_filter", "expected"),
    [
        (Line(output_literal="\n"), b"abc\n\xc3\xa9\n"),
        (Line(output_literal="<END>"), b"abc<END>\xc3\xa9<END>"),
        (Line(encoding="latin-1"), b"abc\r\n\xe9\r\n"),
        (Line(output_literal="§"), "abc§é§".encode()),  # a non-ASCII terminator: no lazy path
        (JsonLines(), b'"abc"\n"\\u00e9"\n'),  # a Line subclass with its own encode()
    ],
    ids=["lf", "long-literal", "latin-1", "non-ascii-literal", "jsonlines"],
)
def test_other_output_filters_get_exact_bytes_and_buffered(
        make_server, connect, out_filter, expected):
    def body(conn):
        conn.put("abc")
        first = conn.buffered
        conn.put("é")
        return first, conn.buffered

    server, outcome = run_handler(make_server, body, input_filter=Line(),
                                  output_filter=out_filter)
    client = connect(server.address)
    assert client.read_all() == expected
    first, total = wait_for(outcome, "the handler")
    assert total == len(expected)
    assert first == len(out_filter.clone().encode("abc"))


class UpperLine(Line):
    """A Line whose encode() changes ASCII text: it must not take the lazy path."""

    def encode(self, record):
        if isinstance(record, str):
            record = record.upper()
        return super().encode(record)


def test_a_line_subclass_with_its_own_encode_gets_single_records_through_it(
        make_server, connect):
    def body(conn):
        conn.put("abc")
        conn.put("déf")
        conn.put(b"raw")
        conn.put("ghi")
        return conn.buffered

    server, outcome = run_handler(make_server, body, filter=UpperLine())
    client = connect(server.address)
    expected = wire("ABC", "DÉF", b"raw", "GHI")
    assert client.read_all() == expected
    assert wait_for(outcome, "the handler") == len(expected)


# Regression: Line.encode_many() used to join str records itself without the subclass guard
# that ascii_terminator() has, so a subclass overriding only encode() sent put("g", "h")
# differently from put("g"); put("h").
def test_a_line_subclass_with_its_own_encode_gets_several_records_through_it(
        make_server, connect):
    def body(conn):
        conn.put("g", "h")
        return conn.buffered

    server, outcome = run_handler(make_server, body, filter=UpperLine())
    client = connect(server.address)
    assert client.read_all() == wire("G", "H")
    assert wait_for(outcome, "the handler") == 6


# -- 3. errors are raised by put() itself ------------------------------------------------------


def test_put_raises_type_and_unicode_errors_itself_and_earlier_records_still_arrive_in_order(
        make_server, connect):
    good_before = [("one",), ("twö",), (b"three",), ("four",)]
    good_after = [("five",), ("sïx",)]

    def body(conn):
        for args in good_before:
            conn.put(*args)
        before = conn.buffered
        unchanged = []
        for bad, error in [
            ((5,), TypeError),
            (({"a": 1},), TypeError),
            ((None,), TypeError),
            ((["list"],), TypeError),
            (("x", 5), TypeError),  # a put() that raises queues none of its records
            (("\ud800",), UnicodeEncodeError),  # a lone surrogate
            (("ok\udfffok",), UnicodeEncodeError),
            (("ok", "\ud800"), UnicodeEncodeError),
        ]:
            with pytest.raises(error):
                conn.put(*bad)
            unchanged.append(conn.buffered == before)
        for args in good_after:
            conn.put(*args)
        return before, unchanged, conn.buffered

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    expected = wire(*(r for args in good_before + good_after for r in args))
    before, unchanged, total = wait_for(outcome, "the handler")  # first: a failed raises
    assert client.read_all() == expected
    assert before == len(wire(*(r for args in good_before for r in args)))
    assert all(unchanged), f"a failed put() changed buffered: {unchanged}"
    assert total == len(expected)


# -- 4. switching the output filter in the middle of a burst -----------------------------------


# Regression (set_filter): it used to set the output filter without going through
# set_output_filter(), so ASCII text put after it kept the old filter's terminator and bypassed
# the new filter's encode().
@pytest.mark.parametrize("switch", ["set_output_filter", "set_filter"])
def test_switching_the_output_filter_mid_burst_keeps_the_old_encoding_for_records_already_put(
        make_server, connect, switch):
    def body(conn):
        conn.put("a")
        getattr(conn, switch)(Line(literal="\n"))
        conn.put("b")
        return conn.buffered

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert client.read_all() == b"a\r\nb\n"
    assert wait_for(outcome, "the handler") == 5


def test_set_output_filter_through_filters_with_and_without_an_ascii_terminator(
        make_server, connect):
    def body(conn):
        sizes = []
        conn.put("a")
        conn.put("é")
        conn.set_output_filter(Line(output_literal="\n"))
        conn.put("b")
        conn.put("ü")
        conn.put(b"c")
        conn.put("d", "e")
        sizes.append(conn.buffered)
        conn.set_output_filter(Stream())  # no ascii_terminator: str must reach Stream.encode
        conn.put(b"raw")
        with pytest.raises(TypeError):
            conn.put("text")
        sizes.append(conn.buffered)
        conn.set_output_filter(Line(output_literal="|"))
        conn.put("f")
        conn.put("g")
        sizes.append(conn.buffered)
        return sizes

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    first = b"a\r\n" + "é\r\n".encode() + b"b\n" + "ü\n".encode() + b"c\nd\ne\n"
    expected = first + b"raw" + b"f|g|"
    assert wait_for(outcome, "the handler") == [len(first), len(first) + 3, len(expected)]
    assert client.read_all() == expected


def test_set_filter_to_a_bytes_only_filter_refuses_str_records(make_server, connect):
    def body(conn):
        conn.put("a")
        conn.set_filter(Stream())
        try:
            conn.put("text")
        except TypeError:
            refused = True
        else:
            refused = False
        conn.put(b"raw")
        return refused, conn.buffered

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert client.read_all() == b"a\r\nraw"
    assert wait_for(outcome, "the handler") == (True, 6)


# -- 6. watermarks and output_limit with lazy text ----------------------------------------------


def test_client_high_fires_once_when_lazy_text_crosses_high_mark_and_buffered_stays_exact(
        make_server, slow_client, barrier):
    line = "L" * 98  # 100 bytes on the wire
    highs: list[int] = []
    lows: list[int] = []
    high_seen, low_seen = Event(), Event()
    report = AsyncResult()

    def on_high(conn):
        highs.append(conn.buffered)
        high_seen.set()

    def on_low(conn):
        lows.append(conn.buffered)
        low_seen.set()

    def body(conn):
        stats = conn.server.statistics
        prefill = fill_kernel(conn)
        sent0 = stats().bytes_out
        n = 0
        while conn.buffered <= 1000:  # no yield: only put()'s own inline sends can run
            conn.put(line)
            n += 1
            assert n < 10_000
        crossed = (n, conn.buffered, stats().bytes_out - sent0)
        for _ in range(30):  # further above the mark: client_high must not fire again
            conn.put(line)
        later = (conn.buffered, stats().bytes_out - sent0)
        report.set((prefill, crossed, later))
        return conn.get(timeout=WAIT)  # waits for the drain below low_mark, then reads

    server, outcome = run_handler(
        make_server, body, client_pre_connect=small_send_buffer, high_mark=1000, low_mark=100,
        output_limit=10_000_000, client_high=on_high, client_low=on_low)
    sock = slow_client(server.address)
    prefill, (n, at_cross, sent), (later, sent_later) = wait_for(report, "the burst")
    assert prefill > 0
    assert at_cross == n * 100 - sent, "buffered is not the exact count of queued bytes"
    assert later == (n + 30) * 100 - sent_later
    assert at_cross > 1000
    wait_for(high_seen, "client_high")
    barrier()
    barrier()
    assert len(highs) == 1, f"client_high fired {len(highs)} times"
    assert highs[0] > 1000
    assert lows == [], "client_low fired while the client was not reading"
    expected = FILLER * prefill + (line.encode() + CRLF) * (n + 30)
    assert recv_exactly(sock, len(expected)) == expected
    wait_for(low_seen, "client_low once the client read everything")
    sock.sendall(b"bye\n")
    assert wait_for(outcome, "the handler") == "bye"
    assert len(highs) == 1 and len(lows) == 1


def test_iteration_hands_out_no_parsed_record_while_output_is_above_high_mark(
        make_server, slow_client, barrier):
    """Records already parsed in a batch wait, like unread input, until output drains."""
    reply = "R" * 1998  # 2000 bytes on the wire: above high_mark after one reply
    got: Queue = Queue()

    def body(conn):
        seen = []
        for line in conn:
            seen.append((line, conn.buffered))
            if len(seen) == 1:
                # Fill the kernel right before the first reply (nothing is queued yet), so that
                # the reply stays queued above high_mark while the client does not read.
                got.put(fill_kernel(conn))
            got.put(line)
            conn.put(reply)
        return seen

    server, outcome = run_handler(make_server, body, client_pre_connect=small_send_buffer,
                                  high_mark=1000, low_mark=100)
    sock = slow_client(server.address)
    sock.sendall(b"".join(line.encode() + CRLF for line in LINES))  # one batch
    prefill = wait_for(got, "the kernel to fill")
    assert wait_for(got, "the first line") == "l0"
    barrier()
    barrier()
    assert got.empty(), "a parsed record was handed out while output was above high_mark"
    reader = gevent.spawn(recv_exactly, sock, prefill + 2000 * len(LINES))
    sock.shutdown(socket.SHUT_WR)
    data = reader.get(timeout=WAIT)
    seen = wait_for(outcome, "the handler")
    assert [line for line, _ in seen] == LINES
    assert max(buffered for _, buffered in seen) <= 1000
    assert data == FILLER * prefill + (reply.encode() + CRLF) * len(LINES)


def test_output_limit_closes_a_client_that_does_not_read_lazy_text(make_server, slow_client):
    line = "L" * 98  # 100 bytes on the wire
    errors = AsyncResult()

    def body(conn):
        stats = conn.server.statistics
        prefill = fill_kernel(conn)
        n = sent = 0
        while not conn.closed:
            sent = stats().bytes_out  # the put() that closes sends nothing
            conn.put(line)
            n += 1
            assert n < 10_000
        conn.put(line)  # discarded without raising
        conn.put("é")
        return prefill, n, sent, conn.buffered

    server, outcome = run_handler(
        make_server, body, client_pre_connect=small_send_buffer, high_mark=1000, low_mark=100,
        output_limit=5000, client_error=lambda conn, exc: errors.set(exc))
    sock = slow_client(server.address)
    prefill, n, sent, left = wait_for(outcome, "the handler")
    assert isinstance(wait_for(errors, "client_error"), SlowClientError)
    assert left == 0
    # Closed by the first put() that took the queue past output_limit, not earlier or later.
    assert n * 100 - sent > 5000 >= (n - 1) * 100 - sent
    assert server.statistics().closed_output_limit == 1
    lines = (line.encode() + CRLF) * n
    assert recv_until_eof(sock) == FILLER * prefill + lines[:sent]


# -- 7. after shutdown() -------------------------------------------------------------------------


def test_put_after_shutdown_is_discarded_and_buffered_does_not_change(make_server, connect):
    def body(conn):
        conn.put("a")
        conn.put("é")
        conn.put(b"b")
        conn.put("c", "d")
        conn.put("e")
        before = conn.buffered
        conn.shutdown()
        sizes = [conn.buffered]
        for args in [("x",), ("ü",), (b"y",), ("p", "q"), (), (5,), ("\ud800",)]:
            conn.put(*args)  # discarded without raising, even records put() would refuse
            sizes.append(conn.buffered)
        return conn.closing, before, sizes

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    expected = wire("a", "é", b"b", "c", "d", "e")
    assert client.read_all() == expected
    closing, before, sizes = wait_for(outcome, "the handler")
    assert closing
    assert before == len(expected)
    assert sizes == [before] * len(sizes)


def test_close_discards_lazy_text_not_yet_flushed(make_server, connect):
    def body(conn):
        conn.put("queued but never sent")
        conn.put("é")
        queued = conn.buffered
        conn.close()
        state = [conn.buffered]
        conn.put("after close")
        state.append(conn.buffered)
        return queued, state

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert client.read_all() == b""
    queued, state = wait_for(outcome, "the handler")
    assert queued == len(wire("queued but never sent", "é"))
    assert state == [0, 0]


# -- 8. a bytes-only Line ----------------------------------------------------------------------


def test_line_with_encoding_none_refuses_str_records(make_server, connect):
    def body(conn):
        with pytest.raises(TypeError):
            conn.put("text")
        with pytest.raises(TypeError):
            conn.put("a", "b")
        conn.put(b"ok")
        conn.put(b"x", b"y")
        return conn.buffered

    server, outcome = run_handler(make_server, body, filter=Line(encoding=None))
    client = connect(server.address)
    assert wait_for(outcome, "the handler") == 10
    assert client.read_all() == b"ok\r\nx\r\ny\r\n"


def test_switching_to_a_bytes_only_line_mid_burst_refuses_str_records(make_server, connect):
    def body(conn):
        conn.put("lazy")
        conn.set_output_filter(Line(encoding=None))
        with pytest.raises(TypeError):
            conn.put("text")
        conn.put(b"ok")
        return conn.buffered

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert wait_for(outcome, "the handler") == 10
    assert client.read_all() == b"lazy\r\nok\r\n"


# -- 9. callback style and client_flushed --------------------------------------------------------


def test_callback_style_echo_of_pipelined_lines_returns_every_line_in_order(
        make_server, connect):
    server = make_server(client_input=lambda conn, line: conn.put(line))
    client = connect(server.address)
    lines = [f"héllo {i}" if i % 7 == 0 else f"日本 {i}" if i % 11 == 0 else f"line {i}"
             for i in range(3000)]
    sender = gevent.spawn(client.send, b"".join(line.encode() + b"\n" for line in lines))
    sender.join(timeout=WAIT)
    client.half_close()
    assert client.read_all() == wire(*lines)
    sender.get(timeout=WAIT)


def test_client_flushed_refills_with_lazy_text_until_done(make_server, connect):
    chunks, per_chunk = 40, 200

    def refill(conn):
        k = conn.data.get("chunk", 1)
        if k >= chunks:
            conn.shutdown()
            return
        conn.data["chunk"] = k + 1
        for i in range(per_chunk):
            conn.put(f"{k}:{i}")

    def handler(conn):
        for i in range(per_chunk):
            conn.put(f"0:{i}")
        for _ in conn:
            pass

    server = make_server(handler, client_flushed=refill)
    client = connect(server.address)
    expected = wire(*(f"{k}:{i}" for k in range(chunks) for i in range(per_chunk)))
    assert client.read_all() == expected


def test_statistics_count_a_closed_connections_bytes_once(make_server, connect):
    # close() adds the connection's totals to the server's closed totals while the connection is
    # still listed (until its greenlet ends): statistics() must not count it twice meanwhile.
    def body(conn):
        conn.put("x" * 98)
        conn.flush(WAIT)
        before = conn.server.statistics().bytes_out
        conn.close()
        return before, conn.server.statistics().bytes_out, conn in conn.server.connections

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    assert client.read_all() == wire("x" * 98)
    assert wait_for(outcome, "the handler") == (100, 100, True)


# -- client_flushed, high_mark/low_mark, client_high/client_low --------------------------


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


# -- output_limit: a broadcast never blocks on a slow client ------------------------------


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
