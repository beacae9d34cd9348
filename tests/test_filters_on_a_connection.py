"""Every shipped filter read through a real connection gives what its own ``feed()`` gives.

A connection takes records from a filter through ``next_record()`` and ``take_ready()`` (the
batch fast path) and hands unparsed bytes over with ``take_pending()`` when the handler switches
filters. These tests pin that the path through the connection changes nothing: several records in
one segment, one byte per segment, and switching back to a filter used before.
"""

from __future__ import annotations

import socket

import pytest
from gevent.event import Event
from helpers import WAIT, run_handler, wait_for

from greensrv.filters import (
    Block,
    Grep,
    JsonLines,
    LengthPrefixed,
    Line,
    Map,
    Netstring,
    Resp,
    Stack,
    Stream,
)

#: (id, filter, records to encode for the wire); each filter's records several per segment.
SHIPPED = [
    ("Line", Line(), ["one", "two", "", "three ünïcode", "four"]),
    ("Line-bytes-literal", Line(literal=b"|", encoding=None), [b"a", b"bc", b"", b"def"]),
    ("Line-regexp", Line(input_regexp=r";+", output_literal=";"), ["x", "yy", "zzz"]),
    ("Line-strict", Line(strict_crlf=True), ["EHLO a", "MAIL FROM:<b>", "DATA"]),
    ("Stream", Stream(), [b"some bytes ", b"then more"]),
    ("Block", Block(3), [b"abc", b"\xff\x00\x01", b"xyz"]),
    ("LengthPrefixed", LengthPrefixed(), [b"", b"payload", b"\x00" * 300]),
    ("Netstring", Netstring(), [b"hello", b"", b"world!"]),
    ("JsonLines", JsonLines(), [{"a": 1}, [10, 20], "x", None, 3.5]),
    ("Resp", Resp(), [[b"SET", b"k", b"v"], [b"GET", b"k"], b"bulk", [b"PING"]]),
    ("Stack-Line-Map", Stack(Line(), Map(get=str.upper, put=str.lower)), ["ab", "cd", "ef"]),
    ("Stack-Line-Grep", Stack(Line(), Grep(get=lambda r: r != "drop")),
     ["keep", "drop", "also", "drop", "last"]),
    ("Stack-Stream-Line", Stack(Stream(), Line()), ["over", "a", "stream"]),
]


def _wire(f, records) -> bytes:
    return b"".join(f.clone().encode(r) for r in records)


def _expected(f, wire: bytes):
    g = f.clone()
    return g.feed(wire) + g.feed_eof()


def _serve_and_collect(make_server, connect, barrier, f, chunks):
    """Send ``chunks`` (one segment each, all before the handler reads) and half-close."""
    sent = Event()

    def body(conn):
        assert sent.wait(WAIT), "the client never sent"
        return list(conn)

    server, outcome = run_handler(make_server, body, filter=f)
    client = connect(server.address)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for chunk in chunks:
        client.send(chunk)
    client.half_close()
    barrier()  # the bytes are in the server's socket before the handler reads
    sent.set()
    return wait_for(outcome, "the handler")


def _compare(f, got, expected) -> None:
    if f.chunked_records:  # Stream: only the concatenation is independent of the chunking
        assert b"".join(got) == b"".join(expected)
    else:
        assert got == expected


@pytest.mark.parametrize(("f", "records"), [(f, r) for _, f, r in SHIPPED],
                         ids=[name for name, _, _ in SHIPPED])
def test_several_records_in_one_segment_come_out_as_feed_gives_them(
        make_server, connect, barrier, f, records):
    wire = _wire(f, records)
    expected = _expected(f, wire)
    assert len(expected) >= 2 or f.chunked_records, "precondition: several records"
    _compare(f, _serve_and_collect(make_server, connect, barrier, f, [wire]), expected)


@pytest.mark.parametrize(("f", "records"), [(f, r) for _, f, r in SHIPPED],
                         ids=[name for name, _, _ in SHIPPED])
def test_one_byte_per_segment_comes_out_as_feed_gives_it(
        make_server, connect, barrier, f, records):
    wire = _wire(f, records)
    chunks = [wire[i:i + 1] for i in range(len(wire))]
    got = _serve_and_collect(make_server, connect, barrier, f, chunks)
    _compare(f, got, _expected(f, wire))


def test_json_lines_that_arrive_in_one_read_are_all_decoded(make_server, connect, barrier):
    """Regression: records parsed in one batch came out as raw lines, not JSON values."""
    got = _serve_and_collect(make_server, connect, barrier, JsonLines(),
                             [b'{"a":1}\n[10,20]\n"x"\n'])
    assert got == [{"a": 1}, [10, 20], "x"]


def test_json_lines_read_with_get_are_all_decoded(make_server, connect, barrier):
    sent = Event()

    def body(conn):
        assert sent.wait(WAIT), "the client never sent"
        return [conn.get(), conn.get(), conn.get()]

    server, outcome = run_handler(make_server, body, filter=JsonLines())
    client = connect(server.address)
    client.send(b'{"a":1}\n[10,20]\n"x"\n')
    barrier()
    sent.set()
    assert wait_for(outcome, "the handler") == [{"a": 1}, [10, 20], "x"]


@pytest.mark.parametrize("payload", [b"abc", b"\xff\xfe\xfd"], ids=["text", "binary"])
def test_switching_back_to_a_filter_used_before_does_not_parse_handed_over_bytes_again(
        make_server, connect, barrier, payload):
    """Regression: the first filter kept the bytes it handed to Block and parsed them again."""
    sent = Event()

    def body(conn):
        assert sent.wait(WAIT), "the client never sent"
        lines = conn.input_filter
        command = conn.get()
        conn.set_input_filter(Block(3))
        block = conn.get()
        conn.set_input_filter(lines)
        return command, block, conn.get(), lines.pending()

    server, outcome = run_handler(make_server, body)
    client = connect(server.address)
    client.send(b"LEN 3\r\n" + payload + b"NEXT\r\nLAST")
    client.half_close()
    barrier()  # one segment, read by the server in one recv
    sent.set()
    assert wait_for(outcome, "the handler") == ("LEN 3", payload, "NEXT", b"LAST")


@pytest.mark.parametrize("name", [name for name, _, _ in SHIPPED])
def test_take_pending_leaves_the_filter_as_a_fresh_clone(name):
    f, records = next((f.clone(), r) for n, f, r in SHIPPED if n == name)
    wire = _wire(f, records)
    half = len(wire) // 2
    f.receive(wire[:half])
    first = f.next_record()
    taken = f.take_pending()
    assert f.pending() == b"" and f.take_ready() == []
    # The filter works on from empty, as a clone would.
    assert f.feed(wire) + f.feed_eof() == _expected(f, wire)
    assert first is not None and isinstance(taken, bytes)
