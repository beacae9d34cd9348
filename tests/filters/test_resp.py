"""Resp: RESP2 both ways, inline commands, limits, and the bulk path agreeing with the exact one."""

from __future__ import annotations

import pytest

from greensrv import FilterError
from greensrv.filters import NEED_DATA, Resp, RespError
from greensrv.testing import check_filter

VALUES = ["OK", RespError("ERR unknown command"), 42, -7, 0, b"bulk", b"", None,
          [b"SET", b"key", b"value"], [], [[1, [b"x", None]], "two"], b"with\r\nCRLF",
          "", b"$3", [b"*1", b":1"]]


def test_round_trip_of_every_type():
    check_filter(Resp(), VALUES)


def test_wire_forms():
    r = Resp()
    assert r.encode("OK") == b"+OK\r\n"
    assert r.encode(RespError("ERR x")) == b"-ERR x\r\n"
    assert r.encode(5) == b":5\r\n"
    assert r.encode(True) == b":1\r\n"
    assert r.encode(b"hi") == b"$2\r\nhi\r\n"
    assert r.encode(None) == b"$-1\r\n"
    assert r.encode([b"a", 1]) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert r.encode(("x",)) == b"*1\r\n+x\r\n"
    assert r.encode("a\r\nb") == b"$4\r\na\r\nb\r\n"  # not expressible as a simple string
    assert r.encode(1.5) == b"$3\r\n1.5\r\n"
    assert r.encode(RespError("bad\r\nline")) == b"-bad  line\r\n"
    with pytest.raises(TypeError):
        r.encode(object())


def test_null_array_decodes_to_none():
    assert Resp().feed(b"*-1\r\n$-1\r\n") == [None, None]


def test_inline_commands():
    f = Resp()
    assert f.feed(b"PING\r\nSET k  v\nGET\tk\r\n\r\n") == [[b"PING"], [b"SET", b"k", b"v"],
                                                          [b"GET", b"k"]]


def test_inline_command_split_across_packets():
    f = Resp()
    assert f.feed(b"PI") == []
    assert f.feed(b"NG\r") == []
    assert f.feed(b"\n") == [[b"PING"]]


def test_array_elements_survive_a_slow_peer():
    wire = Resp().encode([b"SET", b"k" * 10, b"v" * 1000])
    f = Resp()
    got = []
    for b in wire:
        got += f.feed(bytes((b,)))
    assert got == [[b"SET", b"k" * 10, b"v" * 1000]]


@pytest.mark.parametrize("wire, what", [
    (b"*1\r\nX\r\n", "unexpected byte"),
    (b"$-2\r\n", "bulk length -2"),
    (b"$3\r\nabcd\r\n", "no CRLF after a 3-byte bulk"),
    (b":1x\r\n", "bad integer"),
    (b"$ 3\r\n", "bad integer"),
    (b"$+3\r\n", "bad integer"),
    (b"*1_0\r\n", "bad integer"),
    (b":" + b"9" * 30 + b"\r\n", "bad integer"),
    (b"+a\rb\r\n", "CR or LF"),
])
def test_malformed_input(wire, what):
    with pytest.raises(FilterError, match=what):
        Resp().feed(wire)


class TestLimits:
    def test_bulk_length(self):
        with pytest.raises(FilterError) as info:
            Resp(max_bulk_length=10).feed(b"$11\r\n")
        assert "Resp" in str(info.value) and "max_bulk_length=10" in str(info.value)
        assert "11 bytes" in str(info.value)

    def test_array_length(self):
        with pytest.raises(FilterError, match="2 elements over max_array_length=1"):
            Resp(max_array_length=1).feed(b"*2\r\n")

    def test_depth(self):
        with pytest.raises(FilterError, match="max_depth=2"):
            Resp(max_depth=2).feed(b"*1\r\n*1\r\n*1\r\n")

    def test_line_length_before_crlf_arrives(self):
        f = Resp(max_line_length=8)
        with pytest.raises(FilterError, match="max_line_length=8"):
            f.feed(b"+" + b"x" * 20)

    def test_inline_length(self):
        with pytest.raises(FilterError, match="inline command longer"):
            Resp(max_line_length=8).feed(b"x" * 20)

    def test_message_length(self):
        f = Resp(max_message_length=100)
        with pytest.raises(FilterError, match="max_message_length=100"):
            f.feed(b"*3\r\n$60\r\n" + b"a" * 60 + b"\r\n$60\r\n")

    def test_inline_argument_count(self):
        with pytest.raises(FilterError, match="max_array_length=2"):
            Resp(max_array_length=2).feed(b"a b c\r\n")


def test_pending_is_exact_after_each_pulled_message():
    wire = Resp().encode_many(VALUES * 20)
    for k in range(0, len(VALUES) * 20, 7):
        f = Resp()
        f.receive(wire)
        got = [f.next_record() for _ in range(k)]
        assert Resp().encode_many(got) + f.pending() == wire


def test_bulk_path_and_exact_path_agree():
    """Big buffers take the split-based path; one byte at a time takes the exact parser."""
    values = VALUES * 40 + [[b"x" * 5000], b"y" * 5000, [b"a"] * 300]
    wire = Resp().encode_many(values)
    assert Resp().feed(wire) == values
    f = Resp()
    got = []
    for i in range(0, len(wire), 7):
        got += f.feed(wire[i : i + 7])
    assert got == values


def test_incomplete_message_at_eof():
    f = Resp()
    f.feed(b"*2\r\n$1\r\na\r\n")
    with pytest.raises(FilterError, match="incomplete"):
        f.feed_eof()


def test_pull_returns_need_data_between_messages():
    f = Resp()
    f.receive(b"+OK\r\n")
    assert f.next_record() == "OK"
    assert f.next_record() is NEED_DATA


def test_resp_error_value_semantics():
    assert RespError("x") == RespError("x") != "x"
    assert str(RespError("ERR y")) == "ERR y"
    assert len({RespError("a"), RespError("a")}) == 1


COMMANDS = [[b"SET", b"key:%d" % i, b"v" * (i % 40)] for i in range(200)] + [
    b"bare bulk", [b"PING"], [b"x" * 5000, b"y"], [b""], b"",
]


@pytest.fixture(params=["default", "scan"])
def request_path(request, monkeypatch):
    """Each Resp request test runs on the build's own bulk path, then on the byte scanner.

    The compiled build always scans (``_SCAN_IN_C``); the pure build splits, so it is switched
    to the scanner here to test that code in both builds.
    """
    import greensrv.filters.resp as resp

    if request.param == "scan":
        if resp._SCAN_IN_C:
            pytest.skip("the compiled build scans already (the default case)")
        monkeypatch.setattr(resp, "_SCAN_IN_C", True)
    return request.param


def test_request_batches_decode_alike_in_any_chunking(request_path):
    wire = Resp().encode_many(COMMANDS)
    assert Resp().feed(wire) == COMMANDS
    for size in (1, 7, 300, 4096):
        f = Resp()
        got = []
        for i in range(0, len(wire), size):
            got += f.feed(wire[i : i + size])
        assert got == COMMANDS, size


def test_pending_is_exact_inside_a_scanned_batch(request_path):
    wire = Resp().encode_many(COMMANDS)
    for k in (0, 1, 2, 57, 203, len(COMMANDS)):
        f = Resp()
        f.receive(wire)
        got = [f.next_record() for _ in range(k)]
        assert Resp().encode_many(got) + f.pending() == wire


@pytest.mark.parametrize("wire, what", [
    (b"*2\r\n$3\r\nfoo\r\n$99999999999999999999\r\n", "over max_bulk_length"),
    (b"*2\r\n$3\r\nfoo\r\n$999999999999999999999\r\n", "bad integer"),
    (b"*1\r\n$3\r\nfooXY", "no CRLF after"),
    (b"*1\r\n$9\r\nfoo\r\n", None),  # incomplete: waits
    (b"*1\r\n$-5\r\n", "bulk length -5"),
])
def test_the_scanner_leaves_odd_input_to_the_exact_parser(request_path, wire, what):
    f = Resp()
    padding = Resp().encode_many([[b"GET", b"k" * 40]] * 10)  # a batch worth scanning first
    if what is None:
        assert f.feed(padding + wire) == [[b"GET", b"k" * 40]] * 10
        assert f.pending() == wire
        return
    with pytest.raises(FilterError, match=what):
        f.feed(padding + wire)
